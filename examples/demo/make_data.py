"""Write the demo's synthetic entity-linking data: sentences with a marked mention -> 'name >> lang'.

The knowledge base is 16 identifiers (8 made-up names in 2 languages); sentences are random filler
words around ``[START] name [END]``, followed by the language code. Deterministic given --seed.
"""

import argparse
import os
import random

NAMES = ["al be", "al ce", "be do", "ce ce fa", "do", "fa al", "ge be do", "ha"]
LANGS = ["en", "de"]
FILLER = ["the", "a", "of", "in", "with", "and", "to", "is"]


def sentence(rng: random.Random, name: str, lang: str) -> str:
    """One source line: filler, the marked mention, filler, the language code."""
    left = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
    right = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
    return " ".join(left + ["[START]", name, "[END]"] + right + [lang])


def write_split(prefix: str, n: int, rng: random.Random) -> None:
    """Write ``prefix.source`` and ``prefix.target`` with ``n`` examples."""
    src, tgt = [], []
    for _ in range(n):
        name, lang = rng.choice(NAMES), rng.choice(LANGS)
        src.append(sentence(rng, name, lang))
        tgt.append(f"{name} >> {lang}")
    with open(prefix + ".source", "w", encoding="utf-8") as f:
        f.write("\n".join(src) + "\n")
    with open(prefix + ".target", "w", encoding="utf-8") as f:
        f.write("\n".join(tgt) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("outdir", help="directory to write train/valid/test.{source,target} and kb.txt into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=400, help="training examples (default 400)")
    parser.add_argument("--test", type=int, default=12, help="test examples (default 12)")
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    rng = random.Random(args.seed)
    for split, n in (("train", args.train), ("valid", 40), ("test", args.test)):
        write_split(os.path.join(args.outdir, split), n, rng)
    with open(os.path.join(args.outdir, "kb.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{name} >> {lang}\n" for name in NAMES for lang in LANGS))


if __name__ == "__main__":
    main()
