"""Streaming readers of Mewsli-9, KILT, anchors and AIDA data (genre_fairseq.datasets)."""

import gzip
import hashlib
import json
import os
import shutil

import pytest

from genre_fairseq.datasets import (DatasetError, Mention, ReadReport, detect_format, read_aida, read_anchors,
                                    read_dataset, read_kilt, read_mewsli)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MEWSLI = os.path.join(FIXTURES, "mewsli")
KILT = os.path.join(FIXTURES, "kilt", "el-dev.jsonl")
HEADER = "docid\tposition\tlength\tmention\turl\tlang\tqid\tqid_in_refs\tfreq_bin\n"


def test_mewsli_fixture_every_mention_with_its_context():
    report = ReadReport()
    mentions = list(read_mewsli(MEWSLI, report=report))
    assert report.mentions == 12 and not report.skipped and not report.warnings
    assert [m.id for m in mentions] == [
        "ar-1:11-18", "ar-1:31-36",
        "de-1:0-13", "de-1:19-34", "de-1:38-44", "de-1:72-78", "de-2:26-43", "de-2:50-67",
        "ja-1:0-2", "ja-1:3-5", "ja-1:13-16", "ja-1:17-20"]
    assert [m.entities for m in mentions] == [(q,) for q in (
        "Q85", "Q90", "Q567", "Q3052772", "Q64", "Q46", "Q15789", "Q41420", "Q1490", "Q17", "Q39231", "Q131320")]
    assert [m.lang for m in mentions] == ["ar"] * 2 + ["de"] * 6 + ["ja"] * 4
    fuji = mentions[10]
    # offsets are code points, and the newline of the first sentence counts
    assert (fuji.left, fuji.mention, fuji.right) == (
        "東京は日本の首都である。\n", "富士山", "は静岡県と山梨県にまたがる。\n")
    assert fuji.doc_id == "ja-1" and fuji.candidates is None
    assert fuji.source == os.path.join(MEWSLI, "ja", "mentions.tsv") + ":4"
    berlin = mentions[4]
    assert berlin.left == "Angela Merkel traf Emmanuel Macron in " and berlin.right.startswith(".\nDie Kanzlerin")
    assert mentions[1].mention == "باريس"
    assert mentions[1].left == "زار الرئيس القاهرة ثم سافر إلى "


def test_mention_marked_with_each_models_markers_and_cut():
    berlin = list(read_mewsli(MEWSLI, langs=["de"]))[2]
    assert berlin.marked("[START]", "[END]") == (
        "Angela Merkel traf Emmanuel Macron in [START] Berlin [END] . Die Kanzlerin sprach über Europa.")
    # cut around the mention by genre_fairseq.hub.cut_around_mention: 7 words, context shared
    assert berlin.marked("[START_ENT]", "[END_ENT]", max_words=7) == "Macron in [START_ENT] Berlin [END_ENT] . Die"
    odd = Mention(id="x:0-1", lang="en", left="see [START] ", mention="a", right="", entities=("Q1",), source="f:3")
    with pytest.raises(ValueError, match=r"^f:3: mention 'x:0-1': its text already contains the marker '\[START\]'$"):
        odd.marked("[START]", "[END]")
    assert odd.marked("[START_ENT]", "[END_ENT]") == "see [START] [START_ENT] a [END_ENT]"


def test_mewsli_language_selection_and_single_language_directory():
    assert [m.id for m in read_mewsli(MEWSLI, langs=["ar"])] == ["ar-1:11-18", "ar-1:31-36"]
    assert len(list(read_mewsli(os.path.join(MEWSLI, "ja")))) == 4
    with pytest.raises(DatasetError, match=r"no language directory for xx \(found ar, de, ja\)"):
        list(read_mewsli(MEWSLI, langs=["xx", "de"]))


def _copy_de(tmp_path):
    d = tmp_path / "de"
    shutil.copytree(os.path.join(MEWSLI, "de"), d)
    return d


def test_mewsli_language_from_directory_name_and_quoted_fields(tmp_path):
    d = tmp_path / "tr"
    (d / "text").mkdir(parents=True)
    text = 'Im "Klassiker" spielte\tBayern.'
    (d / "text" / "tr-8").write_bytes(text.encode())
    # pandas-style quoting: a field holding quotes or a tab is quoted, inner quotes doubled
    (d / "mentions.tsv").write_text('docid\tposition\tlength\tmention\tqid\n'
                                    'tr-8\t3\t11\t"""Klassiker"""\tQ1\n'
                                    'tr-8\t15\t14\t"spielte\tBayern"\tQ2\n', encoding="utf-8")
    got = [(m.lang, m.mention, m.entities, m.source[-1]) for m in read_mewsli(d)]
    assert got == [("tr", '"Klassiker"', ("Q1",), "2"), ("tr", "spielte\tBayern", ("Q2",), "3")]


def test_mewsli_bad_lines_are_skipped_counted_and_located(tmp_path):
    d = _copy_de(tmp_path)
    rows = (d / "mentions.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows[2] = rows[2].replace("\t19\t", "\t18\t")  # offset one off: text shows " Emmanuel Macro"
    rows[3] = rows[3].replace("\t38\t", "\tabc\t")
    rows[4] = "de-1\t72\t6\tEuropa\n"
    rows.append("de-9\t0\t3\tDer\turl\tde\tQ1\tTrue\t0\n")  # no text/de-9
    data = "".join(rows).encode("utf-8") + b"de-1\t0\t6\tAng\xe9la\turl\tde\tQ1\tTrue\t0\n"
    (d / "mentions.tsv").write_bytes(data)
    report = ReadReport()
    got = [m.id for m in read_mewsli(d, report=report)]
    assert got == ["de-1:0-13", "de-2:26-43", "de-2:50-67"]
    assert dict(report.skipped) == {"mention_mismatch": 1, "bad_record": 2, "missing_text": 1, "bad_utf8": 1}
    path = str(d / "mentions.tsv")
    assert report.examples == [
        f"{path}:3: mention 'Emmanuel Macron' does not match the text of de-1 at 18+15 (' Emmanuel Macro')",
        f"{path}:4: position 'abc' and length '6' must be integers",
        f"{path}:5: 4 fields, the header has 9",
        f"{path}:8: document text {d / 'text' / 'de-9'} not found",
        f"{path}:9: not valid UTF-8 (invalid continuation byte at byte 12)",
    ]
    assert report.summary().startswith(
        "read 3 mentions; skipped 5 (bad_record 2, bad_utf8 1, mention_mismatch 1, missing_text 1); first: ")


def test_mewsli_strict_stops_at_the_first_bad_line_after_streaming_the_good_ones(tmp_path):
    d = _copy_de(tmp_path)
    rows = (d / "mentions.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows[3] = rows[3].replace("Berlin", "Bonn!!")
    (d / "mentions.tsv").write_text("".join(rows), encoding="utf-8")
    reader = read_mewsli(d, strict=True)
    assert [next(reader).id, next(reader).id] == ["de-1:0-13", "de-1:19-34"]  # yielded before the bad line is read
    with pytest.raises(DatasetError, match=r"mentions\.tsv:4: mention 'Bonn!!' does not match the text of de-1 at "
                                           r"38\+6 \('Berlin'\)$"):
        next(reader)


def test_mewsli_text_checksum_mismatch_is_a_warning_and_strict_error(tmp_path):
    d = _copy_de(tmp_path)
    text = (d / "text" / "de-2").read_bytes()
    (d / "text" / "de-2").write_bytes(text.replace(b"gegen", b"gegen"[::-1]))  # same length, other text
    report = ReadReport()
    got = [m.id for m in read_mewsli(d, report=report)]
    # the mentions are still checked one by one: de-2's first still matches, its second does not move either
    assert got == ["de-1:0-13", "de-1:19-34", "de-1:38-44", "de-1:72-78", "de-2:26-43", "de-2:50-67"]
    assert dict(report.warnings) == {"text_md5_mismatch": 1} and not report.skipped
    md5 = hashlib.md5(text.replace(b"gegen", b"negeg")).hexdigest()
    assert report.examples[0].startswith(f"{d / 'text' / 'de-2'}: MD5 {md5} differs from text_md5 "
                                         "8076cb0a83a531c1a66d141ae01fc8e7")
    with pytest.raises(DatasetError, match="differs from text_md5"):
        list(read_mewsli(d, strict=True))


def test_mewsli_unusable_directories_and_headers(tmp_path):
    with pytest.raises(DatasetError, match=r"not a directory"):
        list(read_mewsli(KILT))
    with pytest.raises(DatasetError, match=r"no mentions\.tsv in it or in its subdirectories"):
        list(read_mewsli(tmp_path))
    d = _copy_de(tmp_path)
    (d / "mentions.tsv").write_text("docid\tposition\tlength\tmention\turl\nde-1\t0\t13\tAngela Merkel\tu\n")
    with pytest.raises(DatasetError, match=r"mentions\.tsv:1: the header lacks column\(s\) qid \(found: docid, "
                                           r"position, length, mention, url; Mewsli-9's"):
        list(read_mewsli(d))


def test_kilt_records_gold_titles_and_meta_fallback():
    report = ReadReport()
    got = list(read_kilt(KILT, report=report))
    assert report.mentions == 4 and not report.skipped
    assert [(m.id, m.lang, m.left, m.mention, m.right, m.entities) for m in got] == [
        ("k1", "en", "Obama met ", "Merkel", " in Berlin .", ("Angela Merkel",)),
        ("k2", "en", "", "Paris", " is the capital .", ("Paris", "Paris, France")),
        # no markers in input: meta's contexts, and the provenance title where no answer is given
        ("k3", "en", "He drove a ", "Jaguar", " to work .", ("Jaguar Cars",)),
        ("k4", "en", "The ", "Thames", " flows through London .", ("River Thames",)),
    ]
    assert got[0].marked("[START_ENT]", "[END_ENT]") == "Obama met [START_ENT] Merkel [END_ENT] in Berlin ."
    assert [m.source for m in got] == [f"{KILT}:{i}" for i in (1, 2, 3, 4)]


def test_kilt_malformed_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"id": "ok", "input": "a [START_ENT] b [END_ENT] c", "output": [{"answer": "B"}]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"id": "x", "input": "no markers", "output": [{"answer": "B"}]}),
        json.dumps({"id": "y", "input": "[START_ENT] a [START_ENT] b [END_ENT]", "output": [{"answer": "B"}]}),
        json.dumps({"id": "z", "input": "[START_ENT] b [END_ENT]", "output": [{"provenance": []}]}),
        json.dumps({"input": "[START_ENT] b [END_ENT]", "output": [{"answer": "B"}]}),
        "",
        json.dumps(["a list"]),
    ]
    path.write_text("\n".join(lines) + "\n")
    report = ReadReport(max_examples=10)
    assert [m.id for m in read_kilt(path, lang="de", report=report)] == ["ok"]
    assert dict(report.skipped) == {"bad_json": 1, "bad_record": 5}
    assert report.examples == [
        f"{path}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)",
        f"{path}:3: no mention: 'input' has no [START_ENT] ... [END_ENT] and 'meta' no "
        "left_context/mention/right_context",
        f"{path}:4: 'input' must hold [START_ENT] and [END_ENT] once each, in that order",
        f"{path}:5: no gold entity: no output has an 'answer' or a provenance 'title'",
        f"{path}:6: 'id' must be a non-empty string or an integer",
        f"{path}:8: expected a JSON object, got list",
    ]
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: invalid JSON"):
        list(read_kilt(path, strict=True))


def _write_anchors(path, records, compress=False):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


ANCHORS = [
    {"id": "d1", "lang": "fr", "text": "Paris et Lyon.", "mentions": [
        {"start": 0, "end": 5, "entity_id": "Q90", "mention": "Paris", "candidates": ["Q90", "Q167646"]},
        {"start": 9, "end": 13, "entity_id": "Q456"}]},
    {"text": "Львов", "mentions": [{"start": 0, "end": 5, "entity_id": "Q36036"}]},
]


@pytest.mark.parametrize("compress", [False, True])
def test_anchors_one_mention_per_record(tmp_path, compress):
    path = _write_anchors(tmp_path / "a.jsonl", ANCHORS, compress)
    got = list(read_anchors(path, lang="uk"))
    assert [(m.id, m.lang, m.left, m.mention, m.right, m.entities, m.candidates, m.doc_id) for m in got] == [
        ("d1:0-5", "fr", "", "Paris", " et Lyon.", ("Q90",), ("Q90", "Q167646"), "d1"),
        ("d1:9-13", "fr", "Paris et ", "Lyon", ".", ("Q456",), None, "d1"),
        ("a.jsonl:2:0-5", "uk", "", "Львов", "", ("Q36036",), None, "a.jsonl:2"),
    ]
    assert detect_format(path) == "anchors"
    assert [m.id for m in read_dataset(path, lang="uk")] == ["d1:0-5", "d1:9-13", "a.jsonl:2:0-5"]


def test_truncated_compressed_file_is_an_error(tmp_path):
    path = _write_anchors(tmp_path / "a.jsonl.gz", ANCHORS * 50, compress=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=r"a\.jsonl\.gz: unreadable or truncated file"):
        list(read_anchors(path))


def test_anchors_bad_mentions_are_skipped_one_by_one(tmp_path):
    path = _write_anchors(tmp_path / "a.jsonl", [
        {"lang": "en", "text": "abc def", "mentions": [
            {"start": 4, "end": 9, "entity_id": "Q1"},
            {"start": 0, "end": 3, "entity_id": "Q2", "mention": "abd"},
            {"start": 0, "end": 3},
            {"start": 3, "end": 4, "entity_id": "Q3"},
            {"start": 0, "end": 3, "entity_id": "Q4", "candidates": "Q4"},
            {"start": "0", "end": 3, "entity_id": "Q5"},
            {"start": 4, "end": 7, "entity_id": "Q6"}]},
        {"text": "no language", "mentions": [{"start": 0, "end": 2, "entity_id": "Q1"}]},
    ])
    report = ReadReport(max_examples=10)
    assert [m.id for m in read_anchors(path, report=report)] == ["a.jsonl:1:4-7"]
    assert dict(report.skipped) == {"bad_mention": 6, "bad_record": 1}
    assert [e.split(": ", 1)[1] for e in report.examples] == [
        "mention #0: span 4-9 is outside the text (length 7) or empty",
        "mention #1: 'mention' 'abd' does not match the text at 0-3 ('abc')",
        "mention #2: 'entity_id' must be a non-empty string",
        "mention #3: the mention at 3-4 is blank",
        "mention #4: 'candidates' must be a list of non-empty strings",
        "mention #5: 'start' and 'end' must be integers",
        "'lang' must be a non-empty string (or pass lang=)",
    ]
    assert report.examples[0].startswith(f"{path}:1: ") and report.examples[-1].startswith(f"{path}:2: ")


def test_detect_format_and_dispatch(tmp_path):
    assert detect_format(MEWSLI) == "mewsli" and detect_format(KILT) == "kilt"
    assert [m.id for m in read_dataset(KILT)] == ["k1", "k2", "k3", "k4"]
    assert len(list(read_dataset(MEWSLI, langs=["de"]))) == 6
    (tmp_path / "x.jsonl").write_text('{"foo": 1}\n')
    with pytest.raises(DatasetError, match=r"x\.jsonl: cannot tell the format from its first record"):
        read_dataset(tmp_path / "x.jsonl")
    with pytest.raises(DatasetError, match=r"missing\.jsonl: file not found"):
        list(read_dataset(tmp_path / "missing.jsonl", "kilt"))
    with pytest.raises(ValueError, match="unknown data set format 'conll'"):
        read_dataset(KILT, "conll")


# ----------------------------------------------------------------------------- AIDA CoNLL-YAGO

AIDA = os.path.join(FIXTURES, "aida", "AIDA-YAGO2-sample.tsv")
AIDA_DOC1 = "EU rejects German call to boycott British lamb .\nPeter Blackburn\nBRUSSELS 1996-08-22"


def test_aida_documents_in_the_anchors_format():
    from genre_fairseq.datasets import aida_documents

    report = ReadReport()
    docs = list(aida_documents(AIDA, report=report, strict=True))
    assert [(split, where) for split, where, _ in docs] == [
        ("train", f"{AIDA}:1"), ("testa", f"{AIDA}:18"), ("testb", f"{AIDA}:29")]
    first = docs[0][2]
    assert first == {"id": "1", "lang": "en", "text": AIDA_DOC1, "mentions": [
        {"start": 0, "end": 2, "entity_id": None, "nil": True},
        {"start": 11, "end": 17, "entity_id": "Germany"},
        {"start": 34, "end": 41, "entity_id": "United Kingdom"},
        {"start": 49, "end": 64, "entity_id": None, "nil": True},
        {"start": 65, "end": 73, "entity_id": "Brussels"}]}
    assert [AIDA_DOC1[m["start"]:m["end"]] for m in first["mentions"]] == [
        "EU", "German", "British", "Peter Blackburn", "BRUSSELS"]
    testa = docs[1][2]
    assert testa["id"] == "947testa" and testa["text"] == "LEICESTERSHIRE TAKE OVER .\nSão Paulo wins ."
    assert [(testa["text"][m["start"]:m["end"]], m["entity_id"]) for m in testa["mentions"]] == [
        ("LEICESTERSHIRE", "Leicestershire County Cricket Club"), ("São Paulo", "São Paulo")]
    assert not report.skipped and not report.warnings


def test_aida_mentions_exclude_nil_and_select_splits(tmp_path):
    report = ReadReport()
    mentions = list(read_dataset(AIDA, report=report))
    assert detect_format(AIDA) == "aida"
    assert [(m.id, m.mention, m.entities) for m in mentions] == [
        ("1:11-17", "German", ("Germany",)), ("1:34-41", "British", ("United Kingdom",)),
        ("1:65-73", "BRUSSELS", ("Brussels",)),
        ("947testa:0-14", "LEICESTERSHIRE", ("Leicestershire County Cricket Club",)),
        ("947testa:27-36", "São Paulo", ("São Paulo",)), ("1163testb:9-14", "JAPAN", ("Japan national football team",))]
    assert report.mentions == 6 and report.skipped == {"nil": 2}
    assert mentions[0].left == "EU rejects " and mentions[0].doc_id == "1"
    testb = list(read_dataset(AIDA + ":testb"))
    assert [m.id for m in testb] == ["1163testb:9-14"] and detect_format(AIDA + ":testb") == "aida"
    with pytest.raises(DatasetError, match="unknown AIDA split"):
        list(read_aida(AIDA, splits=["dev"]))


def test_aida_nil_mentions_round_trip_through_anchors(tmp_path):
    from genre_fairseq.datasets import aida_documents

    path = tmp_path / "aida.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for _, _, doc in aida_documents(AIDA)), encoding="utf-8")
    report = ReadReport()
    assert [m.mention for m in read_anchors(path, report=report, strict=True)] == [
        "German", "British", "BRUSSELS", "LEICESTERSHIRE", "São Paulo", "JAPAN"]
    assert report.skipped == {"nil": 2}


@pytest.mark.parametrize("bad, cause", [
    ("German\tX\tGerman\tGermany\thttp://en.wikipedia.org/wiki/Germany\t11867\t/m/0345h", "fields"),
    ("German\tB\tGerman", "fields"),
    ("German\tB\tGerman\tGermany", "without its Wikipedia URL"),
    ("German\tI\tGerman\tGermany\thttp://en.wikipedia.org/wiki/Germany\t11867", "without the B token"),
])
def test_aida_broken_line_is_a_counted_skip_with_file_and_line(tmp_path, bad, cause):
    lines = open(AIDA, encoding="utf-8").read().split("\n")
    assert lines[3].startswith("German\tB")
    lines[3] = bad
    path = tmp_path / "aida.tsv"
    path.write_text("\n".join(lines), encoding="utf-8")
    report = ReadReport()
    mentions = list(read_dataset(path, report=report))
    assert report.skipped == {"nil": 2, "bad_record": 1} and report.mentions == 5
    assert report.examples[0].startswith(f"{path}:4: ") and cause in report.examples[0]
    # the token stays in the text: the other offsets do not move
    assert mentions[0].mention == "British" and mentions[0].id == "1:34-41"
    with pytest.raises(DatasetError, match=f"{path}:4: "):
        list(read_dataset(path, strict=True))


def test_aida_mention_column_differing_from_its_tokens_is_a_warning(tmp_path):
    text = open(AIDA, encoding="utf-8").read().replace("German\tB\tGerman\t", "German\tB\tGermans\t")
    path = tmp_path / "aida.tsv"
    path.write_text(text, encoding="utf-8")
    report = ReadReport()
    mentions = list(read_dataset(path, report=report))
    assert report.warnings == {"mention_mismatch": 1} and mentions[0].mention == "German"
    assert report.examples[0].startswith(f"{path}:4: mention 'Germans'")


def test_genre_prepare_reads_aida_splits(tmp_path, capsys):
    from trie_tools.prepare import main

    out = tmp_path / "out"
    assert main(["--train", AIDA + ":train", "--test", AIDA + ":testb", "--model", "genre", "--output", str(out),
                 "--quiet"]) == 0
    with open(out / "train.target", encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == ["Germany", "United Kingdom", "Brussels"]
    with open(out / "test.source", encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == ["SOCCER - [START_ENT] JAPAN [END_ENT] GET LUCKY WIN ."]
    assert main(["--train", AIDA + ":dev", "--model", "genre", "--output", str(out), "--quiet"]) == 2
    assert ":dev: file not found" in capsys.readouterr().err


def test_genre_evaluate_scores_aida_testa_inkb(tmp_path, capsys):
    from genre_fairseq.evaluate import main

    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"id": "947testa:0-14", "predictions": ["Leicestershire County Cricket Club"]}) + "\n"
                    + json.dumps({"id": "947testa:27-36", "predictions": ["São Paulo FC", "São Paulo"]}) + "\n",
                    encoding="utf-8")
    out = tmp_path / "r.json"
    assert main([AIDA + ":testa", "--predictions", str(pred), "--k", "1,2", "--output-json", str(out),
                 "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["data"]["format"] == "aida" and r["data"]["skipped"] == {}
    assert r["micro"] == {"mentions": 2, "correct": 1, "accuracy": 0.5, "recall": {"1": 0.5, "2": 1.0}}
