"""A fairseq ``dict.txt`` read without fairseq or torch, for the commands that only map symbols to ids.

``genre-trie build`` needs a dictionary's symbols, ids and special ids; importing fairseq for that
costs seconds (it imports torch). :class:`SymbolDictionary` reads the file as fairseq 0.12's
``Dictionary.load`` does, with the same ids, counts and errors:

* ids 0-3 are ``<s> <pad> </s> <unk>``, then one symbol per line, in file order;
* a line is ``<symbol> <count>``, optionally followed by the flag ``#fairseq:overwrite``, split on
  the last space(s) (a symbol may contain spaces);
* a symbol seen before (a special symbol included) is an error, unless the line has the flag:
  then it gets a new id, and looking it up gives the new one.

``tests/test_dictionary.py`` compares it with fairseq's on ordinary and adversarial files.
"""
from __future__ import annotations

from typing import Dict, List

__all__ = ["SymbolDictionary", "OVERWRITE_FLAG"]

OVERWRITE_FLAG = "#fairseq:overwrite"


class SymbolDictionary:
    """Symbols and ids of a fairseq dictionary file (the subset of fairseq's ``Dictionary`` the tools use)."""

    bos_word, pad_word, eos_word, unk_word = "<s>", "<pad>", "</s>", "<unk>"

    def __init__(self) -> None:
        self.symbols: List[str] = []
        self.count: List[int] = []
        self.indices: Dict[str, int] = {}
        for word in (self.bos_word, self.pad_word, self.eos_word, self.unk_word):
            self._add(word, 1, overwrite=False)
        self.bos_index, self.pad_index, self.eos_index, self.unk_index = 0, 1, 2, 3
        self.nspecial = len(self.symbols)

    def _add(self, word: str, n: int, overwrite: bool) -> int:
        if word in self.indices and not overwrite:
            idx = self.indices[word]
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[word] = idx
        self.symbols.append(word)
        self.count.append(n)
        return idx

    @classmethod
    def load(cls, path: str) -> "SymbolDictionary":
        """Read ``path`` as fairseq does; ``ValueError`` / ``RuntimeError`` with fairseq's causes otherwise."""
        d = cls()
        with open(path, "r", encoding="utf-8") as f:
            lines = f.readlines()
        for line in lines:
            try:
                word, field = line.rstrip().rsplit(" ", 1)
                overwrite = field == OVERWRITE_FLAG
                if overwrite:
                    word, field = word.rsplit(" ", 1)
                count = int(field)
            except ValueError:
                raise ValueError(f"Incorrect dictionary format, expected '<token> <cnt> [flags]': \"{line.rstrip()}\"") \
                    from None
            if word in d.indices and not overwrite:
                raise RuntimeError(f"Duplicate word found when loading Dictionary: '{word}'")
            d._add(word, count, overwrite)
        return d

    def __len__(self) -> int:
        return len(self.symbols)

    def __getitem__(self, idx: int) -> str:
        return self.symbols[idx] if idx < len(self.symbols) else self.unk_word

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.indices

    def index(self, symbol: str) -> int:
        """The id of ``symbol``, or the unknown id."""
        return self.indices.get(symbol, self.unk_index)

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index
