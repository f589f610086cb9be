"""Streaming reader of the Wikidata JSON dump: one small record per kept item.

The dump (``latest-all.json``, ``.json.gz`` or ``.json.bz2``) is a JSON array written one entity
per line: a first line ``[``, entity lines ending with ``,`` except the last, a last line ``]``.
Lines without the array brackets (JSON lines) read the same way.

Kept are items (``Q...``) that are not instance of (P31) or subclass of (P279) a Wikimedia-internal
class (categories, templates, project pages, modules, ...) and that have at least one
name left after the optional language filter. Properties, lexemes and other non-item entities are
skipped and counted. Malformed lines (bad JSON, a missing id, a control character in the entity id)
are counted and reported with their line numbers; with
``strict=True`` the first one raises ``InputError`` (a ``ValueError``) naming file and line.

``fields`` names the name fields to build (default all three: ``sitelinks``, ``labels``,
``aliases``); the others are left empty in the records and are only checked to be JSON, never
decoded into strings and dicts. An item is ``empty`` when the requested fields hold no name.

``workers=N`` parses blocks of lines in N processes; records, order and counts are the same as
with one. It pays only when JSON decoding, not decompression or the consumer, is the bottleneck.
"""
from __future__ import annotations

import codecs
import gc
import io
import json
import logging
import mmap
import multiprocessing
import operator
import os
import pickle
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import (
    Any,
    BinaryIO,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Union,
)

from ._io import InputError, PathLike, ReadStats, open_binary

try:  # 2-3x faster than json on dump lines; json decides every line orjson refuses
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is an install requirement
    _fast_loads = json.loads
try:  # decodes only the fields kept (see _classify_item): 3-5x faster than orjson on dump lines
    import msgspec as _msgspec
except ImportError:  # pragma: no cover - msgspec is an install requirement
    _msgspec = None

__all__ = ["FIELDS", "WIKIMEDIA_INTERNAL_CLASSES", "NON_WIKIPEDIA_SITES", "InputError", "WikidataEntity", "WikidataStats",
           "iter_converted", "iter_entities", "wikipedia_language"]

logger = logging.getLogger(__name__)

# Wikimedia-internal classes whose instances and subclasses are not entities (ANCHORS.md).
# Q4167410 (Wikimedia disambiguation page) is deliberately absent, as in the reference list:
# pass your own set to drop disambiguation pages too.
WIKIMEDIA_INTERNAL_CLASSES: frozenset[str] = frozenset(
    {
        "Q4167836",  # Wikimedia category
        "Q24046192",  # Wikimedia category of stubs
        "Q20010800",  # Wikimedia user language category
        "Q11266439",  # Wikimedia template
        "Q11753321",  # Wikimedia navigational template
        "Q19842659",  # Wikimedia user language template
        "Q21528878",  # Wikimedia redirect page
        "Q17362920",  # Wikimedia duplicated page
        "Q14204246",  # Wikimedia project page
        "Q21025364",  # Wikimedia project policies and guidelines
        "Q17442446",  # Wikimedia internal item
        "Q26267864",  # Wikimedia KML file
        "Q4663903",  # Wikimedia portal
        "Q15184295",  # Wikimedia module
    }
)

# Sites whose ids end in "wiki" but are not Wikipedias. The shape check in
# wikipedia_language() already rejects most of them; the list makes the intent explicit.
NON_WIKIPEDIA_SITES: frozenset[str] = frozenset(
    {
        "commonswiki", "specieswiki", "wikidatawiki", "metawiki", "mediawikiwiki", "sourceswiki",
        "incubatorwiki", "outreachwiki", "wikimaniawiki", "foundationwiki", "wikifunctionswiki",
        "testwiki", "test2wiki", "testwikidatawiki", "testcommonswiki", "nostalgiawiki", "tenwiki",
        "betawiki", "strategywiki", "usabilitywiki", "loginwiki", "votewiki", "advisorywiki",
    }
)

# Wikipedia database names: a 2-3 letter language code, optionally with "_"-joined parts
# ("zh_yue", "be_x_old", "zh_min_nan"), or "simple"; then "wiki". Sister projects end in
# "wikiquote", "wikisource", "wiktionary", ... and never match.
_WIKIPEDIA_SITE = re.compile(r"([a-z]{2,3}(?:_[a-z0-9]+)*|simple)wiki\Z")

# The name fields of an item that a record can carry (``iter_entities(fields=...)``).
FIELDS = ("sitelinks", "labels", "aliases")
_ALL_FIELDS = frozenset(FIELDS)

# Small enough for a block and its lines to stay in the CPU's cache (1.5x faster than 4 MiB), and for
# the block, plus the rest of its last line, and its UTF-8 check to be served from the heap: genre-trie
# serves every allocation over 128 KiB by mmap (cli._return_freed_memory), which made 256 KiB blocks
# (each a fresh mapping, faulted in page by page) 1.6-2x slower to read in that command.
DEFAULT_BLOCK_BYTES = 1 << 15

# A C0 control character (NUL, tab, newline, ...) cannot be stored in an id or a language code of
# a name table or a TSV line: such an item is malformed (counted with its line), not an abort later.
_CONTROL = re.compile(r"[\x00-\x1f]")


class WikidataEntity(NamedTuple):
    """Names of one Wikidata item: Wikipedia titles by language, labels, aliases."""

    id: str
    sitelinks: Dict[str, str]
    labels: Dict[str, str]
    aliases: Dict[str, List[str]]


@dataclass
class WikidataStats(ReadStats):
    """Counts of a Wikidata dump read: `read` = entity lines = kept + filtered + non_items + empty + malformed."""

    filtered: int = 0  # items dropped as instance/subclass of a Wikimedia-internal class
    non_items: int = 0  # properties, lexemes and other non-item entities
    empty: int = 0  # items without any sitelink, label or alias (in the requested languages)


def wikipedia_language(site: str) -> Optional[str]:
    """Language part of a Wikipedia site id ("enwiki" -> "en", "zh_yuewiki" -> "zh_yue"), else None."""
    if site in NON_WIKIPEDIA_SITES:
        return None
    m = _WIKIPEDIA_SITE.match(site)
    return m.group(1) if m else None


# Outcomes of parsing one line.
_KEPT, _FILTERED, _NON_ITEM, _EMPTY, _MALFORMED, _SKIP = range(6)
_UNSEEN = object()
# wikipedia_language() of every site seen so far (about a thousand distinct sites exist).
_site_language: Dict[str, Optional[str]] = {}


def _is_internal(claims: Dict[str, Any], classes: frozenset) -> bool:
    """Whether a P31 or P279 statement points to one of `classes`."""
    for prop in ("P31", "P279"):
        for statement in claims.get(prop, ()):
            try:
                value = statement["mainsnak"]["datavalue"]["value"]
            except KeyError:  # "novalue" and "somevalue" snaks carry no datavalue
                continue
            target = value.get("id")
            if target is None and "numeric-id" in value:  # dumps before 2015 had only numeric-id
                target = f"Q{value['numeric-id']}"
            if target in classes:
                return True
    return False


def _names(obj: Dict[str, Any], langs: Optional[frozenset], fields: frozenset = _ALL_FIELDS) -> WikidataEntity:
    """The record of an item: Wikipedia sitelinks, labels and aliases (those in `fields`), in `langs` if given."""
    # Written with comprehensions and few calls: after json.loads this is the hot path.
    sitelinks: Dict[str, str] = {}
    links = obj.get("sitelinks") if "sitelinks" in fields else None
    if links:  # an empty map can be serialized as [] (PHP arrays)
        cache = _site_language
        for site, link in links.items():
            lang = cache.get(site, _UNSEEN)
            if lang is _UNSEEN:
                lang = cache[site] = wikipedia_language(site)
            if lang is not None and (langs is None or lang in langs):
                sitelinks[lang] = link["title"]
    entries = obj.get("labels") if "labels" in fields else None
    if not entries:
        labels: Dict[str, str] = {}
    elif langs is None:
        labels = {lang: label["value"] for lang, label in entries.items()}
    else:
        labels = {lang: label["value"] for lang, label in entries.items() if lang in langs}
    entries = obj.get("aliases") if "aliases" in fields else None
    if not entries:
        aliases: Dict[str, List[str]] = {}
    else:
        aliases = {lang: [a["value"] for a in values] for lang, values in entries.items()
                   if values and (langs is None or lang in langs)}
    return WikidataEntity(obj["id"], sitelinks, labels, aliases)


# The fast path: msgspec decodes a line into the few fields kept, typed, skipping (but validating)
# the rest: descriptions, every claim but P31/P279, qualifiers, references, badges. A line that
# msgspec refuses, or whose accepted shape the full parse would treat differently (a non-empty
# list where a map belongs: PHP's serialization of empty maps is the only list the dump writes),
# goes to the full parse, so records, counts and error messages are the full parse's.
if _msgspec is not None:
    _UNSET = _msgspec.UNSET

    class _Value(_msgspec.Struct, gc=False):
        id: str = _UNSET
        numeric_id: int = _msgspec.field(default=_UNSET, name="numeric-id")

    class _DataValue(_msgspec.Struct, gc=False):
        value: _Value = _UNSET

    class _Snak(_msgspec.Struct, gc=False):
        datavalue: _DataValue = _UNSET

    class _Statement(_msgspec.Struct, gc=False):
        mainsnak: _Snak = _UNSET

    class _Claims(_msgspec.Struct, gc=False):
        P31: List[_Statement] = _UNSET
        P279: List[_Statement] = _UNSET

    class _Term(_msgspec.Struct, gc=False):
        value: str

    class _Sitelink(_msgspec.Struct, gc=False):
        title: str

    _FIELD_TYPES = {
        "sitelinks": Union[Dict[str, _Sitelink], List[Any]],
        "labels": Union[Dict[str, _Term], List[Any]],
        "aliases": Union[Dict[str, List[_Term]], List[Any]],
    }

    def _item_decoder(fields: frozenset):
        """A decoder of a line into an item struct of id, type, claims and the name `fields` (the rest skipped)."""
        spec = [("id", Any, None), ("type", Any, "item"), ("claims", Union[_Claims, List[Any]], _UNSET)]
        spec += [(name, _FIELD_TYPES[name], _UNSET) for name in FIELDS if name in fields]
        return _msgspec.json.Decoder(_msgspec.defstruct("_Item", spec, gc=False)).decode

    # One decoder per subset of FIELDS (8): a field not asked for is skipped like the descriptions.
    _DECODERS = {frozenset(name for bit, name in enumerate(FIELDS) if mask >> bit & 1): None for mask in range(8)}
    for _fields in _DECODERS:
        _DECODERS[_fields] = _item_decoder(_fields)
    _decode_item = _DECODERS[_ALL_FIELDS]  # None: no fast path (the benchmark's "full parse" variants)
    _msgpack_encode = _msgspec.msgpack.Encoder().encode
    _msgpack_decode = _msgspec.msgpack.Decoder().decode
    _value = operator.attrgetter("value")
else:  # pragma: no cover - msgspec is an install requirement
    _decode_item = None


def _decoder(fields: frozenset):
    """The fast-path decoder of lines for `fields`, or None when the fast path is off."""
    return None if _decode_item is None else _DECODERS[fields]


def _classify_item(item: Any, classes: frozenset, langs: Optional[frozenset],
                   fields: frozenset = _ALL_FIELDS) -> Optional[Tuple[int, Any]]:
    """:func:`_parse_full`'s verdict on a line msgspec decoded as an item struct, or None to ask it."""
    entity_id = item.id
    if not isinstance(entity_id, str) or not entity_id:
        return _MALFORMED, "missing id"
    control = _CONTROL.search(entity_id)
    if control:
        return _MALFORMED, f"entity id {entity_id!r} contains the control character U+{ord(control.group()):04X}"
    if item.type != "item" or not entity_id.startswith("Q"):
        return _NON_ITEM, None
    claims = item.claims
    links = item.sitelinks if "sitelinks" in fields else None
    labels = item.labels if "labels" in fields else None
    aliases = item.aliases if "aliases" in fields else None
    if ((claims.__class__ is list and claims) or (links.__class__ is list and links)
            or (labels.__class__ is list and labels) or (aliases.__class__ is list and aliases)):
        return None  # the full parse reports these as unexpected structure
    if claims and classes and claims.__class__ is _Claims:
        for statements in (claims.P31, claims.P279):
            if statements is _UNSET:
                continue
            for statement in statements:
                snak = statement.mainsnak
                if snak is _UNSET or snak.datavalue is _UNSET or snak.datavalue.value is _UNSET:
                    continue  # "novalue" and "somevalue" snaks carry no datavalue
                value = snak.datavalue.value
                target = value.id
                if target is _UNSET:
                    target = None if value.numeric_id is _UNSET else f"Q{value.numeric_id}"
                if target in classes:
                    return _FILTERED, None
    sitelinks: Dict[str, str] = {}
    if links:
        cache = _site_language
        for site, link in links.items():
            lang = cache.get(site, _UNSEEN)
            if lang is _UNSEEN:
                lang = cache[site] = wikipedia_language(site)
            if lang is not None and (langs is None or lang in langs):
                sitelinks[lang] = link.title
    # map() with attrgetter iterates in C: this is the hot path after decoding
    if not labels:
        labels = {}
    elif langs is None:
        labels = dict(zip(labels, map(_value, labels.values())))
    else:
        labels = {lang: label.value for lang, label in labels.items() if lang in langs}
    if not aliases:
        aliases = {}
    else:
        aliases = {lang: list(map(_value, values)) for lang, values in aliases.items()
                   if values and (langs is None or lang in langs)}
    if not (sitelinks or labels or aliases):
        return _EMPTY, None
    return _KEPT, WikidataEntity(entity_id, sitelinks, labels, aliases)


def _parse_line(line: bytes, classes: frozenset, langs: Optional[frozenset],
                fields: frozenset = _ALL_FIELDS) -> Tuple[int, Any]:
    """Classify one dump line; the payload is the entity if kept, the reason if malformed."""
    line = line.strip()
    if line.endswith(b","):
        line = line[:-1]
    if not line or line == b"[" or line == b"]":
        return _SKIP, None
    decode = _decoder(fields)
    if decode is not None:
        try:
            if not line.isascii():  # msgspec does not check the UTF-8 of the strings it skips
                line.decode("utf-8")
            item = decode(line)
        except (UnicodeDecodeError, _msgspec.DecodeError):  # also ValidationError: a shape not taken here
            pass
        else:
            result = _classify_item(item, classes, langs, fields)
            if result is not None:
                return result
    return _parse_full(line, classes, langs, fields)


def _parse_full(line: bytes, classes: frozenset, langs: Optional[frozenset],
                fields: frozenset = _ALL_FIELDS) -> Tuple[int, Any]:
    """:func:`_parse_line` on the whole parsed line: the reference, and the verdict on every unusual line."""
    try:
        obj = _fast_loads(line)
    except (ValueError, TypeError):
        # orjson refuses what json may accept (NaN, integers beyond 64 bits, lone surrogates):
        # json gives the verdict, so records and error messages are json's.
        try:
            obj = json.loads(line)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            return _MALFORMED, f"bad JSON: {err}"
    if not isinstance(obj, dict):
        return _MALFORMED, "not a JSON object"
    entity_id = obj.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        return _MALFORMED, "missing id"
    control = _CONTROL.search(entity_id)
    if control:
        return _MALFORMED, f"entity id {entity_id!r} contains the control character U+{ord(control.group()):04X}"
    if obj.get("type", "item") != "item" or not entity_id.startswith("Q"):
        return _NON_ITEM, None
    try:
        claims = obj.get("claims")
        if claims and classes and _is_internal(claims, classes):
            return _FILTERED, None
        entity = _names(obj, langs, fields)
    except (AttributeError, TypeError, KeyError) as err:
        return _MALFORMED, f"unexpected structure in {entity_id}: {err!r}"
    if not (entity.sitelinks or entity.labels or entity.aliases):
        return _EMPTY, None
    # A control character in a label/alias language code drops that name only (trie_tools.names counts
    # it as a skipped name); the item and its other names are kept.
    return _KEPT, entity


def _parse_object(view: memoryview, valid_utf8: bool, decode, classes: frozenset, langs: Optional[frozenset],
                  fields: frozenset) -> Tuple[int, Any]:
    """:func:`_parse_line` of a line that is one ``{...}`` (no whitespace or comma around), unsliced."""
    try:
        if not valid_utf8:  # msgspec does not check the UTF-8 of the strings it skips
            codecs.utf_8_decode(view, "strict", True)
        item = decode(view)
    except (UnicodeDecodeError, _msgspec.DecodeError):  # also ValidationError: a shape not taken here
        item = None
    if item is not None:
        result = _classify_item(item, classes, langs, fields)
        if result is not None:
            return result
    return _parse_full(bytes(view), classes, langs, fields)


def _parse_block(block: Union[bytes, mmap.mmap], classes: frozenset, langs: Optional[frozenset],
                 fields: frozenset = _ALL_FIELDS, lo: int = 0, hi: Optional[int] = None,
                 view: Optional[memoryview] = None) -> Tuple[int, List[Tuple[int, int, Any]], List[int]]:
    """Parse a block of whole lines: its number of newlines, (outcome, line index, payload) for every
    kept or malformed line, and how many lines were filtered, not items and empty (``_COUNTED``).

    The block is `block` (bytes), or bytes [lo, hi) of a mapped file with `view` its memoryview
    (indices then count from `lo`).
    """
    out: List[Tuple[int, int, Any]] = []
    counts = [0, 0, 0]
    size = len(block) if hi is None else hi
    if view is None:
        view = memoryview(block)
    decode = _decoder(fields)
    fast = decode is not None
    valid_utf8 = False
    if fast:
        try:  # lines are cut at newlines, so each line of a valid block is valid
            if block.__class__ is bytes:
                if not block.isascii():
                    block.decode("utf-8")
            else:
                codecs.utf_8_decode(view[lo:size], "strict", True)
            valid_utf8 = True
        except UnicodeDecodeError:
            pass
    start, index = lo, 0
    # The records and the parsed lines hold no reference cycles: the cyclic collector, which would
    # run every few hundred objects and find nothing, is paused for the block (10% of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        while start < size:
            end = block.find(b"\n", start, size)
            if end < 0:
                end = size
            stop = end - 1 if end > start and block[end - 1] == 44 else end  # 44: ","
            # A line "{...}" or "{...}," is what line.strip() and dropping the comma leave as it is.
            if fast and stop > start and block[start] == 123 and block[stop - 1] == 125:  # "{", "}"
                outcome, payload = _parse_object(view[start:stop], valid_utf8, decode, classes, langs, fields)
            else:
                outcome, payload = _parse_line(block[start:end], classes, langs, fields)
            if outcome == _KEPT or outcome == _MALFORMED:
                out.append((outcome, index, payload))
            elif outcome != _SKIP:
                counts[outcome - _FILTERED] += 1
            start, index = end + 1, index + 1
    finally:
        if collecting:
            gc.enable()
    return index if size > lo and block[size - 1] == 10 else index - 1, out, counts


def _cuts(buffer, pos: int, end: int, size: int, block_bytes: int) -> Iterator[Tuple[int, int]]:
    """(lo, hi) of the blocks of whole lines of `buffer` (bytes or a map of `size` bytes) that start in
    [pos, end): each of about `block_bytes`, ending after a newline (the last may end at `size`)."""
    while pos < end:
        cut = buffer.find(b"\n", min(pos + block_bytes, end) - 1)
        cut = size if cut < 0 else cut + 1
        yield pos, cut
        pos = cut


def _joined(blocks: Iterable[tuple]) -> Tuple[int, List[Tuple[int, int, Any]], List[int]]:
    """The parsed `blocks` of consecutive lines as one: newlines added, line indices shifted, counts summed."""
    newlines, out, counts = 0, [], [0, 0, 0]
    for lines, results, skipped in blocks:
        if newlines:  # every block but the file's last ends at a newline
            results = [(outcome, newlines + index, payload) for outcome, index, payload in results]
        out.extend(results)
        for k, count in enumerate(skipped):
            counts[k] += count
        newlines += lines
    return newlines, out, counts


def _mapped(path: str, start: int, end: Optional[int], block_bytes: int, parse) -> Iterator[Any]:
    """``parse(mm, view, lo, hi)`` for each block of whole lines of a plain file that start in bytes
    [start, end) (to its end if `end` is None), blocks of about `block_bytes`, read through a memory
    map: the kernel's pages are parsed where they are, without a copy into the process."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        # (A file that shrinks while it is mapped ends the process with SIGBUS, as any mmap reader.)
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        view = memoryview(mm)
        try:
            end = size if end is None else min(end, size)
            pos = 0
            if start:  # the line that starts before `start` is the previous range's
                pos = mm.find(b"\n", start - 1)
                pos = size if pos < 0 else pos + 1
            for lo, hi in _cuts(mm, pos, end, size, block_bytes):
                yield parse(mm, view, lo, hi)
        finally:
            view.release()
    finally:
        mm.close()


def _blocks(fh: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """Blocks of about `block_bytes` ending at a line end (the last one may not)."""
    # One bytes object per block, not a list of lines: it pickles to the workers as one copy.
    while True:
        block = fh.read(block_bytes)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += fh.readline()
        yield block


def _parse_chunked(data: bytes, classes: frozenset, langs: Optional[frozenset], fields: frozenset,
                   block_bytes: int) -> Tuple[int, List[Tuple[int, int, Any]], List[int]]:
    """:func:`_parse_block` of whole lines in `data`, parsed in blocks of about `block_bytes` (a task of a
    worker that is sent its lines, from a compressed dump)."""
    size = len(data)
    return _joined(_parse_block(data[lo:hi], classes, langs, fields)
                   for lo, hi in _cuts(data, 0, size, size, block_bytes))


def _parse_range(path: str, start: int, end: int, classes: frozenset, langs: Optional[frozenset],
                 fields: frozenset = _ALL_FIELDS, block_bytes: int = DEFAULT_BLOCK_BYTES
                 ) -> Tuple[int, List[Tuple[int, int, Any]], List[int]]:
    """:func:`_parse_block` of the lines of a plain file that start in bytes [start, end), read by the worker
    in blocks of about `block_bytes` (a block and its lines stay in the CPU's cache)."""
    return _joined(_mapped(path, start, end, block_bytes,
                           lambda mm, view, lo, hi: _parse_block(mm, classes, langs, fields, lo, hi, view)))


def _packed(result: Tuple[int, List[Tuple[int, int, Any]]]) -> bytes:
    """A worker's result as bytes for the parent: msgpack (decoded 2x faster than a pickle), else a pickle."""
    if _msgspec is not None:
        try:  # a str with a lone surrogate (json accepts "\\ud800"), an int beyond 64 bits: not msgpack
            return b"m" + _msgpack_encode(result)
        except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
            pass
    return b"p" + pickle.dumps(result, pickle.HIGHEST_PROTOCOL)


def _unpacked(data: bytes) -> tuple:
    """The inverse of :func:`_packed`: the same records (WikidataEntity, dicts in order) as the worker's
    (a conversion's tuples come back as lists from msgpack)."""
    if data[:1] == b"p":
        return pickle.loads(data[1:])
    newlines, results, *rest = _msgpack_decode(memoryview(data)[1:])
    make = WikidataEntity._make
    return (newlines, [(outcome, index, make(payload) if outcome == _KEPT else payload)
                       for outcome, index, payload in results], *rest)


# What a worker parses with, (classes, langs, fields, block_bytes, convert): set once per worker (by the
# pool's initializer, or by _range_worker), not sent with every task.
_worker_spec: Optional[tuple] = None


def _init_worker(spec: tuple) -> None:
    global _worker_spec
    _worker_spec = spec


def _parse_block_packed(block: bytes) -> bytes:
    """:func:`_parse_chunked` in a worker."""
    classes, langs, fields, block_bytes, convert = _worker_spec
    parsed = _parse_chunked(block, classes, langs, fields, block_bytes)
    return _packed(parsed if convert is None else _converted(parsed, convert))


def _parse_range_packed(path: str, start: int, end: int) -> bytes:
    """:func:`_parse_range` in a worker."""
    classes, langs, fields, block_bytes, convert = _worker_spec
    parsed = _parse_range(path, start, end, classes, langs, fields, block_bytes)
    return _packed(parsed if convert is None else _converted(parsed, convert))


def _read_ahead(blocks: Iterator[bytes], depth: int) -> Iterator[bytes]:
    """``blocks`` produced by a thread up to `depth` ahead, so that reading and decompressing
    (zlib, bz2 and pipe reads release the GIL) overlap the parsing; its errors are raised in order."""
    ready: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not put((None, block)):
                    return
            put((None, None))
        except BaseException as err:  # handed to the consumer, raised there
            put((err, None))

    thread = threading.Thread(target=produce, name="wikidata-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            err, block = ready.get()
            if err is not None:
                raise err
            if block is None:
                return
            yield block
    finally:
        stop.set()
        thread.join()


# Parallel decompressors used when on PATH (decompress="auto"): the Debian packages pigz and lbzip2.
# pigz decompresses in one thread but reads, checks and writes in others; lbzip2 uses every core.
PARALLEL_DECOMPRESSORS = {"gzip": "pigz", "bzip2": "lbzip2"}


def _compression(path: PathLike) -> Optional[str]:
    """"gzip", "bzip2" or None (plain), judged by the first bytes as open_binary does."""
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic.startswith(b"\x1f\x8b"):
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


# A damaged file this small is decompressed again in process when the tool fails, so that the error
# is the one open_binary gives (a few seconds at most); a larger one is reported with the tool's words.
_DIAGNOSE_BYTES = 64 << 20


class _ToolOutput(io.RawIOBase):
    """The standard output of ``TOOL -dc PATH``; its failure is an ``InputError`` naming the file."""

    def __init__(self, tool: str, path: PathLike, kind: str) -> None:
        self._path, self._kind, self._tool = os.fspath(path), kind, os.path.basename(tool)
        self._errors = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([tool, "-dc", "--", self._path], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=self._errors)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._proc.stdout.readinto(buffer)
        if not n and self._proc.wait():
            self._errors.seek(0)
            lines = [line.strip() for line in self._errors.read().decode("utf-8", "replace").splitlines()]
            detail = next((line for line in reversed(lines) if line), f"exit status {self._proc.returncode}")
            if os.path.getsize(self._path) <= _DIAGNOSE_BYTES:
                # the in-process reader names the damage (truncated or corrupt) as it would have alone
                with open_binary(self._path) as fh:
                    while fh.read(1 << 22):
                        pass
            raise InputError(f"{self._path}: corrupt or truncated {self._kind} file ({self._tool}: {detail})")
        return n

    def close(self) -> None:
        if not self.closed:
            if self._proc.poll() is None:  # the reader stopped early
                self._proc.kill()
            self._proc.wait()
            self._proc.stdout.close()
            self._errors.close()
        super().close()


def _open_dump(path: PathLike, decompress: str) -> BinaryIO:
    """The dump's bytes: from a parallel decompressor if `decompress` is "auto" and one is on PATH, else open_binary."""
    kind = _compression(path) if decompress == "auto" else None
    tool = shutil.which(PARALLEL_DECOMPRESSORS[kind]) if kind else None
    if tool is None:
        return open_binary(path)
    return io.BufferedReader(_ToolOutput(tool, path, kind), 1 << 20)


def iter_entities(
    path: PathLike,
    *,
    langs: Optional[Iterable[str]] = None,
    classes: Iterable[str] = WIKIMEDIA_INTERNAL_CLASSES,
    fields: Iterable[str] = FIELDS,
    workers: int = 1,
    strict: bool = False,
    stats: Optional[WikidataStats] = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    decompress: str = "auto",
) -> Iterator[WikidataEntity]:
    """Stream the kept items of a Wikidata JSON dump (.json, .json.gz, .json.bz2), in file order.

    ``fields``: the name fields built (of ``FIELDS``); the others are empty in the records.
    ``decompress="auto"`` reads a compressed dump through ``pigz``/``lbzip2`` when on PATH (a
    process of its own), ``"python"`` always in this process (in a thread beside the parsing).
    """
    return _read(path, None, langs, classes, fields, workers, strict, stats, block_bytes, decompress)


def iter_converted(
    path: PathLike,
    convert: Callable[[List[WikidataEntity]], Any],
    *,
    langs: Optional[Iterable[str]] = None,
    classes: Iterable[str] = WIKIMEDIA_INTERNAL_CLASSES,
    fields: Iterable[str] = FIELDS,
    workers: int = 1,
    strict: bool = False,
    stats: Optional[WikidataStats] = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    decompress: str = "auto",
) -> Iterator[Any]:
    """``convert(entities)`` for the kept items of each block of the dump, in file order.

    :func:`iter_entities` whose consumer's work per item runs where the block is parsed: in the
    workers when ``workers > 1``, so that the parent receives the consumer's results, not the
    entities. ``convert`` must be picklable (an instance of a module-level class) and return
    lists, tuples, dicts, strings, numbers, booleans or None (sent back as msgpack, which gives
    lists for tuples; a pickle if msgpack cannot hold it). Its exceptions reach the caller.
    """
    if not callable(convert):
        raise TypeError("convert must be callable")
    return _read(path, convert, langs, classes, fields, workers, strict, stats, block_bytes, decompress)


def _read(path, convert, langs, classes, fields, workers, strict, stats, block_bytes, decompress) -> Iterator[Any]:
    """The arguments of :func:`iter_entities` checked, then its generator (``convert`` None) or :func:`iter_converted`'s."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if block_bytes < 1:
        raise ValueError(f"block_bytes must be >= 1, got {block_bytes}")
    if decompress not in ("auto", "python"):
        raise ValueError(f"decompress must be 'auto' or 'python', got {decompress!r}")
    field_set = frozenset([fields] if isinstance(fields, str) else fields)
    if not field_set <= _ALL_FIELDS:
        raise ValueError(f"unknown field(s) {sorted(field_set - _ALL_FIELDS)}; expected some of {', '.join(FIELDS)}")
    # A lone string is one code, not a set of characters.
    class_set = frozenset([classes] if isinstance(classes, str) else classes)
    lang_set = None if langs is None else frozenset([langs] if isinstance(langs, str) else langs)
    return _stream(path, (class_set, lang_set, field_set, block_bytes, convert), workers, strict,
                   WikidataStats() if stats is None else stats, decompress)


# The outcomes a block only counts, in the order of its counts (the stats fields they add to).
_COUNTED = ("filtered", "non_items", "empty")
assert (_NON_ITEM, _EMPTY) == (_FILTERED + 1, _FILTERED + 2)  # a count is at outcome - _FILTERED


def _stream(path: PathLike, spec: tuple, workers: int, strict: bool, stats: WikidataStats,
            decompress: str) -> Iterator[Any]:
    stats.path = str(path)
    converting = spec[4] is not None
    with _open_dump(path, decompress) as fh:
        plain = isinstance(fh, io.BufferedReader) and isinstance(fh.raw, io.FileIO)
        if plain and workers > 1:
            # a plain file: each worker reads its own byte ranges, the parent only collects records
            parsed = _parsed_ranges(os.fspath(path), os.path.getsize(path), spec, workers)
        elif plain:
            parsed = _parsed_mapped(os.fspath(path), spec)
        else:
            parsed = _parsed_blocks(fh, spec, workers)
        try:
            first = 1  # the number of the block's first line
            for parsed_block in parsed:
                newlines, results, counts = parsed_block[0], parsed_block[1], parsed_block[2]
                for outcome, index, payload in results:
                    stats.read += 1
                    if outcome == _KEPT:
                        stats.kept += 1
                        yield payload
                    else:
                        stats.malformed += 1
                        stats.problem(first + index, payload, strict=strict)
                for name, count in zip(_COUNTED, counts):
                    if count:
                        stats.read += count
                        setattr(stats, name, getattr(stats, name) + count)
                if converting:  # (..., how many were kept, their conversion)
                    stats.read += parsed_block[3]
                    stats.kept += parsed_block[3]
                    yield parsed_block[4]
                first += newlines
        finally:
            parsed.close()  # stops the read-ahead thread and the workers before the file closes
            stats.log(logger)


def _converted(parsed_block: tuple, convert) -> tuple:
    """A parsed block as (newlines, its malformed lines, its counts, the number kept, ``convert`` of the kept entities)."""
    newlines, results, counts = parsed_block
    kept = [payload for outcome, _, payload in results if outcome == _KEPT]
    return newlines, [r for r in results if r[0] != _KEPT], counts, len(kept), convert(kept)


def _converted_groups(parsed_blocks: Iterator[tuple], convert, block_bytes: int) -> Iterator[tuple]:
    """:func:`_converted` of consecutive parsed blocks joined into groups of about RANGE_BYTES: a
    conversion's cost per call (its lists, stats, encoding) is paid per 4 MiB as in a worker, not
    every two items as 32 KiB blocks would pay it."""
    per_group = max(1, RANGE_BYTES // max(1, block_bytes))
    try:
        while True:
            group = list(islice(parsed_blocks, per_group))
            if not group:
                return
            yield _converted(_joined(group), convert)
    finally:
        parsed_blocks.close()  # the memory map, or the read-ahead thread


def _parsed_mapped(path: str, spec: tuple) -> Iterator[tuple]:
    """:func:`_parsed_blocks` of a plain file in this process, through a memory map."""
    classes, langs, fields, block_bytes, convert = spec

    def parse(mm, view, lo, hi):
        return _parse_block(mm, classes, langs, fields, lo, hi, view)

    blocks = _mapped(path, 0, None, block_bytes, parse)
    return blocks if convert is None else _converted_groups(blocks, convert, block_bytes)


def _parsed_blocks(fh: BinaryIO, spec: tuple, workers: int) -> Iterator[Tuple[int, List[Tuple[int, int, Any]]]]:
    """Parsed blocks of a compressed dump or a pipe, in file order; with several workers, at most
    4 * workers blocks are in flight."""
    classes, langs, fields, block_bytes, convert = spec
    # Workers are sent tasks of RANGE_BYTES (which they parse in blocks of block_bytes): the pool's
    # cost per task stays small beside the parsing.
    # Decompression (and a pipe) overlap the parsing in a thread. (A plain file does not come here:
    # it is mapped, by this process or by the workers.)
    blocks = _read_ahead(_blocks(fh, block_bytes if workers == 1 else max(block_bytes, RANGE_BYTES)), 4)
    try:
        if workers == 1:
            parsed = (_parse_block(block, classes, langs, fields) for block in blocks)
            yield from parsed if convert is None else _converted_groups(parsed, convert, block_bytes)
            return
        # Decoding dominates, so the parent only cuts blocks and collects the small records.
        # apply_async with a bounded deque (rather than Pool.imap, whose feeder thread reads the
        # whole input ahead) keeps memory bounded and the output in file order.
        with multiprocessing.get_context().Pool(workers, _init_worker, (spec,)) as pool:
            pending: deque = deque()
            for block in blocks:
                pending.append(pool.apply_async(_parse_block_packed, (block,)))
                if len(pending) >= 4 * workers:
                    yield _unpacked(pending.popleft().get())
            while pending:
                yield _unpacked(pending.popleft().get())
    finally:
        blocks.close()


# Bytes of a plain file that a worker parses per task (in blocks of block_bytes): large enough that
# the pool's cost per task (sending it, collecting its result) is small beside the parsing.
RANGE_BYTES = 4 << 20


def _range_worker(path: str, size: int, step: int, first: int, workers: int, spec: tuple, conn) -> None:
    """A worker of :func:`_parsed_ranges`: ranges first, first + workers, ... of the file, each sent as bytes."""
    try:
        _init_worker(spec)
        for start in range(first * step, size, workers * step):
            conn.send_bytes(_parse_range_packed(path, start, start + step))
    except BaseException as err:  # the parent raises it, in order
        try:
            data = pickle.dumps(err, pickle.HIGHEST_PROTOCOL)
        except Exception:  # an unpicklable exception: its type and words
            data = pickle.dumps(RuntimeError(f"{type(err).__name__}: {err}"))
        try:
            conn.send_bytes(b"e" + data)
        except (OSError, ValueError):
            pass  # the parent has gone away
    finally:
        conn.close()


def _parsed_ranges(path: str, size: int, spec: tuple, workers: int) -> Iterator[tuple]:
    """:func:`_parsed_blocks` for a plain file, whose workers read the byte ranges they are given.

    Range i goes to worker i mod `workers`, which sends its results down a pipe of its own; the
    parent reads the pipes in turn, so results arrive in file order with no task queue, no result
    thread and no pickling (each worker is at most a range or two ahead of the parent).
    """
    step = max(spec[3], RANGE_BYTES)
    count = (size + step - 1) // step
    context = multiprocessing.get_context()
    pipes, procs = [], []
    try:
        for k in range(min(workers, count)):
            receiver, sender = context.Pipe(duplex=False)
            proc = context.Process(target=_range_worker, args=(path, size, step, k, workers, spec, sender),
                                   name=f"wikidata-reader-{k}", daemon=True)
            proc.start()
            sender.close()  # the worker's end: the parent sees EOF if the worker dies
            pipes.append(receiver)
            procs.append(proc)
        for i in range(count):
            try:
                data = pipes[i % len(pipes)].recv_bytes()
            except EOFError:
                proc = procs[i % len(procs)]
                proc.join()
                raise RuntimeError(f"a Wikidata reader worker died (exit code {proc.exitcode}) "
                                   f"while parsing bytes {i * step}-{(i + 1) * step} of {path}") from None
            if data[:1] == b"e":
                raise pickle.loads(data[1:])
            yield _unpacked(data)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()  # stopped early (or failed): the rest of their ranges is not wanted
        for proc in procs:
            proc.join()
        for receiver in pipes:
            receiver.close()
