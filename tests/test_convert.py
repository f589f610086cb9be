"""trie_tools.convert: reference GENRE/mGENRE pickles -> prefix trees and name tables.

The reference pickles are rebuilt here from small data: a nested dict trie, a
``genre.trie.MarisaTrie`` / ``genre.trie.Trie`` pickled through a fake ``genre.trie``
module that is removed again before converting, and a ``{(lang, title): {QID}}`` table.
Converted trees are checked against brute-force walks of the originals at every prefix.
"""

import argparse
import builtins
import gzip
import os
import pickle
import sys
import types
from contextlib import contextmanager

import marisa_trie
import pytest

from genre_fairseq.name_table import NameTable
from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
from trie_tools import convert as conv

# GENRE-style sequences: [2] + tokens + [2]. Some are prefixes of others before the final 2,
# many share prefixes, and the large ids straddle the gap in the marisa character mapping.
SEQS = [
    (2, 10, 2),
    (2, 10, 11, 2),
    (2, 10, 11, 12, 2),
    (2, 10, 11, 12, 13, 14, 2),
    (2, 10, 13, 2),
    (2, 20, 2),
    (2, 20, 21, 2),
    (2, 3, 4, 5, 2),
    (2, 3, 4, 6, 2),
    (2, 1, 0, 2),
    (2, 54999, 55000, 2),
    (2, 55000, 2),
    (2, 64999, 65000, 2),
    (2, 250000, 2),
    (2, 250000, 249999, 2),
    (2, 7, 250000, 10, 2),
]
MAX_TOKEN_ID = 250001

# off-tree probes: unknown tokens, a step past a leaf, a wrong start
OFF_TREE = [(3,), (2, 9), (2, 10, 2, 2), (2, 10, 11, 12, 13, 14, 2, 5), (2, 250001), (2, 55001), (0,)]


# ----------------------------------------------------------------------------- reference stand-ins


def nested_dict_trie(seqs):
    """The reference's dict trie: every sequence a path, an empty dict at its end."""
    root = {}
    for seq in seqs:
        node = root
        for token in seq:
            node = node.setdefault(token, {})
    return root


class FakeMarisaTrie:
    """Test double of ``genre.trie.MarisaTrie``: the attributes its released pickle holds."""

    def __init__(self, sequences, max_token_id=MAX_TOKEN_ID, cache_first_branch=True):
        # token i < 55000 is chr(i); from 55000 on chr(i + 10000), past the surrogates
        self.int2char = [chr(i) for i in range(min(max_token_id, 55000))] + [
            chr(i + 10000) for i in range(55000, max_token_id)
        ]
        self.char2int = {c: i for i, c in enumerate(self.int2char)}
        self.cache_fist_branch = cache_first_branch  # sic, as in the reference
        if cache_first_branch:
            self.zero_iter = sorted({s[0] for s in sequences})
            self.first_iter = sorted({s[1] for s in sequences})
        self.trie = marisa_trie.Trie("".join(self.int2char[t] for t in s) for s in sequences)


class FakeTrie:
    """Test double of ``genre.trie.Trie``: a nested dict trie plus a count."""

    def __init__(self, sequences):
        self.trie_dict = nested_dict_trie(sequences)
        self.len = len(sequences)
        self.append_trie = None
        self.bos_token_id = None


@contextmanager
def fake_genre_module():
    """Make FakeMarisaTrie / FakeTrie picklable as genre.trie.MarisaTrie / genre.trie.Trie."""
    genre, trie = types.ModuleType("genre"), types.ModuleType("genre.trie")
    genre.trie = trie
    saved = {}
    for cls, name in ((FakeMarisaTrie, "MarisaTrie"), (FakeTrie, "Trie")):
        saved[cls] = (cls.__module__, cls.__qualname__)
        cls.__module__, cls.__qualname__ = "genre.trie", name
        setattr(trie, name, cls)
    sys.modules["genre"], sys.modules["genre.trie"] = genre, trie
    try:
        yield
    finally:
        del sys.modules["genre"], sys.modules["genre.trie"]
        for cls, (module, qualname) in saved.items():
            cls.__module__, cls.__qualname__ = module, qualname


def pickle_as_reference(obj, path, protocol=pickle.DEFAULT_PROTOCOL):
    with fake_genre_module():
        data = pickle.dumps(obj, protocol=protocol)
    assert "genre.trie" not in sys.modules and "genre" not in sys.modules
    assert b"genre.trie" in data
    path.write_bytes(data)
    return str(path)


def write_pickle(obj, path, protocol=pickle.DEFAULT_PROTOCOL):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return str(path)


# ----------------------------------------------------------------------------- oracles


def dict_oracle_allowed(root, prefix):
    node = root
    for token in prefix:
        if token not in node:
            return []
        node = node[token]
    return sorted(node)


def marisa_oracle_allowed(ref, prefix):
    """What the reference's MarisaTrie.get answers, by brute force over the marisa keys."""
    if any(t >= len(ref.int2char) for t in prefix):
        return []
    key = "".join(ref.int2char[t] for t in prefix)
    return sorted({ref.char2int[k[len(key)]] for k in ref.trie.keys(key) if len(k) > len(key)})


def prefixes(seqs):
    return {tuple(s[:i]) for s in seqs for i in range(len(s) + 1)}


def check_tree(tree, seqs, oracle):
    """Same sequences, and the same allowed tokens at every prefix of every sequence."""
    assert set(tree) == set(seqs)
    assert len(tree) == len(set(seqs))
    for prefix in prefixes(seqs) | set(OFF_TREE):
        assert tree.allowed(prefix) == oracle(prefix), prefix
        assert (prefix in tree) == (prefix in set(seqs)), prefix


# ----------------------------------------------------------------------------- tries


def test_dict_trie_round_trip(tmp_path):
    root = nested_dict_trie(SEQS)
    src = write_pickle(root, tmp_path / "kilt_titles_trie_dict.pkl")
    obj = conv.load_reference_pickle(src)
    assert obj == root
    assert conv.detect_kind(obj) == "dict_trie"
    out = str(tmp_path / "kilt.trie")
    tree = conv.convert_reference_trie(obj, out, identifier_format="canonical")
    assert tree.path == out and tree.start_token == 2 and tree.identifier_format == "canonical"
    assert tree.dictionary_fingerprint is None
    check_tree(tree, SEQS, lambda p: dict_oracle_allowed(root, p))
    check_tree(PrefixTree.load(out, verify=True), SEQS, lambda p: dict_oracle_allowed(root, p))
    # a gzip-compressed copy reads the same
    gz = tmp_path / "kilt_titles_trie_dict.pkl.gz"
    gz.write_bytes(gzip.compress(pickle.dumps(root)))
    assert conv.load_reference_pickle(str(gz)) == root


def test_reference_trie_object_round_trip(tmp_path):
    src = pickle_as_reference(FakeTrie(SEQS), tmp_path / "trie.pkl")
    obj = conv.load_reference_pickle(src)
    assert isinstance(obj, conv.ReferenceTrie) and obj.len == len(SEQS)
    assert conv.detect_kind(obj) == "dict_trie"
    tree = conv.convert_reference_trie(obj, str(tmp_path / "t.trie"))
    root = nested_dict_trie(SEQS)
    check_tree(tree, SEQS, lambda p: dict_oracle_allowed(root, p))


# Protocols 0-1 rebuild the instance with copy_reg._reconstructor and the marisa bytes with
# _codecs.encode; 2 uses NEWOBJ + _codecs.encode; 3+ NEWOBJ + BINBYTES; 4+ STACK_GLOBAL.
@pytest.mark.parametrize("protocol", [0, 1, 2, 3, pickle.HIGHEST_PROTOCOL])
def test_marisa_trie_round_trip(tmp_path, protocol):
    ref = FakeMarisaTrie(SEQS)
    src = pickle_as_reference(ref, tmp_path / "titles_lang_all105_marisa_trie_with_redirect.pkl", protocol)
    obj = conv.load_reference_pickle(src)
    assert "genre" not in sys.modules and "genre.trie" not in sys.modules  # nothing was imported
    assert isinstance(obj, conv.ReferenceMarisaTrie)
    assert isinstance(obj.trie, marisa_trie.Trie) and set(obj.trie.keys()) == set(ref.trie.keys())
    assert obj.zero_iter == [2] and obj.cache_fist_branch is True
    assert conv.detect_kind(obj) == "marisa_trie"
    tree = conv.convert_reference_trie(obj, str(tmp_path / "mgenre.trie"), identifier_format="name_lang")
    assert tree.start_token == 2 and tree.identifier_format == "name_lang"
    check_tree(tree, SEQS, lambda p: marisa_oracle_allowed(ref, p))
    # the reference answered the first two steps from its caches: same answers
    assert tree.allowed([]) == ref.zero_iter and tree.allowed([2]) == ref.first_iter


def test_marisa_without_cache_or_char_table_uses_the_documented_mapping(tmp_path):
    ref = FakeMarisaTrie(SEQS, cache_first_branch=False)
    obj = conv.load_reference_pickle(pickle_as_reference(ref, tmp_path / "m.pkl"))
    del obj.char2int, obj.int2char  # decode with chr(i) / chr(i + 10000) alone
    tree = conv.convert_reference_trie(obj, str(tmp_path / "m.trie"))
    assert tree.start_token == 2
    check_tree(tree, SEQS, lambda p: marisa_oracle_allowed(ref, p))
    # a bare marisa_trie.Trie pickle (no wrapper object) works the same way
    bare = conv.load_reference_pickle(write_pickle(ref.trie, tmp_path / "bare.pkl"))
    assert conv.detect_kind(bare) == "marisa_trie"
    assert sorted(conv.iter_reference_sequences(bare)) == sorted(SEQS)


def test_marisa_cache_that_disagrees_with_its_trie_is_reported(tmp_path, caplog):
    ref = FakeMarisaTrie(SEQS)
    ref.first_iter = ref.first_iter[:-1]
    with caplog.at_level("WARNING", logger="trie_tools.convert"):
        tree = conv.convert_reference_trie(ref, str(tmp_path / "m.trie"))
    assert "first_iter (8 tokens) differs from its trie's second tokens (9 tokens)" in caplog.text
    assert set(tree) == set(SEQS)  # the trie, not the cache, decides


def test_sequences_stream_and_mixed_first_tokens(tmp_path):
    seqs = SEQS + [(5, 6, 2), (5, 2)]
    it = conv.iter_reference_sequences(nested_dict_trie(seqs))
    assert isinstance(it, types.GeneratorType)
    assert next(it) in set(seqs)
    for obj in (nested_dict_trie(seqs), FakeMarisaTrie(seqs, cache_first_branch=False)):
        assert sorted(conv.iter_reference_sequences(obj)) == sorted(seqs)
        tree = conv.convert_reference_trie(obj, str(tmp_path / "mixed.trie"))
        assert tree.start_token is None  # sequences begin with 2 or 5
        assert set(tree) == set(seqs) and tree.allowed([]) == [2, 5]


def test_dictionary_fingerprint_and_token_bound(tmp_path):
    from tests.toy import make_dictionary

    d = make_dictionary(30)  # ids 0..33
    small = [(2, 4, 5, 2), (2, 4, 33, 2), (2, 6, 2)]
    tree = conv.convert_reference_trie(nested_dict_trie(small), str(tmp_path / "ok.trie"), dictionary=d)
    assert tree.dictionary_fingerprint == dictionary_fingerprint(d)
    assert set(tree) == set(small)
    out = tmp_path / "bad.trie"
    for obj in (nested_dict_trie(small + [(2, 4, 34, 2)]), FakeMarisaTrie(small + [(2, 250000, 2)])):
        with pytest.raises(ValueError, match=r"token id (34|250000), but the dictionary has only 34 symbols"):
            conv.convert_reference_trie(obj, str(out), dictionary=d)
        assert not out.exists()


def test_malformed_and_empty_tries(tmp_path):
    out = str(tmp_path / "x.trie")
    with pytest.raises(ValueError, match="empty dict"):
        conv.detect_kind({})
    wrapped_empty = conv.ReferenceTrie()
    wrapped_empty.trie_dict = {}
    with pytest.raises(ValueError, match="no sequences"):
        conv.convert_reference_trie(wrapped_empty, out)
    empty_marisa = FakeMarisaTrie([], cache_first_branch=False)
    with pytest.raises(ValueError, match="no sequences"):
        conv.convert_reference_trie(empty_marisa, out)
    with pytest.raises(ValueError, match="not a token id"):
        list(conv.iter_reference_sequences({2: {"x": {}}}))
    with pytest.raises(ValueError, match="not a dict"):
        list(conv.iter_reference_sequences({2: {5: [2]}}))
    cyclic = {2: {}}
    cyclic[2][7] = cyclic
    with pytest.raises(ValueError, match="cycle"):
        list(conv.iter_reference_sequences(cyclic))
    bad_char = FakeMarisaTrie([(2, 5, 2)], cache_first_branch=False)
    bad_char.trie = marisa_trie.Trie(["\x02" + chr(60000) + "\x02"])  # inside the unmapped gap
    del bad_char.char2int
    with pytest.raises(ValueError, match=r"U\+EA60 maps to no token id"):
        list(conv.iter_reference_sequences(bad_char))
    assert not os.path.exists(out)


# ----------------------------------------------------------------------------- title table

GOOD = {
    ("en", "Albert Einstein"): {"Q937"},
    ("it", "Albert Einstein"): {"Q937"},
    ("en", "Paris"): {"Q90", "Q167646", "Q830149", "Q10"},
    ("fr", "Paris"): frozenset({"Q90"}),
    ("de", "Zürich"): {"Q72"},
    ("ja", "東京"): {"Q1490"},
    ("", "No language"): {"Q1"},
}
# (key, value, the records of it that survive)
BAD = [
    (("en", "Tab\there"), {"Q5"}, set()),
    (("en", ""), {"Q6"}, set()),
    (("en", "Int id"), {42}, set()),
    (("en", "New\nline"), {"Q7"}, set()),
    (("en", "Mixed"), {"Q8", "bad\x00id"}, {"Q8"}),
    (("en", "Surrogate \ud800"), {"Q11"}, set()),
    ("not a tuple", {"Q9"}, set()),
    (("en", "String value"), "Q10", set()),
]


def title_table():
    table = dict(GOOD)
    table[("en", "No ids")] = set()
    for key, value, _ in BAD:
        table[key] = value
    return table


def test_title_table_round_trip_counts_bad_records(tmp_path):
    src = write_pickle(title_table(), tmp_path / "lang_title2wikidataID-normalized_with_redirect.pkl", protocol=3)
    obj = conv.load_reference_pickle(src)
    assert conv.detect_kind(obj) == "title_table"
    out = str(tmp_path / "names.table")
    stats = conv.convert_title_table(obj, out)
    assert stats.keys == len(GOOD) + 1 + len(BAD)
    assert stats.skipped == 8 and len(stats.examples) == 5
    assert stats.kept == sum(len(v) for v in GOOD.values()) + 1
    assert stats.records == stats.kept + stats.skipped
    assert stats.keys_without_ids == 1
    assert "8 skipped" in stats.summary() and "U+0009" in stats.summary()
    with NameTable.load(out) as names:
        for (lang, title), qids in GOOD.items():
            assert set(names.ids(lang, title)) == set(qids)
            assert len(names.ids(lang, title)) == len(qids)
        assert names.ids("en", "Paris") == ["Q10", "Q90", "Q167646", "Q830149"]  # Q-numeric order
        assert names.ids("en", "Mixed") == ["Q8"]
        assert names.ids("en", "No ids") == [] and names.ids("en", "") == []
        assert len(names) == len(GOOD) + 1
        assert names.num_entities == len(set().union(*GOOD.values())) + 1  # + Q8 of "Mixed"


def test_title_table_strict_and_empty(tmp_path):
    out = tmp_path / "names.table"
    with pytest.raises(ValueError, match=r"'Tab\\there'.*U\+0009.*without --strict"):
        conv.convert_title_table({("en", "Tab\there"): {"Q5"}, **GOOD}, str(out), strict=True)
    assert not out.exists()
    with pytest.raises(ValueError, match="no valid records"):
        conv.convert_title_table({key: value for key, value, kept in BAD if not kept}, str(out))
    assert not out.exists()


# ----------------------------------------------------------------------------- refusals


class Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickles_are_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "MARKER"
    payloads = [
        Shell(marker),
        Exec(marker),
        {("en", "Paris"): {"Q90"}, ("en", "x"): Shell(marker)},  # hidden in a title table
        {2: {5: {2: Exec(marker)}}},  # hidden in a dict trie
    ]
    for i, payload in enumerate(payloads):
        path = write_pickle(payload, tmp_path / f"evil{i}.pkl", protocol)
        with pytest.raises(ValueError, match=r"evil\d\.pkl: refusing to unpickle (posix\.system|builtins\.exec)"):
            conv.load_reference_pickle(path)
        assert not marker.exists(), i
    # the refusals reach the command line as a ValueError too
    with pytest.raises(ValueError, match="refusing"):
        conv.convert(path, str(tmp_path / "out"), progress=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data, name",
    [
        (b"cgenre.trie\nsystem\n(Vtouch MARKER\ntR.", "genre.trie.system"),  # a *trie module, not a trie class
        (b"cmarisa_trie\nBytesTrie\n)R.", "marisa_trie.BytesTrie"),
        (b"cbuiltins\neval\n(V1\ntR.", "builtins.eval"),
        (b"ccopy_reg\n_reconstructor\n(c__builtin__\nset\nc__builtin__\nobject\nNtR.", "_reconstructor"),
        (b"c_codecs\nencode\n(Vabc\nVrot13\ntR.", "encode"),
        (b"cmarisa_trie\nTrie\n((lp0\nVa\natR.", "marisa_trie.Trie"),  # Trie(['a']) from arguments
    ],
)
def test_crafted_globals_are_refused(tmp_path, data, name):
    path = tmp_path / "crafted.pkl"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="crafted.pkl") as e:
        conv.load_reference_pickle(str(path))
    assert name in str(e.value)
    assert not (tmp_path / "MARKER").exists()


def test_not_a_pickle_truncated_and_unknown_kinds(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Albert Einstein >> en\n")
    with pytest.raises(ValueError, match=r"notes\.txt: not a pickle"):
        conv.load_reference_pickle(str(text))
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pkl: empty file"):
        conv.load_reference_pickle(str(tmp_path / "empty.pkl"))
    with pytest.raises(ValueError, match=r"missing\.pkl: file not found"):
        conv.load_reference_pickle(str(tmp_path / "missing.pkl"))
    tree_file = str(tmp_path / "t.trie")
    PrefixTree.from_sequences([(2, 5, 2)]).save(tree_file)
    with pytest.raises(ValueError, match="already a genre_fairseq file"):
        conv.load_reference_pickle(tree_file)

    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        with fake_genre_module():
            data = pickle.dumps(FakeMarisaTrie(SEQS[:4], max_token_id=300), protocol=protocol)
        for cut in (1, len(data) // 3, len(data) // 2, len(data) - 1):
            path = tmp_path / f"cut{protocol}.pkl"
            path.write_bytes(data[:cut])
            with pytest.raises(ValueError, match=rf"cut{protocol}\.pkl: (truncated|not a pickle)") as e:
                conv.load_reference_pickle(str(path))
            assert "truncated" in str(e.value) or cut < len(data) // 2

    for obj in ([1, 2, 3], {"a": 1}, {2: [5]}, 5, "text", frozenset({"Q1"})):
        path = write_pickle(obj, tmp_path / "odd.pkl")
        with pytest.raises(ValueError, match=r"odd\.pkl: unknown kind"):
            conv.convert(path, str(tmp_path / "odd.out"), progress=False)
    with pytest.raises(ValueError, match="unknown kind of object"):
        conv.detect_kind(object())
    with pytest.raises(ValueError, match="holds no token sequences"):
        conv.iter_reference_sequences({("en", "x"): {"Q1"}})


# ----------------------------------------------------------------------------- command line


def make_parser():
    parser = argparse.ArgumentParser(prog="genre-trie")
    conv.add_convert_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def run(argv):
    args = make_parser().parse_args(["convert"] + argv)
    args.func(args)


def test_cli_converts_each_kind(tmp_path, capsys):
    small = [(2, 4, 5, 2), (2, 4, 33, 2), (2, 6, 2), (2, 4, 2)]
    (tmp_path / "dict.txt").write_text("".join(f"w{i} 1\n" for i in range(30)))
    src = write_pickle(nested_dict_trie(small), tmp_path / "kilt_titles_trie_dict.pkl")
    out = tmp_path / "kilt.trie"
    run(["--from-genre", src, "--output", str(out), "--dict", str(tmp_path / "dict.txt"),
         "--format", "canonical", "--quiet"])
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "GENRE dict trie" in line and "4 sequences" in line and "start token 2" in line
    tree = PrefixTree.load(str(out), verify=True)
    assert set(tree) == set(small) and tree.identifier_format == "canonical"
    from fairseq.data import Dictionary

    assert tree.dictionary_fingerprint == dictionary_fingerprint(Dictionary.load(str(tmp_path / "dict.txt")))

    src = pickle_as_reference(FakeMarisaTrie(SEQS), tmp_path / "m.pkl")
    run(["--from-genre", src, "--output", str(tmp_path / "m.trie"), "--format", "name_lang", "--quiet"])
    assert "mGENRE marisa trie" in capsys.readouterr().out
    assert set(PrefixTree.load(str(tmp_path / "m.trie"))) == set(SEQS)

    src = write_pickle(title_table(), tmp_path / "titles.pkl")
    run(["--from-genre", src, "--output", str(tmp_path / "names"), "--quiet"])
    line = capsys.readouterr().out.strip()
    assert "mGENRE title table" in line and "8 skipped" in line and "8 names, 9 entities" in line
    with pytest.raises(ValueError, match="titles.pkl: .*U\\+0009"):
        run(["--from-genre", src, "--output", str(tmp_path / "names2"), "--strict", "--quiet"])
    with pytest.raises(ValueError, match="--dict and --format apply to tries only"):
        run(["--from-genre", src, "--output", str(tmp_path / "names2"), "--format", "canonical", "--quiet"])
    assert not (tmp_path / "names2").exists()

    # a token beyond --dict, and a missing --dict
    src = write_pickle(nested_dict_trie(small + [(2, 40, 2)]), tmp_path / "big.pkl")
    with pytest.raises(ValueError, match=r"big\.pkl: .*token id 40, but the dictionary has only 34 symbols"):
        run(["--from-genre", src, "--output", str(tmp_path / "big.trie"), "--dict", str(tmp_path / "dict.txt")])
    with pytest.raises(ValueError, match="--dict .*nodict.txt: file not found"):
        run(["--from-genre", src, "--output", str(tmp_path / "big.trie"), "--dict", str(tmp_path / "nodict.txt")])
    assert not (tmp_path / "big.trie").exists()


def test_cli_help_and_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        make_parser().parse_args(["convert", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--from-genre PICKLE", "--output OUT", "--dict DICT", "--strict", "--quiet",
                   "kilt_titles_trie_dict.pkl", "titles_lang_all105_marisa_trie_with_redirect.pkl",
                   "lang_title2wikidataID-normalized_with_redirect.pkl", "name_lang,lang_name,canonical"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        make_parser().parse_args(["convert", "--output", "x"])  # --from-genre is required
    with pytest.raises(SystemExit):
        make_parser().parse_args(["convert", "--from-genre", "a", "--output", "x", "--format", "title"])
    capsys.readouterr()
    args = make_parser().parse_args(["convert", "--from-genre", "a.pkl", "--output", "o"])
    assert args.func is conv.cmd_convert
    assert (args.dict, args.format, args.strict, args.quiet) == (None, None, False, False)


def _doubling_dag(depth):
    node = {5: {}, 6: {}}
    for _ in range(depth):
        node = {7: node, 8: node}  # both keys lead to one shared dict: 2**depth paths from depth + 1 dicts
    return {2: node}


def test_shared_sub_dicts_that_expand_exponentially_are_refused():
    with pytest.raises(ValueError, match=r"its 62 distinct dicts would expand to 2,305,843,009,213,693,952 "
                                         r"sequences; refusing"):
        list(conv.iter_reference_sequences(_doubling_dag(60)))
    # A little sharing expands to a bounded number of sequences: accepted, every path once.
    shared = {5: {}, 6: {}}
    assert sorted(conv.iter_reference_sequences({2: {3: shared, 4: shared}})) == [
        (2, 3, 5), (2, 3, 6), (2, 4, 5), (2, 4, 6)]
    # A cycle behind a shared dict is still a cycle, not an endless count.
    a = {10: {}}
    a[8] = {9: a}
    with pytest.raises(ValueError, match="cycle"):
        list(conv.iter_reference_sequences({2: {3: a, 4: a}}))
