"""Constrained decoding, the constraint stage of one beam-search step: ours against the reference approach.

For batch x beam hypotheses over a 256k vocabulary and a tree of 1M sequences (realistic
multilingual names from make_names.py by default, or Zipf-distributed token strings):
  reference:     fairseq's PrefixConstrainedBeamSearch fed by the reference's Trie.get
                 (benchmarks/_common.py: one Python call per hypothesis, a dense -inf mask over the vocabulary);
  ours:          PrefixTreeSearch on the compiled tree, sparse / dense / auto modes, 2 x beam candidates
                 (the default) and beam candidates (``candidate_multiple=1``, the reference's count);
  unconstrained: fairseq's BeamSearch.step on the same log-probabilities (the bound: a constraint that
                 costs less than this costs nothing that matters).
Also: tree build time, bytes per sequence, load time. Whole decoding with a model: bench_decode.py.

Usage: python benchmarks/bench_search.py [--sequences 1000000] [--kb names] [--write benchmarks/RESULTS.md]
"""

import argparse
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fairseq.search import BeamSearch, PrefixConstrainedBeamSearch  # noqa: E402

from genre_fairseq.prefix_tree import PrefixTree  # noqa: E402
from genre_fairseq.search import PrefixTreeSearch  # noqa: E402
from tests.toy import make_dictionary  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import EOS, ReferenceTrie, best_of, reference_allowed, step_inputs, tokenized_names  # noqa: E402


def synthetic_sequences(n, vocab, seed=0):
    """``[2] + tokens + [2]`` with 2-14 tokens, Zipf-like token frequencies, shared prefixes."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 15, size=n)
    ranks = rng.zipf(1.3, size=int(lengths.sum()))
    toks = 4 + (ranks % (vocab - 4))
    out, pos = [], 0
    for L in lengths.tolist():
        out.append([EOS] + toks[pos : pos + L].tolist() + [EOS])
        pos += L
    return out


def name_sequences(n, vocab, seed=0):
    """``[2] + tokens + [2]`` of n distinct realistic names (make_names.py, quickstart SentencePiece pieces
    scattered over the vocabulary)."""
    seqs, _, _ = tokenized_names(n, vocab, seed)
    return [[EOS, *s, EOS] for s in seqs]


def bench_step(args, lines):
    vocab = args.vocab
    d = make_dictionary(vocab - 4)
    assert len(d) == vocab
    t0 = time.perf_counter()
    seqs = (name_sequences if args.kb == "names" else synthetic_sequences)(args.sequences, vocab)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = PrefixTree.from_sequences(seqs, start_token=EOS)
    t_build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kb.trie")
        tree.save(path)
        file_bytes = os.path.getsize(path)
        t0 = time.perf_counter()
        loaded = PrefixTree.load(path)
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = ReferenceTrie(seqs)
        t_dict = time.perf_counter() - t0

        bsz, beam = args.batch, args.beam
        rng = random.Random(1)
        batch_idxs = torch.arange(bsz)
        reference = PrefixConstrainedBeamSearch(d, reference_allowed(ref))
        plain = BeamSearch(d)
        ours = {mode: PrefixTreeSearch(d, loaded, mode=mode) for mode in ("sparse", "dense", "auto")}
        ours["auto1"] = PrefixTreeSearch(d, loaded, mode="auto", candidate_multiple=1)
        results = []
        for step in range(args.steps):
            # every hypothesis at step s has read BOS + s tokens of some name
            long_enough = [s for s in (seqs[rng.randrange(len(seqs))] for _ in range(50 * bsz * beam)) if len(s) > step + 2]
            prev = torch.tensor([s[: step + 1] for s in long_enough[: bsz * beam]])
            lprobs, scores = step_inputs(bsz, beam, vocab, step)
            # neither variant's result depends on lprobs being fresh: the reference adds 0/-inf in place
            out_ref = reference.step(step, lprobs.clone(), scores, prev, batch_idxs)
            row = {"step": step, "width": int(loaded.child_ranges(loaded.walk(prev))[1].max()),
                   "reference": best_of(lambda: reference.step(step, lprobs, scores, prev, batch_idxs), args.reps),
                   "unconstrained": best_of(lambda: plain.step(step, lprobs, scores), args.reps)}
            states = loaded.walk(prev)
            live = out_ref[0] > -math.inf  # the reference scores dead ends -inf, ours DEAD_SCORE
            for mode, search in ours.items():
                out = search.step(step, lprobs, scores, prev, batch_idxs)
                first = [o[:, :beam] for o in out[:2]]  # 2 x beam candidates: the best beam are the reference's
                assert torch.equal(first[0][live], out_ref[0][live]) and torch.equal(first[1][live], out_ref[1][live]), mode

                def carried(search=search):
                    search._states = states  # as update_constraints() leaves it after the previous step
                    search.step(step, lprobs, scores, prev, batch_idxs)

                def recomputed(search=search):
                    search._states = None
                    search.step(step, lprobs, scores, prev, batch_idxs)

                row[mode] = best_of(carried, args.reps)
                if mode == "sparse":
                    row[mode + "_walk"] = best_of(recomputed, args.reps)
            results.append(row)

    kb = ("realistic multilingual names (make_names.py, quickstart SentencePiece pieces at random ids)"
          if args.kb == "names" else "Zipf-distributed token strings")
    lines.append(f"### Constraint stage of one step ({args.sequences:,} sequences, vocab {vocab:,}, batch {bsz} x beam {beam})\n")
    lines.append(f"Tree: {len(tree):,} {kb}, built in {t_build:.1f} s (from Python lists; making them took {t_gen:.1f} s), "
                 f"{tree.num_nodes:,} automaton nodes / {tree.num_edges:,} edges, file {file_bytes:,} bytes "
                 f"({file_bytes / len(tree):.1f} bytes/sequence), bit widths "
                 + ", ".join(f"{k} {v}" for k, v in tree.bit_widths.items()) + "; "
                 f"load (memory map) {t_load * 1e3:.2f} ms. The reference's nested-dict trie took {t_dict:.1f} s to build.\n")
    lines.append(f"Times are the best of {args.reps} repetitions, in ms per step, one thread. At step 0 fairseq extends only "
                 "the first beam of each sentence (the root's fan-out). *Reference*: PrefixConstrainedBeamSearch + the "
                 "reference's `Trie.get` per hypothesis. *Unconstrained*: fairseq's `BeamSearch.step` on the same "
                 "log-probabilities (top 2 x beam of bsz x beam*V scores). Ours: states carried from the previous step "
                 "(the normal path), 2 x beam candidates (default); *recomputed* = states rebuilt by walking the tokens; "
                 "*auto, 1 x beam* = `candidate_multiple=1` (the reference's count). `auto` picks sparse unless the "
                 "widest fan-out exceeds vocab/2. Ours agree with the reference on the best beam candidates (checked).\n")
    lines.append("| step | widest fan-out | reference | unconstrained | sparse | sparse (recomputed) | dense | auto | "
                 "auto, 1 x beam | reference / auto | unconstrained / auto |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        lines.append(f"| {r['step']} | {r['width']:,} | {r['reference'] * 1e3:.1f} | {r['unconstrained'] * 1e3:.1f} | "
                     f"{r['sparse'] * 1e3:.2f} | {r['sparse_walk'] * 1e3:.2f} | {r['dense'] * 1e3:.1f} | "
                     f"{r['auto'] * 1e3:.2f} | {r['auto1'] * 1e3:.2f} | {r['reference'] / r['auto']:.0f}x | "
                     f"{r['unconstrained'] / r['auto']:.1f}x |")
    lines.append("")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=1_000_000)
    parser.add_argument("--vocab", type=int, default=256_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="decoding steps to measure (0 = the root)")
    parser.add_argument("--kb", choices=("names", "zipf"), default="names",
                        help="the tree's sequences: realistic names (default; at 1M the reference's nested-dict trie alone "
                        "takes about 3 GiB, the run about 5 GiB) or Zipf-distributed token strings (about 2 GiB)")
    parser.add_argument("--write", metavar="MD", help="replace this benchmark's section of a Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(1)

    lines = [
        "## Constrained decoding (benchmarks/bench_search.py)\n",
        f"Command: `python benchmarks/bench_search.py --sequences {args.sequences} --vocab {args.vocab} "
        f"--batch {args.batch} --beam {args.beam} --reps {args.reps} --kb {args.kb}`; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (shared), torch {torch.__version__}, CPU only, 1 thread (OMP_NUM_THREADS=1).\n",
    ]
    bench_step(args, lines)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines.insert(2, f"Load after the run: `{load}`.\n")
    text = "\n".join(lines)
    print(text)
    if args.write:
        begin, end = "<!-- bench_search:begin -->", "<!-- bench_search:end -->"
        old = open(args.write).read() if os.path.exists(args.write) else "# Benchmark results\n"
        block = f"{begin}\n{text}\n{end}"
        if begin in old:
            new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
        else:
            new = old.rstrip("\n") + "\n\n" + block + "\n"
        with open(args.write, "w") as f:
            f.write(new)


if __name__ == "__main__":
    main()
