"""markup: tokens with character offsets, spans both ways, markup text, windows (hand-computed and round trips)."""

import ast
import os
import re

import pytest

from genre_fairseq import markup as mk
from genre_fairseq.markup import Token, Window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPM = os.path.join(ROOT, "examples", "quickstart", "model", "spm.model")

# non-ASCII, a combining accent, characters outside the BMP, a mention repeated
TEXT = "Zürich and Zürich: cafe\u0301 😀 Łódź met 𝔘nicode in Zürich."
GOLD = [(0, 6, "Zürich"), (11, 17, "Zürich"), (19, 24, "Café"), (27, 31, "Łódź"), (36, 43, "Unicode"),
        (47, 53, "Zürich")]


def words(text):
    """GPT-2-style word tokens (leading space attached), a tokenization whose windows are easy to compute by hand."""
    return [Token(m.group(0), m.start(), m.end()) for m in re.finditer(r"\s*\S+", text)]


@pytest.fixture(scope="module")
def sp():
    import sentencepiece

    p = sentencepiece.SentencePieceProcessor()
    p.Load(SPM)
    return p


def test_gold_offsets_of_the_fixture_are_what_they_say():
    for a, b, name in GOLD:
        assert TEXT[a:b].replace("e\u0301", "é").replace("𝔘", "U").lower() in (name.lower(), "cafe\u0301")


def test_module_imports_neither_torch_nor_fairseq():
    tree = ast.parse(open(mk.__file__, encoding="utf-8").read())
    names = {n.names[0].name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"torch", "fairseq", "numpy"}


def test_sentencepiece_tokens_are_spms_own_pieces_with_exact_offsets(sp):
    toks = mk.sentencepiece_tokens(sp, TEXT)
    assert [t.symbol for t in toks] == sp.encode(TEXT, out_type=str)
    for t in toks:
        surface = t.symbol.replace("\u2581", " ")
        assert TEXT[t.start:t.end].strip() == surface.strip()
    # pieces cover the text in order
    assert all(a.end <= b.start for a, b in zip(toks, toks[1:]))


def test_gold_spans_round_trip_through_sentencepiece_tokens(sp):
    toks = mk.sentencepiece_tokens(sp, TEXT)
    for a, b, _ in GOLD:
        first, last, snapped = mk.snap_to_tokens(TEXT, toks, a, b)
        assert not snapped
        assert mk.token_span_to_chars(TEXT, toks, first, last) == (a, b)
    # the repeated mention gets three different token spans
    assert len({mk.snap_to_tokens(TEXT, toks, a, b)[:2] for a, b, n in GOLD if n == "Zürich"}) == 3


def test_a_boundary_inside_a_token_is_snapped_outwards():
    text = "the Berliner said"
    toks = words(text)  # " Berliner" is one token
    assert mk.snap_to_tokens(text, toks, 4, 10) == (1, 2, True)  # "Berlin"
    assert mk.token_span_to_chars(text, toks, 1, 2) == (4, 12)
    assert mk.snap_to_tokens(text, toks, 4, 12) == (1, 2, False)
    assert mk.snap_to_tokens(text, toks, 3, 4) is None  # only the space


def test_gpt2_tokens_offsets_including_split_characters(tmp_path):
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    from tests.toy import write_gpt2_bpe

    enc_json, vocab, _ = write_gpt2_bpe(str(tmp_path), [("Ġ", "Z"), ("Ã", "¼")])
    enc = get_encoder(enc_json, vocab)
    text = "a Zürich 😀!"
    toks = mk.gpt2_tokens(enc, text)
    assert [int(t.symbol) for t in toks] == enc.encode(text)
    by_char = [(text[t.start:t.end]) for t in toks]
    # the emoji is 4 byte pieces, each covering the whole character; "ü" is one merged piece
    assert by_char.count("😀") == 4 and "ü" in by_char and " Z" in by_char
    i = by_char.index(" Z")
    assert mk.token_span_to_chars(text, toks, i, i + 5) == (2, 7)  # " Z" "ü" "r" "i" "c"
    assert mk.token_span_to_chars(text, toks, i, i + 6) == (2, 8) and text[2:8] == "Zürich"


def test_markup_text_round_trip():
    markup = mk.to_markup(TEXT, GOLD)
    assert markup.startswith("{ Zürich } [ Zürich ] and { Zürich } [ Zürich ]:")
    assert mk.parse_markup(markup, TEXT) == GOLD
    # whitespace differs in the output (as after detokenization)
    assert mk.parse_markup(re.sub(r"\s+", " ", markup).replace(" :", ":"), TEXT) == GOLD


def test_parse_markup_accepts_nfkc_forms():
    text = "ﬁne ＡＢ"
    assert mk.parse_markup("{ fine } [ Fine ] { AB } [ AB ]", text) == [(0, 3, "Fine"), (4, 6, "AB")]


def test_parse_markup_combined_accent():
    text = "cafe\u0301 ok"
    assert mk.parse_markup("{ café } [ Café ] ok", text) == [(0, 5, "Café")]


@pytest.mark.parametrize("bad, message", [
    ("{ Zurich } [ Z ] and", "does not match"),
    ("Zürich and { Zürich", "not closed"),
    ("Zürich and", "not all copied"),
    ("{ } [ Z ] Zürich and Zürich", "empty mention"),
    ("{ Zürich } Z", "not followed by"),
])
def test_parse_markup_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        mk.parse_markup(bad, "Zürich and Zürich")


def test_to_markup_rejects_overlaps():
    with pytest.raises(ValueError, match="overlaps"):
        mk.to_markup("abcdef", [(0, 3, "x"), (2, 4, "y")])


def test_target_symbols_hand_example():
    src = ["▁In", "▁Ber", "lin", ",", "▁Merkel"]
    ms = ["▁{", "▁}", "▁[", "▁]"]
    got = mk.target_symbols(src, [(4, 5, ["▁A", "ngela"]), (1, 3, ["▁Berlin"])], ms)
    assert got == ["▁In", "▁{", "▁Ber", "lin", "▁}", "▁[", "▁Berlin", "▁]", ",",
                   "▁{", "▁Merkel", "▁}", "▁[", "▁A", "ngela", "▁]"]
    with pytest.raises(ValueError, match="overlaps"):
        mk.target_symbols(src, [(0, 2, []), (1, 3, [])], ms)


def test_windows_end_at_sentences_hand_computed():
    text = "Aa bb. Cc dd ee. Ff."
    toks = words(text)
    assert mk.windows(text, toks, 3) == [Window(0, 2, 0, 6), Window(2, 5, 7, 16), Window(5, 6, 17, 20)]
    # one window when it all fits
    assert mk.windows(text, toks, 6) == [Window(0, 6, 0, 20)]
    # a sentence longer than the budget is cut between words
    assert mk.windows("a b c d e", words("a b c d e"), 2) == [Window(0, 2, 0, 3), Window(2, 4, 4, 7), Window(4, 5, 8, 9)]


def test_windows_cut_between_words_before_inside_words(sp):
    toks = mk.sentencepiece_tokens(sp, TEXT)
    wins = mk.windows(TEXT, toks, 8)
    assert wins[0].tok_start == 0 and wins[-1].tok_end == len(toks)
    for w, nxt in zip(wins, wins[1:]):
        assert w.tok_end == nxt.tok_start and w.tok_end - w.tok_start <= 8
        # every cut is before a piece that starts a word (the text has no word longer than 8 pieces)
        assert toks[nxt.tok_start].symbol.startswith("\u2581")


def test_gold_spans_through_windows_and_back(sp):
    toks = mk.sentencepiece_tokens(sp, TEXT)
    wins = mk.windows(TEXT, toks, 10)
    per, counts = mk.window_gold_spans(TEXT, toks, wins, GOLD)
    merged = mk.merge_window_spans(TEXT, toks, wins, per)
    kept = sum(len(p) for p in per)
    assert kept + counts["crossing"] == len(GOLD) and counts["snapped"] == counts["overlapping"] == 0
    assert set(merged) <= set(GOLD) and len(merged) == kept
    # a window small enough to cut "𝔘nicode" apart drops it and counts it
    per1, counts1 = mk.window_gold_spans(TEXT, toks, [Window(0, 20, 0, 0), Window(20, len(toks), 0, 0)], GOLD)
    crossing = [g for g in GOLD if mk.snap_to_tokens(TEXT, toks, g[0], g[1])[0] < 20 < mk.snap_to_tokens(TEXT, toks, g[0], g[1])[1]]
    assert counts1["crossing"] == len(crossing)


def test_merge_window_spans_offsets_hand_computed():
    text = "Aa bb. Cc dd ee. Ff."
    toks = words(text)
    wins = mk.windows(text, toks, 3)
    merged = mk.merge_window_spans(text, toks, wins, [[(1, 2, "B")], [(0, 2, "CD")], [(0, 1, "F", -0.5)]])
    assert merged == [(3, 6, "B"), (7, 12, "CD"), (17, 20, "F", -0.5)]
    with pytest.raises(ValueError, match="outside its window"):
        mk.merge_window_spans(text, toks, wins, [[(1, 3, "x")], [], []])
    with pytest.raises(ValueError, match="3 windows but spans for 1"):
        mk.merge_window_spans(text, toks, wins, [[]])


def test_empty_and_whitespace_only_text(sp):
    for text in ("", "   \n\t "):
        toks = mk.sentencepiece_tokens(sp, text)
        assert [t for t in toks if mk._content(text, t.start, t.end)[0] < mk._content(text, t.start, t.end)[1]] == []
        assert mk.parse_markup(text.strip(), text) == []
    assert mk.windows("", [], 4) == []
    with pytest.raises(ValueError, match="budget"):
        mk.windows("a", words("a"), 0)
    with pytest.raises(ValueError, match="outside"):
        mk.token_span_to_chars("a", words("a"), 0, 2)
