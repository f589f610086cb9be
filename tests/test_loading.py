"""genre_fairseq.loading: the model built on meta and assigned the checkpoint's tensors equals fairseq's.

Each model is loaded both ways, fairseq's ``checkpoint_utils.load_model_ensemble_and_task`` (random
init, then a copy) and ``loading.load_model_ensemble_and_task``, and compared: the same parameters
and buffers (values and dtypes), the same ties, the same log-probabilities on a batch, and nothing
left on the meta device. Models: the shipped quickstart mGENRE (fairseq-train --task genre, fp16
weights), tiny GENRE / mGENRE in the released layout (``args`` Namespace, translation task), fp16
and fp32, and a tiny sinusoidal-position transformer (a table no checkpoint holds).
"""
import os

import pytest
import torch
from fairseq import checkpoint_utils, options, tasks

import genre_fairseq  # noqa: F401  (registers the presets, allow-lists checkpoint globals)
from genre_fairseq import loading
from genre_fairseq.hub import GENRE, mGENRE

from .toy import make_dictionary

loading_read = loading.read_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "examples", "quickstart", "model")
OVERRIDES = {"source_lang": "source", "target_lang": "target"}


def _tiny_checkpoint(directory, arch, *flags, fp16=False, n_words=40):
    """A randomly initialised ``arch`` saved as the released models are (flags in ``args``, no ``cfg``)."""
    directory.mkdir()
    dictionary = make_dictionary(n_words)
    for side in ("source", "target"):
        dictionary.save(str(directory / f"dict.{side}.txt"))
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(directory), "--task", "translation", "--arch", arch, "-s", "source", "-t", "target", "--cpu", *flags])
    torch.manual_seed(0)
    model = tasks.setup_task(args).build_model(args)
    state = model.state_dict()
    if fp16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"args": args, "cfg": None, "model": state, "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam", "lr_scheduler_state": {"best": None}, "num_updates": 7}],
                "extra_state": {}}, str(directory / "model.pt"))
    return str(directory)


def _both_ways(model_dir):
    path = os.path.join(model_dir, "model.pt")
    overrides = dict(OVERRIDES, data=model_dir)
    with loading.ordinary_builds():  # fairseq's own way, even once the genre task has wired in the mapped read
        (old,), _, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
    (new,), _, _ = loading.load_model_ensemble_and_task([path], arg_overrides=overrides)
    return old.eval(), new.eval()


def _ties(model):
    groups = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return sorted(sorted(names) for names in groups.values())


def _assert_same_model(old, new):
    old_state, new_state = old.state_dict(), new.state_dict()
    assert list(old_state) == list(new_state)
    for key, value in old_state.items():
        assert new_state[key].dtype == value.dtype, key
        assert torch.equal(new_state[key], value), key
    assert _ties(new) == _ties(old)
    assert loading._meta_tensors(new) == []
    torch.manual_seed(1)
    vocab = len(new.decoder.dictionary)
    src = torch.randint(4, vocab, (3, 9))
    prev = torch.randint(4, vocab, (3, 5))
    with torch.no_grad():
        expected = old(src, torch.full((3,), 9), prev)[0]
        got = new(src, torch.full((3,), 9), prev)[0]
    assert torch.equal(got, expected)


def test_quickstart_model_loads_as_fairseq_loads_it():
    old, new = _both_ways(QUICKSTART)
    assert next(new.parameters()).dtype == torch.float32  # fp16 weights, fp32 model, as before
    assert new.encoder.embed_tokens.weight is new.decoder.embed_tokens.weight
    assert new.decoder.output_projection.weight is new.decoder.embed_tokens.weight
    _assert_same_model(old, new)


@pytest.mark.parametrize("arch", ["genre_tiny", "mgenre_tiny"])
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_released_layout_loads_as_fairseq_loads_it(tmp_path, arch, fp16):
    model_dir = _tiny_checkpoint(tmp_path / arch, arch, fp16=fp16)
    _assert_same_model(*_both_ways(model_dir))


def test_sinusoidal_positions_are_rebuilt(tmp_path):
    model_dir = _tiny_checkpoint(tmp_path / "transformer", "transformer", "--encoder-embed-dim", "16",
                                 "--decoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
                                 "--decoder-ffn-embed-dim", "32", "--encoder-layers", "1", "--decoder-layers", "1",
                                 "--encoder-attention-heads", "2", "--decoder-attention-heads", "2")
    old, new = _both_ways(model_dir)
    assert torch.equal(new.encoder.embed_positions.weights, old.encoder.embed_positions.weights)
    _assert_same_model(old, new)


def test_fp32_parameters_are_the_checkpoints_tensors_not_a_copy(tmp_path, monkeypatch):
    model_dir = _tiny_checkpoint(tmp_path / "m", "mgenre_tiny")
    read = []
    monkeypatch.setattr(loading, "read_checkpoint", lambda *a: read.append(loading_read(*a)) or read[-1])
    _, new = _both_ways(model_dir)
    mapped = read[0]["model"]
    for name, param in new.named_parameters():
        assert param.data_ptr() == mapped[name].data_ptr(), name


def test_a_tensor_that_cannot_be_rebuilt_falls_back_to_fairseqs_way(tmp_path, monkeypatch, caplog):
    model_dir = _tiny_checkpoint(tmp_path / "m", "genre_tiny")
    monkeypatch.setattr(loading, "_rebuild_computed_tensors", lambda model: None)  # _future_mask stays meta
    old, new = _both_ways(model_dir)
    assert "cannot be rebuilt (decoder._future_mask)" in caplog.text
    _assert_same_model(old, new)


def test_hub_loads_through_loading_and_samples_like_fairseqs_model():
    hub = mGENRE.from_pretrained(QUICKSTART, device="cpu")
    assert not any(p.is_meta for p in hub.models[0].parameters())
    baseline = mGENRE.from_pretrained(QUICKSTART, device="cpu")
    old, _ = _both_ways(QUICKSTART)
    baseline.models = [old]
    sentence = ["[START] Berlino [END] è la capitale della Germania."]
    assert hub.sample(sentence, beam=3) == baseline.sample(sentence, beam=3)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_checkpoint_is_one_clear_error(tmp_path, damage):
    model_dir = _tiny_checkpoint(tmp_path / "m", "genre_tiny")
    path = os.path.join(model_dir, "model.pt")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint\n" * 100, "empty": b""}[damage])
    with pytest.raises(ValueError) as error:
        GENRE.from_pretrained(model_dir, bpe=None, device="cpu")
    message = str(error.value)
    assert message.startswith(f"{path}: not a loadable fairseq checkpoint (")
    assert "\n" not in message


def test_a_checkpoint_without_a_model_is_one_clear_error(tmp_path):
    model_dir = _tiny_checkpoint(tmp_path / "m", "genre_tiny")
    path = os.path.join(model_dir, "model.pt")
    history = [{"criterion_name": "x", "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": 0}]
    torch.save({"args": None, "cfg": None, "extra_state": {}, "optimizer_history": history}, path)
    with pytest.raises(ValueError, match=r"model\.pt: not a loadable fairseq checkpoint \(KeyError: 'model: the file"):
        GENRE.from_pretrained(model_dir, bpe=None, device="cpu")


def test_dictionaries_of_another_size_are_named(tmp_path):
    model_dir = _tiny_checkpoint(tmp_path / "m", "genre_tiny")
    for side in ("source", "target"):
        make_dictionary(45).save(os.path.join(model_dir, f"dict.{side}.txt"))
    with pytest.raises(ValueError, match=r"does not fit the dictionaries in .*size mismatch for "
                                         r"encoder\.embed_tokens\.weight"):
        GENRE.from_pretrained(model_dir, bpe=None, device="cpu")


def test_build_for_checkpoint_makes_fairseqs_own_loader_assign(tmp_path):
    model_dir = _tiny_checkpoint(tmp_path / "m", "mgenre_tiny", fp16=True)
    path = os.path.join(model_dir, "model.pt")
    overrides = dict(OVERRIDES, data=model_dir)
    with loading.ordinary_builds():
        (old,), cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides)
    build = task.build_model
    task.build_model = lambda cfg, from_checkpoint=False: loading.build_for_checkpoint(build, cfg, from_checkpoint)
    (new,), _, _ = checkpoint_utils.load_model_ensemble_and_task([path], arg_overrides=overrides, task=task)
    _assert_same_model(old.eval(), new.eval())
