"""``python -m examples.quickstart``: link the sample sentences (or yours) with the shipped tiny mGENRE."""
import os
import sys

# One torch thread unless told otherwise: on a busy 2-core machine the default (one per core)
# made decoding 17 s instead of 1.5 s. Set before .link imports torch; OMP_NUM_THREADS overrides it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from .link import main  # noqa: E402

sys.exit(main())
