"""Start the end-to-end model from the shipped linking model: its dictionary and weights with the markup symbols added.

GENRE's end-to-end model starts from a pretrained model too (BART). Here the start is the
quickstart's own linking model (``examples/quickstart/model``), which already writes ``name >> lang``
identifiers: this script appends the four markup symbols ``▁{ ▁} ▁[ ▁]`` to its dictionary
(``--dict-out``; the SentencePiece model has no single piece for them, so no source token is ever
one of them) and four embedding rows, drawn as fairseq initializes embeddings (normal, standard
deviation dim ** -0.5, seeded), to its embedding matrices (shared by encoder, decoder and output
projection), and writes a checkpoint that ``fairseq-train --restore-file`` accepts with
``--reset-optimizer``. Appending keeps every old id, so the old rows keep their meaning.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # pack.py's load_state
MARKUP = ("\u2581{", "\u2581}", "\u2581[", "\u2581]")
EMBEDDINGS = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")


def extend(model_dir: str, checkpoint_out: str, dict_out: str, seed: int = 1, copy_rows=None) -> int:
    """Write the extended dictionary and checkpoint; return the new dictionary size.

    ``copy_rows`` (four existing symbols) makes the new rows copies of those symbols' rows instead
    of random ones: the tests' untrained start, which then does mark some mentions."""
    import torch
    from genre_fairseq.dictionary import SymbolDictionary
    from genre_fairseq.outputs import check_output

    from pack import load_state

    dict_in, model_in = os.path.join(model_dir, "dict.target.txt"), os.path.join(model_dir, "model.pt")
    check_output(checkpoint_out, "--checkpoint-out", [dict_in, model_in, dict_out])
    check_output(dict_out, "--dict-out", [dict_in, model_in])
    old = SymbolDictionary.load(dict_in)
    n_old = len(old.symbols)
    present = [s for s in MARKUP if s in old.indices]
    if present:
        raise ValueError(f"{dict_in}: already has {' '.join(present)} (is it an end-to-end model?)")
    size = n_old + len(MARKUP)
    state = load_state(model_in, weights_only=False)  # the shipped linking model, as before
    generator = torch.Generator().manual_seed(seed)
    new_rows = None
    for key in EMBEDDINGS:
        weight = state["model"].get(key)
        if weight is None:
            continue
        if weight.size(0) != n_old:
            raise ValueError(f"{model_in}: {key} has {weight.size(0)} rows, the dictionary {n_old}")
        if new_rows is None and copy_rows is not None:
            new_rows = weight[[old.index(s) for s in copy_rows]].float()
        elif new_rows is None:
            dim = weight.size(1)
            new_rows = torch.randn(len(MARKUP), dim, generator=generator) * dim ** -0.5
        state["model"][key] = torch.cat([weight.float(), new_rows], dim=0)
    state["model"] = {k: (v.float() if v.is_floating_point() else v) for k, v in state["model"].items()}
    # written only once the checkpoint has been read and checked: a bad input leaves no output
    with open(dict_in, encoding="utf-8") as f:
        lines = f.read()
    with open(dict_out, "w", encoding="utf-8") as f:
        f.write(lines if lines.endswith("\n") else lines + "\n")
        f.writelines(f"{s} 1\n" for s in MARKUP)
    torch.save(state, checkpoint_out)
    return size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=os.path.join(HERE, "model"), help="the linking model (default: the shipped one)")
    parser.add_argument("--checkpoint-out", required=True, help="the checkpoint to write (for --restore-file)")
    parser.add_argument("--dict-out", required=True, help="the dictionary with the markup symbols appended")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.getLogger("fairseq").setLevel(logging.WARNING)
    try:
        size = extend(args.model_dir, args.checkpoint_out, args.dict_out, args.seed)
    except (OSError, ValueError) as e:
        print(f"extend_model.py: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.checkpoint_out}: {args.model_dir}'s model with {' '.join(MARKUP)} appended ({size:,} symbols)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
