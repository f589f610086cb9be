"""Run a console script of this environment (``fairseq-generate``, ``genre-trie``, ...) in the test process.

A subprocess spends 5-10 s importing torch and fairseq before it does anything; the test process
has imported them already. :func:`run` calls the script's entry point (the ``console_scripts``
entry of its package, what the script in ``bin/`` calls) with ``sys.argv`` set, stdin, stdout and
stderr replaced, and returns what :func:`subprocess.run` would: a ``CompletedProcess`` with the
exit status and the text written. What the interpreter does at the end of a script is done here
the same way: ``SystemExit`` gives the status, and an uncaught exception goes to
``sys.excepthook`` (the genre task installs its one-line hook there, as in the real process), whose
``SystemExit`` is the status, else the traceback is printed and the status is 1.

The rest of a fresh process is imitated where the commands' output depends on it: fairseq's
commands log (INFO and up, fairseq's format) to stdout, other programs' warnings go to stderr;
torch uses one thread, as the tests'
subprocesses (``OMP_NUM_THREADS=1``); the random generators (``random``, numpy, torch) are
restored afterwards, so that a command seeding them does not change later tests.
What a real process alone proves (the script in ``bin/``, the excepthook reached from the
interpreter, no traceback on a real stderr) stays with the few tests that still use
:func:`subprocess.run`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import subprocess
import sys
from importlib import import_module
from importlib.metadata import entry_points
from typing import Callable, Optional, Sequence

_LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


def _entry_point(command: str):
    """The function the console script calls, and the name of its module."""
    found = list(entry_points(group="console_scripts", name=command))
    if not found:
        raise LookupError(f"{command}: no console script of that name in this environment")
    module, _, attr = found[0].value.partition(":")
    target = import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    return target, module


@contextlib.contextmanager
def _fresh_process_state(stdout, stderr, fairseq_logging: bool):
    """One torch thread, the process's logging, random states restored on exit.

    fairseq's commands configure logging: INFO and up, their format, to stdout. Any other program
    leaves it alone: WARNING and up, the bare message, to stderr (Python's last-resort handler).
    """
    import numpy as np
    import torch

    threads = torch.get_num_threads()
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    root = logging.getLogger()
    level = root.level
    if fairseq_logging:
        handler = logging.StreamHandler(stdout)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        handler.setLevel(logging.INFO)
        root.setLevel(logging.INFO)
    else:
        handler = logging.StreamHandler(stderr)
        handler.setLevel(logging.WARNING)
    root.addHandler(handler)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        root.removeHandler(handler)
        root.setLevel(level)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _status(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): the interpreter prints it, status 1
    return 1


def run(command: str, args: Sequence[object], input: Optional[str] = None) -> subprocess.CompletedProcess:
    """``subprocess.run([command, *args], input=input, capture_output=True, text=True)``, in this process."""
    main, module = _entry_point(command)
    return call(main, [command] + [str(a) for a in args], input, fairseq_logging=module.startswith("fairseq_cli."))


def call(main: Callable[[], object], argv: Sequence[str], input: Optional[str] = None,
         fairseq_logging: bool = False) -> subprocess.CompletedProcess:
    """A program whose ``__main__`` is ``sys.exit(main())``, run with ``sys.argv = argv``, as :func:`run` does."""
    argv = list(argv)
    if "--user-dir" in argv:
        # fairseq imports a --user-dir only once per process: when the test imported the package before
        # fairseq, its import did not register the task; register() is what that import does
        import genre_fairseq

        genre_fairseq.register()
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_argv, saved_stdin = sys.argv, sys.stdin
    sys.argv, sys.stdin = list(argv), io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), \
                _fresh_process_state(stdout, stderr, fairseq_logging):
            try:
                returncode = _status(main())
            except SystemExit as e:
                returncode = _status(e.code)
            except Exception as e:  # noqa: BLE001  (what the interpreter does with an uncaught exception)
                try:
                    sys.excepthook(type(e), e, e.__traceback__)
                    returncode = 1
                except SystemExit as hooked:
                    returncode = _status(hooked.code)
    finally:
        sys.argv, sys.stdin = saved_argv, saved_stdin
    return subprocess.CompletedProcess(argv, returncode, stdout.getvalue(), stderr.getvalue())
