"""``genre-evaluate --retrieval``: KILT page-level retrieval, from a predictions file or by running a model.

* ``genre-evaluate TASK.jsonl --retrieval --predictions PRED.jsonl``: scores KILT-format predictions
  (``{"id", "output": [{"provenance": [{"wikipedia_id", "title"}, ...]}]}``, pages best first);
* ``genre-evaluate TASK.jsonl --retrieval --model-dir DIR --model-type genre --trie kilt.trie
  --name-table kilt.canonical.names [--write-predictions PRED.jsonl]``: retrieves the pages of each
  query's ``input`` with ``model.retrieve`` and scores them (and writes them in KILT's format).

Scores (``retrieval_metrics``): page-level R-precision, recall@k and precision@k as KILT's
``eval_retrieval.py`` defines them, averaged over the gold queries that have provenance. A query
without a usable ``input`` (missing, not a string, blank) gets no pages (it scores 0) and is
reported with its ``file:line``; so are malformed lines of either file (skipped).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Dict, List

from tqdm import tqdm

from .datasets import ReadReport
from .retrieval_metrics import RetrievalScorer, format_retrieval_report, kilt_prediction, read_gold, read_predictions

__all__ = ["add_retrieval_arguments", "print_retrieval", "run_retrieval"]

# Options of genre-evaluate that mean nothing for page-level retrieval: refused, never ignored.
_NOT_FOR_RETRIEVAL = ("langs", "lang", "candidates_from", "candidates_k", "predict", "no_restrict")


def add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--retrieval`` group of ``genre-evaluate``."""
    g = parser.add_argument_group(
        "page-level retrieval (KILT)",
        "DATA is a KILT task file (id, input, output[].provenance[].wikipedia_id); --predictions is in KILT's "
        "format, {\"id\", \"output\": [{\"provenance\": [{\"wikipedia_id\", \"title\"}, ...]}]}, pages best first; "
        "--model-dir runs model.retrieve on each input (needs --model-type, --trie and --name-table, whose entity "
        "ids are the page ids). Reports R-precision, recall@k and precision@k (--k) as KILT defines them.")
    g.add_argument("--retrieval", action="store_true",
                   help="score page-level retrieval instead of entity linking")


def _check(args: argparse.Namespace, usage_error) -> None:
    given = [name for name in _NOT_FOR_RETRIEVAL if getattr(args, name, None) not in (None, False)]
    if given:
        raise usage_error(f"--{given[0].replace('_', '-')} does not apply to --retrieval")
    if args.format not in ("auto", "kilt"):
        raise usage_error(f"--retrieval reads KILT task files, not --format {args.format}")
    if not os.path.isfile(args.data):
        raise usage_error(f"{args.data}: " + ("is a directory, expected a KILT task file" if os.path.isdir(args.data)
                                             else "file not found"))
    if args.predictions is not None:
        from .evaluate import _MODEL_ONLY

        given = [name for name in _MODEL_ONLY + ("name_table",) if getattr(args, name) not in (None, False)]
        if given:
            raise usage_error(f"--{given[0].replace('_', '-')} applies to --model-dir only, not to --predictions")
        if not os.path.isfile(args.predictions):
            raise usage_error(f"--predictions {args.predictions}: " + (
                "is a directory, expected a file" if os.path.isdir(args.predictions) else "file not found"))
        return
    if args.model_type is None:
        raise usage_error("--retrieval --model-dir needs --model-type genre or mgenre")
    if args.trie is None:
        raise usage_error("--retrieval --model-dir needs --trie (the page titles' tree)")
    if args.name_table is None:
        raise usage_error("--retrieval --model-dir needs --name-table: its entity ids are the page ids that are scored "
                          "(for a canonical tree, the .canonical.names table)")
    for option in ("trie", "name_table"):
        path = getattr(args, option)
        if not os.path.isfile(path):
            raise usage_error(f"--{option.replace('_', '-')} {path}: "
                              + ("is a directory, expected a file" if os.path.isdir(path) else "file not found"))
    if not os.path.isdir(args.model_dir):
        raise usage_error(f"--model-dir {args.model_dir}: not a directory")


def run_retrieval(args: argparse.Namespace, usage_error) -> dict:
    """Score KILT page-level retrieval as the parsed options say; the JSON-ready results."""
    from .evaluate import _check_outputs

    _check(args, usage_error)
    _check_outputs(args)
    scorer = RetrievalScorer(args.k)
    report = ReadReport()
    queries = []
    for query in read_gold(args.data, report, args.strict):
        if args.limit is not None and len(queries) == args.limit:
            break
        queries.append(query)
        scorer.add_gold(query.item)
    if not queries:
        raise usage_error(f"{args.data}: no usable query ({report.summary()})")
    if args.predictions is not None:
        pred_report = ReadReport()
        predictions = read_predictions(args.predictions, pred_report, args.strict)
        for item in predictions.values():
            scorer.add_prediction(item)
        run = {"predictions": args.predictions, "predictions_read": pred_report.as_dict()}
    else:
        run = _run_model(args, queries, scorer, report, usage_error)
    results = scorer.results()
    if args.limit is not None:
        results["unknown_ids"] = None  # predictions past the limit would look unknown
    return {"task": "retrieval", **results, "data": {"path": args.data, **report.as_dict()}, "run": run}


def _run_model(args: argparse.Namespace, queries, scorer: RetrievalScorer, report: ReadReport, usage_error) -> dict:
    from .evaluate import load_model
    from .name_table import NameTable
    from .prefix_tree import PrefixTree

    model = load_model(args)
    try:
        tree = PrefixTree.load(args.trie, verify=not args.no_verify)
        table = NameTable.load(args.name_table, verify=not args.no_verify)
    except ValueError as e:
        raise usage_error(str(e)) from None
    beam = args.beam or 10
    settings = {"model_dir": args.model_dir, "model_type": args.model_type, "trie": args.trie,
                "name_table": args.name_table, "beam": beam, "max_len_b": args.max_len_b or 32,
                "marginalize": args.marginalize,
                "marginalize_alpha": 0.5 if args.marginalize_alpha is None else args.marginalize_alpha,
                "unusable_inputs": 0}
    if max(args.k) > beam:
        settings["warning"] = (f"--beam {beam} gives at most {beam} pages a query: recall@k for k > {beam} "
                               "counts only those")
    usable = [q for q in queries if q.input is not None]
    for q in queries:
        if q.input is None:
            report.warn("unusable_input", q.where, f"query {q.id!r}: 'input' must be a non-empty string "
                        "(no pages retrieved, it scores 0)", args.strict)
            settings["unusable_inputs"] += 1
    pages: Dict[str, List[dict]] = {}
    size = args.batch_size or 32
    with tqdm(total=len(usable), desc="retrieving", unit=" queries", disable=args.quiet) as bar:
        for start in range(0, len(usable), size):
            batch = usable[start: start + size]
            ranked = model.retrieve([q.input for q in batch], trie=tree, name_table=table, beam=beam,
                                    batch_size=len(batch), max_len_b=settings["max_len_b"],
                                    alpha=settings["marginalize_alpha"], marginalize=args.marginalize)
            for q, found in zip(batch, ranked):
                pages[q.id] = [p for p in found if p["id"] is not None]
            bar.update(len(batch))
    records = [kilt_prediction(q.id, [(p["id"], p["title"]) for p in pages.get(q.id, [])]) for q in queries]
    for record in records:
        scorer.add_prediction(record)
    if args.write_predictions:
        _write(args.write_predictions, records)
    return settings


def _write(path: str, records: List[dict]) -> None:
    """Write KILT-format prediction lines under a temporary name, renamed when complete."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def print_retrieval(results: dict, args: argparse.Namespace) -> None:
    """What ``genre-evaluate --retrieval`` prints: what was read and skipped, then the scores."""
    from .evaluate import print_read_summary

    print_read_summary(results, args, unit="queries")
    if results["run"].get("warning"):
        print(f"warning: {results['run']['warning']}")
    print(format_retrieval_report(results))
