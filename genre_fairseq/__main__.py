"""``python -m genre_fairseq --user-dir``: print the directory to give fairseq's ``--user-dir``.

It works from any directory and after a non-editable install, e.g.
``fairseq-generate DATA --user-dir "$(python -m genre_fairseq --user-dir)" --task genre ...``.
"""

import argparse
import sys
from typing import List, Optional

from . import PLUGIN_DIR, __version__


def main(argv: Optional[List[str]] = None) -> int:
    """Print the plugin directory (``--user-dir``) or the version."""
    parser = argparse.ArgumentParser(prog="python -m genre_fairseq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--user-dir", action="store_true", help="print the directory for fairseq's --user-dir")
    parser.add_argument("--version", action="version", version=f"genre_fairseq {__version__}")
    args = parser.parse_args(argv)
    if not args.user_dir:
        parser.print_help(sys.stderr)
        return 2
    print(PLUGIN_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
