"""End-to-end entity-linking metrics as GERBIL defines them (A2KB, InKB): strong, weak, mention detection.

No torch or fairseq at import. A document's gold spans are ``(start, end, entity)`` in characters
(end exclusive); ``entity`` None marks a NIL (out-of-KB) gold mention (AIDA ``--NME--``).
Predictions are ``(start, end, entity)`` too. Three matchings, each one-to-one:

* **strong** (GERBIL's strong annotation matching): a prediction is a true positive when a gold
  span has exactly its start, its end and its entity;
* **weak** (GERBIL's weak annotation matching): the spans overlap (share at least one character)
  and the entity is the same;
* **md** (mention detection, strong): exactly the same span, whatever the entity.

InKB (GERBIL's "InKB" results, the ones papers report for AIDA): NIL gold mentions are not gold
(they are never false negatives), and a prediction that is not a true positive and whose span
matches a NIL gold span (strong, md: the same span; weak: an overlapping span) but matches no
InKB gold span is **ignored**, neither true nor false positive: the system found a real mention
whose entity the knowledge base lacks, which an InKB metric can neither reward nor punish (GERBIL
sorts annotations into InKB and emerging-entity classes and scores the InKB class alone; the
ignored predictions are counted and reported). Every other prediction that is not a true positive
is a false positive; every InKB gold span left unmatched is a false negative.

Matching is greedy in the order of the predictions' starts (then ends): each prediction takes
the first unmatched gold span (by start) that it matches. For predictions that do not overlap one
another (the reader drops overlapping ones) and gold spans that do not either, this is a
maximum matching.

Micro precision, recall and F1 sum TP, FP and FN over all documents. Macro P, R and F1 average the
per-document values over every gold document (documents without any gold mention included), and
macro F1 is the mean of per-document F1s, not the harmonic mean of macro P and R (GERBIL's rule).
Division by zero follows GERBIL: a document with TP = FP = FN = 0 (no InKB gold, nothing
predicted, or only ignored predictions) has P = R = F1 = 1; with TP = 0 and FP + FN > 0, all three
are 0. The same rule applies to the micro figures of a data set with no gold and no prediction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ["MODES", "Counts", "EndToEndScorer", "format_report", "match_document", "prf"]

MODES = ("strong", "weak", "md")

GoldSpan = Tuple[int, int, Optional[str]]
PredSpan = Tuple[int, int, str]


@dataclass
class Counts:
    """True positives, false positives, false negatives, and predictions ignored (on NIL gold spans)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    ignored: int = 0

    def __iadd__(self, other: "Counts") -> "Counts":
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        self.ignored += other.ignored
        return self


def prf(tp: int, fp: int, fn: int) -> Tuple[float, float, float]:
    """Precision, recall, F1 with GERBIL's rule: all 1 when TP = FP = FN = 0; all 0 when only TP is 0."""
    if tp == 0:
        return (1.0, 1.0, 1.0) if fp == 0 and fn == 0 else (0.0, 0.0, 0.0)
    p, r = tp / (tp + fp), tp / (tp + fn)
    return p, r, 2 * p * r / (p + r)


def _overlap(a: Tuple[int, int], b: Tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _matches(mode: str, pred: tuple, gold: tuple) -> bool:
    if mode == "strong":
        return pred[0] == gold[0] and pred[1] == gold[1] and pred[2] == gold[2]
    if mode == "md":
        return pred[0] == gold[0] and pred[1] == gold[1]
    return pred[2] == gold[2] and _overlap(pred, gold)


def _same_place(mode: str, pred: tuple, gold: tuple) -> bool:
    """Whether the spans "match" for the NIL rule: the same span (strong, md) or overlapping ones (weak)."""
    return _overlap(pred, gold) if mode == "weak" else (pred[0], pred[1]) == (gold[0], gold[1])


def match_document(gold: Sequence[GoldSpan], predictions: Sequence[PredSpan]) -> Dict[str, Counts]:
    """TP, FP, FN and ignored predictions of one document, per matching (``strong``, ``weak``, ``md``)."""
    inkb = sorted((g for g in gold if g[2] is not None), key=lambda g: (g[0], g[1]))
    nil = [g for g in gold if g[2] is None]
    preds = sorted(predictions, key=lambda p: (p[0], p[1]))
    out = {}
    for mode in MODES:
        used = [False] * len(inkb)
        c = Counts()
        for p in preds:
            hit = next((i for i, g in enumerate(inkb) if not used[i] and _matches(mode, p, g)), None)
            if hit is not None:
                used[hit] = True
                c.tp += 1
            elif any(_same_place(mode, p, g) for g in nil) and not any(_same_place(mode, p, g) for g in inkb):
                c.ignored += 1
            else:
                c.fp += 1
        c.fn = len(inkb) - c.tp
        out[mode] = c
    return out


class EndToEndScorer:
    """Accumulates documents; :meth:`results` gives micro and macro P/R/F1 per matching."""

    def __init__(self, max_examples: int = 5) -> None:
        self.max_examples = max_examples
        self._total = {mode: Counts() for mode in MODES}
        self._macro = {mode: [0.0, 0.0, 0.0] for mode in MODES}  # sums of per-document P, R, F1
        self.documents = 0
        self.gold_inkb = self.gold_nil = self.predicted = 0
        self._problems: Dict[str, List] = {}

    def note(self, kind: str, example: str, count: int = 1) -> None:
        """Count ``count`` problems of ``kind`` (e.g. ``unknown_document``), keeping a few examples."""
        entry = self._problems.setdefault(kind, [0, []])
        entry[0] += count
        if len(entry[1]) < self.max_examples:
            entry[1].append(example)

    def add(self, gold: Sequence[GoldSpan], predictions: Sequence[PredSpan]) -> Dict[str, Counts]:
        """Score one gold document against its predictions (empty if it has none); its counts per matching."""
        counts = match_document(gold, predictions)
        self.documents += 1
        self.gold_inkb += sum(1 for g in gold if g[2] is not None)
        self.gold_nil += sum(1 for g in gold if g[2] is None)
        self.predicted += len(predictions)
        for mode, c in counts.items():
            self._total[mode] += c
            for i, value in enumerate(prf(c.tp, c.fp, c.fn)):
                self._macro[mode][i] += value
        return counts

    def results(self) -> dict:
        """Every figure as a JSON-ready dict (fractions in [0, 1])."""
        out = {"documents": self.documents, "gold_mentions": self.gold_inkb, "gold_nil_mentions": self.gold_nil,
               "predicted_mentions": self.predicted}
        for mode in MODES:
            c = self._total[mode]
            p, r, f = prf(c.tp, c.fp, c.fn)
            n = self.documents
            mp, mr, mf = (x / n if n else 1.0 for x in self._macro[mode])
            out[mode] = {"tp": c.tp, "fp": c.fp, "fn": c.fn, "ignored_on_nil": c.ignored,
                         "micro": {"precision": p, "recall": r, "f1": f},
                         "macro": {"precision": mp, "recall": mr, "f1": mf}}
        out["problems"] = {kind: {"count": count, "examples": examples}
                           for kind, (count, examples) in sorted(self._problems.items())}
        return out


_LABELS = {"strong": "InKB strong", "weak": "InKB weak", "md": "mention detection"}


def format_report(results: dict) -> str:
    """The figures of :meth:`EndToEndScorer.results` as a table (percentages)."""
    head = ["matching", "TP", "FP", "FN", "ignored", "micro-P", "micro-R", "micro-F1", "macro-P", "macro-R",
            "macro-F1"]
    rows = [head]
    for mode in MODES:
        m = results[mode]
        rows.append([_LABELS[mode], f"{m['tp']:,}", f"{m['fp']:,}", f"{m['fn']:,}", f"{m['ignored_on_nil']:,}"]
                    + [f"{100 * m[avg][k]:.2f}" for avg in ("micro", "macro") for k in ("precision", "recall", "f1")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"{results['documents']:,} documents, {results['gold_mentions']:,} InKB gold mentions "
             f"({results['gold_nil_mentions']:,} NIL gold mentions left out), "
             f"{results['predicted_mentions']:,} predicted mentions"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    for kind, p in results["problems"].items():
        lines.append(f"{kind}: {p['count']:,}, e.g. {'; '.join(p['examples'][:3])}")
    return "\n".join(lines)
