"""What verifying a prefix tree and a name table on load costs, at 1M and 10M identifiers.

Builds a synthetic tree (random token sequences shaped like encoded names: 3-14 tokens from a
256k vocabulary, Zipf-distributed so prefixes are shared) and a name table (one (lang, name) per
identifier, 2.5 names per entity), saves both, then times ``load(verify=False)`` (memory map and
O(1) checks) against ``load()`` (the default: header and section checksums, zero padding) and,
for trees, ``load(deep=True)`` (also every array's bounds).
Best of ``--reps`` loads with the page cache warm (the file was just written), so the numbers
are CPU cost, not disk reads.

    python benchmarks/bench_verify.py --sizes 1000000,10000000 --dir /tmp/bench_verify
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from genre_fairseq.name_table import NameTable  # noqa: E402
from genre_fairseq.prefix_tree import PrefixTree  # noqa: E402


def synthetic_sequences(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` token sequences ``[2] + tokens + [2]`` as (flat, lengths)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 15, size=n)
    ranks = rng.zipf(1.3, size=int(lengths.sum())) % 255_990
    flat = (ranks + 4).astype(np.int64)
    starts = np.cumsum(lengths) - lengths
    flat[starts] = 2
    flat[starts + lengths - 1] = 2
    return flat, lengths.astype(np.int64)


def synthetic_records(n: int):
    """``n`` distinct (entity, lang, name) records, 2.5 names per entity."""
    for i in range(n):
        yield f"Q{i * 2 // 5 + 1}", "en", f"name {i:x} of {i % 9973}"


def best(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        obj = fn()
        times.append(time.perf_counter() - started)
        close = getattr(obj, "close", None)
        if close:
            close()
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="identifier counts, comma-separated")
    parser.add_argument("--dir", default="/tmp/bench_verify", help="where the files are written")
    parser.add_argument("--reps", type=int, default=5, help="loads per measurement (best is kept)")
    args = parser.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print("| identifiers | file | bytes | load(verify=False) ms | load() ms | verification ms | MB/s verified "
          "| load(deep=True) ms |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in (int(s) for s in args.sizes.split(",")):
        tree_path = os.path.join(args.dir, f"{n}.trie")
        names_path = os.path.join(args.dir, f"{n}.names")
        if not os.path.exists(tree_path):
            flat, lengths = synthetic_sequences(n, seed=n)
            PrefixTree.from_arrays(flat, lengths, start_token=2).save(tree_path)
            del flat, lengths
        if not os.path.exists(names_path):
            NameTable.build(synthetic_records(n), names_path)
        for path, loader in ((tree_path, PrefixTree.load), (names_path, NameTable.load)):
            loader(path, verify=True)  # warm the page cache
            fast = best(lambda: loader(path, verify=False), args.reps)
            full = best(lambda: loader(path, verify=True), args.reps)
            size = os.path.getsize(path)
            deep = best(lambda: PrefixTree.load(path, deep=True), args.reps) if path == tree_path else None
            print(f"| {n:,} | {os.path.splitext(path)[1]} | {size:,} | {fast * 1e3:.1f} | {full * 1e3:.1f} | "
                  f"{(full - fast) * 1e3:.1f} | {size / 1e6 / max(full - fast, 1e-9):,.0f} | "
                  f"{'-' if deep is None else f'{deep * 1e3:.1f}'} |", flush=True)


if __name__ == "__main__":
    main()
