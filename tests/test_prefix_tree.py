"""PrefixTree against a brute-force oracle, its file format, and its tensor lookups."""

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genre_fairseq.prefix_tree import FORMAT_VERSION, MAGIC, PrefixTree, dictionary_fingerprint
from tests.toy import make_dictionary

MAX_TOKEN = 256_000

small_tokens = st.integers(min_value=0, max_value=6)
big_tokens = st.integers(min_value=0, max_value=MAX_TOKEN)
seq_lists = st.one_of(
    st.lists(st.lists(small_tokens, max_size=6), max_size=25),
    st.lists(st.lists(big_tokens, max_size=5), max_size=15),
)


def oracle_allowed(seqs, prefix):
    n = len(prefix)
    if not any(tuple(s[:n]) == tuple(prefix) for s in seqs):
        return []
    return sorted({s[n] for s in seqs if len(s) > n and tuple(s[:n]) == tuple(prefix)})


def all_prefixes(seqs):
    return {tuple(s[:i]) for s in seqs for i in range(len(s) + 1)}


def check_against_oracle(tree, seqs):
    distinct = {tuple(s) for s in seqs}
    assert len(tree) == len(distinct)
    assert list(tree) == sorted(distinct)
    for prefix in all_prefixes(seqs) | {()}:
        assert tree.allowed(prefix) == oracle_allowed(seqs, prefix), prefix
        assert (prefix in tree) == (prefix in distinct)
    # prefixes leaving the tree
    for prefix in [(MAX_TOKEN + 5,), (7, 7, 7, 7, 7, 7, 7), (-1,)]:
        if prefix not in all_prefixes(seqs):
            assert tree.allowed(prefix) == []
            assert prefix not in tree


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seqs=seq_lists)
def test_matches_oracle_and_survives_a_round_trip(seqs, tmp_path):
    tree = PrefixTree.from_sequences(seqs)
    check_against_oracle(tree, seqs)
    path = str(tmp_path / "t.trie")
    tree.save(path)
    loaded = PrefixTree.load(path, verify=True)
    check_against_oracle(loaded, seqs)
    assert loaded.num_nodes == tree.num_nodes


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu-mmap", "device-tensors"])
@settings(max_examples=60, deadline=None)
@given(seqs=seq_lists, data=st.data())
def test_tensor_lookups_agree_with_python_lookups(device_path, seqs, data):
    tree = PrefixTree.from_sequences(seqs)
    tree._torch_arrays_on_cpu = device_path  # True: the int64-tensor path used on CUDA
    prefixes = sorted(all_prefixes(seqs))
    picked = data.draw(st.lists(st.sampled_from(prefixes), min_size=1, max_size=8)) if prefixes else [()]
    extra = data.draw(st.lists(big_tokens, min_size=len(picked), max_size=len(picked)))
    nodes = [tree.node(p) for p in picked]
    states = torch.tensor(nodes + [-1])
    # walk: rows of equal length only, so walk each prefix from the root
    for p, n in zip(picked, nodes):
        walked = tree.walk(torch.tensor([list(p)], dtype=torch.long).view(1, -1))
        assert walked.tolist() == [n]
    # candidates and advance
    toks, nxt, valid = tree.candidates(states)
    for i, p in enumerate(picked + [None]):
        expected = tree.allowed(p) if p is not None else []
        assert toks[i][valid[i]].tolist() == expected
        for t, s in zip(toks[i][valid[i]].tolist(), nxt[i][valid[i]].tolist()):
            assert s == tree.node(list(p) + [t])
    adv = tree.advance(states[:-1], torch.tensor(extra))
    assert adv.tolist() == [tree.node(list(p) + [t]) for p, t in zip(picked, extra)]
    assert tree.advance(torch.tensor([-1]), torch.tensor([0])).tolist() == [-1]
    # incoming tokens
    inc = tree.incoming_tokens(states)
    assert inc.tolist() == [p[-1] if p else -1 for p in picked] + [-1]
    # dense mask
    vocab = MAX_TOKEN + 1
    mask = tree.allowed_mask(states[:4], vocab)
    for i, p in enumerate((picked + [None])[:4]):
        expected = tree.allowed(p) if p is not None else []
        assert torch.nonzero(mask[i]).view(-1).tolist() == expected


def test_widths_are_the_smallest_that_fit():
    assert PrefixTree.from_sequences([[1, 2, 255]]).tokens.dtype.itemsize == 1
    assert PrefixTree.from_sequences([[1, 2, 50264]]).tokens.dtype.itemsize == 2
    assert PrefixTree.from_sequences([[1, 250_000]]).tokens.dtype.itemsize == 4
    big = PrefixTree.from_sequences([[i, j] for i in range(20) for j in range(20)])
    assert big.offsets.dtype.itemsize == 2  # 421 nodes


def test_header_records_fingerprint_start_token_and_format(tmp_path):
    d = make_dictionary(5)
    tree = PrefixTree.from_sequences(
        [[2, 4, 2], [2, 5, 6, 2]], dictionary_fingerprint=dictionary_fingerprint(d), start_token=2,
        identifier_format="name_lang",
    )
    tree.save(str(tmp_path / "a.trie"))
    t = PrefixTree.load(str(tmp_path / "a.trie"))
    assert t.dictionary_fingerprint == dictionary_fingerprint(d)
    assert t.start_token == 2 and t.identifier_format == "name_lang"
    assert dictionary_fingerprint(make_dictionary(6)) != dictionary_fingerprint(d)


def test_from_sequences_rejects_bad_input():
    with pytest.raises(ValueError, match=">= 0"):
        PrefixTree.from_sequences([[1, -3]])
    with pytest.raises(ValueError, match="sequence 1 does not begin with the start token 2"):
        PrefixTree.from_sequences([[2, 4], [4, 2]], start_token=2)
    with pytest.raises(ValueError, match="unknown identifier format"):
        PrefixTree.from_sequences([[2]], identifier_format="title")


def test_empty_tree_round_trips(tmp_path):
    tree = PrefixTree.from_sequences([])
    assert len(tree) == 0 and list(tree) == [] and tree.allowed([]) == [] and [] not in tree
    tree.save(str(tmp_path / "e.trie"))
    t = PrefixTree.load(str(tmp_path / "e.trie"))
    assert len(t) == 0 and t.allowed([]) == []
    toks, nxt, valid = t.candidates(torch.tensor([0, -1]), min_width=1)
    assert not valid.any() and nxt.tolist() == [[-1], [-1]]


# ---------------------------------------------------------------- bad files
@pytest.fixture
def saved(tmp_path):
    path = str(tmp_path / "kb.trie")
    PrefixTree.from_sequences([[2, 4, 5, 2], [2, 4, 6, 2], [2, 7, 2]], start_token=2).save(path)
    return path


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
    data[len(MAGIC) : len(MAGIC) + 4] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    open(saved, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=f"unsupported prefix tree format version {FORMAT_VERSION + 1}"):
        PrefixTree.load(saved)


def test_corrupted_arrays_fail_verification(saved):
    data = bytearray(open(saved, "rb").read())
    data[-9] ^= 0xFF
    open(saved, "wb").write(bytes(data))
    PrefixTree.load(saved)  # the cheap checks pass
    with pytest.raises(ValueError, match="checksum"):
        PrefixTree.load(saved, verify=True)


def test_trailing_bytes_are_refused(saved):
    with open(saved, "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(ValueError, match="corrupt"):
        PrefixTree.load(saved)


def test_max_token_comes_from_the_header_and_verify_checks_it(tmp_path):
    import json
    import struct

    path = str(tmp_path / "t.trie")
    PrefixTree.from_sequences([[2, 7, 2], [2, 250000, 2]]).save(path)
    assert PrefixTree.load(path).max_token == 250000
    data = bytearray(open(path, "rb").read())
    magic, version, meta_len = struct.unpack("<8sII", data[:16])
    meta = json.loads(data[16:16 + meta_len])
    assert meta["max_token"] == 250000
    forged = json.dumps(dict(meta, max_token=100000), sort_keys=True).encode()  # same length
    assert len(forged) == meta_len
    data[16:16 + meta_len] = forged
    open(path, "wb").write(bytes(data))
    assert PrefixTree.load(path).max_token == 100000  # trusted without verify (O(1) load)
    with pytest.raises(ValueError, match="corrupt prefix tree header"):
        PrefixTree.load(path, verify=True)
