"""End-to-end constraint stage: one step of EndToEndSearch against the reference approach and unconstrained search.

Setting: ``--batch`` x ``--beam`` hypotheses (64 x 10), sources of ``--source-len`` tokens (128), an
entity tree and a mention tree of ``--names`` realistic names (1M, ``benchmarks/make_names.py``)
tokenized with the quickstart SentencePiece model, its pieces scattered over a 256,000-entry
vocabulary as mGENRE's ids are. Sources are names strung together with filler pieces, so mentions
are everywhere. The hypotheses' prefixes are random walks of the search's own moves (copy, open,
close, entity tokens), so at the measured step they are spread over every mode.

  reference:     fairseq's PrefixConstrainedBeamSearch with a per-hypothesis Python callback that
                 re-scans the whole prefix to find its state (mode, source position, mention start),
                 then walks nested-dict tries (the reference's representation) for the mention and
                 the entity; it applies the same rules as ours (a mention opens only where one can
                 close), so both allow the same tokens (checked: equal top-beam scores);
  ours:          EndToEndSearch.step with the states carried from the previous step;
  unconstrained: fairseq's BeamSearch.step on the same log-probabilities.

Times are medians over ``--reps`` rounds, the variants interleaved within each round (the
machine is shared). One thread.

Usage: python benchmarks/bench_e2e.py [--names 1000000] [--write benchmarks/RESULTS_e2e.md]
"""
import argparse
import os
import platform
import random
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from fairseq.search import BeamSearch, PrefixConstrainedBeamSearch  # noqa: E402

from genre_fairseq.e2e_search import EndToEndSearch, MarkupTokens, mention_tree  # noqa: E402
from genre_fairseq.prefix_tree import PrefixTree  # noqa: E402
from tests.toy import make_dictionary  # noqa: E402

from _common import EOS, ReferenceTrie, interleaved_medians, step_inputs, tokenized_names  # noqa: E402


def make_sources(seqs, position, bsz, length, rng):
    """Sources of ``length`` tokens: names, each followed by 0-3 filler pieces."""
    out = []
    for _ in range(bsz):
        s = []
        while len(s) < length:
            s.extend(seqs[rng.randrange(len(seqs))])
            s.extend(int(position[rng.randrange(len(position))]) for _ in range(rng.randrange(4)))
        out.append(s[:length])
    return out


def reference_callback(sources, mentions: ReferenceTrie, entities: ReferenceTrie, mk: MarkupTokens, max_len: int):
    """The reference approach: per hypothesis, re-scan the prefix to find the state, then walk the dict tries."""
    o, c, b, e = mk.as_tuple()

    def can_end(node, src, p, budget):
        # does a mention continue from node along src[p:] and end within budget more tokens?
        for q in range(p, min(len(src), p + budget)):
            node = node.get(src[q])
            if node is None:
                return False
            if EOS in node:
                return True
        return False

    def allowed(batch_id, sent):
        src = sources[batch_id]
        toks = sent.tolist()[1:]
        mode, pos, mstart, ent = "o", 0, 0, None
        for t in toks:  # re-scan the whole prefix
            if mode == "o":
                if t == o:
                    mode, mstart = "m", pos
                else:
                    pos += 1
            elif mode == "m":
                if t == c:
                    mode = "c"
                else:
                    pos += 1
            elif mode == "c":
                mode, ent = "e", entities.trie_dict[EOS]
            elif mode == "e":
                if t == e:
                    mode = "o"
                else:
                    ent = ent[t]
        if mode == "o":
            out = []
            if pos < len(src):
                out.append(src[pos])
                if can_end(mentions.trie_dict, src, pos, max_len):
                    out.append(o)
            else:
                out.append(EOS)
            return out
        if mode == "m":
            node = mentions.trie_dict
            for t in src[mstart:pos]:
                node = node[t]
            out = []
            if pos < len(src) and can_end(node, src, pos, max_len - (pos - mstart)):
                out.append(src[pos])
            if EOS in node:
                out.append(c)
            return out
        if mode == "c":
            return [b]
        return [e if t == EOS else t for t in ent]

    return allowed


def random_prefixes(search, bsz, beam, steps, rng_seed):
    """Prefixes of bsz x beam hypotheses after ``steps`` random moves, and the search's states."""
    g = torch.Generator().manual_seed(rng_seed)
    n = bsz * beam
    rows = torch.arange(bsz).repeat_interleave(beam)
    states = search.initial_states(n)
    prev = torch.full((n, 1), EOS, dtype=torch.long)
    weights = torch.tensor([1.0, 0.12, 0.5, 1.0])
    for _ in range(steps):
        tokens, valid, ent_next = search.expand(states, rows)
        w = torch.cat([weights.expand(n, 4), torch.ones(n, tokens.size(1) - 4)], dim=1) * valid
        w[w.sum(1) == 0, 0] = 1.0  # a finished hypothesis: pad
        cols = torch.multinomial(w, 1, generator=g).squeeze(1)
        tok = tokens.gather(1, cols.unsqueeze(1)).squeeze(1)
        states = search.transition(states, rows, cols, tok, ent_next)
        prev = torch.cat([prev, tok.unsqueeze(1)], dim=1)
    return prev, states


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1_000_000, help="distinct names in the entity and mention trees")
    parser.add_argument("--vocab", type=int, default=256_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--source-len", type=int, default=128)
    parser.add_argument("--steps", default="1,24,96", help="decoding steps to measure (comma-separated)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--write", metavar="MD", help="write the results section to this Markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    seqs, position, generated = tokenized_names(args.names, args.vocab)
    t_tok = time.perf_counter() - t0
    d = make_dictionary(args.vocab - 4)
    mk = MarkupTokens(4, 5, 6, 7)
    t0 = time.perf_counter()
    entity_tree = PrefixTree.from_sequences(([EOS, *s, EOS] for s in seqs), start_token=EOS)
    m_tree = mention_tree(seqs, d)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    mentions = ReferenceTrie([*s, EOS] for s in seqs)
    entities = ReferenceTrie([EOS, *s, EOS] for s in seqs)
    t_dict = time.perf_counter() - t0

    bsz, beam, vocab = args.batch, args.beam, args.vocab
    rng = random.Random(0)
    sources = make_sources(seqs, position, bsz, args.source_len, rng)
    ours = EndToEndSearch(d, entity_tree, mk, mention_tree=m_tree)
    t0 = time.perf_counter()
    ours.set_batch(sources)
    t_batch = time.perf_counter() - t0
    reference = PrefixConstrainedBeamSearch(d, reference_callback(sources, mentions, entities, mk, ours.max_mention_len))
    plain = BeamSearch(d)
    ids = torch.arange(bsz)

    rows = []
    for step in [int(s) for s in args.steps.split(",")]:
        prev, states = random_prefixes(ours, bsz, beam, step, rng_seed=step)
        modes = torch.bincount(states.mode, minlength=5).tolist()
        lprobs, scores = step_inputs(bsz, beam, vocab, step)

        def run_ours():
            ours._states = states  # as update_constraints() leaves them after the previous step
            return ours.step(step, lprobs, scores, prev, ids)

        lprobs_ref = lprobs.clone()  # the reference adds its 0/-inf mask in place: give it its own copy

        def run_reference():
            return reference.step(step, lprobs_ref, scores, prev, ids)

        def run_plain():
            return plain.step(step, lprobs, scores)

        callback = reference.prefix_allowed_tokens_fn

        def run_callbacks():  # the reference's Python part alone, without its vocabulary-wide mask
            for i in range(bsz * beam):
                callback(i // beam, prev[i])

        # the same allowed sets: the best beam scores agree (the reference keeps beam, ours 2 x beam)
        r_scores = run_reference()[0]
        o_scores = run_ours()[0][:, :beam]
        live = r_scores > -1e20
        assert torch.allclose(o_scores[live], r_scores[live]), "reference and ours disagree"
        fns = {"reference": run_reference, "callbacks": run_callbacks, "ours": run_ours, "unconstrained": run_plain}
        med = interleaved_medians(fns, args.reps)
        rows.append((step, modes, med))
        print(f"step {step}: modes {modes} reference {med['reference'] * 1e3:.1f} ms (callbacks {med['callbacks'] * 1e3:.1f}), ours {med['ours'] * 1e3:.2f} ms, "
              f"unconstrained {med['unconstrained'] * 1e3:.1f} ms; reference/ours {med['reference'] / med['ours']:.0f}x, "
              f"unconstrained/ours {med['unconstrained'] / med['ours']:.1f}x", flush=True)

    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = ["## End-to-end constraint stage (benchmarks/bench_e2e.py)", ""]
    cmd = " ".join(["python", "benchmarks/bench_e2e.py"] + (argv if argv is not None else sys.argv[1:]))
    lines.append(f"Command: `{cmd}`; machine: {platform.machine()}, {os.cpu_count()} cores (shared), torch "
                 f"{torch.__version__}, 1 thread, CPU; load after the run: `{load}`.")
    lines.append("")
    lines.append(f"Setting: {bsz} x {beam} hypotheses, sources of {args.source_len} tokens, vocab {vocab:,}; "
                 f"entity and mention trees of {len(seqs):,} distinct tokenized names (the first of {generated:,} names "
                 f"generated by make_names.py whose quickstart SentencePiece pieces are all known, {t_tok:.0f} s to make); both trees built in {t_build:.1f} s, "
                 f"the reference's two nested-dict tries in {t_dict:.1f} s; per batch, EndToEndSearch.set_batch "
                 f"(span table) {t_batch * 1e3:.0f} ms. Medians of {args.reps} interleaved rounds, ms per step. "
                 "Modes: hypotheses outside / in a mention / after `}` / in an entity / done at that step.")
    lines.append("")
    lines.append("| step | modes (o/m/c/e/d) | reference | its callbacks alone | ours | unconstrained | reference / ours | "
                 "callbacks / ours | unconstrained / ours |")
    lines.append("| ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for step, modes, med in rows:
        lines.append(f"| {step} | {'/'.join(map(str, modes))} | {med['reference'] * 1e3:.1f} | {med['callbacks'] * 1e3:.1f} | "
                     f"{med['ours'] * 1e3:.2f} | {med['unconstrained'] * 1e3:.1f} | {med['reference'] / med['ours']:.0f}x | "
                     f"{med['callbacks'] / med['ours']:.0f}x | {med['unconstrained'] / med['ours']:.1f}x |")
    lines.append("")
    lines.append("Targets: >= 100x the reference approach, no slower than the unconstrained step.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
