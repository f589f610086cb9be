"""Turn a fairseq training checkpoint into the quickstart's shipped model directory.

Keeps what decoding needs and nothing else: the weights (in float16 with ``--fp16``: half the
bytes; fairseq copies them into the float32 model when loading), the model and task config (with
the training machine's paths replaced by placeholders), and the update count. Drops the optimizer
state (twice the weights again). Copies the dictionary (as dict.source.txt and dict.target.txt,
the official mGENRE layout), the SentencePiece model, the prefix tree and the name table, checks
that the tree was built for that dictionary and from that table, and writes MANIFEST.json (sizes,
SHA-256s, training summary).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_state(path: str, weights_only: bool = True) -> dict:
    """A fairseq checkpoint's state (on CPU); ``ValueError`` in one line for a file that is not one.
    ``weights_only=False`` unpickles any object: only for files this project ships."""
    import pickle

    import torch

    import genre_fairseq  # noqa: F401  (allow-lists the classes of fairseq checkpoints for torch.load)

    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: not a loadable fairseq checkpoint ({first})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{path}: not a loadable fairseq checkpoint (no model state)")
    return state


def strip_checkpoint(state: dict, dst: str, fp16: bool) -> dict:
    """Write the decoding-only checkpoint of ``state``; return a summary (updates, parameters, architecture)."""
    import torch

    # Shared embeddings appear under several keys as one tensor; convert each tensor once so that
    # torch.save still stores it once.
    converted, model = {}, {}
    for key, value in state["model"].items():
        ident = (value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
        if ident not in converted:
            converted[ident] = value.half() if fp16 and value.is_floating_point() else value
        model[key] = converted[ident]
    cfg = state["cfg"]
    # Paths of the training machine mean nothing elsewhere; the loaders override data, and
    # --user-dir / the hub import the plugin themselves.
    cfg["task"]["data"] = "."
    cfg["common"]["user_dir"] = None
    cfg["checkpoint"]["save_dir"] = "checkpoints"
    history = [{k: v for k, v in h.items() if k != "optimizer"} for h in state["optimizer_history"][-1:]]
    torch.save({"cfg": cfg, "model": model, "optimizer_history": history,
                "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}}, "args": None}, dst)
    params = sum(v.numel() for v in {id(model[k]): model[k] for k in model if not k.endswith("version")}.values())
    m = cfg["model"]
    get = (lambda key: m[key]) if isinstance(m, dict) else (lambda key: getattr(m, key))
    return {"updates": history[-1].get("num_updates"), "parameters": params, "fp16_weights": fp16,
            "arch": get("arch"), "embed_dim": get("encoder_embed_dim"), "ffn_dim": get("encoder_ffn_embed_dim"),
            "layers": [get("encoder_layers"), get("decoder_layers")], "heads": get("encoder_attention_heads")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="fairseq checkpoint (checkpoint_last.pt)")
    parser.add_argument("--work", required=True, help="train.sh's work directory (dict.txt, spm.model, cldr.trie, "
                        "cldr.names; cldr.mtrie, the mention tree, copied too when there)")
    parser.add_argument("--output", required=True, help="the model directory to write")
    parser.add_argument("--fp16", action="store_true", help="store the weights in float16")
    parser.add_argument("--info", default="{}", help="JSON object of training facts to record in MANIFEST.json")
    args = parser.parse_args(argv)
    logging.getLogger("fairseq").setLevel(logging.WARNING)  # its import-time INFO lines
    from fairseq.data import Dictionary

    from genre_fairseq.name_table import NameTable
    from genre_fairseq.outputs import check_output_dir
    from genre_fairseq.prefix_tree import PrefixTree
    from genre_fairseq.task import check_name_table, check_prefix_tree

    w = lambda name: os.path.join(args.work, name)  # noqa: E731
    try:
        for path in (args.checkpoint, *(w(name) for name in ("dict.txt", "spm.model", "cldr.trie", "cldr.names"))):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: file not found")
        tree, table = PrefixTree.load(w("cldr.trie")), NameTable.load(w("cldr.names"))
        dictionary = Dictionary.load(w("dict.txt"))
        check_prefix_tree(tree, dictionary, w("cldr.trie"), w("dict.txt"))
        check_name_table(table, tree, w("cldr.names"), w("cldr.trie"))
        extra = [name for name in ("cldr.mtrie",) if os.path.isfile(w(name))]
        for name in extra:  # the mention tree (train_e2e.sh): built for the same dictionary
            check_prefix_tree(PrefixTree.load(w(name)), dictionary, w(name), w("dict.txt"))
        copies = [("dict.txt", "dict.source.txt"), ("dict.txt", "dict.target.txt"), ("spm.model", "spm.model"),
                  ("cldr.trie", "cldr.trie"), ("cldr.names", "cldr.names"), *((n, n) for n in extra)]
        check_output_dir(args.output, "--output", [args.checkpoint, *(w(src) for src, _ in copies)],
                         files=["model.pt", "MANIFEST.json", *(dst for _, dst in copies)])
        info = json.loads(args.info)
        state = load_state(args.checkpoint)
    except (OSError, ValueError) as e:
        print(f"pack.py: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.output, exist_ok=True)
    model_info = strip_checkpoint(state, os.path.join(args.output, "model.pt"), args.fp16)
    for src, dst in copies:
        shutil.copyfile(w(src), os.path.join(args.output, dst))
    files = sorted(f for f in os.listdir(args.output) if f != "MANIFEST.json")
    manifest = {
        "model": model_info,
        "kb": {"entities": table.num_entities, "lang_name_pairs": len(table), "identifiers": tree.num_sequences,
               "meta": table.meta, "name_table_fingerprint": table.fingerprint,
               "dictionary_fingerprint": tree.dictionary_fingerprint},
        "training": info,
        "files": {f: {"bytes": os.path.getsize(os.path.join(args.output, f)),
                      "sha256": _sha256(os.path.join(args.output, f))} for f in files},
    }
    manifest["total_bytes"] = sum(v["bytes"] for v in manifest["files"].values())
    with open(os.path.join(args.output, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{args.output}: {len(files)} files, {manifest['total_bytes']:,} bytes; "
          f"{model_info['parameters']:,} parameters after {model_info['updates']} updates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
