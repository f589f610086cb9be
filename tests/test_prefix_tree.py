"""PrefixTree against a brute-force set-of-sequences oracle, its file format, and its tensor lookups."""

import json
import mmap
import os
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genre_fairseq import prefix_tree as pt
from genre_fairseq.prefix_tree import FORMAT_VERSION, MAGIC, PrefixTree, dictionary_fingerprint
from tests.toy import make_dictionary

MAX_TOKEN = 256_000
EOS = 2

small_tokens = st.integers(min_value=0, max_value=6)
big_tokens = st.integers(min_value=0, max_value=MAX_TOKEN)
# name_lang-like: [EOS] + name + one of a few language suffixes + [EOS]; many shared endings
name_lang = st.lists(
    st.tuples(st.lists(st.integers(4, 12), max_size=5), st.sampled_from([[20, 30], [20, 31], [20, 32, 33]])),
    max_size=20,
).map(lambda items: [[EOS] + name + suffix + [EOS] for name, suffix in items])
seq_lists = st.one_of(
    st.lists(st.lists(small_tokens, max_size=6), max_size=25),  # prefixes of others, duplicates, []
    st.lists(st.lists(big_tokens, max_size=5), max_size=15),
    st.lists(st.lists(st.integers(0, 3), min_size=15, max_size=40), min_size=1, max_size=4),  # long chains
    st.lists(st.integers(0, 3000), max_size=300).map(lambda xs: [[9, x] for x in xs] + [[9]]),  # wide fan-out
    name_lang,
)


# ---------------------------------------------------------------- the oracle
def oracle_allowed(seqs, prefix):
    n = len(prefix)
    return sorted({s[n] for s in seqs if len(s) > n and tuple(s[:n]) == tuple(prefix)})


def all_prefixes(seqs):
    return {tuple(s[:i]) for s in seqs for i in range(len(s) + 1)} | {()}


def oracle_minimal_size(seqs):
    """(nodes, edges) of the minimal automaton: one node per distinct set of continuations."""
    distinct = {tuple(s) for s in seqs}
    right = {}
    for p in all_prefixes(seqs):
        if p == () or any(s[: len(p)] == p for s in distinct):
            right[p] = frozenset(s[len(p):] for s in distinct if s[: len(p)] == p)
    classes = {}
    for p, language in right.items():
        classes[language] = len({w[0] for w in language if w})
    return len(classes), sum(classes.values())


def check_against_oracle(tree, seqs):
    distinct = {tuple(s) for s in seqs}
    prefixes = all_prefixes(seqs)
    assert len(tree) == len(distinct)
    assert list(tree) == sorted(distinct)
    for prefix in prefixes:
        allowed = tree.allowed(prefix)
        in_tree = prefix == () or any(s[: len(prefix)] == prefix for s in distinct)
        assert allowed == oracle_allowed(seqs, prefix), prefix
        assert (tree.node(prefix) >= 0) == in_tree
        assert (prefix in tree) == (prefix in distinct)
    for prefix in [(MAX_TOKEN + 5,), (7, 7, 7, 7, 7, 7, 7), (-1,), (2**40,)]:
        if prefix not in prefixes:
            assert tree.allowed(prefix) == [] and tree.node(prefix) == -1
            assert prefix not in tree
    assert "not a sequence" not in tree and [None] not in tree and 5 not in tree


def sequences_of(flat, lengths):
    out, pos = [], 0
    for n in lengths.tolist():
        out.append(tuple(flat[pos: pos + n].tolist()))
        pos += n
    return out


# ---------------------------------------------------------------- structure and Python lookups
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seqs=seq_lists)
def test_matches_oracle_is_minimal_and_survives_a_round_trip(seqs, tmp_path):
    tree = PrefixTree.from_sequences(seqs)
    check_against_oracle(tree, seqs)
    assert (tree.num_nodes, tree.num_edges) == oracle_minimal_size(seqs)
    path = str(tmp_path / "t.trie")
    tree.save(path)
    loaded = PrefixTree.load(path, verify=True)
    check_against_oracle(loaded, seqs)
    assert (loaded.num_nodes, loaded.num_edges, loaded.max_token) == (tree.num_nodes, tree.num_edges, tree.max_token)
    assert loaded.nbytes() == tree.nbytes()


@settings(max_examples=150, deadline=None)
@given(seqs=seq_lists)
def test_to_arrays_gives_the_sorted_distinct_sequences_and_round_trips(seqs):
    tree = PrefixTree.from_sequences(seqs)
    flat, lengths = tree.to_arrays()
    assert flat.dtype == np.int64 and lengths.dtype == np.int64
    assert sequences_of(flat, lengths) == sorted({tuple(s) for s in seqs})
    again = PrefixTree.from_arrays(flat, lengths)
    assert list(again) == list(tree)
    assert (again.num_nodes, again.num_edges) == (tree.num_nodes, tree.num_edges)


@settings(max_examples=60, deadline=None)
@given(seqs=seq_lists)
def test_hash_collisions_cost_sharing_never_correctness(seqs):
    # A hash with four values: nearly every node collides with a different one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pt, "_mix", lambda x: x & np.uint64(3))
        tree = PrefixTree.from_sequences(seqs)
    check_against_oracle(tree, seqs)
    assert sequences_of(*tree.to_arrays()) == sorted({tuple(s) for s in seqs})
    nodes, edges = oracle_minimal_size(seqs)
    assert tree.num_nodes >= nodes and tree.num_edges >= edges


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seqs=seq_lists)
def test_memory_mapped_sequences_in_small_steps_give_the_same_file(seqs, tmp_path):
    # genre-trie build compiles from a memory map of int32 tokens, in steps whose pages it releases
    # (madvise); steps of 2 tokens force every pass through that path.
    flat = np.array([t for s in seqs for t in s], dtype=np.int64)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    mem = tmp_path / "mem.trie"
    PrefixTree.from_arrays(flat, lengths).save(str(mem))
    spool = tmp_path / "tokens.i32"
    spool.write_bytes(flat.astype(np.int32).tobytes())
    with open(spool, "rb") as f:
        mapped = (np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.int32)
                  if flat.size else np.zeros(0, np.int32))
    assert flat.size == 0 or pt._mapped(mapped) is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pt, "_STEP", 2)
        tree = PrefixTree.from_arrays(mapped, lengths)
    stepped = tmp_path / "stepped.trie"
    tree.save(str(stepped))
    assert stepped.read_bytes() == mem.read_bytes()
    assert sequences_of(*tree.to_arrays()) == sorted({tuple(s) for s in seqs})


def test_shared_endings_are_stored_once_and_states_keep_their_incoming_token():
    seqs = [[EOS, 5, 40, 41, EOS], [EOS, 6, 40, 41, EOS], [EOS, 7, 40, 42, EOS]]
    tree = PrefixTree.from_sequences(seqs, start_token=EOS)
    # root -2-> a -{5,6}-> b -40-> c -41-> d -2-> end, and a -7-> e -40-> f -42-> d: 8 nodes, 9 edges
    # (a trie has 13 nodes)
    assert (tree.num_nodes, tree.num_edges) == (8, 9) == oracle_minimal_size(seqs)
    s5, s6 = tree.node([EOS, 5]), tree.node([EOS, 6])
    assert s5 != s6 and s5 > 0 and s6 > 0  # one node, two states: each knows its token
    assert tree.incoming_tokens(torch.tensor([s5, s6])).tolist() == [5, 6]
    assert tree.allowed([EOS, 5, 40]) == [41] and tree.allowed([EOS, 7, 40]) == [42]
    assert [EOS, 6, 40, 41, EOS] in tree and [EOS, 6, 40, 42, EOS] not in tree


def test_single_sequence_empty_sequence_and_empty_tree(tmp_path):
    only_empty = PrefixTree.from_sequences([[]])
    assert len(only_empty) == 1 and list(only_empty) == [()] and [] in only_empty
    assert only_empty.allowed([]) == [] and only_empty.max_token == -1
    one = PrefixTree.from_sequences([[3, 1, 4, 1, 5]])
    assert list(one) == [(3, 1, 4, 1, 5)] and (one.num_nodes, one.num_edges) == (6, 5)
    assert [3, 1, 4] not in one and one.allowed([3, 1, 4]) == [1]
    tree = PrefixTree.from_sequences([])
    assert len(tree) == 0 and list(tree) == [] and tree.allowed([]) == [] and [] not in tree
    flat, lengths = tree.to_arrays()
    assert flat.size == 0 and lengths.size == 0
    tree.save(str(tmp_path / "e.trie"))
    t = PrefixTree.load(str(tmp_path / "e.trie"), verify=True)
    assert len(t) == 0 and t.allowed([]) == [] and t.max_token == -1
    states = torch.tensor([0, -1])
    toks, nxt, valid = t.candidates(states, min_width=1)
    assert not valid.any() and nxt.tolist() == [[-1], [-1]]
    assert t.advance(states, torch.tensor([1, 1])).tolist() == [-1, -1]
    assert t.incoming_tokens(states).tolist() == [-1, -1]
    assert not t.allowed_mask(states, 5).any()
    assert t.child_ranges(states)[1].tolist() == [0, 0]


def test_bit_widths_are_the_smallest_that_fit():
    assert PrefixTree.from_sequences([[1, 2, 255]]).bit_widths["tokens"] == 2  # 3 distinct tokens
    big = PrefixTree.from_sequences([[i, j] for i in range(20) for j in range(20)])
    # the 20 second-level nodes are one node: root, 1 node, leaf
    assert (big.num_nodes, big.num_edges) == (3, 40)
    assert big.bit_widths == {"tokens": 5, "targets": 2, "offsets": 6, "token_map": 5}
    wide = PrefixTree.from_sequences([[250_000 + i] for i in range(3)])
    assert wide.bit_widths["token_map"] == 18 and wide.max_token == 250_002


def test_header_records_fingerprint_start_token_and_format(tmp_path):
    d = make_dictionary(5)
    tree = PrefixTree.from_sequences(
        [[2, 4, 2], [2, 5, 6, 2]], dictionary_fingerprint=dictionary_fingerprint(d), start_token=2,
        identifier_format="name_lang", name_table_fingerprint="abc",
    )
    tree.save(str(tmp_path / "a.trie"))
    t = PrefixTree.load(str(tmp_path / "a.trie"))
    assert t.dictionary_fingerprint == dictionary_fingerprint(d)
    assert t.start_token == 2 and t.identifier_format == "name_lang" and t.name_table_fingerprint == "abc"
    assert t.path == str(tmp_path / "a.trie")
    assert dictionary_fingerprint(make_dictionary(6)) != dictionary_fingerprint(d)


def test_from_sequences_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        PrefixTree.from_sequences([[1, -3]])
    with pytest.raises(ValueError, match="< 2\\*\\*32"):
        PrefixTree.from_sequences([[1, 2**32]])
    with pytest.raises(ValueError, match="sequence 1 does not begin with the start token 2"):
        PrefixTree.from_sequences([[2, 4], [4, 2]], start_token=2)
    with pytest.raises(ValueError, match="unknown identifier format"):
        PrefixTree.from_sequences([[2]], identifier_format="title")
    with pytest.raises(ValueError, match="sum to len"):
        PrefixTree.from_arrays(np.array([1, 2]), np.array([3]))
    with pytest.raises(TypeError):
        PrefixTree.from_sequences([[1, "a"]])


# ---------------------------------------------------------------- bit packing
@settings(max_examples=100, deadline=None)
@given(bits=st.integers(1, 32), data=st.data())
def test_packed_arrays_round_trip_on_numpy_and_torch(bits, data):
    values = np.array(data.draw(st.lists(st.integers(0, (1 << bits) - 1), max_size=300)), dtype=np.int64)
    if values.size:
        values[-1] = (1 << bits) - 1  # the widest value
    packed = pt._Packed.pack(values, bits)
    assert packed.words.size == pt._Packed.num_words(values.size, bits)
    assert packed.all().tolist() == values.tolist()
    assert [packed.get1(i) for i in range(values.size)] == values.tolist()
    if values.size:
        idx = torch.tensor(data.draw(st.lists(st.integers(0, values.size - 1), min_size=1, max_size=20)))
        words = torch.from_numpy(packed.words.astype(np.int64))
        assert pt._torch_get(words, bits, idx).tolist() == values[idx.numpy()].tolist()


def test_packing_across_chunks(monkeypatch):
    monkeypatch.setattr(pt._Packed, "CHUNK", 64)
    values = np.random.default_rng(0).integers(0, 1 << 27, size=1000)
    assert pt._Packed.pack(values, 27).all().tolist() == values.tolist()
    with pytest.raises(ValueError, match="cannot pack"):
        pt._Packed.pack(values, 33)


# ---------------------------------------------------------------- tensor lookups
@pytest.mark.parametrize("device_path", [False, True], ids=["cpu-mmap", "device-tensors"])
@settings(max_examples=80, deadline=None)
@given(seqs=seq_lists, data=st.data())
def test_tensor_lookups_agree_with_the_oracle_on_mixed_batches(device_path, seqs, data):
    tree = PrefixTree.from_sequences(seqs)
    tree._torch_arrays_on_cpu = device_path  # True: the int64-tensor path used on CUDA
    prefixes = sorted(p for p in all_prefixes(seqs) if tree.node(p) >= 0)
    picked = data.draw(st.lists(st.sampled_from(prefixes), min_size=1, max_size=10))
    dead = data.draw(st.lists(st.just(None), max_size=3))  # states -1 mixed in
    batch = data.draw(st.permutations(picked + dead))
    states = torch.tensor([tree.node(p) if p is not None else -1 for p in batch])
    expected = [oracle_allowed(seqs, p) if p is not None else [] for p in batch]

    start, count = tree.child_ranges(states)
    assert count.tolist() == [len(e) for e in expected]
    for i, e in enumerate(expected):
        assert tree.edge_tokens(torch.arange(int(start[i]), int(start[i]) + len(e))).tolist() == e
    toks, nxt, valid = tree.candidates(states, min_width=2)
    assert toks.size(1) == max([2] + [len(e) for e in expected])
    for i, p in enumerate(batch):
        assert toks[i][valid[i]].tolist() == expected[i]
        assert nxt[i][valid[i]].tolist() == [tree.node(list(p) + [t]) for t in expected[i]]
        assert (nxt[i][~valid[i]] == -1).all() and (toks[i][~valid[i]] == 0).all()
    # advance along allowed tokens, absent tokens, and tokens no sequence uses
    tokens = [data.draw(st.sampled_from(e)) if e and data.draw(st.booleans()) else data.draw(big_tokens)
              for e in expected]
    adv = tree.advance(states, torch.tensor(tokens))
    assert adv.tolist() == [tree.node(list(p) + [t]) if p is not None else -1 for p, t in zip(batch, tokens)]
    assert tree.advance(states, torch.full_like(states, -5)).tolist() == [-1] * len(batch)
    inc = tree.incoming_tokens(states)
    assert inc.tolist() == [p[-1] if p else -1 for p in batch]
    mask = tree.allowed_mask(states, MAX_TOKEN + 1)
    for i, e in enumerate(expected):
        assert torch.nonzero(mask[i]).view(-1).tolist() == e
    small = tree.allowed_mask(states, 4)  # tokens >= vocab_size are left out
    for i, e in enumerate(expected):
        assert torch.nonzero(small[i]).view(-1).tolist() == [t for t in e if t < 4]
    # walk: rows of equal length, from the root and from given states
    for n in {len(p) for p in picked}:
        rows = [p for p in picked if len(p) == n]
        walked = tree.walk(torch.tensor(rows, dtype=torch.long).view(len(rows), n))
        assert walked.tolist() == [tree.node(p) for p in rows]
        if n:
            heads = tree.walk(torch.tensor([p[:1] for p in rows]))
            assert tree.walk(torch.tensor([p[1:] for p in rows]).view(len(rows), n - 1), heads).tolist() == \
                walked.tolist()
    assert tree.root_states(3).tolist() == [0, 0, 0]


def test_device_arrays_are_cached_per_device():
    tree = PrefixTree.from_sequences([[1, 2], [1, 3]])
    tree._torch_arrays_on_cpu = True
    tree.advance(torch.tensor([0]), torch.tensor([1]))
    first = tree._device_arrays[torch.device("cpu")]
    tree.candidates(torch.tensor([1]))
    assert tree._device_arrays[torch.device("cpu")] is first


# ---------------------------------------------------------------- bad files
@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "kb.trie")
    PrefixTree.from_sequences([[2, 4, 5, 2], [2, 4, 6, 2], [2, 7, 2]], start_token=2).save(path)
    return path


def _header(path):
    data = bytearray(open(path, "rb").read())
    magic, version, meta_len = struct.unpack("<8sII", data[:16])
    return data, json.loads(data[16:16 + meta_len]), meta_len


def _rewrite_header(path, data, meta, meta_len):
    """Write ``meta`` back in place (padded with spaces to the old length)."""
    blob = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()  # shorter than save's
    assert len(blob) <= meta_len
    data[16:16 + meta_len] = blob + b" " * (meta_len - len(blob))
    open(path, "wb").write(bytes(data))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        PrefixTree.load(str(tmp_path / "nope.trie"))


def test_truncated_file(saved):
    data = open(saved, "rb").read()
    for cut in (len(data) - 1, len(data) // 2, 30, 10, 0):
        with open(saved, "wb") as f:
            f.write(data[:cut])
        with pytest.raises(ValueError, match="truncated|too short"):
            PrefixTree.load(saved)


def test_foreign_file(tmp_path):
    path = str(tmp_path / "model.pt")
    with open(path, "wb") as f:
        f.write(b"PK\x03\x04" + os.urandom(200))
    with pytest.raises(ValueError, match="bad magic"):
        PrefixTree.load(path)


def test_unsupported_version(saved):
    data = bytearray(open(saved, "rb").read())
    data[len(MAGIC): len(MAGIC) + 4] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    open(saved, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=f"unsupported prefix tree format version {FORMAT_VERSION + 1}"):
        PrefixTree.load(saved)


def test_version_1_files_ask_for_a_rebuild(tmp_path):
    # A version-1 file as the previous code wrote it: header, then offsets | tokens | terminal.
    meta = json.dumps({"num_nodes": 3, "num_sequences": 1, "offsets_dtype": "|u1", "tokens_dtype": "|u1",
                       "max_token": 5, "start_token": None}).encode()
    head = struct.pack("<8sII", MAGIC, 1, len(meta)) + meta
    head += b"\0" * ((-len(head)) % 8)
    path = str(tmp_path / "old.trie")
    open(path, "wb").write(head + bytes([0, 1, 2, 2]) + b"\0" * 4 + bytes([4, 5]) + b"\0" * 6 + b"\x04" + b"\0" * 7)
    with pytest.raises(ValueError, match="format version 1 is no longer read.*rebuild the tree with `genre-trie build`"):
        PrefixTree.load(path)


def test_corrupted_arrays_fail_verification(saved):
    data = bytearray(open(saved, "rb").read())
    data[-8] ^= 0x01  # the root's terminal bit (the last section): a cheap load cannot see it
    open(saved, "wb").write(bytes(data))
    PrefixTree.load(saved, verify=False)
    with pytest.raises(ValueError, match="checksum"):
        PrefixTree.load(saved)


def test_trailing_bytes_are_refused(saved):
    with open(saved, "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(ValueError, match="corrupt prefix tree file"):
        PrefixTree.load(saved)


@pytest.mark.parametrize("field,value,message", [
    ("num_edges", 99, "array lengths"),
    ("root", 50, "node counts"),
    ("multi", 7, "node counts|array lengths"),
    ("sections", {"tokens": [1, 40]}, "corrupt prefix tree header"),
    ("num_nodes", "many", "corrupt prefix tree header"),
])
def test_inconsistent_headers_are_refused(saved, field, value, message):
    data, meta, meta_len = _header(saved)
    meta[field] = value
    _rewrite_header(saved, data, meta, meta_len)
    with pytest.raises(ValueError, match=message):  # the cheap checks alone see these
        PrefixTree.load(saved, verify=False)
    with pytest.raises(ValueError, match="corrupt prefix tree header"):  # the header checksum too
        PrefixTree.load(saved)


def test_broken_json_header(saved):
    data, meta, meta_len = _header(saved)
    data[16] = ord("[")
    open(saved, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="corrupt prefix tree header"):
        PrefixTree.load(saved)


def test_deep_verification_checks_the_structure_not_only_the_checksum(tmp_path):
    tree = PrefixTree.from_sequences([[2, 4, 5, 2], [2, 4, 6, 2], [2, 7, 2]])
    targets = tree._arrays["targets"].all()
    targets[0] = tree.num_nodes + 1  # an edge out of the tree, saved with a matching checksum
    tree._arrays["targets"] = pt._Packed.pack(targets, tree._arrays["targets"].bits)
    path = str(tmp_path / "bad.trie")
    tree.save(path)
    PrefixTree.load(path)  # checksums match: only reading every target finds it
    with pytest.raises(ValueError, match="an edge leads outside the tree"):
        PrefixTree.load(path, deep=True)


def test_max_token_comes_from_the_token_map_and_the_header_must_agree(tmp_path):
    path = str(tmp_path / "t.trie")
    PrefixTree.from_sequences([[2, 7, 2], [2, 250000, 2]]).save(path)
    assert PrefixTree.load(path).max_token == 250000
    data, meta, meta_len = _header(path)
    assert meta["max_token"] == 250000
    meta["max_token"] = 100000
    _rewrite_header(path, data, meta, meta_len)
    with pytest.raises(ValueError, match="corrupt prefix tree header \\(max_token 100000, tokens say 250000\\)"):
        PrefixTree.load(path, verify=False)  # verified, the rewritten header fails its checksum first


def test_the_file_is_byte_identical_to_the_one_the_unbounded_builder_wrote(tmp_path):
    # Hash of this tree as the builder before the bounded-memory build (commit 667d150) saved it:
    # the narrower arrays, the steps and the freed temporaries must not change one byte.
    import hashlib

    rng = np.random.default_rng(20261203)
    lengths = rng.integers(1, 14, size=4000)
    vocab = np.concatenate([np.arange(4, 40), rng.integers(40, 256_000, size=200)])
    flat = vocab[rng.zipf(1.6, size=int(lengths.sum())) % vocab.size]
    flat[np.cumsum(lengths) - 1] = EOS  # shared endings, which the minimization merges
    path = tmp_path / "t.trie"
    PrefixTree.from_arrays(flat.astype(np.int64), lengths.astype(np.int64)).save(str(path))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == (
        "713cf9c3966d645d1d3d2123f1a2b449ca138e6a92698a55c045397cb305e19e")
