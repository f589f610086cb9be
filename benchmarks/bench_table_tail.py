"""What the one process of ``genre-trie names --wikidata --workers N`` does per name after the read.

The workers send the name table's lines already encoded (``name_table.encode_records``), in
msgpack batches of about 300 lines; the parent sorts them in runs, merges the runs and builds the
table (``NameTable.build_encoded``). Most of that part runs in one process whatever the number of
workers (they only build the entity trie beside the key trie and share the key-id lookups), so it
bounds a large machine. This benchmark feeds ``build_encoded`` N synthetic Wikipedia-title lines the way the
workers do (grouped by entity, ids ascending, 1-12 languages an entity, 60% of the names shared
by an entity's languages) and prints the wall and CPU time per name of each phase.

    OMP_NUM_THREADS=1 python benchmarks/bench_table_tail.py --names 5000000 --workers 1,2

One thread a process; about 10 us and 170 bytes a name (5M names: under a minute a build, 0.9 GiB).
"""
import argparse
import hashlib
import os
import random
import resource
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import msgspec  # noqa: E402

import genre_fairseq.name_table as name_table  # noqa: E402

PHASES = ("_distinct_sorted", "_links", "_spool_tries", "_write_container")
WIKIS = ["en", "de", "fr", "es", "it", "ru", "ja", "zh", "ar", "pt", "pl", "nl", "sv", "uk", "vi"] + [
    "x%d" % i for i in range(285)]


def batches(n: int, seed: int = 1) -> list:
    """msgpack'd batches of the encoded lines of about `n` name records, as workers send them."""
    rng = random.Random(seed)
    alpha = "abcdefghijklmnopqrstuvwxyz     "
    encode = msgspec.msgpack.Encoder().encode
    out, batch, total, q = [], [], 0, 0
    while total < n:
        q += rng.randint(1, 10)
        base = "".join(rng.choice(alpha) for _ in range(rng.randint(6, 30))).strip() or "x"
        for lang in rng.sample(WIKIS, rng.randint(1, 12)):
            batch.append(("Q%d" % q, lang, base if rng.random() < 0.6 else "%s (%s)" % (base, lang), True))
            total += 1
        if len(batch) >= 300:
            out.append(encode(name_table.encode_records(batch)))
            batch = []
    if batch:
        out.append(encode(name_table.encode_records(batch)))
    return out, total


def build(data: list, workers: int, chunk_size: int, tmp_dir: str) -> dict:
    """One ``build_encoded`` of the msgpack'd `data` with `workers` lookup processes: wall and CPU
    seconds per phase, the file's digest."""
    spent = {name: [0.0, 0.0] for name in PHASES}  # wall, CPU of this process
    saved = {name: getattr(name_table, name) for name in PHASES}

    def timed(name, function):
        def run(*a, **k):
            w, c = time.perf_counter(), time.process_time()
            try:
                return function(*a, **k)
            finally:
                spent[name][0] += time.perf_counter() - w
                spent[name][1] += time.process_time() - c
        return run

    for name in PHASES:
        setattr(name_table, name, timed(name, saved[name]))
    decode = msgspec.msgpack.Decoder().decode
    try:
        with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
            path = os.path.join(tmp, "kb.names")
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall, cpu = time.perf_counter(), time.process_time()
            name_table.NameTable.build_encoded((decode(b) for b in data), path, tmp_dir=tmp, chunk_size=chunk_size,
                                               workers=workers)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
    finally:
        for name in PHASES:
            setattr(name_table, name, saved[name])
    child_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return {"wall": wall, "cpu": cpu, "child_cpu": child_cpu, "spent": spent, "digest": digest}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--names", type=int, default=2_000_000, help="name records to build (default 2,000,000)")
    p.add_argument("--chunk-size", type=int, default=1_000_000, help="lines per sorted run (the build's default)")
    p.add_argument("--workers", default="1", help="comma-separated worker counts, each built in turn "
                   "from the same batches (repeat a count to run it again: 1,2,1,2; medians compared; default 1)")
    p.add_argument("--tmp-dir", default=None, help="where the runs and the table go (default: a new temporary directory)")
    args = p.parse_args()
    if args.names < 1 or args.chunk_size < 1:
        p.error("--names and --chunk-size must be >= 1")
    try:
        counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        p.error(f"--workers {args.workers}: not a comma-separated list of numbers")
    if any(w < 1 for w in counts):
        p.error(f"--workers {args.workers}: every count must be >= 1")
    if args.tmp_dir is not None and not os.path.isdir(args.tmp_dir):
        p.error(f"--tmp-dir {args.tmp_dir}: not a directory")
    started = time.perf_counter()
    data, total = batches(args.names)
    print(f"{total:,} lines in {len(data):,} batches, generated in {time.perf_counter() - started:.0f} s; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    runs = []
    for workers in counts:
        run = build(data, workers, args.chunk_size, args.tmp_dir)
        runs.append((workers, run))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        # the largest RSS of any child so far (a forked child's counts the pages it still shares with this one)
        child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20
        spent = run["spent"]
        # _links pulls the sorted lines, which pulls the batches: its time holds receiving them, spilling and
        # merging the runs and the sorts, which are split out.
        links_only = [spent["_links"][i] - spent["_distinct_sorted"][i] for i in (0, 1)]
        rows = [("sort of each run (dict.fromkeys + sorted)", spent["_distinct_sorted"]),
                ("receiving the batches, spilling and merging the runs, the pass over the sorted lines", links_only),
                ("marisa tries: build + each link's key id (_spool_tries)", spent["_spool_tries"]),
                ("writing the file", spent["_write_container"])]
        rows.append(("the rest (numpy arrays)", [run["wall"] - sum(t[0] for _, t in rows),
                                                 run["cpu"] - sum(t[1] for _, t in rows)]))
        print(f"\nNameTable.build_encoded of {total:,} lines ({args.chunk_size:,}-line runs), workers={workers}: "
              f"**{run['wall']:.1f} s wall, {run['wall'] / total * 1e6:.2f} us per name**; CPU {run['cpu']:.1f} s "
              f"here + {run['child_cpu']:.1f} s in its processes; peak RSS so far {peak:.2f} GiB (the batches "
              f"themselves included), of a process of the build {child_peak:.2f} GiB (pages shared with this one "
              f"included); load average {os.getloadavg()[0]:.2f}\n")
        print("| phase | wall s | us per name (wall) | CPU s here |\n| --- | ---: | ---: | ---: |")
        for label, (w, c) in rows:
            print(f"| {label} | {w:.1f} | {w / total * 1e6:.2f} | {c:.1f} |")
    if len({run["digest"] for _, run in runs}) != 1:
        sys.exit("bench_table_tail: the tables built with different worker counts differ")
    walls = {w: statistics.median(run["wall"] for v, run in runs if v == w) for w in dict.fromkeys(counts)}
    if len(walls) > 1:
        first = counts[0]
        print("\nThe tables are byte-identical. Median wall: " + ", ".join(
            f"workers={w} {wall:.1f} s" for w, wall in walls.items()) + f"; against workers={first}: " + ", ".join(
            f"workers={w} {walls[first] / wall:.2f}x" for w, wall in walls.items() if w != first))


if __name__ == "__main__":
    main()
