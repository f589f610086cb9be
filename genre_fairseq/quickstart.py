"""``genre-quickstart``: the README's main job, ``python -m examples.quickstart``, from any directory.

``python -m examples.quickstart`` finds the ``examples`` directory only when run from the
repository root. This command finds it next to the installed package (a source checkout installed
with ``pip install -e .``), so it runs from anywhere, with the same options and output. The
examples are not part of a wheel: there it says so in one line and exits with status 2.
"""
import importlib.util
import os
import sys
from typing import List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = os.path.join(ROOT, "examples", "quickstart", "link.py")


def main(argv: Optional[List[str]] = None) -> int:
    if not os.path.isfile(LINK):
        print(f"genre-quickstart: {LINK} not found: the quickstart ships with the source checkout "
              f"(install it with pip install -e .), not with the package alone", file=sys.stderr)
        return 2
    # one torch thread unless told otherwise, as python -m examples.quickstart (set before torch loads)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    spec = importlib.util.spec_from_file_location("genre_fairseq._quickstart_link", LINK)
    link = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(link)
    return link.main(argv, prog="genre-quickstart")


if __name__ == "__main__":
    sys.exit(main())
