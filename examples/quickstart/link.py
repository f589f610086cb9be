"""Link marked mentions to CLDR entities with the shipped tiny mGENRE, offline.

  python -m examples.quickstart                      # the sample sentences (sentences.tsv), in 16 languages
  python -m examples.quickstart --sentence "Die Hauptstadt von [START] Italien [END] ist Rom."
  python -m examples.quickstart --file my_sentences.txt --top 5 --langs de,fr
  genre-quickstart ...                               # the same from any directory (pip install -e .)
  python -m examples.quickstart --end-to-end         # raw sentences (e2e_sentences.jsonl): find and link every mention
  python -m examples.quickstart --end-to-end --text "Sie spricht Deutsch und lebt in Frankreich."

Every sentence marks one mention with ``[START] ... [END]`` (spaces around the markers are added
if missing). For each sentence it prints the best entities: rank, entity id (a CLDR code, e.g.
``territory:FR``), marginal score (log-sum-exp over the entity's generated names of
ln p / L ** 0.5), the entity's English CLDR name, and the ``name >> lang`` identifiers the beam
produced for it. The knowledge base is closed: only its 16 languages' names can come out. A
sentence in another language is still linked, through those names (mGENRE's unseen-language
setting); ``--langs`` restricts the output to names in the given KB languages, and names a
language the KB lacks as an error.

Input files: one sentence a line, or ``lang<TAB>expected id<TAB>sentence`` (as sentences.tsv),
in which case each top entity is checked against the expected id. Blank and ``#`` lines are skipped.

``--end-to-end`` uses the shipped end-to-end model (``model_e2e``): raw text in, every mention it
finds marked ``{ mention } [ name >> lang ]`` and linked (``model.link``). Its inputs: ``--text``
(repeatable), or ``--file`` with one text a line, or documents in the anchors JSON-lines format
(``.jsonl``: ``{"id", "lang", "text", "mentions": [{"start", "end", "entity_id"}]}``), whose gold
spans are then checked (strong matching: same characters, same entity). Mentions are restricted to
the KB's names (the model directory's mention tree ``cldr.mtrie``, as GENRE restricts mentions to
a mention table), unless ``--any-span`` (any span of source tokens) or ``--mention-trie`` is given.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from typing import List, NamedTuple, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL_DIR = os.path.join(HERE, "model")
SAMPLES = os.path.join(HERE, "sentences.tsv")
TRIE, NAMES, MENTION_TRIE = "cldr.trie", "cldr.names", "cldr.mtrie"
MODEL_FILES = ("model.pt", "dict.source.txt", "dict.target.txt", "spm.model", TRIE, NAMES)
DEFAULT_E2E_DIR = os.path.join(HERE, "model_e2e")
E2E_SAMPLES = os.path.join(HERE, "e2e_sentences.jsonl")
_MARKER = re.compile(r"\s*(\[START\]|\[END\])\s*")


class Item(NamedTuple):
    """One input sentence, where it came from, and what it should link to (if known)."""

    sentence: str
    origin: str
    lang: Optional[str] = None
    expected: Optional[str] = None
    gold: Optional[tuple] = None  # end-to-end: ((start, end, entity id), ...) from an anchors document


def require_file(path: str) -> None:
    """``FileNotFoundError`` naming the path when it is not a readable file (missing, or a directory)."""
    if os.path.isdir(path):
        raise FileNotFoundError(f"{path}: is a directory, not a file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file not found")


def read_documents(path: str) -> List[Item]:
    """Texts for --end-to-end: anchors JSON lines (``.jsonl``, gold spans kept) or one text a line."""
    require_file(path)
    if not path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            items = [Item(line.rstrip("\n"), f"{path}:{n}") for n, line in enumerate(f, 1)
                     if line.strip() and not line.startswith("#")]
    else:
        from genre_fairseq.datasets import DatasetError, iter_json_lines

        items = []
        try:
            for where, doc in iter_json_lines(path, strict=True):
                if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                    raise ValueError(f"{where}: expected an object with a \"text\" string")
                gold = []
                for m in doc.get("mentions") or []:
                    if not (isinstance(m, dict) and isinstance(m.get("start"), int) and isinstance(m.get("end"), int)
                            and 0 <= m["start"] < m["end"] <= len(doc["text"])):
                        raise ValueError(f"{where}: a mention needs 0 <= start < end <= len(text)")
                    gold.append((m["start"], m["end"], m.get("entity_id")))
                items.append(Item(doc["text"], where, doc.get("lang"), None, tuple(gold)))
        except DatasetError as e:
            raise ValueError(str(e)) from None
    if not items:
        raise ValueError(f"{path}: no texts")
    return items


def gather(texts: Optional[List[str]], option: str, path: Optional[str], read, samples: str) -> List[Item]:
    """The texts given with ``option`` (repeatable), then those ``read`` from ``path``; the ``samples``
    file when neither is given."""
    def read_utf8(name: str) -> List[Item]:
        try:
            return read(name)
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start} of a line)") from None

    items = [Item(text, f"{option} {i + 1}") for i, text in enumerate(texts or [])]
    if path:
        items += read_utf8(path)
    return items or read_utf8(samples)


def space_markers(sentence: str) -> str:
    """The sentence with exactly one space around each marker (what the model was trained on)."""
    return _MARKER.sub(r" \1 ", sentence).strip()


def read_items(path: str) -> List[Item]:
    """Sentences of a file: plain lines, or ``lang<TAB>expected id<TAB>sentence`` lines."""
    require_file(path)
    items = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) == 1:
                items.append(Item(fields[0], f"{path}:{lineno}"))
            elif len(fields) == 3 and all(x.strip() for x in fields):
                items.append(Item(fields[2], f"{path}:{lineno}", fields[0].strip(), fields[1].strip()))
            else:
                raise ValueError(f"{path}:{lineno}: expected a sentence, or lang<TAB>expected id<TAB>sentence")
    if not items:
        raise ValueError(f"{path}: no sentences")
    return items


def check_items(items: List[Item]) -> List[Item]:
    """Items with their markers spaced; ``ValueError`` naming the first sentence without one marked mention."""
    from genre_fairseq.hub import cut_around_mention, mGENRE

    checked = []
    for item in items:
        sentence = space_markers(item.sentence)
        try:
            cut_around_mention(sentence.split(), mGENRE.START, mGENRE.END, 10**9)
        except ValueError as e:
            raise ValueError(f"{item.origin}: {e}: {item.sentence[:80]!r}") from None
        checked.append(item._replace(sentence=sentence))
    return checked


def check_model_dir(model_dir: str, script: str = "train.sh") -> None:
    """``FileNotFoundError`` naming the first missing file of the model directory."""
    for name in MODEL_FILES:
        path = os.path.join(model_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing (the quickstart model directory needs "
                                    f"{', '.join(MODEL_FILES)}; examples/quickstart/{script} builds it)")


def load_model(model_dir: str, script: str = "train.sh"):
    """The hub model (CPU) and the name table of a quickstart model directory, checked first."""
    check_model_dir(model_dir, script)
    from genre_fairseq.hub import mGENRE
    from genre_fairseq.name_table import NameTable

    return mGENRE.from_pretrained(model_dir, device="cpu"), NameTable.load(os.path.join(model_dir, NAMES))


def describe(model_dir: str, model, table, what: str = "") -> str:
    """The first line of the output: the model directory, its size and the knowledge base."""
    return (f"model: {model_dir} ({sum(p.numel() for p in model.models[0].parameters()):,} parameters{what}); "
            f"KB: {table.num_entities:,} CLDR entities, {len(table):,} (lang, name) pairs")


def restrict_to_langs(tree, langs: List[str], kb_langs: List[str], tgt_dict, bpe):
    """The sub-tree of the identifiers ``name >> lang`` whose lang is in ``langs``."""
    from genre_fairseq.identifiers import parse_identifier
    from genre_fairseq.prefix_tree import PrefixTree

    unknown = [lang for lang in langs if lang not in kb_langs]
    if unknown:
        raise ValueError(f"--langs: the knowledge base has no names in {', '.join(unknown)} "
                         f"(its languages: {', '.join(kb_langs)})")
    wanted = set(langs)
    keep = []
    for seq in tree:
        text = bpe.decode(tgt_dict.string(seq[1:-1]))
        if parse_identifier(text, "name_lang")[0] in wanted:
            keep.append(seq)
    return PrefixTree.from_sequences(keep, dictionary_fingerprint=tree.dictionary_fingerprint,
                                     start_token=tree.start_token, identifier_format=tree.identifier_format,
                                     name_table_fingerprint=tree.name_table_fingerprint)


def english_name(table, entity_id: Optional[str]) -> str:
    """The entity's English CLDR name (or its first name) for display."""
    if entity_id is None:
        return "?"
    names = table.primary_names(entity_id) or table.names(entity_id)
    return next((name for lang, name in names if lang == "en"), names[0][1] if names else "?")


def print_result(item: Item, ranked: List[dict], table, top: int) -> Optional[bool]:
    """Print one sentence's best entities; True/False when an expected id was given, else None."""
    print(f"[{item.lang or '?'}] {item.sentence}")
    if not ranked:
        print("     (no identifier of the knowledge base fits)")
    for rank, entity in enumerate(ranked[:top], 1):
        members = [f"{t} ({s:.2f})" for t, s in zip(entity["texts"], entity["scores"])]
        more = f" +{len(members) - 3} more" if len(members) > 3 else ""
        print(f"  {rank}. {entity['id'] or '-':<15} {entity['score']:7.3f}  {english_name(table, entity['id']):<24} "
              f"{'; '.join(members[:3])}{more}")
    if item.expected is None:
        return None
    ok = bool(ranked) and ranked[0]["id"] == item.expected
    print(f"     expected {item.expected}: {'ok' if ok else 'WRONG'}")
    return ok


def print_spans(item: Item, spans: List[dict], table) -> Optional[tuple]:
    """Print one text's markup and spans; with gold spans, the (tp, fp, fn) of strong matching."""
    from genre_fairseq import markup
    from genre_fairseq.e2e_metrics import match_document

    print(f"[{item.lang or '?'}] {item.sentence}")
    print("  " + markup.to_markup(item.sentence, [(s["start"], s["end"], s["identifier"]) for s in spans]))
    gold = {(g[0], g[1]): g[2] for g in item.gold or ()}
    for span in spans:
        check = ""
        if item.gold is not None:
            check = "  ok" if gold.get((span["start"], span["end"])) == span["id"] else "  WRONG"
        print(f"  {span['start']:>4}-{span['end']:<4} {span['id'] or '-':<15} {span['score']:7.3f}  "
              f"{english_name(table, span['id']):<24} {span['identifier']}{check}")
    if not spans:
        print("     (no mention found)")
    if item.gold is None:
        return None
    predicted = [(s["start"], s["end"], s["id"]) for s in spans]
    counts = match_document(list(item.gold), predicted)["strong"]
    for (start, end), entity in sorted(gold.items()):
        if not any(p[:2] == (start, end) and p[2] == entity for p in predicted):
            print(f"     missed {start}-{end} {entity}: {item.sentence[start:end]!r}")
    return counts.tp, counts.fp, counts.fn


def end_to_end(args, started: float) -> int:
    """--end-to-end: link raw texts with the shipped end-to-end model."""
    try:
        if args.sentence or args.langs or args.no_marginalize:
            raise ValueError("--sentence, --langs and --no-marginalize do not apply to --end-to-end (use --text)")
        if args.beam < 1:
            raise ValueError("--beam must be >= 1")
        if args.any_span and args.mention_trie:
            raise ValueError("--any-span and --mention-trie exclude each other")
        items = gather(args.text, "--text", args.file, read_documents, E2E_SAMPLES)
        model_dir = args.model_dir or DEFAULT_E2E_DIR
        mention_trie = args.mention_trie or os.path.join(model_dir, MENTION_TRIE)
        if args.mention_trie:
            require_file(args.mention_trie)
        if args.any_span or not os.path.isfile(mention_trie):
            mention_trie = None
        model, table = load_model(model_dir, "train_e2e.sh")
        loaded = time.time()
        results = model.link([item.sentence for item in items], trie=os.path.join(model_dir, TRIE),
                             name_table=table, beam=args.beam, mention_trie=mention_trie)
    except (ValueError, FileNotFoundError) as e:
        print(f"quickstart: error: {e}", file=sys.stderr)
        return 2
    print(describe(model_dir, model, table, ", end to end") + "; mentions: "
          + (f"the known names ({mention_trie})" if mention_trie else "any span of words"))
    print("  start-end  entity id     score  English name              identifier\n")
    totals = [0, 0, 0]
    graded = False
    for item, spans in zip(items, results):
        counts = print_spans(item, spans, table)
        if counts is not None:
            graded = True
            totals = [a + b for a, b in zip(totals, counts)]
        print()
    summary = (f"{len(items)} texts linked in {time.time() - loaded:.1f} s (loading {loaded - started:.1f} s), "
               f"{sum(len(r) for r in results)} spans")
    if graded:
        from genre_fairseq.e2e_metrics import prf

        p, r, f = (100 * x for x in prf(*totals))
        summary += f"; strong matching: {totals[0]} of {totals[0] + totals[2]} gold spans found, " \
                   f"{totals[1]} wrong (P {p:.1f} R {r:.1f} F1 {f:.1f})"
    print(summary)
    return 0


def main(argv: Optional[List[str]] = None, prog: str = "python -m examples.quickstart") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentence", action="append", metavar="TEXT",
                        help="a sentence with one [START] mention [END] (repeatable)")
    parser.add_argument("--file", metavar="PATH", help="sentences, one a line (or lang<TAB>expected id<TAB>sentence)")
    parser.add_argument("--model-dir", help=f"the model directory (default: {DEFAULT_MODEL_DIR}; "
                        f"with --end-to-end {DEFAULT_E2E_DIR})")
    parser.add_argument("--end-to-end", action="store_true",
                        help="raw texts in, every mention found and linked (the end-to-end model)")
    parser.add_argument("--text", action="append", metavar="TEXT", help="--end-to-end: a raw text (repeatable)")
    parser.add_argument("--mention-trie", metavar="KB.mtrie",
                        help=f"--end-to-end: the mentions that may be marked (default: the model directory's "
                             f"{MENTION_TRIE} when there: the KB's names, as GENRE restricts mentions)")
    parser.add_argument("--any-span", action="store_true",
                        help="--end-to-end: any span of source tokens may be a mention (no mention tree)")
    parser.add_argument("--top", type=int, default=3, help="entities printed per sentence (default 3)")
    parser.add_argument("--beam", type=int, help="beam size (default 10, as mGENRE; 5 with --end-to-end)")
    parser.add_argument("--langs", metavar="de,fr,...", help="only names in these KB languages may be generated")
    parser.add_argument("--no-marginalize", action="store_true",
                        help="score an entity by its best name only, instead of the log-sum-exp over its names")
    args = parser.parse_args(argv)
    started = time.time()
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # its import-time INFO lines
    if args.end_to_end:
        args.beam = 5 if args.beam is None else args.beam
        return end_to_end(args, started)
    args.beam = 10 if args.beam is None else args.beam
    args.model_dir = args.model_dir or DEFAULT_MODEL_DIR
    try:
        if args.text or args.any_span or args.mention_trie:
            raise ValueError("--text, --any-span and --mention-trie need --end-to-end "
                             "(--sentence takes a sentence with a marked mention)")
        if args.top < 1 or args.beam < 1:
            raise ValueError("--top and --beam must be >= 1")
        items = gather(args.sentence, "--sentence", args.file, read_items, SAMPLES)
        items = check_items(items)
        langs = [x.strip() for x in (args.langs or "").split(",") if x.strip()]
        if args.langs is not None and not langs:
            raise ValueError("--langs: give at least one language code")

        from genre_fairseq.prefix_tree import PrefixTree

        model, table = load_model(args.model_dir)
        tree = PrefixTree.load(os.path.join(args.model_dir, TRIE))
        if langs:
            kb_langs = sorted({lang for lang, _ in table})
            tree = restrict_to_langs(tree, langs, kb_langs, model.tgt_dict, model.bpe)
        loaded = time.time()
        results = model.sample([item.sentence for item in items], beam=args.beam, trie=tree, name_table=table,
                               marginalize=not args.no_marginalize, max_len_b=32)
    except (ValueError, FileNotFoundError) as e:
        print(f"quickstart: error: {e}", file=sys.stderr)
        return 2
    print(describe(args.model_dir, model, table) + (f"; names restricted to {', '.join(langs)}" if langs else ""))
    print("rank. entity id   score  English name              name >> lang identifiers (score)\n")
    checks = []
    for item, ranked in zip(items, results):
        checks.append(print_result(item, ranked, table, args.top))
        print()
    done = time.time()
    graded = [c for c in checks if c is not None]
    summary = f"{len(items)} sentences linked in {done - loaded:.1f} s (loading {loaded - started:.1f} s)"
    if graded:
        summary += f"; top entity as expected for {sum(graded)}/{len(graded)}"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
