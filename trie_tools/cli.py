"""The ``genre-trie`` command: knowledge bases -> name tables -> prefix trees, and file inspection.

  genre-trie names   --wikidata DUMP [--redirects PAGE_SQL REDIRECT_SQL --lang LANG ...] --output KB.names
  genre-trie names   --tsv KB.tsv --output KB.names
  genre-trie names   --kilt-knowledge-source kilt_knowledgesource.json --output kilt.names
  genre-trie names   ... --anchors ANCHORS.jsonl[.gz] ... --mentions KB.mentions --output KB.names
  genre-trie build   --names KB.names --format FMT (--sentencepiece SPM | --gpt2-encoder-json F --gpt2-vocab-bpe F)
                     --dict dict.txt --output KB.trie
  genre-trie inspect FILE
  genre-trie convert --from-genre PICKLE --output KB.trie|KB.names
  genre-trie anchors --dump WIKI.xml.bz2 --lang LANG [--names KB.names] --output ANCHORS.jsonl
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import sys
import tempfile
import time
from typing import Iterator, List, Optional

from tqdm import tqdm

# fairseq logs INFO lines at import time (optional dependencies); keep this command's output clean.
logging.getLogger("fairseq").setLevel(logging.WARNING)

from genre_fairseq.outputs import check_output, os_error_line, quiet_when_stdout_closes  # noqa: E402
from genre_fairseq.name_table import MENTION_TABLE_MAGIC, NAME_TABLE_MAGIC, MentionTable, NameTable  # noqa: E402
from genre_fairseq.prefix_tree import IDENTIFIER_FORMATS, MAGIC, PrefixTree, dictionary_fingerprint  # noqa: E402

from ._io import InputError  # noqa: E402
from .encode import load_dictionary  # noqa: E402


class UsageError(Exception):
    """Bad input that ends the command with one line on stderr."""


def _split_list(value: Optional[str]) -> Optional[List[str]]:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def _say(args: argparse.Namespace, text: str) -> None:
    print(text, file=sys.stderr if getattr(args, "quiet", False) else sys.stdout)


def _check_input(path: str, option: str = "") -> None:
    """Refuse an input that is missing, not a regular file or unreadable, naming it."""
    where = f"{option} {path}".strip()
    if os.path.isdir(path):
        raise UsageError(f"{where}: is a directory, expected a file")
    if not os.path.exists(path):
        raise UsageError(f"{where}: file not found")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{where}: no permission to read")


def _return_freed_memory() -> None:
    """Serve every allocation over 128 KiB from mmap, so the arrays a build frees go back to the system.

    glibc raises its mmap threshold after each large free (up to 32 MiB); a build's later arrays then
    come from the heap, whose freed holes stay resident: 20% of the compile's peak, measured at 2.5M
    names (docs/trie_tools.md). A fixed threshold (glibc's initial one) turns that adaptation off.
    """
    try:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; not on every libc
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------- names


def cmd_names(args: argparse.Namespace) -> None:
    from .names import (DEFAULT_SOURCES, SOURCES, AnchorStats, NamesStats, SitelinkCounts, redirects_by_target,
                        tsv_names, wikidata_names)
    from .wikidata import WikidataStats
    from .wikipedia import RedirectStats

    langs = _split_list(args.langs)
    sources = _split_list(args.sources) or list(DEFAULT_SOURCES)
    bad = [s for s in sources if s not in SOURCES]
    if bad:
        raise UsageError(f"--sources: unknown source(s) {', '.join(bad)}; choose from {', '.join(SOURCES)}")
    if args.workers < 1:  # before any progress bar or output: the reader would refuse it only once read
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    redirect_pairs = args.redirects or []
    redirect_langs = args.lang or []
    if len(redirect_pairs) != len(redirect_langs):
        raise UsageError(f"give one --lang per --redirects pair ({len(redirect_pairs)} --redirects, "
                         f"{len(redirect_langs)} --lang)")
    if not args.wikidata and (redirect_pairs or args.classes is not None):
        raise UsageError("--redirects and --classes apply to --wikidata input only")
    if args.kilt_id_field and not args.kilt_knowledge_source:
        raise UsageError("--kilt-id-field applies to --kilt-knowledge-source input only")
    anchors = args.anchors or []
    inputs = ([args.wikidata or args.tsv or args.kilt_knowledge_source] + [p for pair in redirect_pairs for p in pair]
              + anchors)
    for path in inputs:
        _check_input(path)
    check_output(args.output, "--output", inputs)
    if args.mentions:
        check_output(args.mentions, "--mentions", inputs + [args.output])
    stats = NamesStats()
    started = time.time()
    sitelinks = None
    if args.wikidata:
        redirects = {}
        for (page_sql, redirect_sql), lang in zip(redirect_pairs, redirect_langs):
            rstats = RedirectStats()
            redirects[lang] = redirects_by_target(page_sql, redirect_sql, strict=args.strict, stats=rstats)
            _say(args, rstats.page_stats.summary())
            _say(args, rstats.redirect_stats.summary())
            _say(args, f"[{lang}] {rstats.summary()}")
        if args.sources and "redirects" in sources and not redirects:
            raise UsageError("--sources redirects needs --redirects PAGE_SQL REDIRECT_SQL --lang LANG")
        classes = None if args.classes is None else (_split_list(args.classes) or [])
        dump_stats = WikidataStats()
        meta = {"source": "wikidata", "dump": os.path.basename(args.wikidata), "sources": sources,
                "langs": langs, "redirect_langs": redirect_langs}
        sitelinks = SitelinkCounts()

        def records(mentions):
            kwargs = {} if classes is None else {"classes": classes}
            return wikidata_names(args.wikidata, langs=langs, sources=sources, redirects=redirects,
                                  workers=args.workers, strict=args.strict, stats=stats, dump_stats=dump_stats,
                                  mentions=mentions, sitelinks=sitelinks, encoded=True, **kwargs)
    elif args.kilt_knowledge_source:
        from .kilt_knowledge import KiltSourceStats, kilt_names

        if args.sources or langs:
            raise UsageError("--sources and --langs apply to --wikidata / --tsv input (a KILT knowledge source "
                             "has English titles only)")
        dump_stats = KiltSourceStats()
        id_field = args.kilt_id_field or "wikipedia_id"
        meta = {"source": "kilt", "file": os.path.basename(args.kilt_knowledge_source), "id_field": id_field}

        def records(mentions):
            for record in kilt_names(args.kilt_knowledge_source, id_field=id_field, strict=args.strict,
                                     stats=dump_stats, mentions=mentions):
                stats.entities += 1
                stats.kept += 1
                stats.names += 1
                stats.by_source["kilt titles"] += 1
                yield record
    else:
        from .custom_kb import CustomKBStats

        dump_stats = CustomKBStats()
        meta = {"source": "tsv", "file": os.path.basename(args.tsv), "langs": langs}

        def records(mentions):
            return tsv_names(args.tsv, langs=langs, strict=args.strict, stats=stats, kb_stats=dump_stats,
                             mentions=mentions)

    from .names import write_tables

    from contextlib import ExitStack

    from genre_fairseq.outputs import atomic_path

    # Written next to the outputs and renamed into place only when some entity has a name, so a
    # run that finds none leaves an existing --output / --mentions as it was.
    with ExitStack() as stack:
        output = stack.enter_context(atomic_path(args.output))
        mentions_output = stack.enter_context(atomic_path(args.mentions)) if args.mentions else None
        anchor_stats = AnchorStats()
        if anchors:
            meta = dict(meta, anchors=[os.path.basename(a) for a in anchors])
        meta = dict(meta, ambiguous_order=("anchors, " if anchors else "") + ("sitelinks, " if args.wikidata else "")
                    + "id rule")
        first_primary = not (args.wikidata or args.kilt_knowledge_source)
        write_tables(records, output, mentions_output=mentions_output, meta=meta, progress=not args.quiet,
                     anchors=anchors, sitelinks=sitelinks, anchor_stats=anchor_stats, strict=args.strict,
                     first_primary=first_primary, tmp_dir=args.tmp_dir, encoded=bool(args.wikidata),
                     workers=args.workers)
        if first_primary and stats.names:  # a TSV's entities are counted by the table, not a set of ids
            with NameTable.load(output, verify=False) as table:
                stats.entities = stats.kept = table.num_entities
        _say(args, dump_stats.summary())
        _say(args, stats.summary())
        if anchors:
            _say(args, anchor_stats.summary())
        if stats.names == 0:
            raise UsageError(f"no entity has a name: {args.output} was not written (check --langs and --sources)")
    with NameTable.load(args.output) as table:
        _say(args, f"{args.output}: {len(table):,} (lang, name) pairs, {table.num_entities:,} entities, "
                   f"{os.path.getsize(args.output):,} bytes, {time.time() - started:.1f} s")
    if args.mentions:
        with MentionTable.load(args.mentions) as mentions:
            _say(args, f"{args.mentions}: {len(mentions):,} mentions, {mentions.num_pairs:,} (mention, entity) pairs")


# ----------------------------------------------------------------------------- build


def _tokenizer_spec(args: argparse.Namespace):
    """The build's tokenizer options as a checked TokenizerSpec (a bad option is a UsageError)."""
    from .encode import TokenizerSpec

    spec = TokenizerSpec(sentencepiece=args.sentencepiece, gpt2_encoder_json=args.gpt2_encoder_json,
                         gpt2_vocab_bpe=args.gpt2_vocab_bpe, gpt2_leading_space=not args.gpt2_no_leading_space)
    try:
        spec.build()
    except ValueError as e:
        raise UsageError(str(e)) from None
    return spec


def _tokenized_sequences(path: str, dictionary, progress: bool) -> Iterator[List[int]]:
    eos = dictionary.eos()
    unk = dictionary.unk()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(tqdm(f, desc="reading", unit=" lines", disable=not progress), 1):
            symbols = line.split()
            if not symbols:
                continue
            ids = [dictionary.index(s) for s in symbols]
            if unk in ids:
                bad = symbols[ids.index(unk)]
                raise UsageError(f"{path}:{lineno}: symbol {bad!r} is not in the dictionary")
            yield [eos] + ids + [eos]


def _build_mention_tree(args: argparse.Namespace) -> None:
    """The mention tree of end-to-end linking: every mention of a mention table, tokenized as inside a
    sentence (as identifiers are), followed by EOS, without a start token (genre_fairseq.e2e_search)."""
    import numpy as np

    from .encode import EncodeStats, encode_identifiers

    for option in ("names", "tokenized", "format", "langs", "counts", "lang_priority", "canonical_table"):
        if getattr(args, option):
            raise UsageError(f"--{option.replace('_', '-')} does not apply to --mentions")
    dictionary = load_dictionary(args.dict)
    spec = _tokenizer_spec(args)
    if not os.path.isfile(args.mentions):
        raise UsageError(f"--mentions {args.mentions}: file not found")
    with MentionTable.load(args.mentions) as table:
        mentions = list(table.mentions())
    stats = EncodeStats()
    try:
        flat, lengths = encode_identifiers(mentions, spec, args.dict, workers=args.workers, total=len(mentions),
                                           progress=not args.quiet, strict=args.strict, stats=stats)
    except ValueError as e:
        raise UsageError(f"--strict: {e}") from None
    _say(args, stats.summary())
    if stats.encoded == 0:
        raise UsageError(f"no mention could be encoded; {args.output} not written")
    starts = np.cumsum(lengths) - lengths
    body = np.ones(flat.size, dtype=bool)
    body[starts] = False  # drop each sequence's start token, keep its final EOS
    lengths = lengths - 1
    lone = dictionary.index("\u2581") if args.sentencepiece else dictionary.unk()
    if lone != dictionary.unk():
        # SentencePiece splits a word it has no piece for into a lone "▁" (the space before it) and
        # the word's pieces. Inside a text that "▁" belongs to the space, not to the mention: the
        # markup opens after it ("▁ ▁{ F an t i ▁}", as genre-prepare --end-to-end writes targets
        # and as character offsets say), so the mention's sequence starts after it too (the rule of
        # genre_fairseq.e2e_search.mention_tree, here on the arrays of a whole mention table).
        split = (lengths > 2) & (flat[np.minimum(starts + 1, flat.size - 1)] == lone)
        body[starts[split] + 1] = False
        lengths = lengths - split
    tree = PrefixTree.from_arrays(flat[body], lengths, dictionary_fingerprint=dictionary_fingerprint(dictionary))
    tree.save(args.output)
    _say(args, f"{args.output}: mention tree of {len(tree):,} mentions, {tree.num_nodes:,} nodes, "
               f"{tree.nbytes():,} bytes of arrays")


def cmd_build(args: argparse.Namespace) -> None:
    from .encode import EncodeStats, encode_identifiers
    from .names import canonical_table, iter_identifiers, read_counts

    if args.mentions:
        _build_mention_tree(args)
        return
    if bool(args.tokenized) == bool(args.names):
        raise UsageError("give exactly one of --names KB.names or --tokenized FILE")
    _check_input(args.dict, "--dict")
    inputs = [args.names, args.tokenized, args.dict, args.sentencepiece, args.gpt2_encoder_json,
              args.gpt2_vocab_bpe, args.counts]
    check_output(args.output, "--output", inputs)
    if args.format == "canonical" and args.names:
        canonical_path = args.canonical_table or os.path.splitext(args.output)[0] + ".canonical.names"
        check_output(canonical_path, "--canonical-table", inputs + [args.output])
    dictionary = load_dictionary(args.dict)
    fingerprint = dictionary_fingerprint(dictionary)
    started = time.time()
    if args.tokenized:
        _check_input(args.tokenized, "--tokenized")
        tree = PrefixTree.from_sequences(
            _tokenized_sequences(args.tokenized, dictionary, not args.quiet),
            dictionary_fingerprint=fingerprint, start_token=dictionary.eos(), identifier_format=args.format)
        tree.save(args.output)
        _say(args, f"{args.output}: {len(tree):,} sequences, {tree.num_nodes:,} nodes, {tree.nbytes():,} bytes of arrays")
        return

    if args.format is None:
        raise UsageError("--names needs --format (name_lang, lang_name or canonical)")
    spec = _tokenizer_spec(args)
    _check_input(args.names, "--names")
    langs = _split_list(args.langs)
    table = NameTable.load(args.names, verify=not args.no_verify)
    skipped: List[str] = []
    if args.format == "canonical":
        counts = read_counts(args.counts) if args.counts else None
        identifiers_path = args.canonical_table or os.path.splitext(args.output)[0] + ".canonical.names"
        cstats = canonical_table(table, identifiers_path, counts=counts, priority=_split_list(args.lang_priority) or (),
                                 langs=langs, progress=not args.quiet)
        _say(args, f"{identifiers_path}: {cstats.summary()}")
        id_table = NameTable.load(identifiers_path)
        identifiers = (name for _, name in id_table)
        total = len(id_table)
    else:
        if args.counts or args.lang_priority or args.canonical_table:
            raise UsageError("--counts, --lang-priority and --canonical-table apply to --format canonical only")
        id_table = table
        identifiers = iter_identifiers(table, args.format, langs=langs, skipped=skipped)
        total = len(table)
    read_done = time.time()
    stats = EncodeStats()
    # The encoded sequences go to a file that the compiler reads memory-mapped (trie_tools.encode).
    with tempfile.TemporaryDirectory(prefix=".gf-build-", dir=args.tmp_dir or os.path.dirname(
            os.path.abspath(args.output))) as spool_dir:
        try:
            flat, lengths = encode_identifiers(identifiers, spec, args.dict, workers=args.workers, total=total,
                                               progress=not args.quiet, strict=args.strict, stats=stats,
                                               spool_dir=spool_dir)
        except ValueError as e:
            raise UsageError(f"--strict: {e}") from None
        encoded = time.time()
        if skipped:
            stats.failed += len(skipped)
            stats.read += len(skipped)
            stats.examples[:0] = skipped[:3]
            if args.strict:
                raise UsageError(f"--strict: {skipped[0]}")
        _say(args, stats.summary())
        if stats.encoded == 0:
            raise UsageError(f"no identifier could be encoded; {args.output} not written")
        tree = PrefixTree.from_arrays(flat, lengths, dictionary_fingerprint=fingerprint, start_token=dictionary.eos(),
                                      identifier_format=args.format, name_table_fingerprint=id_table.fingerprint)
        del flat, lengths  # unmaps the spool
    tree.save(args.output)
    done = time.time()
    _say(args, f"{args.output}: {len(tree):,} sequences, {tree.num_nodes:,} nodes, {tree.nbytes():,} bytes of arrays; "
               f"{stats.read / max(encoded - read_done, 1e-9):,.0f} names/s encoding, "
               f"{len(tree) / max(done - encoded, 1e-9):,.0f} names/s compiling, {done - started:.1f} s in all")
    if stats.failed:
        _say(args, f"warning: {stats.failed:,} identifiers are not in the tree (see above; --strict makes this fatal)")


# ----------------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace) -> None:
    _check_input(args.file)
    with open(args.file, "rb") as f:
        magic = f.read(8)
    if magic == MAGIC:
        _inspect_tree(args)
    elif magic in (NAME_TABLE_MAGIC, MENTION_TABLE_MAGIC):
        _inspect_table(args, NameTable if magic == NAME_TABLE_MAGIC else MentionTable)
    else:
        raise UsageError(f"{args.file}: not a file genre-trie knows (magic {magic!r})")


def _inspect_tree(args: argparse.Namespace) -> None:
    tree = PrefixTree.load(args.file, deep=True)
    show = _sample_text(args)  # bad options fail before anything is printed
    print(f"kind: prefix tree\nfile: {args.file}\nversion: {_version(args.file)}")
    print(f"sequences: {len(tree)}\nnodes: {tree.num_nodes}\nedges: {tree.num_edges}")
    print("bits: " + ", ".join(f"{k} {v}" for k, v in tree.bit_widths.items()))
    print(f"dictionary fingerprint: {tree.dictionary_fingerprint}")
    print(f"name table fingerprint: {tree.name_table_fingerprint}")
    print(f"start token: {tree.start_token}\nidentifier format: {tree.identifier_format}")
    for i, seq in enumerate(tree):
        if i >= args.samples:
            break
        print("  " + " ".join(map(str, seq)) + show(seq))


def _sample_text(args: argparse.Namespace):
    """How to show a tree's sample as text: ``--dict`` gives its symbols, a tokenizer the identifier."""
    from .encode import TokenizerSpec

    tokenizer = None
    if args.sentencepiece or args.gpt2_encoder_json or args.gpt2_vocab_bpe:
        if not args.dict:
            raise UsageError("inspect: a tokenizer option needs --dict (the target dictionary the tree was built for)")
        spec = TokenizerSpec(sentencepiece=args.sentencepiece, gpt2_encoder_json=args.gpt2_encoder_json,
                             gpt2_vocab_bpe=args.gpt2_vocab_bpe, gpt2_leading_space=True)
        try:
            tokenizer = spec.build()
        except ValueError as e:
            raise UsageError(str(e)) from None
    if not args.dict:
        return lambda seq: ""
    try:
        dictionary = load_dictionary(args.dict)
    except ValueError as e:
        raise UsageError(str(e)) from None

    def show(seq) -> str:
        if any(t >= len(dictionary) for t in seq):
            return "\t(ids beyond --dict: another dictionary?)"
        symbols = [dictionary[t] for t in seq if t >= dictionary.nspecial]  # no EOS/BOS/pad/unk
        return "\t" + (tokenizer.decode(symbols) if tokenizer is not None else " ".join(symbols))

    return show


def _version(path: str) -> int:
    with open(path, "rb") as f:
        return int.from_bytes(f.read(12)[8:12], "little")


def _inspect_table(args: argparse.Namespace, cls) -> None:
    with cls.load(args.file) as table:
        table.verify()
        print(f"kind: {cls._KIND}\nfile: {args.file}\nversion: {_version(args.file)}")
        print(f"fingerprint: {table.fingerprint}\nentities: {table.num_entities}")
        if cls is NameTable:
            print(f"(lang, name) pairs: {len(table)}\n(entity, lang, name) links: {table.num_links}")
            print(f"meta: {table.meta}")
            for i, (lang, name) in enumerate(table):
                if i >= args.samples:
                    break
                print(f"  [{lang}] {name} -> {', '.join(table.ids(lang, name))}")
        else:
            print(f"mentions: {len(table)}\n(mention, entity) pairs: {table.num_pairs}\nmeta: {table.meta}")
            for i, mention in enumerate(table.mentions()):
                if i >= args.samples:
                    break
                print(f"  {mention} -> " + ", ".join(f"{e} ({c})" for e, c in table.candidates(mention, 5)))


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genre-trie", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "names", help="collect entity names into a name table (and a mention table)",
        description="Read a Wikidata JSON dump (with optional Wikipedia redirects), a custom-KB TSV "
        "(entity_id<TAB>lang<TAB>name) or a KILT knowledge source, optionally with hyperlink counts from anchors, "
        "and write the name table that maps (lang, name) <-> entity ids. "
        "Malformed input lines are counted and reported; --strict makes the first one fatal.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wikidata", metavar="DUMP", help="Wikidata JSON dump (.json, .json.gz or .json.bz2)")
    src.add_argument("--tsv", metavar="KB.tsv", help="custom knowledge base: entity_id<TAB>lang<TAB>name per line; "
                     "an entity's first name in a language is its primary (canonical) one")
    src.add_argument("--kilt-knowledge-source", metavar="KS.json",
                     help="KILT's kilt_knowledgesource.json (JSON lines with wikipedia_id, wikipedia_title; .gz/.bz2 "
                     "too): the title table (lang en, name = Wikipedia title, entity id = wikipedia_id) for page-level "
                     "retrieval; build its tree with 'genre-trie build --format canonical'")
    p.add_argument("--kilt-id-field", choices=("wikipedia_id", "wikidata_id"), default=None,
                   help="--kilt-knowledge-source: the entity id of a page (default wikipedia_id, KILT's provenance "
                   "key; wikidata_id leaves out pages without a Wikidata item)")
    p.add_argument("--anchors", nargs="+", action="extend", metavar="ANCHORS.jsonl",
                   help="anchors JSON-lines files (genre-trie anchors; .gz/.bz2 too): hyperlink counts (anchor text -> "
                   "entity) added to the --mentions table, and the order of the entities of an ambiguous name "
                   "(most linked first, then most sitelinks, then the id rule; see docs/trie_tools.md)")
    p.add_argument("--redirects", nargs=2, action="append", metavar=("PAGE_SQL", "REDIRECT_SQL"),
                   help="a wiki's page.sql(.gz) and redirect.sql(.gz); repeat with one --lang each")
    p.add_argument("--lang", action="append", metavar="LANG",
                   help="the language of the preceding --redirects pair (e.g. en for enwiki)")
    p.add_argument("--langs", metavar="en,de,...", help="keep names in these languages only (default: all)")
    p.add_argument("--sources", metavar="LIST", default=None,
                   help="name sources for the name table, from titles,redirects,labels,aliases "
                   "(default titles,redirects; the mention table always uses all four)")
    p.add_argument("--classes", metavar="Q1,Q2,...", default=None,
                   help="drop items that are instance/subclass of these classes (default: the Wikimedia-internal "
                   "classes listed in the README; give an empty string to keep everything)")
    p.add_argument("--mentions", metavar="KB.mentions", help="also write the mention table (mention -> entity counts)")
    p.add_argument("--workers", type=int, default=1, help="processes parsing the Wikidata dump and, for any input, "
                   "building the tables' tries and looking up their keys (default 1; the tables are the same)")
    p.add_argument("--output", required=True, metavar="KB.names", help="where to write the name table")
    p.add_argument("--tmp-dir", metavar="DIR", help="where the sorted runs of the tables are spilled (about the size "
                   "of the input once more; default: the directory of --output)")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed line or unusable name")
    p.add_argument("--quiet", action="store_true", help="no progress bars; the summary goes to stderr")
    p.set_defaults(func=cmd_names)

    p = sub.add_parser(
        "build", help="compile identifiers into a prefix tree",
        description="Compile the identifiers of a name table (or pre-tokenized identifiers) into a prefix tree "
        "for fairseq-generate --trie. Names are encoded with the model's own tokenizer and target dictionary; "
        "identifiers that cannot be encoded are counted and reported (--strict makes them fatal).")
    p.add_argument("--names", metavar="KB.names", help="name table written by 'genre-trie names'")
    p.add_argument("--mentions", metavar="KB.mentions", help="instead of --names: compile the mention tree of this "
                   "mention table ('genre-trie names --mentions') for end-to-end linking")
    p.add_argument("--tokenized", metavar="FILE", help="instead of --names: one identifier per line, already split "
                   "into dictionary symbols (e.g. a BPE-encoded train.target)")
    p.add_argument("--format", choices=IDENTIFIER_FORMATS, default=None,
                   help="identifier format: name_lang ('name >> lang', mGENRE), lang_name ('lang >> name') or "
                   "canonical (one name per entity; GENRE's titles)")
    p.add_argument("--sentencepiece", metavar="SPM", help="SentencePiece model (mGENRE: spm_256000.model)")
    p.add_argument("--gpt2-encoder-json", metavar="F", help="GPT-2 BPE encoder.json (GENRE)")
    p.add_argument("--gpt2-vocab-bpe", metavar="F", help="GPT-2 BPE vocab.bpe (GENRE)")
    p.add_argument("--gpt2-no-leading-space", action="store_true",
                   help="encode names without the leading space GENRE's released tries use")
    p.add_argument("--dict", required=True, metavar="DICT", help="the model's target dictionary (dict.txt)")
    p.add_argument("--langs", metavar="en,de,...", help="use names in these languages only (default: all)")
    p.add_argument("--counts", metavar="TSV", help="canonical: mention counts entity_id<TAB>lang<TAB>count; "
                   "the most-mentioned language is chosen")
    p.add_argument("--lang-priority", metavar="en,de,...", help="canonical: languages preferred on ties, in order "
                   "(then the smallest code)")
    p.add_argument("--canonical-table", metavar="PATH", help="canonical: where to write the identifier -> entity "
                   "table that decoding needs (default: OUTPUT without extension + .canonical.names)")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="encoding processes (default: up to 4 CPUs)")
    p.add_argument("--output", required=True, metavar="KB.trie", help="where to write the tree")
    p.add_argument("--tmp-dir", metavar="DIR", help="where the encoded sequences are spooled while the tree compiles "
                   "(4 bytes per token, 50 bytes per mGENRE name; default: the directory of --output)")
    p.add_argument("--strict", action="store_true", help="stop at the first identifier that cannot be encoded")
    p.add_argument("--no-verify", action="store_true",
                   help="do not checksum --names before use (for a file verified once, e.g. by 'genre-trie inspect')")
    p.add_argument("--quiet", action="store_true", help="no progress bars; the summary goes to stderr")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="describe a tree, name table or mention table",
                       description="Print a file's kind, version, counts, fingerprints and sample entries, "
                       "after checking its checksums.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--samples", type=int, default=5, help="how many entries to print (default 5)")
    p.add_argument("--dict", metavar="dict.txt", help="a tree's samples: also print their dictionary symbols")
    p.add_argument("--sentencepiece", metavar="SPM", help="with --dict: print a tree's samples as identifier text")
    p.add_argument("--gpt2-encoder-json", metavar="F", help="with --dict and --gpt2-vocab-bpe: the same for GPT-2 BPE")
    p.add_argument("--gpt2-vocab-bpe", metavar="F", help="see --gpt2-encoder-json")
    p.set_defaults(func=cmd_inspect)

    from .convert import add_convert_parser

    add_convert_parser(sub)

    from .wikipedia_xml import add_anchors_parser

    add_anchors_parser(sub)
    return parser


@quiet_when_stdout_closes
def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # The readers log their summaries; this command prints them itself, once.
    logging.getLogger("trie_tools").setLevel(logging.ERROR)
    if args.command in ("names", "build"):
        _return_freed_memory()
    try:
        args.func(args)
    except (UsageError, InputError, ValueError) as e:
        print(f"genre-trie {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout has gone: quiet_when_stdout_closes ends the command
        raise
    except OSError as e:  # a directory where a file is expected, no permission, a full disk, ...
        print(f"genre-trie {args.command}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genre-trie {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
