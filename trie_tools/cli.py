"""The ``genre-trie`` command: build and inspect compiled prefix trees."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Iterator, List, Optional

from tqdm import tqdm

# fairseq logs INFO lines at import time (optional dependencies); keep this command's output clean.
logging.getLogger("fairseq").setLevel(logging.WARNING)

from genre_fairseq.prefix_tree import IDENTIFIER_FORMATS, MAGIC, PrefixTree, dictionary_fingerprint  # noqa: E402


class UsageError(Exception):
    """Bad input that ends the command with one line on stderr."""


def _tokenized_sequences(path: str, dictionary, progress: bool) -> Iterator[List[int]]:
    eos = dictionary.eos()
    unk = dictionary.unk()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(tqdm(f, desc="encoding", unit=" lines", disable=not progress), 1):
            symbols = line.split()
            if not symbols:
                continue
            ids = [dictionary.index(s) for s in symbols]
            if unk in ids:
                bad = symbols[ids.index(unk)]
                raise UsageError(f"{path}:{lineno}: symbol {bad!r} is not in the dictionary")
            yield [eos] + ids + [eos]


def cmd_build(args: argparse.Namespace) -> None:
    from fairseq.data import Dictionary

    try:
        dictionary = Dictionary.load(args.dict)
    except FileNotFoundError:
        raise UsageError(f"--dict {args.dict}: file not found") from None
    try:
        seqs = list(_tokenized_sequences(args.tokenized, dictionary, not args.quiet))
    except FileNotFoundError:
        raise UsageError(f"--tokenized {args.tokenized}: file not found") from None
    tree = PrefixTree.from_sequences(
        seqs,
        dictionary_fingerprint=dictionary_fingerprint(dictionary),
        start_token=dictionary.eos(),
        identifier_format=args.format,
    )
    tree.save(args.output)
    print(f"{args.output}: {len(tree)} sequences, {tree.num_nodes} nodes, {tree.nbytes()} bytes of arrays")


def cmd_inspect(args: argparse.Namespace) -> None:
    with open(args.file, "rb") as f:
        magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise UsageError(f"{args.file}: not a file genre-trie knows (magic {magic!r})")
    tree = PrefixTree.load(args.file, verify=True)
    print(f"kind: prefix tree\nfile: {args.file}")
    print(f"sequences: {len(tree)}\nnodes: {tree.num_nodes}")
    print(f"widths: offsets {tree.offsets.dtype.itemsize} B, tokens {tree.tokens.dtype.itemsize} B")
    print(f"dictionary fingerprint: {tree.dictionary_fingerprint}")
    print(f"start token: {tree.start_token}\nidentifier format: {tree.identifier_format}")
    for i, seq in enumerate(tree):
        if i >= args.samples:
            break
        print("  " + " ".join(map(str, seq)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genre-trie", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "build",
        help="compile identifiers into a prefix tree",
        description="Compile target-side identifiers into a prefix tree for fairseq-generate --trie. "
        "--tokenized takes one identifier per line, already split into dictionary symbols "
        "(the format of fairseq-preprocess input, e.g. a BPE-encoded train.target).",
    )
    p.add_argument("--tokenized", required=True, metavar="FILE", help="one identifier per line, space-separated dictionary symbols")
    p.add_argument("--dict", required=True, metavar="DICT", help="the model's target dictionary (dict.txt)")
    p.add_argument("--format", choices=IDENTIFIER_FORMATS, default=None, help="identifier format recorded in the tree header")
    p.add_argument("--output", required=True, metavar="KB.trie", help="where to write the tree")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("inspect", help="describe a tree file", description="Print a file's kind, version, counts, fingerprint and sample entries.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--samples", type=int, default=5, help="how many entries to print (default 5)")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ValueError, FileNotFoundError) as e:
        print(f"genre-trie {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
