"""Bad input through the real commands: one line on stderr naming the path or option, exit 2, no traceback,
no output or temporary file left behind, and no input overwritten. Also: a flipped byte anywhere in a
tree or table file is an error naming the file, never an answer."""
import json
import os
from pathlib import Path

import pytest

from genre_fairseq.evaluate import main as evaluate_main
from genre_fairseq.name_table import MentionTable, NameTable
from genre_fairseq.prefix_tree import PrefixTree
from tests.toy import make_dictionary
from trie_tools.cli import main as trie_main
from trie_tools.prepare import main as prepare_main

FIXTURES = Path(__file__).parent / "fixtures"
KB_TSV = FIXTURES / "dumps" / "custom_kb.tsv"
PAGE_SQL = FIXTURES / "dumps" / "page.sql"
REDIRECT_SQL = FIXTURES / "dumps" / "redirect.sql"
WIKIDATA = FIXTURES / "dumps" / "wikidata.json"
KILT = FIXTURES / "kilt" / "el-dev.jsonl"
ANCHORS = FIXTURES / "prepare" / "anchors.jsonl"
SPM = Path(__file__).parent.parent / "examples" / "quickstart" / "model" / "spm.model"
COMMANDS = {"trie": trie_main, "prepare": prepare_main, "evaluate": evaluate_main}


def _listing(directory: Path) -> dict:
    return {p: p.read_bytes() if p.is_file() else None for p in sorted(directory.rglob("*"))}


def fails(capsys, command: str, *argv, named=(), where: Path = None) -> str:
    """Run a command that must fail: exit 2, one stderr line holding every string of ``named``; that line."""
    before = _listing(where) if where is not None else None
    code = COMMANDS[command]([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    # Progress bars (tqdm redraws with "\r") may precede the error; nothing else may.
    lines = [text for text in err.split("\n") if text.strip() and "\r" not in text]
    assert len(lines) == 1, err
    line = lines[0]
    assert "error:" in line
    for text in named:
        assert str(text) in line, line
    if where is not None:
        assert _listing(where) == before, "a failed run changed, left or removed files"
    return line


@pytest.fixture
def work(tmp_path):
    """A directory with small valid inputs: a TSV, a name table, a tree, a dictionary."""
    kb = tmp_path / "kb.tsv"
    kb.write_bytes(KB_TSV.read_bytes())
    make_dictionary(6).save(str(tmp_path / "dict.txt"))
    ids = tmp_path / "ids.txt"
    ids.write_text("w0 w1\nw2\n", encoding="utf-8")
    NameTable.build([("Q1", "en", "w0"), ("Q2", "en", "w2")], str(tmp_path / "kb.names"))
    MentionTable.build([("w0", "Q1", 2)], str(tmp_path / "kb.mentions"))
    PrefixTree.from_sequences([[2, 4, 5, 2], [2, 6, 2]], start_token=2).save(str(tmp_path / "kb.trie"))
    return tmp_path


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


# ----------------------------------------------------------------------------- genre-trie: OS errors


def test_names_input_missing_or_a_directory(work, capsys):
    fails(capsys, "trie", "names", "--tsv", work / "none.tsv", "--output", work / "o.names",
          named=[work / "none.tsv", "file not found"], where=work)
    fails(capsys, "trie", "names", "--tsv", work, "--output", work / "o.names",
          named=[work, "is a directory"], where=work)


@pytest.mark.parametrize("output,cause", [
    (".", "is a directory"),
    ("missing/o.names", "does not exist"),
    ("kb.tsv/o.names", "is not a directory"),
])
def test_names_bad_output_paths_are_refused_before_reading(work, capsys, output, cause):
    fails(capsys, "trie", "names", "--tsv", work / "kb.tsv", "--output", work / output,
          named=["--output", cause], where=work)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_a_read_only_directory(work, capsys):
    ro = work / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        fails(capsys, "trie", "names", "--tsv", work / "kb.tsv", "--output", ro / "o.names",
              named=["--output", "no permission"], where=work)
    finally:
        ro.chmod(0o700)


def test_output_equal_to_an_input_in_any_spelling_is_refused(work, capsys, monkeypatch):
    monkeypatch.chdir(work)
    os.symlink(work / "kb.tsv", work / "link.tsv")
    os.link(work / "kb.tsv", work / "hard.tsv")
    for spelling in (work / "kb.tsv", "kb.tsv", "./sub/../kb.tsv", work / "link.tsv", "hard.tsv"):
        fails(capsys, "trie", "names", "--tsv", work / "kb.tsv", "--output", spelling,
              named=["--output", "is also an input", "refusing to overwrite"], where=work)
    fails(capsys, "trie", "names", "--tsv", "kb.tsv", "--output", "o.names", "--mentions", "o.names",
          named=["--mentions", "is also an input"], where=work)


def test_build_output_equal_to_its_dictionary_or_names(work, capsys):
    fails(capsys, "trie", "build", "--tokenized", work / "ids.txt", "--dict", work / "dict.txt",
          "--output", work / "dict.txt", named=["--output", "dict.txt", "is also an input"], where=work)
    fails(capsys, "trie", "build", "--names", work / "kb.names", "--format", "name_lang", "--dict",
          work / "dict.txt", "--output", work / "kb.names", named=["--output", "is also an input"], where=work)
    fails(capsys, "trie", "build", "--names", work / "kb.names", "--format", "canonical", "--dict",
          work / "dict.txt", "--output", work / "o.trie", "--canonical-table", work / "kb.names",
          named=["--canonical-table", "is also an input"], where=work)


def test_build_dictionary_is_a_directory(work, capsys):
    fails(capsys, "trie", "build", "--tokenized", work / "ids.txt", "--dict", work, "--output", work / "o.trie",
          named=["--dict", "is a directory"], where=work)


def test_inspect_a_directory(work, capsys):
    fails(capsys, "trie", "inspect", work, named=[work, "is a directory"])


def test_convert_output_equal_to_the_pickle(work, capsys):
    pickle = work / "t.pkl"
    pickle.write_bytes(b"\x80\x04}\x94.")
    fails(capsys, "trie", "convert", "--from-genre", pickle, "--output", pickle,
          named=["--output", "is also an input"], where=work)
    fails(capsys, "trie", "convert", "--from-genre", work, "--output", work / "o.trie",
          named=["--from-genre", "is a directory"], where=work)


def test_a_failed_write_leaves_neither_output_nor_temporary_file(work, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(work / "o.trie"))

    monkeypatch.setattr(PrefixTree, "_meta", full_disk)
    fails(capsys, "trie", "build", "--tokenized", work / "ids.txt", "--dict", work / "dict.txt",
          "--output", work / "o.trie", named=["o.trie", "No space left on device"], where=work)


# ----------------------------------------------------------------------------- genre-trie: data


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_names_workers_below_one_is_refused_before_anything_runs(work, capsys, workers):
    line = fails(capsys, "trie", "names", "--wikidata", WIKIDATA, "--output", work / "o.names",
                 "--workers", workers, named=["--workers must be >= 1", f"got {workers}"], where=work)
    assert line.startswith("genre-trie names: error:")


def test_page_and_redirect_dumps_swapped(work, capsys):
    fails(capsys, "trie", "names", "--wikidata", WIKIDATA, "--redirects", REDIRECT_SQL, PAGE_SQL, "--lang", "en",
          "--output", work / "o.names", named=["page.sql", "this is the page dump", "wrong order"], where=work)


@pytest.mark.parametrize("name", ["kb.names", "kb.trie"])
def test_build_and_inspect_refuse_a_damaged_file(work, capsys, name):
    _flip(work / name, os.path.getsize(work / name) // 2)
    if name == "kb.names":
        fails(capsys, "trie", "build", "--names", work / name, "--format", "name_lang", "--sentencepiece",
              SPM, "--dict", work / "dict.txt", "--output", work / "o.trie",
              named=[work / name], where=None)
    fails(capsys, "trie", "inspect", work / name, named=[work / name, "corrupt"])


# ----------------------------------------------------------------------------- flipped bytes


def _positions(size: int) -> list:
    # Every byte of the first 256 (magic, version, lengths, header JSON), then a spread over the sections.
    return sorted(set(range(min(size, 256))) | set(range(256, size, max(1, size // 400))) | {size - 1})


@pytest.mark.parametrize("name,loader", [("kb.trie", PrefixTree.load), ("kb.names", NameTable.load),
                                         ("kb.mentions", MentionTable.load)])
def test_a_flipped_byte_anywhere_is_an_error_naming_the_file(work, name, loader):
    good = (work / name).read_bytes()
    bad = work / f"bad-{name}"
    tried = 0
    for offset in _positions(len(good)):
        for mask in (0x01, 0x80):
            data = bytearray(good)
            data[offset] ^= mask
            bad.write_bytes(bytes(data))
            with pytest.raises(ValueError) as e:
                loader(str(bad))
            assert str(bad) in str(e.value) and "\n" not in str(e.value)
            tried += 1
    assert tried >= 2 * min(len(good), 256)
    loader(str(work / name))  # the original still loads


def test_verify_false_skips_the_checksums(work):
    size = os.path.getsize(work / "kb.names")
    _flip(work / "kb.names", size - 1)  # padding or the last section: only the full read sees it
    with pytest.raises(ValueError, match="kb.names"):
        NameTable.load(str(work / "kb.names"))
    NameTable.load(str(work / "kb.names"), verify=False).close()


# ----------------------------------------------------------------------------- genre-prepare


def test_prepare_output_is_a_file(work, capsys):
    fails(capsys, "prepare", "--train", ANCHORS, "--model", "mgenre", "--name-table", work / "kb.names",
          "--output", work / "kb.tsv", named=["--output", "not a directory"], where=work)


def test_prepare_would_overwrite_an_input_in_its_output_directory(work, capsys):
    data = work / "train.source"
    data.write_bytes(ANCHORS.read_bytes())
    fails(capsys, "prepare", "--train", data, "--model", "mgenre", "--name-table", work / "kb.names",
          "--input-format", "anchors", "--output", work, named=["--output", "would overwrite the input"], where=work)


def test_prepare_damaged_name_table(work, capsys):
    _flip(work / "kb.names", 40)
    fails(capsys, "prepare", "--train", ANCHORS, "--model", "mgenre", "--name-table", work / "kb.names",
          "--output", work / "out", named=[work / "kb.names"], where=work)


# ----------------------------------------------------------------------------- genre-evaluate


@pytest.fixture
def predictions(work):
    path = work / "pred.jsonl"
    path.write_text(json.dumps({"id": "k1", "predictions": ["Angela Merkel"]}) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("option,value,cause", [
    ("--output-json", ".", "is a directory"),
    ("--output-json", "pred.jsonl", "is also an input"),
    ("--output-json", "missing/r.json", "does not exist"),
])
def test_evaluate_bad_output_is_refused_before_scoring(work, capsys, predictions, monkeypatch, option, value, cause):
    monkeypatch.chdir(work)
    fails(capsys, "evaluate", KILT, "--predictions", predictions, option, value, "--quiet",
          named=[option, cause], where=work)


def test_evaluate_output_equal_to_the_data(work, capsys, predictions):
    data = work / "data.jsonl"
    data.write_bytes(KILT.read_bytes())
    fails(capsys, "evaluate", data, "--predictions", predictions, "--output-json", data, "--quiet",
          named=["--output-json", "is also an input"], where=work)


def test_evaluate_damaged_name_table(work, capsys, predictions):
    _flip(work / "kb.names", 60)
    fails(capsys, "evaluate", KILT, "--predictions", predictions, "--name-table", work / "kb.names", "--quiet",
          named=["--name-table", work / "kb.names"], where=work)


def test_evaluate_predictions_is_a_directory(work, capsys):
    fails(capsys, "evaluate", KILT, "--predictions", work, "--quiet", named=["--predictions", "is a directory"])


def test_evaluate_failed_run_leaves_no_output(work, capsys, predictions, monkeypatch):
    import genre_fairseq.evaluate as evaluate

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate.json, "dump", broken)
    fails(capsys, "evaluate", KILT, "--predictions", predictions, "--output-json", work / "r.json", "--quiet",
          named=["No space left on device"], where=work)


def test_evaluate_no_verify_skips_the_checksums(work, capsys, predictions):
    table = NameTable.load(str(work / "kb.names"))
    last = table._c.header["sections"][-1]  # rev_primary: the flags of primary names, not read by scoring
    table.close()
    _flip(work / "kb.names", last["offset"])
    fails(capsys, "evaluate", KILT, "--predictions", predictions, "--name-table", work / "kb.names", "--quiet",
          named=["checksum mismatch"])
    code = evaluate_main([str(KILT), "--predictions", str(predictions), "--name-table", str(work / "kb.names"),
                          "--quiet", "--no-verify"])
    assert code == 0, capsys.readouterr().err


def test_convert_refuses_a_small_pickle_that_expands_exponentially(work, capsys):
    import pickle

    node = {5: {}, 6: {}}
    for _ in range(40):
        node = {7: node, 8: node}
    path = work / "dag.pkl"
    path.write_bytes(pickle.dumps({2: node}))
    assert path.stat().st_size < 2000
    fails(capsys, "trie", "convert", "--from-genre", path, "--output", work / "o.trie", "--quiet",
          named=[path, "shares sub-dicts", "refusing"], where=work)


# ------------------------------------------------------------------ stdout closed by its reader (| head)


class _ClosedPipe:
    """A standard output whose reader has gone: every write fails as a closed pipe's does."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_inspect_into_a_closed_pipe_exits_quietly(tmp_path):
    """``genre-trie inspect ... | head -1``: status 141 (SIGPIPE's), nothing on stderr, in a real process."""
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: the write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "trie_tools.cli", "inspect", str(Path(__file__).parent.parent
                               / "examples" / "quickstart" / "model" / "cldr.trie"), "--samples", "50"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("command", ["evaluate", "prepare"])
def test_a_closed_stdout_ends_evaluate_and_prepare_quietly(work, capsys, monkeypatch, predictions, command):
    argv = {"evaluate": [KILT, "--predictions", predictions],
            "prepare": ["--train", ANCHORS, "--model", "mgenre", "--name-table", work / "kb.names",
                        "--output", work / "out"]}[command]
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert COMMANDS[command]([str(a) for a in argv]) == 141
    assert capsys.readouterr().err == ""
