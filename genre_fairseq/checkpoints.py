"""Let fairseq load its checkpoints on torch >= 2.6 without giving up ``weights_only``.

fairseq 0.12's ``checkpoint_utils.load_checkpoint_to_cpu`` calls ``torch.load(f, map_location=...)``.
Since torch 2.6 that means ``weights_only=True``: the restricted unpickler accepts tensors,
containers and primitives only, and refuses every other pickled global. fairseq checkpoints carry a
few plain-data objects besides tensors, so they fail to load. The reference GENRE code's only way out
was ``weights_only=False``, which runs whatever a checkpoint's pickle asks for.
:func:`allow_fairseq_checkpoint_globals` instead adds exactly the classes fairseq checkpoints need
to torch's allow-list; a checkpoint naming any other global is still refused before anything runs.

When: the list is process-wide (torch has no per-call list for fairseq's own ``torch.load``), so it
is added only where fairseq loads checkpoints with the plugin: when fairseq loads the plugin
(``genre_fairseq.register``, what ``--user-dir`` triggers), when it builds the ``genre`` task
(``genre_fairseq.apply_fairseq_fixes``), and by the hub's loader. Importing the package or one of
its formats leaves torch's list as it was.

What is on the list, and why (each entry was seen in a real checkpoint, except where marked):

``argparse.Namespace``
    Every checkpoint fairseq 0.12 writes for a model configured by command-line flags (``bart``,
    ``transformer``, all our presets) stores that model's flags as a Namespace in ``cfg["model"]``;
    checkpoints written before fairseq 0.10, and the official GENRE and mGENRE ones, store all flags
    as a Namespace in ``args``. Unpickling one creates an empty Namespace and fills its ``__dict__``.

``numpy.ndarray``, ``numpy._core.multiarray._reconstruct`` (also under its numpy 1.x name
``numpy.core.multiarray._reconstruct``), ``numpy.dtype`` and the classes of the numeric dtypes
    Training with ``--eval-bleu`` logs BLEU n-gram counts as numpy arrays, and fairseq keeps them in
    ``extra_state["metrics"]``. ``_reconstruct`` allocates an empty array of a given ndarray subtype
    (only ``ndarray`` is allowed), ``ndarray.__setstate__`` copies raw bytes into it, ``numpy.dtype``
    parses a type code such as ``"i8"``. The dtype classes (``Int64DType`` ...) are needed because
    torch checks the type of the object whose state it sets. Only bool, integer and float dtypes
    are listed: object, string, void and datetime dtypes are refused.

``numpy._core.multiarray.scalar`` (also as ``numpy.core.multiarray.scalar``) — defensive, not seen
    A numpy scalar (e.g. a ``numpy.float64`` validation score in ``extra_state["best"]``) pickles as
    this function applied to a dtype and its raw bytes. fairseq 0.12 did not write one in our runs;
    older trainers and custom metrics may. It only copies bytes into a scalar of a numeric dtype.

Not on the list: ``collections.OrderedDict`` (torch allows it already); fairseq meters (fairseq >= 0.10
saves meter state as tuples of plain values, the meter class only by name; older trainers pickled
``fairseq.meters`` objects, a module fairseq 0.12 no longer has, so such checkpoints cannot load anyway);
OmegaConf containers (fairseq converts its config to plain dicts before saving).
"""
import argparse
from collections.abc import Callable
from typing import Union

import numpy
import torch

SafeGlobal = Union[Callable, tuple[Callable, str]]

# Type codes of the dtypes a numpy array or scalar in a checkpoint may have: bool, signed and
# unsigned integers, floats. Each code is parsed by numpy, so platform aliases come out the same.
_NUMERIC_DTYPE_CODES = ("?", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8")


def _numpy_multiarray():
    """Return numpy's multiarray module (``numpy._core`` since numpy 2, ``numpy.core`` before)."""
    core = getattr(numpy, "_core", None)
    if core is None or not hasattr(core, "multiarray"):
        core = numpy.core
    return core.multiarray


def fairseq_checkpoint_globals() -> list[SafeGlobal]:
    """Return the classes and functions fairseq checkpoints need, for ``add_safe_globals``."""
    multiarray = _numpy_multiarray()
    entries: list[SafeGlobal] = [argparse.Namespace, numpy.ndarray, numpy.dtype]
    # A pickle names a function by the module path it had when saved: numpy 2 writes
    # numpy._core.multiarray, numpy 1.x wrote numpy.core.multiarray. Both names map to one function.
    for function in (multiarray._reconstruct, multiarray.scalar):
        for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
            entries.append((function, f"{module}.{function.__name__}"))
    entries.extend(type(numpy.dtype(code)) for code in _NUMERIC_DTYPE_CODES)
    return entries


def allow_fairseq_checkpoint_globals() -> None:
    """Allow-list the globals in :func:`fairseq_checkpoint_globals` for ``torch.load``; idempotent."""
    if not hasattr(torch.serialization, "add_safe_globals") or torch.__version__ < (2, 6):
        # Before 2.6 torch.load defaults to weights_only=False and fairseq loads as it always did;
        # add_safe_globals also accepts (function, name) pairs only from 2.6 on.
        return
    present = torch.serialization.get_safe_globals()
    missing = [entry for entry in fairseq_checkpoint_globals() if entry not in present]
    if missing:
        torch.serialization.add_safe_globals(missing)
