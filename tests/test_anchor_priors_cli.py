"""genre-trie names --anchors (hyperlink counts, the order of ambiguous names) and --kilt-knowledge-source.

Every expected count and order below is worked out by hand from the small inputs written here.
"""
import gzip
import json
import os

import pytest

from genre_fairseq.name_table import MentionTable, NameTable
from genre_fairseq.prefix_tree import PrefixTree
from trie_tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILT_KS = os.path.join(ROOT, "tests", "fixtures", "kilt", "kilt_knowledgesource-sample.json")
MODEL = os.path.join(ROOT, "examples", "quickstart", "model")

# "Paris" names three entities; "Paris, Texas" one of them.
KB_TSV = "Q90\ten\tParis\nQ167646\ten\tParis\nQ830149\ten\tParis\nQ830149\ten\tParis, Texas\n"


def anchors_line(doc, text, spans, lang="en"):
    return json.dumps({"id": doc, "lang": lang, "text": text,
                       "mentions": [{"start": s, "end": e, "entity_id": q} for s, e, q in spans]}) + "\n"


@pytest.fixture
def kb(tmp_path):
    path = tmp_path / "kb.tsv"
    path.write_text(KB_TSV, encoding="utf-8")
    return path


@pytest.fixture
def anchors(tmp_path):
    """Paris -> Q830149 twice, Q90 once; 'Texas' -> Q1439 (not in the table); one broken line (line 3)."""
    path = tmp_path / "anchors.jsonl"
    path.write_text(
        anchors_line("d1", "Paris is in Texas. Paris again.", [(0, 5, "Q830149"), (12, 17, "Q1439"), (19, 24, "Q830149")])
        + anchors_line("d2", "Paris, France.", [(0, 5, "Q90")])
        + '{"id": "d3", "lang": "en", "text": "bad", "mentions": [{"start": 0, "end": 50, "entity_id": "Q1"}]}\n',
        encoding="utf-8")
    return path


def names(tmp_path, *argv):
    out, mentions = tmp_path / "kb.names", tmp_path / "kb.mentions"
    code = main(["names", *map(str, argv), "--output", str(out), "--mentions", str(mentions), "--quiet"])
    return code, out, mentions


def test_anchors_order_an_ambiguous_name_and_add_to_the_mention_counts(tmp_path, kb, anchors, capsys):
    code, out, mentions = names(tmp_path, "--tsv", kb, "--anchors", anchors)
    assert code == 0
    with NameTable.load(out) as table:
        # anchors: Q830149 2, Q90 1, Q167646 0 (then the id rule, which would give Q90, Q167646, Q830149)
        assert table.ids("en", "Paris") == ["Q830149", "Q90", "Q167646"]
        assert table.ids("en", "Paris, Texas") == ["Q830149"]
        assert table.meta["ambiguous_order"] == "anchors, id rule" and table.meta["anchors"] == ["anchors.jsonl"]
    with MentionTable.load(mentions) as table:
        # added: 1 per name record (one TSV source) + 1 per link; Q1439 is not in the name table: left out
        assert table.candidates("Paris") == [("Q830149", 3), ("Q90", 2), ("Q167646", 1)]
        assert table.candidates("Paris, Texas") == [("Q830149", 1)]
        assert table.candidates("Texas") == []
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("anchors:"))
    assert "links read=4, kept=3, to entities not in the name table=1, unusable text=0" in line
    assert "skipped 1 (bad_mention 1)" in line and f"{anchors}:3: mention #0: span 0-50 is outside the text" in line


def test_without_anchors_the_id_rule_decides_and_the_fingerprint_is_unchanged(tmp_path, kb, anchors):
    code, plain, _ = names(tmp_path, "--tsv", kb)
    assert code == 0
    with NameTable.load(plain) as table:
        assert table.ids("en", "Paris") == ["Q90", "Q167646", "Q830149"]
        fingerprint = table.fingerprint
    # anchors that agree with the id rule change nothing; anchors that reorder change the fingerprint
    agree = tmp_path / "agree.jsonl"
    agree.write_text(anchors_line("d", "Paris", [(0, 5, "Q90")]), encoding="utf-8")
    for path, same in ((agree, True), (anchors, False)):
        out = tmp_path / f"{path.stem}.names"
        assert main(["names", "--tsv", str(kb), "--anchors", str(path), "--output", str(out), "--quiet"]) == 0
        with NameTable.load(out) as table:
            assert (table.fingerprint == fingerprint) is same


def test_anchor_files_can_be_gzipped_and_several(tmp_path, kb):
    first = tmp_path / "a.jsonl.gz"
    with gzip.open(first, "wt", encoding="utf-8") as f:
        f.write(anchors_line("d1", "Paris", [(0, 5, "Q167646")]))
    second = tmp_path / "b.jsonl"
    second.write_text(anchors_line("d2", "Paris Paris", [(0, 5, "Q167646"), (6, 11, "Q90")]), encoding="utf-8")
    code, out, mentions = names(tmp_path, "--tsv", kb, "--anchors", first, second)
    assert code == 0
    with NameTable.load(out) as table:
        assert table.ids("en", "Paris") == ["Q167646", "Q90", "Q830149"]  # 2, 1, 0 links
    with MentionTable.load(mentions) as table:
        assert table.candidates("Paris") == [("Q167646", 3), ("Q90", 2), ("Q830149", 1)]


def wikidata_item(qid, label, sites):
    return json.dumps({"type": "item", "id": qid, "labels": {"en": {"language": "en", "value": label}},
                       "sitelinks": {f"{s}wiki": {"site": f"{s}wiki", "title": label} for s in sites}})


@pytest.fixture
def dump(tmp_path):
    """Three items titled 'Paris' in enwiki: Q90 with 4 Wikipedia sitelinks, Q5 with 1, Q7 with 3."""
    path = tmp_path / "wikidata.json"
    items = [wikidata_item("Q5", "Paris", ["en"]), wikidata_item("Q7", "Paris", ["en", "de", "fr"]),
             wikidata_item("Q90", "Paris", ["en", "de", "fr", "it"])]
    path.write_text("[\n" + ",\n".join(items) + "\n]\n", encoding="utf-8")
    return path


def test_sitelinks_order_an_ambiguous_name_when_no_anchors_are_given(tmp_path, dump):
    code, out, _ = names(tmp_path, "--wikidata", dump)
    assert code == 0
    with NameTable.load(out) as table:
        assert table.ids("en", "Paris") == ["Q90", "Q7", "Q5"]  # 4, 3, 1 sitelinks
        assert table.ids("de", "Paris") == ["Q90", "Q7"]
        assert table.meta["ambiguous_order"] == "sitelinks, id rule"
    # with --langs en,de only those sitelinks count: Q90 2, Q7 2 (tie: the id rule), Q5 1
    code, out, _ = names(tmp_path, "--wikidata", dump, "--langs", "en,de")
    with NameTable.load(out) as table:
        assert table.ids("en", "Paris") == ["Q7", "Q90", "Q5"]


def test_anchors_come_before_sitelinks_and_sitelinks_break_their_ties(tmp_path, dump):
    path = tmp_path / "anchors.jsonl"
    # Q5 linked twice; Q7 and Q90 once each (a tie that Q90's 4 sitelinks win over Q7's 3)
    path.write_text(anchors_line("d", "Paris Paris Paris Paris", [(0, 5, "Q5"), (6, 11, "Q5"), (12, 17, "Q7"),
                                                                  (18, 23, "Q90")]), encoding="utf-8")
    code, out, mentions = names(tmp_path, "--wikidata", dump, "--anchors", path)
    assert code == 0
    with NameTable.load(out) as table:
        assert table.ids("en", "Paris") == ["Q5", "Q90", "Q7"]
        assert table.meta["ambiguous_order"] == "anchors, sitelinks, id rule"
    with MentionTable.load(mentions) as table:
        # name-derived: one count per (language, source) naming the entity (titles + labels), plus the links
        # Q5: en title, en label = 2, + 2 links; Q7: 3 titles + en label = 4, + 1; Q90: 4 titles + en label = 5, + 1
        assert table.candidates("Paris") == [("Q90", 6), ("Q7", 5), ("Q5", 4)]


def test_order_ids_must_return_a_permutation(tmp_path):
    with pytest.raises(ValueError, match="must return a permutation"):
        NameTable.build([("Q1", "en", "A"), ("Q2", "en", "A")], tmp_path / "x.names",
                        order_ids=lambda lang, name, ids: ids[:1])


@pytest.mark.parametrize("extra,message", [
    (["--anchors", "{tmp}/none.jsonl"], "none.jsonl: file not found"),
    (["--anchors", "{anchors}", "--strict"], "anchors.jsonl:3: mention #0: span 0-50 is outside the text"),
    (["--kilt-id-field", "wikidata_id"], "--kilt-id-field applies to --kilt-knowledge-source input only"),
])
def test_bad_anchor_options_are_one_line_errors(tmp_path, kb, anchors, capsys, extra, message):
    extra = [x.format(tmp=tmp_path, anchors=anchors) for x in extra]
    assert main(["names", "--tsv", str(kb), *extra, "--output", str(tmp_path / "o.names"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("genre-trie names: error: ") and message in err[-1], err
    assert not (tmp_path / "o.names").exists()


# ----------------------------------------------------------------------------- KILT knowledge source


def test_kilt_knowledge_source_makes_the_title_table_and_tree(tmp_path, capsys):
    code, out, mentions = names(tmp_path, "--kilt-knowledge-source", KILT_KS)
    assert code == 0
    with NameTable.load(out) as table:
        assert sorted(table) == [("en", "A"), ("en", "Paris"), ("en", "São Tomé")]
        assert table.ids("en", "Paris") == ["22989"] and table.ids("en", "São Tomé") == ["5001"]
        assert table.meta["source"] == "kilt" and table.meta["id_field"] == "wikipedia_id"
    with MentionTable.load(mentions) as table:
        assert table.candidates("A") == [("290", 1)]
    tree_path = tmp_path / "kilt.trie"
    assert main(["build", "--names", str(out), "--format", "canonical", "--sentencepiece",
                 os.path.join(MODEL, "spm.model"), "--dict", os.path.join(MODEL, "dict.target.txt"),
                 "--output", str(tree_path), "--workers", "1", "--quiet"]) == 0
    canonical = NameTable.load(tmp_path / "kilt.canonical.names")
    assert sorted(canonical) == [("", "A"), ("", "Paris"), ("", "São Tomé")]  # the titles themselves
    assert canonical.ids("", "Paris") == ["22989"]
    tree = PrefixTree.load(tree_path)
    assert tree.identifier_format == "canonical" and tree.name_table_fingerprint == canonical.fingerprint
    assert len(tree) == 3


def test_kilt_wikidata_ids_leave_out_pages_without_an_item(tmp_path):
    code, out, _ = names(tmp_path, "--kilt-knowledge-source", KILT_KS, "--kilt-id-field", "wikidata_id")
    assert code == 0
    with NameTable.load(out) as table:
        assert sorted(table.entity_ids()) == ["Q90", "Q9659"]  # São Tomé's line has no wikidata_info


def test_a_malformed_knowledge_source_line_is_counted_with_its_line(tmp_path, capsys):
    ks = tmp_path / "ks.json"
    lines = open(KILT_KS, encoding="utf-8").read().splitlines()
    ks.write_text("\n".join([lines[0], '{"wikipedia_id": "7"}', "not json", lines[1]]) + "\n", encoding="utf-8")
    code, out, _ = names(tmp_path, "--kilt-knowledge-source", ks)
    assert code == 0
    err = capsys.readouterr().err
    assert "read=4, kept=2, malformed=2" in err and f"{ks}:2 (needs a non-empty 'wikipedia_id'" in err
    assert f"{ks}:3 (not a JSON object" in err
    with NameTable.load(out) as table:
        assert len(table) == 2
    assert main(["names", "--kilt-knowledge-source", str(ks), "--strict", "--output", str(tmp_path / "s.names"),
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"genre-trie names: error: {ks}:2: needs a non-empty 'wikipedia_id' and 'wikipedia_title'")
    assert main(["names", "--kilt-knowledge-source", str(ks), "--langs", "de", "--output",
                 str(tmp_path / "l.names"), "--quiet"]) == 2
    assert "--sources and --langs apply to --wikidata / --tsv input" in capsys.readouterr().err


def test_the_canonical_table_keeps_the_prior_order_of_a_shared_identifier(tmp_path, kb, anchors):
    # all three entities' primary English name is "Paris": each identifier is "Paris >> en", still shared
    code, out, _ = names(tmp_path, "--tsv", kb, "--anchors", anchors)
    assert code == 0
    assert main(["build", "--names", str(out), "--format", "canonical", "--sentencepiece",
                 os.path.join(MODEL, "spm.model"), "--dict", os.path.join(MODEL, "dict.target.txt"),
                 "--output", str(tmp_path / "kb.trie"), "--workers", "1", "--quiet"]) == 0
    with NameTable.load(tmp_path / "kb.canonical.names") as canonical:
        assert canonical.ids("", "Paris >> en") == ["Q830149", "Q90", "Q167646"]  # by links, not by Q-number


def test_sitelink_counts_store_qids_in_an_array_and_other_ids_apart():
    from trie_tools.names import SitelinkCounts

    counts = SitelinkCounts()
    assert not counts and counts.get("Q5") == 0
    for entity, n in (("Q5", 3), ("Q100", 7), ("Q007", 2), ("my:1", 1), ("Q999999999999", 4), ("Q6", 70000)):
        counts[entity] = n
    assert [counts.get(e) for e in ("Q5", "Q100", "Q007", "my:1", "Q999999999999", "Q6", "Q7", "Q10**9")] == \
        [3, 7, 2, 1, 4, 65535, 0, 0]
    assert counts and counts._by_number.size <= 201  # grown by doubling up to Q100, not to the huge id
