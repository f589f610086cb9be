"""``python -m examples.quickstart``: link the sample sentences (or yours) with the shipped tiny mGENRE."""
import sys

from .link import main

sys.exit(main())
