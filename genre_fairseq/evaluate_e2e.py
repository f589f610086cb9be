"""``genre-evaluate --end-to-end``: InKB strong/weak/mention-detection F1 of documents, micro and macro.

Two modes, as for disambiguation:

* score predictions: ``genre-evaluate GOLD --end-to-end --predictions PRED.jsonl``;
* run a model: ``genre-evaluate GOLD --end-to-end --model-dir DIR --model-type mgenre --trie KB.trie
  --name-table KB.names [--mention-trie KB.mtrie] [--candidates-from KB.mentions [--candidates-k K]]
  [--beam N] [--threshold T] [--window N] [--batch-size N] [--write-predictions PRED.jsonl]``
  (the hub's ``model.link``).

GOLD is an anchors JSON-lines file or AIDA (``FILE`` or ``FILE:testb``); predictions are anchors
records too (``id`` of the gold document, ``mentions`` with ``start``, ``end``, ``entity_id`` and
optionally ``score``; ``text`` optional, and then it must be the gold text). The metric is in
:mod:`genre_fairseq.e2e_metrics`; docs/evaluate.md gives every rule. No torch at import: only
``--model-dir`` loads the model.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Dict, Iterator, List, Optional, Tuple

from tqdm import tqdm

from .datasets import DatasetError, ReadReport, detect_format, iter_json_lines
from .documents import DOCUMENT_FORMATS, Document, Span, parse_document, read_documents
from .e2e_metrics import EndToEndScorer, format_report
from .evaluate import UsageError, _batches
from .outputs import atomic_path, check_output, os_error_line

__all__ = ["E2E_ONLY", "main_end_to_end", "read_predictions", "run_end_to_end"]

#: Options of this mode that the disambiguation modes do not take.
E2E_ONLY = ("mention_trie", "threshold", "window")
#: Options of ``--model-dir`` (refused with ``--predictions``).
_MODEL_ONLY = ("model_type", "checkpoint_file", "bpe", "sentencepiece_model", "gpt2_encoder_json", "gpt2_vocab_bpe",
               "device", "trie", "mention_trie", "beam", "window", "batch_size", "write_predictions")
#: Disambiguation options that have no meaning for documents.
_NOT_E2E = ("langs", "predict", "marginalize", "marginalize_alpha", "no_restrict", "max_len_b")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_options(args: argparse.Namespace) -> None:
    if not args.end_to_end:
        given = next(name for name in E2E_ONLY if getattr(args, name) is not None)
        raise UsageError(f"{_option(given)} applies to --end-to-end only")
    for name in _NOT_E2E:
        if getattr(args, name) not in (None, False):
            raise UsageError(f"{_option(name)} does not apply to --end-to-end")
    if args.format not in ("auto",) + DOCUMENT_FORMATS:
        raise UsageError(f"--end-to-end reads documents in the anchors or aida format, not {args.format}")
    if args.candidates_k is not None and args.candidates_from is None:
        raise UsageError("--candidates-k needs --candidates-from")
    if args.predictions is not None:
        given = [name for name in _MODEL_ONLY + ("candidates_from",) if getattr(args, name) not in (None, False)]
        if given:
            raise UsageError(f"{_option(given[0])} applies to --model-dir only, not to --predictions")
        if args.limit is not None:
            raise UsageError("--limit applies to --model-dir only with --end-to-end (predictions of the documents past "
                             "the limit would look unknown)")
        if not os.path.isfile(args.predictions):
            raise UsageError(f"--predictions {args.predictions}: "
                             + ("is a directory, expected a file" if os.path.isdir(args.predictions)
                                else "file not found"))
    else:
        if args.model_type is None:
            raise UsageError("--model-dir needs --model-type genre or mgenre")
        for option in ("trie", "name_table"):
            if getattr(args, option) is None:
                raise UsageError(f"--end-to-end --model-dir needs {_option(option)}")
        if not os.path.isdir(args.model_dir):
            raise UsageError(f"--model-dir {args.model_dir}: not a directory")
    for option in ("trie", "mention_trie", "name_table", "candidates_from"):
        path = getattr(args, option)
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{_option(option)} {path}: "
                             + ("is a directory, expected a file" if os.path.isdir(path) else "file not found"))
    inputs = [args.data.rsplit(":", 1)[0], args.data, args.predictions, args.trie, args.mention_trie,
              args.name_table, args.candidates_from]
    if args.output_json:
        check_output(args.output_json, "--output-json", inputs)
    if args.write_predictions:
        check_output(args.write_predictions, "--write-predictions", inputs + [args.output_json])


def _gold(args: argparse.Namespace, report: ReadReport) -> Iterator[Document]:
    """The gold documents (up to --limit); a repeated document id is reported and skipped."""
    seen = set()
    for doc in read_documents(args.data, args.format, lang=args.lang, strict=args.strict, report=report):
        if doc.id in seen:
            report.skip("duplicate_id", doc.source, f"document id {doc.id!r} was read before", args.strict)
            continue
        seen.add(doc.id)
        yield doc
        if args.limit is not None and len(seen) >= args.limit:
            return


def drop_overlapping(doc_id: str, spans: List[Span], where: str, report: ReadReport, strict: bool) -> List[Span]:
    """Spans sorted by (start, end) without those overlapping an earlier kept one (each reported)."""
    kept: List[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        if kept and s.start < kept[-1].end:
            report.skip("overlapping_prediction", where, f"document {doc_id!r}: span {s.start}-{s.end} overlaps "
                        f"span {kept[-1].start}-{kept[-1].end} (the later one is dropped)", strict)
            continue
        kept.append(s)
    return kept


def read_predictions(path: str, gold: Dict[str, Document], *, strict: bool = False,
                     report: Optional[ReadReport] = None, threshold: Optional[float] = None) -> Dict[str, List[Span]]:
    """``document id -> predicted spans`` (no NIL, no overlaps, score >= threshold); bad lines reported."""
    report = report if report is not None else ReadReport()
    out: Dict[str, List[Span]] = {}
    first: Dict[str, str] = {}
    for where, obj in iter_json_lines(path, report, strict):
        doc_id = obj.get("id")
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            report.skip("bad_record", where, "'id' must be the id of a gold document", strict)
            continue
        if doc_id not in gold:
            report.skip("unknown_document", where, f"document id {doc_id!r} is not in the gold data", strict)
            continue
        if doc_id in out:
            report.skip("duplicate_id", where, f"document {doc_id!r} already has predictions at {first[doc_id]}",
                        strict)
            continue
        doc = parse_document(obj, where, report, strict, default_id=doc_id, text=gold[doc_id].text,
                             cause="bad_prediction")
        if doc is None:
            continue
        spans = [s for s in doc.spans if s.entity is not None]
        report.warnings["nil_prediction"] += len(doc.spans) - len(spans)  # "not linked": no prediction
        if threshold is not None:
            below = [s for s in spans if s.score is not None and s.score < threshold]
            report.warnings["below_threshold"] += len(below)
            spans = [s for s in spans if s.score is None or s.score >= threshold]
        out[doc_id] = drop_overlapping(doc_id, spans, where, report, strict)
        first[doc_id] = where
        report.mentions += len(out[doc_id])
    for cause in ("nil_prediction", "below_threshold"):
        if not report.warnings[cause]:
            del report.warnings[cause]
    return out


class _GoldKB:
    """With --name-table, gold entities the table does not know are out of the KB: NIL for InKB."""

    def __init__(self, args: argparse.Namespace, scorer: EndToEndScorer) -> None:
        self.names = None
        self.scorer = scorer
        if args.name_table is not None:
            from .name_table import NameTable

            try:
                self.names = NameTable.load(args.name_table, verify=not args.no_verify)
            except ValueError as e:
                raise UsageError(f"--name-table {args.name_table}: {e}") from None

    def spans(self, doc: Document) -> List[Tuple[int, int, Optional[str]]]:
        """The document's gold spans, entities outside the name table made NIL (and counted)."""
        out = []
        for s in doc.spans:
            entity = s.entity
            if entity is not None and self.names is not None and not (
                    self.names.names(entity) or self.names.ids(doc.lang, entity) or self.names.ids("", entity)):
                self.scorer.note("gold_not_in_kb", f"{doc.id}:{s.start}-{s.end} ({entity})")
                entity = None
            out.append((s.start, s.end, entity))
        return out


def _score_predictions(args: argparse.Namespace, scorer: EndToEndScorer, report: ReadReport) -> dict:
    gold = {doc.id: doc for doc in _gold(args, report)}
    kb = _GoldKB(args, scorer)
    pred_report = ReadReport()
    predictions = read_predictions(args.predictions, gold, strict=args.strict, report=pred_report,
                                   threshold=args.threshold)
    for doc_id, doc in tqdm(gold.items(), desc="scoring", unit=" documents", disable=args.quiet):
        spans = predictions.get(doc_id)
        if spans is None:
            scorer.note("document_without_prediction", doc_id)
            spans = []
        scorer.add(kb.spans(doc), [(s.start, s.end, s.entity) for s in spans])
    return {"predictions": args.predictions, "predictions_read": pred_report.as_dict(), "threshold": args.threshold}


def _run_model(args: argparse.Namespace, scorer: EndToEndScorer, report: ReadReport) -> dict:
    """Link every gold document with the hub's ``model.link`` and score it (written with --write-predictions)."""
    from .hub import GENRE, mGENRE
    from .name_table import MentionTable
    from .prefix_tree import PrefixTree

    cls = GENRE if args.model_type == "genre" else mGENRE
    bpe = {None: "auto", "none": None}.get(args.bpe, args.bpe)
    model = cls.from_pretrained(args.model_dir, args.checkpoint_file or "model.pt", bpe=bpe,
                                sentencepiece_model=args.sentencepiece_model, gpt2_encoder_json=args.gpt2_encoder_json,
                                gpt2_vocab_bpe=args.gpt2_vocab_bpe, device=args.device)
    verify = not args.no_verify
    kb = _GoldKB(args, scorer)
    try:
        options = {"trie": PrefixTree.load(args.trie, verify=verify), "name_table": kb.names,
                   "mention_trie": PrefixTree.load(args.mention_trie, verify=verify) if args.mention_trie else None,
                   "mention_table": MentionTable.load(args.candidates_from, verify=verify) if args.candidates_from
                   else None}
    except ValueError as e:
        raise UsageError(str(e)) from None
    # Only the options given: model.link keeps its own defaults for the others.
    given = {"candidates_k": args.candidates_k, "beam": args.beam, "threshold": args.threshold,
             "window": args.window, "batch_size": args.batch_size}
    options.update({k: v for k, v in given.items() if v is not None})
    options = {k: v for k, v in options.items() if v is not None}
    settings = {"model_dir": args.model_dir, "model_type": args.model_type, "trie": args.trie,
                "mention_trie": args.mention_trie, "candidates_from": args.candidates_from,
                **{k: v for k, v in given.items() if v is not None}, "unlinked_spans": 0}
    out_report = ReadReport()
    with (atomic_path(args.write_predictions) if args.write_predictions else contextlib.nullcontext()) as tmp:
        out = open(tmp, "w", encoding="utf-8") if tmp else None
        try:
            with tqdm(desc="linking", unit=" documents", disable=args.quiet) as bar:
                for batch in _batches(_gold(args, report), args.batch_size or 8):
                    for doc, found in zip(batch, model.link([d.text for d in batch], **options)):
                        spans = [Span(s["start"], s["end"], s.get("id"), s.get("score")) for s in found]
                        settings["unlinked_spans"] += sum(1 for s in spans if s.entity is None)
                        linked = drop_overlapping(doc.id, [s for s in spans if s.entity is not None], doc.id,
                                                  out_report, False)
                        scorer.add(kb.spans(doc), [(s.start, s.end, s.entity) for s in linked])
                        if out is not None:
                            rec = {"id": doc.id, "lang": doc.lang, "text": doc.text, "mentions": [
                                {"start": s["start"], "end": s["end"], "entity_id": s.get("id"),
                                 **({"nil": True} if s.get("id") is None else {}),
                                 "identifier": s.get("identifier"), "mention": doc.text[s["start"]:s["end"]],
                                 "score": s.get("score")} for s in found]}
                            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    bar.update(len(batch))
        finally:
            if out is not None:
                out.close()
    if out_report.skipped:
        settings["overlapping_spans_dropped"] = out_report.num_skipped
    return settings


def run_end_to_end(args: argparse.Namespace) -> dict:
    """Evaluate end-to-end linking as the parsed options say; the JSON-ready results."""
    _check_options(args)
    try:
        args.format = detect_format(args.data) if args.format == "auto" else args.format
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if args.format not in DOCUMENT_FORMATS:
        raise UsageError(f"{args.data}: --end-to-end reads anchors or aida documents, not {args.format}")
    scorer = EndToEndScorer()
    report = ReadReport()
    extra = _score_predictions(args, scorer, report) if args.predictions is not None else _run_model(args, scorer,
                                                                                                     report)
    if scorer.documents == 0:
        raise UsageError(f"{args.data}: no usable document ({report.summary()})")
    results = scorer.results()
    results["data"] = {"path": args.data, "format": args.format, **report.as_dict()}
    results["run"] = extra
    return results


def _causes(counts: Dict[str, int]) -> str:
    return ", ".join(f"{cause} {n:,}" for cause, n in counts.items())


def main_end_to_end(args: argparse.Namespace) -> int:
    """``genre-evaluate --end-to-end`` after parsing: run, print, exit status."""
    try:
        results = run_end_to_end(args)
        if args.output_json:
            with atomic_path(args.output_json) as tmp, open(tmp, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2, ensure_ascii=False)
                f.write("\n")
    except (UsageError, DatasetError, ValueError) as e:
        print(f"genre-evaluate: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout has gone: quiet_when_stdout_closes ends the command
        raise
    except OSError as e:
        print(f"genre-evaluate: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genre-evaluate: interrupted", file=sys.stderr)
        return 130
    data = results["data"]
    line = f"{args.data}: read {results['documents']:,} documents ({data['mentions']:,} InKB mentions)"
    if data["skipped"]:
        line += f", skipped {sum(data['skipped'].values()):,} ({_causes(data['skipped'])})"
    print(line)
    for example in data["examples"]:
        print(f"  {example}")
    read = results["run"].get("predictions_read")
    if read:
        line = f"{args.predictions}: read {read['mentions']:,} predicted mentions"
        if read["skipped"]:
            line += f", skipped {sum(read['skipped'].values()):,} ({_causes(read['skipped'])})"
        if read["warnings"]:
            line += f"; not counted: {_causes(read['warnings'])}"
        print(line)
        for example in read["examples"]:
            print(f"  {example}")
    print(format_report(results))
    return 0
