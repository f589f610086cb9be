"""Candidate-restricted decoding: per sentence, only the identifiers of a small candidate set.

The whole knowledge base stays one compiled :class:`~genre_fairseq.prefix_tree.PrefixTree`;
nothing is rebuilt per input. For one batch, the candidates' token sequences of all its
sentences are compiled into one small extra tree, the *forest*: sentence ``j`` of the batch
owns the subtree under a private first token ``marker + j`` (a token id above every real
one, so it can never be generated), and its hypotheses start from that subtree's root.

A hypothesis's state stays one integer: a state ``s < FOREST_BASE`` is node ``s`` of the main
tree, and ``s >= FOREST_BASE`` is node ``s - FOREST_BASE`` of the forest. :class:`CandidateTrees`
offers the tensor interface the beam search uses (``child_ranges``, ``candidates``,
``advance``, ``walk``, ``allowed_mask``, ``incoming_tokens``) over both, plus
``sentence_roots`` (the first state of each sentence). A sentence without candidates starts
at the main tree's root: it falls back to the whole knowledge base.

Where candidates come from (:func:`resolve_candidates`): given explicitly per sentence, or
looked up by the mention's exact text in a mention table (``genre-trie names --mentions``;
top ``k`` by count). With a name table, a candidate is an entity id and stands for all of its
identifiers (one per name, in the tree's identifier format); without one, a candidate is an
identifier string. A candidate identifier is kept only when its encoding is a sequence of the
main tree (when there is one): candidates never widen the output beyond the knowledge base.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .identifiers import format_identifier
from .prefix_tree import PrefixTree

__all__ = ["CandidateTrees", "CandidateSet", "FOREST_BASE", "IdentifierEncoder", "mention_text",
           "resolve_candidates"]

#: Forest states are offset by this much: far above any node count of a real tree.
FOREST_BASE = 1 << 40

#: Mention markers of the two model families, tried in this order.
MARKERS = (("[START_ENT]", "[END_ENT]"), ("[START]", "[END]"))


def mention_text(source: str, markers: Sequence[Tuple[str, str]] = MARKERS) -> Optional[str]:
    """The text between the first pair of mention markers found in ``source`` (stripped), or None."""
    for start, end in markers:
        i = source.find(start)
        if i < 0:
            continue
        j = source.find(end, i + len(start))
        if j < 0:
            continue
        return source[i + len(start): j].strip()
    return None


class IdentifierEncoder:
    """Identifier text -> target token ids, as ``genre-trie build`` encodes them.

    ``bpe`` is fairseq's BPE object of the model (None: the text is already space-separated
    dictionary symbols). GPT-2 BPE gets a leading space, as GENRE's targets and
    ``trie_tools.encode.GPT2Tokenizer`` have it. Returns ``[eos] + ids + [eos]``, or None when a
    symbol is not in the dictionary.
    """

    def __init__(self, bpe, tgt_dict) -> None:
        self.bpe = bpe
        self.tgt_dict = tgt_dict
        self._gpt2 = type(bpe).__name__ == "GPT2BPE"

    def __call__(self, identifier: str) -> Optional[List[int]]:
        text = identifier
        if self.bpe is not None:
            text = self.bpe.encode(" " + identifier if self._gpt2 else identifier)
        ids = self.tgt_dict.encode_line(text, add_if_not_exist=False, append_eos=False).tolist()
        if not ids or self.tgt_dict.unk() in ids:
            return None
        eos = self.tgt_dict.eos()
        return [eos] + ids + [eos]


@dataclass
class CandidateSet:
    """The candidates of one sentence: where they came from and the sequences decoding may produce."""

    source: str  # "given", "mentions" or "none"
    entities: List[str] = field(default_factory=list)  # entity ids (or identifiers without a name table)
    sequences: List[List[int]] = field(default_factory=list)
    dropped: int = 0  # candidate identifiers not encodable, or not in the main tree

    @property
    def restricted(self) -> bool:
        """Whether decoding is restricted to ``sequences`` (else: the whole tree)."""
        return bool(self.sequences)

    def describe(self) -> str:
        """One line for the output: how this sentence was decoded."""
        if self.restricted:
            return f"{len(self.entities)} candidates ({self.source}), {len(self.sequences)} identifiers"
        if not self.entities:
            return "no candidates: full tree" if self.source == "none" else f"no candidates ({self.source}): full tree"
        return f"{len(self.entities)} candidates ({self.source}), none in the tree: full tree"


def resolve_candidates(
    given: Optional[Sequence[str]],
    mention: Optional[str],
    *,
    encode: Callable[[str], Optional[List[int]]],
    tree: Optional[PrefixTree],
    name_table=None,
    identifier_format: Optional[str] = None,
    mention_table=None,
    k: Optional[int] = None,
) -> CandidateSet:
    """The candidate set of one sentence: ``given`` if not None, else the mention table's top ``k``."""
    if given is not None:
        if isinstance(given, str):
            raise TypeError("candidates of a sentence must be a list of strings, not one string")
        entities, source = list(given), "given"
    elif mention_table is not None and mention is not None:
        entities, source = [e for e, _ in mention_table.candidates(mention, k)], "mentions"
    else:
        return CandidateSet("none")
    if not entities:
        return CandidateSet(source)
    identifiers: List[str] = []
    for entity in entities:
        if name_table is None:
            identifiers.append(entity)
            continue
        if identifier_format is None:
            raise ValueError("entity candidates need the identifier format (give a trie that records it)")
        identifiers.extend(format_identifier(name, lang, identifier_format) for lang, name in name_table.names(entity))
    # A tree that records no start token holds its sequences without it (see PrefixTree).
    skip = 1 if tree is not None and tree.start_token is None else 0
    sequences, seen, dropped = [], set(), 0
    for identifier in identifiers:
        seq = encode(identifier)
        if seq is not None:
            seq = seq[skip:]
        if seq is None or (tree is not None and seq not in tree):
            dropped += 1
            continue
        if tuple(seq) not in seen:
            seen.add(tuple(seq))
            sequences.append(seq)
    return CandidateSet(source, entities, sequences, dropped)


class CandidateTrees:
    """The main tree and a per-batch forest of candidate subtrees, seen as one tree by the search."""

    def __init__(self, main: Optional[PrefixTree], sets: Dict[int, CandidateSet]) -> None:
        """``sets``: the candidate set of each sentence, keyed by the id fairseq gives the search
        (``sample["id"]``). Sentences missing from ``sets`` or without sequences use ``main``."""
        self.main = main
        self.sets = sets
        restricted = [(sid, s) for sid, s in sets.items() if s.restricted]
        max_token = main.max_token if main is not None else -1
        for _, s in restricted:
            max_token = max(max_token, max(max(seq) for seq in s.sequences))
        self.max_token = max_token
        # Without a main tree, candidate sequences are IdentifierEncoder's: they begin with EOS.
        self.start_token = main.start_token if main is not None else (
            restricted[0][1].sequences[0][0] if restricted else None)
        marker = max_token + 1
        flat: List[int] = []
        lengths: List[int] = []
        for j, (_, s) in enumerate(restricted):
            for seq in s.sequences:
                flat.append(marker + j)
                flat.extend(seq)
                lengths.append(len(seq) + 1)
        self.forest = PrefixTree.from_arrays(np.asarray(flat, dtype=np.int64), np.asarray(lengths, dtype=np.int64)) \
            if restricted else None
        self._roots: Dict[int, int] = {}
        for j, (sid, _) in enumerate(restricted):
            self._roots[int(sid)] = FOREST_BASE + self.forest.node([marker + j])

    # ------------------------------------------------------------------ per-sentence roots
    def sentence_roots(self, ids: torch.Tensor) -> torch.Tensor:
        """The first state of each sentence id: its forest subtree, or the main tree's root."""
        roots = []
        for sid in ids.tolist():
            root = self._roots.get(int(sid))
            if root is None:
                if self.main is None:
                    raise ValueError(f"sentence {sid} has no candidates in the tree and there is no full tree to fall back on")
                root = 0
            roots.append(root)
        return torch.tensor(roots, dtype=torch.long, device=ids.device)

    # ------------------------------------------------------------------ dispatch
    def _parts(self, states: torch.Tensor):
        """(index, states) of the rows in the main tree and in the forest (local forest states).

        Dead states (< 0) are in neither: every method's output starts as the dead state's.
        """
        in_forest = states >= FOREST_BASE
        f_idx = torch.nonzero(in_forest).view(-1)
        m_idx = torch.nonzero((states >= 0) & ~in_forest).view(-1)
        return m_idx, states[m_idx], f_idx, states[f_idx] - FOREST_BASE

    def _tree(self, which: str) -> PrefixTree:
        tree = self.main if which == "main" else self.forest
        assert tree is not None, f"a state points into the {which} tree, which is absent"
        return tree

    @staticmethod
    def _lift(states: torch.Tensor) -> torch.Tensor:
        return torch.where(states >= 0, states + FOREST_BASE, states)

    def _map_states(self, states: torch.Tensor, fn) -> torch.Tensor:
        """Apply ``fn(tree, local_states, rows)`` -> next local states, to both parts."""
        m_idx, m_states, f_idx, f_states = self._parts(states)
        out = torch.full_like(states, -1)
        if m_idx.numel():
            out[m_idx] = fn(self._tree("main"), m_states, m_idx)
        if f_idx.numel():
            out[f_idx] = self._lift(fn(self._tree("forest"), f_states, f_idx))
        return out

    # ------------------------------------------------------------------ tree interface
    def child_ranges(self, states: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(opaque zeros, number of allowed tokens) of each state."""
        count = torch.zeros_like(states)
        m_idx, m_states, f_idx, f_states = self._parts(states)
        if m_idx.numel():
            count[m_idx] = self._tree("main").child_ranges(m_states)[1]
        if f_idx.numel():
            count[f_idx] = self._tree("forest").child_ranges(f_states)[1]
        return torch.zeros_like(states), count

    def incoming_tokens(self, states: torch.Tensor) -> torch.Tensor:
        """The token that enters each state (-1 at roots and for states < 0)."""
        out = torch.full_like(states, -1)
        m_idx, m_states, f_idx, f_states = self._parts(states)
        if m_idx.numel():
            out[m_idx] = self._tree("main").incoming_tokens(m_states)
        if f_idx.numel():
            tok = self._tree("forest").incoming_tokens(f_states)
            out[f_idx] = torch.where(tok > self.max_token, torch.full_like(tok, -1), tok)  # a sentence root
        return out

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The state after each token, or -1."""
        return self._map_states(states, lambda tree, s, rows: tree.advance(s, tokens[rows]))

    def walk(self, tokens: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """Advance ``states`` (one per row; see :meth:`sentence_roots`) along each row of ``tokens``."""
        for t in range(tokens.size(1)):
            states = self.advance(states, tokens[:, t])
        return states

    def candidates(self, states: torch.Tensor, min_width: int = 0):
        """Allowed tokens, next states and validity of each state, padded to a common width."""
        m_idx, m_states, f_idx, f_states = self._parts(states)
        parts = []
        if m_idx.numel():
            parts.append((m_idx, self._tree("main").candidates(m_states, min_width), False))
        if f_idx.numel():
            parts.append((f_idx, self._tree("forest").candidates(f_states, min_width), True))
        width = max([min_width] + [p[1][0].size(1) for p in parts])
        n = states.size(0)
        tok = torch.zeros(n, width, dtype=torch.long, device=states.device)
        nxt = torch.full((n, width), -1, dtype=torch.long, device=states.device)
        valid = torch.zeros(n, width, dtype=torch.bool, device=states.device)
        for idx, (t, s, v), lifted in parts:
            k = t.size(1)
            tok[idx, :k] = t
            nxt[idx, :k] = self._lift(s) if lifted else s
            valid[idx, :k] = v
        return tok, nxt, valid

    def allowed_mask(self, states: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """Boolean N x vocab_size mask of the tokens each state allows."""
        mask = torch.zeros(states.size(0), vocab_size, dtype=torch.bool, device=states.device)
        m_idx, m_states, f_idx, f_states = self._parts(states)
        if m_idx.numel():
            mask[m_idx] = self._tree("main").allowed_mask(m_states, vocab_size)
        if f_idx.numel():
            mask[f_idx] = self._tree("forest").allowed_mask(f_states, vocab_size)
        return mask
