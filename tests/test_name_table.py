"""Tests of the name table and the mention table: oracle properties, ordering rules, file checks."""
import os
import pickle
import struct
import tempfile
import zlib
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genre_fairseq.name_table import MentionTable, NameTable, encode_records, id_sort_key

# ----------------------------------------------------------------------------- strategies

# Any Unicode except C0 controls (rejected by design) and surrogates (not encodable).
_TEXT = st.characters(blacklist_categories=("Cs",), min_codepoint=0x20)
_SPECIAL_NAMES = ["Paris", "paris", " Paris", "Paris ", "a b", "Albert Einstein >> it", ">>",
                  "北京", "Москва", "القاهرة", "🎉 emoji", "e\u0301", "\u00e9", "\x7f", "a\u2028b"]
names = st.one_of(st.sampled_from(_SPECIAL_NAMES), st.text(_TEXT, min_size=1, max_size=8))
langs = st.sampled_from(["en", "de", "", "zh-yue", "ru", "fr"])
entity_ids = st.one_of(
    st.integers(1, 40).map(lambda n: "Q%d" % n),
    st.integers(1, 10**30).map(lambda n: "Q%d" % n),
    st.sampled_from(["Q010", "Q0", "P31", "L5", "kb:42", "Ω1", "Q", "q7", "Q5 "]),
)
records_st = st.lists(st.tuples(entity_ids, langs, names), max_size=40)


def _oracle(records):
    by_key, by_entity = defaultdict(set), defaultdict(set)
    for entity_id, lang, name in records:
        by_key[(lang, name)].add(entity_id)
        by_entity[entity_id].add((lang, name))
    return by_key, by_entity


@pytest.fixture
def tmp(tmp_path):
    return str(tmp_path)


def _build(records, directory, name="t.names", **kwargs):
    path = os.path.join(directory, name)
    NameTable.build(records, path, **kwargs)
    return path


# ----------------------------------------------------------------------------- name table: oracle


@settings(max_examples=60, deadline=None)
@given(records=records_st, extra=st.lists(st.tuples(langs, names), max_size=5), chunk=st.integers(1, 8))
def test_name_table_matches_dict_of_sets_oracle(records, extra, chunk):
    by_key, by_entity = _oracle(records)
    with tempfile.TemporaryDirectory() as d:
        path = _build(iter(records), d, meta={"case": "oracle"}, chunk_size=chunk)
        with NameTable.load(path) as t:
            assert len(t) == len(by_key)
            assert t.num_entities == len(by_entity)
            assert t.num_links == len(set(records))
            assert sorted(t.entity_ids()) == sorted(by_entity)
            assert sorted(t) == sorted(by_key)
            for (lang, name), ids in by_key.items():
                assert t.ids(lang, name) == sorted(ids, key=id_sort_key)
                assert (lang, name) in t
            for entity_id, pairs in by_entity.items():
                assert t.names(entity_id) == sorted(pairs)
            for lang, name in extra:
                assert t.ids(lang, name) == sorted(by_key.get((lang, name), ()), key=id_sort_key)
            assert t.names("Q999999") == []
            assert t.meta == {"case": "oracle"}
            t.verify()


@settings(max_examples=30, deadline=None)
@given(records=records_st, chunk=st.integers(1, 5), data=st.data())
def test_build_is_independent_of_order_duplicates_and_chunking(records, chunk, data):
    shuffled = data.draw(st.permutations(records + records[: len(records) // 2]))
    with tempfile.TemporaryDirectory() as d:
        a = _build(records, d, "a.names")
        b = _build(shuffled, d, "b.names", chunk_size=chunk)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()  # byte-identical, hence the same fingerprint


@settings(max_examples=30, deadline=None)
@given(records=st.lists(st.tuples(entity_ids, langs, names, st.booleans()), max_size=40), chunk=st.integers(1, 5),
       data=st.data())
def test_build_encoded_writes_the_table_build_writes(records, chunk, data):
    # Lines made in pieces (as a reader's workers make them), in any order and repeated, give the
    # file build() gives of the records, byte for byte.
    pieces = data.draw(st.lists(st.integers(0, len(records)), max_size=4).map(sorted))
    cuts = [0] + pieces + [len(records)]
    batches = [encode_records(records[lo:hi]) for lo, hi in zip(cuts, cuts[1:])]
    batches = data.draw(st.permutations(batches + batches[:1]))
    with tempfile.TemporaryDirectory() as d:
        a = _build(records, d, "a.names", meta={"k": 1})
        b = os.path.join(d, "b.names")
        NameTable.build_encoded(iter(batches), b, meta={"k": 1}, chunk_size=chunk)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            assert fa.read() == fb.read()


def test_encode_records_checks_as_build_does_and_build_encoded_refuses_other_lines(tmp):
    with pytest.raises(ValueError, match=r"record #1 .*name"):
        encode_records([("Q1", "en", "a", True), ("Q2", "en", "a\tb", False)])
    with pytest.raises(ValueError, match="primary must be a bool"):
        encode_records([("Q1", "en", "a", "yes")])
    good = encode_records([("Q1", "en", "a", True)])
    path = os.path.join(tmp, "t.names")
    for batches, why in [([good, "Q1\ten\x1fa\t1\n"], "batch #1: expected a list"),
                         ([good, ["Q1\ten\x1fa\t1\n"]], "batch #1: every line must be bytes"),
                         ([[b"A01Q1\ten\x1fa\n"]], "batch #0: a line not made"),
                         ([[b"A01Q1\ten\x1fa\t2\n"]], "batch #0: a line not made"),
                         ([[b"A01Q1\ten\x1fa\t1"]], "batch #0: a line not made"),
                         ([[b"A01Q1\ten\x1fa\t1\n", b""]], "batch #0: a line not made")]:
        with pytest.raises(ValueError, match=why):
            NameTable.build_encoded(batches, path)
        assert not os.path.exists(path)
    NameTable.build_encoded([good, []], path)
    with NameTable.load(path) as t:
        assert t.ids("en", "a") == ["Q1"] and t.primary_names("Q1") == [("en", "a")]


def test_fingerprint_depends_on_content_not_meta(tmp):
    base = [("Q1", "en", "a"), ("Q2", "en", "b")]
    fp = lambda records, **kw: NameTable.load(_build(records, tmp, **kw)).fingerprint  # noqa: E731
    f0 = fp(base)
    assert f0 == fp(base, meta={"source": "elsewhere"})
    assert f0 != fp(base + [("Q3", "en", "c")])
    assert f0 != fp([("Q1", "en", "a"), ("Q2", "de", "b")])
    assert len(f0) == 32 and int(f0, 16) >= 0


# ----------------------------------------------------------------------------- name table: rules


def test_id_rule_orders_wikidata_ids_numerically_then_others_by_string():
    ids = ["Q10", "Q9", "kb:1", "Q1", "P31", "Q010", "Q100000000000000000000", "Q0", "Q", "Q99"]
    assert sorted(ids, key=id_sort_key) == [
        "Q1", "Q9", "Q10", "Q99", "Q100000000000000000000", "P31", "Q", "Q0", "Q010", "kb:1"]


def test_n_to_1_ordering_rule_in_ids(tmp):
    records = [("Q10", "en", "Paris"), ("Q9", "en", "Paris"), ("P5", "en", "Paris"),
               ("Q90", "fr", "Paris"), ("Q90", "en", "Paris"), ("Q1000", "en", "Paris")]
    t = NameTable.load(_build(records, tmp))
    assert t.ids("en", "Paris") == ["Q9", "Q10", "Q90", "Q1000", "P5"]
    assert t.ids("en", "Paris")[0] == "Q9"
    assert t.ids("fr", "Paris") == ["Q90"]
    assert t.names("Q90") == [("en", "Paris"), ("fr", "Paris")]


def test_unicode_spaces_and_separators_are_exact(tmp):
    records = [("Q1", "it", "Albert Einstein >> it"), ("Q2", "zh", "北京"), ("Q3", "ar", "القاهرة"),
               ("Q4", "en", " Paris "), ("Q5", "en", "Paris"), ("Q6", "", "no language"),
               ("Q7", "en", "🎉 party"), ("Q8", "en", "e\u0301"), ("Q9", "en", "\u00e9"),
               ("Q10", "sr-Latn", "a >> b >> c"), ("Q11", "en", "x\u2028y\u00a0z")]
    t = NameTable.load(_build(records, tmp))
    for entity_id, lang, name in records:
        assert t.ids(lang, name) == [entity_id]
        assert t.names(entity_id) == [(lang, name)]
    assert t.ids("en", "Paris ") == []
    assert t.ids("", "Paris") == []
    assert t.ids("en", "\ud800") == []  # a lone surrogate cannot be stored, so it is not found
    assert t.ids("en\x1f Paris", "") == [] and t.ids("en", "Paris\x1f") == []


@pytest.mark.parametrize("record, field, cause", [
    (("Q1", "en", "a\tb"), "name", "U+0009"),
    (("Q1", "en", "a\nb"), "name", "U+000A"),
    (("Q1", "en\n", "a"), "lang", "U+000A"),
    (("Q\x001", "en", "a"), "entity_id", "U+0000"),
    (("Q1", "en", "a\x1fb"), "name", "U+001F"),
    (("Q1", "en", "a\rb"), "name", "U+000D"),
    (("Q1", "en", ""), "name", "empty"),
    (("", "en", "a"), "entity_id", "empty"),
    (("Q1", "en", 5), "name", "must be a str"),
    ((None, "en", "a"), "entity_id", "must be a str"),
    (("Q1", "en", "\udc80"), "name", "lone surrogate"),
    (("Q1", "en"), None, "expected (entity_id, lang, name[, primary])"),
    ("Q1", None, "expected (entity_id, lang, name[, primary])"),
])
def test_bad_records_are_rejected_naming_the_record(tmp, record, field, cause):
    path = os.path.join(tmp, "bad.names")
    good = [("Q1", "en", "fine"), ("Q2", "en", "also fine")]
    with pytest.raises(ValueError) as info:
        NameTable.build(good + [record], path, tmp_dir=tmp)
    message = str(info.value)
    assert "record #2" in message and repr(record) in message and cause in message
    if field:
        assert field in message
    assert os.listdir(tmp) == []  # no output, no temporary files left behind


def test_empty_table(tmp):
    t = NameTable.load(_build([], tmp))
    assert len(t) == 0 and t.num_entities == 0 and t.num_links == 0
    assert t.ids("en", "x") == [] and t.names("Q1") == []
    assert list(t.entity_ids()) == [] and list(t) == []
    t.verify()


def test_meta_must_be_json(tmp):
    with pytest.raises(ValueError, match="JSON"):
        NameTable.build([("Q1", "en", "a")], os.path.join(tmp, "x"), meta={"bad": object()})
    t = NameTable.load(_build([("Q1", "en", "a")], tmp, meta={"source": "wikidata", "n": [1, 2], "é": "ü"}))
    meta = t.meta
    meta["source"] = "changed"
    assert t.meta == {"source": "wikidata", "n": [1, 2], "é": "ü"}


def test_close_pickle_and_atomic_rebuild(tmp):
    path = _build([("Q1", "en", "a")], tmp)
    t = NameTable.load(path)
    clone = pickle.loads(pickle.dumps(t))
    assert clone.ids("en", "a") == ["Q1"]
    NameTable.build([("Q2", "en", "a")], path)  # replaces the file; the open mapping stays valid
    assert t.ids("en", "a") == ["Q1"]
    assert NameTable.load(path).ids("en", "a") == ["Q2"]
    t.close()
    with pytest.raises(ValueError, match="closed"):
        t.ids("en", "a")
    with pytest.raises(ValueError, match="closed"):
        t.names("Q1")


# ----------------------------------------------------------------------------- file checks


def _table_bytes(tmp):
    path = _build([("Q1", "en", "a"), ("Q2", "de", "b")], tmp, "good.names")
    with open(path, "rb") as f:
        return f.read()


def _write(tmp, data, name="x.names"):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("data, cause", [
    (b"", "empty file"),
    (os.urandom(4096), "bad magic"),
    (b"GFPTREE\0" + bytes(200), "bad magic"),
    (b"\x00" * 64, "bad magic"),
    (b"GFN", "truncated"),
    (b"GFNAMES\0\x01\x00\x00\x00", "truncated"),
])
def test_load_rejects_files_of_another_kind(tmp, data, cause):
    path = _write(tmp, data)
    with pytest.raises(ValueError) as info:
        NameTable.load(path)
    assert cause in str(info.value) and path in str(info.value)


def test_load_names_the_kind_of_a_mention_table_file(tmp):
    path = os.path.join(tmp, "m.tab")
    MentionTable.build([("m", "Q1", 1)], path)
    with pytest.raises(ValueError, match="mention table, not a name table"):
        NameTable.load(path)
    names = _build([("Q1", "en", "a")], tmp)
    with pytest.raises(ValueError, match="name table, not a mention table"):
        MentionTable.load(names)


def test_load_rejects_a_prefix_tree_file(tmp):
    from genre_fairseq.prefix_tree import PrefixTree

    path = os.path.join(tmp, "kb.trie")
    PrefixTree.from_sequences([[2, 10, 11, 2], [2, 10, 12, 2]], start_token=2).save(path)
    with pytest.raises(ValueError, match="bad magic .* prefix tree, not a name table"):
        NameTable.load(path)
    with pytest.raises(ValueError, match="prefix tree, not a mention table"):
        MentionTable.load(path)


def test_unsupported_version(tmp):
    data = bytearray(_table_bytes(tmp))
    data[8:12] = struct.pack("<I", 2)
    with pytest.raises(ValueError, match="unsupported format version 2"):
        NameTable.load(_write(tmp, data))


@pytest.mark.parametrize("cut", [1, 100, 1000, 3000])
def test_truncated_file(tmp, cut):
    data = _table_bytes(tmp)
    path = _write(tmp, data[: len(data) - cut])
    with pytest.raises(ValueError, match="truncated") as info:
        NameTable.load(path)
    assert path in str(info.value)


def test_trailing_bytes(tmp):
    with pytest.raises(ValueError, match="longer than"):
        NameTable.load(_write(tmp, _table_bytes(tmp) + b"\0"))


def test_corrupt_header_and_sections(tmp):
    data = _table_bytes(tmp)
    header_end = data.index(b"We love Marisa.")
    broken = bytearray(data)
    broken[40] ^= 0x01  # inside the header JSON
    with pytest.raises(ValueError, match="checksum mismatch"):
        NameTable.load(_write(tmp, broken))
    broken = bytearray(data)
    broken[header_end] ^= 0x01  # the first trie's own magic
    with pytest.raises(ValueError, match="corrupt section 'keys'"):
        NameTable.load(_write(tmp, broken, "y.names"))
    broken = bytearray(data)
    last = NameTable.load(os.path.join(tmp, "good.names"))._c.header["sections"][-1]
    broken[last["offset"]] ^= 0x01  # array data: verify=False skips it
    t = NameTable.load(_write(tmp, broken, "z.names"), verify=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        t.verify()


def _patch_header(data, old, new):
    """Replace text in the header JSON (same length) and fix the header checksum."""
    assert len(old) == len(new)
    json_len = struct.unpack_from("<I", data, 12)[0]
    header = bytearray(data[: 32 + json_len].replace(old, new, 1))
    header[16:20] = bytes(4)
    header[16:20] = struct.pack("<I", zlib.crc32(header))
    return bytes(header) + data[32 + json_len:]


def test_corrupt_section_table(tmp):
    data = _table_bytes(tmp)
    keys_size = NameTable.load(os.path.join(tmp, "good.names"))._c.header["sections"][0]["nbytes"]
    shorter = str(keys_size - 1000).encode()
    cut = _patch_header(data, b'"nbytes": %d' % keys_size, b'"nbytes": %s' % shorter)
    with pytest.raises(ValueError, match="corrupt section 'keys'"):  # marisa's own size check
        NameTable.load(_write(tmp, cut))
    renamed = _patch_header(data, b'"name": "keys"', b'"name": "kezs"')
    with pytest.raises(ValueError, match="missing marisa section 'keys'"):
        NameTable.load(_write(tmp, renamed, "y.names"))
    wrong_count = _patch_header(data, b'"num_keys": 2', b'"num_keys": 3')
    with pytest.raises(ValueError, match="2 keys, the header says 3"):
        NameTable.load(_write(tmp, wrong_count, "z.names"))


def test_missing_file_is_an_os_error(tmp):
    with pytest.raises(FileNotFoundError):
        NameTable.load(os.path.join(tmp, "nope.names"))


# ----------------------------------------------------------------------------- mention table


def test_mention_counts_are_summed_and_top_k_is_exact(tmp):
    path = os.path.join(tmp, "m.tab")
    items = [("paris", "Q90", 3), ("paris", "Q9", 5), ("paris", "Q90", 4), ("paris", "Q1", 7),
             ("paris", "Q10", 5), ("paris", "P1", 5), ("Paris", "Q90", 1), ("巴黎", "Q90", 2),
             ("paris", "Q5", 0)]
    MentionTable.build(items, path, meta={"source": "anchors"}, chunk_size=2)
    m = MentionTable.load(path)
    assert len(m) == 3 and m.num_pairs == 8 and m.num_entities == 6
    assert m.candidates("paris") == [("Q1", 7), ("Q90", 7), ("Q9", 5), ("Q10", 5), ("P1", 5), ("Q5", 0)]
    assert m.candidates("paris", k=3) == [("Q1", 7), ("Q90", 7), ("Q9", 5)]
    assert m.candidates("paris", k=0) == []
    assert m.candidates("paris", k=100) == m.candidates("paris")
    assert m.candidates("Paris") == [("Q90", 1)] and m.candidates("巴黎") == [("Q90", 2)]
    assert m.candidates("PARIS") == [] and m.candidates("paris ") == []
    assert "paris" in m and "PARIS" not in m
    assert sorted(m.mentions()) == ["Paris", "paris", "巴黎"]
    assert m.meta == {"source": "anchors"}
    with pytest.raises(ValueError, match="k must be"):
        m.candidates("paris", k=-1)
    m.verify()


@settings(max_examples=40, deadline=None)
@given(items=st.lists(st.tuples(names, entity_ids, st.integers(0, 2**40)), max_size=40),
       chunk=st.integers(1, 6))
def test_mention_table_matches_counter_oracle(items, chunk):
    oracle = defaultdict(Counter)
    for mention, entity_id, count in items:
        oracle[mention][entity_id] += count
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.tab")
        MentionTable.build(iter(items), path, chunk_size=chunk)
        m = MentionTable.load(path)
        assert len(m) == len(oracle)
        for mention, counts in oracle.items():
            expected = sorted(counts.items(), key=lambda ec: (-ec[1], id_sort_key(ec[0])))
            assert m.candidates(mention) == expected
            assert m.candidates(mention, k=2) == expected[:2]


@pytest.mark.parametrize("item, cause", [
    (("m", "Q1", -1), "count must be in"),
    (("m", "Q1", 1.5), "count must be an int"),
    (("m", "Q1", "3"), "count must be an int"),
    (("m", "Q1", True), "not bool"),
    (("m", "Q1", 2**63), "count must be in"),
    (("", "Q1", 1), "mention is empty"),
    (("m\tx", "Q1", 1), "U+0009"),
    (("m", "", 1), "entity_id is empty"),
    (("m", "Q1"), "expected (mention, entity_id, count)"),
])
def test_mention_bad_items(tmp, item, cause):
    with pytest.raises(ValueError) as info:
        MentionTable.build([("ok", "Q1", 1), item], os.path.join(tmp, "m.tab"))
    assert "item #1" in str(info.value) and cause in str(info.value)


def test_mention_summed_overflow_is_rejected(tmp):
    with pytest.raises(ValueError, match="exceeds"):
        MentionTable.build([("m", "Q1", 2**62), ("m", "Q1", 2**62)], os.path.join(tmp, "m.tab"))


def test_mention_table_empty_and_file_checks(tmp):
    path = os.path.join(tmp, "m.tab")
    MentionTable.build([], path)
    m = MentionTable.load(path)
    assert len(m) == 0 and m.candidates("x") == [] and m.num_entities == 0
    with open(path, "rb") as f:
        data = f.read()
    with pytest.raises(ValueError, match="truncated"):
        MentionTable.load(_write(tmp, data[:-10], "cut.tab"))
    with pytest.raises(ValueError, match="empty file"):
        MentionTable.load(_write(tmp, b"", "empty.tab"))


# ----------------------------------------------------------------------------- name table: primary names


@settings(max_examples=60, deadline=None)
@given(records=st.lists(st.tuples(entity_ids, langs, names, st.booleans()), max_size=40), chunk=st.integers(1, 8))
def test_primary_names_match_any_primary_oracle(records, chunk):
    primary = defaultdict(set)
    everything = defaultdict(set)
    for entity_id, lang, name, flag in records:
        everything[entity_id].add((lang, name))
        if flag:
            primary[entity_id].add((lang, name))
    with tempfile.TemporaryDirectory() as d:
        path = _build(iter(records), d, chunk_size=chunk)
        with NameTable.load(path) as t:
            t.verify()
            for entity_id in everything:
                assert t.primary_names(entity_id) == sorted(primary[entity_id])
                assert t.names(entity_id) == sorted(everything[entity_id])
            assert t.primary_names("no such entity") == []


def test_three_field_records_are_primary_and_flags_change_the_fingerprint(tmp):
    plain = _build([("Q1", "en", "A"), ("Q1", "en", "B")], tmp, "plain.names")
    flagged = _build([("Q1", "en", "A", True), ("Q1", "en", "B", False)], tmp, "flagged.names")
    both = _build([("Q1", "en", "A", True), ("Q1", "en", "B", False), ("Q1", "en", "B", True)], tmp, "both.names")
    with NameTable.load(plain) as p, NameTable.load(flagged) as f, NameTable.load(both) as b:
        assert p.primary_names("Q1") == [("en", "A"), ("en", "B")]
        assert f.primary_names("Q1") == [("en", "A")]
        assert b.primary_names("Q1") == [("en", "A"), ("en", "B")]
        assert f.fingerprint != p.fingerprint
        assert b.fingerprint == p.fingerprint  # a name given both ways is primary
    with pytest.raises(ValueError, match="primary must be a bool"):
        _build([("Q1", "en", "A", "yes")], tmp, "bad.names")


# ----------------------------------------------------------------------------- name table: first name is primary


def _first_flags(records):
    """The oracle of ``first_primary``: explicit flags, True on the first record of each (entity, lang)."""
    seen = set()
    out = []
    for entity_id, lang, name in records:
        out.append((entity_id, lang, name, (entity_id, lang) not in seen))
        seen.add((entity_id, lang))
    return out


@settings(max_examples=80, deadline=None)
@given(records=st.lists(st.tuples(st.sampled_from(["Q1", "Q2", "Q10", "x:1"]), st.sampled_from(["", "en", "en-gb", "de"]),
                                  st.sampled_from(["A", "B", "B b", "C", "\u00e9"])), max_size=40),
       chunk=st.integers(1, 8))
def test_first_primary_writes_the_file_explicit_first_flags_write(records, chunk):
    with tempfile.TemporaryDirectory() as d:
        merged = _build(iter(records), d, "merged.names", chunk_size=chunk, first_primary=True)
        flagged = _build(iter(_first_flags(records)), d, "flagged.names", chunk_size=chunk)
        in_memory = _build(iter(records), d, "one_run.names", chunk_size=10_000, first_primary=True)
        with open(merged, "rb") as a, open(flagged, "rb") as b, open(in_memory, "rb") as c:
            assert a.read() == b.read() == c.read()


def test_first_primary_marks_the_first_name_in_input_order(tmp):
    records = [("Q1", "en", "B"), ("Q2", "en", "Z"), ("Q1", "en", "A"), ("Q1", "de", "A"), ("Q1", "en", "B"),
               ("Q2", "en", "Y")]
    path = _build(records, tmp, "first.names", chunk_size=2, first_primary=True)
    with NameTable.load(path) as t:
        assert t.primary_names("Q1") == [("de", "A"), ("en", "B")]
        assert t.primary_names("Q2") == [("en", "Z")]
        assert t.names("Q1") == [("de", "A"), ("en", "A"), ("en", "B")]
    with pytest.raises(ValueError, match=r"record #0 .*expected \(entity_id, lang, name\)"):
        _build([("Q1", "en", "A", True)], tmp, "bad.names", first_primary=True)


def test_tables_are_byte_identical_to_the_ones_the_builder_before_first_primary_wrote(tmp):
    # Hash of this table as NameTable.build at commit 667d150 wrote it with marisa-trie 1.4.1 (the
    # version installed here; the tries' bytes are marisa's); first_primary on the same records
    # without flags writes it too.
    import hashlib
    from importlib.metadata import version

    import numpy as np

    if version("marisa-trie") != "1.4.1":
        pytest.skip("the recorded hash is of marisa-trie 1.4.1's serialization")
    rng = np.random.default_rng(7)
    records, seen = [], set()
    for e, lang, n in zip(rng.integers(1, 500, size=3000).tolist(), rng.choice(["en", "de", "", "zh"], size=3000).tolist(),
                          (rng.zipf(1.5, size=3000) % 700).tolist()):
        records.append(("Q%d" % e, lang, "n%d" % n, ("Q%d" % e, lang) not in seen))
        seen.add(("Q%d" % e, lang))
    flagged = _build(records, tmp, "flagged.names", chunk_size=97, meta={"k": 1})
    first = _build([r[:3] for r in records], tmp, "first.names", chunk_size=97, meta={"k": 1}, first_primary=True)
    expected = "a9fcd1615ba2eabe03bc58d782f00f0c538333e45712bacbd88d634601e19e81"
    with open(flagged, "rb") as a, open(first, "rb") as b:
        assert hashlib.sha256(a.read()).hexdigest() == hashlib.sha256(b.read()).hexdigest() == expected


def test_spool_lines_do_not_depend_on_which_records_share_an_id_object():
    # _name_lines makes an entity's sort prefix once for a run of records with an equal id
    from genre_fairseq.name_table import _name_lines, _rule_prefix

    ids = ["Q1", "Q1", "Q20", "P5", "Q20", "Q1", "custom", "Q3"]
    records = [("".join(list(e)), "en", f"n{i}", i % 2 == 0) for i, e in enumerate(ids)]  # fresh str objects
    expected = [(_rule_prefix(e) + "\t" + lang + "\x1f" + name).encode() + (b"\t1\n" if primary else b"\t0\n")
                for e, lang, name, primary in records]
    assert list(_name_lines(records)) == expected
    assert list(_name_lines([tuple(r) for r in records[::-1]])) == expected[::-1]


# ----------------------------------------------------------------------------- lookups in processes


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.text(_TEXT, max_size=6).filter(lambda t: "\n" not in t), max_size=30),
       parts=st.integers(1, 7), chunk=st.integers(1, 9))
def test_line_ranges_cut_a_spool_at_line_ends_and_its_ranges_read_back_every_line(lines, parts, chunk):
    from genre_fairseq.name_table import _line_ranges, _spool_texts

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "spool")
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        with open(path, "wb") as f:
            f.write(data)
        ranges = _line_ranges(path, parts)
        assert len(ranges) == parts and ranges[0][0] == 0 and ranges[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])) and all(lo <= hi for lo, hi in ranges)
        assert all(lo == 0 or data[lo - 1:lo] == b"\n" for lo, _ in ranges)
        read = [line for lo, hi in ranges for line in _spool_texts(path, chunk, start=lo, end=hi)]
        assert read == lines == list(_spool_texts(path, chunk))


def _digest(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize("n", [0, 2, 300])
def test_lookups_in_processes_write_the_tables_one_process_writes(tmp, monkeypatch, n):
    import random

    import genre_fairseq.name_table as name_table

    rng = random.Random(n)
    records = [("Q%d" % rng.randint(1, n // 3 + 1), rng.choice(["en", "de", ""]), "n%d é" % rng.randint(0, n))
               for _ in range(n)]
    items = [(name, entity, rng.randint(1, 9)) for entity, _, name in records]
    one = _build(records, tmp, "one.names")
    MentionTable.build(items, os.path.join(tmp, "one.mentions"))
    monkeypatch.setattr(name_table, "PARALLEL_LOOKUPS", 1)  # every spool of a line or more
    for workers in (2, 5):
        many = _build(records, tmp, f"w{workers}.names", workers=workers, chunk_size=7)
        assert _digest(many) == _digest(one)
        MentionTable.build(items, os.path.join(tmp, f"w{workers}.mentions"), workers=workers, chunk_size=7)
        assert _digest(os.path.join(tmp, f"w{workers}.mentions")) == _digest(os.path.join(tmp, "one.mentions"))
    assert sorted(os.listdir(tmp)) == ["one.mentions", "one.names", "w2.mentions", "w2.names", "w5.mentions",
                                       "w5.names"]


def test_workers_below_one_are_refused(tmp):
    for build in (lambda: NameTable.build([("Q1", "en", "a")], os.path.join(tmp, "t.names"), workers=0),
                  lambda: MentionTable.build([("a", "Q1", 1)], os.path.join(tmp, "t.mentions"), workers=-1)):
        with pytest.raises(ValueError, match="workers must be >= 1"):
            build()
    assert os.listdir(tmp) == []


def _exit_3(*args):
    os._exit(3)


def _too_many_ids(trie_path, path, start, end, out_path):
    import numpy as np

    np.zeros(10**4, dtype=np.uint32).tofile(out_path)


def _too_few_ids(path, n_lines, out_path):
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", n_lines) + b"\0\0\0\0")


@pytest.mark.skipif(__import__("multiprocessing").get_start_method() != "fork",
                    reason="the replaced function reaches the processes only when they are forked")
@pytest.mark.parametrize("target, replaced, why", [
    ("_lookup_range", _exit_3, r"lookup process of the table build failed \(exit code 3\)"),
    ("_lookup_range", _too_many_ids, "more lines than the spool has"),
    ("_trie_and_ids", _exit_3, r"trie process of the table build failed \(exit code 3\)"),
    ("_trie_and_ids", _too_few_ids, r"wrote 1 ids for the 50 lines"),
])
def test_a_failed_lookup_or_trie_process_fails_the_build_and_writes_nothing(tmp, monkeypatch, target, replaced, why):
    import multiprocessing

    import genre_fairseq.name_table as name_table

    monkeypatch.setattr(name_table, "PARALLEL_LOOKUPS", 1)
    monkeypatch.setattr(name_table, target, replaced)
    path = os.path.join(tmp, "t.names")
    with pytest.raises(RuntimeError, match=why):
        NameTable.build([("Q%d" % i, "en", "n%d" % i) for i in range(50)], path, workers=3)
    assert os.listdir(tmp) == []
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("name-table-")]
