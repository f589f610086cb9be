"""genre_fairseq: generative entity linking (GENRE / mGENRE) as a fairseq plugin.

Loaded by ``fairseq-train/-generate/-interactive --user-dir genre_fairseq``; importing it
registers the ``genre`` task and the architecture presets, and allow-lists the classes
fairseq checkpoints need so they load on torch >= 2.6 without executing pickled code.
"""

from . import checkpoints  # noqa: F401

checkpoints.allow_fairseq_checkpoint_globals()

from . import models, search, task  # noqa: E402,F401
from . import criterions, distributed, iterators  # noqa: E402,F401

__version__ = "0.1.0"
