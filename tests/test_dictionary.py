"""genre_fairseq.dictionary reads a dict.txt exactly as fairseq's Dictionary.load does (ids, counts, errors)."""
import pytest
from fairseq.data import Dictionary

from genre_fairseq.dictionary import SymbolDictionary


def _both(tmp_path, text):
    path = tmp_path / "dict.txt"
    path.write_text(text, encoding="utf-8")
    return path, str(path)


@pytest.mark.parametrize("text", [
    "",
    "a 5\nb 3\n",
    "▁Berlin 10\n>> 3\n▁>> 2\n{ 1\n} 1\n",
    "a b 4\nc 1\n",                          # a symbol with a space: split on the last one
    "a 5\na 7 #fairseq:overwrite\nb 1\n",    # overwrite: a new id, lookups give it
    "<unk> 2 #fairseq:overwrite\nx 1\n",     # a special symbol overwritten
    "madeupword0000 0\nmadeupword0001 0\n",
    "x  3\n",                                # two spaces: the symbol is "x "
    "Ünïcödé 9\n日本 4\n🙂 1\n",
])
def test_same_symbols_ids_and_counts_as_fairseq(tmp_path, text):
    _, path = _both(tmp_path, text)
    ours, theirs = SymbolDictionary.load(path), Dictionary.load(path)
    assert ours.symbols == theirs.symbols
    assert ours.count == theirs.count
    assert ours.indices == theirs.indices
    assert (ours.bos(), ours.pad(), ours.eos(), ours.unk()) == (theirs.bos(), theirs.pad(), theirs.eos(), theirs.unk())
    assert len(ours) == len(theirs) and ours.nspecial == theirs.nspecial
    for symbol in theirs.symbols + ["never-seen", ""]:
        assert ours.index(symbol) == theirs.index(symbol)
        assert (symbol in ours) == (symbol in theirs)
    for i in range(len(theirs) + 2):
        assert ours[i] == theirs[i]


@pytest.mark.parametrize("text,error", [
    ("a 5\na 3\n", RuntimeError),      # duplicate without the flag
    ("</s> 3\n", RuntimeError),        # a special symbol again
    ("a\n", ValueError),               # no count
    ("a x\n", ValueError),             # count not an integer
    ("a 1\n\nb 2\n", ValueError),      # an empty line
])
def test_same_refusals_as_fairseq(tmp_path, text, error):
    _, path = _both(tmp_path, text)
    with pytest.raises(error):
        Dictionary.load(path)
    with pytest.raises(error):
        SymbolDictionary.load(path)


def test_the_fingerprint_of_a_shipped_dictionary_is_fairseqs():
    import os

    from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint

    model = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "quickstart", "model")
    path = os.path.join(model, "dict.target.txt")
    fp = dictionary_fingerprint(SymbolDictionary.load(path))
    assert fp == dictionary_fingerprint(Dictionary.load(path))
    assert fp == PrefixTree.load(os.path.join(model, "cldr.trie")).dictionary_fingerprint
