"""Entity names from the dump readers: name tables, mention tables, and the identifiers of a tree.

Where names come from (``sources``)
-----------------------------------
``titles``     the item's Wikipedia article title in each language (its sitelinks): primary names.
``redirects``  titles of Wikipedia redirects that lead, possibly through a chain, to that article
               (needs the language's ``page.sql`` and ``redirect.sql``).
``labels``     the Wikidata label in each language; primary where the item has no title in it.
``aliases``    the Wikidata aliases ("also known as").

The default is ``titles,redirects``: mGENRE's knowledge base (53.8M titles, 89.3M names with
redirects). An item with no name from the chosen sources is left out and counted.

The mention table (``mention -> {entity id: count}``, for candidate selection) is built from every
source read, whatever ``sources`` says: the count of (mention, entity) is the number of
(language, source) pairs in which the mention names the entity.

Hyperlink counts (``--anchors``)
--------------------------------
Anchors JSON lines (``genre-trie anchors``, AIDA, ...) add, for every linked span, 1 to the count
of (anchor text, entity): the p(e|m) prior of the reference's ``mention2wikidataID``. They are
*added* to the name-derived counts, not put in their place: the reference's alias table is one
table over anchors, titles, redirects, labels and aliases, and adding keeps the candidates of a
name that is never (or rarely) linked, while the link counts, orders of magnitude larger on
Wikipedia, decide the order wherever a text is linked. Anchors to an entity the name table does
not hold (it could never be generated) and anchor texts that cannot be stored are left out, counted.

Ambiguous names (``EntityPrior``)
---------------------------------
Where one (lang, name) names several entities, ``NameTable.ids`` lists them, and decoding picks
the first, in this order: hyperlink count of (name, entity) from ``--anchors``, descending; then
the entity's number of Wikipedia sitelinks (Wikidata input, in the kept ``--langs``), descending;
then the id rule (``Q<n>`` by n ascending). Without anchors and sitelinks (a TSV or KILT
knowledge base without ``--anchors``) the id rule alone decides, as before.

Names with a control character (tab, newline, ...) or empty after stripping surrounding
whitespace cannot be stored or generated; they are counted and reported, and ``strict`` makes
the first one fatal.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import defaultdict
from itertools import chain
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from genre_fairseq.identifiers import check_lang, choose_canonical, format_identifier
from genre_fairseq.datasets import ReadReport
from genre_fairseq.name_table import MentionTable, NameTable, _batched, encode_records, text_problem

from ._io import InputError, PathLike, open_binary
from .custom_kb import CustomKBStats, iter_custom_kb
from .wikidata import WIKIMEDIA_INTERNAL_CLASSES, WikidataEntity, WikidataStats, iter_converted, iter_entities
from .wikipedia import RedirectStats, read_redirect_map

__all__ = ["DEFAULT_SOURCES", "SOURCES", "AnchorStats", "EntityPrior", "NamesStats", "SitelinkCounts", "canonical_table",
           "iter_identifiers", "read_counts", "redirects_by_target", "tsv_names", "wikidata_names", "write_tables"]

logger = logging.getLogger(__name__)

SOURCES = ("titles", "redirects", "labels", "aliases")
_QID = re.compile(r"Q[1-9][0-9]{0,8}")  # a canonical Wikidata item id; below _MAX_INDEXED it indexes an array
_MAX_INDEXED = 1 << 28  # 268M items (Wikidata has ~120M): at most 512 MB of counts
DEFAULT_SOURCES = ("titles", "redirects")

NameRecord = Tuple[str, str, str, bool]  # entity_id, lang, name, primary


@dataclass
class NamesStats:
    """Counts of a names run: entities, names per source, and names skipped as unusable."""

    entities: int = 0  # entities read from the input
    kept: int = 0  # entities with at least one name in the table
    no_names: int = 0  # entities without a name from the chosen sources
    names: int = 0  # name records written (before duplicates collapse)
    skipped: int = 0  # names that cannot be stored (control characters, empty)
    by_source: Dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: List[str] = field(default_factory=list)

    MAX_EXAMPLES = 10

    def skip(self, entity_id: str, lang: str, name: str, why: str, strict: bool) -> None:
        """Count one unusable name; ``InputError`` if strict."""
        message = f"{entity_id} [{lang}] {name!r}: {why}"
        if strict:
            raise InputError(message)
        self.skipped += 1
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(message)

    def merge(self, counts: tuple) -> None:
        """Add the counts of another run, ``(entities, kept, no_names, names, skipped, by_source, examples)``."""
        entities, kept, no_names, names, skipped, by_source, examples = counts
        self.entities += entities
        self.kept += kept
        self.no_names += no_names
        self.names += names
        self.skipped += skipped
        for source, count in by_source.items():
            self.by_source[source] += count
        self.examples.extend(examples[: self.MAX_EXAMPLES - len(self.examples)])

    def summary(self) -> str:
        """One line: the counters, then the first skipped names."""
        sources = ", ".join(f"{k}={v:,}" for k, v in sorted(self.by_source.items()))
        text = (f"entities: read={self.entities:,}, kept={self.kept:,}, no_names={self.no_names:,}; "
                f"names: written={self.names:,} ({sources}), skipped={self.skipped:,}")
        if self.examples:
            text += "; first skipped: " + "; ".join(self.examples)
        return text


def _usable(name: str, field: str = "name") -> Optional[str]:
    """Why a name cannot be stored, or None if it can (blank counts as empty: names are stripped)."""
    if isinstance(name, str) and not name.strip():
        return "empty name"
    return text_problem(name, field)


def redirects_by_target(page_sql: PathLike, redirect_sql: PathLike, *, strict: bool = False,
                        stats: Optional[RedirectStats] = None) -> Dict[str, List[str]]:
    """Article title -> the titles of the redirects that lead to it (chains resolved), for one wiki."""
    by_target: Dict[str, List[str]] = defaultdict(list)
    for redirect, target in read_redirect_map(page_sql, redirect_sql, strict=strict, stats=stats).items():
        by_target[target].append(redirect)
    for titles in by_target.values():
        titles.sort()
    return dict(by_target)


class _EntityNames:
    """The name records of a block of Wikidata entities, made where the block is parsed (a worker).

    Called by ``iter_converted`` with the kept entities of a block; returns columns, which msgpack
    sends back compactly and ``zip`` turns into records again: ``(qids, langs, names, primary)``
    of the records (with ``encode``: the records as ``encode_records`` lines, for
    ``NameTable.build_encoded``), ``(names, qids)`` of the mention pairs (every source, with
    ``every``), ``(qids, counts)`` of the sitelink counts, and the block's :class:`NamesStats` as a tuple.
    """

    def __init__(self, want: frozenset, every: bool, redirects: Mapping[str, Mapping[str, List[str]]],
                 strict: bool, encode: bool = False) -> None:
        self.want, self.every, self.redirects, self.strict = want, every, redirects, strict
        self.encode = encode

    def __call__(self, entities: List[WikidataEntity]) -> tuple:
        want, every, redirects, strict = self.want, self.every, self.redirects, self.strict
        titles_wanted, redirects_wanted = "titles" in want, "redirects" in want
        stats = NamesStats()
        qids: List[str] = []
        langs: List[str] = []
        names: List[str] = []
        flags: List[bool] = []
        mention_names: List[str] = []
        mention_qids: List[str] = []
        link_qids: List[str] = []
        link_counts: List[int] = []
        counts = dict.fromkeys(SOURCES, 0)
        for entity in entities:
            stats.entities += 1
            qid = entity.id
            # A damaged id cannot be stored (the table refuses control characters): skip the item, counted.
            if not qid.isprintable():
                why = _usable(qid, "entity id")
                if why is not None:
                    stats.skip(qid, "", "", why, strict)
                    stats.no_names += 1
                    continue
            found: List[Tuple[str, str, str, bool]] = []  # source, lang, name, primary
            links = entity.sitelinks
            for lang, title in links.items():
                if every or titles_wanted:
                    found.append(("titles", lang, title, True))
                if redirects and (every or redirects_wanted):
                    for redirect in redirects.get(lang, {}).get(title, ()):
                        found.append(("redirects", lang, redirect, False))
            for lang, label in entity.labels.items():
                found.append(("labels", lang, label, lang not in links))
            for lang, values in entity.aliases.items():
                for alias in values:
                    found.append(("aliases", lang, alias, False))
            written = 0
            for source, lang, name, primary in found:
                # isprintable() is False for every control character and lone surrogate (and for some
                # storable characters, such as U+00A0); the only printable whitespace is " ". So a
                # printable name without a space at either end is storable as it is, and only the
                # others take the full check.
                if not (name.__class__ is str and name and name.isprintable() and lang and lang.isprintable()
                        and name[0] != " " != name[-1]):
                    why = _usable(name) or text_problem(lang, "language code")
                    if why is not None:
                        if source in want:
                            stats.skip(qid, lang, name, f"{source}: {why}", strict)
                        continue
                    name = name.strip()
                if every:
                    mention_names.append(name)
                    mention_qids.append(qid)
                if source in want:
                    counts[source] += 1
                    written += 1
                    qids.append(qid)
                    langs.append(lang)
                    names.append(name)
                    flags.append(primary)
            stats.names += written
            if written:
                stats.kept += 1
                if links:
                    link_qids.append(qid)
                    link_counts.append(len(links))
            else:
                stats.no_names += 1
        by_source = {source: count for source, count in counts.items() if count}
        records = encode_records(zip(qids, langs, names, flags)) if self.encode else (qids, langs, names, flags)
        return (records, (mention_names, mention_qids), (link_qids, link_counts),
                (stats.entities, stats.kept, stats.no_names, stats.names, stats.skipped, by_source, stats.examples))


def wikidata_names(
    dump: PathLike,
    *,
    langs: Optional[Iterable[str]] = None,
    sources: Sequence[str] = DEFAULT_SOURCES,
    redirects: Optional[Mapping[str, Mapping[str, List[str]]]] = None,
    classes: Iterable[str] = WIKIMEDIA_INTERNAL_CLASSES,
    workers: int = 1,
    strict: bool = False,
    stats: Optional[NamesStats] = None,
    dump_stats: Optional[WikidataStats] = None,
    mentions: Optional[List[Tuple[str, str]]] = None,
    sitelinks: Optional["SitelinkCounts"] = None,
    encoded: bool = False,
) -> Iterator[NameRecord]:
    """Name records ``(qid, lang, name, primary)`` of the kept items of a Wikidata dump.

    With ``encoded``, lists of those records as ``encode_records`` lines instead, one list per
    block of the dump, for ``NameTable.build_encoded``: with workers, the lines are made there.

    ``redirects`` maps a language to ``redirects_by_target`` of its wiki. Every name read, from
    any source, is also appended to ``mentions`` as ``(name, qid)`` when a list is given.
    ``sitelinks``, if given, receives each kept item's number of sitelinks (those not zero).
    With ``workers > 1`` the records are made in the worker processes that parse the dump, unless
    ``redirects`` are given: those maps stay in this process, which then makes the records.
    """
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown name source(s) {sorted(unknown)}; expected some of {', '.join(SOURCES)}")
    if "redirects" in sources and not redirects:
        sources = [s for s in sources if s != "redirects"]
    stats = stats if stats is not None else NamesStats()
    want = frozenset(sources)
    # Only the fields a source or the mention table uses are decoded (the reader skips the rest);
    # sitelinks always: they decide which labels are primary and give the sitelink counts.
    every = mentions is not None
    fields = ["sitelinks"] + [f for f in ("labels", "aliases") if every or f in want]
    convert = _EntityNames(want, every, redirects or {}, strict, encoded)
    options = dict(langs=langs, classes=classes, fields=fields, workers=workers, strict=strict, stats=dump_stats)
    if redirects and workers > 1:
        # The redirect maps stay in this process: a forked worker would copy every page of them that
        # its lookups touch (reference counts), up to a copy of the maps per worker.
        blocks = map(convert, _batched(iter_entities(dump, **options), 256))
    else:
        blocks = iter_converted(dump, convert, **options)
    for records, pairs, links, block_stats in blocks:
        stats.merge(block_stats)
        if every:
            if isinstance(mentions, (list, _MentionSpool)):
                mentions.extend(zip(*pairs))
            else:
                for pair in zip(*pairs):
                    mentions.append(pair)
        if sitelinks is not None:
            for qid, count in zip(*links):
                sitelinks[qid] = count
        if encoded:
            yield records
        else:
            yield from zip(*records)


def tsv_names(
    path: PathLike,
    *,
    langs: Optional[Iterable[str]] = None,
    strict: bool = False,
    stats: Optional[NamesStats] = None,
    kb_stats: Optional[CustomKBStats] = None,
    mentions: Optional[List[Tuple[str, str]]] = None,
) -> Iterator[Tuple[str, str, str]]:
    """Name triples ``(entity_id, lang, name)`` of a custom-KB TSV, in file order.

    An entity's first name in a language is its primary one there: ``NameTable.build(...,
    first_primary=True)`` marks it, so this reader holds no set of (entity, lang) pairs (that set
    was 130 bytes per name). ``stats.entities`` and ``stats.kept`` are left to the caller, who
    reads them off the table (every entity with a usable name is kept).
    """
    stats = stats if stats is not None else NamesStats()
    lang_set = None if langs is None else frozenset(langs)
    for entity_id, lang, name in iter_custom_kb(path, strict=strict, stats=kb_stats):
        if lang_set is not None and lang not in lang_set:
            continue
        why = _usable(name) or _usable(entity_id, "entity id") or text_problem(lang, "language code")
        if why is not None:
            stats.skip(entity_id, lang, name, why, strict)
            continue
        if mentions is not None:
            mentions.append((name, entity_id))
        stats.names += 1
        stats.by_source["tsv"] += 1
        yield entity_id, lang, name


class _MentionSpool:
    """A list-like sink that spills (mention, entity) pairs to a file, so memory stays bounded."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "mentions.tsv")
        self._f = open(self.path, "w", encoding="utf-8")

    def append(self, pair: Tuple[str, str]) -> None:
        self._f.write(f"{pair[0]}\t{pair[1]}\n")

    def extend(self, pairs: Iterable[Tuple[str, str]]) -> None:
        self._f.write("".join([f"{mention}\t{entity}\n" for mention, entity in pairs]))

    def items(self) -> Iterator[Tuple[str, str, int]]:
        self._f.close()
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                mention, entity_id = line.rstrip("\n").split("\t")
                yield mention, entity_id, 1


class SitelinkCounts:
    """Entity id -> number of sitelinks, compact: ``Q<n>`` ids in a uint16 array indexed by n, others in a dict.

    A dict of 100M Wikidata items would take gigabytes; the array takes 2 bytes per Q-number
    up to the largest one seen (about 260 MB for today's Wikidata). Counts are capped at 65535.
    """

    def __init__(self) -> None:
        self._by_number = np.zeros(0, dtype=np.uint16)
        self._other: Dict[str, int] = {}

    def __setitem__(self, entity_id: str, count: int) -> None:
        count = min(int(count), 65535)
        if _QID.fullmatch(entity_id) and int(entity_id[1:]) < _MAX_INDEXED:
            n = int(entity_id[1:])
            if n >= self._by_number.size:
                grown = np.zeros(min(max(n + 1, 2 * self._by_number.size), _MAX_INDEXED), dtype=np.uint16)
                grown[: self._by_number.size] = self._by_number
                self._by_number = grown
            self._by_number[n] = count
        else:
            self._other[entity_id] = count

    def get(self, entity_id: str, default: int = 0) -> int:
        """The count of an entity, or ``default`` if none was set (a count of 0 reads as ``default``)."""
        if _QID.fullmatch(entity_id) and int(entity_id[1:]) < _MAX_INDEXED:
            n = int(entity_id[1:])
            value = int(self._by_number[n]) if n < self._by_number.size else 0
            return value if value else default
        return self._other.get(entity_id, default)

    def __bool__(self) -> bool:
        return bool(self._other) or bool(self._by_number.any())


class EntityPrior:
    """The order of the entities of an ambiguous name: hyperlink count, then sitelink count, then the id rule."""

    def __init__(self, anchors: Optional[MentionTable] = None, sitelinks: Optional[SitelinkCounts] = None) -> None:
        self.anchors = anchors
        self.sitelinks = sitelinks if sitelinks is not None else {}

    def __bool__(self) -> bool:
        return self.anchors is not None or bool(self.sitelinks)

    def order(self, lang: str, name: str, ids: List[str]) -> List[str]:
        """``ids`` (given in id-rule order) by hyperlink count of ``name``, then sitelinks, both descending."""
        links = dict(self.anchors.candidates(name)) if self.anchors is not None else {}
        # sorted() is stable, also with reverse=True: equal keys keep the id rule's order.
        return sorted(ids, key=lambda e: (links.get(e, 0), self.sitelinks.get(e, 0)), reverse=True)


@dataclass
class AnchorStats:
    """Counts of the hyperlinks read for ``--anchors``."""

    read: ReadReport = field(default_factory=ReadReport)
    links: int = 0  # linked spans read (NIL and malformed ones are counted by ``read``)
    unusable_text: int = 0  # anchor texts that cannot be stored (control characters)
    kept: int = 0  # links added to the mention table
    not_in_table: int = 0  # links to an entity the name table does not hold

    def summary(self) -> str:
        """One line: links read, kept, left out by cause; then the reader's own counts."""
        return (f"anchors: links read={self.links:,}, kept={self.kept:,}, to entities not in the name table="
                f"{self.not_in_table:,}, unusable text={self.unusable_text:,}; {self.read.summary()}")


def _spool_anchors(paths: Sequence[PathLike], directory: str, strict: bool, stats: AnchorStats) -> str:
    """Write the ``text<TAB>entity`` of every usable link of the anchors files to a spool; its path."""
    from .anchor_priors import anchor_mentions

    path = os.path.join(directory, "anchors.tsv")
    with open(path, "w", encoding="utf-8") as f:
        for text, entity, _ in anchor_mentions(paths, strict=strict, report=stats.read):
            stats.links += 1
            why = text_problem(text, "anchor text") or text_problem(entity, "entity id")
            if why is not None:
                if strict:
                    raise InputError(f"anchors: {text!r} -> {entity!r}: {why}")
                stats.unusable_text += 1
                continue
            f.write(f"{text}\t{entity}\n")
    return path


def _spooled(path: str) -> Iterator[Tuple[str, str, int]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            mention, entity_id = line.rstrip("\n").split("\t")
            yield mention, entity_id, 1


def write_tables(
    make_records,
    output: PathLike,
    *,
    mentions_output: Optional[PathLike] = None,
    meta: Optional[dict] = None,
    progress: bool = True,
    anchors: Sequence[PathLike] = (),
    sitelinks: Optional[SitelinkCounts] = None,
    anchor_stats: Optional[AnchorStats] = None,
    strict: bool = False,
    first_primary: bool = False,
    tmp_dir: Optional[str] = None,
    encoded: bool = False,
    workers: int = 1,
) -> None:
    """Write the name table of ``make_records(mentions_sink)`` to ``output``, and the mention table if asked.

    ``encoded``: ``make_records`` gives lists of ``encode_records`` lines (``wikidata_names(...,
    encoded=True)``), not records.

    ``anchors`` (anchors JSON-lines files) add hyperlink counts to the mention table and, with
    ``sitelinks`` (filled while the records stream), order the entities of ambiguous names
    (``EntityPrior``). ``first_primary``: the records are triples whose primary names the table
    finds (``NameTable.build``), as ``tsv_names`` needs. Spools and sorted runs go to ``tmp_dir``
    (default: the directory of ``output``). ``workers``: processes that build a table's two tries at once
    and share the lookups of its keys (``NameTable.build``); the tables are the same for any number.
    """
    where = tmp_dir if tmp_dir is not None else os.path.dirname(os.path.abspath(os.fspath(output)))
    anchor_stats = anchor_stats if anchor_stats is not None else AnchorStats()
    with tempfile.TemporaryDirectory(prefix=".gf-names-", dir=where) as tmp:
        prior = EntityPrior(sitelinks=sitelinks)
        anchor_spool = None
        if anchors:
            anchor_spool = _spool_anchors(anchors, tmp, strict, anchor_stats)
            anchors_table = os.path.join(tmp, "anchors.mentions")
            MentionTable.build(_spooled(anchor_spool), anchors_table, tmp_dir=tmp)
            prior.anchors = MentionTable.load(anchors_table)
        spool = _MentionSpool(tmp) if mentions_output is not None else None
        records = make_records(spool)
        try:
            # ``order`` is called after every record is read, when ``sitelinks`` is complete.
            order = prior.order if (anchors or sitelinks is not None) else None
            if encoded:
                with tqdm(desc="names", unit=" names", disable=not progress, smoothing=0.1) as bar:
                    NameTable.build_encoded(_counted(records, bar), output, meta=meta, order_ids=order, tmp_dir=tmp,
                                            workers=workers)
            else:
                NameTable.build(tqdm(records, desc="names", unit=" names", disable=not progress, smoothing=0.1),
                                output, meta=meta, order_ids=order, first_primary=first_primary, tmp_dir=tmp,
                                workers=workers)
        finally:
            if prior.anchors is not None:
                prior.anchors.close()
        if spool is not None:
            items = spool.items()
            if anchor_spool is not None:
                with NameTable.load(output, verify=False) as table:
                    items = chain(items, _linked(_spooled(anchor_spool), table, anchor_stats))
                    MentionTable.build(tqdm(items, desc="mentions", unit=" mentions", disable=not progress,
                                            smoothing=0.1), mentions_output, meta=meta, tmp_dir=tmp,
                                      workers=workers)
            else:
                MentionTable.build(tqdm(items, desc="mentions", unit=" mentions", disable=not progress,
                                        smoothing=0.1), mentions_output, meta=meta, tmp_dir=tmp,
                                  workers=workers)
        elif anchor_spool is not None:
            with NameTable.load(output, verify=False) as table:
                for _ in _linked(_spooled(anchor_spool), table, anchor_stats):
                    pass  # counted only: without --mentions the links order the name table alone


def _counted(batches: Iterable[list], bar: tqdm) -> Iterator[list]:
    """`batches` as they come, the progress bar advanced by the length of each."""
    for batch in batches:
        bar.update(len(batch))
        yield batch


def _linked(items: Iterable[Tuple[str, str, int]], table: NameTable,
            stats: AnchorStats) -> Iterator[Tuple[str, str, int]]:
    """The links whose entity the name table holds; the others are counted."""
    for mention, entity_id, count in items:
        if table._entity(entity_id) is not None:  # one trie lookup; names() would restore every name
            stats.kept += 1
            yield mention, entity_id, count
        else:
            stats.not_in_table += 1


def iter_identifiers(table: NameTable, fmt: str, *, langs: Optional[Iterable[str]] = None,
                     skipped: Optional[List[str]] = None) -> Iterator[str]:
    """The ``name_lang`` or ``lang_name`` identifier of every (lang, name) of a table, in table order."""
    if fmt not in ("name_lang", "lang_name"):
        raise ValueError(f"iter_identifiers makes name_lang or lang_name identifiers, not {fmt!r}")
    lang_set = None if langs is None else frozenset(langs)
    for lang, name in table:
        if lang_set is not None and lang not in lang_set:
            continue
        try:
            check_lang(lang)
        except ValueError as e:
            if skipped is not None:
                skipped.append(f"[{lang}] {name!r}: {e}")
            continue
        yield format_identifier(name, lang, fmt)


def read_counts(path: PathLike) -> Dict[str, Dict[str, int]]:
    """Mention counts ``entity_id<TAB>lang<TAB>count`` per line -> {entity: {lang: count}} (summed)."""
    counts: Dict[str, Dict[str, int]] = defaultdict(dict)
    with open_binary(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            try:
                if len(fields) != 3:
                    raise ValueError(f"expected 3 tab-separated fields, got {len(fields)}")
                value = int(fields[2])
                if value < 0:
                    raise ValueError("negative count")
            except ValueError as e:
                raise InputError(f"{path}:{lineno}: {e}") from None
            per_lang = counts[fields[0]]
            per_lang[fields[1]] = per_lang.get(fields[1], 0) + value
    return dict(counts)


@dataclass
class CanonicalStats:
    """Counts of canonical identifier selection."""

    entities: int = 0
    written: int = 0
    no_primary: int = 0  # entities without a primary name in the allowed languages
    collisions: int = 0  # entities whose identifier needed the language appended

    def summary(self) -> str:
        return (f"canonical: entities={self.entities:,}, identifiers={self.written:,}, "
                f"without a primary name={self.no_primary:,}, language appended on collision={self.collisions:,}")


def canonical_table(
    table: NameTable,
    output: PathLike,
    *,
    counts: Optional[Mapping[str, Mapping[str, int]]] = None,
    priority: Sequence[str] = (),
    langs: Optional[Iterable[str]] = None,
    progress: bool = True,
    stats: Optional[CanonicalStats] = None,
) -> CanonicalStats:
    """Write the table of canonical identifiers ``(entity_id, "", identifier)`` (one per entity) to ``output``.

    The language and name of each entity come from ``identifiers.choose_canonical``; where two
    entities would share an identifier, each gets ``name >> lang`` instead.
    """
    stats = stats if stats is not None else CanonicalStats()
    lang_set = None if langs is None else frozenset(langs)
    counts = counts or {}

    def choices() -> Iterator[Tuple[str, str, str]]:
        for entity_id in table.entity_ids():
            primary = table.primary_names(entity_id)
            if lang_set is not None:
                primary = [p for p in primary if p[0] in lang_set]
            choice = choose_canonical(primary, counts.get(entity_id), priority)
            if choice is None:
                yield entity_id, "", ""
            else:
                yield entity_id, choice[0], choice[1]

    where = os.path.dirname(os.path.abspath(os.fspath(output)))
    with tempfile.TemporaryDirectory(prefix=".gf-canonical-", dir=where) as tmp:
        plain = os.path.join(tmp, "plain.names")
        NameTable.build(((e, "", name) for e, _, name in
                         tqdm(choices(), desc="canonical names", unit=" entities", total=table.num_entities,
                              disable=not progress) if name), plain)
        with NameTable.load(plain) as names_only:
            source: Dict[str, Tuple[str, str]] = {}  # identifier -> (lang, name), for shared identifiers only

            def identifiers() -> Iterator[Tuple[str, str, str]]:
                for entity_id, lang, name in choices():
                    stats.entities += 1
                    if not name:
                        stats.no_primary += 1
                        continue
                    # Without a language (a KB that has none) a collision stays: the table is N-to-1.
                    shared = len(names_only.ids("", name)) > 1
                    with_lang = bool(lang) and shared
                    stats.collisions += with_lang
                    stats.written += 1
                    identifier = format_identifier(name, lang, "canonical", with_lang=with_lang)
                    if shared:
                        source[identifier] = (lang, name)
                    yield entity_id, "", identifier

            def same_order(_lang: str, identifier: str, ids: List[str]) -> List[str]:
                # An identifier that still names several entities keeps the names table's order (its prior).
                rank = {e: i for i, e in enumerate(table.ids(*source[identifier]))} if identifier in source else {}
                return sorted(ids, key=lambda e: rank.get(e, len(rank)))

            NameTable.build(identifiers(), output, meta={"kind": "canonical identifiers",
                                                         "names_fingerprint": table.fingerprint},
                            order_ids=same_order)
    return stats
