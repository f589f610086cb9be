"""Items/s and MB/s of the Wikidata dump reader on a synthetic dump with realistic item sizes.

    python benchmarks/bench_wikidata.py --items 20000 --repeats 3

Writes ``--dir/dump.json`` (and ``.json.gz``, ``.json.bz2``): a JSON-array dump of ``--items`` items
shaped like the real ones (labels and descriptions in ~25 languages, aliases in a few, 3-16 claims
with a qualifier and a reference, ~8 sitelinks, in the dump's key order; about 11 KB a line, the
full dump's ~1.5 TB / 110M items), 2% of them Wikimedia categories. Then reads each file with
``trie_tools.wikidata.iter_entities`` for each worker count, the variants interleaved, in a fresh
process each, and prints the medians.
"""
import argparse
import bz2
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import time

LANGS = ("en de fr es it nl pl ru ja zh pt sv uk ar fa ca cs fi hu ko tr he id vi ro no da sr bg el "
         "eo eu gl hy ka kk lt lv ms sk sl ta th ur uz").split()


def _statement(rng: random.Random, prop: str, target: str) -> dict:
    """One claim statement with a qualifier and a reference, as the dump writes them."""
    snak = {"snaktype": "value", "property": prop, "hash": "%040x" % rng.getrandbits(160),
            "datavalue": {"value": {"entity-type": "item", "numeric-id": int(target[1:]), "id": target},
                          "type": "wikibase-entityid"}, "datatype": "wikibase-item"}
    time = {"snaktype": "value", "property": "P580", "hash": "%040x" % rng.getrandbits(160),
            "datavalue": {"value": {"time": "+1990-01-01T00:00:00Z", "timezone": 0, "before": 0, "after": 0,
                                    "precision": 11, "calendarmodel": "http://www.wikidata.org/entity/Q1985727"},
                          "type": "time"}, "datatype": "time"}
    ref = {"hash": "%040x" % rng.getrandbits(160), "snaks": {"P143": [dict(snak, property="P143")]},
           "snaks-order": ["P143"]}
    return {"mainsnak": snak, "type": "statement", "id": f"Q{rng.randint(1, 10**8)}$%032x" % rng.getrandbits(128),
            "rank": "normal", "qualifiers": {"P580": [time]}, "qualifiers-order": ["P580"], "references": [ref]}


def make_item(rng: random.Random, n: int) -> dict:
    """A synthetic item of realistic size and shape."""
    qid = f"Q{n + 1}"
    langs = rng.sample(LANGS, rng.randint(5, 40))
    name = f"Name {n} " + "x" * rng.randint(3, 20)
    category = rng.random() < 0.02
    claims = {}
    for p in rng.sample(range(17, 3000), rng.randint(3, 16)):
        prop = f"P{p}"
        claims[prop] = [_statement(rng, prop, f"Q{rng.randint(1, 10**7)}")]
    claims["P31"] = [_statement(rng, "P31", "Q4167836" if category else "Q5")]
    return {
        "type": "item", "id": qid,
        "labels": {lang: {"language": lang, "value": f"{name} {lang}"} for lang in langs},
        "descriptions": {lang: {"language": lang, "value": f"description of {name} in {lang}"} for lang in langs},
        "aliases": {lang: [{"language": lang, "value": f"{name} alias {i}"} for i in range(rng.randint(1, 3))]
                    for lang in langs[:rng.randint(0, 5)]},
        "claims": claims,
        "sitelinks": {f"{lang}wiki": {"site": f"{lang}wiki", "title": f"{name} ({lang})", "badges": []}
                      for lang in langs[:rng.randint(0, 12)]},
        "lastrevid": rng.randint(10**8, 2 * 10**9),
    }


def write_dump(directory: str, items: int) -> list:
    """Write dump.json / .json.gz / .json.bz2; return their paths."""
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(0)
    path = os.path.join(directory, "dump.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for n in range(items):
            f.write(json.dumps(make_item(rng, n), ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if n + 1 < items else "\n")
        f.write("]\n")
    data = open(path, "rb").read()
    with gzip.open(path + ".gz", "wb", compresslevel=6) as f:
        f.write(data)
    with bz2.open(path + ".bz2", "wb", compresslevel=9) as f:
        f.write(data)
    return [path, path + ".gz", path + ".bz2"]


CHILD = r"""
import json, sys, time
from trie_tools import wikidata
from trie_tools.wikidata import WikidataStats, iter_entities
path, workers, parser, decompress = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
# worker processes are forked: they inherit the parser chosen here
if parser in ("json", "orjson"):  # the readers before msgspec: the whole line parsed
    wikidata._decode_item = None
if parser == "json":  # the reader before orjson
    wikidata._fast_loads = json.loads
import resource
def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
stats = WikidataStats()
start, parent, children = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
n = sum(1 for _ in iter_entities(path, workers=workers, stats=stats, decompress=decompress))
# the workers and the decompressor have ended and been waited for: their CPU time is in RUSAGE_CHILDREN
print(json.dumps({"seconds": time.perf_counter() - start, "kept": n, "read": stats.read,
                  "cpu_parent": cpu(resource.RUSAGE_SELF) - parent, "cpu_children": cpu(resource.RUSAGE_CHILDREN) - children}))
"""


def _busy(n: int) -> float:
    """A loop of pure Python arithmetic, timed: work that scales perfectly with free cores."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - start


def machine_scaling(workers: int, n: int = 10_000_000) -> float:
    """How much faster `workers` processes do `workers` loops than one process does one, on this machine now."""
    import multiprocessing

    one = _busy(n)
    with multiprocessing.get_context().Pool(workers) as pool:
        start = time.perf_counter()
        pool.map(_busy, [n] * workers)
        many = time.perf_counter() - start
    return workers * one / many


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default="/tmp/bench_wikidata", help="where the synthetic dump is written")
    p.add_argument("--items", type=int, default=20000, help="items in the synthetic dump")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--parsers", default="json,orjson,msgspec",
                   help="json (the stdlib reader), orjson (the whole line by orjson), msgspec (the reader now)")
    p.add_argument("--files", default="json,gz,bz2", help="which of the dump's files to read: json, gz, bz2")
    p.add_argument("--decompress", default="python,auto",
                   help="for .gz/.bz2: python (in-process) and/or auto (pigz/lbzip2 when on PATH)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant (interleaved); medians reported")
    a = p.parse_args()
    paths = [os.path.join(a.dir, "dump.json" + s) for s in ("", ".gz", ".bz2")]
    if not all(os.path.isfile(x) for x in paths):
        paths = write_dump(a.dir, a.items)
    raw = os.path.getsize(paths[0])  # the uncompressed size, whichever files are read
    files = a.files.split(",")
    paths = [x for x, kind in zip(paths, ("json", "gz", "bz2")) if kind in files]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    variants = [(x, int(w), j, d) for x in paths for w in a.workers.split(",") for j in a.parsers.split(",")
                for d in (a.decompress.split(",") if not x.endswith(".json") else ["python"])]
    runs = {v: [] for v in variants}
    for _ in range(a.repeats):
        for path, workers, parser, decompress in variants:
            out = subprocess.run([sys.executable, "-c", CHILD, path, str(workers), parser, decompress], env=env,
                                 capture_output=True, text=True, check=True)
            runs[(path, workers, parser, decompress)].append(json.loads(out.stdout.strip().splitlines()[-1]))
    counts = sorted({int(w) for w in a.workers.split(",") if int(w) > 1})
    scaling = ", ".join(f"{w} processes {machine_scaling(w):.2f}x" for w in counts)
    first = runs[variants[0]][0]
    items = first["read"]
    print(f"{items:,} items, {raw / 1e6:.1f} MB uncompressed ({raw / items / 1e3:.1f} KB/item), "
          f"{first['kept']:,} kept; medians of {a.repeats}; load average at the end {os.getloadavg()}")
    if scaling:  # the bound on any workers' speed-up: a shared machine may not give N free cores
        print(f"machine scaling of a pure-Python loop (after the runs): {scaling} the speed of 1")
    print("| file | workers | parser | decompression | wall s | items/s | MB/s | CPU s: parent + children "
          "| items per CPU s |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    medians = {}
    for v in variants:
        path, workers, parser, decompress = v
        s = statistics.median(r["seconds"] for r in runs[v])
        parent = statistics.median(r["cpu_parent"] for r in runs[v])
        children = statistics.median(r["cpu_children"] for r in runs[v])
        medians[v] = (s, parent, children)
        tool = "" if path.endswith(".json") else (decompress if decompress == "python" else "pigz/lbzip2")
        print(f"| {os.path.basename(path)} | {workers} | {parser} | {tool} | {s:.2f} | {items / s:,.0f} | "
              f"{raw / s / 1e6:.1f} | {parent:.2f} + {children:.2f} | {items / (parent + children):,.0f} |")
    print("\nRatios of items per CPU second (a shared machine's wall time says little) and wall time:")
    for v in variants:
        path, workers, parser, decompress = v
        base = (path, workers, "json", decompress)
        if parser != "json" and base in medians:
            s, parent, children = medians[v]
            s0, parent0, children0 = medians[base]
            print(f"- {os.path.basename(path)}, {workers} worker(s), {parser} ({decompress}) vs json: "
                  f"{(parent0 + children0) / (parent + children):.2f}x per CPU s, {s0 / s:.2f}x wall")
        one = (path, 1, parser, decompress)
        if workers > 1 and one in medians:
            print(f"- {os.path.basename(path)}, {parser} ({decompress}): {workers} workers vs 1: "
                  f"{medians[one][0] / medians[v][0]:.2f}x wall; parent CPU {medians[v][1]:.2f} s")


if __name__ == "__main__":
    main()
