"""Page-level retrieval metrics as KILT defines them: R-precision, precision@k and recall@k.

KILT (Petroni et al., 2021) task files give, per query, ``output`` entries whose ``provenance``
lists the gold pages (``wikipedia_id``); each output's set of pages is one *evidence set* (any one
complete set answers the query). A prediction is ``{"id", "output": [{"provenance": [{"wikipedia_id",
"title"}, ...]}]}``: the pages of its first output, in rank order (repeats after the first are
ignored).

* R-precision of a query: for each evidence set E of size R, the fraction of the first R
  predicted pages that are in E; the best over its evidence sets.
* recall@k / precision@k: the ranked pages are grouped so that an evidence set counts as one
  point of the rank, placed where its *last* page is predicted (a set is found when all its pages
  are); a page in no evidence set is a miss. recall@k = sets completed in the first k points /
  number of distinct evidence sets; precision@k = sets completed in the first k points / k.
  For page-level tasks with one page per set (FEVER, NQ, ...) this is the usual
  "any gold page among the top k" recall.

Scores are averaged over the gold queries; a query without a prediction scores 0; a gold query
without any provenance cannot be scored and is counted apart (``no_provenance``), as are
predictions for ids not in the gold file (``unknown_ids``).

Files (``read_gold``, ``read_predictions``): a gold line needs an ``id`` (string or integer) and an
``output`` list, a prediction line an ``id`` and an ``output`` list whose first entry's
``provenance`` is a list of objects with a ``wikipedia_id``; other lines are skipped and counted
with their ``file:line`` (``strict`` makes the first one fatal), as are repeated ids.
"""
from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

from .datasets import PathLike, ReadReport, iter_json_lines

__all__ = ["GoldQuery", "RetrievalScorer", "evidence_sets", "format_retrieval_report", "kilt_prediction",
           "precision_at_k", "predicted_pages", "r_precision", "rank_points", "read_gold", "read_predictions",
           "recall_at_k", "score_files"]

RANK_KEY = "wikipedia_id"


def _pages(provenance, key: str = RANK_KEY) -> List[str]:
    out: List[str] = []
    for p in provenance or []:
        if isinstance(p, dict) and p.get(key) is not None and str(p[key]).strip():
            page = str(p[key]).strip()
            if page not in out:
                out.append(page)
    return out


def evidence_sets(item: dict, key: str = RANK_KEY) -> List[Set[str]]:
    """The distinct non-empty gold evidence sets of a KILT record, in the order of its outputs."""
    sets: List[Set[str]] = []
    for output in item.get("output") or []:
        if isinstance(output, dict):
            pages = set(_pages(output.get("provenance"), key))
            if pages and pages not in sets:
                sets.append(pages)
    return sets


def predicted_pages(item: dict, key: str = RANK_KEY) -> List[str]:
    """The ranked page ids of a prediction record's first output (first occurrence of each)."""
    outputs = item.get("output") or []
    return _pages(outputs[0].get("provenance"), key) if outputs and isinstance(outputs[0], dict) else []


def r_precision(predicted: Sequence[str], sets: Sequence[Set[str]]) -> float:
    """Best over the evidence sets E of |first len(E) predictions ∩ E| / len(E); 0 without sets."""
    best = 0.0
    for gold in sets:
        hits = sum(1 for page in predicted[: len(gold)] if page in gold)
        best = max(best, hits / len(gold))
    return best


def rank_points(predicted: Sequence[str], sets: Sequence[Set[str]]) -> List[object]:
    """KILT's grouped rank: True where an evidence set is completed, False for a miss, ``"set:i"`` while partial."""
    remaining = [set(s) for s in sets]
    rank: List[object] = []
    for page in predicted:
        found = False
        for index, gold in enumerate(remaining):
            if page not in gold:
                continue
            found = True
            point = f"set:{index}"  # a string: True == 1 and False == 0 would match integer ids
            if point in rank:
                rank.remove(point)  # a partial set moves to where its latest page is
            gold.discard(page)
            rank.append(True if not gold else point)
        if not found:
            rank.append(False)
    return rank


def recall_at_k(predicted: Sequence[str], sets: Sequence[Set[str]], k: int) -> float:
    """Evidence sets completed within the first k rank points / number of evidence sets (0 without sets)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not sets:
        return 0.0
    return rank_points(predicted, sets)[:k].count(True) / len(sets)


def precision_at_k(predicted: Sequence[str], sets: Sequence[Set[str]], k: int) -> float:
    """Evidence sets completed within the first k rank points / k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return rank_points(predicted, sets)[:k].count(True) / k


class RetrievalScorer:
    """Averages of R-precision, recall@k and precision@k over the queries of a KILT gold file."""

    def __init__(self, ks: Iterable[int] = (1, 5)) -> None:
        self.ks = sorted(set(ks))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"k values must be >= 1, got {list(ks)}")
        self._gold: Dict[str, List[Set[str]]] = {}
        self._predicted: Dict[str, List[str]] = {}
        self.no_provenance = 0
        self.unknown_ids = 0
        self._unscored: Set[str] = set()  # gold ids without provenance: their predictions are not unknown

    def add_gold(self, item: dict) -> bool:
        """Register a gold KILT record; False (and counted) if it has no provenance to score against."""
        sets = evidence_sets(item)
        if not sets:
            self.no_provenance += 1
            self._unscored.add(str(item.get("id")))
            return False
        self._gold[str(item.get("id"))] = sets
        return True

    def add_prediction(self, item: dict) -> None:
        """Register a prediction record (``id``, ``output[0].provenance`` ranked); the first per id counts."""
        qid = str(item.get("id"))
        if qid not in self._gold:
            if qid not in self._unscored:
                self.unknown_ids += 1
            return
        self._predicted.setdefault(qid, predicted_pages(item))

    def results(self) -> dict:
        """Mean scores as fractions (KILT's tables show them times 100), and the counts."""
        n = len(self._gold)
        totals = {"r_precision": 0.0, **{f"recall@{k}": 0.0 for k in self.ks},
                  **{f"precision@{k}": 0.0 for k in self.ks}}
        for qid, sets in self._gold.items():
            predicted = self._predicted.get(qid, [])
            totals["r_precision"] += r_precision(predicted, sets)
            for k in self.ks:
                totals[f"recall@{k}"] += recall_at_k(predicted, sets, k)
                totals[f"precision@{k}"] += precision_at_k(predicted, sets, k)
        result: Dict[str, Optional[float]] = {name: (value / n if n else None) for name, value in totals.items()}
        return {**result, "queries": n, "predicted": len(self._predicted), "no_provenance": self.no_provenance,
                "unknown_ids": self.unknown_ids}


def kilt_prediction(query_id: str, pages: Iterable[Tuple[str, str]]) -> dict:
    """A prediction record in KILT's format from ranked ``(wikipedia_id, title)`` pairs."""
    return {"id": query_id, "output": [{"provenance": [{"wikipedia_id": str(page), "title": title}
                                                       for page, title in pages]}]}


class GoldQuery(NamedTuple):
    """One query of a KILT task file: its id, input text (None if unusable), the record, where it was read."""

    id: str
    input: Optional[str]
    item: dict
    where: str


def _record_id(value) -> Optional[str]:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def read_gold(path: PathLike, report: Optional[ReadReport] = None, strict: bool = False) -> Iterator[GoldQuery]:
    """The queries of a KILT task file; malformed lines and repeated ids are skipped and counted."""
    report = report if report is not None else ReadReport()
    seen: Dict[str, str] = {}
    for where, obj in iter_json_lines(path, report, strict):
        qid = _record_id(obj.get("id"))
        if qid is None:
            report.skip("bad_record", where, "'id' must be a non-empty string or an integer", strict)
            continue
        if not isinstance(obj.get("output", []), list):
            report.skip("bad_record", where, "'output' must be a list", strict)
            continue
        if qid in seen:
            report.skip("duplicate_id", where, f"id {qid!r} already read at {seen[qid]}", strict)
            continue
        seen[qid] = where
        for output in obj.get("output") or []:
            provenance = output.get("provenance") if isinstance(output, dict) else None
            if provenance is not None and (not isinstance(provenance, list) or any(
                    not isinstance(p, dict) or p.get(RANK_KEY) is None for p in provenance)):
                report.warn("provenance_without_wikipedia_id", where,
                            f"a provenance entry is not an object with '{RANK_KEY}' (ignored)", strict)
                break
        text = obj.get("input")
        report.mentions += 1
        yield GoldQuery(qid, text if isinstance(text, str) and text.strip() else None, obj, where)


def read_predictions(path: PathLike, report: Optional[ReadReport] = None, strict: bool = False) -> Dict[str, dict]:
    """``query id -> prediction record`` of a KILT-format predictions file; bad lines are counted (fatal if strict)."""
    report = report if report is not None else ReadReport()
    records: Dict[str, dict] = {}
    first: Dict[str, str] = {}
    for where, obj in iter_json_lines(path, report, strict):
        qid = _record_id(obj.get("id"))
        outputs = obj.get("output")
        why = None
        if qid is None:
            why = "'id' must be a non-empty string or an integer"
        elif not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
            why = "'output' must be a list whose first entry is an object with 'provenance'"
        elif not isinstance(outputs[0].get("provenance"), list) or not all(
                isinstance(p, dict) and p.get(RANK_KEY) is not None for p in outputs[0]["provenance"]):
            why = f"'output[0].provenance' must be a list of objects with '{RANK_KEY}' (ranked pages)"
        if why is not None:
            report.skip("bad_record", where, why, strict)
        elif qid in records:
            report.skip("duplicate_id", where, f"id {qid!r} already has a prediction at {first[qid]}", strict)
        else:
            records[qid] = obj
            first[qid] = where
    return records


def score_files(gold: PathLike, predictions: PathLike, ks: Iterable[int] = (1, 5), *, strict: bool = False,
                report: Optional[ReadReport] = None) -> dict:
    """KILT page-level scores of a predictions file against a gold task file (both JSON lines)."""
    report = report if report is not None else ReadReport()
    scorer = RetrievalScorer(ks)
    for query in read_gold(gold, report, strict):
        scorer.add_gold(query.item)
    for item in read_predictions(predictions, report, strict).values():
        scorer.add_prediction(item)
    return {**scorer.results(), "read": report.as_dict()}


def format_retrieval_report(results: dict) -> str:
    """The figures of :meth:`RetrievalScorer.results` as a small table (percentages, as KILT's tables show them)."""
    def pct(x: Optional[float]) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    names = ["r_precision"] + [n for n in results if n.startswith("recall@")] + \
        [n for n in results if n.startswith("precision@")]
    labels = {"r_precision": "R-precision"}
    width = max(len(labels.get(n, n)) for n in names)
    lines = [f"{'queries':<{width}}  {results['queries']:,} (with a prediction: {results['predicted']:,})"]
    lines += [f"{labels.get(n, n):<{width}}  {pct(results[n])}" for n in names]
    if results.get("no_provenance"):
        lines.append(f"{results['no_provenance']:,} gold quer{'y' if results['no_provenance'] == 1 else 'ies'} "
                     "without provenance (not scored)")
    if results.get("unknown_ids"):
        lines.append(f"{results['unknown_ids']:,} prediction(s) for ids not in the gold file (ignored)")
    return "\n".join(lines)
