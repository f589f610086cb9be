"""``genre-trie names --wikidata``'s records, made in the worker processes that parse the dump.

``trie_tools.names.wikidata_names`` hands each parsed block to ``_EntityNames`` through
``wikidata.iter_converted``: in the parent with one worker, in the workers with more. Both must
give what a plain loop over every entity (all fields decoded, each name checked in full) gives:
the same records in the same order, the same counts and skipped-name examples, mention pairs and
sitelink counts, whatever the sources and however the file is cut into tasks.
"""
import gzip
import json
import random

import pytest

from genre_fairseq.name_table import encode_records, text_problem
from trie_tools import wikidata
from trie_tools.names import NamesStats, SitelinkCounts, _usable, wikidata_names
from trie_tools.wikidata import InputError, WikidataStats, iter_converted, iter_entities

ODD_NAMES = ["", "   ", " padded ", "tab\there", "new\nline", "nbsp\u00a0inside", "\u00a0", "lone \ud800",
             "zero\u200bwidth", "x", "ok name", "ideographic\u3000space"]


def _item(rng: random.Random, n: int) -> dict:
    langs = rng.sample(["en", "de", "fr", "ja", "zh", "ru", "es", "", "x\ty"], rng.randint(0, 6))
    name = lambda: rng.choice(ODD_NAMES) if rng.random() < 0.3 else f"N{n} {rng.randint(0, 9)}"
    item = {
        "type": "item", "id": f"Q{n}",
        "labels": {lang: {"language": lang, "value": name()} for lang in langs},
        "aliases": {lang: [{"language": lang, "value": name()} for _ in range(rng.randint(0, 2))] for lang in langs[:2]},
        "claims": {},
        "sitelinks": {f"{lang}wiki": {"site": f"{lang}wiki", "title": name()} for lang in langs[:3] if lang.isalpha()},
    }
    if n % 17 == 0:
        item["claims"]["P31"] = [{"mainsnak": {"datavalue": {"value": {"id": "Q4167836"}}}}]
    return item


def _dump(tmp_path, n=300):
    rng = random.Random(7)
    lines = []
    for n in range(1, n + 1):
        item = _item(rng, n)
        line = json.dumps(item, ensure_ascii=n % 2 == 0)
        if "\ud800" in line:  # a lone surrogate is written as the escape, as json does
            line = json.dumps(item)
        lines.append(line)
    lines[10] = "{broken"
    path = tmp_path / "dump.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    return path


# Titles of the dump above; "ok name" is the title of several items, "tab\there" is not storable.
REDIRECTS = {"es": {"N1 3": ["Five three", "tab\tredirect"], "ok name": [" spaced ", "Okay"]},
             "de": {"N4 7": ["Vier"]}, "zh": {"tab\there": ["from a bad title"]}}


def _reference(path, sources, redirects, with_mentions):
    """The records of every entity read with all fields and each name checked by _usable (the rule)."""
    want = set(sources)
    records, mentions, links, stats = [], [], {}, NamesStats()
    for entity in iter_entities(path):
        stats.entities += 1
        found = []
        for lang, title in entity.sitelinks.items():
            found.append(("titles", lang, title, True))
            if "redirects" in want or with_mentions:
                for r in redirects.get(lang, {}).get(title, ()):
                    found.append(("redirects", lang, r, False))
        found += [("labels", lang, label, lang not in entity.sitelinks) for lang, label in entity.labels.items()]
        found += [("aliases", lang, a, False) for lang, values in entity.aliases.items() for a in values]
        written = 0
        for source, lang, name, primary in found:
            if source not in want and not with_mentions:
                continue
            why = _usable(name) or text_problem(lang, "language code")
            if why is not None:
                if source in want:
                    stats.skip(entity.id, lang, name, f"{source}: {why}", False)
                continue
            if with_mentions:
                mentions.append((name.strip(), entity.id))
            if source in want:
                stats.by_source[source] += 1
                written += 1
                records.append((entity.id, lang, name.strip(), primary))
        stats.names += written
        if written:
            stats.kept += 1
            if entity.sitelinks:
                links[entity.id] = len(entity.sitelinks)
        else:
            stats.no_names += 1
    return records, mentions, links, stats


def _run(path, sources, redirects, with_mentions, **kwargs):
    stats, mentions, links = NamesStats(), ([] if with_mentions else None), SitelinkCounts()
    dump_stats = WikidataStats()
    records = list(wikidata_names(path, sources=sources, redirects=redirects, stats=stats, mentions=mentions,
                                  sitelinks=links, dump_stats=dump_stats, **kwargs))
    if kwargs.get("encoded"):  # lists of spool lines, one per block: flattened to compare
        assert all(isinstance(batch, list) for batch in records)
        records = [line for batch in records for line in batch]
    return records, mentions, links, stats, dump_stats


def _full_read_empty(path):
    stats = WikidataStats()
    for _ in iter_entities(path, stats=stats):
        pass
    return stats.empty


@pytest.mark.parametrize("sources,with_mentions", [
    (("titles", "redirects"), False), (("titles", "labels"), False), (("aliases",), False),
    (("titles", "redirects", "labels", "aliases"), True), (("titles",), True)])
def test_records_are_the_full_checks_records_with_one_worker_and_two(tmp_path, monkeypatch, sources, with_mentions):
    path = _dump(tmp_path)
    records, mentions, links, ref = _reference(path, sources, REDIRECTS, with_mentions)
    assert records and ref.skipped > 5 and len({r[0] for r in records}) > 100
    one = _run(path, sources, REDIRECTS, with_mentions)
    monkeypatch.setattr(wikidata, "RANGE_BYTES", 5000)  # many tasks, cut anywhere
    two = _run(path, sources, REDIRECTS, with_mentions, workers=2)
    # encoded: the same records as the name table's spool lines, made where the block is parsed
    lines = encode_records(records)
    one_encoded = _run(path, sources, REDIRECTS, with_mentions, encoded=True)
    two_encoded = _run(path, sources, REDIRECTS, with_mentions, workers=2, encoded=True)
    empty = _full_read_empty(path)
    for (got_records, got_mentions, got_links, stats, dump_stats), expected in (
            (one, records), (two, records), (one_encoded, lines), (two_encoded, lines)):
        assert got_records == expected
        assert got_mentions == (mentions if with_mentions else None)
        assert all(got_links.get(qid) == count for qid, count in links.items())
        assert not any(got_links.get(r[0]) for r in records if r[0] not in links)
        assert (stats.kept, stats.names, stats.skipped) == (ref.kept, ref.names, ref.skipped)
        assert dict(stats.by_source) == dict(ref.by_source) and stats.examples == ref.examples
        # An item without a name in the fields read is "empty" to the reader, not an entity without names.
        assert stats.entities + dump_stats.empty == ref.entities + empty
        assert stats.entities - stats.no_names == ref.entities - ref.no_names
        assert dump_stats.malformed == 1 and dump_stats.malformed_lines == [12]
    assert one[3] == two[3] == one_encoded[3] == two_encoded[3] and one[4] == two[4] == two_encoded[4]


def test_a_bad_name_under_strict_stops_the_run_from_a_worker(tmp_path):
    path = _dump(tmp_path)
    with pytest.raises(InputError, match=r"^Q\d+ \[\w*\] .*: titles: "):
        list(wikidata_names(path, sources=("titles",), workers=2, strict=True))
    with pytest.raises(InputError, match=r"^Q\d+ \[\w*\] .*: titles: "):
        list(wikidata_names(path, sources=("titles",), strict=True))


class _Fails:
    def __call__(self, entities):
        raise RuntimeError(f"conversion failed after {len(entities)} entities")


class _Ids:
    def __call__(self, entities):
        return [e.id for e in entities]


@pytest.mark.parametrize("workers", [1, 2])
def test_iter_converted_gives_each_blocks_conversion_in_order(tmp_path, workers):
    path = _dump(tmp_path)
    stats, plain = WikidataStats(), WikidataStats()
    ids = [i for block in iter_converted(path, _Ids(), workers=workers, block_bytes=3000, stats=stats) for i in block]
    assert ids == [e.id for e in iter_entities(path, stats=plain)]
    assert stats == plain
    with pytest.raises(RuntimeError, match="conversion failed"):
        list(iter_converted(path, _Fails(), workers=workers))
    with pytest.raises(TypeError, match="convert must be callable"):
        iter_converted(path, None)


class _Counted(_Ids):
    calls = 0

    def __call__(self, entities):
        type(self).calls += 1
        return super().__call__(entities)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_in_one_process_a_conversion_is_called_per_group_of_blocks(tmp_path, monkeypatch, suffix):
    # A conversion costs something per call; in one process it is called per RANGE_BYTES of blocks,
    # as in a worker, not per block (32 KiB: two items of the real dump).
    path = _dump(tmp_path)
    if suffix:
        gz = tmp_path / "dump.json.gz"
        gz.write_bytes(gzip.compress(path.read_bytes()))
        path = gz
    expected_stats = WikidataStats()
    expected = [e.id for e in iter_entities(path, stats=expected_stats)]
    data = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    size = len(data)
    for block_bytes, range_bytes in [(500, 5000), (700, 700), (300, 100), (3000, 1 << 30)]:
        monkeypatch.setattr(wikidata, "RANGE_BYTES", range_bytes)
        _Counted.calls, stats = 0, WikidataStats()
        ids = [i for block in iter_converted(path, _Counted(), block_bytes=block_bytes, stats=stats,
                                             decompress="python") for i in block]
        assert ids == expected and stats == expected_stats
        blocks = len(list(wikidata._cuts(data, 0, size, size, block_bytes)))
        per_group = max(1, range_bytes // block_bytes)
        assert _Counted.calls == -(-blocks // per_group), (block_bytes, range_bytes, blocks)


class _Dies:
    def __call__(self, entities):
        import os

        os._exit(3)


def test_a_worker_that_dies_is_an_error_naming_the_file_and_bytes(tmp_path):
    path = _dump(tmp_path)
    with pytest.raises(RuntimeError, match=r"worker died \(exit code 3\) while parsing bytes 0-\d+ of .*dump\.json"):
        list(iter_converted(path, _Dies(), workers=2))


def test_stopping_early_ends_the_workers(tmp_path, monkeypatch):
    import multiprocessing

    monkeypatch.setattr(wikidata, "RANGE_BYTES", 2000)  # more ranges than the pipes hold
    path = _dump(tmp_path)
    entities = iter_entities(path, workers=2)
    assert next(entities).id == "Q1"
    entities.close()
    # Only the reader's own workers: another test's process (a DataLoader worker not yet collected,
    # named "Process-N") may still be alive here, and is not this test's business.
    assert [p for p in multiprocessing.active_children() if p.name.startswith("wikidata-reader-")] == []


def test_a_compressed_dump_read_by_workers_in_tasks_gives_the_same_records(tmp_path, monkeypatch):
    import gzip

    path = _dump(tmp_path)
    packed = tmp_path / "dump.json.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    serial = _run(path, ("titles", "labels"), REDIRECTS, True)
    monkeypatch.setattr(wikidata, "RANGE_BYTES", 3000)  # the parent sends tasks of ~3000 bytes
    parallel = _run(packed, ("titles", "labels"), REDIRECTS, True, workers=2)
    assert parallel[0] == serial[0] and parallel[1] == serial[1] and parallel[3] == serial[3]
    assert all(parallel[2].get(r[0]) == serial[2].get(r[0]) for r in serial[0])
    assert parallel[4].counts() == serial[4].counts() and parallel[4].examples == serial[4].examples


def test_with_redirects_the_records_are_made_in_the_parent(tmp_path, monkeypatch):
    # a forked worker that looked up the redirect maps would copy their pages: they stay in the parent
    import os

    from trie_tools import names

    parent, call = os.getpid(), names._EntityNames.__call__

    def only_in_parent(self, entities):
        assert os.getpid() == parent, "records made in a worker"
        return call(self, entities)

    monkeypatch.setattr(names._EntityNames, "__call__", only_in_parent)
    path = _dump(tmp_path)
    serial = _run(path, ("titles", "redirects"), REDIRECTS, False)
    parallel = _run(path, ("titles", "redirects"), REDIRECTS, False, workers=2)
    assert parallel[0] == serial[0] and parallel[3] == serial[3] and any(r[2] == "Five three" for r in serial[0])
    with pytest.raises(Exception, match="records made in a worker"):
        _run(path, ("titles",), {}, False, workers=2)
