"""Reader of a custom knowledge base: a UTF-8 TSV of ``entity_id<TAB>lang<TAB>name``, one name a line.

Lines starting with ``#`` and blank lines are skipped. Fields are stripped of surrounding
whitespace. A line with another number of fields, an empty field, or bytes that are not UTF-8 is
counted and reported with its line number, and so is a field holding a control character
(U+0000-U+001F, which no table stores); with ``strict=True`` it raises ``InputError`` (a
``ValueError``) naming file and line. The file may be gzip- or bzip2-compressed.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional

from ._io import InputError, PathLike, ReadStats, open_binary

__all__ = ["CustomKBStats", "InputError", "KBName", "iter_custom_kb"]

logger = logging.getLogger(__name__)

# C0 controls: no table field may hold one (genre_fairseq.name_table's rule); the tab separates fields.
_CONTROL = re.compile(r"[\x00-\x1f]")
_FIELDS = ("entity id", "language code", "name")


class KBName(NamedTuple):
    """One name of one entity in one language."""

    entity_id: str
    lang: str
    name: str


@dataclass
class CustomKBStats(ReadStats):
    """Counts of a custom KB read: `read` = non-comment, non-blank lines = kept + malformed."""

    comments: int = 0
    blank: int = 0


def iter_custom_kb(
    path: PathLike, *, strict: bool = False, stats: Optional[CustomKBStats] = None
) -> Iterator[KBName]:
    """Stream (entity_id, lang, name) triples from a custom knowledge-base TSV."""
    if stats is None:
        stats = CustomKBStats()
    stats.path = str(path)
    with open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, 1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark
                    raw = raw[3:]
                stripped = raw.strip()
                if not stripped:
                    stats.blank += 1
                    continue
                if stripped.startswith(b"#"):
                    stats.comments += 1
                    continue
                stats.read += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    stats.malformed += 1
                    stats.problem(lineno, f"not UTF-8: {err}", strict=strict)
                    continue
                fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
                if len(fields) != 3:
                    stats.malformed += 1
                    stats.problem(lineno, f"expected 3 tab-separated fields, got {len(fields)}", strict=strict)
                    continue
                if not all(fields):
                    stats.malformed += 1
                    stats.problem(lineno, "empty field", strict=strict)
                    continue
                bad = next((i for i, f in enumerate(fields) if _CONTROL.search(f)), None)
                if bad is not None:
                    char = _CONTROL.search(fields[bad]).group()
                    stats.malformed += 1
                    stats.problem(lineno, f"control character {char!r} in the {_FIELDS[bad]} {fields[bad]!r}",
                                  strict=strict)
                    continue
                stats.kept += 1
                yield KBName(*fields)
        finally:
            stats.log(logger)
