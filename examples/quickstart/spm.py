"""The quickstart's SentencePiece model and fairseq dictionary: train them, and encode text with them.

  python spm.py train --input names.txt train.source train.target --prefix OUT/spm --vocab-size 8000
      -> OUT/spm.model and OUT/dict.txt (every piece of the model, so any KB name encodes)
  python spm.py encode --model OUT/spm.model < text > pieces

Training settings, and why: ``character_coverage=1.0`` keeps every character of the KB's names
(CJK included), so no name maps to ``<unk>``; ``normalization_rule_name=identity`` keeps decoded
text byte-identical to the names (NFKC would change some, and the name table looks names up
exactly); ``[START]`` and ``[END]`` are user-defined symbols, single pieces that are never split.
"""
from __future__ import annotations

import argparse
import os
import sys


def train(inputs, prefix: str, vocab_size: int) -> str:
    """Train ``prefix.model`` on the input files and write the fairseq dictionary next to it."""
    import sentencepiece as spm

    for path in inputs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: file not found")
    spm.SentencePieceTrainer.Train(
        input=",".join(inputs), model_prefix=prefix, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, normalization_rule_name="identity", user_defined_symbols=["[START]", "[END]"],
        input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=2, minloglevel=2)
    processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
    dict_path = os.path.join(os.path.dirname(prefix) or ".", "dict.txt")
    with open(dict_path, "w", encoding="utf-8") as f:
        # fairseq adds <s>, <pad>, </s>, <unk> itself; the model's control and unknown pieces are left out.
        for i in range(processor.GetPieceSize()):
            if not (processor.IsControl(i) or processor.IsUnknown(i)):
                f.write(f"{processor.IdToPiece(i)} 1\n")
    return dict_path


def encode(model: str, lines, out) -> None:
    """Write each input line as space-separated pieces (what fairseq-preprocess reads)."""
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=model)
    for line in lines:
        out.write(" ".join(processor.EncodeAsPieces(line.rstrip("\n"))) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the SentencePiece model and write dict.txt next to it")
    p.add_argument("--input", nargs="+", required=True, help="text files, one sentence a line")
    p.add_argument("--prefix", required=True, help="output prefix: PREFIX.model, PREFIX.vocab")
    p.add_argument("--vocab-size", type=int, default=8000)
    p = sub.add_parser("encode", help="stdin text -> stdout pieces")
    p.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            dict_path = train(args.input, args.prefix, args.vocab_size)
            print(f"{args.prefix}.model, {dict_path}: {sum(1 for _ in open(dict_path, encoding='utf-8'))} pieces")
        else:
            if not os.path.isfile(args.model):
                raise FileNotFoundError(f"--model {args.model}: file not found")
            encode(args.model, sys.stdin, sys.stdout)
    except (OSError, RuntimeError) as e:
        print(f"spm.py {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
