"""Items/s of reading a Wikidata dump: the reader and ``genre-trie names --wikidata``, now and before.

    python benchmarks/bench_wikidata.py --files json --workers 1,2 --repeats 5 --write benchmarks/RESULTS.md

Writes ``--dir/dump.json`` (and ``.json.gz``, ``.json.bz2``): a JSON-array dump of ``--items`` items
shaped like the real ones (labels and descriptions in 5-40 languages, aliases in a few, 3-16 claims
with a qualifier and a reference, 0-12 sitelinks, in the dump's key order; about 14 KB a line, the
full dump's ~1.5 TB / 110M items), 2% of them Wikimedia categories.

Tasks, each run in a fresh process with the modules imported before the clock starts:
  read         ``trie_tools.wikidata.iter_entities`` building every name field (labels, aliases, sitelinks)
  read-titles  the same building the sitelinks only: what ``genre-trie names`` reads by default
  names        ``genre-trie names --wikidata DUMP --output kb.names --workers N --quiet`` (the whole
               command: reading, the name records, the name table), through ``trie_tools.cli.main``
for the code now and for the code before (``--before-commit``, default d9e9548: the reader the issue
measured, orjson and 4 MiB blocks; extracted with ``git archive`` from this repository into
``--dir/before``), variants interleaved, ``--repeats`` rounds, medians. *items per CPU s* counts the
CPU time of the process, its workers and its decompressor: the per-core figure, which does not
depend on the machine's load.
"""
import argparse
import bz2
import datetime
import gzip
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from typing import Optional

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


def _sitelinks(rng: random.Random, share: Optional[float]) -> int:
    """How many sitelinks an item has (drawn where the dict is built, so the default dump stays the same)."""
    if share is None:
        return rng.randint(0, 12)
    return rng.randint(1, 12) if rng.random() < share else 0


def make_item(rng: random.Random, n: int, sitelink_share: Optional[float] = None) -> dict:
    """A synthetic item of realistic size and shape; with `sitelink_share`, only that share of the
    items has Wikipedia sitelinks (1-12), the others none."""
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
                      for lang in langs[:_sitelinks(rng, sitelink_share)]},
        "lastrevid": rng.randint(10**8, 2 * 10**9),
    }


def write_dump(directory: str, items: int, sitelink_share: Optional[float] = None) -> list:
    """Write dump.json / .json.gz / .json.bz2; return their paths."""
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(0)
    path = os.path.join(directory, "dump.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for n in range(items):
            f.write(json.dumps(make_item(rng, n, sitelink_share), ensure_ascii=False, separators=(",", ":")))
            f.write(",\n" if n + 1 < items else "\n")
        f.write("]\n")
    data = open(path, "rb").read()
    with gzip.open(path + ".gz", "wb", compresslevel=6) as f:
        f.write(data)
    with bz2.open(path + ".bz2", "wb", compresslevel=9) as f:
        f.write(data)
    return [path, path + ".gz", path + ".bz2"]


CHILD = r"""
import json, os, resource, shutil, sys, tempfile, time
tree, task, path, workers, decompress = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, tree)
import trie_tools, trie_tools.cli, trie_tools.names, trie_tools.wikidata, genre_fairseq.name_table
from trie_tools.wikidata import WikidataStats, iter_entities
assert os.path.dirname(os.path.dirname(os.path.abspath(trie_tools.__file__))) == os.path.abspath(tree), trie_tools.__file__
def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
out = tempfile.mkdtemp(prefix="bench-wd-")
kwargs = {} if decompress == "default" else {"decompress": decompress}
stats = WikidataStats()
start, parent, children = time.perf_counter(), cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
if task == "names":
    code = trie_tools.cli.main(["names", "--wikidata", path, "--output", os.path.join(out, "kb.names"),
                                "--workers", str(workers), "--quiet"])
    assert code == 0, code
    kept = None
else:
    if task == "read-titles":
        kwargs["fields"] = ["sitelinks"]
    kept = sum(1 for _ in iter_entities(path, workers=workers, stats=stats, **kwargs))
# the workers and the decompressor have ended and been waited for: their CPU time is in RUSAGE_CHILDREN
result = {"seconds": time.perf_counter() - start, "kept": kept, "read": stats.read,
          "cpu_parent": cpu(resource.RUSAGE_SELF) - parent, "cpu_children": cpu(resource.RUSAGE_CHILDREN) - children}
if task == "names":
    with open(os.path.join(out, "kb.names"), "rb") as f:
        result["digest"] = __import__("hashlib").sha256(f.read()).hexdigest()
shutil.rmtree(out)
print(json.dumps(result))
"""

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


PART = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from trie_tools import wikidata
path, part, parts = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
size = os.path.getsize(path)
spec = (frozenset(wikidata.WIKIMEDIA_INTERNAL_CLASSES), None, frozenset(["sitelinks"]), wikidata.DEFAULT_BLOCK_BYTES)
start, stop, step = size * part // parts, size * (part + 1) // parts, wikidata.RANGE_BYTES
t, c = time.perf_counter(), time.process_time()
for begin in range(start, stop, step):
    wikidata._parse_range(path, begin, min(stop, begin + step), *spec)
print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c}))
"""


def independent_parts(path: str, parts: int, env: dict) -> float:
    """Wall seconds of the sitelinks-only parse of `path` cut into `parts` processes that run at once with
    no communication (the slowest one's): the best any reader with `parts` workers can do here now."""
    procs = [subprocess.Popen([sys.executable, "-c", PART, REPO, path, str(k), str(parts)], env=env,
                              stdout=subprocess.PIPE, text=True) for k in range(parts)]
    outs = [json.loads(proc.communicate()[0]) for proc in procs]
    if any(proc.returncode for proc in procs):
        sys.exit("bench_wikidata: an independent part failed")
    return max(out["seconds"] for out in outs)


def before_tree(directory: str, commit: str) -> str:
    """``trie_tools`` and ``genre_fairseq`` at `commit`, extracted once into `directory`/before."""
    tree = os.path.join(directory, "before")
    marker = os.path.join(tree, ".commit")
    if os.path.exists(marker) and open(marker).read() == commit:
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", REPO, "archive", commit, "trie_tools", "genre_fairseq"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    with open(marker, "w") as f:
        f.write(commit)
    return tree


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
    p.add_argument("--sitelink-share", type=float, metavar="P",
                   help="only this share of the items has Wikipedia sitelinks (1-12 each); default: every item "
                        "0-12 (about 6 on average, 10x the real dump's ~0.6 per item: ~64M articles / ~110M items)")
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--tasks", default="read,read-titles,names", help="of read, read-titles, names")
    p.add_argument("--before-commit", default="d9e9548", help="the code to compare with ('' for none)")
    p.add_argument("--files", default="json", help="which of the dump's files to read: json, gz, bz2")
    p.add_argument("--decompress", default="python,auto",
                   help="for .gz/.bz2 read tasks: python (in-process) and/or auto (pigz/lbzip2 when on PATH)")
    p.add_argument("--repeats", type=int, default=5, help="runs per variant (interleaved); medians reported")
    p.add_argument("--write", metavar="RESULTS.md", help="replace the marked section of this file with the results")
    p.add_argument("--section", default="bench_wikidata_run",
                   help="the section's marker: <!-- NAME:begin --> ... <!-- NAME:end --> (default %(default)s)")
    a = p.parse_args()
    if a.sitelink_share is not None and not 0 <= a.sitelink_share <= 1:
        p.error(f"--sitelink-share must be between 0 and 1, got {a.sitelink_share}")
    if a.items < 1 or a.repeats < 1:
        p.error("--items and --repeats must be at least 1")
    paths = [os.path.join(a.dir, "dump.json" + s) for s in ("", ".gz", ".bz2")]
    # A dump already in --dir is reused only if it was written with the same --items and --sitelink-share.
    params_path = os.path.join(a.dir, "dump.params.json")
    params = {"items": a.items, "sitelink_share": a.sitelink_share}
    written = json.load(open(params_path)) if os.path.isfile(params_path) else None
    if written != params or not all(os.path.isfile(x) for x in paths):
        paths = write_dump(a.dir, a.items, a.sitelink_share)
        with open(params_path, "w") as f:
            json.dump(params, f)
    raw = os.path.getsize(paths[0])  # the uncompressed size, whichever files are read
    files = a.files.split(",")
    paths = [x for x, kind in zip(paths, ("json", "gz", "bz2")) if kind in files]
    trees = [("now", REPO)] + ([("before", before_tree(a.dir, a.before_commit))] if a.before_commit else [])
    tasks = a.tasks.split(",")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    variants = []
    for path in paths:
        for task in tasks:
            for code, tree in trees:
                if task == "read-titles" and code == "before":
                    continue  # the reader before always built every field
                for w in a.workers.split(","):
                    modes = ["default"]
                    if code == "now" and task != "names" and not path.endswith(".json"):
                        modes = a.decompress.split(",")
                    variants += [(path, task, code, tree, int(w), d) for d in modes]
    started = datetime.datetime.now(datetime.timezone.utc)
    loads = [os.getloadavg()]
    runs = {v: [] for v in variants}
    bound: dict = {}  # parts -> wall seconds of the parse in that many independent processes
    for _ in range(a.repeats):
        for v in variants:
            path, task, code, tree, workers, decompress = v
            out = subprocess.run([sys.executable, "-c", CHILD, tree, task, path, str(workers), decompress],
                                 env=env, capture_output=True, text=True, cwd=a.dir)
            if out.returncode:
                sys.exit(f"bench_wikidata: {task} ({code}, {workers} workers) failed:\n{out.stderr[-2000:]}")
            runs[v].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for parts in [1] + [int(w) for w in a.workers.split(",") if int(w) > 1]:
            bound.setdefault(parts, []).append(independent_parts(paths[0], parts, env))
        loads.append(os.getloadavg())
    digests = {r["digest"] for v in variants for r in runs[v] if "digest" in r}
    counts = sorted({int(w) for w in a.workers.split(",") if int(w) > 1})
    scaling = ", ".join(f"{w} processes {machine_scaling(w):.2f}x" for w in counts)
    with open(os.path.join(a.dir, "dump.json"), "rb") as f:
        items = sum(1 for line in f if line.startswith(b"{"))
    lines = [f"Command: `python benchmarks/bench_wikidata.py {' '.join(sys.argv[1:])}`; started "
             f"{started:%Y-%m-%d %H:%M} UTC; OMP_NUM_THREADS=1; {os.cpu_count()} cores; load average (1 min) "
             f"{min(l[0] for l in loads):.2f}-{max(l[0] for l in loads):.2f} during the runs.",
             "",
             f"Dump: {items:,} items, {raw / 1e6:.1f} MB uncompressed ({raw / items / 1e3:.1f} KB a line); "
             f"medians of {a.repeats} interleaved runs, each in a fresh process. "
             + (f"Machine scaling of a pure-Python loop (after the runs): {scaling} the speed of 1. " if scaling else "")
             + "".join(f"The same sitelinks-only parse cut into {k} processes that share nothing (no reader "
                       f"machinery: the bound on any {k}-worker reader here) ran at "
                       f"{statistics.median(bound[1]) / statistics.median(bound[k]):.2f}x the speed of 1 process "
                       f"(medians {statistics.median(bound[1]):.2f} s / {statistics.median(bound[k]):.2f} s). "
                       for k in sorted(bound) if k > 1)
             + ("The name tables written now and before are byte-identical." if len(digests) == 1 else
                f"Name tables differ between runs ({len(digests)} digests)." if digests else ""),
             "",
             "| file | task | code | workers | decompression | wall s | items/s | MB/s | CPU s: parent + children "
             "| items per CPU s |",
             "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    med = {}
    for v in variants:
        path, task, code, tree, workers, decompress = v
        s = statistics.median(r["seconds"] for r in runs[v])
        parent = statistics.median(r["cpu_parent"] for r in runs[v])
        children = statistics.median(r["cpu_children"] for r in runs[v])
        cpu_all = statistics.median(r["cpu_parent"] + r["cpu_children"] for r in runs[v])
        med[v[:3] + v[4:]] = (s, cpu_all, parent)
        tool = "" if path.endswith(".json") else {"default": "default", "python": "in process"}.get(decompress, "pigz/lbzip2")
        lines.append(f"| {os.path.basename(path)} | {task} | {code} | {workers} | {tool} | {s:.2f} | {items / s:,.0f} | "
                     f"{raw / s / 1e6:.1f} | {parent:.2f} + {children:.2f} | {items / cpu_all:,.0f} |")
    lines += ["", "Ratios (medians; per CPU s = items per CPU second):"]
    for key, (s, cpu_all, parent) in med.items():
        path, task, code, workers, decompress = key
        name = os.path.basename(path)
        before = (path, "read" if task == "read-titles" else task, "before", workers, "default")
        if code == "now" and before in med:
            lines.append(f"- {name}, {task} now vs {before[1]} before, {workers} worker(s): "
                         f"**{med[before][1] / cpu_all:.2f}x per CPU s**, {med[before][0] / s:.2f}x wall")
        one = (path, task, code, 1, decompress)
        if workers > 1 and one in med:
            lines.append(f"- {name}, {task} ({code}): {workers} workers vs 1: **{med[one][0] / s:.2f}x wall**, "
                         f"parent CPU {parent:.2f} s")
    text = "\n".join(lines)
    print(text)
    if a.write:
        old = open(a.write, encoding="utf-8").read() if os.path.exists(a.write) else "# Benchmark results\n"
        begin, end = f"<!-- {a.section}:begin -->", f"<!-- {a.section}:end -->"
        block = f"{begin}\n{text}\n{end}"
        if begin in old:
            new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
        else:
            new = old.rstrip("\n") + "\n\n" + block + "\n"
        with open(a.write, "w", encoding="utf-8") as f:
            f.write(new)


if __name__ == "__main__":
    main()
