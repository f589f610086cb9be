"""Building a prefix tree from a large knowledge base: speed and peak memory per stage, sizes, lookups.

Stages, each a ``genre-trie`` subprocess whose wall time and peak memory (sum of the RSS of the
process and all its descendants, sampled every 0.2 s) are measured:

  reading              genre-trie names --tsv KB.tsv --output kb.names
  encoding + compiling genre-trie build --names kb.names --format name_lang --sentencepiece ...

on a synthetic KB of N names (``benchmarks/make_names.py``), with a SentencePiece model trained
here on a sample of the identifiers and a dict.txt that emulates mGENRE's 256k dictionary: the
model's pieces sit at seeded random positions among filler symbols, so token ids span the real
range (4-byte tokens, as with the real model).

Then, side by side with the reference's compact format (a ``marisa_trie.Trie`` of the same token
sequences written as characters, token i -> chr(i) if i < 55000 else chr(i + 10000)):
bytes per name of the tree, the name table and the marisa trie; and the time of a lookup
("which tokens may follow this prefix") at several depths: the reference's enumeration of
``trie.keys(prefix)``, ``PrefixTree.allowed`` in Python, and the batched tensor path of the beam
search (``advance`` + ``candidates`` for a batch of hypotheses), with a check that all return
the same sets.

    python benchmarks/bench_build.py --names 200000                 # quick check
    python benchmarks/bench_build.py --work /tmp/bb --write benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GB = 1 << 30
MB = 1 << 20
FILLER = "madeupword%06d"


# ----------------------------------------------------------------------------- memory of a process tree


def _children_by_task(pid: int) -> Optional[List[int]]:
    """Children of pid from /proc/<pid>/task/*/children (needs CONFIG_PROC_CHILDREN), else None."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: List[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended
            return None  # the kernel has no children files
        except OSError:
            continue
    return out


def _children_by_scan() -> Dict[int, List[int]]:
    """ppid -> children, from every /proc/<pid>/stat."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed RSS (and PSS) of a process and its descendants every ``interval`` seconds."""

    method = None  # "children files" or "/proc scan", decided on first use

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.t0 = time.perf_counter()
        self.peak_rss = self.peak_pss = 0
        self.procs_at_peak = 0
        self.max_procs = 0
        self.timeline: List[tuple] = []  # (seconds, rss bytes, processes)
        self._stop_event = threading.Event()
        self.min_available = 0  # bytes; when MemAvailable falls under it, the stage is killed
        self.stopped: Optional[str] = None
        self.min_seen_available = _mem_available()

    def pids(self) -> List[int]:
        if TreeMemory.method != "/proc scan":
            found, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                found.append(pid)
                kids = _children_by_task(pid)
                if kids is None:
                    TreeMemory.method = "/proc scan"
                    break
                todo.extend(kids)
            else:
                TreeMemory.method = "children files"
                return found
        children = _children_by_scan()
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, ()))
        return found

    def sample(self) -> None:
        if self.min_available and _mem_available() < self.min_available and self.stopped is None:
            self.stopped = f"MemAvailable fell under {self.min_available / GB:.1f} GiB at {time.perf_counter() - self.t0:.0f} s"
            try:
                os.killpg(self.pid, 9)  # the stage runs in its own session: this ends it and its workers only
            except OSError:
                pass
        pids = self.pids()
        rss = sum(_status_kb(p, "VmRSS:") for p in pids) * 1024
        pss = sum(_pss_kb(p) for p in pids) * 1024
        self.timeline.append((time.perf_counter() - self.t0, rss, len(pids)))
        self.min_seen_available = min(self.min_seen_available, _mem_available())
        if rss > self.peak_rss:
            self.peak_rss, self.procs_at_peak = rss, len(pids)
        self.peak_pss = max(self.peak_pss, pss)
        self.max_procs = max(self.max_procs, len(pids))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak_between(self, a: float, b: float) -> int:
        return max((r for t, r, _ in self.timeline if a <= t <= b), default=0)


def _mem_available() -> int:
    """MemAvailable of the machine, bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_stage(label: str, cmd: List[str], log_dir: str, min_available: float = 0, allow_stop: bool = False) -> dict:
    """Run cmd; wall time, peak tree RSS/PSS, ru_maxrss (wait4), and its output lines with timestamps.

    With ``min_available`` (bytes), the stage is killed when the machine's MemAvailable falls under it;
    with ``allow_stop`` such a stop is returned (``result["stopped"]``) instead of ending the benchmark.
    """
    print(f"[{label}] {' '.join(cmd)}", flush=True)
    lines: List[tuple] = []
    busy0 = _busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=log_dir,
                            start_new_session=True)
    monitor = TreeMemory(proc.pid)
    monitor.t0 = t0
    monitor.min_available = min_available
    monitor.start()

    def reader(stream, name):
        for line in stream:
            lines.append((time.perf_counter() - t0, name, line.rstrip("\n")))

    readers = [threading.Thread(target=reader, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=reader, args=(proc.stderr, "err"), daemon=True)]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    busy = _busy_seconds() - busy0
    proc.returncode = os.waitstatus_to_exitcode(status)
    monitor.stop()
    for r in readers:
        r.join()
    with open(os.path.join(log_dir, f"{label}.log"), "w", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        for t, name, text in lines:
            f.write(f"{t:9.2f} {name} {text}\n")
        f.write("# memory timeline: seconds, tree RSS MiB, processes\n")
        for t, rss, n in monitor.timeline:
            f.write(f"{t:9.2f} {rss / MB:10.1f} {n}\n")
    if monitor.stopped and allow_stop:
        print(f"[{label}] stopped: {monitor.stopped}", flush=True)
    elif proc.returncode != 0:
        tail = "\n".join(text for _, _, text in lines[-20:])
        raise SystemExit(f"[{label}] failed with exit code {proc.returncode}:\n{tail}"
                         + (f"\n({monitor.stopped})" if monitor.stopped else ""))
    cpu = usage.ru_utime + usage.ru_stime  # the process and its reaped children (the workers)
    result = {"wall": wall, "cpu": cpu, "other_load": max(0.0, busy - cpu) / wall, "stopped": monitor.stopped,
              "min_available": monitor.min_seen_available,
              "peak_rss": monitor.peak_rss, "peak_pss": monitor.peak_pss, "procs_at_peak": monitor.procs_at_peak, "max_procs": monitor.max_procs,
              "ru_maxrss": usage.ru_maxrss * 1024, "lines": lines, "monitor": monitor}
    print(f"[{label}] {wall:.1f} s ({cpu:.1f} s CPU; other load on the machine {result['other_load']:.2f} cores), "
          f"peak tree RSS {monitor.peak_rss / GB:.2f} GiB "
          f"(PSS {monitor.peak_pss / GB:.2f} GiB, {monitor.procs_at_peak} processes), "
          f"ru_maxrss {result['ru_maxrss'] / GB:.2f} GiB", flush=True)
    return result


def json_line(stage: dict) -> dict:
    """The last stdout line of a phase subprocess, as JSON."""
    out = [text for _, name, text in stage["lines"] if name == "out" and text.startswith("{")]
    return json.loads(out[-1])


# ----------------------------------------------------------------------------- phase: SentencePiece + dict


def phase_spm(args) -> None:
    """Train a SentencePiece model on a sample of identifiers; write a 256k-entry dict.txt."""
    import sentencepiece as spm

    rng = np.random.default_rng(args.seed + 1)
    with open(args.tsv, "rb") as f:
        n_lines = sum(1 for _ in f)
    take = np.zeros(n_lines, dtype=bool)
    take[rng.choice(n_lines, size=min(args.spm_sample, n_lines), replace=False)] = True
    corpus = os.path.join(args.work, "spm_corpus.txt")
    with open(args.tsv, encoding="utf-8") as f, open(corpus, "w", encoding="utf-8") as out:
        for keep, line in zip(take.tolist(), f):
            if keep:
                _, lang, name = line.rstrip("\n").split("\t")
                out.write(f"{name} >> {lang}\n")
    prefix = os.path.join(args.work, "spm")
    t0 = time.perf_counter()
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=prefix, vocab_size=args.vocab, model_type="unigram",
                                   character_coverage=1.0, hard_vocab_limit=False, num_threads=2, minloglevel=2,
                                   input_sentence_size=args.spm_sample, shuffle_input_sentence=True)
    train_s = time.perf_counter() - t0
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))]
    if len(pieces) > args.dict_size:
        raise SystemExit(f"{len(pieces)} pieces do not fit in a {args.dict_size}-entry dictionary")
    slots = np.sort(rng.choice(args.dict_size, size=len(pieces), replace=False))
    order = np.arange(len(pieces)) if args.dict_layout == "ranked" else rng.permutation(len(pieces))
    symbols = [FILLER % i for i in range(args.dict_size)]
    taken = set(pieces)
    assert not any(s in taken for s in symbols), "a filler symbol collides with a piece"
    for slot, piece in zip(slots.tolist(), order.tolist()):
        symbols[slot] = pieces[piece]
    with open(os.path.join(args.work, "dict.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{s} 1\n" for s in symbols))
    print(json.dumps({"pieces": len(pieces), "train_s": train_s, "sentences": int(take.sum()),
                      "dict_size": args.dict_size, "max_piece_id": int(slots.max()) + 4}))


# ----------------------------------------------------------------------------- phase: marisa trie


def char_codes(tokens: np.ndarray) -> np.ndarray:
    """The reference's token -> character mapping: i if i < 55000 else i + 10000 (skips surrogates)."""
    t = tokens.astype("<u4")
    return t + (t >= 55000).astype("<u4") * 10000


def prefix_counts(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, prefixes: np.ndarray) -> np.ndarray:
    """Sequences that begin with each row of ``prefixes`` (k x d), the sequences in lexicographic order.

    Two vectorized binary searches over the sequences: the first whose d-token prefix is >= the
    row, and the first whose prefix is > it (a shorter sequence sorts before its extensions).
    """
    k, d = prefixes.shape
    n = lengths.size

    def cmp(idx: np.ndarray) -> np.ndarray:  # sign of (first d tokens of sequence idx) - prefix
        out = np.zeros(k, dtype=np.int64)
        for j in range(d):
            undecided = out == 0
            have = lengths[idx] > j
            tok = np.where(have, flat[np.minimum(starts[idx] + j, flat.size - 1)], -1)
            out = np.where(undecided, np.sign(tok - prefixes[:, j]), out)
        return out

    def search(strict: bool) -> np.ndarray:
        lo, hi = np.zeros(k, dtype=np.int64), np.full(k, n, dtype=np.int64)
        while (lo < hi).any():
            active = lo < hi
            mid = (lo + hi) // 2
            c = cmp(np.minimum(mid, n - 1))
            right = active & ((c <= 0) if strict else (c < 0))
            lo = np.where(right, mid + 1, lo)
            hi = np.where(active & ~right, mid, hi)
        return lo

    return search(True) - search(False)


def phase_marisa(args) -> None:
    """Expand the tree into its sequences, build + save the marisa trie of them, sample lookup prefixes."""
    import marisa_trie

    from genre_fairseq.prefix_tree import PrefixTree

    t0 = time.perf_counter()
    tree = PrefixTree.load(args.trie)
    flat, lengths = tree.to_arrays()  # lexicographic order
    starts = np.cumsum(lengths) - lengths
    setup_s = time.perf_counter() - t0

    # Lookup samples: prefixes of `depth` tokens of sequences longer than that, uniform over sequences;
    # *below* = the sequences under each prefix (what the reference enumerates).
    rng = np.random.default_rng(args.seed + 2)
    samples: Dict[str, np.ndarray] = {}
    for d in args.depths:
        pool = np.flatnonzero(lengths > d)
        pick = rng.choice(pool, size=min(args.samples, pool.size), replace=False)
        rows = flat[starts[pick][:, None] + np.arange(d)]
        samples[f"d{d}"] = rows
        samples[f"below{d}"] = prefix_counts(flat, starts, lengths, rows)

    gen_s = 0.0
    by_length = np.argsort(lengths, kind="stable")
    bounds = np.searchsorted(lengths[by_length], np.arange(int(lengths.max()) + 2))

    def keys():
        nonlocal gen_s
        for g in range(1, bounds.size - 1):
            for a in range(int(bounds[g]), int(bounds[g + 1]), args.chunk):
                t = time.perf_counter()
                idx = by_length[a: min(a + args.chunk, int(bounds[g + 1]))]
                seqs = flat[starts[idx][:, None] + np.arange(g)]
                strings = np.frombuffer(char_codes(seqs).tobytes(), dtype="<U%d" % g).tolist()
                del seqs
                gen_s += time.perf_counter() - t
                yield from strings

    rss_before = _status_kb(os.getpid(), "VmRSS:") * 1024
    t0 = time.perf_counter()
    trie = marisa_trie.Trie(keys())
    build_s = time.perf_counter() - t0 - gen_s
    hwm = _status_kb(os.getpid(), "VmHWM:") * 1024
    t0 = time.perf_counter()
    trie.save(args.marisa)
    save_s = time.perf_counter() - t0
    np.savez(args.samples_file, **samples)
    print(json.dumps({"keys": len(trie), "sequences": len(tree), "setup_s": setup_s, "keygen_s": gen_s,
                      "build_s": build_s, "save_s": save_s, "bytes": os.path.getsize(args.marisa),
                      "rss_before_build": rss_before, "hwm_after_build": hwm,
                      "mean_len": float(lengths.mean()), "max_len": int(lengths.max())}))


# ----------------------------------------------------------------------------- phase: lookups


class ReferenceTrie:
    """The reference's MarisaTrie lookup (GENRE ``genre/trie.py``): enumerate keys, collect next characters."""

    def __init__(self, path: str, max_token_id: int) -> None:
        import marisa_trie

        self.trie = marisa_trie.Trie()
        self.trie.load(path)
        self.int2char = [chr(i) for i in range(min(max_token_id, 55000))] + (
            [chr(i) for i in range(65000, max_token_id + 10000)] if max_token_id >= 55000 else [])
        self.char2int = {self.int2char[i]: i for i in range(max_token_id)}

    def get(self, prefix_sequence: List[int]) -> List[int]:
        key = "".join([self.int2char[i] for i in prefix_sequence])
        return list({self.char2int[e[len(key)]] for e in self.trie.keys(key) if len(e) > len(key)})


def phase_lookup(args) -> None:
    """Time the three lookups per depth on the same sampled prefixes; check they agree."""
    import torch

    from genre_fairseq.prefix_tree import PrefixTree

    torch.set_num_threads(1)
    tree = PrefixTree.load(args.trie)
    ref = ReferenceTrie(args.marisa, args.max_token_id)
    data = np.load(args.samples_file)
    results = []
    for d in args.depths:
        prefixes = data[f"d{d}"]
        below = data[f"below{d}"]
        plist = prefixes.tolist()
        nodes = np.array([tree.node(p) for p in plist], dtype=np.int64)
        assert (nodes > 0).all(), "a sampled prefix is not in the tree"

        # (a) the reference, until the time budget runs out
        ref_sets, t_ref = [], 0.0
        for p in plist:
            t = time.perf_counter()
            r = ref.get(p)
            t_ref += time.perf_counter() - t
            ref_sets.append(set(r))
            if t_ref > args.ref_budget:
                break
        k = len(ref_sets)
        # Ours are timed on all the samples (the reference on a random subset of them when its budget
        # runs out: the samples are shuffled) and checked against the reference where it ran.
        # (b) PrefixTree.allowed, best of reps
        t_py = float("inf")
        for _ in range(args.reps):
            t = time.perf_counter()
            ours = [tree.allowed(p) for p in plist]
            t_py = min(t_py, time.perf_counter() - t)
        same_py = sum(set(o) == r for o, r in zip(ours, ref_sets))
        # (c) batched, states at depth d - 1 carried from the previous step (as in the beam search):
        # (c1) one advance along the last token + child_ranges: each hypothesis's allowed tokens are
        #      those of edges start .. start + count - 1 (tree.edge_tokens);
        # (c2) as PrefixTreeSearch.step's sparse mode: also the padded N x K candidate matrix of the
        #      distinct nodes (K = the widest fan-out in the batch).
        pt = torch.from_numpy(prefixes)
        parents = tree.walk(pt[:, :-1])
        last = pt[:, -1].contiguous()
        n = len(plist)
        batches = [(parents[s: s + args.batch], last[s: s + args.batch]) for s in range(0, n, args.batch)]

        def lookup():
            out = []
            for ps, lt in batches:
                out.append(tree.child_ranges(tree.advance(ps, lt)))
            return out

        def candidates():
            out = []
            for ps, lt in batches:
                states = tree.advance(ps, lt)
                tree.child_ranges(states)
                uniq, which = torch.unique(states, return_inverse=True)
                tok, _, valid = tree.candidates(uniq, min_width=1)
                out.append((tok, valid, which))
            return out

        timings = {}
        for name, fn in (("c1", lookup), ("c2", candidates)):
            best = float("inf")
            for rep in range(args.reps + 1):  # the first is a warm-up
                t = time.perf_counter()
                result = fn()
                if rep:
                    best = min(best, time.perf_counter() - t)
            timings[name] = (best, result)
        rows = [(a, c) for start, count in timings["c1"][1] for a, c in zip(start.tolist(), count.tolist())]
        same_c1 = sum(set(tree.edge_tokens(torch.arange(a, a + c)).tolist()) == r for (a, c), r in zip(rows, ref_sets))
        got = [set(tok[w][valid[w]].tolist()) for tok, valid, which in timings["c2"][1] for w in which.tolist()]
        same_c2 = sum(g == r for g, r in zip(got, ref_sets))
        fanout = np.array([len(r) for r in ref_sets])
        results.append({"depth": d, "samples": int(prefixes.shape[0]), "timed": k,
                        "mean_fanout": float(fanout.mean()), "max_fanout": int(fanout.max()),
                        "mean_below": float(below[:k].mean()), "max_below": int(below[:k].max()),
                        "ref_us": t_ref / k * 1e6, "py_us": t_py / n * 1e6, "c1_us": timings["c1"][0] / n * 1e6,
                        "c2_us": timings["c2"][0] / n * 1e6, "same_py": int(same_py), "same_c1": int(same_c1),
                        "same_c2": int(same_c2)})
        r = results[-1]
        print(f"depth {d}: {k} prefixes, reference {r['ref_us']:.1f} us, allowed() {r['py_us']:.1f} us, "
              f"batched {r['c1_us']:.2f} / with candidates {r['c2_us']:.2f} us/hypothesis; same sets "
              f"{same_py}/{k}, {same_c1}/{k}, {same_c2}/{k}", file=sys.stderr, flush=True)
    print(json.dumps({"lookups": results, "batch": args.batch}))


# ----------------------------------------------------------------------------- driver


def parse_build_summary(lines: List[tuple]) -> dict:
    out: dict = {}
    for t, _, text in lines:
        m = re.search(r"encoded ([\d,]+) of ([\d,]+) identifiers, ([\d,]+) failed", text)
        if m:
            out["encoded"], out["identifiers"], out["failed"] = (int(g.replace(",", "")) for g in m.groups())
            out["t_encoded"] = t
        m = re.search(r"([\d,]+) sequences, ([\d,]+) nodes, ([\d,]+) bytes of arrays; ([\d,]+) names/s encoding, "
                      r"([\d,]+) names/s compiling, ([\d.]+) s in all", text)
        if m:
            vals = [g.replace(",", "") for g in m.groups()]
            out.update(sequences=int(vals[0]), nodes=int(vals[1]), array_bytes=int(vals[2]),
                       encode_rate=int(vals[3]), compile_rate=int(vals[4]), build_total_s=float(vals[5]))
            out["t_done"] = t
    if "encode_rate" not in out:
        raise SystemExit("could not parse the summary of genre-trie build:\n" + "\n".join(x[2] for x in lines))
    return out


def parse_names_summary(lines: List[tuple]) -> dict:
    for _, _, text in lines:
        m = re.search(r": ([\d,]+) \(lang, name\) pairs, ([\d,]+) entities, ([\d,]+) bytes, ([\d.]+) s", text)
        if m:
            pairs, ents, size = (int(g.replace(",", "")) for g in m.groups()[:3])
            return {"pairs": pairs, "entities": ents, "bytes": size, "seconds": float(m.group(4))}
    raise SystemExit("could not parse the summary of genre-trie names:\n" + "\n".join(x[2] for x in lines))


def machine() -> str:
    import torch

    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return (f"{cpu or platform.machine()}, {os.cpu_count()} cores, {mem / GB:.0f} GiB RAM, no GPU; "
            f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
            f"sentencepiece {_version('sentencepiece')}, marisa-trie {_version('marisa-trie')}")


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def write_section(path: str, text: str) -> None:
    begin, end = "<!-- bench_build:begin -->", "<!-- bench_build:end -->"
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


# ----------------------------------------------------------------------------- scale series: reading + building at several sizes

SCALE_BEGIN, SCALE_END = "<!-- bench_build_scale:begin -->", "<!-- bench_build_scale:end -->"


def _head(src: str, dst: str, n: int) -> None:
    """The first n lines of src into dst."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)


def _fit(xs: List[float], ys: List[float]) -> tuple:
    """Least-squares line y = a + b x (a, b); with one point, through the origin."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    b, a = np.polyfit(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), 1)
    return float(a), float(b)


def _stage_record(st: dict) -> dict:
    keep = ("wall", "cpu", "other_load", "peak_rss", "peak_pss", "procs_at_peak", "ru_maxrss", "stopped", "min_available")
    return {k: st[k] for k in keep}


def run_scale(args) -> None:
    """Reading + encoding/compiling at each size of --scale; one KB generated at the largest size (in chunks),
    the smaller ones are its first N lines; outputs deleted after each size. Results go to scale.json."""
    sizes = sorted(int(x) for x in args.scale.split(","))
    work = args.work or tempfile.mkdtemp(prefix="bench_build_scale.", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    me = [sys.executable, os.path.abspath(__file__)]
    genre_trie = os.path.join(os.path.dirname(sys.executable), "genre-trie")
    guard = args.min_available_gb * GB
    out_json = os.path.join(work, "scale.json")
    res = json.load(open(out_json)) if os.path.exists(out_json) else {}
    res.update(started=f"{datetime.datetime.now():%Y-%m-%d %H:%M}", machine=machine(), sizes=sizes,
               gen_chunk=args.gen_chunk, seed=args.seed, workers=args.workers)
    res.setdefault("runs", {})

    def save():
        with open(out_json, "w") as f:
            json.dump(res, f, indent=1)

    big = sizes[-1]
    tsv_big = os.path.join(work, f"kb_{big}_s{args.seed}_c{args.gen_chunk}.tsv")
    if not os.path.exists(tsv_big + ".done"):
        gen = run_stage("generate", [sys.executable, os.path.join(HERE, "make_names.py"), "--names", str(big),
                                     "--seed", str(args.seed), "--chunk", str(args.gen_chunk), "--output", tsv_big],
                        work, min_available=guard)
        res["generate"] = dict(_stage_record(gen), summary=gen["lines"][-1][2] if gen["lines"] else "")
        save()
        open(tsv_big + ".done", "w").close()
    try:
        for n in sizes:
            if str(n) in res["runs"] and not res["runs"][str(n)].get("stopped"):
                print(f"[{n:,}] already measured, skipped", flush=True)
                continue
            tsv = tsv_big if n == big else os.path.join(work, f"kb_{n}.tsv")
            if n != big:
                _head(tsv_big, tsv, n)
            if "spm" not in res:
                st = run_stage("sentencepiece", me + ["--phase", "spm", "--tsv", tsv, "--work", work, "--seed",
                                                      str(args.seed), "--spm-sample", str(args.spm_sample), "--vocab",
                                                      str(args.vocab), "--dict-size", str(args.dict_size),
                                                      "--dict-layout", args.dict_layout], work)
                res["spm"] = dict(json_line(st), trained_on=n)
                save()
            names_path, trie_path = os.path.join(work, "kb.names"), os.path.join(work, "kb.trie")
            run = {"load_before": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
            res["runs"][str(n)] = run
            reading = run_stage(f"reading_{n}", [genre_trie, "names", "--tsv", tsv, "--output", names_path, "--quiet"],
                                work, min_available=guard, allow_stop=True)
            run["reading"] = _stage_record(reading)
            if not reading["stopped"]:
                run["reading"].update(parse_names_summary(reading["lines"]))
                run["names_bytes"] = os.path.getsize(names_path)
                building = run_stage(f"build_{n}", [genre_trie, "build", "--names", names_path, "--format", "name_lang",
                                                    "--sentencepiece", os.path.join(work, "spm.model"), "--dict",
                                                    os.path.join(work, "dict.txt"), "--output", trie_path,
                                                    "--workers", str(args.workers), "--quiet"],
                                     work, min_available=guard, allow_stop=True)
                run["build"] = _stage_record(building)
                if not building["stopped"]:
                    summ = parse_build_summary(building["lines"])
                    mon = building["monitor"]
                    summ["peak_encode"] = mon.peak_between(0, summ.get("t_encoded", 0))
                    summ["peak_compile"] = mon.peak_between(summ.get("t_encoded", 0), building["wall"] + 1)
                    run["build"].update(summ)
                    run["trie_bytes"] = os.path.getsize(trie_path)
            run["stopped"] = reading["stopped"] or run.get("build", {}).get("stopped")
            run["load_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            save()
            for path in (names_path, trie_path) + ((tsv,) if n != big else ()):
                if os.path.exists(path):
                    os.remove(path)
            if run["stopped"]:
                print(f"[{n:,}] stopped ({run['stopped']}); larger sizes are not run", flush=True)
                break
    finally:
        if not args.keep:
            for path in (tsv_big, tsv_big + ".done"):
                if os.path.exists(path):
                    os.remove(path)
    text = scale_report(res, args)
    print(text)
    if args.write:
        write_scale_section(args.write, text)


def scale_report(res: dict, args) -> str:
    done = {int(k): v for k, v in res["runs"].items() if not v.get("stopped") and "build" in v}
    ns = sorted(done)
    project = args.project
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    cmd = f"python benchmarks/bench_build.py --scale {args.scale} --gen-chunk {args.gen_chunk}"
    if args.workers != 2:
        cmd += f" --workers {args.workers}"
    if args.work:
        cmd += f" --work {args.work}"
    if args.write:
        cmd += f" --write {args.write}"
    L = ["### Scale: reading and building at mGENRE sizes (`bench_build.py --scale`)\n",
         f"Command: `{cmd}`; started {res['started']}; machine: {res['machine']}; OMP_NUM_THREADS=1, "
         f"`genre-trie build --workers {res['workers']}`. A stage is killed if MemAvailable falls under "
         f"{args.min_available_gb:g} GiB (none was, unless said below).\n"]
    g = res.get("generate", {})
    L.append(f"Input: one KB of {res['sizes'][-1]:,} names from `benchmarks/make_names.py --names {res['sizes'][-1]} "
             f"--chunk {res['gen_chunk']}` ({g.get('summary', '?').split(': ', 1)[-1]}; peak RSS {gib(g.get('peak_rss', 0))}); "
             "each smaller size is its first N lines (chunks are drawn independently, so a prefix of whole chunks "
             "is the same KB as a run at that size). SentencePiece model and 256k dict.txt as above, trained once "
             f"on {res.get('spm', {}).get('sentences', 0):,} identifiers of the {res.get('spm', {}).get('trained_on', 0):,}-name KB.\n")
    L.append("Peak = ru_maxrss of the stage (VmHWM of its largest process, from wait4) and, in brackets, the "
             "largest sampled sum of RSS over the process and its workers. names/s = names / wall s; "
             "*per CPU s* = names / CPU s (user + system of the process and its workers), the figure that "
             "does not depend on the machine's load; load = `uptime` before the size.\n")
    L.append("| names | load (1/5/15 min) | reading wall s | CPU s | names/s | per CPU s | peak | "
             "build wall s | CPU s | encode / compile names/s | per CPU s | peak encode | peak compile | peak | "
             "kb.names bytes | kb.trie bytes |")
    L.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in ns:
        r, b = done[n]["reading"], done[n]["build"]
        load = done[n]["load_before"].split("load average:")[-1].strip()
        L.append(f"| {n:,} | {load} | {r['wall']:.0f} | {r['cpu']:.0f} | {n / r['wall']:,.0f} | {n / r['cpu']:,.0f} | "
                 f"{gib(r['ru_maxrss'])} ({gib(r['peak_rss'])}) | {b['wall']:.0f} | {b['cpu']:.0f} | "
                 f"{b['encode_rate']:,} / {b['compile_rate']:,} | {n / b['cpu']:,.0f} | {gib(b['peak_encode'])} | "
                 f"{gib(b['peak_compile'])} | {gib(b['ru_maxrss'])} ({gib(b['peak_rss'])}) | "
                 f"{done[n]['names_bytes']:,} | {done[n]['trie_bytes']:,} |")
    for n, v in sorted((int(k), v) for k, v in res["runs"].items() if v.get("stopped") or "build" not in v):
        L.append(f"| {n:,} | {v.get('load_before', '').split('load average:')[-1].strip()} | stopped: "
                 f"{v.get('stopped') or 'not finished'} | | | | | | | | | | | | | |")
    L.append("")
    if ns:
        L.append(f"Linear fits (least squares over {', '.join(f'{n / 1e6:g}M' for n in ns)}), peak = a + b x names, "
                 f"and the projection to mGENRE's {project / 1e6:.2f}M names; this machine has {gib(total)} "
                 "(shared by six sessions today).\n")
        L.append(f"| stage | a | b (bytes/name) | projected peak at {project / 1e6:.2f}M | share of RAM | "
                 "projected CPU (wall on a quiet machine) |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, key in (("reading", "reading"), ("encoding + compiling", "build")):
            for what, field in (("ru_maxrss", "ru_maxrss"), ("sum of RSS", "peak_rss")):
                a, bb = _fit(ns, [done[n][key][field] for n in ns])
                p = a + bb * project
                ca, cb = _fit(ns, [done[n][key]["cpu"] for n in ns])
                L.append(f"| {label} ({what}) | {gib(a)} | {bb:.1f} | {gib(p)} | {p / total:.0%} | "
                         f"{(ca + cb * project) / 3600:.1f} h |")
        L.append("")
    return "\n".join(L)


def write_scale_section(path: str, text: str) -> None:
    """Replace the scale block; a new one goes right after the bench_build block (same section)."""
    old = open(path, encoding="utf-8").read()
    block = f"{SCALE_BEGIN}\n{text}\n{SCALE_END}"
    if SCALE_BEGIN in old:
        new = old[: old.index(SCALE_BEGIN)] + block + old[old.index(SCALE_END) + len(SCALE_END):]
    else:
        end = "<!-- bench_build:end -->"
        at = old.index(end) + len(end) if end in old else len(old)
        new = old[:at] + "\n\n" + block + old[at:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def times(x: float) -> str:
    return f"{x:,.0f}x" if x >= 10 else f"{x:.1f}x"


def gib(x: float) -> str:
    return f"{x / GB:.2f} GiB"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=10_000_000, help="names in the synthetic KB (default 10M)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="work directory (reused: an existing TSV / SentencePiece model with the "
                        "same settings is kept); default a temporary directory under /tmp, removed afterwards")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--workers", type=int, default=2, help="genre-trie build --workers (default 2)")
    parser.add_argument("--spm-sample", type=int, default=200_000, help="identifiers to train SentencePiece on")
    parser.add_argument("--vocab", type=int, default=32_000, help="SentencePiece vocabulary size")
    parser.add_argument("--dict-size", type=int, default=256_000, help="entries of the emulated dict.txt")
    parser.add_argument("--dict-layout", choices=("random", "ranked"), default="random",
                        help="pieces at random positions of dict.txt in random order (default), or in the "
                        "model's own (score) order, so that frequent pieces get smaller ids")
    parser.add_argument("--samples", type=int, default=2000, help="lookup prefixes per depth")
    parser.add_argument("--depths", default="2,3,4,6", help="prefix depths (tokens, the start token included)")
    parser.add_argument("--batch", type=int, default=640, help="hypotheses per batched lookup (bsz 64 x beam 10)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of our lookups (best is reported)")
    parser.add_argument("--ref-budget", type=float, default=60.0,
                        help="seconds of reference lookups per depth; later samples are skipped (default 60)")
    parser.add_argument("--limit-gb", type=float, default=4.0, help="peak memory target per stage (GB)")
    parser.add_argument("--chunk", type=int, default=500_000, help=argparse.SUPPRESS)
    parser.add_argument("--write", metavar="MD", help="replace this benchmark's section of a Markdown file")
    parser.add_argument("--scale", metavar="N,N,...",
                        help="scale series instead: reading + encoding/compiling only (no marisa, no lookups) at "
                        "each of these sizes, one KB generated at the largest (in --gen-chunk chunks), outputs "
                        "deleted after each size; peaks fitted and projected to --project names")
    parser.add_argument("--gen-chunk", type=int, default=2_000_000, help="make_names.py --chunk for --scale")
    parser.add_argument("--project", type=int, default=89_270_000, help="size to project the --scale fits to "
                        "(default mGENRE's 89.27M names)")
    parser.add_argument("--min-available-gb", type=float, default=4.0,
                        help="--scale: kill a stage when the machine's MemAvailable falls under this (GiB)")
    parser.add_argument("--report-only", action="store_true", help="--scale: rewrite the report from WORK/scale.json")
    parser.add_argument("--phase", choices=("spm", "marisa", "lookup"), help=argparse.SUPPRESS)
    for hidden in ("tsv", "trie", "marisa", "samples-file"):
        parser.add_argument("--" + hidden, help=argparse.SUPPRESS)
    parser.add_argument("--max-token-id", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.depths = [int(x) for x in str(args.depths).split(",")]
    if args.phase:
        sys.path.insert(0, ROOT)
        {"spm": phase_spm, "marisa": phase_marisa, "lookup": phase_lookup}[args.phase](args)
        return

    if args.scale:
        if args.report_only:
            text = scale_report(json.load(open(os.path.join(args.work, "scale.json"))), args)
            print(text)
            if args.write:
                write_scale_section(args.write, text)
        else:
            run_scale(args)
        return

    started = datetime.datetime.now()
    temporary = args.work is None
    work = args.work or tempfile.mkdtemp(prefix="bench_build.", dir="/tmp")
    os.makedirs(work, exist_ok=True)
    me = [sys.executable, os.path.abspath(__file__)]
    genre_trie = os.path.join(os.path.dirname(sys.executable), "genre-trie")
    try:
        # 1. the synthetic KB (reused when the same size and seed are already there)
        tsv = os.path.join(work, f"kb_{args.names}_s{args.seed}.tsv")
        gen_info = os.path.join(work, os.path.basename(tsv) + ".info")
        if not (os.path.exists(tsv) and os.path.exists(gen_info)):
            gen = run_stage("generate", [sys.executable, os.path.join(HERE, "make_names.py"), "--names",
                                         str(args.names), "--seed", str(args.seed), "--output", tsv], work)
            with open(gen_info, "w", encoding="utf-8") as f:
                f.write(gen["lines"][-1][2] if gen["lines"] else "")
        with open(gen_info, encoding="utf-8") as f:
            gen_summary = f.read().strip()
        tsv_bytes = os.path.getsize(tsv)

        # 2. SentencePiece model + emulated 256k dict.txt (reused for the same TSV and settings)
        spm_key = f"{os.path.basename(tsv)} {args.spm_sample} {args.vocab} {args.dict_size} {args.dict_layout}"
        spm_info = os.path.join(work, "spm.info")
        if not (os.path.exists(spm_info) and json.load(open(spm_info)).get("key") == spm_key):
            st = run_stage("sentencepiece", me + ["--phase", "spm", "--tsv", tsv, "--work", work, "--seed",
                                                  str(args.seed), "--spm-sample", str(args.spm_sample), "--vocab",
                                                  str(args.vocab), "--dict-size", str(args.dict_size),
                                                  "--dict-layout", args.dict_layout], work)
            info = dict(json_line(st), key=spm_key)
            with open(spm_info, "w") as f:
                json.dump(info, f)
        spm_stats = json.load(open(spm_info))
        spm_model, dict_txt = os.path.join(work, "spm.model"), os.path.join(work, "dict.txt")

        # 3. reading: TSV -> name table
        names_path, trie_path = os.path.join(work, "kb.names"), os.path.join(work, "kb.trie")
        reading = run_stage("reading", [genre_trie, "names", "--tsv", tsv, "--output", names_path, "--quiet"], work)
        names_sum = parse_names_summary(reading["lines"])

        # 4. encoding + compiling: name table -> tree
        building = run_stage("build", [genre_trie, "build", "--names", names_path, "--format", "name_lang",
                                       "--sentencepiece", spm_model, "--dict", dict_txt, "--output", trie_path,
                                       "--workers", str(args.workers), "--quiet"], work)
        build_sum = parse_build_summary(building["lines"])
        mon = building["monitor"]
        peak_encode = mon.peak_between(0, build_sum.get("t_encoded", 0))
        peak_compile = mon.peak_between(build_sum.get("t_encoded", 0), building["wall"] + 1)

        # 5. the reference's marisa trie of the same sequences
        marisa_path, samples_path = os.path.join(work, "kb.marisa"), os.path.join(work, "samples.npz")
        depths = ",".join(map(str, args.depths))
        mar = run_stage("marisa", me + ["--phase", "marisa", "--trie", trie_path, "--marisa", marisa_path,
                                        "--samples-file", samples_path, "--samples", str(args.samples),
                                        "--depths", depths, "--seed", str(args.seed), "--chunk", str(args.chunk)],
                        work)
        mar_stats = json_line(mar)

        # 6. lookups, side by side
        look = run_stage("lookup", me + ["--phase", "lookup", "--trie", trie_path, "--marisa", marisa_path,
                                         "--samples-file", samples_path, "--depths", depths,
                                         "--batch", str(args.batch), "--reps", str(args.reps),
                                         "--ref-budget", str(args.ref_budget),
                                         "--max-token-id", str(args.dict_size + 4)], work)
        lookups = json_line(look)["lookups"]

        # ------------------------------------------------------------------ report
        sys.path.insert(0, ROOT)
        from genre_fairseq.prefix_tree import FORMAT_VERSION, PrefixTree

        tree = PrefixTree.load(trie_path)
        n_seq, n_nodes, n_edges = len(tree), tree.num_nodes, tree.num_edges
        trie_file, trie_arrays = os.path.getsize(trie_path), tree.nbytes()
        bits = tree.bit_widths
        widths = (f"format version {FORMAT_VERSION}: minimal automaton of {n_nodes:,} nodes, {n_edges:,} edges; "
                  f"bits per token {bits['tokens']}, target {bits['targets']}, offset {bits['offsets']}")
        del tree
        names_file = os.path.getsize(names_path)
        marisa_file = mar_stats["bytes"]
        ratio = trie_file / marisa_file
        limit = args.limit_gb * 1e9
        read_rate = args.names / reading["wall"]
        t_enc = build_sum.get("t_encoded", 0)

        cmd = "python benchmarks/bench_build.py" + (f" --names {args.names}" if args.names != 10_000_000 else "")
        for opt, default in (("workers", 2), ("seed", 0), ("dict_layout", "random"), ("samples", 2000),
                             ("ref_budget", 60.0), ("batch", 640)):
            if getattr(args, opt) != default:
                cmd += f" --{opt.replace('_', '-')} {getattr(args, opt)}"
        if args.work:
            cmd += f" --work {args.work}"
        if args.write:
            cmd += f" --write {args.write}"

        L: List[str] = []
        L.append("## Building a tree from a large KB (benchmarks/bench_build.py)\n")
        L.append(f"Command: `{cmd}`; {started:%Y-%m-%d %H:%M}; machine: {machine()}; peak memory sampled via "
                 f"{TreeMemory.method} every 0.2 s.\n")
        L.append(f"Input: `benchmarks/make_names.py --names {args.names} --seed {args.seed}`: {gen_summary.split(': ', 1)[-1]}. "
                 f"TSV {tsv_bytes:,} bytes.\n")
        L.append(f"Tokenizer: a unigram SentencePiece model trained here on {spm_stats['sentences']:,} sampled "
                 f"identifiers (`name >> lang`, vocab {args.vocab:,}, {spm_stats['pieces']:,} pieces, "
                 f"{spm_stats['train_s']:.0f} s with 2 threads), and a dict.txt that emulates mGENRE's: "
                 f"{args.dict_size:,} entries, the pieces at seeded random positions "
                 f"({'in random order' if args.dict_layout == 'random' else 'in the model score order'}) among "
                 f"filler symbols, so token ids span 4..{args.dict_size + 3} as with the real model (4-byte tokens). "
                 "Not the real mGENRE model: token counts per name differ from it.\n")
        L.append("### Stages (each a `genre-trie` subprocess)\n")
        L.append("Peak memory = the largest sum of RSS over the process and its children (encoding workers) "
                 "at one sample (an upper bound: pages shared by forked workers count twice); PSS (shared pages "
                 "split) and the largest single-process ru_maxrss from wait4 are given for reference. CPU s = user + "
                 "system time of the process and its workers; *other load* = cores kept busy by everything else on "
                 "the machine meanwhile (from /proc/stat), since the machine is shared.\n")
        L.append("| stage | command | wall s | CPU s | other load | names/s | peak RSS (tree) | peak PSS (tree) | "
                 f"ru_maxrss | < {args.limit_gb:g} GB |")
        L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for label, st, rate in (("reading", reading, f"{read_rate:,.0f}"),
                                ("encoding + compiling", building,
                                 f"{build_sum['encode_rate']:,} enc. / {build_sum['compile_rate']:,} comp.")):
            cmdname = "names --tsv" if st is reading else f"build --workers {args.workers}"
            L.append(f"| {label} | `{cmdname}` | {st['wall']:.1f} | {st['cpu']:.1f} | {st['other_load']:.2f} cores | "
                     f"{rate} | {gib(st['peak_rss'])} "
                     f"({st['procs_at_peak']} proc.) | {gib(st['peak_pss'])} | {gib(st['ru_maxrss'])} | "
                     f"{'PASS' if st['peak_rss'] < limit else 'FAIL'} |")
        L.append("")
        L.append(f"- reading: {names_sum['pairs']:,} distinct (lang, name) pairs, {names_sum['entities']:,} entities "
                 f"from {args.names:,} lines; names/s = lines read / wall time of the process.")
        L.append(f"- encoding + compiling: {build_sum['encoded']:,} of {build_sum['identifiers']:,} identifiers "
                 f"encoded ({build_sum['failed']:,} failed); names/s as printed by `genre-trie build`. Within the "
                 f"process: start-up + reading the table + encoding until {t_enc:.1f} s (peak {gib(peak_encode)}), "
                 f"compiling + saving after (peak {gib(peak_compile)}); whole process {build_sum['build_total_s']:.1f} s "
                 f"of compute, {building['wall']:.1f} s wall.")
        L.append(f"- the reference's marisa trie (built in a separate process from the tree's own sequences): "
                 f"{mar_stats['build_s']:.1f} s in marisa's builder ({n_seq / max(mar_stats['build_s'], 1e-9):,.0f} names/s), "
                 f"builder +{gib(mar_stats['hwm_after_build'] - mar_stats['rss_before_build'])} over the process's "
                 f"{gib(mar_stats['rss_before_build'])} before it; whole process peak RSS {gib(mar['peak_rss'])}.\n")
        L.append(f"### Size ({n_seq:,} distinct identifiers in the tree, {mar_stats['mean_len']:.1f} tokens each on average "
                 "with both start/end tokens)\n")
        L.append("| structure | bytes | bytes/name | vs marisa |")
        L.append("| --- | ---: | ---: | ---: |")
        L.append(f"| tree file `kb.trie` ({widths}) | {trie_file:,} | {trie_file / n_seq:.1f} | "
                 f"{ratio:.2f}x |")
        L.append(f"| tree arrays (`nbytes()`) | {trie_arrays:,} | {trie_arrays / n_seq:.1f} | {trie_arrays / marisa_file:.2f}x |")
        L.append(f"| marisa trie of the same sequences (reference format, saved) | {marisa_file:,} | "
                 f"{marisa_file / n_seq:.1f} | 1.00x |")
        L.append(f"| name table `kb.names` ({names_sum['pairs']:,} names, {names_sum['entities']:,} entities) | "
                 f"{names_file:,} | {names_file / names_sum['pairs']:.1f} | |")
        L.append("")
        L.append(f"Target tree <= 1.5x marisa: **{'PASS' if ratio <= 1.5 else 'FAIL'}** ({ratio:.2f}x).\n")
        L.append(f"### Lookups: which tokens may follow a prefix ({args.samples:,} prefixes per depth, "
                 "sampled uniformly over the sequences)\n")
        L.append("Depth = tokens in the prefix, the start token included. *Reference*: GENRE's `MarisaTrie.get` "
                 "(enumerate `trie.keys(prefix)`, collect the next characters), timed until "
                 f"{args.ref_budget:g} s per depth are spent (*timed*: a random subset of the prefixes; ours are timed on all "
                 "of them and checked against the reference on the timed ones). "
                 "*allowed()*: `PrefixTree.allowed(prefix)` from the root, one call per prefix, in Python. "
                 f"*Batched*: hypotheses in batches of {args.batch} whose parent state is carried from the previous "
                 "step, as in the beam search: one `advance` along the last token + `child_ranges` (the allowed "
                 "tokens of each hypothesis are then those of edges `start .. start + count - 1`); *+ candidates*: "
                 "also the padded matrix of the distinct nodes' children that `PrefixTreeSearch.step` (sparse "
                 "mode) builds, K = the widest fan-out in the batch. Times per lookup (per hypothesis), ours best "
                 f"of {args.reps}. *Below* = sequences under the prefix (what the reference enumerates). "
                 "*Same* = lookups whose token set equals the reference's (allowed(), batched, + candidates).\n")
        L.append("| depth | timed | mean / max fan-out | mean / max below | reference us | allowed() us | "
                 "batched us | + candidates us | speed-up allowed() | speed-up batched | speed-up + candidates | same |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        ok = {"py": True, "c1": True, "c2": True}
        all_same = True
        for r in lookups:
            sp = {key: r["ref_us"] / r[key + "_us"] for key in ok}
            for key in ok:
                ok[key] &= sp[key] >= 100
            all_same &= r["same_py"] == r["timed"] == r["same_c1"] == r["same_c2"]
            L.append(f"| {r['depth']} | {r['timed']:,} | {r['mean_fanout']:,.1f} / {r['max_fanout']:,} | "
                     f"{r['mean_below']:,.0f} / {r['max_below']:,} | {r['ref_us']:,.1f} | {r['py_us']:,.1f} | "
                     f"{r['c1_us']:,.2f} | {r['c2_us']:,.2f} | {times(sp['py'])} | {times(sp['c1'])} | {times(sp['c2'])} | "
                     f"{r['same_py']}, {r['same_c1']}, {r['same_c2']} |")
        L.append("")
        L.append("### Targets\n")
        L.append(f"- {args.names:,} names on this machine, each stage < {args.limit_gb:g} GB peak: reading "
                 f"{gib(reading['peak_rss'])} **{'PASS' if reading['peak_rss'] < limit else 'FAIL'}**, "
                 f"encoding + compiling {gib(building['peak_rss'])} "
                 f"**{'PASS' if building['peak_rss'] < limit else 'FAIL'}**; total "
                 f"{reading['wall'] + building['wall']:.0f} s.")
        L.append(f"- tree within 1.5x of marisa: {ratio:.2f}x **{'PASS' if ratio <= 1.5 else 'FAIL'}**.")
        L.append(f"- lookups at depth >= 2 >= 100x faster than marisa enumeration, at every depth measured: "
                 f"batched lookup **{'PASS' if ok['c1'] else 'FAIL'}**, batched + padded candidates "
                 f"**{'PASS' if ok['c2'] else 'FAIL'}**, single `allowed()` calls in Python "
                 f"**{'PASS' if ok['py'] else 'FAIL'}**; same sets everywhere: "
                 f"**{'yes' if all_same else 'NO'}**.")
        L.append("")
        L.append("Format (docs/prefix_tree.md): the file holds the minimal automaton of the sequence set (trie nodes "
                 "with equal continuations merged, so shared endings such as ` >> lang` + EOS are stored once), "
                 "bit-packed at the smallest widths; a state is 0 (root) or edge + 1. How much the merging saves "
                 "depends on how often names share endings: this KB is synthetic (Zipf-distributed words and "
                 "disambiguators), a real Wikipedia/Wikidata KB has not been measured here.")
        text = "\n".join(L)
        print()
        print(text)
        if args.write:
            write_section(args.write, text)
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
