"""Benchmark the name table: build speed, size on disk, load time, lookup speed, peak memory.

Builds a table of N synthetic (entity_id, lang, name) records (names of 5-40 characters,
about 1.3 names per entity, ~2% of names shared by two entities, ~5% repeated records),
then loads it in a fresh process and times ``ids`` and ``names`` lookups there, so that the
reported peak RSS of the load phase is the table's, not the builder's.

    python benchmarks/bench_name_table.py --n 1000000
"""
import argparse
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(HERE, os.pardir, "genre_fairseq", "name_table.py")
LANGS = ["en"] * 8 + ["de"] * 3 + ["fr"] * 3 + ["es", "it", "ru", "ja", "zh", "ar", "pt", "nl"]
SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "sh", "ber", "gu", "an", "dor", "el", "ist", "von", "de",
             "ma", "ri", "o", "ne", "stra", "ch", "é", "ü", "ß", "ło", "ский", "東京", "al-", "ø"]


def load_name_table_module():
    """The name_table module alone: importing the package would pull in fairseq and torch."""
    spec = importlib.util.spec_from_file_location("name_table", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (getrusage; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB from /proc (Linux), or -1 elsewhere.

    Used in the load phase: getrusage's ru_maxrss survives fork + exec on Linux, so a child
    reports the parent's peak; VmHWM belongs to the new address space only.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


def random_name(rng: random.Random) -> str:
    """A name of 5-40 characters made of words made of syllables."""
    target = rng.randint(5, 40)
    words, length = [], 0
    while length < target:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))).capitalize()
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:target].strip() or "X"


def records(n: int, seed: int, sample: dict):
    """About n distinct (entity_id, lang, name) records; fills ``sample`` with lookup keys."""
    rng = random.Random(seed)
    recent = []
    made = 0
    entity = 0
    while made < n:
        entity += 1
        qid = "Q%d" % entity
        for _ in range(2 if rng.random() < 0.3 else 1):
            if recent and rng.random() < 0.02:
                lang, name = rng.choice(recent)  # the same name for another entity: N-to-1
            else:
                lang, name = rng.choice(LANGS), random_name(rng)
            if len(recent) < 10000:
                recent.append((lang, name))
            else:
                recent[rng.randrange(10000)] = (lang, name)
            yield qid, lang, name
            made += 1
            if rng.random() < 0.05:
                yield qid, lang, name  # a repeated record: collapses
            if made % 7 == 0 and len(sample["keys"]) < sample["size"]:
                sample["keys"].append((lang, name))
                sample["entities"].append(qid)


def read_tsv(path: str):
    """Stream (entity_id, lang, name) records from a TSV file, as a knowledge-base reader would."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield tuple(line.rstrip("\n").split("\t"))


def load_phase(path: str, sample_path: str) -> None:
    """Run in a fresh process: time load and lookups, print one JSON line."""
    name_table = load_name_table_module()
    with open(sample_path, encoding="utf-8") as f:
        sample = json.load(f)
    keys = [tuple(k) for k in sample["keys"]]
    misses = [(lang, name + " (missing)") for lang, name in keys[: len(keys) // 10]]
    entities = sample["entities"]
    rss_before = proc_status_mb("VmRSS")

    start = time.perf_counter()
    table = name_table.NameTable.load(path)
    load_s = time.perf_counter() - start

    ids = table.ids
    start = time.perf_counter()
    found = sum(1 for lang, name in keys if ids(lang, name))
    ids_s = time.perf_counter() - start
    assert found == len(keys), (found, len(keys))
    start = time.perf_counter()
    missing = sum(1 for lang, name in misses if ids(lang, name))
    miss_s = time.perf_counter() - start
    names = table.names
    start = time.perf_counter()
    n_names = sum(len(names(e)) for e in entities)
    names_s = time.perf_counter() - start
    print(json.dumps({
        "load_ms": load_s * 1000, "ids_per_s": len(keys) / ids_s, "ids_miss_per_s": len(misses) / max(miss_s, 1e-9),
        "names_per_s": len(entities) / names_s, "names_per_entity": n_names / len(entities),
        "missing_found": missing, "rss_mb_before_load": rss_before, "rss_mb_after": proc_status_mb("VmRSS"),
        "peak_rss_mb": proc_status_mb("VmHWM"),
    }))


def main() -> None:
    """Build, then load and query in a subprocess; print a report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of distinct names (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic names")
    parser.add_argument("--lookups", type=int, default=100_000, help="number of lookups to time")
    parser.add_argument("--workdir", default=os.path.join(HERE, "_work"), help="where the table is written")
    parser.add_argument("--keep", action="store_true", help="keep the table file afterwards")
    parser.add_argument("--load-phase", nargs=2, metavar=("TABLE", "SAMPLE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_phase:
        load_phase(*args.load_phase)
        return

    name_table = load_name_table_module()
    os.makedirs(args.workdir, exist_ok=True)
    path = os.path.join(args.workdir, "bench.names")
    sample_path = os.path.join(args.workdir, "bench.sample.json")
    tsv_path = os.path.join(args.workdir, "bench.records.tsv")
    sample = {"keys": [], "entities": [], "size": args.lookups}
    with open(tsv_path, "w", encoding="utf-8") as f:  # generated first: generation is not build time
        for record in records(args.n, args.seed, sample):
            f.write("\t".join(record) + "\n")

    start = time.perf_counter()
    name_table.NameTable.build(read_tsv(tsv_path), path, meta={"source": "synthetic"})
    build_s = time.perf_counter() - start
    build_rss = peak_rss_mb()
    with open(sample_path, "w", encoding="utf-8") as f:
        json.dump({"keys": sample["keys"], "entities": sample["entities"]}, f, ensure_ascii=False)

    table = name_table.NameTable.load(path)
    size = os.path.getsize(path)
    sections = {s["name"]: s["nbytes"] for s in table._c.header["sections"]}
    dtypes = {s["name"]: s["dtype"] for s in table._c.header["sections"] if s["type"] == "array"}
    n_keys, n_entities, n_links = len(table), table.num_entities, table.num_links
    table.close()

    out = subprocess.run([sys.executable, __file__, "--load-phase", path, sample_path],
                         check=True, capture_output=True, text=True)
    load = json.loads(out.stdout.strip().splitlines()[-1])

    print(f"names (distinct lang,name): {n_keys:,}   entities: {n_entities:,}   links: {n_links:,}")
    print(f"build:   {build_s:.2f} s   {n_links / build_s:,.0f} names/s   peak RSS {build_rss:.0f} MiB")
    print(f"disk:    {size:,} bytes   {size / n_keys:.1f} bytes/name")
    print("         " + "   ".join(f"{k} {v:,}" + (f" ({dtypes[k]})" if k in dtypes else "") for k, v in sections.items()))
    print(f"load:    {load['load_ms']:.2f} ms (fresh process)")
    print(f"ids:     {load['ids_per_s']:,.0f} lookups/s (hits)   {load['ids_miss_per_s']:,.0f} lookups/s (misses)")
    print(f"names:   {load['names_per_s']:,.0f} lookups/s   ({load['names_per_entity']:.2f} names per entity)")
    print(f"load phase (fresh process): peak RSS {load['peak_rss_mb']:.0f} MiB; RSS {load['rss_mb_before_load']:.0f} MiB "
          f"before load (interpreter + numpy + marisa + sample), {load['rss_mb_after']:.0f} MiB after the lookups")
    if not args.keep:
        for p in (path, sample_path, tsv_path):
            os.remove(p)


if __name__ == "__main__":
    main()
