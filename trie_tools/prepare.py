"""The ``genre-prepare`` command: entity-linking data -> fairseq training pairs, and optionally a data-bin.

  genre-prepare --train DATA [DATA ...] [--valid DATA ...] [--test DATA ...] [--valid-fraction F] [--seed S]
                --model genre|mgenre [--format FMT] [--name-table KB.names] [--max-other-langs N] [--groups]
                --output DIR
                [--sentencepiece SPM | --gpt2-encoder-json F --gpt2-vocab-bpe F | --no-bpe]
                [--destdir DATA_BIN --srcdict dict.source.txt --tgtdict dict.target.txt]

Every mention read (``genre_fairseq.datasets``: Mewsli-9 TSV, KILT JSON lines, anchors JSON lines)
becomes one or more examples: a source line (the context with the mention between the model's
markers, cut around the mention) and a target line (the identifier of its gold entity). The rules
(markers, cutting, names in other languages, groups, splitting) are documented in docs/prepare.md
and in the docstrings below; files are written as the input is read, nothing is held in memory.

  genre-prepare --end-to-end --train DOCS ... --model genre|mgenre [--window N] [--markup-symbols 'O C B E'] ...

turns whole documents (anchors JSON lines, AIDA) into windows whose targets mark every gold span
as ``{ mention } [ identifier ]`` (trie_tools/prepare_e2e.py; docs/prepare.md, "End-to-end").
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

# fairseq logs INFO lines at import time (optional dependencies); keep this command's output clean.
logging.getLogger("fairseq").setLevel(logging.WARNING)

from genre_fairseq.datasets import FORMATS as INPUT_FORMATS  # noqa: E402
from genre_fairseq.datasets import DatasetError, Mention, ReadReport, detect_format, read_dataset  # noqa: E402
from genre_fairseq.datasets import data_path_exists  # noqa: E402
from genre_fairseq.context import cut_around_mention  # noqa: E402
from genre_fairseq.identifiers import FORMATS as IDENTIFIER_FORMATS  # noqa: E402
from genre_fairseq.identifiers import format_identifier  # noqa: E402
from genre_fairseq.name_table import NameTable  # noqa: E402
from genre_fairseq.outputs import check_output_dir, os_error_line, quiet_when_stdout_closes  # noqa: E402

from .encode import GPT2Tokenizer, SentencePieceTokenizer, TargetEncoder, load_dictionary  # noqa: E402

__all__ = ["MODELS", "SPLITS", "ModelPreset", "TargetChooser", "main", "names_by_language", "other_language_order",
           "split_of"]

SPLITS = ("train", "valid", "test")
CANONICAL_KIND = "canonical identifiers"  # meta["kind"] of the table `genre-trie build --format canonical` writes
# Characters that end a line for fairseq's readers (universal newlines) or for str.splitlines, and
# the other C0 controls: a target holding one would break the alignment of .source/.target lines.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


@dataclass(frozen=True)
class ModelPreset:
    """What a model expects of its sources and targets."""

    start: str
    end: str
    max_words: int
    identifier_format: str


MODELS = {
    "genre": ModelPreset("[START_ENT]", "[END_ENT]", 384, "canonical"),
    "mgenre": ModelPreset("[START]", "[END]", 128, "name_lang"),
}


class UsageError(Exception):
    """Bad input that ends the command with one line on stderr."""


# ----------------------------------------------------------------------------- rules


def _unit(seed: int, *parts: str) -> int:
    """A 64-bit number fixed by the seed and the parts (BLAKE2b): the deterministic "random" draws of this module."""
    text = "\x1f".join([str(seed), *parts]).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def split_of(key: str, seed: int, valid_fraction: float, test_fraction: float = 0.0) -> str:
    """The split of a document (or mention) ``key``: test below ``test_fraction``, then valid, else train."""
    u = _unit(seed, "split", key) / 2.0 ** 64
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def names_by_language(table: NameTable, entity_id: str) -> Dict[str, str]:
    """``lang -> name`` of an entity: its primary name there (the smallest if several), else its smallest name."""
    primary: Dict[str, str] = {}
    for lang, name in table.primary_names(entity_id):
        primary.setdefault(lang, name)  # sorted: the first is the smallest
    best: Dict[str, str] = {}
    for lang, name in table.names(entity_id):
        best.setdefault(lang, name)
    best.update(primary)
    return best


def other_language_order(langs: Sequence[str], mention_id: str, seed: int, priority: Sequence[str] = ()) -> List[str]:
    """The languages to take names from, in order: those of ``priority`` (in its order), then the rest by a
    seeded hash of (mention id, language), i.e. a pseudo-random order that is the same on every run."""
    rank = {lang: i for i, lang in enumerate(priority)}
    return sorted(langs, key=lambda lang: (rank.get(lang, len(rank)), _unit(seed, "lang", mention_id, lang), lang))


@dataclass
class Choice:
    """The targets of one mention, or why it has none."""

    targets: List[str]
    other_langs: bool = False  #: the source language had no name: targets are names in other languages
    cause: str = ""  #: skip cause when ``targets`` is empty
    why: str = ""


class TargetChooser:
    """The target identifiers of a mention's gold entity (the first one if it has several).

    * gold ``ids`` (Mewsli QIDs, anchors entity ids): the entity's names come from the name table.
      ``name_lang``/``lang_name``: the entity's name in the mention's language (see
      :func:`names_by_language`), one example; where it has none, its names in up to
      ``max_other_langs`` other languages (order: :func:`other_language_order`), one example each.
      ``canonical``: the entity's identifier in the canonical table.
    * gold ``names`` (KILT titles): the gold string is the name in the mention's language; with a
      table, only names it knows are kept.

    ``accept(identifier)`` returns "" for a usable target or the reason it is not (e.g. a symbol
    missing from the target dictionary); a rejected name is passed over and the next language tried.
    """

    def __init__(self, fmt: str, table: Optional[NameTable], *, max_other_langs: int = 5, seed: int = 0,
                 priority: Sequence[str] = (), accept=None) -> None:
        self.fmt, self.table = fmt, table
        self.max_other_langs, self.seed, self.priority = max_other_langs, seed, tuple(priority)
        self.accept = accept or (lambda identifier: "")

    def _check(self, identifier: str) -> Tuple[str, str]:
        """("", "") for a usable target, else (skip cause, why)."""
        if _LINE_BREAKING.search(identifier):
            return "bad_target", f"{identifier!r} holds a line break or control character"
        why = self.accept(identifier)
        return ("unencodable_target", why) if why else ("", "")

    def choose(self, mention: Mention, gold: str) -> Choice:
        """The targets of ``mention`` (gold ``ids`` or ``names``)."""
        entity = mention.entities[0]
        if gold == "names":
            if self.table is not None:
                key = ("", entity) if self.fmt == "canonical" else (mention.lang, entity)
                if key not in self.table:
                    return Choice([], cause="not_in_kb", why=f"gold name {entity!r} ({mention.lang}) is not in the "
                                  "name table")
            return self._single(format_identifier(entity, mention.lang, self.fmt))
        if self.fmt == "canonical":
            names = self.table.names(entity)
            if not names:
                return Choice([], cause="not_in_kb", why=f"entity {entity} is not in the canonical table")
            return self._single(names[0][1])
        own = [name for lang, name in self.table.primary_names(entity) if lang == mention.lang]
        if own:  # the common case, without reading every name of the entity
            return self._single(format_identifier(own[0], mention.lang, self.fmt))
        by_lang = names_by_language(self.table, entity)
        if not by_lang:
            return Choice([], cause="not_in_kb", why=f"entity {entity} is not in the name table")
        if mention.lang in by_lang:
            return self._single(format_identifier(by_lang[mention.lang], mention.lang, self.fmt))
        targets: List[str] = []
        rejected = ("", "")
        if self.max_other_langs > 0:
            for lang in other_language_order([x for x in by_lang if x != mention.lang], mention.id, self.seed,
                                             self.priority):
                identifier = format_identifier(by_lang[lang], lang, self.fmt)
                problem = self._check(identifier)
                if problem[0]:
                    rejected = rejected if rejected[0] else problem
                    continue
                targets.append(identifier)
                if len(targets) == self.max_other_langs:
                    break
        if targets:
            return Choice(targets, other_langs=True)
        if rejected[0]:
            return Choice([], cause=rejected[0], why=f"entity {entity}: no usable name in another language "
                          f"({rejected[1]})")
        return Choice([], cause="no_name_in_lang", why=f"entity {entity} has no name in {mention.lang!r}"
                      + (" (--max-other-langs 0)" if self.max_other_langs == 0 else ""))

    def _single(self, identifier: str) -> Choice:
        cause, why = self._check(identifier)
        return Choice([], cause=cause, why=why) if cause else Choice([identifier])


# ----------------------------------------------------------------------------- encoding


class Encoding:
    """Source and target lines -> the symbols fairseq-preprocess reads (BPE pieces or GPT-2 ids).

    Sources are encoded as fairseq's ``--bpe sentencepiece`` / ``--bpe gpt2`` encode a line. Targets
    are encoded as ``genre-trie build`` encodes identifiers (for GPT-2, with the leading space
    GENRE's tries use unless ``gpt2_leading_space`` is off), so that every target is a sequence of
    the prefix tree built with the same options.
    """

    def __init__(self, source_tokenizer, target_tokenizer, src_dict=None, tgt_dict=None) -> None:
        self.source_tokenizer, self.target_tokenizer = source_tokenizer, target_tokenizer
        self.src_dict = src_dict
        self.target_encoder = TargetEncoder(target_tokenizer, tgt_dict) if tgt_dict is not None else None
        self._cache: Dict[str, Tuple[List[str], str]] = {}

    def source(self, text: str) -> List[str]:
        """The symbols of a source line."""
        return self.source_tokenizer.symbols([text])[0]

    def source_unknown(self, symbols: Sequence[str]) -> bool:
        """Whether a source symbol is outside ``--srcdict`` (fairseq-preprocess would map it to <unk>)."""
        return self.src_dict is not None and any(s not in self.src_dict.indices for s in symbols)

    def target(self, identifier: str) -> Tuple[List[str], str]:
        """(symbols, "") of a target, or ([], why it cannot be encoded faithfully)."""
        if identifier in self._cache:
            return self._cache[identifier]
        if self.target_encoder is None:
            result = (self.target_tokenizer.symbols([identifier])[0], "")
        else:
            (ids,), failures = self.target_encoder.encode_batch([identifier])
            dictionary = self.target_encoder.dictionary
            result = ([], failures[0][1]) if failures else ([dictionary[i] for i in ids], "")
        if len(self._cache) >= 100_000:  # a bounded memo: names repeat (frequent entities), memory must not grow
            self._cache.clear()
        self._cache[identifier] = result
        return result


def _build_encoding(args: argparse.Namespace) -> Optional[Encoding]:
    if args.sentencepiece and (args.gpt2_encoder_json or args.gpt2_vocab_bpe):
        raise UsageError("give either --sentencepiece or --gpt2-encoder-json/--gpt2-vocab-bpe, not both")
    if bool(args.gpt2_encoder_json) != bool(args.gpt2_vocab_bpe):
        raise UsageError("GPT-2 BPE needs both --gpt2-encoder-json and --gpt2-vocab-bpe")
    tokenized = bool(args.sentencepiece or args.gpt2_encoder_json)
    if args.no_bpe and tokenized:
        raise UsageError("--no-bpe cannot be combined with --sentencepiece or --gpt2-*")
    if args.gpt2_no_leading_space and not args.gpt2_encoder_json:
        raise UsageError("--gpt2-no-leading-space applies to GPT-2 BPE only")
    dict_options = [args.destdir, args.srcdict, args.tgtdict]
    if any(dict_options) and not all(dict_options):
        raise UsageError("--destdir, --srcdict and --tgtdict go together (fairseq-preprocess against the model's "
                         "dict.source.txt and dict.target.txt)")
    if args.destdir and not (tokenized or args.no_bpe):
        raise UsageError("--destdir needs the model's tokenizer (--sentencepiece SPM, or --gpt2-encoder-json F "
                         "--gpt2-vocab-bpe F), or --no-bpe if the words already are dictionary symbols")
    if args.max_source_tokens is not None and not (tokenized and args.srcdict):
        raise UsageError("--max-source-tokens counts tokens: it needs a tokenizer and --srcdict")
    if not (tokenized or args.no_bpe):
        return None
    try:
        if args.sentencepiece:
            source = target = SentencePieceTokenizer(args.sentencepiece)
        elif args.gpt2_encoder_json:
            source = GPT2Tokenizer(args.gpt2_encoder_json, args.gpt2_vocab_bpe, leading_space=False)
            target = GPT2Tokenizer(args.gpt2_encoder_json, args.gpt2_vocab_bpe,
                                   leading_space=not args.gpt2_no_leading_space)
        else:
            source = target = _WordTokenizer()
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    src_dict = _load_dict(args.srcdict, "--srcdict") if args.srcdict else None
    tgt_dict = _load_dict(args.tgtdict, "--tgtdict") if args.tgtdict else None
    return Encoding(source, target, src_dict, tgt_dict)


def _load_dict(path: str, option: str):
    try:
        return load_dictionary(path)
    except ValueError as e:
        raise UsageError(str(e).replace("--dict", option, 1)) from None


class _WordTokenizer:
    """``--no-bpe``: the words of a line are its symbols (data over plain dictionary symbols, as in the tests)."""

    unknown: set = set()

    def symbols(self, texts: Sequence[str]) -> List[List[str]]:
        return [text.split() for text in texts]

    def decode(self, symbols: Sequence[str]) -> str:
        return " ".join(symbols)


# ----------------------------------------------------------------------------- output


class SplitWriter:
    """The files of one split, written as examples come: ``<split>.source/.target`` (+ ``.group``, + BPE ones).

    Files are written under temporary names and renamed by :meth:`commit`, so a failed run leaves
    no half-written split behind.
    """

    def __init__(self, directory: str, split: str, groups: bool, bpe: bool) -> None:
        names = [f"{split}.source", f"{split}.target"] + ([f"{split}.group"] if groups else [])
        if bpe:
            names += [f"{split}.bpe.source", f"{split}.bpe.target"]
        self.paths = {name: os.path.join(directory, name) for name in names}
        self._files = {name: open(path + ".tmp", "w", encoding="utf-8", newline="\n")
                       for name, path in self.paths.items()}
        self.split = split
        self.mentions = 0  # sources written (= groups)
        self.examples = 0  # lines written
        self.other_langs = 0  # mentions whose targets are names in other languages
        f = self._files
        self._source, self._target = f[f"{split}.source"], f[f"{split}.target"]
        self._group = f.get(f"{split}.group")
        self._bpe_source, self._bpe_target = f.get(f"{split}.bpe.source"), f.get(f"{split}.bpe.target")

    def write(self, source: str, targets: Sequence[str], source_symbols: Optional[Sequence[str]] = None,
              target_symbols: Optional[Sequence[Sequence[str]]] = None, other_langs: bool = False) -> None:
        """One source with its targets: one line per target, all with the same group id."""
        group = self.mentions
        for i, target in enumerate(targets):
            self._source.write(source + "\n")
            self._target.write(target + "\n")
            if self._group is not None:
                self._group.write(f"{group}\n")
            if self._bpe_source is not None:
                self._bpe_source.write(" ".join(source_symbols) + "\n")
                self._bpe_target.write(" ".join(target_symbols[i]) + "\n")
        self.mentions += 1
        self.examples += len(targets)
        self.other_langs += other_langs

    def commit(self) -> None:
        """Close the files and move them to their final names."""
        for name, f in self._files.items():
            f.close()
            os.replace(self.paths[name] + ".tmp", self.paths[name])

    def abort(self) -> None:
        """Close and delete the temporary files."""
        for name, f in self._files.items():
            f.close()
            if os.path.exists(self.paths[name] + ".tmp"):
                os.remove(self.paths[name] + ".tmp")


# ----------------------------------------------------------------------------- the run


@dataclass
class PrepareStats:
    """What a run read, wrote and skipped."""

    report: ReadReport = field(default_factory=ReadReport)  # reader problems and this command's skips
    cut_by_tokens: int = 0  # sources cut further to fit --max-source-tokens
    source_unk: int = 0  # source lines with a symbol outside --srcdict
    writers: Dict[str, "SplitWriter"] = field(default_factory=dict)  # the splits written


def _inputs(args: argparse.Namespace) -> List[Tuple[str, str]]:
    """(split, path) of every input, in order."""
    out = []
    for split in SPLITS:
        for path in getattr(args, split) or []:
            out.append((split, path))
    if not out:
        raise UsageError("no input: give --train, --valid and/or --test")
    for _, path in out:
        if not data_path_exists(path):
            raise UsageError(f"{path}: file not found")
    return out


def _check_outputs(args: argparse.Namespace, inputs: List[Tuple[str, str]]) -> None:
    """Refuse --output/--destdir directories that cannot be written or whose files would replace an input."""
    given = [path for _, path in inputs] + [args.name_table, args.sentencepiece, args.gpt2_encoder_json,
                                            args.gpt2_vocab_bpe, args.srcdict, args.tgtdict]
    files = [f"{split}{bpe}.{side}{tmp}" for split in SPLITS for bpe in ("", ".bpe")
             for side in ("source", "target", "group") for tmp in ("", ".tmp")]
    check_output_dir(args.output, "--output", given, files)
    if args.destdir:
        check_output_dir(args.destdir, "--destdir", given,
                         ["dict.source.txt", "dict.target.txt", "preprocess.log"]
                         + [f"{split}.source-target.{side}.{ext}" for split in SPLITS
                            for side in ("source", "target") for ext in ("bin", "idx")])


def _split_list(value: Optional[str]) -> List[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _gold_kind(args: argparse.Namespace, fmt: str) -> str:
    if args.gold != "auto":
        return args.gold
    return "names" if fmt in ("kilt", "aida") else "ids"


def _load_table(args: argparse.Namespace, fmt: str) -> Optional[NameTable]:
    if args.name_table is None:
        return None
    if not os.path.isfile(args.name_table):
        raise UsageError(f"--name-table {args.name_table}: file not found")
    table = NameTable.load(args.name_table)
    canonical = table.meta.get("kind") == CANONICAL_KIND
    if fmt == "canonical" and not canonical:
        raise UsageError(f"--name-table {args.name_table}: --format canonical needs the canonical table that "
                         "'genre-trie build --format canonical' writes (KB.canonical.names), not a name table")
    if fmt != "canonical" and canonical:
        raise UsageError(f"--name-table {args.name_table}: a canonical table holds one identifier per entity, "
                         f"not the names per language --format {fmt} needs; give the name table of 'genre-trie names'")
    return table


def prepare(args: argparse.Namespace) -> PrepareStats:
    """Read every input, write the splits into ``args.output``; the statistics of the run."""
    if args.end_to_end:
        from .prepare_e2e import prepare_end_to_end

        return prepare_end_to_end(args)
    for option in ("window", "markup_symbols"):
        if getattr(args, option) is not None:
            raise UsageError(f"--{option.replace('_', '-')} applies to --end-to-end only")
    preset = MODELS[args.model]
    start = args.start_marker or preset.start
    end = args.end_marker or preset.end
    max_words = args.max_words if args.max_words is not None else preset.max_words
    fmt = args.format or preset.identifier_format
    inputs = _inputs(args)
    fractions = args.valid_fraction or args.test_fraction
    for what, value in (("--valid-fraction", args.valid_fraction), ("--test-fraction", args.test_fraction)):
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{what} must be in [0, 1), got {value}")
    if args.valid_fraction + args.test_fraction >= 1.0:
        raise UsageError("--valid-fraction + --test-fraction must be below 1 (nothing would be left to train on)")
    if fractions and not args.train:
        raise UsageError("--valid-fraction/--test-fraction split the --train inputs: give --train")
    if args.valid_fraction and args.valid:
        raise UsageError("give --valid inputs or --valid-fraction, not both")
    if args.test_fraction and args.test:
        raise UsageError("give --test inputs or --test-fraction, not both")
    if max_words < 1:
        raise UsageError(f"--max-words must be >= 1, got {max_words}")
    if args.max_other_langs < 0:
        raise UsageError(f"--max-other-langs must be >= 0, got {args.max_other_langs}")
    if start == end or not start.strip() or not end.strip() or len((start + " " + end).split()) != 2:
        raise UsageError(f"markers must be two different single words, got {start!r} and {end!r}")
    formats = []
    for split, path in inputs:
        try:
            data_format = args.input_format if args.input_format != "auto" else detect_format(path)
        except DatasetError as e:
            raise UsageError(str(e)) from None
        formats.append(data_format)
        if _gold_kind(args, data_format) == "ids" and args.name_table is None:
            raise UsageError(f"{path}: gold entities are ids ({data_format}); give --name-table to turn them into "
                             "names (or --gold names if they already are names)")
    _check_outputs(args, inputs)
    encoding = _build_encoding(args)
    table = _load_table(args, fmt)
    langs = set(_split_list(args.langs)) or None

    def accept(identifier: str) -> str:
        return encoding.target(identifier)[1] if encoding is not None else ""

    chooser = TargetChooser(fmt, table, max_other_langs=args.max_other_langs, seed=args.seed,
                            priority=_split_list(args.lang_priority), accept=accept)
    os.makedirs(args.output, exist_ok=True)
    used = {split for split, _ in inputs}
    used |= {"valid"} if args.valid_fraction else set()
    used |= {"test"} if args.test_fraction else set()
    stats = PrepareStats()
    writers = stats.writers
    for split in SPLITS:
        if split in used:
            writers[split] = SplitWriter(args.output, split, args.groups, encoding is not None and not args.no_bpe)
    report = stats.report
    try:
        for (split, path), data_format in zip(inputs, formats):
            gold = _gold_kind(args, data_format)
            mentions = read_dataset(path, data_format, strict=args.strict, report=report,
                                    langs=sorted(langs) if langs and data_format == "mewsli" else None, lang=args.lang)
            for mention in tqdm(mentions, desc=os.path.basename(os.path.normpath(path)), unit=" mentions",
                                disable=args.quiet, smoothing=0.1):
                if langs is not None and mention.lang not in langs:
                    report.skipped["lang_not_selected"] += 1
                    continue
                target_split = split
                if split == "train" and fractions:
                    key = mention.id if args.split_by == "mention" else (mention.doc_id or mention.id)
                    target_split = split_of(key, args.seed, args.valid_fraction, args.test_fraction)
                _prepare_one(mention, gold, writers[target_split], chooser, encoding, start, end, max_words,
                             args, stats)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.commit()
    return stats


def _prepare_one(mention: Mention, gold: str, writer: SplitWriter, chooser: TargetChooser,
                 encoding: Optional[Encoding], start: str, end: str, max_words: int, args: argparse.Namespace,
                 stats: PrepareStats) -> None:
    report = stats.report
    try:
        words = mention.marked(start, end).split()
    except ValueError as e:
        report.skip("marker_in_text", mention.source, f"mention {mention.id!r}: {str(e).rpartition(': ')[2]}",
                    args.strict)
        return
    words = cut_around_mention(words, start, end, max_words)
    try:
        choice = chooser.choose(mention, gold)
    except ValueError as e:  # e.g. a language code that cannot be part of an identifier
        choice = Choice([], cause="bad_target", why=str(e))
    if not choice.targets:
        # Targets that cannot be written or encoded are fatal with --strict; entities outside the KB are not.
        strict = args.strict and choice.cause in ("bad_target", "unencodable_target")
        report.skip(choice.cause, mention.source, f"mention {mention.id!r}: {choice.why}", strict)
        return
    source = " ".join(words)
    source_symbols = target_symbols = None
    if encoding is not None:
        source_symbols = encoding.source(source)
        if args.max_source_tokens is not None and len(source_symbols) + 1 > args.max_source_tokens:
            # As the hub does at inference: shrink the word budget around the mention until the tokens fit.
            budget = len(words)
            mention_words = words.index(end) - words.index(start) + 1
            while len(source_symbols) + 1 > args.max_source_tokens and budget > mention_words:
                budget = max(mention_words, budget - max(1, budget // 8))
                source = " ".join(cut_around_mention(words, start, end, budget))
                source_symbols = encoding.source(source)
            if len(source_symbols) + 1 > args.max_source_tokens:
                report.skip("source_too_long", mention.source,
                            f"mention {mention.id!r}: the marked mention alone is {len(source_symbols) + 1} tokens, "
                            f"over --max-source-tokens {args.max_source_tokens}", False)
                return
            stats.cut_by_tokens += 1
        stats.source_unk += encoding.source_unknown(source_symbols)
        target_symbols = [encoding.target(t)[0] for t in choice.targets]
    writer.write(source, choice.targets, source_symbols, target_symbols, choice.other_langs)


# ----------------------------------------------------------------------------- fairseq-preprocess


def binarize(args: argparse.Namespace, writers: Dict[str, SplitWriter]) -> Dict[str, int]:
    """Run fairseq-preprocess on the written splits into ``args.destdir``; examples per binarized split."""
    from fairseq import options
    from fairseq.data import Dictionary, data_utils

    splits = {split: w for split, w in writers.items() if w.examples > 0}
    if "train" in writers and "train" not in splits:
        raise UsageError("no training example was written: nothing to binarize")
    argv = ["--source-lang", "source", "--target-lang", "target", "--srcdict", args.srcdict, "--tgtdict",
            args.tgtdict, "--destdir", args.destdir, "--workers", str(args.workers)]
    for split in splits:
        argv += [f"--{split}pref", os.path.join(args.output, split if args.no_bpe else split + ".bpe")]
    parser = options.get_preprocessing_parser()
    fairseq_args = parser.parse_args(argv)
    import fairseq_cli.preprocess as preprocess

    quiet = logging.getLogger("fairseq_cli.preprocess")
    level = quiet.level
    if args.quiet:
        quiet.setLevel(logging.WARNING)
    handlers = list(quiet.handlers)
    try:
        preprocess.main(fairseq_args)
    finally:
        quiet.setLevel(level)
        for handler in quiet.handlers[len(handlers):]:  # preprocess.main adds a log-file handler on every call
            quiet.removeHandler(handler)
            handler.close()
    counts = {}
    dictionary = Dictionary.load(os.path.join(args.destdir, "dict.source.txt"))  # fairseq's: its datasets read it
    for split, writer in splits.items():
        for side in ("source", "target"):
            data = data_utils.load_indexed_dataset(os.path.join(args.destdir, f"{split}.source-target.{side}"),
                                                   dictionary)
            if data is None or len(data) != writer.examples:
                raise UsageError(f"{args.destdir}: fairseq-preprocess wrote {0 if data is None else len(data)} "
                                 f"{split} {side} lines, expected {writer.examples}")
        counts[split] = writer.examples
        group = writer.paths.get(f"{split}.group")
        if group is not None:
            target = os.path.join(args.destdir, f"{split}.group")
            if os.path.abspath(group) != os.path.abspath(target):
                shutil.copyfile(group, target)
    return counts


# ----------------------------------------------------------------------------- command line


def summary(stats: PrepareStats) -> str:
    """One line: examples per split, mentions given other-language names, then what was read and skipped by cause."""
    writers = stats.writers
    text = "wrote " + ", ".join(f"{s} {w.examples:,} examples from {w.mentions:,} mentions" for s, w in writers.items())
    other = sum(w.other_langs for w in writers.values())
    if other:
        text += f"; mentions given names in other languages: {other:,}"
    if stats.cut_by_tokens:
        text += f"; {stats.cut_by_tokens:,} sources cut to --max-source-tokens"
    if stats.source_unk:
        text += f"; {stats.source_unk:,} sources with symbols outside --srcdict (<unk>)"
    return text + "; " + stats.report.summary()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genre-prepare", formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__,
        epilog="Malformed input is reported as file:line and counted (--strict: the first one is fatal). "
        "See docs/prepare.md for the rules.")
    g = parser.add_argument_group("inputs")
    g.add_argument("--train", nargs="+", metavar="DATA", help="training data: Mewsli-9 directories, KILT or anchors "
                   "JSON-lines files (plain, gzip or bzip2)")
    g.add_argument("--valid", nargs="+", metavar="DATA", help="validation data (or --valid-fraction)")
    g.add_argument("--test", nargs="+", metavar="DATA", help="test data (or --test-fraction)")
    g.add_argument("--input-format", choices=("auto",) + INPUT_FORMATS, default="auto",
                   help="format of every input (default auto: a directory is Mewsli, JSON lines are told apart by "
                   "their first record)")
    g.add_argument("--lang", metavar="LANG", help="language of KILT records (default en) and of anchors records "
                   "without a 'lang'")
    g.add_argument("--langs", metavar="de,ja,...", help="keep mentions in these languages only")
    g.add_argument("--gold", choices=("auto", "ids", "names"), default="auto",
                   help="what the gold entities are: ids (looked up in --name-table) or names (used directly, e.g. "
                   "KILT titles); auto: names for KILT, ids otherwise")
    g = parser.add_argument_group("splitting")
    g.add_argument("--valid-fraction", type=float, default=0.0, metavar="F",
                   help="send this fraction of the --train documents to valid (by a seeded hash)")
    g.add_argument("--test-fraction", type=float, default=0.0, metavar="F",
                   help="send this fraction of the --train documents to test")
    g.add_argument("--split-by", choices=("doc", "mention"), default="doc",
                   help="hash the document id (default: a document's mentions stay together) or the mention id")
    g.add_argument("--seed", type=int, default=0, help="seed of the split and of the other-language choice "
                   "(default 0)")
    g = parser.add_argument_group("sources")
    g.add_argument("--model", choices=sorted(MODELS), required=True,
                   help="genre: [START_ENT] m [END_ENT], 384 words, canonical titles; mgenre: [START] m [END], "
                   "128 words, name >> lang")
    g.add_argument("--start-marker", metavar="M", help="override the model's start marker")
    g.add_argument("--end-marker", metavar="M", help="override the model's end marker")
    g.add_argument("--max-words", type=int, metavar="N", help="override the model's cap on source words (the "
                   "context is cut around the mention)")
    g.add_argument("--max-source-tokens", type=int, metavar="T", help="also cut each source (around the mention) "
                   "until it has at most T tokens with EOS (needs a tokenizer and --srcdict); sources that still "
                   "do not fit are skipped")
    g = parser.add_argument_group("targets")
    g.add_argument("--format", "--identifier-format", dest="format", choices=IDENTIFIER_FORMATS,
                   help="identifier format (default: canonical for genre, name_lang for mgenre); must be the format "
                   "of the prefix tree")
    g.add_argument("--name-table", metavar="KB.names", help="names of the entities: the table of 'genre-trie names' "
                   "(name_lang, lang_name) or the KB.canonical.names table of 'genre-trie build' (canonical)")
    g.add_argument("--max-other-langs", type=int, default=5, metavar="N",
                   help="an entity without a name in the mention's language gets up to N names in other languages, "
                   "one example each (default 5; 0 skips such mentions)")
    g.add_argument("--lang-priority", metavar="en,de,...", help="languages tried first for those names, in order "
                   "(the others follow in a seeded pseudo-random order per mention)")
    g.add_argument("--groups", action="store_true", help="also write <split>.group: one group id per example; "
                   "consecutive examples with the same id are targets of one source (--target-groups)")
    g = parser.add_argument_group("output")
    g.add_argument("--output", required=True, metavar="DIR", help="directory for <split>.source/.target/.group "
                   "(and <split>.bpe.source/.target)")
    g.add_argument("--sentencepiece", metavar="SPM", help="encode with this SentencePiece model (mGENRE: "
                   "spm_256000.model), as fairseq's --bpe sentencepiece")
    g.add_argument("--gpt2-encoder-json", metavar="F", help="GPT-2 BPE encoder.json (GENRE), as fairseq's --bpe gpt2")
    g.add_argument("--gpt2-vocab-bpe", metavar="F", help="GPT-2 BPE vocab.bpe (GENRE)")
    g.add_argument("--gpt2-no-leading-space", action="store_true", help="encode targets without the leading space "
                   "(give it to 'genre-trie build' too)")
    g.add_argument("--no-bpe", action="store_true", help="no tokenizer: the words already are dictionary symbols")
    g.add_argument("--destdir", metavar="DATA_BIN", help="run fairseq-preprocess into this directory")
    g.add_argument("--srcdict", metavar="DICT", help="the model's dict.source.txt")
    g.add_argument("--tgtdict", metavar="DICT", help="the model's dict.target.txt")
    g.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers (default 1)")
    g.add_argument("--strict", action="store_true", help="stop at the first malformed line or mention")
    g.add_argument("--quiet", action="store_true", help="no progress bars; the summary goes to stderr")
    g = parser.add_argument_group("end-to-end linking (--end-to-end; docs/prepare.md)")
    g.add_argument("--end-to-end", action="store_true",
                   help="documents with all their gold spans (anchors JSON lines, AIDA FILE:split) -> windows of the "
                   "text as source, the same tokens with '{ mention } [ identifier ]' around each gold span as target")
    g.add_argument("--window", type=int, metavar="N", help="window size in tokens, cut as inference cuts documents "
                   "(default 128; give model.link the same window)")
    g.add_argument("--markup-symbols", metavar="'O C B E'", help="the 4 dictionary symbols of { } [ ] (default: "
                   "SentencePiece '▁{ ▁} ▁[ ▁]'; GPT-2 the ids of ' {' ' }' ' [' ' ]'; --no-bpe '{ } [ ]')")
    return parser


@quiet_when_stdout_closes
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = sys.stderr if args.quiet else sys.stdout
    try:
        stats = prepare(args)
        print(stats.summary() if args.end_to_end else summary(stats), file=out)
        for split, writer in stats.writers.items():
            if writer.examples == 0:
                print(f"warning: the {split} split is empty ({split}.source has no example)"
                      + (" and is not binarized" if args.destdir else ""),
                      file=out)
        if args.destdir:
            counts = binarize(args, stats.writers)
            print(f"{args.destdir}: binarized " + ", ".join(f"{s} {n:,} examples" for s, n in counts.items())
                  + " (fairseq-preprocess)", file=out)
    except (UsageError, DatasetError, ValueError) as e:
        print(f"genre-prepare: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout has gone: quiet_when_stdout_closes ends the command
        raise
    except OSError as e:  # a directory where a file is expected, no permission, a full disk, ...
        print(f"genre-prepare: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genre-prepare: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
