"""``python -m genre_fairseq --user-dir``: print the directory to give fairseq's ``--user-dir``.

It works from any directory and after a non-editable install, e.g.
``fairseq-generate DATA --user-dir "$(python -m genre_fairseq --user-dir)" --task genre ...``.
``--task-options`` lists the options the ``genre`` task adds to fairseq's translation task
(fairseq's ``--help`` exits before it adds any task's options).
"""

import argparse
import dataclasses
import sys
from typing import List, Optional

from . import PLUGIN_DIR, __version__


def main(argv: Optional[List[str]] = None) -> int:
    """Print the plugin directory (``--user-dir``) or the version."""
    parser = argparse.ArgumentParser(prog="python -m genre_fairseq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--user-dir", action="store_true", help="print the directory for fairseq's --user-dir")
    parser.add_argument("--task-options", action="store_true",
                        help="list the options of the genre task (beyond fairseq's translation task)")
    parser.add_argument("--version", action="version", version=f"genre_fairseq {__version__}")
    args = parser.parse_args(argv)
    if args.task_options:
        print(task_options())
        return 0
    if not args.user_dir:
        parser.print_help(sys.stderr)
        return 2
    print(PLUGIN_DIR)
    return 0


def task_options() -> str:
    """The genre task's own options, one ``--flag (default: X)`` line and its help each."""
    from fairseq.tasks.translation import TranslationConfig

    from .task import GenreConfig

    inherited = {f.name for f in dataclasses.fields(TranslationConfig)}
    lines = []
    for f in dataclasses.fields(GenreConfig):
        if f.name in inherited:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        lines.append(f"--{f.name.replace('_', '-')} (default: {default})")
        lines.append(f"    {f.metadata.get('help', '')}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
