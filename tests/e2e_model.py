"""The shipped quickstart mGENRE with the four end-to-end markup symbols appended (for the end-to-end tests).

The quickstart model has no single ``▁{`` piece. A copy of its directory gets ``▁{ ▁} ▁[ ▁]``
appended to both dictionaries, four embedding rows appended to its checkpoint (copies of
existing rows, so that the model does mark some mentions; extend_model.py writes them), and its entity tree re-stamped with
the new dictionary's fingerprint (appending symbols keeps every old id, so its sequences stand).
"""

import os
import shutil
import sys

import torch
from fairseq.models import FairseqEncoderDecoderModel, FairseqIncrementalDecoder

from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
from tests.toy import _SourceIdEncoder  # passes the source tokens through

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "examples", "quickstart", "model")
sys.path.insert(0, os.path.join(ROOT, "examples", "quickstart"))
import extend_model  # noqa: E402

MARKUP = list(extend_model.MARKUP)
#: the existing pieces whose embedding rows the markup symbols copy
ROW_SOURCES = ["\u2581", ">", "\u2581>>", "."]


def extended_quickstart(directory: str) -> str:
    """Write the extended model directory (model.pt, dict.*.txt, spm.model, cldr.trie, cldr.names); return it."""
    from fairseq.data import Dictionary

    os.makedirs(directory, exist_ok=True)
    for name in ("spm.model", "cldr.names"):
        shutil.copy(os.path.join(QUICKSTART, name), os.path.join(directory, name))
    extend_model.extend(QUICKSTART, os.path.join(directory, "model.pt"), os.path.join(directory, "dict.target.txt"),
                        copy_rows=ROW_SOURCES)
    shutil.copy(os.path.join(directory, "dict.target.txt"), os.path.join(directory, "dict.source.txt"))
    new = Dictionary.load(os.path.join(directory, "dict.target.txt"))
    tree = PrefixTree.load(os.path.join(QUICKSTART, "cldr.trie"))
    PrefixTree.from_sequences(list(tree), dictionary_fingerprint=dictionary_fingerprint(new),
                              start_token=tree.start_token, identifier_format=tree.identifier_format,
                              name_table_fingerprint=tree.name_table_fingerprint).save(os.path.join(directory, "cldr.trie"))
    return directory


# ---------------------------------------------------------------------------- a model with hand-set probabilities

#: probability of the intended next token at every step, except those of an identifier
ON_PATH = 0.9


def intended_output(source, gold, markup_ids, eos):
    """The markup the oracle intends for a source: every occurrence of a gold mention (token ids) marked.

    ``gold`` maps a mention's token ids (tuple) to ``(identifier token ids, probability of each)``;
    returns the output tokens (EOS last) and each one's probability.
    """
    o, c, b, e = markup_ids
    out, probs = [], []
    p = 0
    while p < len(source):
        hit = next(((m, v) for m, v in gold.items() if tuple(source[p: p + len(m)]) == m), None)
        if hit is None:
            out.append(source[p])
            probs.append(ON_PATH)
            p += 1
            continue
        mention, (ident, q) = hit
        out += [o, *mention, c, b]
        probs += [ON_PATH] * (len(mention) + 3)
        out += list(ident) + [e]
        probs += [q] * len(ident) + [ON_PATH]
        p += len(mention)
    return out + [eos], probs + [ON_PATH]


class _OracleDecoder(FairseqIncrementalDecoder):
    """While a hypothesis follows :func:`intended_output`, its next token gets the intended probability and
    every other token shares the rest; off that path, every token is equally likely."""

    def __init__(self, dictionary, gold, markup_ids):
        super().__init__(dictionary)
        self.gold, self.markup_ids = gold, markup_ids
        self._cache = {}

    def _intended(self, source):
        if source not in self._cache:
            out, probs = intended_output(list(source), self.gold, self.markup_ids, self.dictionary.eos())
            self._cache[source] = (out, probs)
        return self._cache[source]

    def forward(self, prev_output_tokens, encoder_out=None, incremental_state=None, **kwargs):
        vocab = len(self.dictionary)
        special = (self.dictionary.pad(), self.dictionary.eos())
        rows = []
        for src, prev in zip(encoder_out["src_tokens"].tolist(), prev_output_tokens.tolist()):
            out, probs = self._intended(tuple(t for t in src if t not in special))
            prefix = prev[1:]
            row = torch.full((vocab,), 1.0 / vocab, dtype=torch.float64)
            n = len(prefix)
            if n < len(out) and prefix == out[:n]:
                row.fill_((1 - probs[n]) / (vocab - 1))
                row[out[n]] = probs[n]
            rows.append(row.log().float())
        return torch.stack(rows).unsqueeze(1), {"attn": [None]}

    def reorder_incremental_state(self, incremental_state, new_order):
        pass

    def max_positions(self):
        return 1024


class OracleModel(FairseqEncoderDecoderModel):
    """An encoder-decoder that writes :func:`intended_output` of its source (hand-set probabilities)."""

    def __init__(self, dictionary, gold, markup_ids):
        super().__init__(_SourceIdEncoder(dictionary), _OracleDecoder(dictionary, gold, markup_ids))

    def max_positions(self):
        return (1024, 1024)
