"""fairseq checkpoints load on torch >= 2.6 with weights_only kept on; anything else is refused.

The module fixture trains a tiny model with the real ``fairseq-train`` (a few seconds on CPU) and
derives from it the checkpoint layouts users hold: the one fairseq 0.12 writes (``cfg`` dict) and the
one older fairseq and the official GENRE/mGENRE models have (``args`` Namespace, ``cfg`` None), the
latter also in torch's legacy non-zip file format.
"""

import argparse
import builtins
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.models.bart import BARTModel

import genre_fairseq
from genre_fairseq import checkpoints

from . import inprocess

genre_fairseq.register()  # what fairseq's --user-dir does, whatever imported the package before

PLUGIN_DIR = Path(genre_fairseq.__file__).resolve().parent
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
N_TEST = 4
SUBPROCESS_TIMEOUT = 300
LAYOUTS = ["new", "old", "old_legacy"]


def _cli(name):
    """The path of a fairseq console script of this interpreter's environment."""
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def _run(argv, cwd):
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, check=False)


def _check(result):
    assert result.returncode == 0, f"{result.args[0]} failed:\n{result.stderr[-3000:]}"
    return result


def _write_split(raw, split, n, rng):
    with open(raw / f"{split}.src", "w") as src, open(raw / f"{split}.tgt", "w") as tgt:
        for _ in range(n):
            words = list(rng.choice(WORDS, size=5))
            src.write(" ".join(words) + "\n")
            tgt.write(" ".join(reversed(words[:3])) + "\n")


class _Payload:
    """Pickles as a call to ``builtins.exec`` (or ``os.system``) that creates a marker file."""

    def __init__(self, marker, via="exec"):
        self.marker, self.via = str(marker), via

    def __reduce__(self):
        if self.via == "exec":
            return builtins.exec, (f"open({self.marker!r}, 'w').close()",)
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Paths of the data and of new-layout, old-layout and malicious checkpoints of one tiny model."""
    root = tmp_path_factory.mktemp("checkpoints")
    raw, data = root / "raw", root / "data-bin"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("valid", 8), ("test", N_TEST)):
        _write_split(raw, split, n, rng)
    # in this process (tests/inprocess.py): binarizing loads no checkpoint, and its files are the same
    _check(inprocess.run("fairseq-preprocess", [
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", raw / "train", "--validpref", raw / "valid",
        "--testpref", raw / "test", "--destdir", data, "--joined-dictionary", "--workers", "1"]))
    # --eval-bleu makes fairseq keep numpy arrays (BLEU n-gram counts) in extra_state["metrics"].
    _check(_run([_cli("fairseq-train"), data, "--user-dir", PLUGIN_DIR, "--task", "translation",
                 "--arch", "genre_tiny", "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "1000",
                 "--max-update", "3", "--cpu", "--criterion", "label_smoothed_cross_entropy",
                 "--label-smoothing", "0.1", "--save-dir", root / "ck", "--no-epoch-checkpoints",
                 "--eval-bleu", "--eval-bleu-args", json.dumps({"beam": 1, "max_len_b": 8}),
                 "--no-progress-bar", "--seed", "1"], root))
    new = root / "ck" / "checkpoint_last.pt"

    # Our own file, so trusted: a full unpickle is fine here, and only here.
    state = torch.load(new, map_location="cpu", weights_only=False)
    model_args = state["cfg"]["model"]
    assert isinstance(model_args, argparse.Namespace)  # all flags, flat, as fairseq < 0.10 stored them
    state_old = dict(state, args=model_args, cfg=None)
    old, old_legacy = root / "old_layout.pt", root / "old_layout_legacy.pt"
    torch.save(state_old, old)
    # Files written by torch < 1.6 (e.g. bart.large, 2019) are in the legacy, non-zip format.
    torch.save(state_old, old_legacy, _use_new_zipfile_serialization=False)

    evil, evil_marker = root / "malicious.pt", root / "PWNED"
    state_evil = dict(state, extra_state=dict(state["extra_state"], payload=_Payload(evil_marker)))
    torch.save(state_evil, evil)
    return {"root": root, "data": data, "new": new, "old": old, "old_legacy": old_legacy, "state": state,
            "evil": evil, "evil_marker": evil_marker}


# ------------------------------------------------------------------------ the allow-list itself


def test_plugin_import_allow_lists_the_globals():
    """Loading the plugin into fairseq (what --user-dir does) registers the list; a second call changes nothing."""
    safe = torch.serialization.get_safe_globals()
    assert argparse.Namespace in safe
    assert all(entry in safe for entry in checkpoints.fairseq_checkpoint_globals())
    checkpoints.allow_fairseq_checkpoint_globals()
    assert torch.serialization.get_safe_globals() == safe


def test_allow_list_holds_only_plain_data_types():
    for entry in checkpoints.fairseq_checkpoint_globals():
        function, name = entry if isinstance(entry, tuple) else (entry, None)
        module = name.rsplit(".", 1)[0] if name else function.__module__
        assert module in ("argparse", "numpy", "numpy.dtypes", "numpy._core.multiarray",
                          "numpy.core.multiarray"), entry


def test_numpy_values_of_numpy_1_and_2_load():
    """numpy 1.x pickles name numpy.core.multiarray, numpy 2 numpy._core.multiarray: both load."""
    values = {"best": np.float64(1.5), "counts": np.array([9, 1, 0]), "f": np.array([0.5], np.float32),
              "n": np.int64(3), "flag": np.bool_(True)}
    buffer = io.BytesIO()
    torch.save(values, buffer, _use_new_zipfile_serialization=False)
    for raw in (buffer.getvalue(), buffer.getvalue().replace(b"numpy._core.multiarray\n",
                                                             b"numpy.core.multiarray\n")):
        loaded = torch.load(io.BytesIO(raw))
        assert loaded["best"] == 1.5 and isinstance(loaded["best"], np.float64)
        assert loaded["counts"].tolist() == [9, 1, 0] and loaded["f"].dtype == np.float32
        assert loaded["n"] == 3 and loaded["flag"]


def test_numpy_object_arrays_are_refused():
    buffer = io.BytesIO()
    torch.save({"objects": np.array([1, "x"], dtype=object)}, buffer)
    buffer.seek(0)
    with pytest.raises(Exception, match="ObjectDType"):
        torch.load(buffer)


# ----------------------------------------------------------- loading through fairseq, both layouts


@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_model_ensemble_and_task(ckpt, layout):
    models, cfg, _task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt[layout])])
    (model,) = models
    assert isinstance(model, BARTModel)
    assert cfg.model.arch == "genre_tiny"
    expected = ckpt["state"]["model"]["encoder.embed_tokens.weight"]
    assert torch.equal(model.encoder.embed_tokens.weight, expected)


@pytest.mark.parametrize("layout", ["new", "old"])  # old_legacy differs in file format only
def test_fairseq_generate_with_the_plugin(ckpt, layout):
    # --required-batch-size-multiple 1: with fairseq's default of 8, batch_by_size drops a last
    # batch whose size is not a multiple of 8, so N_TEST = 4 sentences would yield no output at all.
    result = _check(_run([_cli("fairseq-generate"), ckpt["data"], "--user-dir", PLUGIN_DIR,
                          "--path", ckpt[layout], "--task", "translation", "--source-lang", "src",
                          "--target-lang", "tgt", "--gen-subset", "test", "--beam", "2",
                          "--max-len-b", "8", "--required-batch-size-multiple", "1", "--cpu"],
                         ckpt["root"]))
    hypotheses = [line for line in result.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == N_TEST


def test_without_the_plugin_torch_refuses_fairseq_checkpoints(ckpt):
    """The problem being fixed: plain fairseq on this torch cannot read its own checkpoints.

    The same fresh process lists every global the checkpoints name beyond torch's defaults
    (in this process the plugin has allow-listed them, so torch would no longer report them).
    """
    script = (
        "import sys, torch\n"
        "from fairseq import checkpoint_utils\n"
        "for path in sys.argv[1:]:\n"
        "    if not path.endswith('legacy.pt'):  # torch lists globals of zip-format files only\n"
        "        print('GLOBALS', *sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path)))\n"
        "    try:\n"
        "        checkpoint_utils.load_model_ensemble_and_task([path])\n"
        "        print('LOADED')\n"
        "    except Exception as error:\n"
        "        print('REFUSED', type(error).__name__, 'argparse.Namespace' in str(error))\n"
    )
    result = _check(_run([sys.executable, "-c", script, *(ckpt[layout] for layout in LAYOUTS)],
                         ckpt["root"]))
    needed = "GLOBALS argparse.Namespace numpy._core.multiarray._reconstruct numpy.dtype numpy.ndarray"
    refused = "REFUSED UnpicklingError True"
    assert result.stdout.splitlines() == [needed, refused, needed, refused, refused], result.stdout


# -------------------------------------------------------------------------- malicious checkpoints


def test_the_payload_is_live_when_fully_unpickled(tmp_path):
    """Control: the payload does run under weights_only=False, so the refusals below are meaningful."""
    marker = tmp_path / "control"
    torch.save({"payload": _Payload(marker)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("via, named", [("exec", "GLOBAL exec"), ("system", "posix.system")])
def test_malicious_checkpoint_is_refused_in_process(ckpt, tmp_path, via, named):
    marker = tmp_path / "PWNED"
    path = tmp_path / "malicious.pt"
    state = ckpt["state"]
    torch.save(dict(state, extra_state=dict(state["extra_state"], payload=_Payload(marker, via))), path)
    with pytest.raises(Exception, match=named):
        checkpoint_utils.load_model_ensemble_and_task([str(path)])
    assert not marker.exists()


def test_malicious_checkpoint_is_refused_by_fairseq_generate(ckpt):
    result = _run([_cli("fairseq-generate"), ckpt["data"], "--user-dir", PLUGIN_DIR,
                   "--path", ckpt["evil"], "--task", "translation", "--source-lang", "src",
                   "--target-lang", "tgt", "--gen-subset", "test", "--beam", "2", "--cpu"], ckpt["root"])
    assert result.returncode != 0
    assert "Unsupported global: GLOBAL exec" in result.stderr
    assert not ckpt["evil_marker"].exists()
