"""fairseq-generate --path with the genre task: the model is built on meta and assigned the checkpoint.

The shipped quickstart model decodes the same hypotheses with the same scores whether fairseq builds
it the ordinary way (random initialisation, then a copy) or through ``GenreTask.build_model``'s
meta build (``genre_fairseq.loading.build_for_checkpoint``), and with fairseq's checkpoint read
mapped (``map_fairseq_model_loads``) or not.
"""
import os
import re

import pytest
import torch

pytest.importorskip("fairseq")
sentencepiece = pytest.importorskip("sentencepiece")

from fairseq import checkpoint_utils, options  # noqa: E402
from fairseq_cli import generate, preprocess  # noqa: E402

from genre_fairseq import loading  # noqa: E402
from genre_fairseq.task import GenreTask  # noqa: E402  (registers the task)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "examples", "quickstart", "model")
SENTENCES = [
    "Die Regierung von [START] Frankreich [END] hat am Montag neue Regeln beschlossen.",
    "Elle a appris le [START] japonais [END] pendant ses deux années à Kyoto.",
    "We flew from [START] Japan [END] to Paris.",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The sentences encoded with the quickstart's SentencePiece model and binarized as fairseq-generate reads them."""
    work = tmp_path_factory.mktemp("generate")
    spm = sentencepiece.SentencePieceProcessor(model_file=os.path.join(MODEL, "spm.model"))
    with open(work / "test.source", "w", encoding="utf-8") as f:
        for sentence in SENTENCES:
            f.write(" ".join(spm.encode(sentence, out_type=str)) + "\n")
    parser = options.get_preprocessing_parser()
    args = parser.parse_args(["--only-source", "--source-lang", "source", "--target-lang", "target",
                              "--testpref", str(work / "test"), "--destdir", str(work / "bin"),
                              "--srcdict", os.path.join(MODEL, "dict.source.txt"), "--workers", "1"])
    preprocess.main(args)
    with open(os.path.join(MODEL, "dict.target.txt"), "rb") as src, open(work / "bin" / "dict.target.txt", "wb") as dst:
        dst.write(src.read())
    return str(work / "bin")


def _generate(data_dir, capsys) -> list:
    """The H- and P- lines of fairseq-generate --path on the quickstart model (hypotheses, scores, per-token scores)."""
    parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, [
        data_dir, "--task", "genre", "--source-lang", "source", "--target-lang", "target",
        "--path", os.path.join(MODEL, "model.pt"), "--trie", os.path.join(MODEL, "cldr.trie"),
        "--gen-subset", "test", "--beam", "5", "--nbest", "5", "--max-len-b", "32", "--cpu",
        "--batch-size", "8"])
    capsys.readouterr()
    generate.main(args)
    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(r"[HP]-\d+\t", line)]
    assert len([line for line in lines if line.startswith("H-")]) == 5 * len(SENTENCES)
    return sorted(lines)


def test_generate_gives_the_same_hypotheses_and_scores_built_on_meta(data_dir, capsys):
    with loading.ordinary_builds():
        ordinary = _generate(data_dir, capsys)
    assert _generate(data_dir, capsys) == ordinary


def test_generate_with_mapped_checkpoint_reads_gives_the_same_hypotheses(data_dir, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint_utils, "load_checkpoint_to_cpu", checkpoint_utils.load_checkpoint_to_cpu)
    monkeypatch.setattr(checkpoint_utils, "load_model_ensemble_and_task", checkpoint_utils.load_model_ensemble_and_task)
    with loading.ordinary_builds():
        ordinary = _generate(data_dir, capsys)
    reads = []
    original = loading.read_checkpoint
    monkeypatch.setattr(loading, "read_checkpoint", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    dropped = []
    drop = loading._drop_mapped_pages
    monkeypatch.setattr(loading, "_drop_mapped_pages", lambda t: dropped.append(t.shape) or drop(t))
    loading.map_fairseq_model_loads()
    loading.map_fairseq_model_loads()  # idempotent: wrapped once
    assert _generate(data_dir, capsys) == ordinary
    assert reads == [os.path.join(MODEL, "model.pt")]
    # the quickstart checkpoint is fp16: its mapped pages are given back as fairseq's loader converts them
    assert dropped


def test_the_genre_task_maps_fairseqs_model_loads(monkeypatch):
    """apply_fairseq_fixes (run when fairseq builds the genre task) wires the mapped read in."""
    import genre_fairseq

    monkeypatch.setattr(checkpoint_utils, "load_checkpoint_to_cpu",
                        getattr(checkpoint_utils.load_checkpoint_to_cpu, "__wrapped__", checkpoint_utils.load_checkpoint_to_cpu))
    monkeypatch.setattr(checkpoint_utils, "load_model_ensemble_and_task",
                        getattr(checkpoint_utils.load_model_ensemble_and_task, "__wrapped__",
                                checkpoint_utils.load_model_ensemble_and_task))
    assert not getattr(checkpoint_utils.load_model_ensemble_and_task, "_genre_mapped", False)
    genre_fairseq.apply_fairseq_fixes()
    assert checkpoint_utils.load_model_ensemble_and_task._genre_mapped
    assert checkpoint_utils.load_checkpoint_to_cpu._genre_mapped


def test_only_the_file_mappings_pages_are_given_back(tmp_path, monkeypatch):
    """A tensor an upgrade made (anonymous memory, where MADV_DONTNEED would zero it) is converted, never dropped."""
    path = str(tmp_path / "t.pt")
    torch.save({"a.weight": torch.arange(8192, dtype=torch.float32).half()}, path)
    state = torch.load(path, mmap=True, weights_only=True)
    mapped = frozenset(t.untyped_storage().data_ptr() for t in state.values())
    made = torch.arange(8192, dtype=torch.float32).half()
    state["b.weight"] = made
    model = torch.nn.Module()
    model.a, model.b = torch.nn.Linear(1, 8192, bias=False), torch.nn.Linear(1, 8192, bias=False)
    dropped = []
    monkeypatch.setattr(loading, "_drop_mapped_pages", lambda t: dropped.append(t.data_ptr()))
    loading._cast_like(state, model, mapped)
    assert state["a.weight"].dtype == state["b.weight"].dtype == torch.float32
    assert len(dropped) == 1 and dropped[0] != made.data_ptr()
    assert torch.equal(made, torch.arange(8192, dtype=torch.float32).half())


def _task_and_state():
    state = checkpoint_utils.load_checkpoint_to_cpu(os.path.join(MODEL, "model.pt"), {
        "data": MODEL, "source_lang": "source", "target_lang": "target"})
    from fairseq import tasks

    return tasks.setup_task(state["cfg"].task, from_checkpoint=True), state


def test_build_model_from_checkpoint_skips_init_and_assigns_once():
    task, state = _task_and_state()
    drawn = []
    real_normal = torch.Tensor.normal_

    def normal_(self, *args, **kwargs):  # fairseq's and BART's init draws normal values
        if not self.is_meta:
            drawn.append(self.shape)
        return real_normal(self, *args, **kwargs)

    try:
        torch.Tensor.normal_ = normal_
        model = task.build_model(state["cfg"].model, from_checkpoint=True)
    finally:
        torch.Tensor.normal_ = real_normal
    assert drawn == []  # no random values drawn for weights the checkpoint overwrites
    assert all(p.is_meta for p in model.parameters())
    model.load_state_dict(state["model"], strict=True, model_cfg=state["cfg"].model)
    assert not any(p.is_meta for p in model.parameters())
    weight = model.encoder.layers[0].fc1.weight
    expected = state["model"]["encoder.layers.0.fc1.weight"].float()
    assert weight.dtype == torch.float32 and torch.equal(weight, expected)
    # the assignment is spent: a second load copies into the parameters, as fairseq's own method does
    assert "load_state_dict" not in vars(model)
    zeros = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(zeros)
    assert weight.abs().sum().item() == 0 and model.encoder.layers[0].fc1.weight is weight


def test_ordinary_builds_and_non_strict_loads():
    task, state = _task_and_state()
    with loading.ordinary_builds():
        model = task.build_model(state["cfg"].model, from_checkpoint=True)
    assert not any(p.is_meta for p in model.parameters())
    model = task.build_model(state["cfg"].model, from_checkpoint=True)
    with pytest.raises(ValueError, match="loads strictly"):
        model.load_state_dict(state["model"], strict=False)


def test_training_builds_are_unchanged():
    task, state = _task_and_state()
    assert isinstance(task, GenreTask)
    model = task.build_model(state["cfg"].model)
    assert not any(p.is_meta for p in model.parameters()) and "load_state_dict" not in vars(model)


def test_dropping_the_pages_of_a_mapped_tensor_keeps_its_values(tmp_path):
    path = str(tmp_path / "t.pt")
    values = torch.arange(300000, dtype=torch.float32).half()  # 600 kB: many pages
    torch.save({"a": values, "b": values[1000:5000]}, path)
    state = torch.load(path, mmap=True, weights_only=True)
    converted = state["a"].float()
    loading._drop_mapped_pages(state["a"])
    # the pages come back from the file: nothing is zeroed, neither the tensor nor its view
    assert torch.equal(state["a"], values) and torch.equal(state["b"], values[1000:5000])
    assert torch.equal(converted, values.float())


def test_an_fp16_checkpoint_loads_into_fp32_with_its_pages_dropped(tmp_path, monkeypatch):
    from genre_fairseq.hub import mGENRE

    dropped = []
    drop = loading._drop_mapped_pages
    monkeypatch.setattr(loading, "_drop_mapped_pages", lambda t: dropped.append(t.shape) or drop(t))
    hub = mGENRE.from_pretrained(MODEL, bpe=None, device="cpu")
    state = torch.load(os.path.join(MODEL, "model.pt"), weights_only=True)["model"]
    model = hub.models[0]
    assert dropped and all(p.dtype == torch.float32 for p in model.parameters())
    for name, param in model.state_dict().items():
        if name in state:
            assert torch.equal(param, state[name].to(param.dtype)), name
