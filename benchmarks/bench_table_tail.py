"""What the one process of ``genre-trie names --wikidata --workers N`` does per name after the read.

The workers send the name table's lines already encoded (``name_table.encode_records``), in
msgpack batches of about 300 lines; the parent sorts them in runs, merges the runs and builds the
table (``NameTable.build_encoded``). That part does not get faster with more workers, so it
bounds a large machine. This benchmark feeds ``build_encoded`` N synthetic Wikipedia-title lines
the way the workers do (grouped by entity, ids ascending, 1-12 languages an entity, 60% of the
names shared by an entity's languages) and prints the CPU per name of each phase.

    OMP_NUM_THREADS=1 python benchmarks/bench_table_tail.py --names 5000000

One process, one thread; about 10 us and 170 bytes a name (5M names: under a minute, 0.9 GiB).
"""
import argparse
import os
import random
import resource
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import msgspec  # noqa: E402

import genre_fairseq.name_table as name_table  # noqa: E402

PHASES = ("_distinct_sorted", "_links", "_spool_trie", "_write_container")
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--names", type=int, default=2_000_000, help="name records to build (default 2,000,000)")
    p.add_argument("--chunk-size", type=int, default=1_000_000, help="lines per sorted run (the build's default)")
    p.add_argument("--tmp-dir", default=None, help="where the runs and the table go (default: a new temporary directory)")
    args = p.parse_args()
    if args.names < 1 or args.chunk_size < 1:
        p.error("--names and --chunk-size must be >= 1")
    if args.tmp_dir is not None and not os.path.isdir(args.tmp_dir):
        p.error(f"--tmp-dir {args.tmp_dir}: not a directory")
    started = time.perf_counter()
    data, total = batches(args.names)
    print(f"{total:,} lines in {len(data):,} batches, generated in {time.perf_counter() - started:.0f} s", flush=True)
    spent = dict.fromkeys(PHASES, 0.0)

    def timed(name, function):
        def run(*a, **k):
            t = time.process_time()
            try:
                return function(*a, **k)
            finally:
                spent[name] += time.process_time() - t
        return run

    for name in PHASES:
        setattr(name_table, name, timed(name, getattr(name_table, name)))
    decode = msgspec.msgpack.Decoder().decode
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        name_table.NameTable.build_encoded((decode(b) for b in data), os.path.join(tmp, "kb.names"), tmp_dir=tmp,
                                           chunk_size=args.chunk_size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    # _links pulls the sorted lines, which pulls the batches: its time holds receiving them, spilling and
    # merging the runs and the sorts, which are split out.
    links_only = spent["_links"] - spent["_distinct_sorted"]
    rows = [("sort of each run (dict.fromkeys + sorted)", spent["_distinct_sorted"]),
            ("receiving the batches, spilling and merging the runs, the pass over the sorted lines", links_only),
            ("marisa tries: build + each link's key id (_spool_trie)", spent["_spool_trie"]),
            ("writing the file", spent["_write_container"])]
    rows.append(("the rest (numpy arrays)", cpu - sum(t for _, t in rows)))
    print(f"\nNameTable.build_encoded of {total:,} lines ({args.chunk_size:,}-line runs): {wall:.1f} s wall, "
          f"{cpu:.1f} CPU s, **{cpu / total * 1e6:.2f} us per name**, peak RSS {peak:.2f} GiB "
          f"(the batches themselves included)\n")
    print("| phase | CPU s | us per name |\n| --- | ---: | ---: |")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / total * 1e6:.2f} |")


if __name__ == "__main__":
    main()
