"""The shipped quickstart mGENRE with the four end-to-end markup symbols appended (for the end-to-end tests).

The quickstart model has no single ``▁{`` piece. A copy of its directory gets ``▁{ ▁} ▁[ ▁]``
appended to both dictionaries, four embedding rows appended to its checkpoint (copies of
existing rows, so that the model does mark some mentions), and its entity tree re-stamped with
the new dictionary's fingerprint (appending symbols keeps every old id, so its sequences stand).
"""

import os
import shutil

import torch

from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "examples", "quickstart", "model")
MARKUP = ["\u2581{", "\u2581}", "\u2581[", "\u2581]"]
#: the existing pieces whose embedding rows the markup symbols copy
ROW_SOURCES = ["\u2581", ">", "\u2581>>", "."]


def extended_quickstart(directory: str) -> str:
    """Write the extended model directory (model.pt, dict.*.txt, spm.model, cldr.trie, cldr.names); return it."""
    from fairseq.data import Dictionary

    os.makedirs(directory, exist_ok=True)
    for name in ("spm.model", "cldr.names"):
        shutil.copy(os.path.join(QUICKSTART, name), os.path.join(directory, name))
    lines = open(os.path.join(QUICKSTART, "dict.target.txt"), encoding="utf-8").read()
    for side in ("source", "target"):
        with open(os.path.join(directory, f"dict.{side}.txt"), "w", encoding="utf-8") as f:
            f.write(lines + "".join(f"{s} 1\n" for s in MARKUP))
    old = Dictionary.load(os.path.join(QUICKSTART, "dict.target.txt"))
    new = Dictionary.load(os.path.join(directory, "dict.target.txt"))
    state = torch.load(os.path.join(QUICKSTART, "model.pt"), map_location="cpu", weights_only=False)  # shipped file
    rows = [old.index(s) for s in ROW_SOURCES]
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight"):
        weight = state["model"][key]
        assert weight.size(0) == len(old), (key, weight.shape)
        state["model"][key] = torch.cat([weight, weight[rows]], dim=0)
    torch.save(state, os.path.join(directory, "model.pt"))
    tree = PrefixTree.load(os.path.join(QUICKSTART, "cldr.trie"))
    PrefixTree.from_sequences(list(tree), dictionary_fingerprint=dictionary_fingerprint(new),
                              start_token=tree.start_token, identifier_format=tree.identifier_format,
                              name_table_fingerprint=tree.name_table_fingerprint).save(os.path.join(directory, "cldr.trie"))
    return directory
