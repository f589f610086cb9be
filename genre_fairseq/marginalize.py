"""From generated identifiers to ranked entities: name-table lookup and marginalization over names.

Each hypothesis of the final beam is an identifier with a log-probability ``log p(y|x)`` (the sum
of its token log-probabilities, end token included) and a length ``L`` (its number of tokens, end
token included, as fairseq counts it). Its *normalized score* is ``log p / L ** alpha``.

Entity of a hypothesis: the identifier is parsed (``identifiers.parse_identifier``) and looked up
in the name table; when a name belongs to several entities, the hypothesis goes to the first of
them in the table's order: by anchor count, then sitelinks, when ``genre-trie names`` had them
(``meta.ambiguous_order``), else the id rule (``Q<n>`` by n ascending, then other ids by code
point), so the result never depends on input order. An identifier the table does not know keeps ``id = None``
and forms its own group.

Ranking:

* ``marginalize=True``: the score of an entity is ``logsumexp`` of the normalized scores of its
  hypotheses (mGENRE's marginalization over the names, e.g. languages, of one entity);
* ``marginalize=False``: the score of an entity is its best hypothesis's normalized score.

Entities are sorted by score, descending; ties keep the order of their best hypothesis in the
beam. Each keeps its member identifiers and their normalized scores, best first.

No entity (NIL, for mentions out of the knowledge base): :func:`add_nil` puts an entry
``{"nil": True, "id": None, ...}`` first when the best entity's score is below a threshold,
or beats the second's by less than a margin (both in the ranking's own score units).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .identifiers import parse_identifier

__all__ = ["NameResolver", "add_nil", "check_nil_options", "hypothesis_fields", "normalized_score", "rank_entities"]


def normalized_score(logprob: float, length: int, alpha: float) -> float:
    """``logprob / length ** alpha``: a hypothesis's score before marginalization."""
    if length < 1:
        raise ValueError(f"hypothesis length must be >= 1, got {length}")
    return logprob / (length ** alpha)


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def hypothesis_fields(hypos: Sequence[dict], tgt_dict, bpe=None) -> Tuple[List[str], List[float], List[int]]:
    """Identifier texts, log-probabilities and lengths of fairseq hypotheses (tokens end with EOS)."""
    texts = []
    for h in hypos:
        text = tgt_dict.string(h["tokens"])  # drops the EOS
        texts.append((bpe.decode(text) if bpe is not None else text).strip())
    logprobs = [float(h["positional_scores"].sum()) for h in hypos]
    lengths = [int(h["tokens"].numel()) for h in hypos]
    return texts, logprobs, lengths


class NameResolver:
    """Identifier -> entity id through a name table (canonical identifiers: through the canonical table)."""

    def __init__(self, table, identifier_format: str) -> None:
        self.table = table
        self.identifier_format = identifier_format
        self._cache: Dict[str, Optional[str]] = {}

    def __call__(self, identifier: str) -> Optional[str]:
        """The entity of an identifier (the table's first if several), or None if unknown or malformed."""
        if identifier not in self._cache:
            try:
                lang, name = parse_identifier(identifier, self.identifier_format)
            except ValueError:
                self._cache[identifier] = None
            else:
                ids = self.table.ids(lang, name)
                self._cache[identifier] = ids[0] if ids else None
        return self._cache[identifier]


def rank_entities(
    texts: Sequence[str],
    logprobs: Sequence[float],
    lengths: Sequence[int],
    resolve: Callable[[str], Optional[str]],
    *,
    marginalize: bool = True,
    alpha: float = 0.5,
) -> List[dict]:
    """Group hypotheses by entity and rank: ``[{"id", "score", "texts", "scores"}, ...]`` best first."""
    if not (len(texts) == len(logprobs) == len(lengths)):
        raise ValueError(f"texts, logprobs and lengths differ in length: {len(texts)}, {len(logprobs)}, {len(lengths)}")
    groups: Dict[object, dict] = {}
    for position, (text, logprob, length) in enumerate(zip(texts, logprobs, lengths)):
        entity = resolve(text)
        key = ("id", entity) if entity is not None else ("text", text)
        group = groups.setdefault(key, {"id": entity, "members": [], "first": position})
        group["members"].append((normalized_score(float(logprob), int(length), alpha), position, text))
    ranked = []
    for group in groups.values():
        members = sorted(group["members"], key=lambda m: (-m[0], m[1]))
        scores = [m[0] for m in members]
        score = _logsumexp(scores) if marginalize else scores[0]
        ranked.append({"id": group["id"], "score": score, "texts": [m[2] for m in members], "scores": scores,
                       "_first": members[0][1]})
    ranked.sort(key=lambda e: (-e["score"], e["_first"]))
    for entry in ranked:
        del entry["_first"]
    return ranked


def check_nil_options(threshold: Optional[float], margin: Optional[float], prefix: str = "") -> None:
    """Refuse a NIL threshold that is not a finite number, or a negative / non-finite margin."""
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError(f"{prefix}nil_threshold must be a finite number (a normalized log-probability, <= 0), "
                         f"got {threshold!r}")
    if margin is not None and not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"{prefix}nil_margin must be a finite number >= 0, got {margin!r}")


def add_nil(ranked: List[dict], *, threshold: Optional[float] = None, margin: Optional[float] = None) -> List[dict]:
    """``ranked`` with a NIL entry first when no entity is convincing; every entry gets ``"nil"``.

    NIL when there is no entry at all, when the best score is below ``threshold``, or when the
    best beats the second by less than ``margin`` (a single entry has no rival: only the
    threshold applies). The NIL entry's score is the best entry's (-inf when there is none).
    """
    if threshold is None and margin is None:
        return ranked
    out = [dict(entry, nil=False) for entry in ranked]
    best = out[0]["score"] if out else -math.inf
    nil = not out
    if threshold is not None and best < threshold:
        nil = True
    if margin is not None and len(out) > 1 and best - out[1]["score"] < margin:
        nil = True
    if nil:
        entry = {"id": None, "texts": [], "scores": []} if not out or "id" in out[0] else {"text": None}
        for key, value in (out[0].items() if out else ()):
            if key not in entry and key not in ("score", "nil"):
                entry[key] = value  # what says how the sentence was decoded ("candidates")
        entry.update(nil=True, score=best)
        out.insert(0, entry)
    return out
