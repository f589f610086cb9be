"""``genre-prepare --end-to-end``: documents with gold spans -> windows of source text and markup targets.

Each document (anchors JSON lines or AIDA, read by :mod:`genre_fairseq.documents`) is tokenized
with the model's tokenizer, keeping each token's characters (:mod:`genre_fairseq.markup`), and
cut into windows of at most ``--window`` tokens exactly as inference cuts it
(:func:`~genre_fairseq.markup.windows`: at sentence ends where possible). Per window:

* source: the window's tokens (``<split>.bpe.source``) and its raw text (``<split>.source``);
* target: the same tokens with ``{ mention } [ identifier ]`` around each gold span
  (:func:`~genre_fairseq.markup.target_symbols`: the copied part is the source's own symbols, so
  it is exactly what the end-to-end search lets a model copy), the identifier encoded as
  ``genre-trie build`` encodes it (so it is a path of the entity tree); ``<split>.target`` holds
  the text form (:func:`~genre_fairseq.markup.to_markup`).

Gold spans are placed by :func:`~genre_fairseq.markup.window_gold_spans`: a span whose edge falls
inside a token is snapped outwards to whole tokens (counted); a span is dropped, and counted by
reason, when it is NIL, its entity has no usable identifier (``not_in_kb``, ``no_name_in_lang``,
``unencodable_target``, ``bad_target``), it covers no token, it overlaps an earlier span after
snapping, or it crosses a window edge. docs/prepare.md gives the rules and the markup symbols.
"""
from __future__ import annotations

import argparse
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

from tqdm import tqdm

from genre_fairseq.datasets import DatasetError, Mention, ReadReport, detect_format
from genre_fairseq.documents import DOCUMENT_FORMATS, Document, read_documents
from genre_fairseq.markup import (Token, gpt2_tokens, sentencepiece_tokens, target_symbols, to_markup,
                                  token_span_to_chars, window_gold_spans, windows)

__all__ = ["DEFAULT_WINDOW", "E2EStats", "MARKUP_SYMBOLS", "markup_symbols", "prepare_end_to_end", "word_tokens"]

#: Default window in tokens (the source of one example, without EOS).
DEFAULT_WINDOW = 128
#: Markup symbols per tokenizer, as docs/end_to_end.md gives them (GPT-2: the ids of these texts).
MARKUP_SYMBOLS = {"sentencepiece": ("\u2581{", "\u2581}", "\u2581[", "\u2581]"),
                  "gpt2": (" {", " }", " [", " ]"),
                  "words": ("{", "}", "[", "]")}
#: ED-only options, refused with --end-to-end (an option must never be accepted and ignored).
_NOT_E2E = ("start_marker", "end_marker", "max_words", "max_source_tokens")
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f\x85\u2028\u2029]")
DROP_CAUSES = ("nil", "not_in_kb", "no_name_in_lang", "unencodable_target", "bad_target", "no_token",
               "overlapping", "crossing")


def word_tokens(text: str) -> List[Token]:
    """The whitespace-separated words of ``text`` as tokens with character offsets (``--no-bpe``)."""
    return [Token(m.group(0), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


@dataclass
class E2EStats:
    """What an end-to-end run read, wrote and dropped."""

    report: ReadReport = field(default_factory=ReadReport)
    writers: Dict[str, object] = field(default_factory=dict)
    documents: int = 0
    windows: Counter = field(default_factory=Counter)  # split -> windows written
    spans: int = 0  # gold spans read (NIL included)
    kept: int = 0
    snapped: int = 0  # kept spans whose edges were moved to token edges
    other_langs: int = 0  # kept spans whose identifier is a name in another language
    dropped: Counter = field(default_factory=Counter)  # cause -> spans
    source_unk: int = 0

    def summary(self) -> str:
        """One line: windows per split, spans kept, snapped and dropped by cause, then the reader's report."""
        text = "wrote " + ", ".join(f"{s} {self.windows[s]:,} windows" for s in self.writers)
        text += (f" from {self.documents:,} documents; spans: {self.spans:,} read, {self.kept:,} kept "
                 f"({self.snapped:,} snapped to token edges")
        text += f", {self.other_langs:,} with a name in another language)" if self.other_langs else ")"
        if any(self.dropped.values()):
            text += ", dropped " + ", ".join(f"{c} {self.dropped[c]:,}" for c in DROP_CAUSES if self.dropped[c])
        if self.source_unk:
            text += f"; {self.source_unk:,} windows with symbols outside --srcdict (<unk>)"
        return text + "; " + self.report.summary().replace(" mentions", " InKB mentions", 1)


def markup_symbols(args: argparse.Namespace, encoding) -> Tuple[str, str, str, str]:
    """The four dictionary symbols of ``{ } [ ]``: --markup-symbols, else the tokenizer's defaults."""
    from .prepare import UsageError

    if args.markup_symbols:
        symbols = tuple(args.markup_symbols.split())
        if len(symbols) != 4 or len(set(symbols)) != 4:
            raise UsageError(f"--markup-symbols needs 4 different symbols separated by spaces, got "
                             f"{args.markup_symbols!r}")
    elif encoding is None or args.no_bpe:
        symbols = MARKUP_SYMBOLS["words"]
    elif args.sentencepiece:
        symbols = MARKUP_SYMBOLS["sentencepiece"]
    else:
        bpe = encoding.source_tokenizer.bpe
        ids = [bpe.encode(text) for text in MARKUP_SYMBOLS["gpt2"]]
        if any(len(i) != 1 for i in ids):
            raise UsageError("this GPT-2 BPE has no single token for each of ' {', ' }', ' [', ' ]': give "
                             "--markup-symbols (docs/prepare.md)")
        symbols = tuple(str(i[0]) for i in ids)
    dictionary = encoding.target_encoder.dictionary if encoding is not None and encoding.target_encoder else None
    if dictionary is not None:
        missing = [s for s in symbols if s not in dictionary.indices]
        if missing:
            raise UsageError(f"--tgtdict {args.tgtdict}: no symbol {missing[0]!r} for the markup; give --markup-symbols "
                             "with 4 symbols of the dictionary, or append 4 dedicated symbols to the dictionaries "
                             "(docs/prepare.md, 'Markup symbols')")
    return symbols


def _tokens(encoding, text: str) -> List[Token]:
    """The source tokens of a document with their characters: SentencePiece, GPT-2 BPE, or words."""
    from .encode import GPT2Tokenizer, SentencePieceTokenizer

    tok = encoding.source_tokenizer if encoding is not None else None
    if isinstance(tok, SentencePieceTokenizer):
        return sentencepiece_tokens(tok.sp, text)
    if isinstance(tok, GPT2Tokenizer):
        return gpt2_tokens(tok.bpe, text)
    return word_tokens(text)


def _safe(symbol: str) -> str:
    """A symbol that a line of fairseq's text files can hold: an unknown piece holding whitespace or a
    control character (SentencePiece returns the raw ``\n`` of a text it cannot encode) becomes
    ``<unk>``, the id the dictionary gives it at inference anyway."""
    return "<unk>" if not symbol or _UNSAFE.search(symbol) else symbol


def _one_line(text: str) -> str:
    """``text`` with every line-breaking character replaced by a space (same length: offsets hold)."""
    return _LINE_BREAKING.sub(" ", text)


def prepare_end_to_end(args: argparse.Namespace) -> E2EStats:
    """Read every input's documents, write windows and markup targets into ``args.output``."""
    from . import prepare as ed

    for name in _NOT_E2E:
        if getattr(args, name) is not None:
            raise ed.UsageError(f"--{name.replace('_', '-')} applies to mention-level data, not to --end-to-end "
                                "(use --window)")
    if args.groups or args.split_by == "mention":
        raise ed.UsageError("--groups and --split-by mention apply to mention-level data, not to --end-to-end")
    window = args.window if args.window is not None else DEFAULT_WINDOW
    if window < 1:
        raise ed.UsageError(f"--window must be >= 1 token, got {window}")
    preset = ed.MODELS[args.model]
    fmt = args.format or preset.identifier_format
    inputs = ed._inputs(args)
    fractions = args.valid_fraction or args.test_fraction
    for what, value in (("--valid-fraction", args.valid_fraction), ("--test-fraction", args.test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ed.UsageError(f"{what} must be in [0, 1), got {value}")
    if args.valid_fraction + args.test_fraction >= 1.0:
        raise ed.UsageError("--valid-fraction + --test-fraction must be below 1 (nothing would be left to train on)")
    if fractions and not args.train:
        raise ed.UsageError("--valid-fraction/--test-fraction split the --train inputs: give --train")
    if (args.valid_fraction and args.valid) or (args.test_fraction and args.test):
        raise ed.UsageError("give a split's inputs or its fraction, not both")
    if args.max_other_langs < 0:
        raise ed.UsageError(f"--max-other-langs must be >= 0, got {args.max_other_langs}")
    formats = []
    for _, path in inputs:
        try:
            data_format = args.input_format if args.input_format != "auto" else detect_format(path)
        except DatasetError as e:
            raise ed.UsageError(str(e)) from None
        if data_format not in DOCUMENT_FORMATS:
            raise ed.UsageError(f"{path}: --end-to-end reads documents in the anchors or aida format, not {data_format}")
        if ed._gold_kind(args, data_format) == "ids" and args.name_table is None:
            raise ed.UsageError(f"{path}: gold entities are ids ({data_format}); give --name-table to turn them into "
                                "identifiers (or --gold names if they already are names)")
        formats.append(data_format)
    ed._check_outputs(args, inputs)
    encoding = ed._build_encoding(args)
    table = ed._load_table(args, fmt)
    symbols = markup_symbols(args, encoding)

    def accept(identifier: str) -> str:
        return encoding.target(identifier)[1] if encoding is not None else ""

    # One identifier per span: the name in the document's language, else the first other language's.
    chooser = ed.TargetChooser(fmt, table, max_other_langs=min(args.max_other_langs, 1), seed=args.seed,
                               priority=ed._split_list(args.lang_priority), accept=accept)
    langs = set(ed._split_list(args.langs)) or None
    os.makedirs(args.output, exist_ok=True)
    used = {split for split, _ in inputs} | ({"valid"} if args.valid_fraction else set()) \
        | ({"test"} if args.test_fraction else set())
    stats = E2EStats()
    bpe = encoding is not None and not args.no_bpe
    for split in ed.SPLITS:
        if split in used:
            stats.writers[split] = ed.SplitWriter(args.output, split, False, bpe)
    try:
        for (split, path), data_format in zip(inputs, formats):
            gold = ed._gold_kind(args, data_format)
            docs = read_documents(path, data_format, lang=args.lang, strict=args.strict, report=stats.report)
            for doc in tqdm(docs, desc=os.path.basename(os.path.normpath(path)), unit=" documents",
                            disable=args.quiet):
                if langs is not None and doc.lang not in langs:
                    stats.report.skipped["lang_not_selected"] += 1
                    continue
                target_split = split
                if split == "train" and fractions:
                    target_split = ed.split_of(doc.id, args.seed, args.valid_fraction, args.test_fraction)
                write_document(doc, gold, chooser, encoding, symbols, window, stats.writers[target_split],
                               stats, args.strict)
                stats.windows[target_split] = stats.writers[target_split].examples
    except BaseException:
        for writer in stats.writers.values():
            writer.abort()
        raise
    for writer in stats.writers.values():
        writer.commit()
    return stats


def document_examples(doc: Document, identifiers: Sequence[Tuple[int, int, str, Sequence[str]]], tokens: Sequence[Token],
                      symbols: Sequence[str], window: int) -> Tuple[List[Tuple[str, str, List[str], List[str], List[tuple]]],
                                                                    Dict[str, int]]:
    """Windows of a document: ``(source text, target text, source symbols, target symbols, kept spans)``
    each, and the counts of :func:`~genre_fairseq.markup.window_gold_spans` (kept spans are
    ``(char start, char end, snapped, (gold start, gold end))`` in the document).

    ``identifiers`` are the usable gold spans ``(start, end, identifier, identifier symbols)``.
    """
    text = doc.text
    wins = windows(text, tokens, window)
    per, counts = window_gold_spans(text, tokens, wins, [(s, e, ident, syms, (s, e)) for s, e, ident, syms in identifiers])
    out = []
    for w, spans in zip(wins, per):
        src = [_safe(t.symbol) for t in tokens[w.tok_start:w.tok_end]]
        tgt = target_symbols(src, [(a, b, syms) for a, b, _, syms, _ in spans], symbols)
        chars, kept = [], []
        for a, b, ident, _, original in spans:
            start, end = token_span_to_chars(text, tokens, a + w.tok_start, b + w.tok_start)
            chars.append((start - w.start, end - w.start, ident))
            kept.append((start, end, (start, end) != original, original))
        source_text = _one_line(text[w.start:w.end])
        out.append((source_text, _one_line(to_markup(text[w.start:w.end], chars)), src, tgt, kept))
    return out, counts


def write_document(doc: Document, gold: str, chooser, encoding, symbols: Sequence[str], window: int, writer,
                   stats: E2EStats, strict: bool) -> None:
    """Cut one document into windows, place its gold spans, write them; count everything in ``stats``."""
    from . import prepare as ed

    stats.documents += 1
    identifiers = []
    for span in doc.spans:
        stats.spans += 1
        if span.entity is None:
            stats.dropped["nil"] += 1
            continue
        mention = Mention(id=f"{doc.id}:{span.start}-{span.end}", lang=doc.lang, left="",
                          mention=doc.text[span.start:span.end], right="", entities=(span.entity,), doc_id=doc.id,
                          source=doc.source)
        try:
            choice = chooser.choose(mention, gold)
        except ValueError as e:  # e.g. a language code that cannot be part of an identifier
            choice = ed.Choice([], cause="bad_target", why=str(e))
        if not choice.targets:
            stats.dropped[choice.cause] += 1
            if strict and choice.cause in ("bad_target", "unencodable_target"):
                stats.report.skip(choice.cause, doc.source, f"mention {mention.id!r}: {choice.why}", True)
            elif len(stats.report.examples) < stats.report.max_examples:
                stats.report.examples.append(f"{doc.source}: mention {mention.id!r}: {choice.why}")
            continue
        identifier = choice.targets[0]
        syms = encoding.target(identifier)[0] if encoding is not None else identifier.split()
        identifiers.append((span.start, span.end, identifier, syms, choice.other_langs))
    tokens = _tokens(encoding, doc.text)
    examples, counts = document_examples(doc, [i[:4] for i in identifiers], tokens, symbols, window)
    other = {(s, e) for s, e, _, _, o in identifiers if o}
    for key, cause in (("empty", "no_token"), ("overlapping", "overlapping"), ("crossing", "crossing")):
        stats.dropped[cause] += counts[key]
    for source, target, src, tgt, kept in examples:
        stats.kept += len(kept)
        stats.snapped += sum(1 for _, _, moved, _ in kept if moved)
        stats.other_langs += sum(1 for _, _, _, original in kept if original in other)
        if encoding is not None:
            stats.source_unk += encoding.source_unknown(src)
        writer.write(source, [target], src, [tgt])
