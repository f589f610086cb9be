"""Constrained decoding speed: our tree + search against the reference approach, side by side.

Part 1, the constraint stage of one beam-search step (batch x beam hypotheses, 256k vocab):
  reference: fairseq's PrefixConstrainedBeamSearch fed by a nested-dict trie callback
             (one Python call per hypothesis, a dense -inf mask over the vocabulary);
  ours:      PrefixTreeSearch on the compiled tree, sparse and dense modes.
Part 2, whole decoding with fairseq's SequenceGenerator on a trained tiny model: constrained
(--trie) over unconstrained time.
Also: tree build time, bytes per node, load time.

Usage: python benchmarks/bench_search.py [--sequences 1000000] [--write benchmarks/RESULTS.md]
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

from fairseq.search import PrefixConstrainedBeamSearch  # noqa: E402

from genre_fairseq.prefix_tree import PrefixTree  # noqa: E402
from genre_fairseq.search import PrefixTreeSearch  # noqa: E402
from tests.toy import make_dictionary  # noqa: E402

EOS = 2


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


class DictTrie:
    """The reference representation: nested dicts of token ids, walked per hypothesis."""

    def __init__(self, seqs):
        self.root = {}
        for s in seqs:
            node = self.root
            for t in s:
                node = node.setdefault(t, {})

    def get(self, prefix):
        node = self.root
        for t in prefix:
            node = node.get(t)
            if node is None:
                return []
        return list(node.keys())


def timeit(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)  # the least disturbed run: the machine is shared and noisy


def bench_step(args, lines):
    vocab = args.vocab
    d = make_dictionary(vocab - 4)
    assert len(d) == vocab
    t0 = time.perf_counter()
    seqs = synthetic_sequences(args.sequences, vocab)
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
        ref = DictTrie(seqs)
        t_dict = time.perf_counter() - t0

        bsz, beam = args.batch, args.beam
        rng = random.Random(1)
        batch_idxs = torch.arange(bsz)
        reference = PrefixConstrainedBeamSearch(d, lambda b, sent: ref.get(sent.tolist()))
        ours = {mode: PrefixTreeSearch(d, loaded, mode=mode) for mode in ("sparse", "dense", "auto")}
        results = []
        for step in range(args.steps):
            # every hypothesis at step s has read BOS + s tokens of some name
            long_enough = [s for s in (seqs[rng.randrange(len(seqs))] for _ in range(50 * bsz * beam)) if len(s) > step + 2]
            prev = torch.tensor([s[: step + 1] for s in long_enough[: bsz * beam]])
            lprobs = torch.randn(bsz, beam, vocab).log_softmax(-1)
            scores = torch.randn(bsz, beam, step).cumsum(-1) - 5
            # neither variant's result depends on lprobs being fresh: the reference adds 0/-inf in place
            out_ref = reference.step(step, lprobs.clone(), scores, prev, batch_idxs)
            row = {"step": step, "width": int(loaded.child_ranges(loaded.walk(prev))[1].max()),
                   "reference": timeit(lambda: reference.step(step, lprobs, scores, prev, batch_idxs), args.reps)}
            states = loaded.walk(prev)
            for mode, search in ours.items():
                out = search.step(step, lprobs, scores, prev, batch_idxs)
                live = out_ref[0] > -math.inf  # the reference scores dead ends -inf, ours DEAD_SCORE
                assert torch.equal(out[0][live], out_ref[0][live]) and torch.equal(out[1][live], out_ref[1][live]), mode

                def carried(search=search):
                    search._states = states  # as update_constraints() leaves it after the previous step
                    search.step(step, lprobs, scores, prev, batch_idxs)

                def recomputed(search=search):
                    search._states = None
                    search.step(step, lprobs, scores, prev, batch_idxs)

                row[mode] = timeit(carried, args.reps)
                row[mode + "_walk"] = timeit(recomputed, args.reps)
            results.append(row)

    lines.append(f"### Constraint stage of one step ({args.sequences:,} sequences, vocab {vocab:,}, batch {bsz} x beam {beam})\n")
    lines.append(f"Tree: built in {t_build:.1f} s (from Python lists; generating them took {t_gen:.1f} s), "
                 f"{tree.num_nodes:,} automaton nodes / {tree.num_edges:,} edges, file {file_bytes:,} bytes "
                 f"({file_bytes / len(tree):.1f} bytes/sequence), bit widths "
                 + ", ".join(f"{k} {v}" for k, v in tree.bit_widths.items()) + "; "
                 f"load (memory map) {t_load * 1e3:.2f} ms. The nested-dict trie took {t_dict:.1f} s to build.\n")
    lines.append(f"Times are the best of {args.reps} repetitions, in ms per step. At step 0 fairseq extends only the first "
                 "beam of each sentence (the root's fan-out); *carried* = states kept from the previous step (the normal "
                 "path), *recomputed* = states rebuilt by walking the tokens. `auto` picks sparse unless the widest "
                 "fan-out exceeds vocab/2.\n")
    lines.append("| step | widest fan-out | reference | sparse | sparse (recomputed) | dense | auto | speed-up of auto |")
    lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        lines.append(f"| {r['step']} | {r['width']:,} | {r['reference'] * 1e3:.1f} | {r['sparse'] * 1e3:.2f} | "
                     f"{r['sparse_walk'] * 1e3:.2f} | {r['dense'] * 1e3:.1f} | {r['auto'] * 1e3:.2f} | "
                     f"{r['reference'] / r['auto']:.0f}x |")
    lines.append("")
    return results


def bench_generate(args, lines):
    """Constrained vs unconstrained decoding time for a tiny trained model (in-process, best of reps)."""
    bindir = os.path.dirname(sys.executable)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as w:
        subprocess.run([sys.executable, os.path.join(root, "examples", "demo", "make_data.py"), w, "--test", "256"],
                       check=True)
        n_ids = sum(1 for _ in open(os.path.join(w, "kb.txt")))

        def run(*cmd):
            subprocess.run([os.path.join(bindir, cmd[0]), *cmd[1:]], check=True, capture_output=True)

        plugin = os.path.join(root, "genre_fairseq")
        run("fairseq-preprocess", "--source-lang", "source", "--target-lang", "target",
            "--trainpref", f"{w}/train", "--validpref", f"{w}/valid", "--testpref", f"{w}/test",
            "--destdir", f"{w}/bin", "--joined-dictionary", "--workers", "1")
        run("fairseq-train", f"{w}/bin", "--user-dir", plugin, "--task", "genre", "--arch", "genre_tiny",
            "--optimizer", "adam", "--lr", "0.01", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
            "--criterion", "label_smoothed_cross_entropy", "--max-tokens", "4000", "--max-update", "300",
            "--cpu", "--seed", "1", "--save-dir", f"{w}/ckpt", "--no-epoch-checkpoints", "--disable-validation")
        run("genre-trie", "build", "--tokenized", f"{w}/kb.txt", "--dict", f"{w}/bin/dict.target.txt",
            "--output", f"{w}/kb.trie", "--quiet")

        from fairseq import checkpoint_utils

        import genre_fairseq  # noqa: F401  (registers the task; allow-lists checkpoint classes)

        timings, steps = {}, {}
        for label, trie in (("unconstrained", None), ("constrained", f"{w}/kb.trie")):
            models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
                [f"{w}/ckpt/checkpoint_last.pt"], arg_overrides={"data": f"{w}/bin", "trie": trie}
            )
            task.load_dataset("test")
            gen_args = argparse.Namespace(beam=10, max_len_b=32, nbest=10)
            generator = task.build_generator(models, gen_args)
            itr = task.get_batch_iterator(dataset=task.dataset("test"), max_sentences=64,
                                          required_batch_size_multiple=1).next_epoch_itr(shuffle=False)
            batches = list(itr)

            calls = []
            inner = generator.search.step
            generator.search.step = lambda *a, **k: calls.append(1) or inner(*a, **k)

            def decode():
                calls.clear()
                with torch.no_grad():
                    for b in batches:
                        generator.generate(models, b)

            timings[label] = timeit(decode, args.reps)
            steps[label] = len(calls)
    ratio = timings["constrained"] / timings["unconstrained"]
    per_step = (timings["constrained"] / steps["constrained"]) / (timings["unconstrained"] / steps["unconstrained"])
    lines.append("### Whole decoding, tiny trained model (genre_tiny, 256 sentences, batch 64, beam 10, max-len-b 32)\n")
    lines.append(f"Best of {args.reps} runs. In-process SequenceGenerator over the same batches; the model is tiny (width 16), so the model's own "
                 "cost is as small as it gets and the constraint's share as large as it gets.\n")
    lines.append("| variant | s | search steps | ms / step | ratio (total) | ratio (per step) |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    lines.append(f"| unconstrained | {timings['unconstrained']:.3f} | {steps['unconstrained']} | "
                 f"{timings['unconstrained'] / steps['unconstrained'] * 1e3:.2f} | 1.00 | 1.00 |")
    lines.append(f"| constrained (--trie, {n_ids} identifiers) | {timings['constrained']:.3f} | "
                 f"{steps['constrained']} | {timings['constrained'] / steps['constrained'] * 1e3:.2f} | {ratio:.2f} | {per_step:.2f} |")
    lines.append("")
    return ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=1_000_000)
    parser.add_argument("--vocab", type=int, default=256_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="decoding steps to measure (0 = the root)")
    parser.add_argument("--write", metavar="MD", help="replace this benchmark's section of a Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    lines = [
        "## Constrained decoding (benchmarks/bench_search.py)\n",
        f"Command: `python benchmarks/bench_search.py --sequences {args.sequences} --vocab {args.vocab} "
        f"--batch {args.batch} --beam {args.beam} --reps {args.reps}`; machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, CPU only.\n",
    ]
    bench_step(args, lines)
    bench_generate(args, lines)
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
