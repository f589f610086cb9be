"""The ``genre-evaluate`` command: accuracy of entity linking on Mewsli-9, KILT or anchors data.

Two modes:

* score a predictions file: ``genre-evaluate DATA --predictions PRED.jsonl``;
* run a model and score it: ``genre-evaluate DATA --model-dir DIR --model-type mgenre --trie KB.trie
  --name-table KB.names [--marginalize] [--candidates-from KB.mentions] [--write-predictions P.jsonl]``.

With ``--retrieval``, KILT page-level retrieval instead (``retrieval_eval``): R-precision and recall@k.
``--end-to-end`` scores whole documents instead (InKB strong/weak/MD F1, GERBIL's definitions):
:mod:`genre_fairseq.evaluate_e2e` runs that mode, :mod:`genre_fairseq.e2e_metrics` holds the metric.

Predictions file (JSON lines, one per mention, any order): ``{"id": "<mention id>",
"predictions": ["<entity id>", ...]}``, best first; an optional ``"scores"`` list is ignored.
Mention ids are those of ``genre_fairseq.datasets`` (Mewsli and anchors: ``docid:start-end``;
KILT: the record's ``id``).

Metrics (``docs/evaluate.md`` has the details): a mention is correct when its first prediction is
one of its gold entities; accuracy per language, micro average (over mentions), macro average
(over languages); recall@k (a gold entity among the first k predictions); accuracy by number of
candidates. A mention without a prediction, with an unusable input, or whose gold entity is not in
the knowledge base counts as wrong, and each is reported.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from tqdm import tqdm

# fairseq logs INFO lines at import time; keep this command's output clean.
logging.getLogger("fairseq").setLevel(logging.WARNING)

from .outputs import atomic_path, check_output, os_error_line, quiet_when_stdout_closes  # noqa: E402
from .datasets import (FORMATS, DatasetError, Mention, ReadReport, detect_format, iter_json_lines,  # noqa: E402
                       read_dataset)
from .retrieval_eval import add_retrieval_arguments, print_retrieval, run_retrieval  # noqa: E402

__all__ = ["CANDIDATE_BUCKETS", "Scorer", "candidate_bucket", "format_report", "main", "read_predictions"]

#: Buckets of the breakdown by number of candidates: (label, smallest, largest or None).
CANDIDATE_BUCKETS: Tuple[Tuple[str, int, Optional[int]], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2-5", 2, 5), ("6-10", 6, 10), (">10", 11, None))


class UsageError(Exception):
    """Bad options or input that end the command with one line on stderr."""


def candidate_bucket(n: int) -> str:
    """The label of the bucket holding ``n`` candidates."""
    for label, low, high in CANDIDATE_BUCKETS:
        if n >= low and (high is None or n <= high):
            return label
    raise ValueError(f"number of candidates must be >= 0, got {n}")


class Scorer:
    """Accumulates each mention's outcome; :meth:`results` computes every figure."""

    def __init__(self, ks: Sequence[int] = (1, 5, 10), max_examples: int = 10) -> None:
        if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"recall cut-offs must be integers >= 1, got {list(ks)}")
        self.ks = sorted(set(ks))
        self.max_examples = max_examples
        self._langs: Dict[str, Counter] = defaultdict(Counter)  # lang -> mentions, correct, hits@k, not_in_kb
        self._buckets: Dict[str, Counter] = defaultdict(Counter)  # bucket -> mentions, correct, gold_in
        self._has_candidates = False
        self._problems: Dict[str, List] = {}  # kind -> [count, examples]

    def note(self, kind: str, example: str) -> None:
        """Count a reported problem of ``kind`` (e.g. ``missing_prediction``) with an example."""
        entry = self._problems.setdefault(kind, [0, []])
        entry[0] += 1
        if len(entry[1]) < self.max_examples:
            entry[1].append(example)

    def add(self, mention: Mention, predictions: Sequence[str], *, candidates: Optional[Sequence[str]] = None,
            in_kb: Optional[bool] = None) -> Optional[int]:
        """Score one mention's ranked predictions; the 0-based rank of its first gold entity, or None.

        ``in_kb=False`` (its gold entity is not in the knowledge base) makes the mention wrong whatever
        was predicted: linking against that knowledge base could not have found it.
        """
        gold = set(mention.entities)
        rank = next((i for i, p in enumerate(predictions) if p in gold), None) if in_kb is not False else None
        counts = self._langs[mention.lang]
        counts["mentions"] += 1
        counts["correct"] += rank == 0
        for k in self.ks:
            counts[f"hits@{k}"] += rank is not None and rank < k
        if in_kb is False:
            counts["not_in_kb"] += 1
            self.note("not_in_kb", f"{mention.id} ({', '.join(mention.entities)})")
        if candidates is not None:
            self._has_candidates = True
            bucket = self._buckets[candidate_bucket(len(candidates))]
            bucket["mentions"] += 1
            bucket["correct"] += rank == 0
            bucket["gold_in_candidates"] += bool(gold.intersection(candidates))
        return rank

    def results(self) -> dict:
        """Every figure as a JSON-ready dict (fractions in [0, 1]; see docs/evaluate.md)."""
        langs = {}
        for lang in sorted(self._langs):
            c = self._langs[lang]
            langs[lang] = {"mentions": c["mentions"], "correct": c["correct"], "accuracy": c["correct"] / c["mentions"],
                           "recall": {str(k): c[f"hits@{k}"] / c["mentions"] for k in self.ks},
                           "not_in_kb": c["not_in_kb"]}
        total = sum(c["mentions"] for c in self._langs.values())
        correct = sum(c["correct"] for c in self._langs.values())
        micro = {"mentions": total, "correct": correct, "accuracy": correct / total if total else 0.0,
                 "recall": {str(k): sum(c[f"hits@{k}"] for c in self._langs.values()) / total if total else 0.0
                            for k in self.ks}}
        n = len(langs)
        macro = {"languages": n, "accuracy": sum(v["accuracy"] for v in langs.values()) / n if n else 0.0,
                 "recall": {str(k): sum(v["recall"][str(k)] for v in langs.values()) / n if n else 0.0
                            for k in self.ks}}
        buckets = None
        if self._has_candidates:
            buckets = {}
            for label, _, _ in CANDIDATE_BUCKETS:
                b = self._buckets[label]
                m = b["mentions"]
                buckets[label] = {"mentions": m, "correct": b["correct"], "accuracy": b["correct"] / m if m else None,
                                  "gold_in_candidates": b["gold_in_candidates"] / m if m else None}
        problems = {kind: {"count": count, "examples": examples}
                    for kind, (count, examples) in sorted(self._problems.items())}
        return {"ks": list(self.ks), "micro": micro, "macro": macro, "languages": langs, "candidates": buckets,
                "problems": problems}


def _percent(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def format_report(results: dict) -> str:
    """The figures of :meth:`Scorer.results` as readable tables (percentages)."""
    ks = results["ks"]
    head = ["language", "mentions", "acc@1"] + [f"R@{k}" for k in ks] + ["not in KB"]
    rows = [head]
    for lang, v in results["languages"].items():
        rows.append([lang, f"{v['mentions']:,}", _percent(v["accuracy"])] + [_percent(v["recall"][str(k)]) for k in ks]
                    + [f"{v['not_in_kb']:,}"])
    micro, macro = results["micro"], results["macro"]
    rows.append(["micro", f"{micro['mentions']:,}", _percent(micro["accuracy"])]
                + [_percent(micro["recall"][str(k)]) for k in ks]
                + [f"{sum(v['not_in_kb'] for v in results['languages'].values()):,}"])
    rows.append(["macro", f"{macro['languages']} lang" + ("s" if macro["languages"] != 1 else ""), _percent(macro["accuracy"])]
                + [_percent(macro["recall"][str(k)]) for k in ks] + [""])
    lines = _table(rows)
    if results["candidates"] is not None:
        rows = [["candidates", "mentions", "acc@1", "gold in cands"]]
        for label, b in results["candidates"].items():
            rows.append([label, f"{b['mentions']:,}", _percent(b["accuracy"]), _percent(b["gold_in_candidates"])])
        lines += [""] + _table(rows)
    for kind, p in results["problems"].items():
        lines.append(f"{kind}: {p['count']:,} mention(s) counted as wrong, e.g. {'; '.join(p['examples'][:3])}")
    return "\n".join(lines)


def _table(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


# ----------------------------------------------------------------------------- predictions files


def read_predictions(path: str, *, strict: bool = False, report: Optional[ReadReport] = None) -> Dict[str, List[str]]:
    """``mention id -> ranked entity ids`` of a predictions file; bad lines are reported (fatal if strict)."""
    report = report if report is not None else ReadReport()
    predictions: Dict[str, List[str]] = {}
    first_line: Dict[str, str] = {}
    for where, obj in iter_json_lines(path, report, strict):
        pid, preds = obj.get("id"), obj.get("predictions")
        if isinstance(pid, int) and not isinstance(pid, bool):
            pid = str(pid)
        if not isinstance(pid, str) or not pid:
            report.skip("bad_record", where, "'id' must be a non-empty string", strict)
        elif not isinstance(preds, list) or not all(isinstance(p, str) for p in preds):
            report.skip("bad_record", where, "'predictions' must be a list of strings (entity ids, best first)", strict)
        elif pid in predictions:
            report.skip("duplicate_id", where, f"id {pid!r} already has predictions at {first_line[pid]}", strict)
        else:
            predictions[pid] = preds
            first_line[pid] = where
            report.mentions += 1
    return predictions


# ----------------------------------------------------------------------------- command line


def _ks(text: str) -> List[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return ks


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


# Model options: refused with --predictions (an option must never be accepted and ignored).
_MODEL_ONLY = ("model_type", "checkpoint_file", "bpe", "sentencepiece_model", "gpt2_encoder_json", "gpt2_vocab_bpe",
               "device", "trie", "marginalize", "marginalize_alpha", "beam", "max_len_b", "batch_size", "predict",
               "no_restrict", "write_predictions")


def build_parser() -> argparse.ArgumentParser:
    """The ``genre-evaluate`` argument parser."""
    p = argparse.ArgumentParser(
        prog="genre-evaluate",
        description="Entity-linking accuracy on Mewsli-9, KILT or anchors data: score a predictions file, or run a "
                    "GENRE/mGENRE model (constrained by a prefix tree) and score it. Prints per-language accuracy, "
                    "micro and macro averages, recall@k and a breakdown by number of candidates; see docs/evaluate.md.",
)
    p.add_argument("data", help="the data set: a Mewsli-9 directory (<lang>/mentions.tsv, docs.tsv, text/), "
                                "a KILT JSON-lines file, or an anchors JSON-lines file")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                   help="format of DATA (default auto: a directory is mewsli, a JSON-lines file kilt or anchors by "
                        "its first record's keys)")
    p.add_argument("--langs", metavar="L1,L2,...",
                   help="comma-separated Mewsli language directories to read (default: all)")
    p.add_argument("--lang", help="language of KILT records (default en) and of anchors records without 'lang'")
    p.add_argument("--limit", type=_positive, metavar="N", help="evaluate only the first N mentions")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first malformed line of DATA or of the predictions file instead of skipping it")
    p.add_argument("--k", type=_ks, default=[1, 5, 10], metavar="K1,K2,...",
                   help="cut-offs of recall@k (default 1,5,10)")
    p.add_argument("--output-json", metavar="FILE", help="write every figure as JSON to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-verify", action="store_true",
                   help="do not checksum --trie, --name-table and --candidates-from before use "
                   "(for files verified once, e.g. by 'genre-trie inspect')")

    src = p.add_argument_group("what to score (exactly one)")
    what = src.add_mutually_exclusive_group(required=True)
    what.add_argument("--predictions", metavar="FILE",
                      help='JSON lines {"id": mention id, "predictions": [entity ids, best first]}')
    what.add_argument("--model-dir", metavar="DIR",
                      help="run this checkpoint directory (model.pt, dict.source.txt, dict.target.txt, BPE files)")

    kb = p.add_argument_group("knowledge base (both modes)")
    kb.add_argument("--name-table", metavar="KB.names",
                    help="name table: gold entities it does not know are reported as not in the KB; with "
                         "--model-dir, maps generated identifiers to entity ids (for a canonical tree: the "
                         ".canonical.names table)")
    kb.add_argument("--candidates-from", metavar="KB.mentions",
                    help="mention table: each mention's top candidates (exact mention string) for the breakdown by "
                         "number of candidates and, with --model-dir, to restrict decoding to them (records that "
                         "carry their own candidates use those)")
    kb.add_argument("--candidates-k", type=_positive, metavar="K",
                    help="keep the K most frequent candidates of --candidates-from (default: all)")

    m = p.add_argument_group("running a model (--model-dir)")
    m.add_argument("--model-type", choices=("genre", "mgenre"),
                   help="genre: GPT-2 BPE, [START_ENT] m [END_ENT], 384 words; mgenre: SentencePiece, [START] m [END], "
                        "128 words")
    m.add_argument("--checkpoint-file", metavar="FILE", help="checkpoint inside --model-dir (default model.pt)")
    m.add_argument("--bpe", choices=("auto", "none", "sentencepiece", "gpt2"),
                   help="BPE of the model (default auto: gpt2 for genre, sentencepiece for mgenre; none: "
                        "whitespace-separated dictionary symbols)")
    m.add_argument("--sentencepiece-model", metavar="FILE",
                   help="SentencePiece model (default: the *.model file in --model-dir)")
    m.add_argument("--gpt2-encoder-json", metavar="FILE", help="GPT-2 encoder.json (default: in --model-dir)")
    m.add_argument("--gpt2-vocab-bpe", metavar="FILE", help="GPT-2 vocab.bpe (default: in --model-dir)")
    m.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    m.add_argument("--trie", metavar="KB.trie", help="prefix tree of the valid identifiers (required)")
    m.add_argument("--predict", choices=("ids", "names"),
                   help="ids (default): entity ids through --name-table; names: the generated identifiers' names "
                        "(e.g. Wikipedia titles, for KILT), no name table needed")
    m.add_argument("--marginalize", action="store_true",
                   help="rank entities by the log-sum-exp of their names' scores (needs --name-table)")
    m.add_argument("--marginalize-alpha", type=float, metavar="A",
                   help="length normalization log p / L ** alpha (default 0.5)")
    m.add_argument("--beam", type=_positive, metavar="N", help="beam size (default 10)")
    m.add_argument("--max-len-b", type=_positive, metavar="N", help="maximum number of generated tokens (default 32)")
    m.add_argument("--batch-size", type=_positive, metavar="N", help="sentences per batch (default 32)")
    m.add_argument("--no-restrict", action="store_true",
                   help="count --candidates-from candidates for the breakdown, but decode without restricting to them")
    m.add_argument("--write-predictions", metavar="FILE", help="also write the predictions file this run produces")
    add_retrieval_arguments(p)

    e2e = p.add_argument_group("end-to-end linking (--end-to-end; docs/evaluate.md)")
    e2e.add_argument("--end-to-end", action="store_true",
                     help="score whole documents (anchors JSON lines or AIDA FILE:testb; predictions in the anchors "
                          "format): InKB micro/macro F1 with strong and weak matching, and mention-detection F1, as "
                          "GERBIL defines them; --model-dir links the documents with the hub's model.link")
    e2e.add_argument("--mention-trie", metavar="KB.mtrie",
                     help="--model-dir: mentions may only be the token sequences of this mention tree")
    e2e.add_argument("--threshold", type=float, metavar="T",
                     help="leave out predicted spans whose score is below T (--model-dir: model.link's threshold; "
                          "--predictions: spans without a score are kept)")
    e2e.add_argument("--window", type=_positive, metavar="N",
                     help="--model-dir: window size in tokens for long documents (model.link's window)")
    return p


def _check_options(args: argparse.Namespace) -> None:
    if args.candidates_k is not None and args.candidates_from is None:
        raise UsageError("--candidates-k needs --candidates-from")
    if args.predictions is not None:
        given = [name for name in _MODEL_ONLY if getattr(args, name) not in (None, False)]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} applies to --model-dir only, not to --predictions")
        return
    if args.model_type is None:
        raise UsageError("--model-dir needs --model-type genre or mgenre")
    if args.trie is None:
        raise UsageError("--model-dir needs --trie KB.trie (decoding is constrained to its identifiers)")
    args.predict = args.predict or "ids"
    if args.predict == "ids" and args.name_table is None:
        raise UsageError("--predict ids needs --name-table to map identifiers to entity ids (or use --predict names)")
    if args.marginalize and args.predict != "ids":
        raise UsageError("--marginalize groups names by entity: it needs --predict ids and --name-table")
    if args.predict == "names" and args.candidates_from is not None and not args.no_restrict:
        raise UsageError("--candidates-from gives entity ids, so restricting decoding to them needs --predict ids "
                         "(or add --no-restrict to only count them)")
    for option in ("trie", "name_table", "candidates_from"):
        path = getattr(args, option)
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"--{option.replace('_', '-')} {path}: "
                             + ("is a directory, expected a file" if os.path.isdir(path) else "file not found"))
    if not os.path.isdir(args.model_dir):
        raise UsageError(f"--model-dir {args.model_dir}: not a directory")


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse output paths that are inputs or cannot be written, before any work (a long decoding) starts."""
    inputs = [args.data, args.predictions, args.trie, args.name_table, args.candidates_from,
              args.sentencepiece_model, args.gpt2_encoder_json, args.gpt2_vocab_bpe]
    if args.model_dir is not None:
        inputs.append(os.path.join(args.model_dir, args.checkpoint_file or "model.pt"))
    if args.output_json:
        check_output(args.output_json, "--output-json", inputs)
    if args.write_predictions:
        check_output(args.write_predictions, "--write-predictions", inputs + [args.output_json])


class _KB:
    """The optional name and mention tables: gold-in-KB checks and candidates."""

    def __init__(self, args: argparse.Namespace) -> None:
        from .name_table import MentionTable, NameTable

        self.names = self.mentions = None
        for option, cls, attr in (("name_table", NameTable, "names"), ("candidates_from", MentionTable, "mentions")):
            path = getattr(args, option)
            if path is None:
                continue
            if not os.path.isfile(path):
                raise UsageError(f"--{option.replace('_', '-')} {path}: file not found")
            try:
                setattr(self, attr, cls.load(path, verify=not args.no_verify))
            except ValueError as e:
                raise UsageError(f"--{option.replace('_', '-')} {path}: {e}") from None
        self.k = args.candidates_k

    def in_kb(self, mention: Mention) -> Optional[bool]:
        """Whether a gold entity is in the name table (as an entity id, or as a name); None without a table."""
        if self.names is None:
            return None
        return any(self.names.names(g) or self.names.ids(mention.lang, g) or self.names.ids("", g)
                   for g in mention.entities)

    def candidates(self, mention: Mention) -> Optional[List[str]]:
        """The record's own candidates, else the mention table's top k; None when neither gives any."""
        if mention.candidates is not None:
            return list(mention.candidates)
        if self.mentions is None:
            return None
        return [entity for entity, _ in self.mentions.candidates(mention.mention, self.k)]


def _mentions(args: argparse.Namespace, report: ReadReport) -> Iterator[Mention]:
    """The data set's mentions (up to --limit); a repeated mention id is reported and skipped."""
    langs = [x.strip() for x in args.langs.split(",") if x.strip()] if args.langs else None
    if langs is not None and args.format not in ("auto", "mewsli"):
        raise UsageError("--langs selects Mewsli language directories; use it with a Mewsli data set")
    seen: set = set()
    n = 0
    for mention in read_dataset(args.data, args.format, strict=args.strict, report=report, langs=langs, lang=args.lang):
        if mention.id in seen:
            report.skip("duplicate_id", mention.source, f"mention id {mention.id!r} was read before", args.strict)
            continue
        seen.add(mention.id)
        yield mention
        n += 1
        if args.limit is not None and n >= args.limit:
            return


def _score_predictions(args: argparse.Namespace, kb: _KB, scorer: Scorer, report: ReadReport) -> dict:
    if not os.path.isfile(args.predictions):
        raise UsageError(f"--predictions {args.predictions}: "
                         + ("is a directory, expected a file" if os.path.isdir(args.predictions) else "file not found"))
    pred_report = ReadReport()
    predictions = read_predictions(args.predictions, strict=args.strict, report=pred_report)
    for mention in tqdm(_mentions(args, report), desc="scoring", unit=" mentions", disable=args.quiet):
        preds = predictions.pop(mention.id, None)  # what remains at the end matched no mention
        if preds is None:
            scorer.note("missing_prediction", mention.id)
            preds = []
        scorer.add(mention, preds, candidates=kb.candidates(mention), in_kb=kb.in_kb(mention))
    info = {"predictions": args.predictions, "predictions_read": pred_report.as_dict()}
    if args.limit is None:  # with --limit, the mentions past the limit would look unknown
        unknown = list(predictions)
        info["unknown_ids"] = {"count": len(unknown), "examples": unknown[:5]}
    return info


def _batches(items: Iterable[Mention], size: int) -> Iterator[List[Mention]]:
    batch: List[Mention] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_model(args: argparse.Namespace):
    """The hub model of ``--model-dir`` with the BPE and device options."""
    from .hub import GENRE, mGENRE

    cls = GENRE if args.model_type == "genre" else mGENRE
    bpe = {None: "auto", "none": None}.get(args.bpe, args.bpe)
    return cls.from_pretrained(args.model_dir, args.checkpoint_file or "model.pt", bpe=bpe,
                               sentencepiece_model=args.sentencepiece_model, gpt2_encoder_json=args.gpt2_encoder_json,
                               gpt2_vocab_bpe=args.gpt2_vocab_bpe, device=args.device)


def _run_model(args: argparse.Namespace, kb: _KB, scorer: Scorer, report: ReadReport) -> dict:
    from .prefix_tree import PrefixTree

    model = load_model(args)
    try:
        tree = PrefixTree.load(args.trie, verify=not args.no_verify)
    except ValueError as e:
        raise UsageError(f"--trie {e}") from None
    # Candidates (the record's, or --candidates-from) are entity ids: they can restrict id predictions only.
    restrict = not args.no_restrict and args.predict == "ids"
    settings = {"model_dir": args.model_dir, "model_type": args.model_type, "trie": args.trie,
                "identifier_format": tree.identifier_format or "canonical", "predict": args.predict,
                "beam": args.beam or 10, "max_len_b": args.max_len_b or 32, "marginalize": args.marginalize,
                "marginalize_alpha": 0.5 if args.marginalize_alpha is None else args.marginalize_alpha,
                "restrict_to_candidates": restrict, "mentions_restricted": 0}
    # Written under a temporary name and renamed when complete: a failed run leaves no partial file.
    tmp = f"{args.write_predictions}.tmp{os.getpid()}" if args.write_predictions else None
    out = open(tmp, "w", encoding="utf-8") if tmp else None
    done = False
    try:
        with tqdm(desc="linking", unit=" mentions", disable=args.quiet) as bar:
            for batch in _batches(_mentions(args, report), args.batch_size or 32):
                for mention, preds, scores, error in _link_batch(model, tree, batch, kb, args, settings):
                    scorer.add(mention, preds, candidates=kb.candidates(mention), in_kb=kb.in_kb(mention))
                    if error is not None:
                        scorer.note("unusable_input", error)
                    if out is not None:
                        row = {"id": mention.id, "predictions": preds}
                        row.update({"error": error} if error is not None else {"scores": scores})
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                bar.update(len(batch))
        done = True
    finally:
        if out is not None:
            out.close()
            if done:
                os.replace(tmp, args.write_predictions)
            elif os.path.exists(tmp):
                os.remove(tmp)
    return settings


def _link_batch(model, tree, batch: List[Mention], kb: _KB, args: argparse.Namespace,
                settings: dict) -> Iterator[Tuple[Mention, List[str], List[float], Optional[str]]]:
    """``(mention, predictions, scores, error)`` of each mention of a batch, in order."""
    sentences: Dict[int, str] = {}
    errors: Dict[int, str] = {}
    for i, mention in enumerate(batch):
        try:
            sentences[i] = mention.marked(model.START, model.END)
        except ValueError as e:  # the text already holds a marker: the model cannot be given this mention
            if args.strict:
                raise UsageError(str(e)) from None
            errors[i] = str(e)
    usable = list(sentences)
    cands = [kb.candidates(batch[i]) for i in usable]
    restriction = None
    if settings["restrict_to_candidates"] and any(cands):
        restriction = [c or None for c in cands]  # a mention without candidates decodes over the whole tree
        settings["mentions_restricted"] += sum(1 for c in cands if c)
    ranked: List[List[dict]] = []
    if usable:
        try:
            ranked = model.sample([sentences[i] for i in usable], beam=settings["beam"], trie=tree,
                                  name_table=kb.names if args.predict == "ids" else None,
                                  marginalize=args.marginalize, candidates=restriction,
                                  max_len_b=settings["max_len_b"], alpha=settings["marginalize_alpha"],
                                  batch_size=len(usable))
        except NotImplementedError as e:
            if restriction is None:
                raise
            raise UsageError(f"this genre_fairseq.hub cannot restrict decoding to candidates ({e}); add --no-restrict "
                             "to only count them") from None
    results = dict(zip(usable, ranked))
    for i, mention in enumerate(batch):
        if i in errors:
            yield mention, [], [], errors[i]
        else:
            yield (mention, *_predictions_of(results[i], args.predict, settings["identifier_format"]), None)


def _predictions_of(entries: List[dict], predict: str, fmt: str) -> Tuple[List[str], List[float]]:
    """Ranked entity ids (or names) and scores of one sentence's ``sample`` output, without repeats."""
    from .identifiers import parse_identifier

    preds: List[str] = []
    scores: List[float] = []
    for entry in entries:
        if predict == "ids":
            key = entry.get("id")
            if key is None:  # an identifier the name table does not know: no entity to predict
                continue
        else:
            try:
                key = parse_identifier(entry["text"], fmt)[1]
            except ValueError:
                key = entry["text"]
        if key not in preds:
            preds.append(key)
            scores.append(float(entry["score"]))
    return preds, scores


def run(args: argparse.Namespace) -> dict:
    """Evaluate as the parsed options say; return the JSON-ready results."""
    if args.retrieval:
        return run_retrieval(args, UsageError)
    _check_options(args)
    _check_outputs(args)
    if args.format == "auto":
        args.format = detect_format(args.data)
    kb = _KB(args)
    scorer = Scorer(args.k)
    report = ReadReport()
    if args.predictions is not None:
        extra = _score_predictions(args, kb, scorer, report)
    else:
        extra = _run_model(args, kb, scorer, report)
    if report.mentions == 0:
        raise UsageError(f"{args.data}: no usable mention ({report.summary()})")
    results = scorer.results()
    results["data"] = {"path": args.data, "format": args.format, **report.as_dict()}
    results["run"] = extra
    return results


def _causes(counts: Dict[str, int]) -> str:
    return ", ".join(f"{cause} {n:,}" for cause, n in counts.items())


def print_read_summary(results: dict, args: argparse.Namespace, unit: str = "mentions") -> None:
    """What was read from DATA and the predictions file, skipped by cause, with the first problems."""
    data = results["data"]
    line = f"{args.data}: read {data['mentions']:,} {unit}"
    if data["skipped"]:
        line += f", skipped {sum(data['skipped'].values()):,} ({_causes(data['skipped'])})"
    if data["warnings"]:
        line += f"; warnings: {_causes(data['warnings'])}"
    print(line)
    for example in data["examples"]:
        print(f"  {example}")
    read = results["run"].get("predictions_read")
    if read and read["skipped"]:
        print(f"{args.predictions}: skipped {sum(read['skipped'].values()):,} bad line(s) ({_causes(read['skipped'])})")
        for example in read["examples"]:
            print(f"  {example}")


@quiet_when_stdout_closes
def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``genre-evaluate``."""
    args = build_parser().parse_args(argv)
    e2e_only = [flag for flag, name in (("--end-to-end", "end_to_end"), ("--mention-trie", "mention_trie"),
                                        ("--threshold", "threshold"), ("--window", "window"))
                if getattr(args, name) not in (None, False)]
    if args.retrieval and e2e_only:
        print(f"genre-evaluate: error: --retrieval scores pages; {', '.join(e2e_only)} belong to --end-to-end "
              f"(give one of the two modes)", file=sys.stderr)
        return 2
    if args.end_to_end or any(getattr(args, name) is not None for name in ("mention_trie", "threshold", "window")):
        from .evaluate_e2e import main_end_to_end

        return main_end_to_end(args)
    try:
        results = run(args)
        if args.output_json:
            with atomic_path(args.output_json) as tmp, open(tmp, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=2, ensure_ascii=False)
                f.write("\n")
    except (UsageError, DatasetError, ValueError) as e:
        print(f"genre-evaluate: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout has gone: quiet_when_stdout_closes ends the command
        raise
    except OSError as e:  # a directory where a file is expected, no permission, a full disk, ...
        print(f"genre-evaluate: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genre-evaluate: interrupted", file=sys.stderr)
        return 130
    if args.retrieval:
        print_retrieval(results, args)
        return 0
    print_read_summary(results, args)
    unknown = results["run"].get("unknown_ids")
    if unknown and unknown["count"]:
        print(f"{args.predictions}: {unknown['count']:,} prediction(s) match no mention of the data set (ignored), "
              f"e.g. {unknown['examples'][0]!r}")
    print(format_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
