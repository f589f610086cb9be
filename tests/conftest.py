"""Suite-wide settings: one torch thread per process unless the caller chose otherwise.

The tests' models are tiny, and many tests run two processes at once (training side by side,
torchrun's two ranks, ``cldr_mel --jobs 2``) on CI's two cores: torch's default of one thread per
core then oversubscribes the cores and spins. Most subprocesses of the suite already set
``OMP_NUM_THREADS=1``; this makes it the default for the rest and for the test process itself
(the environment is read when torch is imported; a torch imported earlier is set directly).
An ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` given by the caller is kept.
"""

import os
import sys

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

if "torch" in sys.modules and os.environ["OMP_NUM_THREADS"] == "1":
    sys.modules["torch"].set_num_threads(1)
