"""Opening dump files whatever their compression, and the counters that dump readers keep."""
from __future__ import annotations

import bz2
import gzip
import io
import logging
import os
import zlib
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
        return io.BufferedReader(_Checked(gzip.open(path, "rb"), path, "gzip"), 1 << 20)
    if magic == _BZIP2_MAGIC:
        return io.BufferedReader(_Checked(bz2.open(path, "rb"), path, "bzip2"), 1 << 20)
    return open(path, "rb", buffering=1 << 20)


class _Checked(io.RawIOBase):
    """A decompressing stream whose truncation or corruption is an ``InputError`` naming the file."""

    def __init__(self, stream: BinaryIO, path: PathLike, kind: str) -> None:
        self._stream, self._path, self._kind = stream, os.fspath(path), kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._stream.readinto(buffer)
        except EOFError:
            raise InputError(f"{self._path}: truncated {self._kind} file (it ends before its end-of-stream marker)") from None
        except (OSError, zlib.error) as e:
            raise InputError(f"{self._path}: corrupt {self._kind} data ({e})") from None

    def close(self) -> None:
        self._stream.close()
        super().close()


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
