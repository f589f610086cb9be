"""The name table: (lang, name) <-> knowledge-base entity ids, and the mention table.

Decoding produces names; this module maps them back to entity ids (``NameTable.ids``) and
lists the names of an entity (``NameTable.names``). Both directions are N-to-1: one
(lang, name) may belong to several entities, and an entity has many names. A
``MentionTable`` maps an exact mention string to candidate entities with counts, for
candidate selection. Neither needs fairseq or torch.

Input rules (checked at build time, ``ValueError`` naming the record otherwise)
--------------------------------------------------------------------------------
* Every field is a ``str`` of valid Unicode (no lone surrogates).
* No field contains a C0 control character (U+0000-U+001F: NUL, tab, newline, ...).
  Besides keeping text exports safe, this makes ``"\\x1f"`` (the unit separator) a safe
  join character whose byte value sorts below every allowed character, so byte order of
  the stored keys is exactly the ``(lang, name)`` tuple order.
* ``entity_id``, ``name`` and ``mention`` are non-empty; ``lang`` may be ``""`` (for a
  knowledge base without languages). Mention counts are integers >= 0.
* Duplicates collapse: a repeated (entity_id, lang, name) is stored once; repeated
  (mention, entity_id) counts are summed.
* A name record may carry a fourth field, ``primary`` (a bool, default ``True``): whether
  the name is the entity's main name in that language (its Wikipedia title, or its label
  where it has no title) rather than a redirect or alias. A name given both ways is
  primary. ``primary_names`` lists them; canonical identifiers are chosen among them.

Entity-id order (the "id rule", see ``id_sort_key``)
----------------------------------------------------
Wherever several entity ids are returned, they are ordered by the id rule: canonical
Wikidata item ids ``Q<n>`` (``n`` a decimal number without leading zeros) come first,
by numeric value ascending (``Q9`` before ``Q10``: the older item, usually the more
prominent one, first); every other id (``Q007``, ``P31``, ``L5``, ``my-kb:42``) follows,
by code point order. ``NameTable.ids(lang, name)[0]`` is therefore the deterministic pick
for an ambiguous name, unless the table was built with ``order_ids=`` (``genre-trie names`` passes a
prior: hyperlink counts, then sitelink counts, see docs/trie_tools.md), which reorders the ids of
each ambiguous name; the reordering is part of the fingerprint. ``MentionTable.candidates`` orders by count descending, ties by the
id rule.

Lookups are exact: names and mentions are compared as given (no case folding, no
Unicode normalization, no whitespace trimming); normalizing is the caller's job, and it
must be done the same way at build and at lookup time.

File format (version 1; both tables; little-endian)
---------------------------------------------------
One file::

    offset 0   8 bytes  magic: b"GFNAMES\\0" (name table) or b"GFMENTN\\0" (mention table)
    offset 8   u32      format version (1)
    offset 12  u32      J = length of the header JSON in bytes
    offset 16  u32      CRC-32 of bytes [0, 32 + J) computed with this field set to zero
    offset 20  u32      reserved, 0
    offset 24  u64      total file size in bytes
    offset 32  J bytes  header JSON (UTF-8), then zero padding to a multiple of 64
    ...        sections, each starting at a multiple of 64, zero padding in between

The header JSON holds ``kind``, the counts, ``fingerprint``, the caller's ``meta`` and the
section table: for each section its ``name``, ``type`` (``"marisa"`` for a serialized
``marisa_trie.Trie``, ``"array"`` for a raw little-endian unsigned integer array with
``dtype`` ``u1``/``u2``/``u4``/``u8`` and ``count``), ``offset``, ``nbytes`` and ``crc32``.
Integer arrays use the smallest width that holds their largest value.

Name table sections (N distinct (lang, name) keys, E entities, P (key, entity) links):

* ``keys``: trie of ``lang + "\\x1f" + name``; its key id k in [0, N) indexes the arrays.
* ``entities``: trie of entity ids; its key id e in [0, E).
* ``fwd_entity`` (N): for key k, the entity e when the name is unambiguous (value < E);
  otherwise E + j, and list j of ``multi_offsets`` (A + 1) / ``multi_entities`` holds the
  entities of key k in id-rule order (A = number of ambiguous keys). Most names belong to
  one entity, so this saves the N + 1 offsets a plain CSR list would need.
* ``rev_offsets`` (E + 1) / ``rev_keys`` (P): CSR list of the keys of entity e, in
  (lang, name) order.
* ``rev_primary`` (ceil(P / 8) bytes): bit i (little-endian bit order) is set when link i
  of ``rev_keys`` is a primary name.

Mention table sections (M distinct mentions, E entities, P (mention, entity) pairs):
``mentions`` and ``entities`` tries, ``offsets`` (M + 1), ``entity`` (P) and ``count``
(P): the candidates of a mention ordered by count descending, then by the id rule.

Loading memory-maps the whole file once and hands each section to its reader without a
copy: ``marisa_trie.Trie.map`` takes a buffer (a slice of the mmap) and numpy arrays are
``frombuffer`` views. One file therefore opens in milliseconds whatever its size, and
resident memory grows only with the pages that lookups touch. (marisa's own
``Trie.mmap(path)`` maps a whole file only, so several tries in one file need
``Trie.map``; a directory of files would work too, but one file cannot be half-copied.)
``Trie.map`` keeps no reference to its buffer (closing the mmap under a mapped trie crashes
the process), so a table owns the mmap and the views, and ``close()`` drops the tries first.
Checks at load time are O(1): magic, version, header checksum, file size against the
header (truncation), section bounds, dtypes and counts, first/last CSR offsets, and the
tries' own headers. ``verify()`` additionally checksums every section and checks every
CSR array, reading the whole file. A file must not be overwritten in place while it is
loaded (``build`` replaces the output atomically, so rebuilding to the same path is safe).

Fingerprint: a 128-bit BLAKE2b over the canonical sorted content (id-rule order, then
(lang, name), with the primary flag; for mentions: mention, id rule, count). It depends on the content only, not
on input order, duplicates, chunking, marisa version or ``meta``, so a prefix tree or a
model can record it and refuse a table built from another knowledge base. ``build`` adds
no timestamps: the same content and ``meta`` give a byte-identical file.

Building streams: records are validated and spilled to sorted runs on disk (at most
``chunk_size`` records in memory at a time), merged with ``heapq.merge``, and the tries are
fed from spool files, so Python never holds the set of distinct strings; marisa's builder
holds one copy of the keys of the trie being built (with ``workers > 1`` a table's two tries
are built at once, in two processes, when both have PARALLEL_LOOKUPS lines or more: their
builders' memory adds up). The spool directory is created next to
the output (same disk) unless ``tmp_dir`` is given. What grows with the table is marisa's
builder of the keys (about 60 bytes per key measured) and the integer arrays built after it; with
``first_primary`` the primary names are found in the merge, not in a set the caller keeps.
benchmarks/RESULTS.md ("Does mGENRE's KB fit") has the measured peaks.
"""
from __future__ import annotations

import copy
import hashlib
import heapq
import json
import mmap
import operator
import os
import re
import shutil
import struct
import tempfile
import zlib
from array import array
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar, Union

import marisa_trie
import numpy as np

__all__ = ["NameTable", "MentionTable", "id_sort_key", "FORMAT_VERSION"]

FORMAT_VERSION = 1
NAME_TABLE_MAGIC = b"GFNAMES\0"
MENTION_TABLE_MAGIC = b"GFMENTN\0"
# Magic numbers of the project's file kinds, to name the kind of a file given to the wrong reader
# (b"GENRETRI" is prefix_tree.MAGIC, spelled out so this module stays free of torch).
_KINDS = {NAME_TABLE_MAGIC: "name table", MENTION_TABLE_MAGIC: "mention table", b"GENRETRI": "prefix tree"}

_PREAMBLE = struct.Struct("<8sIIIIQ")  # magic, version, json_len, crc32, reserved, file_len
_ALIGN = 64
_MARISA_HEADER = b"We love Marisa.\0"  # first bytes of every serialized marisa trie
_SEP = "\x1f"  # joins lang and name in the key trie
_CONTROL = re.compile(r"[\x00-\x1f]")
_QID = re.compile(r"Q[1-9][0-9]{0,98}")
_MAX_COUNT = (1 << 63) - 1

PathLike = Union[str, "os.PathLike[str]"]
_T = TypeVar("_T", bound="_Table")


def id_sort_key(entity_id: str) -> tuple:
    """Sort key of the id rule: canonical ``Q<n>`` by n ascending first, then other ids by code point."""
    if _QID.fullmatch(entity_id):
        return (0, int(entity_id[1:]), "")
    return (1, 0, entity_id)


def _rule_prefix(entity_id: str) -> str:
    """A string whose code point order is the id rule (the spool sort key)."""
    if _QID.fullmatch(entity_id):
        return "A%02d%s" % (len(entity_id) - 1, entity_id)
    return "B" + entity_id


def _rule_entity(rule: bytes) -> bytes:
    """Inverse of ``_rule_prefix`` on UTF-8 bytes."""
    return rule[3:] if rule[:1] == b"A" else rule[1:]


# ----------------------------------------------------------------------------- validation


def _bad_record(what: str, index: int, record: Any, why: str) -> ValueError:
    return ValueError(f"{what} #{index} {record!r}: {why}")


def text_problem(value: Any, field: str, *, empty_ok: bool = False) -> Optional[str]:
    """Why ``value`` cannot be stored as a text field of a table (None if it can).

    The one check of storable text, shared by the readers and converters of ``trie_tools``: a
    ``str``, non-empty unless ``empty_ok``, without C0 control characters (tab, newline, NUL,
    ...: the spool and TSV formats are line- and tab-separated), and encodable as UTF-8 (no
    lone surrogates, which JSON escapes such as ``"\\ud800"`` produce).
    """
    if not isinstance(value, str):
        return f"{field} must be a str, not {type(value).__name__}"
    if not value and not empty_ok:
        return f"{field} is empty"
    match = _CONTROL.search(value)
    if match:
        return f"{field} contains the control character U+{ord(match.group()):04X}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{field} is not valid Unicode (lone surrogate)"
    return None


def _check_text(value: Any, field: str, what: str, index: int, record: Any, *, empty_ok: bool) -> None:
    why = text_problem(value, field, empty_ok=empty_ok)
    if why is not None:
        if "control character" in why:
            why += "; tab, newline, NUL and the other C0 controls (U+0000-U+001F) are not allowed"
        raise _bad_record(what, index, record, why)


def _name_lines(records: Iterable[tuple], first_primary: bool = False) -> Iterator[bytes]:
    """Validate name records; encode each as a spool line ``rule \t lang \x1f name \t primary \n``.

    With ``first_primary`` the records are triples and the last field is the record's ordinal
    (12 decimal digits, so byte order is number order): ``build`` marks the first of each
    (entity, lang) in input order as primary while it merges, holding no set of pairs.
    """
    last_id = prefix = None  # records come grouped by entity: its sort prefix is made once
    for index, record in enumerate(records):
        try:
            if first_primary:
                entity_id, lang, name = record
                primary = True
            elif len(record) == 4:
                entity_id, lang, name, primary = record
            else:
                (entity_id, lang, name), primary = record, True
        except (TypeError, ValueError):
            expected = "(entity_id, lang, name)" if first_primary else "(entity_id, lang, name[, primary])"
            raise _bad_record("record", index, record, f"expected {expected}") from None
        if primary is True:
            flag = b"\t1\n"
        elif primary is False:
            flag = b"\t0\n"
        elif isinstance(primary, np.bool_):
            flag = b"\t1\n" if primary else b"\t0\n"
        else:
            raise _bad_record("record", index, record, f"primary must be a bool, not {type(primary).__name__}")
        if first_primary:
            flag = b"\t%012d\n" % index
        try:
            if entity_id != last_id:
                last_id = None  # until the prefix is made: _rule_prefix raises on a non-str id
                prefix, last_id = _rule_prefix(entity_id) + "\t", entity_id
            line = (prefix + lang + _SEP + name).encode("utf-8") + flag
            ok = entity_id and name and _CONTROL.search(entity_id + lang + name) is None
        except (TypeError, UnicodeEncodeError):
            ok = False
        if not ok:  # find and name the offending field
            _check_text(entity_id, "entity_id", "record", index, record, empty_ok=False)
            _check_text(lang, "lang", "record", index, record, empty_ok=True)
            _check_text(name, "name", "record", index, record, empty_ok=False)
        yield line


def encode_records(records: Iterable[tuple]) -> list[bytes]:
    """``(entity_id, lang, name, primary)`` records, checked as :meth:`NameTable.build` checks them,
    as the lines :meth:`NameTable.build_encoded` takes (a worker process can make them)."""
    return list(_name_lines(records))


def _checked_batches(batches: Iterable[list[bytes]]) -> Iterator[list[bytes]]:
    """`batches` for :meth:`NameTable.build_encoded`, each checked to be a list of lines shaped as
    :func:`encode_records` makes them (two tabs, a flag, a newline), by counts over the batch."""
    for index, batch in enumerate(batches):
        if batch.__class__ is not list:
            raise ValueError(f"encoded batch #{index}: expected a list of lines, not {type(batch).__name__}")
        try:
            joined = b"".join(batch)
        except TypeError:
            raise ValueError(f"encoded batch #{index}: every line must be bytes") from None
        n = len(batch)
        if not (joined.count(b"\n") == n and joined.count(b"\t") == 2 * n
                and joined.count(b"\t0\n") + joined.count(b"\t1\n") == n and joined.endswith(b"\n" if n else b"")):
            raise ValueError(f"encoded batch #{index}: a line not made by encode_records")
        yield batch


def _batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one shorter)."""
    items = iter(items)
    while True:
        batch = list(islice(items, size))
        if not batch:
            return
        yield batch


def _mention_lines(items: Iterable[tuple[str, str, int]]) -> Iterator[tuple[bytes, int]]:
    """Validate mention items and encode each as (``mention \\t rule``, count)."""
    for index, item in enumerate(items):
        try:
            mention, entity_id, count = item
        except (TypeError, ValueError):
            raise _bad_record("item", index, item, "expected (mention, entity_id, count)") from None
        _check_text(mention, "mention", "item", index, item, empty_ok=False)
        _check_text(entity_id, "entity_id", "item", index, item, empty_ok=False)
        if isinstance(count, bool):
            raise _bad_record("item", index, item, "count must be an int, not bool")
        try:
            count = operator.index(count)
        except TypeError:
            raise _bad_record("item", index, item, f"count must be an int, not {type(count).__name__}") from None
        if count < 0 or count > _MAX_COUNT:
            raise _bad_record("item", index, item, f"count must be in [0, 2**63), got {count}")
        yield (mention + "\t" + _rule_prefix(entity_id)).encode("utf-8"), count


# ----------------------------------------------------------------------------- external sort


def _write_run(lines: list[bytes], tmp_dir: str, runs: list[str]) -> None:
    path = os.path.join(tmp_dir, "run%05d" % len(runs))
    with open(path, "wb") as f:
        f.writelines(lines)
    runs.append(path)


def _distinct_sorted(lines: list[bytes]) -> list[bytes]:
    """The distinct `lines` in byte order.

    ``dict.fromkeys`` drops repeats and keeps the input order, where a set would scramble it: records
    come grouped by entity and mostly in id order, so the sort finds long runs and merges them
    (286k Wikidata lines: 0.07 s, against 0.28 s for ``sorted(set(...))``).
    """
    return sorted(dict.fromkeys(lines))


def _sorted_unique(batches: Iterable[list[bytes]], tmp_dir: str, chunk_size: int) -> Iterator[bytes]:
    """The distinct lines of `batches` (lists of lines) in byte order; sorted runs of ``chunk_size``
    lines or more (up to a batch beyond) spill to disk."""
    runs: list[str] = []
    buf: list[bytes] = []
    for batch in batches:
        buf += batch
        if len(buf) >= chunk_size:
            _write_run(_distinct_sorted(buf), tmp_dir, runs)
            buf = []
    if not runs:
        yield from _distinct_sorted(buf)
        return
    if buf:
        _write_run(_distinct_sorted(buf), tmp_dir, runs)
    del buf
    files = [open(path, "rb") for path in runs]
    try:
        previous = None
        for line in heapq.merge(*files):
            if line != previous:
                yield line
                previous = line
    finally:
        for f in files:
            f.close()


def _aggregate(pairs: dict[bytes, int]) -> list[bytes]:
    return [b"%s\t%d\n" % (key, pairs[key]) for key in sorted(pairs)]


def _sorted_summed(items: Iterable[tuple[bytes, int]], tmp_dir: str, chunk_size: int) -> Iterator[tuple[bytes, int]]:
    """(key, summed count) in byte order of key; aggregated runs spill to disk."""
    runs: list[str] = []
    buf: dict[bytes, int] = {}
    for key, count in items:
        buf[key] = buf.get(key, 0) + count
        if len(buf) >= chunk_size:
            _write_run(_aggregate(buf), tmp_dir, runs)
            buf = {}
    if not runs:
        for key in sorted(buf):
            yield key, buf[key]
        return
    if buf:
        _write_run(_aggregate(buf), tmp_dir, runs)
    del buf
    files = [open(path, "rb") for path in runs]
    try:
        # "\t" sorts below every allowed character, so equal keys are adjacent in the merge.
        current, total = None, 0
        for line in heapq.merge(*files):
            key, _, count = line[:-1].rpartition(b"\t")
            if key != current:
                if current is not None:
                    yield current, total
                current, total = key, 0
            total += int(count)
        if current is not None:
            yield current, total
    finally:
        for f in files:
            f.close()


def _spool_texts(path: str, chunk_bytes: int = 1 << 20, start: int = 0, end: Optional[int] = None) -> Iterator[str]:
    """The lines of a spool file (each ends with a newline) as str, decoded and split a chunk at a time;
    only those in bytes [start, end) if given (both at line starts, as :func:`_line_ranges` cuts)."""
    with open(path, "rb") as f:
        f.seek(start)
        left = (os.fstat(f.fileno()).st_size if end is None else end) - start
        while left > 0:
            chunk = f.read(min(chunk_bytes, left))
            if not chunk:
                return
            if not chunk.endswith(b"\n"):
                chunk += f.readline()
            left -= len(chunk)
            lines = chunk.decode("utf-8").split("\n")
            lines.pop()  # the empty string after the last newline
            yield from lines


def _line_ranges(path: str, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive byte ranges of a file of lines, of about equal size, cut at line ends (a
    range may be empty)."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            point = max(size * k // parts, cuts[-1])
            if 0 < point < size:
                f.seek(point - 1)
                f.readline()  # to the end of the line the point falls in (none if a line ends just before it)
                point = f.tell()
            cuts.append(min(point, size))
    cuts.append(size)
    return list(zip(cuts, cuts[1:]))


# Lines from which a build given workers > 1 looks up the key ids in several processes; below it,
# starting them costs more than the lookups they share (about 3 us a line at a few million keys).
PARALLEL_LOOKUPS = 250_000


def _spool_trie(path: str, n_lines: int, workers: int = 1) -> tuple[int, np.ndarray]:
    """Save a marisa trie of a spool file's lines to ``path + ".marisa"``; its size and each line's key id.

    With ``workers > 1`` and at least PARALLEL_LOOKUPS lines, the lookups (random walks in a trie
    that no longer fits in a cache: more than the build costs) are split over that many processes,
    which map the saved trie; the ids are the same.
    """
    trie = marisa_trie.Trie(_spool_texts(path))  # duplicates merge
    trie.save(path + ".marisa")
    if workers > 1 and n_lines >= PARALLEL_LOOKUPS:
        return len(trie), _parallel_ids(trie, path, n_lines, workers)
    return len(trie), np.fromiter(map(trie.get, _spool_texts(path)), dtype=np.uint32, count=n_lines)


def _lookup_range(trie_path: str, path: str, start: int, end: int, out_path: str) -> None:
    """A process of :func:`_parallel_ids`: the key id of each line in bytes [start, end) of the spool
    file, written to ``out_path`` as native uint32."""
    trie = marisa_trie.Trie()
    trie.mmap(trie_path)
    np.fromiter(map(trie.get, _spool_texts(path, start=start, end=end)), dtype=np.uint32).tofile(out_path)


def _parallel_ids(trie: marisa_trie.Trie, path: str, n_lines: int, workers: int) -> np.ndarray:
    """Each spool line's id in ``trie`` (saved at ``path + ".marisa"``): the first of `workers` ranges
    looked up here, the others by processes that write their ids to files, read in order."""
    import multiprocessing

    ranges = _line_ranges(path, workers)
    context = multiprocessing.get_context()
    ids = np.empty(n_lines, dtype=np.uint32)
    procs = []
    try:
        for k, (start, end) in enumerate(ranges[1:], 1):
            proc = context.Process(target=_lookup_range, args=(path + ".marisa", path, start, end, f"{path}.ids{k}"),
                                   name=f"name-table-lookups-{k}", daemon=True)
            proc.start()
            procs.append(proc)
        pos = 0
        for batch in _batched(_spool_texts(path, start=ranges[0][0], end=ranges[0][1]), 65536):
            ids[pos:pos + len(batch)] = np.fromiter(map(trie.get, batch), dtype=np.uint32, count=len(batch))
            pos += len(batch)
        for k, proc in enumerate(procs, 1):
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"a lookup process of the table build failed (exit code {proc.exitcode}) "
                                   f"on bytes {ranges[k][0]}-{ranges[k][1]} of {path}")
            with open(f"{path}.ids{k}", "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size % 4 or pos + size // 4 > n_lines:
                    raise RuntimeError(f"a lookup process of the table build wrote {size} bytes of ids for bytes "
                                       f"{ranges[k][0]}-{ranges[k][1]} of {path}: more lines than the spool has")
                if f.readinto(memoryview(ids[pos:pos + size // 4]).cast("B")) != size:
                    raise RuntimeError(f"{path}.ids{k}: short read")
            os.unlink(f"{path}.ids{k}")
            pos += size // 4
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()
    if pos != n_lines:
        raise RuntimeError(f"the lookup processes of the table build found {pos} lines in {path}, not {n_lines}")
    return ids


def _trie_and_ids(path: str, n_lines: int, out_path: str) -> None:
    """A process of :func:`_spool_tries`: :func:`_spool_trie` of one spool, written to ``out_path`` as
    the trie's size (8 bytes, little-endian) then each line's id (native uint32)."""
    size, ids = _spool_trie(path, n_lines)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", size))
        ids.tofile(f)


def _spool_tries(first: tuple[str, int], second: tuple[str, int], workers: int) -> list[tuple[int, np.ndarray]]:
    """:func:`_spool_trie` of two spools, each a (path, lines). With ``workers > 1`` and both of
    PARALLEL_LOOKUPS lines or more, the smaller is built in a process of its own while this one builds
    the larger (whose lookups are shared by `workers`): the two tries do not wait for each other."""
    if workers == 1 or min(first[1], second[1]) < PARALLEL_LOOKUPS:
        return [_spool_trie(*first, workers), _spool_trie(*second, workers)]
    if second[1] > first[1]:
        return _spool_tries(second, first, workers)[::-1]
    import multiprocessing

    out_path = second[0] + ".built"
    proc = multiprocessing.get_context().Process(target=_trie_and_ids, args=(*second, out_path),
                                                 name="name-table-trie", daemon=True)
    proc.start()
    try:
        built = _spool_trie(*first, workers)
        proc.join()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"a trie process of the table build failed (exit code {proc.exitcode}) on {second[0]}")
    with open(out_path, "rb") as f:
        head = f.read(8)
        ids = np.fromfile(f, dtype=np.uint32)
    os.unlink(out_path)
    if len(head) != 8 or ids.size != second[1]:
        raise RuntimeError(f"a trie process of the table build wrote {ids.size} ids for the {second[1]} lines of "
                           f"{second[0]}")
    return [built, (struct.unpack("<Q", head)[0], ids)]


def _smallest(values: np.ndarray, upper: int) -> np.ndarray:
    """``values`` in the narrowest little-endian unsigned dtype holding ``upper``."""
    for width in (1, 2, 4, 8):
        if upper < 1 << (8 * width):
            return np.ascontiguousarray(values, dtype=np.dtype("<u%d" % width))
    raise ValueError(f"value {upper} does not fit in 64 bits")


def _csr_offsets(groups: np.ndarray, n: int) -> np.ndarray:
    offsets = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(np.bincount(groups, minlength=n), out=offsets[1:])
    return offsets


# ----------------------------------------------------------------------------- container


def _crc_file(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 22)
            if not block:
                return crc
            crc = zlib.crc32(block, crc)


def _pad(n: int) -> int:
    return -n % _ALIGN


def _write_container(path: PathLike, magic: bytes, header: dict, sections: list[tuple[str, Any]]) -> None:
    """Write header + sections (``np.ndarray`` or a path to a saved marisa trie) atomically."""
    table = []
    for name, payload in sections:
        if isinstance(payload, np.ndarray):
            entry = {"name": name, "type": "array", "dtype": "u%d" % payload.dtype.itemsize,
                     "count": int(payload.size), "nbytes": int(payload.nbytes), "crc32": zlib.crc32(payload)}
        else:
            entry = {"name": name, "type": "marisa", "nbytes": os.path.getsize(payload), "crc32": _crc_file(payload)}
        table.append(entry)
    # Offsets depend on the JSON length, which depends on the offsets: iterate to a fixed point.
    data_start = 0
    while True:
        offset = data_start
        for entry in table:
            entry["offset"] = offset
            offset += entry["nbytes"] + _pad(entry["nbytes"])
        blob = json.dumps(dict(header, sections=table), ensure_ascii=False, sort_keys=True).encode("utf-8")
        start = _PREAMBLE.size + len(blob) + _pad(_PREAMBLE.size + len(blob))
        if start == data_start:
            break
        data_start = start
    file_len = offset
    preamble = _PREAMBLE.pack(magic, FORMAT_VERSION, len(blob), 0, 0, file_len)
    crc = zlib.crc32(blob, zlib.crc32(preamble))
    preamble = _PREAMBLE.pack(magic, FORMAT_VERSION, len(blob), crc, 0, file_len)

    path = os.fspath(path)
    tmp_path = "%s.tmp%d" % (path, os.getpid())
    try:
        with open(tmp_path, "wb") as f:
            f.write(preamble + blob + b"\0" * (data_start - _PREAMBLE.size - len(blob)))
            for entry, (_, payload) in zip(table, sections):
                if isinstance(payload, np.ndarray):
                    f.write(memoryview(payload).cast("B"))
                else:
                    with open(payload, "rb") as src:
                        shutil.copyfileobj(src, f, 1 << 22)
                f.write(b"\0" * _pad(entry["nbytes"]))
            if f.tell() != file_len:
                raise RuntimeError(f"{path}: wrote {f.tell()} bytes, expected {file_len}")
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


class _Closed:
    """Stands in for the tries after ``close()`` so a late lookup fails cleanly."""

    def __getattr__(self, name: str) -> Any:
        raise ValueError("lookup on a closed table")


class _Container:
    """An open, validated table file: header dict, tries and arrays, all views of one mmap."""

    def __init__(self, path: PathLike, magic: bytes, kind: str, required: dict[str, str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:  # a missing file is an OSError, not a format error
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise self.error("empty file")
            head = f.read(_PREAMBLE.size)
            if head[:8] != magic[: len(head)]:
                other = _KINDS.get(head[:8])
                what = f"this is a genre_fairseq {other}, not a {kind}" if other else f"not a genre_fairseq {kind}"
                raise self.error(f"bad magic {head[:8]!r} ({what})")
            if len(head) < _PREAMBLE.size:
                raise self.error(f"truncated: {size} bytes, shorter than the {_PREAMBLE.size}-byte header")
            _, version, json_len, crc, reserved, file_len = _PREAMBLE.unpack(head)
            if version != FORMAT_VERSION:
                raise self.error(f"unsupported format version {version} (this reader supports {FORMAT_VERSION})")
            if reserved:  # not covered by the checksum, which is computed with it zero
                raise self.error("corrupt header (reserved field is not zero)")
            if size < _PREAMBLE.size + json_len or size < file_len:
                raise self.error(f"truncated: {size} bytes, the header says {max(file_len, _PREAMBLE.size + json_len)}")
            if size > file_len:
                raise self.error(f"corrupt: {size} bytes, longer than the {file_len} the header says")
            blob = f.read(json_len)
            self._json_len = json_len
            expected = zlib.crc32(blob, zlib.crc32(_PREAMBLE.pack(magic, version, json_len, 0, 0, file_len)))
            if crc != expected:
                raise self.error("corrupt header (checksum mismatch)")
            try:
                self.header = json.loads(blob.decode("utf-8"))
            except ValueError as e:
                raise self.error(f"corrupt header (bad JSON: {e})") from None
            if not isinstance(self.header, dict) or self.header.get("kind") != kind.replace(" ", "_"):
                raise self.error(f"corrupt header (kind is not {kind.replace(' ', '_')!r})")
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._views: list[memoryview] = []
        self.tries: dict[str, Any] = {}
        self.arrays: dict[str, np.ndarray] = {}
        try:
            self._open_sections(required, file_len, _PREAMBLE.size + json_len)
        except BaseException:
            self.close()
            raise

    def error(self, cause: str) -> ValueError:
        return ValueError(f"{self.path}: {cause}")

    def _open_sections(self, required: dict[str, str], file_len: int, data_start: int) -> None:
        try:
            table = {entry["name"]: entry for entry in self.header["sections"]}
        except (KeyError, TypeError) as e:
            raise self.error(f"corrupt header (section table: {e!r})") from None
        for name, kind in required.items():
            entry = table.get(name)
            if not isinstance(entry, dict) or entry.get("type") != kind:
                raise self.error(f"corrupt header (missing {kind} section {name!r})")
            try:
                offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
                if kind == "array":
                    dtype = {"u1": "<u1", "u2": "<u2", "u4": "<u4", "u8": "<u8"}[entry["dtype"]]
                    count = int(entry["count"])
            except (KeyError, TypeError, ValueError) as e:
                raise self.error(f"corrupt header (section {name!r}: {e!r})") from None
            if offset < data_start or offset % 8 or nbytes < 0 or offset + nbytes > file_len:
                raise self.error(f"corrupt header (section {name!r} out of bounds)")
            if kind == "marisa":
                # Checked here because a failed Trie.map never releases its buffer (marisa-trie
                # 1.4.1), which pins the mmap until the process exits.
                if self._mmap[offset: offset + len(_MARISA_HEADER)] != _MARISA_HEADER:
                    raise self.error(f"corrupt section {name!r} (not a marisa trie)")
                view = memoryview(self._mmap)[offset: offset + nbytes]
                self._views.append(view)
                trie = marisa_trie.Trie()
                try:
                    trie.map(view)
                except Exception as e:  # marisa raises RuntimeError with its source location
                    raise self.error(f"corrupt section {name!r} ({e})") from None
                self.tries[name] = trie
            else:
                if count * np.dtype(dtype).itemsize != nbytes:
                    raise self.error(f"corrupt header (section {name!r}: {count} x {dtype} != {nbytes} bytes)")
                self.arrays[name] = (np.frombuffer(self._mmap, dtype=dtype, count=count, offset=offset)
                                     if count else np.zeros(0, dtype=dtype))

    def view(self, name: str) -> memoryview:
        """A memoryview of an array section (released by ``close``)."""
        view = memoryview(self.arrays[name])
        self._views.append(view)
        return view

    def check_csr(self, offsets: str, values: str, rows: int, total: int) -> None:
        """O(1) shape checks of a CSR pair (row count, first and last offset)."""
        off, val = self.arrays[offsets], self.arrays[values]
        if off.size != rows + 1 or val.size != total or int(off[0]) != 0 or int(off[-1]) != total:
            raise self.error(f"corrupt sections {offsets!r}/{values!r} (inconsistent sizes)")

    def check_len(self, trie: str, expected: int) -> None:
        if len(self.tries[trie]) != expected:
            raise self.error(f"corrupt section {trie!r} ({len(self.tries[trie])} keys, the header says {expected})")

    def verify(self, csr: list[tuple[str, str, int]]) -> None:
        """Checksum every section, check that all padding is zero and check every CSR array fully."""
        # The header checksum covers [0, 32 + J); sections have their own; the rest is padding,
        # which the writer zeroes: checked, so that no byte of the file goes unchecked.
        covered = [(0, _PREAMBLE.size + self._json_len)]
        covered += sorted((int(e["offset"]), int(e["offset"]) + int(e["nbytes"])) for e in self.header["sections"])
        for (_, end), (start, _) in zip(covered, covered[1:] + [(len(self._mmap), 0)]):
            if end < start and self._mmap[end:start].strip(b"\0"):
                raise self.error(f"corrupt padding (non-zero bytes between {end} and {start})")
        for entry in self.header["sections"]:
            start = entry["offset"]
            crc = 0
            for pos in range(start, start + entry["nbytes"], 1 << 24):
                crc = zlib.crc32(self._mmap[pos: min(pos + (1 << 24), start + entry["nbytes"])], crc)
            if crc != entry["crc32"]:
                raise self.error(f"corrupt section {entry['name']!r} (checksum mismatch)")
        for offsets, values, bound in csr:
            off, val = self.arrays[offsets], self.arrays[values]
            if off.size > 1 and bool(np.any(off[1:] < off[:-1])):
                raise self.error(f"corrupt section {offsets!r} (offsets decrease)")
            if val.size and int(val.max()) >= bound:
                raise self.error(f"corrupt section {values!r} (index out of range)")

    def close(self) -> None:
        # Trie.map keeps no reference to its buffer: the tries must go before the mapping does,
        # or a lookup reads unmapped memory. Views and arrays are buffer exports that make
        # mmap.close() refuse (BufferError) while anything still points into the file.
        for name in self.tries:
            self.tries[name] = _Closed()
        self.arrays.clear()
        try:
            for view in reversed(self._views):
                view.release()
            if getattr(self, "_mmap", None) is not None:
                self._mmap.close()
        except BufferError:
            pass  # a failed Trie.map leaked an export (only before a table exists): the mapping stays
        self._views.clear()
        self._mmap = None


def _build_dir(path: PathLike, tmp_dir: Optional[str], chunk_size: int) -> tempfile.TemporaryDirectory:
    """The spool directory of a build: in ``tmp_dir``, else next to the output (same disk)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    where = tmp_dir if tmp_dir is not None else os.path.dirname(os.path.abspath(os.fspath(path)))
    return tempfile.TemporaryDirectory(prefix=".gf-table-build-", dir=where)


def _check_meta(meta: Optional[dict]) -> dict:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(f"meta must be a dict, not {type(meta).__name__}")
    try:
        return json.loads(json.dumps(meta, ensure_ascii=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must be JSON-serializable: {e}") from None


# ----------------------------------------------------------------------------- shared surface


class _Table:
    """What both tables share: loading, header counts, meta, fingerprint, closing, pickling."""

    _MAGIC: bytes
    _KIND: str  # "name table" / "mention table"
    _SECTIONS: dict[str, str]  # section name -> "marisa" / "array"
    _COUNTS: tuple[str, ...]  # integer header fields
    _TRIES: tuple[str, ...]  # attributes holding mapped tries, replaced on close

    @classmethod
    def load(cls: type[_T], path: PathLike, *, verify: bool = True) -> _T:
        """Open a table file (memory-mapped), checksummed unless ``verify=False``; ``ValueError`` naming the file."""
        table = cls(_Container(path, cls._MAGIC, cls._KIND, cls._SECTIONS))
        if verify:
            try:
                table.verify()
            except BaseException:
                table.close()
                raise
        return table

    def __init__(self, container: _Container) -> None:
        """Wrap an opened container; use ``load``."""
        c = self._c = container
        try:
            h = c.header
            self._counts = {name: int(h[name]) for name in self._COUNTS}
            self._fingerprint, self._meta = str(h["fingerprint"]), dict(h["meta"])
        except (KeyError, TypeError, ValueError) as e:
            c.close()
            raise c.error(f"corrupt header ({e!r})") from None
        try:
            self._attach(c, **self._counts)
        except ValueError:
            c.close()
            raise

    def _attach(self, c: _Container, **counts: int) -> None:
        raise NotImplementedError

    @property
    def num_entities(self) -> int:
        """Number of distinct entity ids."""
        return self._counts["num_entities"]

    @property
    def meta(self) -> dict:
        """The ``meta`` dict given to ``build`` (a copy)."""
        return copy.deepcopy(self._meta)

    @property
    def fingerprint(self) -> str:
        """Hex digest of the table's content (independent of input order, duplicates, chunking and meta)."""
        return self._fingerprint

    @property
    def path(self) -> str:
        """The file this table was loaded from."""
        return self._c.path

    def close(self) -> None:
        """Unmap the file; later lookups raise ``ValueError``."""
        for attr in self._TRIES:
            setattr(self, attr, _Closed())
        self._c.close()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple:
        # Pickles as its path (e.g. into DataLoader workers); the receiver maps the file again,
        # without re-reading it whole: the sender's load verified it.
        return (_reopen, (type(self), self.path))

    def __repr__(self) -> str:
        counts = ", ".join(f"{name[4:]}={value}" for name, value in self._counts.items())
        return f"{type(self).__name__}({self.path!r}, {counts}, fingerprint={self._fingerprint[:12]!r})"


def _reopen(cls: type[_T], path: str) -> _T:
    return cls.load(path, verify=False)


# ----------------------------------------------------------------------------- name table


def _reorder(multi_entities: np.ndarray, multi_offsets: np.ndarray, ambiguous: np.ndarray, keys_trie: str,
             ents_trie: str, order_ids: Callable[[str, str, list[str]], list[str]], digest) -> None:
    """Reorder, in place, each ambiguous key's entity list as ``order_ids`` says; reordered keys enter ``digest``."""
    keys, ents = marisa_trie.Trie(), marisa_trie.Trie()
    keys.load(keys_trie)
    ents.load(ents_trie)
    for j, k in enumerate(ambiguous.tolist()):
        start, end = int(multi_offsets[j]), int(multi_offsets[j + 1])
        ids = [ents.restore_key(e) for e in multi_entities[start:end].tolist()]
        lang, name = keys.restore_key(k).split(_SEP, 1)
        ranked = list(order_ids(lang, name, list(ids)))
        if sorted(ranked) != sorted(ids):
            raise ValueError(f"order_ids({lang!r}, {name!r}, ...) must return a permutation of {ids}, got {ranked}")
        if ranked != ids:
            multi_entities[start:end] = [ents[e] for e in ranked]
            digest.update(("order\t%s\t%s\t%s\n" % (lang, name, "\t".join(ranked))).encode("utf-8"))


def _links(lines: Iterable[bytes], keys_f, ents_f, link_rank: array, link_primary: bytearray,
           digest) -> tuple[int, int]:
    """``NameTable.build``'s pass over its sorted spool lines (records with their own primary flags).

    Writes the key of every link and each distinct entity to the spools, appends each link's entity
    rank and primary flag, and feeds the fingerprint ``entity \t key \t primary`` per link in order;
    returns (links, entities). A link given as primary and not is primary ("\t0" sorts first).
    """
    keys: list[bytes] = []
    previous_link = previous_rule = last_key = None
    entity = b""
    rank = -1
    for line in lines:
        link = line[:-3]  # every line ends with "\t0\n" or "\t1\n"
        if link == previous_link:
            link_primary[-1] = 1
            continue
        if last_key is not None:
            digest.update(b"%s\t%s\t%d\n" % (entity, last_key, link_primary[-1]))
        previous_link = link
        rule, _, key = link.partition(b"\t")
        if rule != previous_rule:
            previous_rule = rule
            rank += 1
            entity = _rule_entity(rule)
            ents_f.write(entity + b"\n")
        keys.append(key)
        if len(keys) >= 65536:
            keys.append(b"")
            keys_f.write(b"\n".join(keys))
            keys.clear()
        link_rank.append(rank)
        link_primary.append(line[-2] == 49)  # "1"
        last_key = key
    if last_key is not None:
        digest.update(b"%s\t%s\t%d\n" % (entity, last_key, link_primary[-1]))
    if keys:
        keys.append(b"")
        keys_f.write(b"\n".join(keys))
    return len(link_rank), rank + 1


def _links_first_primary(lines: Iterable[bytes], keys_f, ents_f, link_rank: array, link_primary: bytearray,
                         digest) -> tuple[int, int]:
    """:func:`_links` for spool lines whose last field is the record's ordinal (``first_primary``).

    The first record of each (entity, lang) in input order is its primary name: the links of a group
    enter the fingerprint once the group is complete (its first record known).
    """
    rank = -1
    previous = previous_link = group = None
    entity = b""
    pending: list[bytes] = []  # the keys of the current (entity, lang), their flags still open
    first_ord, first_at = b"", 0

    def close_group() -> None:
        if pending:
            link_primary[first_at] = 1
        start = len(link_primary) - len(pending)
        for i, key in enumerate(pending):
            digest.update(b"%s\t%s\t%d\n" % (entity, key, link_primary[start + i]))
        pending.clear()

    for line in lines:
        link, _, flag = line.rpartition(b"\t")
        rule, _, key = link.partition(b"\t")
        lang_of = key.partition(b"\x1f")[0]
        if (rule, lang_of) != group:
            close_group()
            group, first_ord, first_at = (rule, lang_of), flag, len(link_primary)
        elif flag < first_ord:  # the same width: byte order is number order
            first_ord, first_at = flag, len(link_primary) - (link == previous_link)
        if link == previous_link:
            continue
        previous_link = link
        if rule != previous:
            close_group()
            previous = rule
            rank += 1
            entity = _rule_entity(rule)
            ents_f.write(entity + b"\n")
        keys_f.write(key + b"\n")
        link_rank.append(rank)
        link_primary.append(0)
        pending.append(key)
    close_group()
    return len(link_rank), rank + 1


class NameTable(_Table):
    """(lang, name) <-> entity ids, N-to-1 both ways, memory-mapped from one file."""

    _MAGIC, _KIND, _TRIES = NAME_TABLE_MAGIC, "name table", ("_keys", "_entities")
    _COUNTS = ("num_keys", "num_entities", "num_links", "num_ambiguous")
    _SECTIONS = {"keys": "marisa", "entities": "marisa", "fwd_entity": "array", "multi_offsets": "array",
                 "multi_entities": "array", "rev_offsets": "array", "rev_keys": "array",
                 "rev_primary": "array"}

    @staticmethod
    def build(records: Iterable[tuple[str, str, str]], path: PathLike, *, meta: Optional[dict] = None,
              tmp_dir: Optional[str] = None, chunk_size: int = 1_000_000,
              order_ids: Optional[Callable[[str, str, list[str]], list[str]]] = None,
              first_primary: bool = False, workers: int = 1) -> None:
        """Write the table of ``(entity_id, lang, name)`` records to ``path``; duplicates collapse.

        ``first_primary``: the records are triples, and the first name of each (entity, lang) in
        input order is its primary one (a custom KB's rule); found while the sorted runs merge, in
        bounded memory, where a caller would need a set of every (entity, lang) pair.

        ``order_ids(lang, name, ids)``, if given, is called for every ambiguous (lang, name) with its
        entity ids in id-rule order and returns them in the order ``ids()`` gives (e.g. by a prior);
        a reordered key enters the fingerprint.

        ``workers``: processes that look up each link's key id once the key trie is built (the most
        costly part of a large build), and build the entity trie beside the key trie; the table is
        the same for any number.
        """
        batches = _batched(_name_lines(records, first_primary), max(1, min(chunk_size, 4096)))
        NameTable._build(batches, path, meta=meta, tmp_dir=tmp_dir, chunk_size=chunk_size, order_ids=order_ids,
                         first_primary=first_primary, workers=workers)

    @staticmethod
    def build_encoded(batches: Iterable[list[bytes]], path: PathLike, *, meta: Optional[dict] = None,
                      tmp_dir: Optional[str] = None, chunk_size: int = 1_000_000,
                      order_ids: Optional[Callable[[str, str, list[str]], list[str]]] = None,
                      workers: int = 1) -> None:
        """:meth:`build` of records already encoded: `batches` are lists made by :func:`encode_records`
        (in any order, repeats allowed). The table is the one ``build`` writes of the same records;
        making the lines where the records are made (a reader's workers) takes that work off the
        process that sorts and writes."""
        NameTable._build(_checked_batches(batches), path, meta=meta, tmp_dir=tmp_dir, chunk_size=chunk_size,
                         order_ids=order_ids, first_primary=False, workers=workers)

    @staticmethod
    def _build(batches: Iterable[list[bytes]], path: PathLike, *, meta: Optional[dict], tmp_dir: Optional[str],
               chunk_size: int, order_ids: Optional[Callable[[str, str, list[str]], list[str]]],
               first_primary: bool, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        meta = _check_meta(meta)
        with _build_dir(path, tmp_dir, chunk_size) as tmp:
            keys_path = os.path.join(tmp, "keys")  # key of every link, links in id-rule order
            ents_path = os.path.join(tmp, "entities")  # distinct entity ids in id-rule order
            link_rank = array("I")  # id-rule rank of the entity of every link
            link_primary = bytearray()  # 1 when the link is a primary name
            digest = hashlib.blake2b(b"genre_fairseq names\n", digest_size=16)
            with open(keys_path, "wb") as keys_f, open(ents_path, "wb") as ents_f:
                lines = _sorted_unique(batches, tmp, chunk_size)
                links = _links_first_primary if first_primary else _links
                n_links, n_entities = links(lines, keys_f, ents_f, link_rank, link_primary, digest)
            ent_rank = np.frombuffer(link_rank, dtype=np.uint32) if n_links else np.zeros(0, np.uint32)

            (n_keys, key_id), (_, ent_id_of_rank) = _spool_tries((keys_path, n_links), (ents_path, n_entities),
                                                                 workers)

            # Links are in id-rule order; a stable sort by key keeps that order within a key.
            order = np.argsort(key_id, kind="stable")
            link_entity = ent_id_of_rank[ent_rank[order]]  # grouped by key
            per_key = np.bincount(key_id, minlength=n_keys)
            fwd_entity = link_entity[_csr_offsets(key_id, n_keys)[:-1]].astype(np.uint64)
            ambiguous = np.flatnonzero(per_key > 1)
            fwd_entity[ambiguous] = n_entities + np.arange(ambiguous.size, dtype=np.uint64)
            fwd_entity = _smallest(fwd_entity, n_entities + ambiguous.size)
            multi_entities = _smallest(link_entity[np.repeat(per_key > 1, per_key)], n_entities)
            multi_offsets = np.zeros(ambiguous.size + 1, dtype=np.uint64)
            np.cumsum(per_key[ambiguous], out=multi_offsets[1:])
            if order_ids is not None and ambiguous.size:
                _reorder(multi_entities, multi_offsets, ambiguous, keys_path + ".marisa", ents_path + ".marisa",
                         order_ids, digest)
            multi_offsets = _smallest(multi_offsets, multi_entities.size)
            del link_entity, per_key
            # Within an entity, links are in (lang, name) order; the stable sort keeps it.
            link_ent = ent_id_of_rank[ent_rank]
            del ent_rank, link_rank, order
            order = np.argsort(link_ent, kind="stable")
            rev_keys = _smallest(key_id[order], n_keys)
            primary = np.frombuffer(bytes(link_primary), dtype=np.uint8) if n_links else np.zeros(0, np.uint8)
            rev_primary = np.packbits(primary[order], bitorder="little")
            del primary, link_primary
            rev_offsets = _smallest(_csr_offsets(link_ent, n_entities), n_links)
            del order, link_ent, key_id

            header = {"kind": "name_table", "num_keys": n_keys, "num_entities": n_entities,
                      "num_links": n_links, "num_ambiguous": int(ambiguous.size),
                      "fingerprint": digest.hexdigest(), "meta": meta}
            _write_container(path, NAME_TABLE_MAGIC, header, [
                ("keys", keys_path + ".marisa"), ("entities", ents_path + ".marisa"),
                ("fwd_entity", fwd_entity), ("multi_offsets", multi_offsets), ("multi_entities", multi_entities),
                ("rev_offsets", rev_offsets), ("rev_keys", rev_keys), ("rev_primary", rev_primary)])

    def _attach(self, c: _Container, num_keys: int, num_entities: int, num_links: int, num_ambiguous: int) -> None:
        c.check_len("keys", num_keys)
        c.check_len("entities", num_entities)
        if c.arrays["fwd_entity"].size != num_keys:
            raise c.error("corrupt section 'fwd_entity' (inconsistent size)")
        c.check_csr("multi_offsets", "multi_entities", num_ambiguous, num_links - num_keys + num_ambiguous)
        c.check_csr("rev_offsets", "rev_keys", num_entities, num_links)
        if c.arrays["rev_primary"].size != (num_links + 7) // 8:
            raise c.error("corrupt section 'rev_primary' (inconsistent size)")
        self._n_keys, self._n_entities = num_keys, num_entities
        self._keys, self._entities = c.tries["keys"], c.tries["entities"]
        # memoryviews index about twice as fast as numpy arrays for single items
        self._fwd = c.view("fwd_entity")
        self._multi_off, self._multi_ent = c.view("multi_offsets"), c.view("multi_entities")
        self._rev_off, self._rev_key = c.view("rev_offsets"), c.view("rev_keys")
        self._rev_primary = c.arrays["rev_primary"]

    def ids(self, lang: str, name: str) -> list[str]:
        """Entity ids named ``name`` in ``lang``, in id-rule order or the build's ``order_ids`` (``[0]`` is the pick); ``[]`` if unknown."""
        try:
            k = self._keys.get(lang + _SEP + name)
        except UnicodeEncodeError:
            return []
        if k is None:
            return []
        e = self._fwd[k]
        if e < self._n_entities:
            return [self._entities.restore_key(e)]
        j = e - self._n_entities
        restore = self._entities.restore_key
        return [restore(x) for x in self._multi_ent[self._multi_off[j]: self._multi_off[j + 1]].tolist()]

    def _entity(self, entity_id: str) -> Optional[int]:
        """The key id of an entity in the entities trie, or None if unknown."""
        try:
            return self._entities.get(entity_id)
        except UnicodeEncodeError:
            return None

    def names(self, entity_id: str) -> list[tuple[str, str]]:
        """All ``(lang, name)`` of an entity, sorted; ``[]`` if unknown."""
        e = self._entity(entity_id)
        if e is None:
            return []
        restore = self._keys.restore_key
        return [tuple(restore(k).split(_SEP, 1)) for k in self._rev_key[self._rev_off[e]: self._rev_off[e + 1]].tolist()]

    def primary_names(self, entity_id: str) -> list[tuple[str, str]]:
        """The primary ``(lang, name)`` of an entity (its title or label per language), sorted; ``[]`` if unknown."""
        e = self._entity(entity_id)
        if e is None:
            return []
        start, end = self._rev_off[e], self._rev_off[e + 1]
        bits = np.unpackbits(self._rev_primary[start >> 3: (end + 7) >> 3], bitorder="little")[start & 7:]
        restore = self._keys.restore_key
        keys = self._rev_key[start:end].tolist()
        return [tuple(restore(k).split(_SEP, 1)) for k, bit in zip(keys, bits.tolist()) if bit]

    def __len__(self) -> int:
        """Number of distinct (lang, name) pairs."""
        return self._n_keys

    def __contains__(self, key: object) -> bool:
        """Whether a ``(lang, name)`` pair is in the table."""
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(s, str) for s in key)):
            return False
        return bool(self.ids(*key))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Iterate over the (lang, name) pairs (in the trie's order: fixed for a file, otherwise unspecified)."""
        for key in self._keys.iterkeys():
            yield tuple(key.split(_SEP, 1))

    @property
    def num_links(self) -> int:
        """Number of distinct (entity_id, lang, name) records."""
        return self._counts["num_links"]

    def entity_ids(self) -> Iterator[str]:
        """Iterate over the entity ids (in the trie's order: fixed for a file, otherwise unspecified)."""
        return self._entities.iterkeys()

    def verify(self) -> None:
        """Read the whole file and check section checksums and CSR arrays; ``ValueError`` if corrupt."""
        c = self._c
        c.verify([("multi_offsets", "multi_entities", self._n_entities), ("rev_offsets", "rev_keys", self._n_keys)])
        fwd = c.arrays["fwd_entity"]
        if fwd.size and int(fwd.max()) >= self._n_entities + self._counts["num_ambiguous"]:
            raise c.error("corrupt section 'fwd_entity' (index out of range)")
        if bool(np.any(np.diff(c.arrays["multi_offsets"].astype(np.int64)) < 2)):
            raise c.error("corrupt section 'multi_offsets' (a list shorter than 2)")


# ----------------------------------------------------------------------------- mention table


class MentionTable(_Table):
    """Exact mention string -> candidate entity ids with counts, memory-mapped from one file."""

    _MAGIC, _KIND, _TRIES = MENTION_TABLE_MAGIC, "mention table", ("_mentions", "_entities")
    _COUNTS = ("num_mentions", "num_entities", "num_pairs")
    _SECTIONS = {"mentions": "marisa", "entities": "marisa", "offsets": "array",
                 "entity": "array", "count": "array"}

    @staticmethod
    def build(items: Iterable[tuple[str, str, int]], path: PathLike, *, meta: Optional[dict] = None,
              tmp_dir: Optional[str] = None, chunk_size: int = 1_000_000, workers: int = 1) -> None:
        """Write the table of ``(mention, entity_id, count)`` items to ``path``; counts of duplicates sum.

        ``workers``: processes that build the mention and entity tries at once and look up the ids
        of the pairs' entities; the table is the same for any number.
        """
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        meta = _check_meta(meta)
        with _build_dir(path, tmp_dir, chunk_size) as tmp:
            mentions_path = os.path.join(tmp, "mentions")  # distinct mentions, sorted
            ents_path = os.path.join(tmp, "entities")  # entity of every pair, in final pair order
            pair_mention = array("I")  # ordinal of the pair's mention in the sorted mentions
            counts = array("Q")
            digest = hashlib.blake2b(b"genre_fairseq mentions\n", digest_size=16)
            n_mentions = 0

            def flush(mention: bytes, group: list[tuple[int, bytes]]) -> None:
                nonlocal n_mentions
                mentions_f.write(mention + b"\n")
                group.sort(key=lambda pair: -pair[0])  # stable: ties stay in id-rule order
                for count, entity in group:
                    ents_f.write(entity + b"\n")
                    pair_mention.append(n_mentions)
                    counts.append(count)
                n_mentions += 1

            with open(mentions_path, "wb") as mentions_f, open(ents_path, "wb") as ents_f:
                current, group = None, []
                for key, count in _sorted_summed(_mention_lines(items), tmp, chunk_size):
                    mention, _, rule = key.partition(b"\t")
                    entity = _rule_entity(rule)
                    if count > _MAX_COUNT:
                        raise ValueError(f"summed count of ({mention.decode()!r}, {entity.decode()!r}) exceeds 2**63 - 1")
                    digest.update(b"%s\t%s\t%d\n" % (mention, entity, count))
                    if mention != current:
                        if current is not None:
                            flush(current, group)
                        current, group = mention, []
                    group.append((count, entity))
                if current is not None:
                    flush(current, group)
            n_pairs = len(counts)

            (_, mention_id_of_ord), (n_entities, pair_entity) = _spool_tries((mentions_path, n_mentions),
                                                                             (ents_path, n_pairs), workers)

            pair_ord = np.frombuffer(pair_mention, dtype=np.uint32) if n_pairs else np.zeros(0, np.uint32)
            pair_mid = mention_id_of_ord[pair_ord]
            order = np.argsort(pair_mid, kind="stable")  # keeps each mention's candidate order
            count_arr = np.frombuffer(counts, dtype=np.uint64) if n_pairs else np.zeros(0, np.uint64)
            max_count = int(count_arr.max()) if n_pairs else 0
            header = {"kind": "mention_table", "num_mentions": n_mentions, "num_entities": n_entities,
                      "num_pairs": n_pairs, "fingerprint": digest.hexdigest(), "meta": meta}
            _write_container(path, MENTION_TABLE_MAGIC, header, [
                ("mentions", mentions_path + ".marisa"), ("entities", ents_path + ".marisa"),
                ("offsets", _smallest(_csr_offsets(pair_mid, n_mentions), n_pairs)),
                ("entity", _smallest(pair_entity[order], n_entities)),
                ("count", _smallest(count_arr[order], max_count))])

    def _attach(self, c: _Container, num_mentions: int, num_entities: int, num_pairs: int) -> None:
        c.check_len("mentions", num_mentions)
        c.check_len("entities", num_entities)
        c.check_csr("offsets", "entity", num_mentions, num_pairs)
        if c.arrays["count"].size != num_pairs:
            raise c.error("corrupt section 'count' (inconsistent size)")
        self._mentions, self._entities = c.tries["mentions"], c.tries["entities"]
        self._off, self._ent, self._count = c.view("offsets"), c.view("entity"), c.view("count")

    def candidates(self, mention: str, k: Optional[int] = None) -> list[tuple[str, int]]:
        """The (entity_id, count) of an exact mention, count descending then id rule; top ``k`` if given."""
        if k is not None and k < 0:
            raise ValueError(f"k must be >= 0 or None, got {k}")
        try:
            m = self._mentions.get(mention)
        except UnicodeEncodeError:
            return []
        if m is None:
            return []
        start, end = self._off[m], self._off[m + 1]
        if k is not None:
            end = min(end, start + k)
        restore = self._entities.restore_key
        return [(restore(e), c) for e, c in zip(self._ent[start:end].tolist(), self._count[start:end].tolist())]

    def __len__(self) -> int:
        """Number of distinct mentions."""
        return self._counts["num_mentions"]

    def __contains__(self, mention: object) -> bool:
        """Whether a mention string is in the table."""
        return isinstance(mention, str) and bool(self.candidates(mention, 1))

    def mentions(self) -> Iterator[str]:
        """Iterate over the mention strings (in the trie's order)."""
        return self._mentions.iterkeys()

    @property
    def num_pairs(self) -> int:
        """Number of distinct (mention, entity_id) pairs."""
        return self._counts["num_pairs"]

    def verify(self) -> None:
        """Read the whole file and check section checksums and CSR arrays; ``ValueError`` if corrupt."""
        self._c.verify([("offsets", "entity", self.num_entities)])
