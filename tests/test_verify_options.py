"""The task's --no-verify and the hub's verify_files: damaged files are refused unless the check is skipped."""

import os
import shutil

import pytest
from fairseq.data import Dictionary

from genre_fairseq.task import load_name_table_for, load_prefix_tree_for

MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "quickstart", "model")


def _flip_last_byte(src: str, dst: str) -> str:
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x01]))
    return dst


def test_damaged_tree_refused_by_default_and_loaded_with_verify_off(tmp_path):
    tgt = Dictionary.load(os.path.join(MODEL, "dict.target.txt"))
    good = load_prefix_tree_for(os.path.join(MODEL, "cldr.trie"), tgt)
    bad = _flip_last_byte(os.path.join(MODEL, "cldr.trie"), str(tmp_path / "bad.trie"))
    with pytest.raises(ValueError, match="bad.trie"):
        load_prefix_tree_for(bad, tgt)
    unchecked = load_prefix_tree_for(bad, tgt, verify=False)
    assert len(unchecked) == len(good)


def test_damaged_name_table_refused_by_default(tmp_path):
    bad = _flip_last_byte(os.path.join(MODEL, "cldr.names"), str(tmp_path / "bad.names"))
    with pytest.raises(ValueError, match="bad.names"):
        load_name_table_for(bad, None, None)
    assert len(load_name_table_for(bad, None, None, verify=False)) > 0


def test_task_config_has_no_verify():
    from genre_fairseq.task import GenreConfig

    assert GenreConfig().no_verify is False
