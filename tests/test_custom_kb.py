"""Tests of the custom knowledge-base TSV reader."""
import bz2
import gzip
from pathlib import Path

import pytest

from trie_tools.custom_kb import CustomKBStats, KBName, iter_custom_kb

KB = Path(__file__).parent / "fixtures" / "dumps" / "custom_kb.tsv"

EXPECTED = [
    KBName("Q937", "en", "Albert Einstein"),
    KBName("Q937", "de", "Albert Einstein"),
    KBName("Q937", "ru", "Альберт Эйнштейн"),
    KBName("Q937", "zh", "阿尔伯特·爱因斯坦"),
    KBName("Q90", "fr", "Paris"),
    KBName("Q90", "ar", "باريس"),
    KBName("Q64", "de", "Berlin"),
    KBName("Q183", "en", "Federal Republic of Germany"),
    KBName("ACME-42", "en", "Acme Widget (model 42)"),
    KBName("ACME-42", "fr", "Gadget « Acme » n°42"),
]


def test_fixture_gives_exact_triples():
    stats = CustomKBStats()
    assert list(iter_custom_kb(KB, stats=stats)) == EXPECTED
    assert stats.counts() == {"read": 10, "kept": 10, "malformed": 0, "comments": 2, "blank": 1}


@pytest.mark.parametrize("opener", [gzip.open, bz2.open])
def test_compressed_files_read_the_same(tmp_path, opener):
    packed = tmp_path / "kb.tsv.z"
    with opener(packed, "wb") as fh:
        fh.write(KB.read_bytes())
    assert list(iter_custom_kb(packed)) == EXPECTED


BAD = (
    b"# header\n"  # 1
    b"Q1\ten\tUniverse\n"  # 2
    b"Q2\ten\n"  # 3: two fields
    b"Q3\ten\tEarth\textra\n"  # 4: four fields
    b"\n"  # 5
    b"Q4\t\tNo language\n"  # 6: empty field
    b"Q5\tde\t   \n"  # 7: blank name
) + b"Q6\tfr\tCaf\xe9\n" + (  # 8: Latin-1, not UTF-8
    "\ufeffQ7\ten\tBOM inside\n"  # 9: a BOM that is not at the start of the file stays in the id
    "  Q8 \t en \t Moon  \r\n"  # 10: spaces and CRLF are stripped
).encode("utf-8")


def test_malformed_lines_are_counted_with_line_numbers(tmp_path):
    path = tmp_path / "kb.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + BAD)
    stats = CustomKBStats()
    assert list(iter_custom_kb(path, stats=stats)) == [
        KBName("Q1", "en", "Universe"), KBName("\ufeffQ7", "en", "BOM inside"), KBName("Q8", "en", "Moon")]
    assert stats.malformed_lines == [3, 4, 6, 7, 8]
    assert (stats.read, stats.kept, stats.malformed, stats.comments, stats.blank) == (8, 3, 5, 1, 1)
    reasons = dict(stats.examples)
    assert reasons[3] == "expected 3 tab-separated fields, got 2"
    assert reasons[6] == "empty field"
    assert reasons[8].startswith("not UTF-8")
    assert f"{path}:3" in stats.summary()


def test_strict_mode_raises_naming_file_and_line(tmp_path):
    path = tmp_path / "kb.tsv"
    path.write_bytes(BAD)
    with pytest.raises(ValueError, match=r"kb\.tsv:3: expected 3 tab-separated fields"):
        list(iter_custom_kb(path, strict=True))


def test_control_characters_in_any_field_are_counted_skips_with_their_line(tmp_path):
    path = tmp_path / "kb.tsv"
    path.write_bytes(b"Q1\ten\tGood\nQ\x012\ten\tBad id\nQ3\te\x1bn\tBad lang\nQ4\ten\tBad\x00name\nQ5\tde\tAlso good\n")
    stats = CustomKBStats()
    assert list(iter_custom_kb(path, stats=stats)) == [KBName("Q1", "en", "Good"), KBName("Q5", "de", "Also good")]
    assert stats.counts() == {"read": 5, "kept": 2, "malformed": 3, "comments": 0, "blank": 0}
    assert stats.examples == [(2, "control character '\\x01' in the entity id 'Q\\x012'"),
                              (3, "control character '\\x1b' in the language code 'e\\x1bn'"),
                              (4, "control character '\\x00' in the name 'Bad\\x00name'")]
    with pytest.raises(ValueError, match=r"kb\.tsv:2: control character '\\x01' in the entity id"):
        list(iter_custom_kb(path, strict=True))


def test_names_from_a_tsv_with_tmp_dir_and_spills_mark_each_first_name_primary(tmp_path, monkeypatch):
    # The TSV's primary names are found by the table while its sorted runs merge (no set of
    # (entity, lang) pairs in the reader): runs of 2 records force the merge; --tmp-dir is left empty.
    from genre_fairseq.name_table import NameTable
    from trie_tools.cli import main

    kb = tmp_path / "kb.tsv"
    kb.write_text("Q2\ten\tZed\nQ1\tde\tBeta\nQ1\ten\tBeta\nQ1\ten\tAlpha\nQ2\ten\tAlpha\nQ1\tde\tAlpha\n"
                  "Q1\ten\tBeta\n", encoding="utf-8")
    assert main(["names", "--tsv", str(kb), "--output", str(tmp_path / "one_run.names"), "--quiet"]) == 0
    build = NameTable.build
    monkeypatch.setattr(NameTable, "build", staticmethod(lambda *a, **k: build(*a, **dict(k, chunk_size=2))))
    spill = tmp_path / "spill"
    spill.mkdir()
    assert main(["names", "--tsv", str(kb), "--output", str(tmp_path / "kb.names"), "--tmp-dir", str(spill),
                 "--quiet"]) == 0
    assert list(spill.iterdir()) == []
    assert (tmp_path / "kb.names").read_bytes() == (tmp_path / "one_run.names").read_bytes()
    with NameTable.load(str(tmp_path / "kb.names")) as table:
        assert table.primary_names("Q1") == [("de", "Beta"), ("en", "Beta")]
        assert table.primary_names("Q2") == [("en", "Zed")]
        assert table.ids("en", "Alpha") == ["Q1", "Q2"]
