"""End-to-end entity linking: a fairseq ``Search`` that copies the source and marks ``{ m } [ id ]``.

The output of an end-to-end model is its source, token by token, with each linked mention marked
``{ mention } [ identifier ]`` (GENRE's markup). :class:`EndToEndSearch` allows, at every step,
exactly the tokens that keep the output valid (docs/end_to_end.md gives the rules):

====================  ===========================================================================
mode                  allowed tokens
====================  ===========================================================================
OUTSIDE               the next source token; ``{`` where a mention starts that fits the rest
                      of the source (any 1..max_mention_len tokens; with a mention tree, a
                      known mention); EOS once the whole source is copied
MENTION (after ``{``) the next source token while the mention can still end; ``}`` after at
                      least one token, where a mention ends (with a mention tree: a known one)
CLOSED (after ``}``)  ``[``
ENTITY (after ``[``)  the entity tree's children, the tree's final EOS written as ``]``; after
                      ``]`` the mode is OUTSIDE again
DONE (after EOS)      nothing
====================  ===========================================================================

State. Every hypothesis carries four integers, held as ``(bsz * beam,)`` tensors: the next source
position, the mode, the position where the open mention starts, and the entity-tree state.
Allowed sets and next states of the whole batch come from tensor operations (no loop over
hypotheses, no re-scan of the prefix). The mention tree is walked once per batch, from every
source position, into a span table ``(sentence, start, length) -> is a mention``; a step reads
it with a gather, so a mention opens only where one can close, and grows only while one can.

Trees. The entity tree is the single-identifier search's tree (``genre-trie build``): its
sequences are ``[eos] + tokens(identifier) + [eos]`` (or without the start token), the
identifier tokenized as a word of its own (GPT-2 BPE: with a leading space, ``" Berlin"``;
SentencePiece: ``"▁Berlin"``). Inside markup the identifier follows ``" [ "``, where both
tokenizers produce exactly those tokens (a space is a word boundary for both), so the tree's
sequences are used unchanged. The mention tree (:func:`mention_tree`, or ``genre-trie build
--mentions``) holds each known mention's tokens as they appear inside a sentence, followed by EOS
as the end-of-mention marker.

Candidates. With ``span_candidates`` (see :meth:`EndToEndSearch.set_batch`), the identifiers
after ``[`` are those of the mention's own candidate set, compiled into the per-batch forest of
:class:`~genre_fairseq.candidates.CandidateTrees`. Each span is a forest "sentence": its root
is looked up in a ``(sentence, start, length)`` table made once per batch, so finding the
candidates of a closed mention is one gather.

Dead ends are handled as in :mod:`genre_fairseq.search`: filler candidates score
:data:`~genre_fairseq.search.DEAD_SCORE`, and :class:`EndToEndSequenceGenerator` drops them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from fairseq.search import Search
from fairseq.sequence_generator import SequenceGenerator
from torch import Tensor

from .candidates import CandidateSet, CandidateTrees, resolve_candidates
from .marginalize import normalized_score, rank_entities
from .prefix_tree import PrefixTree, dictionary_fingerprint
from .search import DEAD_SCORE

#: A cumulative (not length-normalized) score at or below this belongs to a dead filler.
DEAD_THRESHOLD = DEAD_SCORE / 2

__all__ = ["MarkupTokens", "EndToEndSearch", "EndToEndSequenceGenerator", "LinkedSpan", "mention_candidates", "mention_tree",
           "parse_output", "span_entities", "OUTSIDE", "MENTION", "CLOSED", "ENTITY", "DONE"]

OUTSIDE, MENTION, CLOSED, ENTITY, DONE = range(5)
# Candidate columns: the four fixed moves, then the entity tree's children.
_COPY, _OPEN, _CLOSE, _MISC, _ENT0 = range(5)


@dataclass(frozen=True)
class MarkupTokens:
    """Token ids of ``{`` ``}`` ``[`` ``]`` in the target dictionary."""

    open_mention: int
    close_mention: int
    open_entity: int
    close_entity: int

    @classmethod
    def from_dictionary(cls, tgt_dict, symbols: Sequence[str]) -> "MarkupTokens":
        """Look up the four markup symbols (e.g. ``["▁{", "▁}", "▁[", "▁]"]``); ``ValueError`` if one is missing."""
        ids = []
        for s in symbols:
            i = tgt_dict.index(s)
            if i == tgt_dict.unk():
                raise ValueError(f"markup symbol {s!r} is not in the target dictionary")
            ids.append(i)
        return cls(*ids)

    def as_tuple(self) -> Tuple[int, int, int, int]:
        """The four ids in the order ``{ } [ ]``."""
        return (self.open_mention, self.close_mention, self.open_entity, self.close_entity)


def mention_tree(mentions: Sequence[Sequence[int]], tgt_dict) -> PrefixTree:
    """A mention tree: each mention's token ids (as inside a sentence) followed by EOS. A lone
    leading SentencePiece "▁" (a mention encoded alone, as ``sp.encode("Berlin")`` gives
    ``▁ B er l in``) is left out: inside a text it is the space before the mention, and the markup
    opens after it (docs/end_to_end.md). ``genre-trie build --mentions`` applies the same rule."""
    eos = tgt_dict.eos()
    lone = tgt_dict.index("\u2581")
    strip = lone != tgt_dict.unk()
    seqs = [list(m[1:] if strip and len(m) > 1 and m[0] == lone else m) + [eos] for m in mentions if len(m)]
    return PrefixTree.from_sequences(seqs, dictionary_fingerprint=dictionary_fingerprint(tgt_dict))


class _State(NamedTuple):
    pos: Tensor  # next source position
    mode: Tensor
    mstart: Tensor  # source position of the open mention's first token
    estate: Tensor  # entity-tree (or candidate-forest) state (ENTITY)

    def index(self, idx: Tensor) -> "_State":
        return _State(*(t[idx] for t in self))

    def view(self, *shape) -> "_State":
        return _State(*(t.reshape(*shape) for t in self))


class EndToEndSearch(Search):
    """Beam search over GENRE's end-to-end markup of the source (see the module docstring)."""

    def __init__(self, tgt_dict, entity_tree: PrefixTree, markup: MarkupTokens, *,
                 mention_tree: Optional[PrefixTree] = None, max_mention_len: int = 32):
        super().__init__(tgt_dict)
        fp = dictionary_fingerprint(tgt_dict)
        for name, tree in (("entity", entity_tree), ("mention", mention_tree)):
            if tree is None:
                continue
            if tree.dictionary_fingerprint is not None and tree.dictionary_fingerprint != fp:
                raise ValueError(f"the {name} tree was built for another dictionary (fingerprint "
                                 f"{tree.dictionary_fingerprint[:12]}, the model's is {fp[:12]}): rebuild it with the model's dict.txt")
            if tree.max_token >= self.vocab_size:
                raise ValueError(f"the {name} tree holds token id {tree.max_token}, outside the target dictionary "
                                 f"({self.vocab_size} symbols)")
        if entity_tree.start_token is not None and entity_tree.start_token != self.eos:
            raise ValueError(f"the entity tree's sequences begin with token {entity_tree.start_token}, not EOS {self.eos}")
        if mention_tree is not None and mention_tree.start_token is not None:
            raise ValueError("the mention tree must not record a start token (build it with e2e_search.mention_tree)")
        for t in markup.as_tuple():
            if not 0 <= t < self.vocab_size or t in (self.eos, self.pad):
                raise ValueError(f"markup token id {t} is not a word of the target dictionary")
        if len(set(markup.as_tuple())) != 4:
            raise ValueError(f"the four markup tokens must differ, got {markup.as_tuple()}")
        if max_mention_len < 1:
            raise ValueError(f"max_mention_len must be >= 1, got {max_mention_len}")
        self.entity_tree = entity_tree
        self.mention_tree = mention_tree
        self.markup = markup
        self.max_mention_len = max_mention_len
        self.stop_on_max_len = True
        self._tree = entity_tree  # the main tree, or this batch's CandidateTrees
        self._src: Optional[Tensor] = None
        self._cand: Optional[_State] = None
        self._states: Optional[_State] = None

    # ------------------------------------------------------------------ per batch
    def set_batch(self, sources: Sequence[Sequence[int]], ids: Optional[Sequence[int]] = None,
                  span_candidates: Optional[Dict[Tuple[int, int, int], CandidateSet]] = None) -> None:
        """The source tokens (without EOS or padding) of each sentence of the next batch.

        ``ids`` are the ids fairseq passes as ``original_batch_idxs`` (``sample["id"]``; default
        0..n-1). ``span_candidates`` maps ``(sentence index in sources, start, end)`` (token
        positions, end exclusive) to the candidate set of that mention; spans missing or without
        sequences use the whole entity tree. Candidates need a mention tree.
        """
        n = len(sources)
        if n == 0:
            raise ValueError("an empty batch")
        for i, s in enumerate(sources):
            if len(s) == 0:
                raise ValueError(f"source {i} is empty: there is nothing to link")
        if span_candidates and self.mention_tree is None:
            raise ValueError("per-mention candidates need a mention tree (the spans a mention may cover)")
        length = max(len(s) for s in sources)
        src = torch.full((n, length + 1), self.pad, dtype=torch.long)
        for i, s in enumerate(sources):
            src[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        self._src = src
        self._len = torch.tensor([len(s) for s in sources], dtype=torch.long)
        ids_t = torch.arange(n) if ids is None else torch.as_tensor(list(ids), dtype=torch.long)
        self._id_order, self._id_sorted = None, None
        if ids is not None:
            self._id_sorted, self._id_order = torch.sort(ids_t)
        is_mention = self.span_table(sources)
        m = self.max_mention_len
        width = length + 1
        # can_grow[b, s, l]: some mention starting at s is longer than l
        longer = torch.flip(torch.cumsum(torch.flip(is_mention.long(), [2]), 2), [2]) - is_mention.long()
        self._is_mention = is_mention
        self._can_grow = longer > 0
        start_tok = self.entity_tree.start_token
        self._tree = self.entity_tree
        self._span_start = None
        if span_candidates:
            sets = {}
            for (i, a, b), cs in span_candidates.items():
                if not (0 <= i < n and 0 <= a < b <= len(sources[i]) and b - a <= m):
                    raise ValueError(f"candidate span {(i, a, b)} is outside its source or longer than max_mention_len {m}")
                sets[(i * width + a) * (m + 1) + (b - a)] = cs
            self._tree = CandidateTrees(self.entity_tree, sets)
            roots = self._tree.sentence_roots(torch.arange(n * width * (m + 1)))
            if start_tok is not None:
                roots = self._tree.advance(roots, torch.full_like(roots, start_tok))
            self._span_start = roots.view(n, width, m + 1)
        root = self.entity_tree.root_states(1)
        self._entity_start = int(self.entity_tree.advance(root, torch.full_like(root, start_tok))) \
            if start_tok is not None else 0
        self._states = None
        self._cand = None

    def span_table(self, sources: Sequence[Sequence[int]]) -> Tensor:
        """``table[i, start, l]``: may tokens ``start .. start + l - 1`` of source i be a mention?
        (n x (longest + 1) x (max_mention_len + 1) booleans)"""
        n = len(sources)
        length = max(len(s) for s in sources)
        src = torch.full((n, length + 1), self.pad, dtype=torch.long)
        for i, s in enumerate(sources):
            src[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
        # The span table: may tokens start .. start + l - 1 of a sentence form a mention (l = 0..m)?
        # Walking the mention tree from every start once per batch lets each step decide with a
        # gather whether a mention may open, grow or close, and never open one that cannot close.
        m = self.max_mention_len
        width = length + 1
        is_mention = torch.zeros(n, width, m + 1, dtype=torch.bool)
        lens = lengths.view(n, 1, 1)
        starts = torch.arange(width).view(1, width, 1)
        ls = torch.arange(m + 1).view(1, 1, m + 1)
        inside = (ls >= 1) & (starts + ls <= lens)
        if self.mention_tree is not None:
            mt = self.mention_tree
            padded = torch.cat([src, torch.full((n, m), self.pad, dtype=torch.long)], dim=1)
            flat_mention = is_mention.view(n * width, m + 1)
            live = torch.arange(n * width)  # (sentence, start) pairs still inside some mention
            states = mt.root_states(live.numel())
            for l in range(1, m + 1):
                sent, start = torch.div(live, width, rounding_mode="floor"), live % width
                states = mt.advance(states, padded[sent, start + l - 1])
                keep = states >= 0
                live, states = live[keep], states[keep]
                if live.numel() == 0:
                    break
                flat_mention[live, l] = mt.advance(states, torch.full_like(states, self.eos)) >= 0
            is_mention &= inside
        else:
            is_mention = inside
        return is_mention

    def _rows(self, original_batch_idxs: Optional[Tensor], bsz: int) -> Tensor:
        if self._id_sorted is None or original_batch_idxs is None:
            return torch.arange(bsz) if original_batch_idxs is None else original_batch_idxs.long().cpu()
        ids = original_batch_idxs.long().cpu()
        where = torch.searchsorted(self._id_sorted, ids)
        return self._id_order[where]

    # fairseq calls these three hooks to keep per-hypothesis state in step with the beam.
    def init_constraints(self, batch_constraints: Optional[Tensor], beam_size: int):
        """Reset the states at the start of a batch (fairseq's constraints are not used)."""
        self._states = None
        self._cand = None

    def prune_sentences(self, batch_idxs: Tensor):
        """Keep the candidate states of the sentences that stay in the batch."""
        if self._cand is not None:
            self._cand = self._cand.index(batch_idxs.cpu())

    def update_constraints(self, active_hypos: Tensor):
        """Adopt the states of the candidates fairseq kept: active_hypos is (bsz x beam_size)."""
        if self._cand is not None:
            active_hypos = active_hypos.cpu()
            self._states = _State(*(torch.gather(t, 1, active_hypos).view(-1) for t in self._cand))

    # ------------------------------------------------------------------ the constraint
    def initial_states(self, n: int) -> _State:
        """``n`` hypotheses before the first output token."""
        z = torch.zeros(n, dtype=torch.long)
        return _State(z, z.clone(), z.clone(), z.clone())

    def _moves(self, states: _State, rows: Tensor):
        """The four fixed moves of every hypothesis (N x 4 tokens, valid) and the entity moves of
        the hypotheses in an entity (their rows; tokens, next states, valid: each rows x K)."""
        pos, mode, mstart, estate = states
        m = self.max_mention_len
        # a dead filler's state may have moved past its source (it took a disallowed move): read
        # within bounds; it scores -inf whatever it is allowed
        pos = pos.clamp(max=self._src.size(1) - 1)
        mstart = mstart.clamp(max=self._src.size(1) - 1)
        nxt = self._src[rows, pos]
        more = pos < self._len[rows]
        outside, inside = mode == OUTSIDE, mode == MENTION
        span_len = torch.where(inside, pos - mstart, torch.zeros_like(pos)).clamp(min=0, max=m)
        start = torch.where(inside, mstart, pos)
        copy_ok = more & (outside | (inside & self._can_grow[rows, start, span_len]))
        open_ok = outside & self._can_grow[rows, pos, torch.zeros_like(pos)]
        close_ok = inside & self._is_mention[rows, start, span_len]
        misc_ok = (outside & ~more) | (mode == CLOSED)
        misc_tok = torch.where(outside, torch.full_like(pos, self.eos), torch.full_like(pos, self.markup.open_entity))
        fixed_tok = torch.stack([
            torch.where(more, nxt, torch.full_like(nxt, self.pad)),
            torch.full_like(pos, self.markup.open_mention),
            torch.full_like(pos, self.markup.close_mention),
            misc_tok,
        ], dim=1)
        fixed_ok = torch.stack([copy_ok, open_ok, close_ok, misc_ok], dim=1)
        ent_rows = torch.nonzero(mode == ENTITY).view(-1)
        if ent_rows.numel():
            # hypotheses often share a node: read each node's children once
            nodes, which = torch.unique(estate[ent_rows], return_inverse=True)
            e_tok, e_next, e_ok = self._tree.candidates(nodes, min_width=1)
            e_tok = torch.where(e_tok == self.eos, torch.full_like(e_tok, self.markup.close_entity), e_tok)
            e_tok, e_next, e_ok = e_tok[which], e_next[which], e_ok[which]
        else:
            e_tok = torch.zeros((0, 1), dtype=torch.long)
            e_next, e_ok = torch.full_like(e_tok, -1), torch.zeros((0, 1), dtype=torch.bool)
        return fixed_tok.masked_fill(~fixed_ok, self.pad), fixed_ok, ent_rows, e_tok.masked_fill(~e_ok, self.pad), e_next, e_ok

    def expand(self, states: _State, rows: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Allowed moves of each hypothesis: ``(tokens, valid, entity_next)``.

        ``rows`` is each hypothesis's sentence in :meth:`set_batch`'s sources. ``tokens`` and
        ``valid`` are N x (4 + K): columns copy, ``{``, ``}``, EOS-or-``[``, then the entity
        tree's K children (EOS written as ``]``); ``entity_next`` (N x K) the children's states.
        """
        fixed_tok, fixed_ok, ent_rows, e_tok, e_next, e_ok = self._moves(states, rows)
        n, width = fixed_tok.size(0), e_tok.size(1)
        ent_tok = torch.full((n, width), self.pad, dtype=torch.long)
        ent_next = torch.full((n, width), -1, dtype=torch.long)
        ent_ok = torch.zeros((n, width), dtype=torch.bool)
        ent_tok[ent_rows], ent_next[ent_rows], ent_ok[ent_rows] = e_tok, e_next, e_ok
        return torch.cat([fixed_tok, ent_tok], dim=1), torch.cat([fixed_ok, ent_ok], dim=1), ent_next

    def transition(self, states: _State, rows: Tensor, cols: Tensor, tokens: Tensor, ent_next: Tensor) -> _State:
        """The states after each hypothesis takes move ``cols`` (one per hypothesis, columns of :meth:`expand`)."""
        pos, mode, mstart, estate = states
        is_copy, is_open, is_close, is_misc = cols == _COPY, cols == _OPEN, cols == _CLOSE, cols == _MISC
        is_ent = cols >= _ENT0
        e_next = torch.full_like(pos, -1)
        if ent_next.size(1):
            col = (cols - _ENT0).clamp(min=0, max=ent_next.size(1) - 1)
            e_next = torch.where(is_ent, ent_next.gather(1, col.unsqueeze(1)).squeeze(1), e_next)
        closed_entity = is_ent & (tokens == self.markup.close_entity) & (self._tree.incoming_tokens(e_next) == self.eos)
        enter = is_misc & (mode == CLOSED)
        new_mode = torch.where(is_open, torch.full_like(mode, MENTION), mode)
        new_mode = torch.where(is_close, torch.full_like(mode, CLOSED), new_mode)
        new_mode = torch.where(is_misc & (mode == OUTSIDE), torch.full_like(mode, DONE), new_mode)
        new_mode = torch.where(enter, torch.full_like(mode, ENTITY), new_mode)
        new_mode = torch.where(closed_entity, torch.full_like(mode, OUTSIDE), new_mode)
        new_mstart = torch.where(is_open, pos, mstart)
        if self._span_start is not None:
            span_len = (pos - mstart).clamp(0, self.max_mention_len)
            start_state = self._span_start[rows, mstart.clamp(max=self._span_start.size(1) - 1), span_len]
        else:
            start_state = torch.full_like(estate, self._entity_start)
        new_estate = torch.where(enter, start_state, estate)
        new_estate = torch.where(is_ent, e_next, new_estate)
        return _State(pos + is_copy.long(), new_mode, new_mstart, new_estate)

    @torch.jit.ignore
    def step(self, step: int, lprobs: Tensor, scores: Optional[Tensor],
             prev_output_tokens: Optional[Tensor] = None, original_batch_idxs: Optional[Tensor] = None):
        """Choose the best allowed continuations.

        Args:
            lprobs: (bsz x beam_size x vocab_size) log-probabilities at this step
            scores: (bsz x beam_size x step) cumulative scores so far
        Returns:
            scores, indices, beams: each (bsz x 2 * beam_size)
        """
        if self._src is None:
            raise RuntimeError("EndToEndSearch.set_batch must be called before decoding a batch")
        bsz, beam_size, vocab_size = lprobs.size()
        rows_b = self._rows(original_batch_idxs, bsz)
        if step == 0:
            n_beams = 1  # all hypotheses are the same at the first step: extend only the first
            states = self.initial_states(bsz)
        else:
            states = self._states
            if states is None or states.pos.numel() != bsz * beam_size:
                raise RuntimeError("EndToEndSearch lost track of its hypotheses (fairseq did not call update_constraints)")
            n_beams = beam_size
        rows = rows_b.repeat_interleave(n_beams)
        fixed_tok, fixed_ok, ent_rows, e_tok, e_next, e_ok = self._moves(states, rows)
        # Read the log-probabilities of the allowed tokens only, by flat index: copying whole
        # vocabulary-wide rows would cost more than the rest of the step.
        # States live on the CPU; only the few scores read here cross from the model's device.
        device = lprobs.device
        flat = lprobs.reshape(-1)
        base = (torch.arange(bsz).unsqueeze(1) * beam_size + torch.arange(n_beams).unsqueeze(0)).view(-1, 1) * vocab_size
        n = fixed_tok.size(0)
        fixed = flat[(base + fixed_tok).to(device)].float().cpu().masked_fill_(~fixed_ok, -math.inf)
        # Entity moves: each hypothesis's best 2 x beam children first (exact: the overall best are
        # among them), so the wide fan-out near the tree's root is read once, never padded to N rows.
        k_ent = min(2 * beam_size, e_tok.size(1))
        ent_scores = fixed.new_full((n, k_ent), -math.inf)
        ent_tok = torch.full((n, k_ent), self.pad, dtype=torch.long)
        ent_next = torch.full((n, k_ent), -1, dtype=torch.long)
        if ent_rows.numel():
            es = flat[(base[ent_rows] + e_tok).to(device)].float().cpu().masked_fill_(~e_ok, -math.inf)
            top_es, top_ec = torch.topk(es, k=k_ent, dim=1)
            ent_scores[ent_rows] = top_es
            ent_tok[ent_rows] = e_tok.gather(1, top_ec)
            ent_next[ent_rows] = e_next.gather(1, top_ec)
        tokens = torch.cat([fixed_tok, ent_tok], dim=1)
        cand = torch.cat([fixed, ent_scores], dim=1)
        n_cols = cand.size(1)
        cand = cand.view(bsz, n_beams, n_cols)
        if step > 0:
            assert scores is not None
            cand = cand + scores[:, :, step - 1].float().cpu().unsqueeze(-1)
            # A filler kept in the beam stays dead: its EOS must not count as a finished hypothesis,
            # or fairseq would close the sentence before its live hypotheses end.
            cand = cand.masked_fill_(cand <= DEAD_THRESHOLD, -math.inf)
        k = 2 * beam_size  # as fairseq's BeamSearch: EOS candidates may fill up to half
        per_sentence = cand.view(bsz, -1)
        if per_sentence.size(1) < k:
            per_sentence = torch.cat([per_sentence, per_sentence.new_full((bsz, k - per_sentence.size(1)), -math.inf)], dim=1)
        top_scores, top_idx = torch.topk(per_sentence, k=k, dim=1)
        top_idx = top_idx.clamp(max=n_beams * n_cols - 1)
        beams = torch.div(top_idx, n_cols, rounding_mode="trunc")
        cols = top_idx.fmod(n_cols)
        hyp = (beams + torch.arange(bsz).unsqueeze(1) * n_beams).view(-1)
        chosen_tokens = tokens[hyp, cols.view(-1)]
        nxt = self.transition(states.index(hyp), rows[hyp], cols.view(-1), chosen_tokens, ent_next[hyp])
        out_tokens = chosen_tokens.view(bsz, k)
        dead = top_scores == -math.inf
        if bool(dead.any()):
            top_scores = top_scores.masked_fill(dead, DEAD_SCORE)
            out_tokens = out_tokens.masked_fill(dead, self.pad)
            beams = beams.masked_fill(dead, 0)
            retired = dead.all(dim=1, keepdim=True)
            out_tokens = torch.where(retired, torch.full_like(out_tokens, self.eos), out_tokens)
        self._cand = nxt.view(bsz, k)
        return top_scores.to(device=device, dtype=lprobs.dtype), out_tokens.to(device), beams.to(device)


@dataclass
class LinkedSpan:
    """One linked mention of an output: source token positions (end exclusive) and identifier tokens.

    ``at`` is the output position of the identifier's first token (its ``]`` is at
    ``at + len(entity_tokens)``), for reading the span's own scores from the hypothesis.
    """

    start: int
    end: int
    entity_tokens: List[int]
    at: int = field(default=-1, compare=False)


def parse_output(source: Sequence[int], output: Sequence[int], markup: MarkupTokens, eos: int) -> Optional[List[LinkedSpan]]:
    """The linked spans of an output (token ids, optionally ending with EOS), or None if it is not valid markup.

    A source token equal to a markup token makes the output ambiguous; the parse then tries the
    markup reading first and backtracks, so a valid output always gets a parse.
    """
    out = list(output)
    if out and out[-1] == eos:
        out = out[:-1]
    o, c, b, e = markup.as_tuple()
    src = list(source)
    n_out = len(out)

    def outside(i: int, p: int) -> Optional[List[LinkedSpan]]:
        while True:
            if i == n_out:
                return [] if p == len(src) else None
            t = out[i]
            if t == o and p < len(src):
                rest = mention(i + 1, p, p)
                if rest is not None:
                    return rest
            if p < len(src) and t == src[p]:
                i, p = i + 1, p + 1
                continue
            return None

    def mention(i: int, p: int, start: int) -> Optional[List[LinkedSpan]]:
        while i < n_out:
            t = out[i]
            if t == c and p > start and i + 1 < n_out and out[i + 1] == b:
                j = i + 2
                while j < n_out:
                    if out[j] == e:
                        rest = outside(j + 1, p)
                        if rest is not None:
                            return [LinkedSpan(start, p, out[i + 2: j], i + 2)] + rest
                    j += 1
            if p < len(src) and t == src[p]:
                i, p = i + 1, p + 1
                continue
            return None
        return None

    return outside(0, 0)


def mention_candidates(search: EndToEndSearch, sources: Sequence[Sequence[int]], mention_text, *, mention_table, k: int,
                       encode, name_table=None, identifier_format: Optional[str] = None) -> Dict[Tuple[int, int, int], CandidateSet]:
    """Per-span candidates for :meth:`EndToEndSearch.set_batch`: every span the mention tree allows, its
    exact text (``mention_text(token ids) -> str``) looked up in ``mention_table`` (top ``k``).

    ``encode``, ``name_table`` and ``identifier_format`` are those of
    :func:`~genre_fairseq.candidates.resolve_candidates`. A text is resolved once per batch.
    """
    if search.mention_tree is None:
        raise ValueError("per-mention candidates need a mention tree (the spans a mention may cover)")
    table = search.span_table(sources)
    out: Dict[Tuple[int, int, int], CandidateSet] = {}
    by_text: Dict[str, CandidateSet] = {}
    for i, a, n in torch.nonzero(table).tolist():
        text = mention_text(list(sources[i][a: a + n]))
        cs = by_text.get(text)
        if cs is None:
            cs = by_text[text] = resolve_candidates(None, text, encode=encode, tree=search.entity_tree,
                                                   name_table=name_table, identifier_format=identifier_format,
                                                   mention_table=mention_table, k=k)
        if cs.restricted:
            out[(i, a, a + n)] = cs
    return out


class EndToEndSequenceGenerator(SequenceGenerator):
    """fairseq's SequenceGenerator with :class:`EndToEndSearch`; each hypothesis gets its ``"spans"``.

    Sources come from ``sample["net_input"]["src_tokens"]`` (padding and the final EOS removed);
    ``span_candidates`` (optional) is a function ``sources -> {(i, start, end):
    CandidateSet}`` called once per batch. Give ``max_len_b`` large enough for the markup
    (about the source length plus 4 tokens and an identifier per mention).
    """

    def __init__(self, models, tgt_dict, *, entity_tree: PrefixTree, markup: MarkupTokens,
                 mention_tree: Optional[PrefixTree] = None, max_mention_len: int = 32,
                 span_candidates=None, **kwargs):
        kwargs["search_strategy"] = EndToEndSearch(tgt_dict, entity_tree, markup, mention_tree=mention_tree,
                                                   max_mention_len=max_mention_len)
        self.span_candidates = span_candidates
        super().__init__(models, tgt_dict, **kwargs)

    def _generate(self, sample, prefix_tokens=None, constraints=None, bos_token=None):
        src = sample["net_input"]["src_tokens"]
        sources = []
        for row in src.tolist():
            toks = [t for t in row if t != self.pad]
            if toks and toks[-1] == self.eos:
                toks = toks[:-1]
            sources.append(toks)
        ids = sample["id"].tolist() if isinstance(sample.get("id"), Tensor) else None
        cands = self.span_candidates(sources) if self.span_candidates is not None else None
        search: EndToEndSearch = self.search
        search.set_batch(sources, ids, cands)
        finalized = super()._generate(sample, prefix_tokens=prefix_tokens, constraints=constraints, bos_token=bos_token)
        out = []
        for source, hypos in zip(sources, finalized):
            kept = []
            for h in hypos:  # a dead filler holds pad tokens: parse_output refuses it
                spans = parse_output(source, h["tokens"].tolist(), search.markup, self.eos)
                if spans is None:
                    continue
                h["spans"] = spans
                kept.append(h)
            out.append(kept)
        return out


def span_entities(hypos: Sequence[dict], tgt_dict, bpe=None, resolve=None, *, alpha: float = 1.0,
                  marginalize: bool = True) -> List[dict]:
    """The linked spans of one sentence's n-best (hypotheses of :class:`EndToEndSequenceGenerator`, best first):
    ``[{"start", "end", "id", "identifier", "score"}]``, ``start``/``end`` in source tokens.

    The span set is the best hypothesis's (a consistent segmentation; mixing spans of several
    hypotheses could overlap). Score of a span in a hypothesis: the log-probability of its
    identifier tokens and ``]``, over ``L ** alpha`` (L: that count; ``alpha=1``: the mean
    log-probability per token). With ``resolve`` (identifier -> entity id, e.g. a
    :class:`~genre_fairseq.marginalize.NameResolver`) the identifiers that the n-best generates for
    the same span (same start and end) are grouped by entity and ranked as the ED path ranks a
    mention's hypotheses (:func:`~genre_fairseq.marginalize.rank_entities`; ``marginalize``: the
    log-sum-exp of the scores of the entity's identifiers, an identifier counted once, at its best);
    the span gets the top entity, its best identifier and that score.
    """
    if not hypos:
        return []

    def text_of(tokens) -> str:
        text = tgt_dict.string(torch.as_tensor(list(tokens), dtype=torch.long))
        return (bpe.decode(text) if bpe is not None else text).strip()

    seen: Dict[Tuple[int, int], Dict[str, Tuple[float, int]]] = {}
    for h in hypos:
        scores = h["positional_scores"]
        for s in h["spans"]:
            n = len(s.entity_tokens) + 1  # the identifier and its closing ]
            logprob = float(scores[s.at: s.at + n].sum())
            idents = seen.setdefault((s.start, s.end), {})
            text = text_of(s.entity_tokens)
            if text not in idents or logprob > idents[text][0]:
                idents[text] = (logprob, n)
    out = []
    for s in hypos[0]["spans"]:
        idents = seen[(s.start, s.end)]
        if resolve is not None:
            texts = list(idents)
            ranked = rank_entities(texts, [idents[t][0] for t in texts], [idents[t][1] for t in texts], resolve,
                                   marginalize=marginalize, alpha=alpha)
            entity, identifier, score = ranked[0]["id"], ranked[0]["texts"][0], ranked[0]["score"]
        else:
            identifier = text_of(s.entity_tokens)
            entity, score = None, normalized_score(*idents[identifier], alpha)
        out.append({"start": s.start, "end": s.end, "id": entity, "identifier": identifier, "score": score})
    return out
