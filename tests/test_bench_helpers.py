"""The benchmark helpers that figures depend on: the reference trie, chunked name generation, the scale fit."""
import os
import subprocess
import sys

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import _common  # noqa: E402
import bench_build  # noqa: E402
import make_names  # noqa: E402


def test_reference_trie_get_matches_brute_force():
    seqs = [[2, 5, 6, 2], [2, 5, 7, 2], [2, 5, 2], [2, 9, 2], [2, 5, 6, 8, 2]]
    trie = _common.ReferenceTrie(seqs)
    assert len(trie) == len(seqs)
    prefixes = {tuple(s[:k]) for s in seqs for k in range(len(s) + 1)} | {(3,), (2, 5, 9), (2, 9, 2, 2)}
    for p in prefixes:
        expected = {s[len(p)] for s in seqs if len(s) > len(p) and tuple(s[: len(p)]) == p}
        got = trie.get(list(p))
        assert sorted(got) == sorted(expected), p
        assert len(got) == len(set(got))
    # the reference's callback signature: (batch id, tensor of the hypothesis' tokens)
    torch = pytest.importorskip("torch")
    assert sorted(_common.reference_allowed(trie)(0, torch.tensor([2, 5]))) == [2, 6, 7]


def test_chunked_names_are_distinct_and_prefix_consistent():
    def collect(n, chunk):
        return [part for part in make_names.generate_chunks(n, seed=3, chunk=chunk, verbose=False)]

    parts = collect(3000, 1000)
    assert [p[2].size for p in parts] == [1000, 1000, 1000]
    codes = parts[0][3]
    keys = [(codes[li], name) for _, lang, names, _ in parts for li, name in zip(lang.tolist(), names.tolist())]
    assert len(set(keys)) == len(keys)  # (language, name) unique across chunks too
    entity = np.concatenate([p[0] for p in parts])
    assert entity[0] == 0 and (np.diff(entity) >= 0).all() and (np.diff(entity) <= 1).all()
    assert parts[0][0][-1] < parts[1][0][0]  # an entity's names lie in one chunk
    # a KB of the first two chunks is the first two chunks of the larger one (same vocabularies)
    smaller = collect(2000, 1000)
    for a, b in zip(smaller, parts):
        assert a[2].tolist() == b[2].tolist() and a[0].tolist() == b[0].tolist()


def test_taken_names_hashes():
    taken = make_names.TakenNames()
    codes = ["en", "de"]
    lang, names = np.array([0, 1, 0]), np.array(["Bern", "Bern", "Köln"], dtype=object)
    keys = make_names.TakenNames.keys(lang, names, codes)
    assert keys[0] != keys[1]  # the language is part of the key
    assert not taken.contains(keys).any()
    taken.add(keys[:2])
    assert taken.contains(keys).tolist() == [True, True, False]


def test_make_names_cli_chunked(tmp_path):
    out = tmp_path / "kb.tsv"
    run = subprocess.run([sys.executable, os.path.join(BENCH, "make_names.py"), "--names", "2500", "--chunk", "1000",
                          "--output", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2500 and all(len(line.split("\t")) == 3 for line in lines)
    assert "2,500 names" in run.stdout and "in chunks of 1,000" in run.stdout
    bad = subprocess.run([sys.executable, os.path.join(BENCH, "make_names.py"), "--names", "0", "--output",
                          str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "--names must be >= 1" in bad.stderr and "Traceback" not in bad.stderr


def test_scale_fit_and_head(tmp_path):
    a, b = bench_build._fit([1e6, 2e6, 4e6], [1.5e9, 2.0e9, 3.0e9])
    assert a == pytest.approx(1.0e9) and b == pytest.approx(500.0)
    assert bench_build._fit([2e6], [1e9]) == (0.0, 500.0)
    src, dst = tmp_path / "a.tsv", tmp_path / "b.tsv"
    src.write_text("".join(f"Q{i}\ten\tn{i}\n" for i in range(10)), encoding="utf-8")
    bench_build._head(str(src), str(dst), 4)
    assert dst.read_text(encoding="utf-8").splitlines() == [f"Q{i}\ten\tn{i}" for i in range(4)]
