"""Tests of the streaming Wikidata JSON dump reader."""
import bz2
import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from trie_tools import wikidata
from trie_tools.wikidata import (
    WIKIMEDIA_INTERNAL_CLASSES,
    WikidataEntity,
    WikidataStats,
    iter_entities,
    wikipedia_language,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dumps"
DUMP = FIXTURES / "wikidata.json"
MALFORMED = FIXTURES / "wikidata-malformed.json"

EINSTEIN = WikidataEntity(
    id="Q937",
    sitelinks={
        "ar": "ألبرت أينشتاين", "de": "Albert Einstein", "en": "Albert Einstein", "fr": "Albert Einstein",
        "it": "Albert Einstein", "ru": "Эйнштейн, Альберт", "simple": "Albert Einstein",
        "zh_yue": "愛因斯坦", "zh": "阿尔伯特·爱因斯坦",
    },
    labels={
        "en": "Albert Einstein", "de": "Albert Einstein", "fr": "Albert Einstein", "it": "Albert Einstein",
        "ru": "Альберт Эйнштейн", "zh": "阿尔伯特·爱因斯坦", "ar": "ألبرت أينشتاين",
    },
    aliases={
        "en": ["Einstein", "A. Einstein"], "de": ["Einstein"], "ru": ["Эйнштейн", "Эйнштейн, Альберт"],
        "zh": ["爱因斯坦"], "ar": ["أينشتاين"],
    },
)
GERMANY = WikidataEntity(
    id="Q183",
    sitelinks={
        "ar": "ألمانيا", "de": "Deutschland", "en": "Germany", "fr": "Allemagne", "it": "Germania",
        "ru": "Германия", "zh": "德国",
    },
    labels={
        "en": "Germany", "de": "Deutschland", "fr": "Allemagne", "it": "Germania", "ru": "Германия",
        "zh": "德国", "ar": "ألمانيا",
    },
    aliases={
        "en": ["Federal Republic of Germany", "FRG", "DE"], "de": ["Bundesrepublik Deutschland", "BRD"],
        "fr": ["République fédérale d'Allemagne", "RFA"], "ru": ["ФРГ"], "zh": ["德意志联邦共和国"],
    },
)
PARIS = WikidataEntity(
    id="Q90",
    sitelinks={
        "ar": "باريس", "de": "Paris", "en": "Paris", "fr": "Paris", "it": "Parigi", "ru": "Париж", "zh": "巴黎",
    },
    labels={"en": "Paris", "de": "Paris", "fr": "Paris", "it": "Parigi", "ru": "Париж", "zh": "巴黎", "ar": "باريس"},
    aliases={"en": ["City of Light", "Paris, France"], "fr": ["Ville Lumière", "Lutèce"]},
)
BERLIN = WikidataEntity(
    id="Q64",
    sitelinks={
        "ar": "برلين", "be_x_old": "Бэрлін", "de": "Berlin", "en": "Berlin", "fr": "Berlin", "it": "Berlino",
        "ru": "Берлин", "zh_yue": "柏林", "zh": "柏林",
    },
    labels={"en": "Berlin", "de": "Berlin", "fr": "Berlin", "it": "Berlino", "ru": "Берлин", "zh": "柏林", "ar": "برلين"},
    aliases={"en": ["Berlin, Germany"], "de": ["Bundeshauptstadt Berlin"]},
)
DISAMBIGUATION = WikidataEntity(
    id="Q900000002",
    sitelinks={"en": "Paris (disambiguation)", "fr": "Paris (homonymie)"},
    labels={"en": "Paris", "fr": "Paris"},
    aliases={},
)
JAPANESE_ONLY = WikidataEntity(id="Q900000005", sitelinks={"ja": "テスト"}, labels={"ja": "テスト"}, aliases={})

EXPECTED = [EINSTEIN, GERMANY, PARIS, BERLIN, DISAMBIGUATION, JAPANESE_ONLY]


def test_fixture_gives_exact_records_and_counts():
    stats = WikidataStats()
    assert list(iter_entities(DUMP, stats=stats)) == EXPECTED
    assert stats.counts() == {"read": 11, "kept": 6, "malformed": 0, "filtered": 2, "non_items": 2, "empty": 1}
    assert stats.path == str(DUMP)
    assert stats.malformed_lines == []


@pytest.mark.parametrize("suffix, opener", [(".json.gz", gzip.open), (".json.bz2", bz2.open)])
def test_compressed_dumps_read_the_same(tmp_path, suffix, opener):
    packed = tmp_path / ("wikidata" + suffix)
    with open(DUMP, "rb") as src, opener(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    stats = WikidataStats()
    assert list(iter_entities(packed, stats=stats)) == EXPECTED
    assert stats.counts()["read"] == 11


def test_format_is_judged_by_content_not_suffix(tmp_path):
    renamed = tmp_path / "dump.json"  # gzip data under a plain name
    with open(DUMP, "rb") as src, gzip.open(renamed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert list(iter_entities(renamed)) == EXPECTED


@pytest.mark.parametrize(
    "site, lang",
    [
        ("enwiki", "en"), ("dewiki", "de"), ("zh_yuewiki", "zh_yue"), ("be_x_oldwiki", "be_x_old"),
        ("zh_min_nanwiki", "zh_min_nan"), ("simplewiki", "simple"), ("alswiki", "als"),
        ("enwikiquote", None), ("dewikivoyage", None), ("enwikisource", None), ("frwiktionary", None),
        ("enwikibooks", None), ("enwikinews", None), ("enwikiversity", None),
        ("commonswiki", None), ("specieswiki", None), ("wikidatawiki", None), ("metawiki", None),
        ("mediawikiwiki", None), ("sourceswiki", None), ("wikimaniawiki", None), ("outreachwiki", None),
        ("incubatorwiki", None), ("wikifunctionswiki", None), ("testwiki", None), ("tenwiki", None),
    ],
)
def test_only_wikipedia_sites_give_a_language(site, lang):
    assert wikipedia_language(site) == lang


def test_sister_project_links_are_not_sitelinks():
    einstein = next(iter_entities(DUMP))
    # The fixture also links enwikiquote, dewikiquote, enwikisource and commonswiki.
    assert set(einstein.sitelinks) == {"ar", "de", "en", "fr", "it", "ru", "simple", "zh_yue", "zh"}


def test_language_filter_applies_to_sitelinks_labels_and_aliases():
    stats = WikidataStats()
    got = list(iter_entities(DUMP, langs=["de", "ru", "zh_yue"], stats=stats))
    assert got[0] == WikidataEntity(
        "Q937",
        {"de": "Albert Einstein", "ru": "Эйнштейн, Альберт", "zh_yue": "愛因斯坦"},
        {"de": "Albert Einstein", "ru": "Альберт Эйнштейн"},
        {"de": ["Einstein"], "ru": ["Эйнштейн", "Эйнштейн, Альберт"]},
    )
    assert [e.id for e in got] == ["Q937", "Q183", "Q90", "Q64"]
    # The disambiguation page and the Japanese-only item have nothing left in these languages.
    assert stats.empty == 3 and stats.kept == 4


def test_a_single_language_may_be_given_as_a_string():
    assert [e.id for e in iter_entities(DUMP, langs="ja")] == ["Q900000005"]


def test_disambiguation_pages_are_kept_by_the_default_class_list():
    # Q4167410 (Wikimedia disambiguation page) is not in the reference list of ANCHORS.md.
    assert "Q4167410" not in WIKIMEDIA_INTERNAL_CLASSES
    assert len(WIKIMEDIA_INTERNAL_CLASSES) == 14
    assert DISAMBIGUATION in list(iter_entities(DUMP))
    stats = WikidataStats()
    got = list(iter_entities(DUMP, classes=WIKIMEDIA_INTERNAL_CLASSES | {"Q4167410"}, stats=stats))
    assert DISAMBIGUATION not in got and stats.filtered == 3


def test_no_class_filter_keeps_categories_and_templates():
    ids = [e.id for e in iter_entities(DUMP, classes=())]
    assert ids == ["Q937", "Q183", "Q90", "Q64", "Q900000001", "Q900000002", "Q900000003", "Q900000005"]


def test_old_numeric_id_claims_are_understood(tmp_path):
    dump = tmp_path / "old.json"
    claim = {"mainsnak": {"snaktype": "value", "property": "P31",
                          "datavalue": {"value": {"entity-type": "item", "numeric-id": 4167836},
                                        "type": "wikibase-entityid"}}}
    entity = {"type": "item", "id": "Q5", "labels": {"en": {"language": "en", "value": "x"}},
              "claims": {"P31": [claim]}}
    dump.write_text(json.dumps(entity) + "\n")  # JSON lines, without the array brackets
    stats = WikidataStats()
    assert list(iter_entities(dump, stats=stats)) == []
    assert stats.filtered == 1


def test_malformed_lines_are_counted_with_line_numbers():
    stats = WikidataStats()
    got = list(iter_entities(MALFORMED, stats=stats))
    assert [e.id for e in got] == ["Q64", "Q183"]
    assert stats.malformed == 4 and stats.read == 6 and stats.kept == 2
    assert stats.malformed_lines == [3, 4, 5, 8]
    reasons = dict(stats.examples)
    assert reasons[3].startswith("bad JSON") and reasons[4] == "missing id"
    assert f"{MALFORMED}:3" in stats.summary()


def test_strict_mode_raises_naming_file_and_line():
    with pytest.raises(ValueError, match=r"wikidata-malformed\.json:3: bad JSON"):
        list(iter_entities(MALFORMED, strict=True))


def test_invalid_utf8_line_is_malformed(tmp_path):
    dump = tmp_path / "bad.json"
    good = b'{"type":"item","id":"Q1","labels":{"en":{"language":"en","value":"Universe"}}}'
    dump.write_bytes(b"[\n" + good + b",\n" + b'{"type":"item","id":"Q2","labels":"\xff\xfe"},\n' + good + b"\n]\n")
    stats = WikidataStats()
    assert [e.id for e in iter_entities(dump, stats=stats)] == ["Q1", "Q1"]
    assert stats.malformed_lines == [3]


@pytest.mark.parametrize("block_bytes", [1, 300, 5000, 1 << 22])
def test_two_workers_give_the_same_records_and_counts(block_bytes):
    serial, parallel = WikidataStats(), WikidataStats()
    expected = list(iter_entities(MALFORMED, stats=serial))
    assert list(iter_entities(MALFORMED, stats=parallel, workers=2, block_bytes=block_bytes)) == expected
    assert parallel == serial
    assert list(iter_entities(DUMP, workers=2, block_bytes=block_bytes)) == EXPECTED


@pytest.mark.parametrize("block_bytes", [1, 2, 7, 300])
def test_block_size_does_not_change_records_or_line_numbers(block_bytes):
    stats = WikidataStats()
    assert [e.id for e in iter_entities(MALFORMED, stats=stats, block_bytes=block_bytes)] == ["Q64", "Q183"]
    assert stats.malformed_lines == [3, 4, 5, 8]
    assert list(iter_entities(DUMP, block_bytes=block_bytes)) == EXPECTED


def test_strict_mode_raises_with_workers_too():
    with pytest.raises(ValueError, match=r"wikidata-malformed\.json:3:"):
        list(iter_entities(MALFORMED, strict=True, workers=2, block_bytes=2))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="workers"):
        list(iter_entities(DUMP, workers=0))


@pytest.mark.parametrize("bad, reason", [
    ({"id": "Q2\u0001"}, "entity id 'Q2\\x01' contains the control character U+0001"),
])
def test_control_characters_in_ids_are_counted_malformed_lines(tmp_path, bad, reason):
    good = {"type": "item", "id": "Q1", "labels": {"en": {"language": "en", "value": "Universe"}}}
    item = {**good, "id": "Q2", **bad}
    dump = tmp_path / "control.json"
    dump.write_text("[\n" + json.dumps(good) + ",\n" + json.dumps(item) + ",\n" + json.dumps(good) + "\n]\n")
    stats = WikidataStats()
    assert [e.id for e in iter_entities(dump, stats=stats)] == ["Q1", "Q1"]
    assert stats.malformed == 1 and stats.malformed_lines == [3]
    assert dict(stats.examples)[3] == reason
    assert f"{dump}:3" in stats.summary()
    with pytest.raises(ValueError, match=rf"control\.json:3: {re.escape(reason)}"):
        list(iter_entities(dump, strict=True))


def _read_all(path, **kwargs):
    stats = WikidataStats()
    records = list(iter_entities(path, stats=stats, **kwargs))
    return records, stats.counts(), stats.malformed_lines, stats.examples


def _synthetic_dump(path, items):
    """A few items from benchmarks/bench_wikidata.py's generator (realistic shape), plus odd lines."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_wikidata", Path(__file__).resolve().parent.parent / "benchmarks" / "bench_wikidata.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = __import__("random").Random(1)
    lines = [json.dumps(bench.make_item(rng, n), ensure_ascii=False) for n in range(items)]
    label = '"labels":{"en":{"language":"en","value":"%s"}}'
    lines += ['{"type":"item","id":"Q90",%s,"x":NaN}' % (label % "nan"),  # json accepts NaN, orjson does not
              '{"type":"item","id":"Q91",%s,"n":123456789012345678901234567890}' % (label % "big"),
              '{"type":"item","id":"Q92",%s}' % (label % "lone \\ud800 surrogate"),
              '{"type":"item","id":"Q93",%s,%s}' % (label % "first", label % "last wins"),
              '{"type":"item","id":"Q94",' + label % "cut short"]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")


@pytest.mark.parametrize("workers", [1, 2])
def test_fast_json_gives_the_same_records_as_json(tmp_path, monkeypatch, workers):
    dump = tmp_path / "synthetic.json"
    _synthetic_dump(dump, 40)
    for path in (DUMP, MALFORMED, dump):
        fast = _read_all(path, workers=workers)
        with monkeypatch.context() as m:
            m.setattr(wikidata, "_fast_loads", json.loads)
            slow = _read_all(path, workers=1)
        assert fast == slow, path
    records, counts, malformed, _ = fast
    assert [r.labels["en"] for r in records[-4:]] == ["nan", "big", "lone \ud800 surrogate", "last wins"]
    assert malformed == [46] and counts["read"] == 45
