"""genre_fairseq: generative entity linking (GENRE / mGENRE) as a fairseq plugin.

Importing the package, or one of its formats (``prefix_tree``, ``name_table``, ``identifiers``),
imports neither fairseq nor torch: ``genre-trie`` and the readers start in a fraction of a second.

The fairseq side is loaded by :func:`register`: the ``genre`` task, the ``genre_marginal``
criterion and the architecture presets. fairseq's ``--user-dir`` imports this package after
fairseq itself, so the package calls :func:`register` when it finds fairseq already imported;
``import genre_fairseq.task`` (what the hub does) registers too. A program that imported the
package *before* fairseq and then runs a fairseq command in the same process calls
:func:`register` itself.

The fixes to fairseq that change process-wide state are applied by :func:`apply_fairseq_fixes`,
which the ``genre`` task calls when fairseq builds it (training, generation), not on import:
torch's allow-list for checkpoints, the broadcast of checkpoints to other ranks, the exit
handler of the prefetch thread, and memory-mapped reads in fairseq's model loading
(``fairseq-generate --path``). docs/training.md says what each one changes and why.
"""

import os
import sys

__version__ = "0.1.0"

#: The directory to give fairseq's ``--user-dir``; ``python -m genre_fairseq --user-dir`` prints it.
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


def register() -> None:
    """Register the genre task, criterion and architecture presets with fairseq (idempotent)."""
    from . import criterions, models, task  # noqa: F401  (their decorators register them)
    from .checkpoints import allow_fairseq_checkpoint_globals
    from .distributed import patch_fairseq_torchrun_detection

    # Both must precede the task: fairseq detects the launcher before it builds any task, and
    # fairseq-validate (and --task translation with our presets) loads a checkpoint first.
    patch_fairseq_torchrun_detection()
    allow_fairseq_checkpoint_globals()


def apply_fairseq_fixes() -> None:
    """Apply the fixes to fairseq's checkpoint loading, broadcast and exit (idempotent)."""
    from .checkpoints import allow_fairseq_checkpoint_globals
    from .distributed import patch_fairseq_broadcast_object
    from .iterators import register_exit_handler
    from .loading import map_fairseq_model_loads

    allow_fairseq_checkpoint_globals()
    patch_fairseq_broadcast_object()
    register_exit_handler()
    map_fairseq_model_loads()


if "fairseq" in sys.modules:  # imported by fairseq (--user-dir), or by a program that uses fairseq
    register()
