"""Bad input on the decoding side: the hub's options and sentences, fairseq-generate --task genre.

Every case gets one clear line (a ValueError naming the option or sentence; on the command line
``error: ...`` and exit 2, no traceback). Commands run on the shipped quickstart model.
"""

import math
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from genre_fairseq.marginalize import add_nil, check_nil_options
from genre_fairseq.task import GenreError, one_line_error

from . import inprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "examples", "quickstart", "model")
PLUGIN = os.path.join(ROOT, "genre_fairseq")
BIN = os.path.dirname(sys.executable)
GOOD = "Die Regierung von [START] Frankreich [END] hat am Montag neue Regeln beschlossen."


# ------------------------------------------------------------------ NIL decision (exact, by hand)
RANKED = [{"id": "A", "score": -0.5, "texts": ["a"], "scores": [-0.5]},
          {"id": "B", "score": -0.9, "texts": ["b"], "scores": [-0.9]}]


def test_nil_by_threshold_and_by_margin():
    assert add_nil(RANKED) is RANKED  # no option: unchanged
    kept = add_nil(RANKED, threshold=-0.6)
    assert [e["id"] for e in kept] == ["A", "B"] and not any(e["nil"] for e in kept)
    nil = add_nil(RANKED, threshold=-0.4)
    assert nil[0] == {"id": None, "texts": [], "scores": [], "nil": True, "score": -0.5}
    assert [e["id"] for e in nil[1:]] == ["A", "B"]
    assert add_nil(RANKED, margin=0.39)[0]["id"] == "A"  # -0.5 beats -0.9 by 0.4
    assert add_nil(RANKED, margin=0.41)[0]["nil"] is True
    assert add_nil(RANKED[:1], margin=10.0)[0]["id"] == "A"  # no rival: the margin does not apply
    assert add_nil([], threshold=-100.0) == [{"id": None, "texts": [], "scores": [], "nil": True, "score": -math.inf}]
    texts = add_nil([{"text": "x >> en", "score": -2.0, "candidates": "no candidates: full tree"}], threshold=-1.0)
    assert texts[0] == {"text": None, "candidates": "no candidates: full tree", "nil": True, "score": -2.0}


@pytest.mark.parametrize("threshold,margin,message", [
    (math.nan, None, "nil_threshold must be a finite number"), ("-1", None, "nil_threshold must be a finite number"),
    (None, -0.1, "nil_margin must be a finite number >= 0"), (None, math.inf, "nil_margin must be")])
def test_impossible_nil_options_are_refused(threshold, margin, message):
    with pytest.raises(ValueError, match=message):
        check_nil_options(threshold, margin)


# ------------------------------------------------------------------ the error hook's one lines
def _raised(exc):
    try:
        raise exc
    except Exception as e:  # noqa: BLE001
        return one_line_error(e, e.__traceback__)


def test_one_line_errors_of_fairseq_and_torch_refusals_and_ours():
    assert _raised(GenreError("--beam must be >= 1, got 0")) == "--beam must be >= 1, got 0"
    assert _raised(pickle.UnpicklingError("invalid load key, 'x'.")).startswith("checkpoint (--path) refused")
    size = RuntimeError("Error(s) in loading state_dict for BARTModel:\n\tsize mismatch for encoder.embed_tokens."
                        "weight: copying a param with shape [10, 8], the shape in current model is [12, 8].")
    assert "size mismatch for encoder.embed_tokens.weight" in _raised(size)
    long = Exception("Size of sample #0 is invalid (=(300, 0)) since max_positions=(256, 256), skip this example "
                     "with --skip-invalid-size-inputs-valid-test")
    assert _raised(long).startswith("Size of sample #0 is invalid")
    # A ValueError of fairseq itself, or any other error, is a bug: it keeps its traceback.
    assert _raised(ValueError("from fairseq")) is None and _raised(KeyError("id")) is None


# ------------------------------------------------------------------ the hub
@pytest.fixture(scope="module")
def hub():
    from genre_fairseq.hub import mGENRE

    return mGENRE.from_pretrained(MODEL, device="cpu")


TRIE = os.path.join(MODEL, "cldr.trie")
NAMES = os.path.join(MODEL, "cldr.names")


@pytest.mark.parametrize("options,message", [
    ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
    ({"beam": 0}, "beam must be an integer >= 1, got 0"),
    ({"max_len_b": 0}, "max_len_b must be an integer >= 1"),
    ({"candidates_k": 0}, "candidates_k must be None"),
    ({"alpha": -1.0}, "alpha must be a finite number >= 0"),
    ({"alpha": math.nan}, "alpha must be a finite number >= 0"),
    ({"candidate_multiple": 3}, "candidate_multiple must be 1"),
    ({"marginalize": True}, "marginalize=True groups hypotheses by entity: it needs name_table="),
    ({"nil_margin": -1.0}, "nil_margin must be"),
])
def test_hub_refuses_impossible_option_values(hub, options, message):
    with pytest.raises(ValueError) as e:
        hub.sample([GOOD], trie=TRIE, **options)
    assert message in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError):  # before looking at the sentences: an empty list too
        hub.sample([], trie=TRIE, **options)


def test_hub_refuses_an_empty_mention(hub):
    with pytest.raises(ValueError, match=r"sentence 1: empty mention: no word between \[START\] and \[END\]"):
        hub.sample([GOOD, "Die Regierung von [START] [END] hat."], trie=TRIE)


def test_hub_reference_search_and_nil(hub):
    default = hub.sample([GOOD], beam=4, trie=TRIE, name_table=NAMES)[0]
    reference = hub.sample([GOOD], beam=4, trie=TRIE, name_table=NAMES, candidate_multiple=1)[0]
    assert default[0]["id"] == reference[0]["id"] == "territory:FR"
    assert "nil" not in default[0]
    nil = hub.sample([GOOD], beam=4, trie=TRIE, name_table=NAMES, nil_threshold=default[0]["score"] + 1e-3)[0]
    assert nil[0]["nil"] is True and nil[0]["id"] is None and nil[1]["id"] == "territory:FR"
    kept = hub.sample([GOOD], beam=4, trie=TRIE, name_table=NAMES, nil_threshold=default[0]["score"] - 1e-3)[0]
    assert kept[0]["id"] == "territory:FR" and kept[0]["nil"] is False


def test_every_tensor_handed_to_the_generator_follows_the_model_device(hub, monkeypatch):
    """On a GPU fairseq indexes sample["id"] with CUDA indices: 'meta' stands in for the model's device."""
    from genre_fairseq import search

    seen = []

    def fake_generate(self, models, sample, **kwargs):
        seen.append(sample)
        return [[] for _ in range(sample["id"].numel())]

    monkeypatch.setattr(search.PrefixTreeSequenceGenerator, "generate", fake_generate)
    monkeypatch.setattr(hub, "device", torch.device("meta"))
    hub.sample([GOOD, GOOD], trie=TRIE, batch_size=1)
    hub.sample([GOOD], trie=TRIE, candidates=[["territory:FR >> de"]])
    assert len(seen) == 3

    def tensors(x):
        if torch.is_tensor(x):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from tensors(v)

    assert all(t.device.type == "meta" for s in seen for t in tensors(s))


# ------------------------------------------------------------------ fairseq-generate --task genre
def _run(cmd, timeout=600, real=False):
    """The command in this process (tests/inprocess.py); ``real=True``: a subprocess, the script in bin/ itself."""
    if not real:
        return inprocess.run(cmd[0], cmd[1:])
    proc = subprocess.run([os.path.join(BIN, cmd[0])] + cmd[1:], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Binarized subsets of the quickstart: 'test' (good), 'unmarked', 'empty' (an empty line), 'nomention', 'long'."""
    w = tmp_path_factory.mktemp("bad_decoding")
    subsets = {"test": [GOOD, "Wer in Zürich einkauft, bezahlt mit [START] Schweizer Franken [END] ."],
               "unmarked": [GOOD, "Die Regierung von Frankreich hat am Montag."],
               "empty": [GOOD, ""],
               "nomention": ["Die Regierung von [START] [END] hat."],
               "long": ["[START] Frankreich [END] " + "sehr " * 300]}
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(MODEL, "spm.model"))
    for name, lines in subsets.items():
        with open(w / f"{name}.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        with open(w / f"{name}.source", "w", encoding="utf-8") as f:
            f.write("".join(" ".join(sp.encode(x, out_type=str)) + "\n" for x in lines))
    prefs = ",".join(str(w / n) for n in subsets if n != "test")
    proc = _run(["fairseq-preprocess", "--only-source", "--source-lang", "source", "--target-lang", "target",
                 "--testpref", f"{w / 'test'},{prefs}", "--destdir", str(w / "bin"),
                 "--srcdict", os.path.join(MODEL, "dict.source.txt"), "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copy(os.path.join(MODEL, "dict.target.txt"), w / "bin")
    return w


def _generate(w, subset="test", *extra, path=os.path.join(MODEL, "model.pt"), data_dir=None, kb=True, real=False):
    return _run(real=real, cmd=["fairseq-generate", str(data_dir or w / "bin"), "--user-dir", PLUGIN, "--task", "genre",
                 "--source-lang", "source", "--target-lang", "target", "--path", path,
                 *(["--trie", TRIE, "--name-table", NAMES] if kb else []), "--bpe", "sentencepiece",
                 "--sentencepiece-model", os.path.join(MODEL, "spm.model"), "--gen-subset", subset,
                 "--beam", "4", "--nbest", "2", "--cpu", "--batch-size", "1", *extra])


def _one_line(proc, expected):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-1].startswith("error: ") and expected in lines[-1], lines[-1]


def test_good_input_links_and_nil_lines(data):
    proc = _generate(data, "test", "--nil-threshold", "0", real=True)  # the command itself, in its own process
    assert proc.returncode == 0, proc.stderr[-2000:]
    e_lines = [x.split("\t") for x in proc.stdout.splitlines() if x.startswith("E-")]
    ranks0 = {x[0]: x for x in e_lines if x[1] == "0"}
    assert set(ranks0) == {"E-0", "E-1"} and all(x[3] == "NIL" for x in ranks0.values())  # every score < 0
    assert {x[3] for x in e_lines if x[0] == "E-0" and x[1] == "1"} == {"territory:FR"}


@pytest.mark.parametrize("subset,expected", [
    ("test1", "sentence 1 (line 2 of the input): no mention marked [START] ... [END]"),
    ("test2", "sentence 1 (line 2 of the input): no mention marked [START] ... [END] or [START_ENT] ... [END_ENT] "
              "(an empty line)"),
    ("test3", "sentence 0 (line 1 of the input): empty mention"),
    ("test4", "Size of sample #0 is invalid"),
])
def test_bad_lines_are_refused_in_one_line(data, subset, expected):
    # fairseq's own refusal of a long input reaches the genre hook in a real process too
    _one_line(_generate(data, subset, real=subset == "test4"), expected)


@pytest.mark.parametrize("extra,expected", [
    (["--beam", "0"], "--beam must be >= 1, got 0"),
    (["--nbest", "5"], "--nbest must be between 1 and --beam 4, got 5"),
    (["--candidate-multiple", "3"], "--candidate-multiple must be 1 or 2, got 3"),
    (["--nil-margin", "-1"], "--nil_margin must be a finite number >= 0"),
])
def test_impossible_generation_options_are_one_line(data, extra, expected):
    # one GenreError of the task's set-up in a real process: the hook installed there ends it in one line
    _one_line(_generate(data, "test", *extra, real=extra == ["--beam", "0"]), expected)


def test_short_candidates_file_and_bad_checkpoints_are_one_line(data, tmp_path):
    cands = tmp_path / "cands.tsv"
    cands.write_text("territory:FR\n")
    _one_line(_generate(data, "test", "--candidates-file", str(cands)), "has 1 lines, but the test subset has 2")

    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    _one_line(_generate(data, path=str(garbage)), "checkpoint (--path) refused")

    other = tmp_path / "bin"
    shutil.copytree(data / "bin", other)
    for side in ("source", "target"):  # one dictionary grown alone fails earlier, also in one line
        with open(other / f"dict.{side}.txt", "a", encoding="utf-8") as f:
            f.write("".join(f"extra{i} 1\n" for i in range(5)))
    _one_line(_generate(data, data_dir=other, kb=False), "does not fit the dictionaries")
