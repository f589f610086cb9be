"""Pieces shared by the decoding benchmarks (bench_search.py, bench_e2e.py, bench_decode.py).

- :class:`ReferenceTrie`: the reference GENRE/mGENRE ``Trie`` (nested dicts of token ids, ``get``
  walks the prefix recursively, one Python call per hypothesis and token), re-implemented from its
  public behaviour, without the ``append_trie`` extension that mGENRE's decoding does not use;
- :func:`step_inputs`: the random log-probabilities and running scores of one beam-search step;
- :func:`tokenized_names`: token ids of realistic multilingual names (``make_names.py``), as mGENRE's
  256k-symbol dictionary would number them;
- :func:`best_of` and :func:`interleaved_medians`: timing on a shared machine.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for _p in (ROOT, HERE):
    if _p not in sys.path:
        sys.path.insert(0, _p)

EOS = 2
SPM = os.path.join(ROOT, "examples", "quickstart", "model", "spm.model")


class ReferenceTrie:
    """The reference's trie: ``trie_dict`` maps a token to the dict of its continuations.

    ``get(prefix)`` returns the tokens that may follow ``prefix`` (a list of ids, the leading
    BOS/EOS included), or ``[]`` off the trie; like the reference, it recurses on
    ``prefix[1:]``, so a lookup costs O(len(prefix)^2) list copying plus one dict access per token.
    """

    def __init__(self, sequences: Iterable[Sequence[int]] = ()):
        self.trie_dict: dict = {}
        self.len = 0
        for sequence in sequences:
            node = self.trie_dict
            for token in sequence:
                node = node.setdefault(token, {})
            self.len += 1

    def get(self, prefix_sequence: List[int]) -> List[int]:
        return self._get_from_trie(prefix_sequence, self.trie_dict)

    @staticmethod
    def _get_from_trie(prefix_sequence: List[int], trie_dict: dict) -> List[int]:
        if len(prefix_sequence) == 0:
            return list(trie_dict.keys())
        if prefix_sequence[0] in trie_dict:
            return ReferenceTrie._get_from_trie(prefix_sequence[1:], trie_dict[prefix_sequence[0]])
        return []

    def __len__(self) -> int:
        return self.len


def reference_allowed(trie: ReferenceTrie) -> Callable:
    """The reference's ``prefix_allowed_tokens_fn``: ``lambda batch_id, sent: trie.get(sent.tolist())``."""
    return lambda batch_id, sent: trie.get(sent.tolist())


def step_inputs(bsz: int, beam: int, vocab: int, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lprobs bsz x beam x vocab, scores bsz x beam x step) of one search step: random normalized
    log-probabilities and running scores that decrease along the hypothesis. Note that
    PrefixConstrainedBeamSearch adds its 0/-inf mask to lprobs in place: give it its own copy."""
    lprobs = torch.randn(bsz, beam, vocab).log_softmax(-1)
    scores = torch.randn(bsz, beam, step).cumsum(-1) - 5
    return lprobs, scores


def tokenized_names(n: int, vocab: int, seed: int = 0, reserved: int = 8):
    """Token ids of n distinct realistic names (``make_names.generate``), tokenized with the quickstart
    SentencePiece model whose pieces sit at seeded positions of a vocab-sized dictionary (ids
    ``4 .. 4 + reserved - 1`` left free, e.g. for markup tokens). Names with a piece the model does not
    know, and repeats, are replaced by more names. Returns (sorted sequences, piece -> id, names generated)."""
    import make_names
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor()
    sp.Load(SPM)
    rng = np.random.default_rng(seed)
    position = rng.permutation(np.arange(4 + reserved, vocab))[: sp.GetPieceSize()]
    generated = n
    while True:
        _, _, names, _ = make_names.generate(generated, seed, verbose=False)
        pieces = sp.encode([str(x) for x in names], num_threads=1)
        seqs = dict.fromkeys(tuple(int(position[p]) for p in ids) for ids in pieces if ids and 0 not in ids)  # 0: unknown
        if len(seqs) >= n:
            return sorted(list(seqs)[:n]), position, generated
        generated = int(generated * n / max(len(seqs), 1) * 1.05) + 1


def best_of(fn: Callable, reps: int) -> float:
    """Seconds of the fastest of ``reps`` calls after one warm-up (the least disturbed on a shared machine)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def interleaved_medians(fns: Dict[str, Callable], reps: int, warmup: bool = True) -> Dict[str, float]:
    """Median seconds of each function over ``reps`` rounds, the functions interleaved within a round."""
    if warmup:
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
