"""Output files of the commands: checked before the work starts, and written all or nothing.

``genre-trie``, ``genre-prepare`` and ``genre-evaluate`` share these rules (trie_tools uses this
module; it sits here because the dependency direction is trie_tools -> genre_fairseq):

* an output may not be one of the command's inputs, whatever the spelling (relative path,
  symlink, hard link): the run would destroy what it reads;
* an output that is a directory, or whose directory is missing, not a directory or not
  writable, is refused before any long work starts, so no work is lost to a bad path;
* an output is written to a temporary file in its own directory and renamed into place
  only when complete, so a failed or interrupted run leaves neither a partial file nor the
  temporary one (and the old file, if any, stays as it was).

Errors are :class:`OutputError` (a ``ValueError``) with one line naming the option and the path.
Standard output closed by its reader (``genre-trie inspect ... | head``) ends a command silently
with status 141, as a Unix tool killed by SIGPIPE (:func:`quiet_when_stdout_closes`).
No torch or fairseq here.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Callable, Iterable, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["OutputError", "check_output", "check_output_dir", "atomic_path", "os_error_line",
           "quiet_when_stdout_closes", "STDOUT_CLOSED"]

#: Exit status when the reader of standard output has gone (128 + SIGPIPE, what a shell reports
#: for a tool that SIGPIPE ended).
STDOUT_CLOSED = 141


class OutputError(ValueError):
    """An output path that cannot be used; the message names the option and the path."""


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_output(path: PathLike, option: str, inputs: Iterable[Optional[PathLike]] = ()) -> str:
    """Refuse ``path`` unless a regular file can be written there without touching an input; return it."""
    path = os.fspath(path)
    where = f"{option} {path}"
    if not path:
        raise OutputError(f"{option}: empty path")
    for given in inputs:
        if given is not None and _same_file(path, os.fspath(given)):
            raise OutputError(f"{where}: is also an input ({os.fspath(given)}); refusing to overwrite it")
    if os.path.isdir(path):
        raise OutputError(f"{where}: is a directory, expected a file path")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise OutputError(f"{where}: exists and is not a regular file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise OutputError(f"{where}: directory {parent} does not exist")
    if not os.path.isdir(parent):
        raise OutputError(f"{where}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: no permission to write in {parent}")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"{where}: no permission to overwrite the existing file")
    return path


def check_output_dir(path: PathLike, option: str, inputs: Iterable[Optional[PathLike]] = (),
                     files: Iterable[str] = ()) -> str:
    """Refuse a directory ``path`` that cannot be created or written, or whose ``files`` would replace an input."""
    path = os.fspath(path)
    where = f"{option} {path}"
    if not path:
        raise OutputError(f"{option}: empty path")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputError(f"{where}: exists and is not a directory")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the deepest ancestor that exists is where mkdir starts
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"{where}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: no permission to write in {existing}")
    given = [os.fspath(g) for g in inputs if g is not None]
    for name in files:
        target = os.path.join(path, name)
        for g in given:
            if _same_file(target, g):
                raise OutputError(f"{where}: would overwrite the input {g} (as {name}); choose another directory")
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """A temporary path next to ``path``, renamed onto it if the block succeeds and removed otherwise."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def os_error_line(error: OSError) -> str:
    """One line for an operating-system error: the path (or paths) and the cause."""
    cause = error.strerror or type(error).__name__
    names = [n for n in (error.filename, error.filename2) if n is not None]
    if not names:
        return str(error)
    return f"{' -> '.join(map(str, names))}: {cause}"


def quiet_when_stdout_closes(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a command's ``main``: a BrokenPipeError (the reader of standard output has gone, as
    with ``| head``) ends it with :data:`STDOUT_CLOSED`, with no message and no traceback.

    The commands' own ``except OSError`` clauses let BrokenPipeError through to here. Standard
    output is pointed at /dev/null first, so that the interpreter's final flush does not fail again.
    """

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except BrokenPipeError:
            if sys.stdout is sys.__stdout__:  # the process's own stdout (not one a test put in its place)
                try:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                except (OSError, ValueError):
                    pass
            return STDOUT_CLOSED

    return wrapper
