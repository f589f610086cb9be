"""A fix to fairseq 0.12's prefetching iterator: stop its thread before the interpreter exits.

fairseq wraps every epoch's batches in ``BufferedIterator`` (``--data-buffer-size``, default 10),
whose ``BackgroundConsumer`` is a *daemon* thread that collates the next batches with torch. When
``fairseq-train`` returns while that thread is inside a torch operation (which releases the GIL),
the thread wakes up during interpreter finalization, Python ends it with ``pthread_exit``, the
forced unwind crosses torch's ``noexcept`` C++ frames, and the process dies with
``terminate called without an active exception`` (SIGABRT, exit code 134 / -6) *after* training
finished and the checkpoint was saved. It happens when the run stops mid-epoch (``--max-update``)
and the machine is busy enough that the prefetch is still running: a rare, timing-dependent failure
of every script that checks the exit code.

:func:`stop_prefetch_threads`, registered with :mod:`atexit` by :func:`register_exit_handler` when
the ``genre`` task is built (``genre_fairseq.apply_fairseq_fixes``; not on import, so that a program
importing the package keeps its own exit; atexit handlers run before finalization and after
non-daemon threads were joined), tells each live
consumer to stop after the item it is making, empties its queue so that it never blocks, and joins
it. Nothing of the training is changed.
"""

import atexit
import logging
import queue
import threading
import time

logger = logging.getLogger(__name__)


def _empty(q: "queue.Queue") -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def stop_prefetch_threads(timeout: float = 60.0) -> int:
    """Stop and join fairseq's live ``BackgroundConsumer`` threads; returns how many were stopped."""
    try:
        from fairseq.data.iterators import BackgroundConsumer
    except ImportError:  # pragma: no cover - fairseq is a dependency
        return 0
    deadline = time.monotonic() + timeout
    stopped = 0
    for thread in threading.enumerate():
        if not isinstance(thread, BackgroundConsumer) or not thread.is_alive():
            continue
        # its loop breaks once count >= _max_len, i.e. right after the next item is queued
        thread._max_len = 0
        while thread.is_alive() and time.monotonic() < deadline:
            _empty(thread._queue)
            thread.join(0.05)
        if thread.is_alive():
            logger.warning("fairseq's prefetch thread did not stop within %.0f s", timeout)
        else:
            stopped += 1
    return stopped


_registered = False


def register_exit_handler() -> None:
    """Run :func:`stop_prefetch_threads` when the interpreter exits (idempotent)."""
    global _registered
    if not _registered:
        atexit.register(stop_prefetch_threads)
        _registered = True
