"""Opening dump files whatever their compression, and the counters that dump readers keep."""
from __future__ import annotations

import bz2
import gzip
import logging
import os
from dataclasses import dataclass, field, fields
from typing import BinaryIO, ClassVar, List, Tuple, Union

PathLike = Union[str, "os.PathLike[str]"]

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"


def open_binary(path: PathLike) -> BinaryIO:
    """Open a plain, gzip or bzip2 file for binary reading, judging the format by its first bytes."""
    # The magic bytes, not the suffix, decide: dumps get renamed, and a wrong guess
    # would otherwise surface as a confusing parse error far away from the cause.
    with open(path, "rb") as fh:
        magic = fh.read(3)
    if magic.startswith(_GZIP_MAGIC):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic == _BZIP2_MAGIC:
        return bz2.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


class InputError(ValueError):
    """Malformed input met in strict mode; the message starts with `file:line:`."""


@dataclass
class ReadStats:
    """Counts of what a dump reader saw; the first few malformed lines are kept as (line, reason)."""

    path: str = ""
    read: int = 0
    kept: int = 0
    malformed: int = 0
    examples: List[Tuple[int, str]] = field(default_factory=list)

    MAX_EXAMPLES: ClassVar[int] = 10

    @property
    def malformed_lines(self) -> list[int]:
        """Line numbers (1-based) of the first few problems recorded."""
        return [line for line, _ in self.examples]

    def problem(self, line: int, reason: str, *, strict: bool = False) -> None:
        """Record one problem at `line` (counters are the caller's job); raise InputError if strict."""
        if strict:
            raise InputError(f"{self.path}:{line}: {reason}")
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append((line, reason))

    def counts(self) -> dict[str, int]:
        """All integer counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), int)}

    def summary(self) -> str:
        """One human-readable line: the counters, then where the first problems are."""
        text = f"{self.path}: " + ", ".join(f"{k}={v:,}" for k, v in self.counts().items())
        if self.examples:
            text += "; first problems: " + "; ".join(
                f"{self.path}:{line} ({reason})" for line, reason in self.examples
            )
        return text

    def log(self, logger: logging.Logger) -> None:
        """Log the summary, as a warning when problems were recorded."""
        level = logging.WARNING if self.examples else logging.INFO
        logger.log(level, "%s", self.summary())
