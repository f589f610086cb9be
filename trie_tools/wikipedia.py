"""Readers of Wikipedia's MySQL dumps (``page.sql(.gz)``, ``redirect.sql(.gz)``) and redirect resolution.

The dumps are mysqldump output: comments, ``DROP TABLE``, ``CREATE TABLE``, ``LOCK TABLES``, then
multi-row ``INSERT INTO `table` VALUES (...),(...);`` statements of up to a few megabytes each.
The scanner here reads fixed-size chunks and tokenizes rows with MySQL string escaping, so memory
stays bounded by the chunk size plus the longest row, whatever the length of a statement or file.

Strings come back as bytes (the dumps are binary-safe); the page and redirect readers decode titles
as UTF-8 and give them with spaces instead of underscores. Rows that do not parse, or whose titles
are not UTF-8, are counted and reported with their line numbers; with ``strict=True`` the first one
raises ``InputError`` (a ``ValueError``) naming file and line.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import (
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

__all__ = ["InputError", "PageRow", "RedirectRow", "RedirectStats", "SqlStats", "SqlValue", "iter_pages",
           "iter_redirects", "iter_sql_rows", "read_redirect_map", "resolve_redirects", "unescape_string"]

logger = logging.getLogger(__name__)

SqlValue = Union[int, float, bytes, None]

DEFAULT_CHUNK_SIZE = 1 << 20
# A row longer than this is taken as malformed (an unterminated string would otherwise make
# the scanner read the rest of the file into memory looking for its end).
DEFAULT_MAX_ROW_BYTES = 64 << 20

# One value: a single-quoted string (optionally _binary-prefixed; mysqldump writes no "..." strings),
# or an unquoted token (number, NULL, 0x...).
# The string body is written as an "unrolled loop" so a string that does not end in the
# buffer fails in linear time instead of backtracking exponentially.
_STRING = rb"'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'"
_VALUE = rb"(?:(?:_binary\s*)?" + _STRING + rb"|[^\s,()']+)"
_SEP = rb"\s*,\s*"

# Between statements: whitespace, comments, a bare ";", the start of an INSERT or REPLACE (with or
# without a column list), or any other statement up to its ";" with quoted parts skipped whole. The
# lookahead keeps a comment or INSERT cut by the end of the buffer from being read as another statement.
_OUTER = re.compile(
    rb"""
    (?P<space>\s+)
  | (?P<comment>(?:--|\#)[^\n]*(?:\n|\Z) | /\*.*?\*/)
  | (?P<semicolon>;)
  | (?P<insert>(?:INSERT|REPLACE)\s+(?:IGNORE\s+)?INTO\s+(?:`(?P<quoted>[^`]*)`|(?P<bare>\w+))\s*
        (?:(?P<columns>\()|VALUES?\s*(?=\()))
  | (?P<other>(?!INSERT\b|REPLACE\b|--|/\*|\#)
        [^;'"`]*(?:(?:'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"|`[^`]*`)[^;'"`]*)*;)
    """,
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)

# The rest of a row after the values we want, up to its ")": unquoted text and whole strings.
# Checking each value of the rest would cost twice the time for columns nobody reads.
_REST = rb"[^'()]*(?:" + _STRING + rb"[^'()]*)*\)"
_ANY_ROW = re.compile(rb"\s*\(" + _REST + rb"\s*[,;]", re.DOTALL)

_UNESCAPE = re.compile(rb"\\(.)|''", re.DOTALL)
# MySQL string escapes; \% and \_ keep their backslash outside LIKE patterns, and any other
# escaped character stands for itself.
_ESCAPES = {b"0": b"\0", b"b": b"\b", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"Z": b"\x1a",
            b"%": b"\\%", b"_": b"\\_"}
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")


class PageRow(NamedTuple):
    """One row of the page table: id, namespace, title (spaces, not underscores)."""

    page_id: int
    namespace: int
    title: str


class RedirectRow(NamedTuple):
    """One row of the redirect table: source page id, target namespace, title, interwiki, fragment."""

    from_id: int
    namespace: int
    title: str
    interwiki: str
    fragment: str


@dataclass
class SqlStats(ReadStats):
    """Counts of a SQL dump read: `read` (rows of the table) = kept + other_namespace + interwiki
    + undecodable + malformed rows (`malformed` also counts statements that could not be read)."""

    statements: int = 0  # INSERT statements of the table
    other_namespace: int = 0
    interwiki: int = 0
    undecodable: int = 0  # titles that are not UTF-8


class _RowError(ValueError):
    """A row with the wrong column count or types."""


def _unescape_sub(m: re.Match[bytes]) -> bytes:
    char = m.group(1)
    if char is None:
        return b"'"
    return _ESCAPES.get(char, char)


def unescape_string(body: bytes) -> bytes:
    """Bytes of a MySQL string literal's body (between the quotes), escapes resolved."""
    if b"\\" not in body and b"''" not in body:
        return body
    return _UNESCAPE.sub(_unescape_sub, body)


def _value(token: bytes) -> SqlValue:
    """Python value of one SQL value token: bytes for strings, int, float, or None for NULL."""
    first = token[:1]
    if first == b"'":
        return unescape_string(token[1:-1])
    if first == b"_":
        quote = token.find(b"'")
        if quote > 0 and token[:quote].rstrip().lower() == b"_binary":
            return unescape_string(token[quote + 1:-1])
    if token.isdigit() or (first == b"-" and token[1:].isdigit()):
        return int(token)
    if token.upper() == b"NULL":
        return None
    if _NUMBER.match(token):
        return float(token)
    if token[:2] in (b"0x", b"0X"):
        try:
            return bytes.fromhex(token[2:].decode("ascii"))
        except ValueError:
            pass
    raise _RowError(f"bad value {token[:40]!r}")


def _row_pattern(ncols: int) -> re.Pattern[bytes]:
    """A row of at least `ncols` values, capturing the first `ncols` tokens, and the separator after it."""
    captured = _SEP.join([b"(" + _VALUE + b")"] * ncols)
    return re.compile(rb"\s*\(\s*" + captured + rb"(?:\s*\)|\s*," + _REST + rb")\s*[,;]", re.DOTALL)


class _Scanner:
    """A window on a binary stream: `buf[pos:]` is unread, `line` counts lines before `buf`."""

    def __init__(self, fh, chunk_size: int) -> None:
        self.fh = fh
        self.chunk_size = chunk_size
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.line = 1

    def refill(self) -> None:
        """Drop the consumed part and append at least one chunk (more if the unread part is long)."""
        unread = len(self.buf) - self.pos
        data = self.fh.read(max(self.chunk_size, unread))
        if not data:
            self.eof = True
        self.line += self.buf.count(b"\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + data
        self.pos = 0

    def line_at(self, pos: int) -> int:
        """Line number of the first non-blank byte at or after `pos` (where a row or statement starts)."""
        buf, end = self.buf, len(self.buf)
        while pos < end and buf[pos] in b" \t\r\n":
            pos += 1
        return self.line + buf.count(b"\n", 0, pos)

    def skip_line(self) -> None:
        """Skip past the next newline (mysqldump ends every statement with one)."""
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl >= 0:
                self.pos = nl + 1
                return
            if self.eof:
                self.pos = len(self.buf)
                return
            self.pos = len(self.buf)
            self.refill()


def _scan(
    path: PathLike,
    table: str,
    ncols: int,
    convert: Callable[[Tuple[bytes, ...], SqlStats], object],
    stats: SqlStats,
    strict: bool,
    chunk_size: int,
    max_row_bytes: int,
) -> Iterator:
    """Rows of `table`: tokens of their first `ncols` values, passed through `convert` (None drops a row)."""
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    stats.path = str(path)
    wanted = table.encode("utf-8")
    row_match = _row_pattern(ncols).match
    any_row_match = _ANY_ROW.match
    outer_match = _OUTER.match
    others: Dict[str, int] = {}  # INSERT statements into other tables, by table name
    with open_binary(path) as fh:
        s = _Scanner(fh, chunk_size)
        s.refill()
        try:
            while True:
                # Between statements.
                buf, pos = s.buf, s.pos
                if pos >= len(buf) and s.eof:
                    if stats.statements == 0 and others:
                        # Not a dump of this table at all: zero rows would pass for an empty wiki.
                        other = max(others, key=others.get).decode("utf-8", "replace")
                        raise InputError(f"{path}: no INSERT INTO `{table}` statement, but {sum(others.values())} "
                                         f"into `{other}`: this is the {other} dump, not the {table} dump "
                                         f"(files given in the wrong order?)")
                    return
                m = outer_match(buf, pos)
                if m is None or (m.end() == len(buf) and not s.eof):
                    if not s.eof and (m is not None or len(buf) - pos <= max_row_bytes):
                        s.refill()
                        continue
                    reason = "unterminated statement at end of file" if s.eof else "statement too long"
                    stats.malformed += 1
                    stats.problem(s.line_at(pos), reason, strict=strict)
                    s.skip_line()
                    continue
                s.pos = m.end()
                if m.group("insert") is None:
                    continue
                name = m.group("quoted") if m.group("quoted") is not None else m.group("bare")
                mine = name == wanted
                if mine:
                    stats.statements += 1
                    if m.group("columns") is not None:
                        # Positional columns are the contract here; a named column list might reorder them.
                        stats.malformed += 1
                        stats.problem(s.line_at(m.start()), "INSERT with a column list is not supported",
                                      strict=strict)
                        s.skip_line()
                        continue
                else:
                    others[name] = others.get(name, 0) + 1
                    if m.group("columns") is not None:
                        s.skip_line()
                        continue
                # Rows of one INSERT statement: the hot loop, with the window in local variables.
                match = row_match if mine else any_row_match
                buf, pos, size = s.buf, s.pos, len(s.buf)
                while True:
                    m = match(buf, pos)
                    if m is not None:
                        end = m.end()
                        if end < size or s.eof:
                            if mine:
                                stats.read += 1
                                try:
                                    item = convert(m.groups(), stats)
                                except _RowError as err:
                                    stats.malformed += 1
                                    stats.problem(s.line_at(pos), str(err), strict=strict)
                                    item = None
                                except UnicodeDecodeError as err:
                                    stats.undecodable += 1
                                    stats.problem(s.line_at(pos), f"not UTF-8: {err}", strict=strict)
                                    item = None
                                if item is not None:
                                    stats.kept += 1
                                    yield item
                            pos = end
                            if buf[end - 1] == 59:  # ";" ends the statement
                                s.pos = pos
                                break
                            continue
                    s.pos = pos
                    # No match, or one that touches the end of the buffer: read on and retry,
                    # unless the row is already implausibly long.
                    if not s.eof and (m is not None or size - pos <= max_row_bytes):
                        s.refill()
                        buf, pos, size = s.buf, s.pos, len(s.buf)
                        continue
                    m = any_row_match(buf, pos) if mine else None
                    if m is not None:
                        # Well-formed but too few columns: drop this row only.
                        stats.read += 1
                        stats.malformed += 1
                        stats.problem(s.line_at(pos), f"fewer than {ncols} columns", strict=strict)
                        pos = m.end()
                        if buf[pos - 1] == 59:
                            s.pos = pos
                            break
                        continue
                    # The row cannot be tokenized: say why, and resume at the next row of the statement
                    # if one can be found before the statement's end ("),(" is where mysqldump starts one).
                    stats.malformed += 1
                    if not mine:
                        s.skip_line()
                        break
                    stats.read += 1
                    cause = _row_problem(buf, pos, ncols)
                    nxt = buf.find(b"),(", pos + 1)
                    stop = buf.find(b");\n", pos + 1)
                    if nxt >= 0 and (stop < 0 or nxt < stop):
                        stats.problem(s.line_at(pos), f"malformed row ({cause}); resumed at the next row",
                                      strict=strict)
                        pos = nxt + 2
                        continue
                    stats.problem(s.line_at(pos), f"malformed row ({cause}); rest of the statement skipped",
                                  strict=strict)
                    s.skip_line()
                    break
        finally:
            stats.log(logger)


_VALUE_AT = re.compile(rb"\s*" + _VALUE + rb"\s*", re.DOTALL)


def _row_problem(buf: bytes, pos: int, ncols: int) -> str:
    """What is wrong with the row that starts at ``buf[pos]``, in words."""
    size = len(buf)
    while pos < size and buf[pos] in b" \t\r\n":
        pos += 1
    if buf[pos: pos + 1] != b"(":
        return f"expected '(' to start a row, found {buf[pos: pos + 20]!r}"
    pos += 1
    for k in range(1, 1 << 16):
        if buf[pos: pos + 1].lstrip() == b"" and pos >= size:
            return f"the file ends inside value {k}"
        m = _VALUE_AT.match(buf, pos)
        if m is None:
            if buf[pos: pos + 1] == b"'" or buf[pos:].lstrip()[:1] == b"'":
                return f"value {k}: a string that is never closed"
            return f"value {k}: unexpected {buf[pos: pos + 20]!r}"
        pos = m.end()
        after = buf[pos: pos + 1]
        if after == b",":
            pos += 1
            continue
        if after == b")":
            nxt = buf[pos + 1: pos + 2]
            if nxt in (b",", b";"):
                return "the row's columns could not be read"  # pragma: no cover - the row pattern matches
            return f"after the row's ')': expected ',' or ';', found {buf[pos + 1: pos + 21]!r}"
        if not after:
            return f"the file ends after value {k}"
        return f"value {k}: expected ',' or ')' after it, found {buf[pos: pos + 20]!r}"
    return "too many values"


def _values(tokens: Tuple[bytes, ...], stats: SqlStats) -> Tuple[SqlValue, ...]:
    return tuple(map(_value, tokens))


def iter_sql_rows(
    path: PathLike,
    table: str,
    ncols: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES,
    stats: Optional[SqlStats] = None,
    strict: bool = False,
) -> Iterator[Tuple[SqlValue, ...]]:
    """Stream the first `ncols` values of every row that INSERT statements add to `table`."""
    yield from _scan(path, table, ncols, _values, stats if stats is not None else SqlStats(), strict,
                     chunk_size, max_row_bytes)


def _string(token: bytes) -> Optional[bytes]:
    """Bytes of a string token (None for NULL); a _RowError for any other value."""
    if token[:1] == b"'":
        return unescape_string(token[1:-1])
    value = _value(token)
    if value is not None and type(value) is not bytes:
        raise _RowError(f"expected a string, got {token[:40]!r}")
    return value


def _title(token: bytes) -> str:
    """A title from its string token: UTF-8, spaces for underscores."""
    raw = _string(token)
    if raw is None:
        raise _RowError("title is NULL")
    return raw.decode("utf-8").replace("_", " ")


def iter_pages(
    path: PathLike,
    *,
    namespace: Optional[int] = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: Optional[SqlStats] = None,
    strict: bool = False,
) -> Iterator[PageRow]:
    """Stream (page_id, namespace, title) rows of a page.sql dump, of one namespace (None: all)."""

    def convert(tokens: Tuple[bytes, ...], st: SqlStats) -> Optional[PageRow]:
        page_id, ns, title = tokens
        try:
            page_id, ns = int(page_id), int(ns)
        except ValueError:
            raise _RowError(f"page id and namespace are not integers: {page_id[:20]!r}, {ns[:20]!r}") from None
        if namespace is not None and ns != namespace:
            st.other_namespace += 1
            return None
        return PageRow(page_id, ns, _title(title))

    yield from _scan(path, "page", 3, convert, stats if stats is not None else SqlStats(), strict,
                     chunk_size, DEFAULT_MAX_ROW_BYTES)


def iter_redirects(
    path: PathLike,
    *,
    namespace: Optional[int] = 0,
    interwiki: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: Optional[SqlStats] = None,
    strict: bool = False,
) -> Iterator[RedirectRow]:
    """Stream redirect.sql rows whose target is in `namespace` (None: all); interwiki ones only if asked."""

    def convert(tokens: Tuple[bytes, ...], st: SqlStats) -> Optional[RedirectRow]:
        from_id, ns, title, iw, fragment = tokens
        try:
            from_id, ns = int(from_id), int(ns)
        except ValueError:
            raise _RowError(f"rd_from and rd_namespace are not integers: {from_id[:20]!r}, {ns[:20]!r}") from None
        iw = _string(iw)
        if iw and not interwiki:
            st.interwiki += 1
            return None
        if namespace is not None and ns != namespace:
            st.other_namespace += 1
            return None
        return RedirectRow(from_id, ns, _title(title), (iw or b"").decode("utf-8"),
                           (_string(fragment) or b"").decode("utf-8"))

    yield from _scan(path, "redirect", 5, convert, stats if stats is not None else SqlStats(), strict,
                     chunk_size, DEFAULT_MAX_ROW_BYTES)


@dataclass
class RedirectStats:
    """Counts of redirect resolution; every redirect row lands in exactly one counter but `chained`."""

    redirects: int = 0  # redirect rows given
    resolved: int = 0  # in the result
    chained: int = 0  # of the resolved, those that needed more than one hop
    cycles: int = 0  # in a cycle or leading into one
    missing_source: int = 0  # rd_from is not a page of the namespace
    missing_target: int = 0  # the chain ends at a title that is not an article of the namespace
    interwiki: int = 0  # target on another wiki
    other_namespace: int = 0  # target in another namespace
    cycle_examples: List[str] = field(default_factory=list)
    page_stats: Optional[SqlStats] = None  # filled by read_redirect_map
    redirect_stats: Optional[SqlStats] = None

    def summary(self) -> str:
        """One human-readable line of the counters."""
        names = ("redirects", "resolved", "chained", "cycles", "missing_source", "missing_target",
                 "interwiki", "other_namespace")
        text = "redirects: " + ", ".join(f"{n}={getattr(self, n):,}" for n in names)
        if self.cycle_examples:
            text += "; cycles through " + ", ".join(repr(t) for t in self.cycle_examples)
        return text


_CYCLE = object()
_MISSING = object()


def resolve_redirects(
    page_rows: Iterable[PageRow],
    redirect_rows: Iterable[RedirectRow],
    *,
    namespace: int = 0,
    stats: Optional[RedirectStats] = None,
) -> Dict[str, str]:
    """Map every redirect title of `namespace` to the article it finally leads to (chains followed).

    Pass all redirect rows (``iter_redirects(path, namespace=None, interwiki=True)``): a redirect
    that leaves the namespace or the wiki must be known, or its page would pass for an article.
    Redirects in cycles, into cycles, or ending at a missing page are dropped and counted.
    """
    if stats is None:
        stats = RedirectStats()
    target_of_id: Dict[int, str] = {}
    leaves: set = set()  # ids of redirect pages that point outside the namespace or the wiki
    for row in redirect_rows:
        stats.redirects += 1
        if row.interwiki:
            stats.interwiki += 1
            leaves.add(row.from_id)
        elif row.namespace != namespace:
            stats.other_namespace += 1
            leaves.add(row.from_id)
        else:
            target_of_id[row.from_id] = row.title
    articles: set = set()
    target_of: Dict[str, str] = {}  # redirect title -> direct target title
    for page in page_rows:
        if page.namespace != namespace:
            continue
        target = target_of_id.pop(page.page_id, None)
        if target is not None:
            target_of[page.title] = target
        elif page.page_id not in leaves:
            articles.add(page.title)
    stats.missing_source += len(target_of_id)
    del target_of_id, leaves

    outcome: Dict[str, object] = {}
    hops: Dict[str, int] = {}
    for start in target_of:
        if start in outcome:
            continue
        path: List[str] = []
        on_path: set = set()
        current = start
        while True:
            if current in outcome:
                final, extra = outcome[current], hops.get(current, 0)
                break
            if current in on_path:
                final, extra = _CYCLE, 0
                if len(stats.cycle_examples) < 10:
                    stats.cycle_examples.append(current)
                break
            if current not in target_of:
                final, extra = (current if current in articles else _MISSING), 0
                break
            on_path.add(current)
            path.append(current)
            current = target_of[current]
        for distance, title in enumerate(reversed(path), 1):
            outcome[title] = final
            hops[title] = distance + extra
    result: Dict[str, str] = {}
    for title, final in outcome.items():
        if final is _CYCLE:
            stats.cycles += 1
        elif final is _MISSING:
            stats.missing_target += 1
        else:
            result[title] = final  # type: ignore[assignment]
            stats.resolved += 1
            if hops[title] > 1:
                stats.chained += 1
    return result


def read_redirect_map(
    page_path: PathLike,
    redirect_path: PathLike,
    *,
    namespace: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    strict: bool = False,
    stats: Optional[RedirectStats] = None,
) -> Dict[str, str]:
    """Redirect title -> final article title for one wiki, from its page.sql and redirect.sql dumps."""
    if stats is None:
        stats = RedirectStats()
    stats.page_stats, stats.redirect_stats = SqlStats(), SqlStats()
    redirects = iter_redirects(redirect_path, namespace=None, interwiki=True, chunk_size=chunk_size,
                               stats=stats.redirect_stats, strict=strict)
    pages = iter_pages(page_path, namespace=namespace, chunk_size=chunk_size, stats=stats.page_stats,
                       strict=strict)
    result = resolve_redirects(pages, redirects, namespace=namespace, stats=stats)
    logger.info("%s", stats.summary())
    return result
