"""Validation while training (--eval-accuracy): constrained decoding of the validation set, logged as accuracy.

A tiny model is trained 300 updates on the demo's synthetic task, validated every 100 updates;
the logged accuracies must equal those of an independent fairseq-generate run on the checkpoint.
"""

import os
import re
import subprocess
import sys

import pytest

from . import inprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "genre_fairseq")
BIN = os.path.dirname(sys.executable)
GENERATION = {"beam": 5, "max_len_b": 32}


#: Commands that run in this process (tests/inprocess.py: one thread, the same output); training gets its own.
IN_PROCESS = {"fairseq-preprocess", "fairseq-generate", "genre-trie"}


def run(cmd, **kw):
    if cmd[0] in IN_PROCESS:
        return inprocess.run(cmd[0], cmd[1:])
    # one thread per process: tiny models on shared cores run several times faster than with contended threads
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([os.path.join(BIN, cmd[0])] + cmd[1:], capture_output=True, text=True, timeout=900,
                          env=env, **kw)


def check(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def train_command(w, *extra):
    return [
        "fairseq-train", str(w / "bin"), "--user-dir", PLUGIN, "--task", "genre", "--arch", "genre_tiny",
        "--optimizer", "adam", "--lr", "0.01", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", "1000", "--cpu", "--seed", "1", "--save-dir", str(w / "ckpt"), "--num-workers", "0",
        "--no-progress-bar", "--log-interval", "100", "--no-epoch-checkpoints", *extra,
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The demo's data (40 validation sentences), its trie and name table."""
    w = tmp_path_factory.mktemp("trainval")
    check(run(["python", os.path.join(ROOT, "examples", "demo", "make_data.py"), str(w)]))
    check(run([
        "fairseq-preprocess", "--source-lang", "source", "--target-lang", "target",
        "--trainpref", str(w / "train"), "--validpref", str(w / "valid"),
        "--destdir", str(w / "bin"), "--joined-dictionary", "--workers", "1",
    ]))
    check(run(["genre-trie", "build", "--tokenized", str(w / "kb.txt"), "--dict", str(w / "bin" / "dict.target.txt"),
               "--format", "name_lang", "--output", str(w / "kb.trie"), "--quiet"]))
    from examples.demo.make_data import LANGS, NAMES

    # entity 'ent:<name>' is named '<name>' in both languages: 2 identifiers per entity
    (w / "kb.tsv").write_text("".join(f"ent:{n.replace(' ', '_')}\t{lang}\t{n}\n" for n in NAMES for lang in LANGS))
    check(run(["genre-trie", "names", "--tsv", str(w / "kb.tsv"), "--output", str(w / "kb.names"), "--quiet"]))
    return w


VALID_LINE = re.compile(r"\| valid on 'valid' subset \| (.*)$")


def _validations(log):
    """The fields of each validation line of a fairseq-train log, as floats."""
    rows = []
    for line in log.splitlines():
        m = VALID_LINE.search(line)
        if m:
            rows.append({k: float(v) for k, v in (f.strip().split(" ", 1) for f in m.group(1).split("|"))})
    return rows


@pytest.fixture(scope="module")
def trained(workdir):
    import json

    proc = check(run(train_command(
        workdir, "--max-update", "300", "--validate-interval", "1000", "--validate-interval-updates", "100",
        "--save-interval", "1000", "--save-interval-updates", "100", "--keep-interval-updates", "1",
        "--trie", str(workdir / "kb.trie"), "--name-table", str(workdir / "kb.names"),
        "--eval-accuracy", "--eval-accuracy-args", json.dumps(GENERATION),
        "--best-checkpoint-metric", "identifier_acc", "--maximize-best-checkpoint-metric",
    )))
    return proc.stderr + proc.stdout


def test_validation_loss_falls_and_accuracy_is_logged(trained):
    rows = _validations(trained)
    assert [r["num_updates"] for r in rows] == [100, 200, 300]
    assert rows[-1]["loss"] < rows[0]["loss"]
    # the synthetic task is learnable (chance: 1 identifier in 16): after 300 updates most mentions are linked.
    # 2 * beam candidates per step (the default) measured 62.5 / 82.5 here, beam candidates (the reference)
    # >= 70 / >= 90: the wider search finds identifiers this half-trained model scores higher, some wrong.
    assert rows[-1]["identifier_acc"] >= 60.0
    assert rows[-1]["entity_acc"] >= 75.0
    # an entity has two identifiers (name >> en, name >> de): entity accuracy is never lower
    assert all(r["entity_acc"] >= r["identifier_acc"] for r in rows)
    # --best-checkpoint-metric identifier_acc --maximize-best-checkpoint-metric
    assert rows[-1]["best_identifier_acc"] == max(r["identifier_acc"] for r in rows)


def test_logged_accuracy_equals_fairseq_generate_on_the_checkpoint(workdir, trained):
    """identifier_acc and entity_acc of the last validation, recomputed from fairseq-generate's output."""
    last = _validations(trained)[-1]
    out = check(run([
        "fairseq-generate", str(workdir / "bin"), "--user-dir", PLUGIN, "--task", "genre",
        "--path", str(workdir / "ckpt" / "checkpoint_last.pt"), "--gen-subset", "valid",
        "--trie", str(workdir / "kb.trie"), "--name-table", str(workdir / "kb.names"),
        "--beam", str(GENERATION["beam"]), "--max-len-b", str(GENERATION["max_len_b"]),
        "--max-tokens", "1000", "--cpu",
    ])).stdout
    lines = [line.split("\t") for line in out.splitlines()]
    gold = {f[0][2:]: f[1] for f in lines if f[0].startswith("T-")}
    best = {}
    for f in lines:
        if f[0].startswith("H-"):
            best.setdefault(f[0][2:], f[2])
    top_entity = {f[0][2:]: f[3] for f in lines if f[0].startswith("E-") and f[1] == "0"}
    assert len(gold) == 40
    identifier_right = sum(best.get(i) == g for i, g in gold.items())
    entity_right = sum(top_entity.get(i) == "ent:" + g.split(" >> ")[0].replace(" ", "_") for i, g in gold.items())
    assert last["identifier_acc"] == pytest.approx(100.0 * identifier_right / 40, abs=1e-3)
    assert last["entity_acc"] == pytest.approx(100.0 * entity_right / 40, abs=1e-3)
    assert entity_right > identifier_right  # the two metrics differ on this checkpoint: both are checked


def _build(workdir, *extra, eval_accuracy=True):
    """Set up the task and build the model as fairseq-train does, in this process: (task, model)."""
    import torch
    from fairseq import options, tasks

    import genre_fairseq  # noqa: F401

    argv = [str(workdir / "bin"), "--task", "genre", "--arch", "genre_tiny", "--dropout", "0",
            "--attention-dropout", "0", *(["--eval-accuracy"] if eval_accuracy else []), *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    return task, task.build_model(args)


def test_eval_accuracy_needs_a_trie_and_valid_options(workdir):
    trie = ["--trie", str(workdir / "kb.trie")]
    with pytest.raises(ValueError, match=r"^--eval-accuracy decodes the validation set with the constrained search: "
                                         r"give --trie KB.trie$"):
        _build(workdir)
    with pytest.raises(ValueError, match=r"^--eval-accuracy-args is not valid JSON \(.*\): '\{beam: 5\}'$"):
        _build(workdir, *trie, "--eval-accuracy-args", "{beam: 5}")
    with pytest.raises(ValueError, match=r"^--eval-accuracy-args must be a JSON object"):
        _build(workdir, *trie, "--eval-accuracy-args", "[5]")
    with pytest.raises(ValueError, match=r"^--eval-accuracy-bpe decodes identifiers for entity_acc: give --name-table"):
        _build(workdir, *trie, "--eval-accuracy-bpe", '{"bpe": "sentencepiece"}')
    names = ["--name-table", str(workdir / "kb.names")]
    with pytest.raises(ValueError, match=r"^--eval-accuracy-bpe must be a JSON object, e.g. "):
        _build(workdir, *trie, *names, "--eval-accuracy-bpe", '"sentencepiece"')
    with pytest.raises(ValueError, match=r"^--eval-accuracy-bpe must name the BPE"):
        _build(workdir, *trie, *names, "--eval-accuracy-bpe", '{"sentencepiece_model": "spm.model"}')
    task, model = _build(workdir, *trie, *names, "--eval-accuracy-args", '{"beam": 3}')
    assert model is not None and task._accuracy_generator.beam_size == 3


def test_validation_generator_leaves_the_training_forward_unchanged(workdir):
    """Building a beam-5 generator must not switch BART's beam shortcut on for training batches.

    fairseq's SequenceGenerator does (set_beam_size): a batch of 10 rows would then attend to the
    sources of rows 0 and 5 only.
    """
    import torch

    task, plain = _build(workdir, eval_accuracy=False)
    _, with_eval = _build(workdir, "--trie", str(workdir / "kb.trie"), "--eval-accuracy-args", '{"beam": 5}')
    task.load_dataset("valid")
    data = task.datasets["valid"]
    sample = data.collater([data[i] for i in range(10)])
    plain.train()
    with_eval.train()
    expected, _ = plain(**sample["net_input"])
    got, _ = with_eval(**sample["net_input"])
    assert torch.equal(got, expected)


def test_hub_loads_a_checkpoint_whose_training_files_moved(workdir, trained, tmp_path):
    """The checkpoint records --trie / --name-table of --eval-accuracy; the hub must not reopen them."""
    import shutil

    from genre_fairseq.hub import mGENRE

    release = tmp_path / "release"
    release.mkdir()
    shutil.copy(workdir / "ckpt" / "checkpoint_last.pt", release / "model.pt")
    for side in ("source", "target"):
        shutil.copy(workdir / "bin" / f"dict.{side}.txt", release / f"dict.{side}.txt")
    moved = tmp_path / "kb.trie"
    shutil.move(str(workdir / "kb.trie"), moved)
    try:
        model = mGENRE.from_pretrained(str(release), bpe=None, device="cpu")
        out = model.sample(["the [START] ha [END] de"], beam=2, trie=str(moved))
        assert out[0] and all(" >> " in e["text"] for e in out[0])
    finally:
        shutil.move(str(moved), workdir / "kb.trie")
