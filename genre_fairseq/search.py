"""Trie-constrained beam search: a fairseq ``Search`` that only extends hypotheses along a PrefixTree.

Every hypothesis carries one integer state, its position in the tree (see prefix_tree.py). At each step the
allowed tokens of the whole ``bsz x beam`` batch come from tensor operations on the
tree's arrays (no Python loop over hypotheses), and the next states of the chosen
candidates are known without another lookup.

Two ways to restrict the scores, with identical results (``mode``):

- ``"sparse"``: gather the log-probabilities of the allowed tokens only (``N x K`` with
  K the largest fan-out in the batch) and run top-k on those.
- ``"dense"``: write a ``-inf`` mask over the whole vocabulary (``N x V``), as fairseq's
  ``PrefixConstrainedBeamSearch`` does, then top-k.
- ``"auto"`` (default) picks sparse unless K exceeds half the vocabulary, where the dense
  mask does less work (see benchmarks/RESULTS.md).

Candidates per step (``candidate_multiple``). fairseq's generator finalizes the EOS candidates
among the first ``beam_size`` it is given and continues the best ``beam_size`` non-EOS ones. With
``2 * beam_size`` candidates (the default, as fairseq's own ``BeamSearch``), the beam stays full of
live hypotheses after some have finished. With ``beam_size`` candidates (``candidate_multiple=1``,
as fairseq's ``PrefixConstrainedBeamSearch`` and the reference GENRE code), every finished
hypothesis takes a slot of the beam for the rest of the search, so the beam narrows and a better
identifier it would have found can be lost (tests/test_search.py shows one). Scores of live
hypotheses with ``candidate_multiple=1`` equal ``PrefixConstrainedBeamSearch``'s given the same
allowed sets. fairseq's generator reads at most ``2 * beam_size`` candidates: 1 and 2 are the only
values.

Dead ends. A hypothesis with no allowed continuation of finite score (it reached a leaf
without EOS, its prefix was forced off the tree, or ``max_len`` cut it inside a name)
is dropped: it never wins a beam slot over a live hypothesis, as with fairseq's ``-inf``
mask. Instead of ``-inf`` (which turns into NaN positional scores when fairseq finalizes)
such filler candidates carry the finite score :data:`DEAD_SCORE` and the pad token. When
every candidate of a sentence is dead, the sentence is finished with EOS candidates of
score :data:`DEAD_SCORE` rather than running to ``max_len``. :class:`PrefixTreeSequenceGenerator`
then keeps only the finished hypotheses whose tokens are a sequence of the tree (of the
sentence's candidate subtree): a dead filler is recognised by its tokens, which length
normalization (``--lenpen``) cannot move, never by its score. A sentence whose beam holds no
valid identifier returns an empty n-best list, never NaN and never a non-tree sequence.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
from fairseq.search import Search
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

from .prefix_tree import PrefixTree

#: Score of filler candidates and of the EOS that retires a sentence with no live hypothesis.
DEAD_SCORE = -1e30

SEARCH_MODES = ("auto", "sparse", "dense")
#: Candidates per step, in beams: 2 (default, fairseq's BeamSearch) or 1 (the reference's).
CANDIDATE_MULTIPLES = (1, 2)


class PrefixTreeSearch(Search):
    """Beam search whose hypotheses are prefixes of the sequences in a :class:`PrefixTree`."""

    def __init__(self, tgt_dict, tree: PrefixTree, *, mode: str = "auto", candidate_multiple: int = 2):
        super().__init__(tgt_dict)
        if mode not in SEARCH_MODES:
            raise ValueError(f"unknown search mode {mode!r}; expected one of {SEARCH_MODES}")
        if isinstance(candidate_multiple, bool) or candidate_multiple not in CANDIDATE_MULTIPLES:
            raise ValueError(f"candidate_multiple must be 1 (beam_size candidates per step, as the reference) "
                             f"or 2 (2 * beam_size, as fairseq's BeamSearch), got {candidate_multiple!r}")
        self.set_tree(tree)
        self.mode = mode
        self.candidate_multiple = candidate_multiple
        # fairseq stops at max_len instead of asserting when some hypotheses cannot end there.
        self.stop_on_max_len = True
        self._states: Optional[Tensor] = None  # (bsz * beam,) state of every live hypothesis
        self._cand_states: Optional[Tensor] = None  # (bsz, cand) state each candidate leads to

    def set_tree(self, tree) -> None:
        """Search ``tree`` from now on: a PrefixTree, or per-sentence ``candidates.CandidateTrees``."""
        if tree.start_token is not None and tree.start_token != self.eos:
            raise ValueError(
                f"the prefix tree's sequences begin with token {tree.start_token}, but decoding starts "
                f"with the dictionary's EOS {self.eos}"
            )
        if tree.max_token >= self.vocab_size:
            raise ValueError(
                f"the prefix tree holds token id {tree.max_token}, outside the target dictionary "
                f"({self.vocab_size} symbols)"
            )
        self.tree = tree
        self._states = None
        self._cand_states = None

    # fairseq calls these three hooks to keep per-hypothesis state in step with the beam.
    def init_constraints(self, batch_constraints: Optional[Tensor], beam_size: int):
        """Reset the states at the start of a batch (fairseq's constraints are not used)."""
        self._states = None
        self._cand_states = None

    def prune_sentences(self, batch_idxs: Tensor):
        """Keep the candidate states of the sentences that stay in the batch."""
        if self._cand_states is not None:
            self._cand_states = self._cand_states[batch_idxs]

    def update_constraints(self, active_hypos: Tensor):
        """Adopt the states of the candidates fairseq kept: active_hypos is (bsz x beam_size)."""
        if self._cand_states is not None:
            self._states = torch.gather(self._cand_states, 1, active_hypos).view(-1)

    def _states_for(self, prev_output_tokens: Tensor, sentence_ids: Optional[Tensor]) -> Tensor:
        """Node of every hypothesis; recomputed from the tokens when the cached one is stale."""
        states = self._states
        if states is not None and states.numel() == prev_output_tokens.size(0):
            last = prev_output_tokens[:, -1]
            consistent = (states < 0) | ((states > 0) & (self.tree.incoming_tokens(states) == last))
            if bool(consistent.all()):
                return states
        tokens = prev_output_tokens if self.tree.start_token is not None else prev_output_tokens[:, 1:]
        roots = None
        if hasattr(self.tree, "sentence_roots"):  # per-sentence trees (candidates.CandidateTrees)
            assert sentence_ids is not None, "per-sentence trees need fairseq's original_batch_idxs"
            beam = prev_output_tokens.size(0) // sentence_ids.numel()
            roots = self.tree.sentence_roots(sentence_ids.to(prev_output_tokens.device)).repeat_interleave(beam)
        return self.tree.walk(tokens, roots)

    def _use_dense(self, width: int) -> bool:
        if self.mode == "dense":
            return True
        if self.mode == "sparse":
            return False
        return width * 2 > self.vocab_size

    @torch.jit.ignore
    def step(
        self,
        step: int,
        lprobs: Tensor,
        scores: Optional[Tensor],
        prev_output_tokens: Optional[Tensor] = None,
        original_batch_idxs: Optional[Tensor] = None,
    ):
        """Choose the best allowed continuations.

        Args:
            lprobs: (bsz x beam_size x vocab_size) log-probabilities at this step
            scores: (bsz x beam_size x step) cumulative scores so far
            prev_output_tokens: (bsz * beam_size x (step + 1)) tokens so far, starting with BOS
        Returns:
            scores, indices, beams: each (bsz x candidate_multiple * beam_size)
        """
        assert prev_output_tokens is not None
        bsz, beam_size, vocab_size = lprobs.size()
        states = self._states_for(prev_output_tokens, original_batch_idxs).view(bsz, beam_size)
        if step == 0:
            # all hypotheses are the same at the first step: extend only the first one
            lprobs = lprobs[:, :1, :]
            states = states[:, :1]
        n_beams = lprobs.size(1)
        flat_states = states.reshape(-1)
        flat_lprobs = lprobs.reshape(-1, vocab_size)

        _, count = self.tree.child_ranges(flat_states)
        width = int(count.max().item())
        dense = self._use_dense(width)
        if dense:
            allowed = self.tree.allowed_mask(flat_states, vocab_size)
            cand_lprobs = flat_lprobs.masked_fill(~allowed, -math.inf)
        else:
            # Hypotheses often share a node: read each node's children once (>= 1 column keeps
            # shapes valid). Padding columns point at the pad token, which is never a candidate.
            nodes, which = torch.unique(flat_states, return_inverse=True)
            node_tokens, node_next, node_valid = self.tree.candidates(nodes, min_width=1)
            cand_tokens = node_tokens.masked_fill_(~node_valid, self.pad)[which]
            cand_next = node_next[which]
            flat_lprobs[:, self.pad] = -math.inf  # as fairseq's SequenceGenerator already does
            cand_lprobs = flat_lprobs.gather(1, cand_tokens)
        n_cols = cand_lprobs.size(1)
        cand_lprobs = cand_lprobs.view(bsz, n_beams, n_cols)
        if step > 0:
            assert scores is not None
            cand_lprobs.add_(scores[:, :, step - 1].unsqueeze(-1))

        k = self.candidate_multiple * beam_size
        flat = cand_lprobs.view(bsz, -1)
        if flat.size(1) < k:
            flat = torch.cat([flat, flat.new_full((bsz, k - flat.size(1)), -math.inf)], dim=1)
        top_scores, top_idx = torch.topk(flat, k=k, dim=1)
        top_idx = top_idx.clamp(max=n_beams * n_cols - 1)  # padding columns point at a real cell
        beams = torch.div(top_idx, n_cols, rounding_mode="trunc")
        cols = top_idx.fmod(n_cols)
        rows = beams + torch.arange(bsz, device=beams.device).unsqueeze(1) * n_beams
        if dense:
            tokens = cols
            next_states = self.tree.advance(flat_states[rows.view(-1)], cols.reshape(-1)).view(bsz, k)
        else:
            tokens = cand_tokens[rows, cols]
            next_states = cand_next[rows, cols]  # padding columns lead to -1 (and are dead below)

        dead = top_scores == -math.inf
        if bool(dead.any()):
            top_scores = top_scores.masked_fill(dead, DEAD_SCORE)
            tokens = tokens.masked_fill(dead, self.pad)
            beams = beams.masked_fill(dead, 0)
            next_states = next_states.masked_fill(dead, -1)
            # no live hypothesis left in a sentence: finish it now with EOS
            retired = dead.all(dim=1, keepdim=True)
            tokens = torch.where(retired, torch.full_like(tokens, self.eos), tokens)
        self._cand_states = next_states
        return top_scores, tokens, beams


class PrefixTreeSequenceGenerator(SequenceGenerator):
    """fairseq's SequenceGenerator with :class:`PrefixTreeSearch`, minus dead hypotheses."""

    def __init__(self, models, tgt_dict, *, prefix_tree: PrefixTree, search_mode: str = "auto",
                 candidate_multiple: int = 2, **kwargs):
        kwargs["search_strategy"] = PrefixTreeSearch(
            tgt_dict, prefix_tree, mode=search_mode, candidate_multiple=candidate_multiple
        )
        super().__init__(models, tgt_dict, **kwargs)

    def _generate(self, sample, prefix_tokens=None, constraints=None, bos_token=None):
        finalized = super()._generate(
            sample, prefix_tokens=prefix_tokens, constraints=constraints, bos_token=bos_token
        )
        ids = sample.get("id")
        if not torch.is_tensor(ids):  # fairseq numbers the sentences of a batch without ids
            ids = torch.arange(len(finalized))
        return drop_dead(finalized, self.search.tree, ids, self.eos)


def drop_dead(finalized: List[List[dict]], tree, sentence_ids: Tensor, eos: int) -> List[List[dict]]:
    """Keep, of each sentence's finished hypotheses, those whose tokens are a sequence of ``tree``.

    ``tree``: a PrefixTree or per-sentence ``candidates.CandidateTrees``; ``sentence_ids``: the
    ids (``sample["id"]``) of the sentences of ``finalized``, which choose their subtrees.
    """
    rows = [(i, j) for i, hypos in enumerate(finalized) for j in range(len(hypos))]
    if not rows:
        return finalized
    lead = [eos] if tree.start_token is not None else []  # the tree's sequences include the BOS
    seqs = [lead + finalized[i][j]["tokens"].tolist() for i, j in rows]
    lengths = torch.tensor([len(x) for x in seqs])
    width = int(lengths.max())
    tokens = torch.full((len(seqs), width), -1, dtype=torch.long)
    for r, x in enumerate(seqs):
        tokens[r, : len(x)] = torch.tensor(x, dtype=torch.long)
    device = finalized[rows[0][0]][rows[0][1]]["tokens"].device
    sentence_ids = sentence_ids.to(device)
    tokens, lengths = tokens.to(device), lengths.to(device)
    if hasattr(tree, "sentence_roots"):
        states = tree.sentence_roots(sentence_ids[torch.tensor([i for i, _ in rows], device=device)])
    else:
        states = torch.zeros(len(rows), dtype=torch.long, device=device)
    end = torch.full_like(states, -1)
    for t in range(width):
        # a row past its own length would advance by the filler -1: its end state is already kept
        states = tree.advance(states, tokens[:, t].clamp(min=0))
        end = torch.where(lengths == t + 1, states, end)
    keep = (end >= 0).tolist()
    kept: List[List[dict]] = [[] for _ in finalized]
    for (i, j), ok in zip(rows, keep):
        if ok:
            kept[i].append(finalized[i][j])
    return kept
