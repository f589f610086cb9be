"""The genre-trie command: build from tokenized identifiers, inspect, and its errors."""

import pytest

from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
from tests.toy import make_dictionary
from trie_tools.cli import main


@pytest.fixture
def dict_path(tmp_path):
    path = tmp_path / "dict.txt"
    make_dictionary(6).save(str(path))
    return path


def test_build_then_inspect(tmp_path, dict_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("w0 w1\nw2\n\nw0 w1\nw0 w3 w4\n", encoding="utf-8")
    out = tmp_path / "kb.trie"
    assert main(["build", "--tokenized", str(ids), "--dict", str(dict_path), "--format", "lang_name",
                 "--output", str(out), "--quiet"]) == 0
    tree = PrefixTree.load(str(out))
    assert sorted(tree) == [(2, 4, 5, 2), (2, 4, 7, 8, 2), (2, 6, 2)]  # blank line skipped, duplicate collapsed
    assert tree.start_token == 2 and tree.identifier_format == "lang_name"
    from fairseq.data import Dictionary

    assert tree.dictionary_fingerprint == dictionary_fingerprint(Dictionary.load(str(dict_path)))
    capsys.readouterr()
    assert main(["inspect", str(out), "--samples", "2"]) == 0
    text = capsys.readouterr().out
    assert "kind: prefix tree" in text and "sequences: 3" in text and "identifier format: lang_name" in text
    assert "  2 4 5 2\n  2 4 7 8 2\n" in text


def test_inspect_refuses_a_foreign_file(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genre-trie inspect: error:") and str(bad) in err and "\n" not in err


def test_missing_inputs_are_one_line_errors(tmp_path, dict_path, capsys):
    assert main(["build", "--tokenized", str(tmp_path / "none.txt"), "--dict", str(dict_path),
                 "--output", str(tmp_path / "x.trie"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"genre-trie build: error: --tokenized {tmp_path / 'none.txt'}: file not found"
    assert main(["build", "--tokenized", str(dict_path), "--dict", str(tmp_path / "nodict.txt"),
                 "--output", str(tmp_path / "x.trie"), "--quiet"]) == 2
    assert "--dict" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["inspect", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0 and "usage: genre-trie" in capsys.readouterr().out
