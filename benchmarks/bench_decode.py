"""Whole decoding with a model of mGENRE's shape: constrained vs unconstrained vs the reference approach.

What a user of mGENRE waits for when linking: fairseq's SequenceGenerator over a batch of sentences,
each step one decoder forward (12 layers, 1024 wide, a 256k-symbol output projection) and one search
step. Variants, on the same model, batch and maximum length:

  unconstrained  fairseq's SequenceGenerator with its BeamSearch (no tree);
  ours           PrefixTreeSequenceGenerator (PrefixTreeSearch on the compiled tree), with 2 x beam
                 candidates per step (the default) and with beam candidates (``candidate_multiple=1``,
                 the reference's count);
  reference      SequenceGenerator with fairseq's PrefixConstrainedBeamSearch fed by the reference's
                 ``Trie.get`` per hypothesis (benchmarks/_common.py), as GENRE/mGENRE decode.

The tree holds ``--names`` realistic multilingual names (make_names.py, tokenized with the quickstart
SentencePiece model, its pieces at random ids of a 256k vocabulary). The model is randomly initialised
(``--arch``, default mGENRE's mgenre_mbart_large: 12+12 layers x 1024, 16 heads, FFN 4096, shared
256k embeddings; ``--layers``/``--dim`` for a smaller one); its distributions are not a trained
model's, so constrained hypotheses end when their names do while unconstrained ones run to the
maximum length: compare per step, and the totals only with that in mind. Sources are random pieces.

Timing: each variant's decoder forward (``EnsembleModel.forward_decoder``), search step
(``search.step``) and encoder are timed inside the generator; *rest* = the generator's own work
(finalizing hypotheses, reordering the incremental state, bookkeeping). Rounds interleave the
variants; the round with the median total is reported. One thread.

    python benchmarks/bench_decode.py --names 1000000 --beams 5,10 --write benchmarks/RESULTS.md
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import EOS, ROOT, ReferenceTrie, reference_allowed, tokenized_names  # noqa: E402

sys.path.insert(0, ROOT)
from fairseq.search import PrefixConstrainedBeamSearch  # noqa: E402
from fairseq.sequence_generator import SequenceGenerator  # noqa: E402

from genre_fairseq.prefix_tree import PrefixTree  # noqa: E402
from genre_fairseq.search import PrefixTreeSequenceGenerator  # noqa: E402
from tests.toy import make_dictionary  # noqa: E402

BEGIN, END = "<!-- bench_decode:begin -->", "<!-- bench_decode:end -->"
VARIANTS = ("unconstrained", "ours", "ours_1x", "reference")
LABELS = {"unconstrained": "unconstrained (BeamSearch)", "ours": "ours (PrefixTreeSearch, 2 x beam)",
          "ours_1x": "ours, candidate_multiple=1", "reference": "reference (PrefixConstrainedBeamSearch + Trie.get)"}


def build_model(args, d):
    """A randomly initialised fairseq BART model of the requested architecture over dictionary d."""
    import importlib

    from fairseq import options
    from fairseq.models.bart import BARTModel

    importlib.import_module("genre_fairseq")  # registers the mgenre_* architectures

    argv = ["/nonexistent", "--task", "translation", "--arch", args.arch, "-s", "src", "-t", "tgt", "--cpu",
            "--max-source-positions", "1024", "--max-target-positions", "1024"]
    if args.layers:
        argv += ["--encoder-layers", str(args.layers), "--decoder-layers", str(args.layers)]
    if args.dim:
        argv += ["--encoder-embed-dim", str(args.dim), "--decoder-embed-dim", str(args.dim),
                 "--encoder-ffn-embed-dim", str(4 * args.dim), "--decoder-ffn-embed-dim", str(4 * args.dim),
                 "--encoder-attention-heads", str(max(1, args.dim // 64)),
                 "--decoder-attention-heads", str(max(1, args.dim // 64))]
    margs = options.parse_args_and_arch(options.get_training_parser(), argv)
    torch.manual_seed(0)
    model = BARTModel.build_model(margs, SimpleNamespace(source_dictionary=d, target_dictionary=d))
    model.eval()
    return model, margs


def instrument(gen):
    """Wrap the generator's encoder, decoder and search step with timers; returns the timer dict."""
    t = {"encoder": 0.0, "decoder": 0.0, "search": 0.0, "steps": 0}
    model, search = gen.model, gen.search
    enc, dec, step = model.forward_encoder, model.forward_decoder, search.step

    def forward_encoder(*a, **k):
        t0 = time.perf_counter()
        out = enc(*a, **k)
        t["encoder"] += time.perf_counter() - t0
        return out

    def forward_decoder(*a, **k):
        t0 = time.perf_counter()
        out = dec(*a, **k)
        t["decoder"] += time.perf_counter() - t0
        return out

    def search_step(*a, **k):
        t0 = time.perf_counter()
        out = step(*a, **k)
        t["search"] += time.perf_counter() - t0
        t["steps"] += 1
        return out

    model.forward_encoder, model.forward_decoder, search.step = forward_encoder, forward_decoder, search_step
    return t


def make_generator(variant, model, d, tree, ref, beam, max_len_b):
    common = dict(beam_size=beam, max_len_a=0, max_len_b=max_len_b)
    if variant == "unconstrained":
        return SequenceGenerator([model], d, **common)
    if variant in ("ours", "ours_1x"):
        return PrefixTreeSequenceGenerator([model], d, prefix_tree=tree,
                                           candidate_multiple=1 if variant == "ours_1x" else 2, **common)
    return SequenceGenerator([model], d, search_strategy=PrefixConstrainedBeamSearch(d, reference_allowed(ref)),
                             **common)


def decode(gen, timers, model, sample):
    for k in timers:
        timers[k] = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        hypos = gen.generate([model], sample)
    total = time.perf_counter() - t0
    best = [(h[0]["tokens"].tolist(), float(h[0]["score"])) if h else None for h in hypos]
    return dict(timers, total=total, best=best)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1_000_000, help="names in the tree (default 1,000,000)")
    parser.add_argument("--vocab", type=int, default=256_000, help="dictionary size (default mGENRE's 256,000)")
    parser.add_argument("--arch", default="mgenre_mbart_large", help="fairseq BART architecture (default mGENRE's)")
    parser.add_argument("--layers", type=int, default=0, help="encoder and decoder layers instead of the arch's")
    parser.add_argument("--dim", type=int, default=0, help="model width instead of the arch's (FFN 4x, heads dim/64)")
    parser.add_argument("--batch", type=int, default=8, help="sentences per batch (default 8)")
    parser.add_argument("--beams", default="5,10", help="beam sizes (comma-separated, default 5,10)")
    parser.add_argument("--max-len-b", type=int, default=20, help="maximum output length (default 20)")
    parser.add_argument("--source-len", type=int, default=64, help="source tokens per sentence (default 64)")
    parser.add_argument("--reps", type=int, default=1, help="interleaved rounds (default 1; median round reported)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="subset of " + ",".join(VARIANTS))
    parser.add_argument("--write", metavar="MD", help="replace this benchmark's section of a Markdown file")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        parser.error(f"--variants: unknown {', '.join(bad)} (choose from {', '.join(VARIANTS)})")
    beams = [int(b) for b in args.beams.split(",")]
    torch.set_num_threads(1)
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    t0 = time.perf_counter()
    seqs, position, generated = tokenized_names(args.names, args.vocab)
    t_names = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = PrefixTree.from_sequences(([EOS, *s, EOS] for s in seqs), start_token=EOS)
    t_tree = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = ReferenceTrie([EOS, *s, EOS] for s in seqs)
    t_ref = time.perf_counter() - t0
    mean_len = statistics.fmean(len(s) + 2 for s in seqs)
    d = make_dictionary(args.vocab - 4)
    t0 = time.perf_counter()
    model, margs = build_model(args, d)
    t_model = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tree {len(tree):,} names ({t_names:.0f} s to make, {t_tree:.1f} s to build), reference trie {t_ref:.1f} s; "
          f"model {n_params / 1e6:.0f}M parameters built in {t_model:.0f} s", flush=True)

    g = torch.Generator().manual_seed(1)
    pieces = torch.as_tensor(position, dtype=torch.long)
    src = pieces[torch.randint(len(pieces), (args.batch, args.source_len), generator=g)]
    src[:, -1] = EOS
    sample = {"id": torch.arange(args.batch),
              "net_input": {"src_tokens": src, "src_lengths": torch.full((args.batch,), args.source_len)}}

    results = {}
    for beam in beams:
        gens = {}
        for v in variants:
            gen = make_generator(v, model, d, tree, ref, beam, args.max_len_b)
            gens[v] = (gen, instrument(gen))
        runs = {v: [] for v in variants}
        for r in range(args.reps):
            for v in variants:
                gen, timers = gens[v]
                runs[v].append(decode(gen, timers, model, sample))
                x = runs[v][-1]
                print(f"beam {beam} round {r} {v}: {x['total']:.2f} s, {x['steps']} steps, decoder {x['decoder']:.2f} s, "
                      f"search {x['search']:.3f} s, encoder {x['encoder']:.2f} s", flush=True)
        results[beam] = {v: sorted(rs, key=lambda x: x["total"])[len(rs) // 2] for v, rs in runs.items()}
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()

    # ------------------------------------------------------------------ report
    cmd = " ".join(["python", "benchmarks/bench_decode.py"] + (argv if argv is not None else sys.argv[1:]))
    shape = (f"{margs.encoder_layers}+{margs.decoder_layers} layers x {margs.decoder_embed_dim}, FFN "
             f"{margs.decoder_ffn_embed_dim}, {margs.decoder_attention_heads} heads, {args.vocab:,} symbols")
    L = ["### Whole decoding with a model of mGENRE's shape (benchmarks/bench_decode.py)\n",
         f"Command: `{cmd}`; machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch {torch.__version__}, "
         f"CPU, 1 thread (OMP_NUM_THREADS=1); load before `{load_before.split('load average:')[-1].strip()}`, after "
         f"`{load_after.split('load average:')[-1].strip()}` (1/5/15-min averages; the machine is shared, so absolute "
         f"times are inflated, ratios less so); process peak RSS {hwm / 2**30:.2f} GiB.\n",
         f"Model: `{args.arch}` ({shape}), {n_params / 1e6:.0f}M parameters, randomly initialised (built in "
         f"{t_model:.0f} s). Tree: {len(tree):,} realistic multilingual names ({generated:,} generated by "
         f"make_names.py, tokenized with the quickstart SentencePiece model, pieces at random ids; "
         f"{mean_len:.1f} tokens each with BOS/EOS), {tree.num_nodes:,} automaton nodes, built in {t_tree:.1f} s; "
         f"the reference's nested-dict trie of the same sequences in {t_ref:.1f} s. Batch {args.batch} sentences of "
         f"{args.source_len} random source pieces, max-len-b {args.max_len_b}, max-len-a 0. "
         + (f"Median round of {args.reps} per variant, the variants interleaved in each round." if args.reps > 1 else
          "One round: the variants one after another in the order of the table, beam by beam, so a change of the "
          "machine's load during the run shows up as a difference between variants (compare the decoder ms/step, "
          "the same computation in every variant).") + "\n",
         "Per step = per call of the search (one decoder forward each). *Rest* = total - decoder - search - encoder "
         "(the generator's own work). Ratios against the unconstrained run of the same beam.\n"]
    for beam in beams:
        res = results[beam]
        base = res.get("unconstrained")
        L.append(f"#### Beam {beam} ({args.batch} x {beam} = {args.batch * beam} hypotheses)\n")
        L.append("| variant | total s | steps | ms / step | decoder ms / step | search ms / step | encoder s | "
                 "decoder share | search share | rest share | total / unconstrained | per step / unconstrained |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for v in variants:
            x = res[v]
            st = max(x["steps"], 1)
            rest = x["total"] - x["decoder"] - x["search"] - x["encoder"]
            ratio = per_step = ""
            if base:
                ratio = f"{x['total'] / base['total']:.2f}"
                per_step = f"{(x['total'] / st) / (base['total'] / max(base['steps'], 1)):.2f}"
            L.append(f"| {LABELS[v]} | {x['total']:.2f} | {x['steps']} | {x['total'] / st * 1e3:.0f} | "
                     f"{x['decoder'] / st * 1e3:.0f} | {x['search'] / st * 1e3:.1f} | {x['encoder']:.2f} | "
                     f"{x['decoder'] / x['total']:.0%} | {x['search'] / x['total']:.1%} | {rest / x['total']:.1%} | "
                     f"{ratio} | {per_step} |")
        L.append("")
        notes = []
        if "ours_1x" in res and "reference" in res:
            same = sum(a is not None and b is not None and a[0] == b[0]
                       for a, b in zip(res["ours_1x"]["best"], res["reference"]["best"]))
            notes.append(f"best hypothesis of ours with candidate_multiple=1 = the reference's in {same} of {args.batch} "
                         "sentences")
        if "ours" in res and "ours_1x" in res:
            same = sum(a == b for a, b in zip(res["ours"]["best"], res["ours_1x"]["best"]))
            better = sum(a is not None and (b is None or a[1] > b[1] + 1e-6)
                         for a, b in zip(res["ours"]["best"], res["ours_1x"]["best"]))
            notes.append(f"2 x beam vs 1 x beam: same best hypothesis in {same} of {args.batch}, a better-scoring one "
                         f"in {better}")
        if notes:
            L.append("Checks: " + "; ".join(notes) + ".\n")
    text = "\n".join(L)
    print(text)
    if args.write:
        old = open(args.write, encoding="utf-8").read()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in old:
            new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END):]
        else:  # right after the constraint-stage table of bench_search.py
            at = old.index("<!-- bench_search:end -->") + len("<!-- bench_search:end -->")
            new = old[:at] + "\n\n" + block + old[at:]
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(new)


if __name__ == "__main__":
    main()
