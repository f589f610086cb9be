"""The Wikidata reader's fast path (msgspec, kept fields only) against the full parse of each line.

``trie_tools.wikidata._parse_line`` decodes only the fields it keeps and falls back to the full parse
(``_parse_full``: orjson, then json) on whatever it does not take. Here both are run on the same
lines: realistic items, hand-written adversarial lines, and thousands of random corruptions of an
item; outcome, record (with its dicts' order) and error message must be the same.
"""
import json
import os
import random
import re
import tempfile

import pytest

from trie_tools import wikidata
from trie_tools.wikidata import WIKIMEDIA_INTERNAL_CLASSES, WikidataStats, iter_entities

pytest.importorskip("msgspec")


def _reference(line: bytes, classes=WIKIMEDIA_INTERNAL_CLASSES, langs=None):
    line = line.strip()
    if line.endswith(b","):
        line = line[:-1]
    if not line or line in (b"[", b"]"):
        return wikidata._SKIP, None
    return wikidata._parse_full(line, classes, langs)


def _comparable(result):
    outcome, payload = result
    if isinstance(payload, wikidata.WikidataEntity):
        payload = (payload.id, list(payload.sitelinks.items()), list(payload.labels.items()),
                   [(k, list(v)) for k, v in payload.aliases.items()])
    return outcome, payload


def _assert_same(line: bytes, classes=WIKIMEDIA_INTERNAL_CLASSES, langs=None):
    fast = wikidata._parse_line(line, classes, langs)
    assert _comparable(fast) == _comparable(_reference(line, classes, langs)), line[:300]
    return fast


def _statement(target=None, numeric=None, snaktype="value"):
    value = {"entity-type": "item"}
    if numeric is not None:
        value["numeric-id"] = numeric
    if target is not None:
        value["id"] = target
    snak = {"snaktype": snaktype, "property": "P31", "datatype": "wikibase-item"}
    if snaktype == "value":
        snak["datavalue"] = {"value": value, "type": "wikibase-entityid"}
    return {"mainsnak": snak, "type": "statement", "rank": "normal",
            "qualifiers": {"P580": [{"snaktype": "value", "datavalue": {"value": {"time": "+1990"}}}]},
            "references": [{"snaks": {"P143": [{"datavalue": {"value": {"id": "Q4167836"}}}]}}]}


def _item(rng: random.Random, n: int) -> dict:
    langs = rng.sample(["en", "de", "fr", "ja", "zh", "ru", "es", "ar", "claims", "zh-hant"], rng.randint(0, 6))
    claims = {f"P{p}": [_statement(f"Q{rng.randint(1, 99)}")] for p in rng.sample(range(32, 400), rng.randint(0, 5))}
    kind = rng.random()
    if kind < 0.2:
        claims["P31"] = [_statement("Q5"), _statement("Q4167836")]
    elif kind < 0.3:
        claims["P279"] = [_statement(numeric=11266439)]
    elif kind < 0.4:
        claims["P31"] = [_statement(snaktype="somevalue"), _statement("Q5")]
    return {
        "type": "item" if rng.random() < 0.9 else "property", "id": f"Q{n}" if rng.random() < 0.95 else f"P{n}",
        "labels": {lang: {"language": lang, "value": f"N\u00e9 {n} \"{lang}\" {{x}}"} for lang in langs},
        "descriptions": {lang: {"language": lang, "value": "\"claims\":{\"P31\":[]} \\ \U0001F600"} for lang in langs},
        "aliases": {lang: [{"language": lang, "value": f"a{i}"} for i in range(rng.randint(0, 2))] for lang in langs[:2]},
        "claims": claims,
        "sitelinks": {f"{lang}wiki": {"site": f"{lang}wiki", "title": f"T{n}", "badges": []} for lang in langs[:3]}
        | ({"commonswiki": {"site": "commonswiki", "title": "C"}} if n % 3 == 0 else {}),
        "lastrevid": 10**9 + n,
    }


ITEMS = [json.dumps(_item(random.Random(n), n), ensure_ascii=n % 2 == 0).encode("utf-8") for n in range(200)]


@pytest.mark.parametrize("langs", [None, frozenset({"en", "ja"})])
@pytest.mark.parametrize("classes", [WIKIMEDIA_INTERNAL_CLASSES, frozenset()])
def test_realistic_items_give_the_full_parses_records(classes, langs):
    outcomes = {_assert_same(line, classes, langs)[0] for line in ITEMS}
    assert wikidata._KEPT in outcomes and wikidata._NON_ITEM in outcomes
    assert (wikidata._FILTERED in outcomes) == bool(classes)


ADVERSARIAL = [
    # "claims" inside strings and as a language code; braces and escaped quotes inside strings
    b'{"id":"Q1","labels":{"en":{"value":"\\"claims\\":{\\"P31\\":[{\\"mainsnak\\":{}}]}"}},"claims":{}}',
    b'{"id":"Q1","labels":{"claims":{"value":"{{[[\\"]]}}"}},"claims":{"P31":[]}}',
    b'{"id":"Q1","labels":{"x\\"claims":{"value":"v"}},"descriptions":{"claims":{"P31":"x"}}}',
    b'{"id":"Q1","aliases":{"en":[{"value":"\\u00e9\\ud83d\\ude00\\n\\t\\\\"}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"lone \\ud800 surrogate"}}}',
    b'{"id":"Q1","descriptions":{"en":{"value":"lone \\udfff"}},"labels":{"en":{"value":"x"}}}',
    # duplicate keys: the last one wins, at every level
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"labels":{"de":{"value":"b"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"},"de":{"value":"b"},"en":{"value":"c"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a","value":"z"}}}',
    b'{"id":"Q2","id":"Q1","labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[' + json.dumps(_statement("Q4167836")).encode()
    + b'],"P31":[]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":'
    b'{"id":"Q5","id":"Q4167836"}}}}]}}',
    # empty maps written as PHP arrays, and lists where maps belong
    b'{"id":"Q1","labels":[],"aliases":[],"claims":[],"sitelinks":[],"descriptions":[]}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":[1]}',
    b'{"id":"Q1","labels":[{"value":"a"}]}',
    b'{"id":"Q1","sitelinks":[["enwiki"]]}',
    b'{"id":"Q1","aliases":[1],"labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1","aliases":{"en":{}},"labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1","aliases":{"en":{"0":{"value":"a"}}}}',
    b'{"id":"Q1","aliases":{"en":[]},"labels":{"en":{"value":"a"}}}',
    # nulls and odd types where the reader looks
    b'{"id":"Q1","labels":null,"claims":null,"sitelinks":null,"aliases":null}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":null}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":{}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":{"a":1}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":"x"}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":"Q4167836"}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":{"id":null,'
    b'"numeric-id":4167836}}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P279":[{"mainsnak":{"datavalue":{"value":{"numeric-id":4167836}}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":{"numeric-id":-0}}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":{"numeric-id":4.167836e6}}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":{"numeric-id":'
    b'123456789012345678901234567890}}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[{"mainsnak":{"datavalue":{"value":{"id":["Q5"]}}}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P31":[7]}}',
    b'{"id":"Q1","labels":{"en":{"value":5}},"sitelinks":{"enwiki":{"title":null}}}',
    b'{"id":"Q1","labels":{"en":{"language":"en"}}}',
    b'{"id":"Q1","sitelinks":{"enwiki":{"site":"enwiki"}}}',
    b'{"id":"Q1","sitelinks":{"enwiki":"Paris"}}',
    b'{"id":"Q1","type":null,"labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1","type":"property","labels":5}',
    b'{"id":"P1","labels":{"en":{"value":"a"}}}',
    b'{"id":"L1","lemmas":{"en":{"value":"a"}},"forms":[]}',
    b'{"id":null,"labels":{"en":{"value":"a"}}}',
    b'{"id":5,"labels":{"en":{"value":"a"}}}',
    b'{"id":"","labels":{"en":{"value":"a"}}}',
    b'{"labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1\\t2","labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1\\u0000","labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1"}',
    b'{}',
    # what only json accepts, in parts the fast path skips and in parts it reads
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":NaN}},"x":-Infinity}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"lastrevid":123456789012345678901234567890}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":1.5e999}',
    # malformed JSON in the skipped parts must still make the line malformed
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"claims":{"P17":[{"mainsnak":{"x":1,}}]}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":"tab\there"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":"bad \\x escape"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":"bad \\u12 escape"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":"\xff\xfe"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":"\xc3"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"descriptions":{"en":{"value":"\xed\xa0\x80"}}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":01}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":1.}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":.5}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":-}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":tru}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":[1 2]}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":{"a" 1}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":{1:2}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}},"x":"\\u0000\x7f"}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}}} {"id":"Q2"}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}}}]',
    b'{"id":"Q1","labels":{"en":{"value":"a"}}',
    b'{"id":"Q1","labels":{"en":{"value":"a"}}}\x00',
    b'\xef\xbb\xbf{"id":"Q1","labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1",\x0c"labels":{"en":{"value":"a"}}}',
    b'{"id":"Q1",\r\n"labels":{"en":{"value":"a"}}}',
    b'["Q1"]', b'"Q1"', b'5', b'null', b'{', b'}', b',,', b'[[', b'  ,  ',
]


@pytest.mark.parametrize("line", ADVERSARIAL)
def test_adversarial_lines_give_the_full_parses_verdict(line):
    _assert_same(line)
    _assert_same(line + b",\n")
    _assert_same(line, frozenset(), frozenset({"en"}))


def test_random_corruptions_give_the_full_parses_verdict():
    rng = random.Random(15)
    alphabet = b'"\\{}[],:0-e.nNtu \t\x00\x7f\xc3\xa9\xff'
    seen = set()
    for _ in range(4000):
        line = bytearray(rng.choice(ITEMS[:40]))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(line))
            what = rng.random()
            if what < 0.4:
                line[at:at] = bytes([rng.choice(alphabet)])
            elif what < 0.7:
                del line[at]
            else:
                line[at] = rng.choice(alphabet)
        seen.add(_assert_same(bytes(line))[0])
    assert {wikidata._KEPT, wikidata._MALFORMED} <= seen


def test_fast_path_decides_most_realistic_lines_itself(monkeypatch):
    calls = []
    full = wikidata._parse_full
    monkeypatch.setattr(wikidata, "_parse_full", lambda *a: calls.append(a) or full(*a))
    for line in ITEMS:
        wikidata._parse_line(line, WIKIMEDIA_INTERNAL_CLASSES, None)
    assert calls == []


def test_a_dump_reads_the_same_with_and_without_the_fast_path(tmp_path, monkeypatch):
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\n" + b",\n".join(ITEMS + [line for line in ADVERSARIAL if b"\n" not in line]) + b"\n]\n")
    fast_stats, full_stats = WikidataStats(), WikidataStats()
    fast = list(iter_entities(path, stats=fast_stats))
    monkeypatch.setattr(wikidata, "_decode_item", None)
    full = list(iter_entities(path, stats=full_stats))
    assert [_comparable((0, e)) for e in fast] == [_comparable((0, e)) for e in full]
    assert fast_stats == full_stats and fast_stats.malformed > 20 and fast_stats.kept > 100


SUBSETS = [frozenset(f for bit, f in enumerate(wikidata.FIELDS) if mask >> bit & 1) for mask in range(8)]


def _projected(result, fields):
    """A full-fields verdict as it reads with only `fields` built: the others empty, then maybe no name left."""
    outcome, payload = result
    if outcome != wikidata._KEPT:
        return outcome, payload
    entity = payload._replace(**{f: {} for f in wikidata.FIELDS if f not in fields})
    if not (entity.sitelinks or entity.labels or entity.aliases):
        return wikidata._EMPTY, None
    return outcome, entity


@pytest.mark.parametrize("fields", SUBSETS, ids=lambda f: "+".join(sorted(f)) or "none")
def test_fields_not_asked_for_are_left_empty_on_both_paths(fields):
    kept = 0
    for line in ITEMS:
        fast = wikidata._parse_line(line, WIKIMEDIA_INTERNAL_CLASSES, None, fields)
        full = _reference_fields(line, fields)
        assert _comparable(fast) == _comparable(full), line[:300]
        assert _comparable(fast) == _comparable(_projected(_reference(line), fields)), line[:300]
        kept += fast[0] == wikidata._KEPT
    assert (kept > 50) == bool(fields)


def _reference_fields(line, fields):
    line = line.strip().rstrip(b",")
    return wikidata._parse_full(line, WIKIMEDIA_INTERNAL_CLASSES, None, fields)


def test_a_field_not_asked_for_is_checked_as_json_only(tmp_path):
    broken_labels = b'{"type":"item","id":"Q1","labels":{"en":"not an object"},"sitelinks":{"enwiki":{"title":"T"}}}'
    bad_json = b'{"type":"item","id":"Q2","labels":{"en":{"value":"x"},"sitelinks":{}}'
    for parse in (wikidata._parse_line, lambda line, *a: _reference_fields(line, a[-1])):
        outcome, entity = parse(broken_labels, WIKIMEDIA_INTERNAL_CLASSES, None, frozenset({"sitelinks"}))
        assert outcome == wikidata._KEPT and entity.sitelinks == {"en": "T"} and entity.labels == {}
        outcome, why = parse(broken_labels, WIKIMEDIA_INTERNAL_CLASSES, None, frozenset({"sitelinks", "labels"}))
        assert outcome == wikidata._MALFORMED and "unexpected structure in Q1" in why
        outcome, why = parse(bad_json, WIKIMEDIA_INTERNAL_CLASSES, None, frozenset({"sitelinks"}))
        assert outcome == wikidata._MALFORMED and why.startswith("bad JSON")
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\n" + b",\n".join(ITEMS) + b"\n]\n")
    for fields in SUBSETS:
        stats = WikidataStats()
        got = [_comparable((0, e)) for e in iter_entities(path, stats=stats, fields=fields)]
        want = [_projected(_reference(line), fields) for line in ITEMS]
        assert got == [_comparable(r) for r in want if r[0] == wikidata._KEPT]
        assert stats.empty == sum(r[0] == wikidata._EMPTY for r in want)
        assert stats.read == len(ITEMS)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['titles'\]"):
        list(iter_entities(path, fields=["sitelinks", "titles"]))


def test_two_ranges_cut_anywhere_hold_each_line_once():
    lines = [b"[", ITEMS[2], b"{bad", b"", ITEMS[4], ITEMS[0], b'{"id":5}', ITEMS[6], b"]"]
    data = b"\n".join(lines)  # no newline at the end
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dump.json")
        with open(path, "wb") as f:
            f.write(data)
        whole = wikidata._parse_range(path, 0, len(data), WIKIMEDIA_INTERNAL_CLASSES, None)
        assert whole[0] == len(lines) - 1 and [(o, i) for o, i, _ in whole[1]] == [
            (wikidata._KEPT, 1), (wikidata._MALFORMED, 2), (wikidata._KEPT, 4), (wikidata._MALFORMED, 6)]
        assert whole[2] == [1, 1, 0]  # ITEMS[0] filtered, ITEMS[6] not an item
        for cut in range(len(data) + 1):
            for block_bytes in (1, 5, 1 << 18):
                head = wikidata._parse_range(path, 0, cut, WIKIMEDIA_INTERNAL_CLASSES, None, block_bytes=block_bytes)
                tail = wikidata._parse_range(path, cut, len(data), WIKIMEDIA_INTERNAL_CLASSES, None,
                                             block_bytes=block_bytes)
                joined = [(o, i, _comparable((o, p))) for o, i, p in head[1]] + [
                    (o, head[0] + i, _comparable((o, p))) for o, i, p in tail[1]]
                assert head[0] + tail[0] == whole[0], cut
                assert [a + b for a, b in zip(head[2], tail[2])] == whole[2], cut
                assert joined == [(o, i, _comparable((o, p))) for o, i, p in whole[1]], cut


@pytest.mark.parametrize("range_bytes", [300, 1500, 1 << 22])
@pytest.mark.parametrize("block_bytes", [1, 1 << 18])
def test_workers_ranges_of_any_size_give_the_same_records_and_line_numbers(tmp_path, monkeypatch,
                                                                           range_bytes, block_bytes):
    lines = ITEMS[:40] + [b"{bad", b"", b'{"id":5}', ITEMS[41], b"[1]"]
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]")  # no newline at the end
    serial = WikidataStats()
    expected = _records(path, stats=serial)
    monkeypatch.setattr(wikidata, "RANGE_BYTES", range_bytes)
    parallel = WikidataStats()
    assert _records(path, stats=parallel, workers=2, block_bytes=block_bytes) == expected
    assert parallel == serial and [line for line, _ in parallel.examples] == [42, 44, 46]


def _dump(tmp_path, name="dump.json"):
    path = tmp_path / name
    path.write_bytes(b"[\n" + b",\n".join(ITEMS) + b"\n]\n")
    return path


def _records(path, stats=None, **kwargs):
    stats = WikidataStats() if stats is None else stats
    return [_comparable((0, e)) for e in iter_entities(path, stats=stats, **kwargs)], stats.counts()


@pytest.mark.parametrize("kind,tool", [("gz", "pigz"), ("bz2", "lbzip2")])
def test_compressed_dumps_read_the_same_through_a_tool_and_in_process(tmp_path, kind, tool, monkeypatch):
    import bz2
    import gzip
    import shutil

    plain = _dump(tmp_path)
    path = tmp_path / f"dump.json.{kind}"
    path.write_bytes((gzip.compress if kind == "gz" else bz2.compress)(plain.read_bytes()))
    expected = _records(plain)
    assert _records(path, decompress="python") == expected
    assert _records(path, workers=2, block_bytes=5000, decompress="python") == expected
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not on PATH")
    started = []
    popen = wikidata.subprocess.Popen
    monkeypatch.setattr(wikidata.subprocess, "Popen", lambda args, **k: started.append(args[0]) or popen(args, **k))
    assert _records(path) == expected
    assert _records(path, workers=2, block_bytes=5000) == expected
    assert [os.path.basename(x) for x in started] == [tool, tool]
    # a damaged file is named, as in-process decompression names it
    cut = tmp_path / f"cut.json.{kind}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(wikidata.InputError) as in_process:
        _records(cut, decompress="python")
    assert re.match(rf".*cut\.json\.{kind}: (truncated|corrupt) ", str(in_process.value))
    with pytest.raises(wikidata.InputError) as through_tool:  # the same words as in process
        _records(cut)
    assert str(through_tool.value) == str(in_process.value)
    monkeypatch.setattr(wikidata, "_DIAGNOSE_BYTES", 0)  # a large file: the tool's words
    with pytest.raises(wikidata.InputError, match=rf"cut\.json\.{kind}: corrupt or truncated "
                                                  rf"{'gzip' if kind == 'gz' else 'bzip2'} file \({tool}: .+\)"):
        _records(cut)


def test_without_a_tool_on_path_the_dump_is_decompressed_in_process(tmp_path, monkeypatch):
    import gzip

    plain = _dump(tmp_path)
    path = tmp_path / "dump.json.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    monkeypatch.setattr(wikidata.shutil, "which", lambda name: None)
    monkeypatch.setattr(wikidata.subprocess, "Popen", None)  # would fail if called
    assert _records(path) == _records(plain)


def test_stopping_early_ends_the_decompressor_and_the_read_ahead(tmp_path):
    import gzip
    import shutil
    import threading

    path = tmp_path / "dump.json.gz"
    path.write_bytes(gzip.compress(b"[\n" + b",\n".join(ITEMS * 20) + b"\n]\n"))
    procs = []
    popen = wikidata.subprocess.Popen

    def spy(*args, **kwargs):
        procs.append(popen(*args, **kwargs))
        return procs[-1]

    wikidata.subprocess.Popen = spy
    try:
        entities = iter_entities(path, block_bytes=2000)
        next(entities)
        entities.close()
    finally:
        wikidata.subprocess.Popen = popen
    assert not [t for t in threading.enumerate() if t.name == "wikidata-read-ahead"]
    if shutil.which("pigz"):
        assert len(procs) == 1 and procs[0].poll() is not None


def test_read_errors_reach_the_reader_in_order():
    def blocks():
        yield b"a"
        yield b"b"
        raise wikidata.InputError("x.gz: corrupt gzip data (boom)")

    got = []
    with pytest.raises(wikidata.InputError, match="boom"):
        for block in wikidata._read_ahead(blocks(), 1):
            got.append(block)
    assert got == [b"a", b"b"]


def test_line_numbers_of_malformed_lines_do_not_depend_on_blocks(tmp_path):
    lines = [ITEMS[0], b"{bad", ITEMS[1], b"", b'{"id":5}', ITEMS[2], b"[1]"]
    path = tmp_path / "dump.json"
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]")  # no newline at the end
    problems = set()
    for block_bytes in (1, 7, 100, 1 << 18):
        stats = WikidataStats()
        list(iter_entities(path, stats=stats, block_bytes=block_bytes))
        problems.add((tuple(stats.examples), stats.read, stats.kept))
    assert len(problems) == 1
    (examples, read, kept), = problems
    assert [line for line, _ in examples] == [3, 6, 8] and read == 6
    with pytest.raises(wikidata.InputError, match=r"dump\.json:3: bad JSON"):
        list(iter_entities(path, strict=True, block_bytes=7))


def test_bad_decompress_option_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="decompress must be 'auto' or 'python', got 'pigz'"):
        list(iter_entities(_dump(tmp_path), decompress="pigz"))


def test_worker_results_unpack_to_the_same_records():
    lines = ITEMS[:30] + [b'{"id":"Q1","labels":{"en":{"value":"lone \\ud800"}}}',
                          b'{"id":"Q2","labels":{"en":{"value":123456789012345678901234567890}}}', b"{bad"]
    newlines, results, counts = wikidata._parse_block(b"\n".join(lines) + b"\n", WIKIMEDIA_INTERNAL_CLASSES, None)
    assert len(results) + sum(counts) == len(lines) and sum(counts) > 5
    lone = [r for r in results if r[1] == 30]
    big = [r for r in results if r[1] == 31]
    plain = [r for r in results if r[1] < 30]
    for part in (plain, lone, big, results):
        packed = wikidata._packed((newlines, part, counts))
        back_newlines, back, back_counts = wikidata._unpacked(packed)
        assert back_newlines == newlines and back_counts == counts
        assert [(o, i, _comparable((o, p))) for o, i, p in back] == [(o, i, _comparable((o, p))) for o, i, p in part]
        assert all(isinstance(p, wikidata.WikidataEntity) for o, _, p in back if o == wikidata._KEPT)
    assert wikidata._packed((0, plain, counts))[:1] == b"m"  # msgpack where it can
    assert wikidata._packed((0, lone, counts))[:1] == b"p"  # a pickle for a lone surrogate


@pytest.mark.parametrize("block_bytes", [1, 5, 300, 1 << 15])
def test_a_task_parsed_in_blocks_gives_the_blocks_records(block_bytes):
    # _parse_chunked: what a worker does with the lines of a compressed dump it is sent
    lines = [b"[", ITEMS[2], b"{bad", b"", ITEMS[4], ITEMS[0], b'{"id":5}', ITEMS[6]] + ITEMS[7:20] + [b"]"]
    for data in (b"\n".join(lines), b"\n".join(lines) + b"\n"):
        whole = wikidata._parse_block(data, WIKIMEDIA_INTERNAL_CLASSES, None)
        chunked = wikidata._parse_chunked(data, WIKIMEDIA_INTERNAL_CLASSES, None, wikidata._ALL_FIELDS, block_bytes)
        assert chunked[0] == whole[0] and chunked[2] == whole[2]
        assert [(o, i, _comparable((o, p))) for o, i, p in chunked[1]] == [
            (o, i, _comparable((o, p))) for o, i, p in whole[1]]
