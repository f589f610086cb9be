"""GENRE's end-to-end markup ``{ mention } [ identifier ]``: text <-> spans with exact character offsets.

No torch or fairseq at import. Three jobs (docs/end_to_end.md gives the rules):

Tokens with character offsets. :func:`sentencepiece_tokens` and :func:`gpt2_tokens` split a text
into the model's symbols (SentencePiece pieces; GPT-2 BPE ids as decimal strings, the symbols of
GENRE's ``dict.txt``), each with the characters ``[start, end)`` of the original text it covers.
SentencePiece's own alignment is used (it survives its normalization: a composed ``é`` from
``e`` + U+0301 covers both characters); GPT-2's byte-level pieces are mapped from bytes to
characters. A piece that covers only part of a character (GPT-2 splits a character outside the
BMP into several byte pieces) covers the whole character, so neighbouring pieces may share it.

Spans. A span given in tokens (what decoding produces: :class:`~genre_fairseq.e2e_search.LinkedSpan`)
maps to characters by :func:`token_span_to_chars`: from the first token's first character to the
last token's last, with the whitespace that pieces carry (``▁``, GPT-2's leading space) trimmed.
A span given in characters (gold data) maps to tokens by :func:`snap_to_tokens`: every token whose
non-space characters overlap it. A boundary inside a token (``Berlin`` in ``Berliner``) is
*snapped* outwards to the token's edges and counted; the target then marks the whole token.

Windows. :func:`windows` cuts a tokenized document into windows of at most ``budget`` tokens,
ending at sentence ends where one fits (else at a word boundary, else anywhere). Windows are
token slices of the document's own tokenization, so the spans of every window map back to the
document's characters through the same offsets (:func:`merge_window_spans`).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

__all__ = ["Token", "Window", "Markup", "GENRE_MARKUP", "gpt2_tokens", "sentencepiece_tokens", "whitespace_tokens",
           "sentencepiece_line",
           "to_markup",
           "parse_markup", "token_span_to_chars", "snap_to_tokens", "target_symbols", "windows",
           "merge_window_spans", "window_gold_spans"]


@dataclass(frozen=True)
class Token:
    """One model symbol and the characters ``[start, end)`` of the original text it covers."""

    symbol: str
    start: int
    end: int


@dataclass(frozen=True)
class Markup:
    """The four markup strings of the text form (GENRE: ``{`` ``}`` ``[`` ``]``)."""

    open_mention: str = "{"
    close_mention: str = "}"
    open_entity: str = "["
    close_entity: str = "]"


GENRE_MARKUP = Markup()


# ---------------------------------------------------------------------------- tokens with offsets
def _byte_to_char(text: str) -> List[int]:
    """For each UTF-8 byte of ``text`` (and one past the end), the index of its character."""
    out: List[int] = []
    for i, ch in enumerate(text):
        out.extend([i] * len(ch.encode("utf-8")))
    out.append(len(text))
    return out


def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _proto_fields(buf: bytes) -> Iterable[Tuple[int, object]]:
    """(field number, value) of a serialized protobuf message (varints and length-delimited only)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, kind = key >> 3, key & 7
        if kind == 0:
            value, i = _varint(buf, i)
        elif kind == 2:
            n, i = _varint(buf, i)
            value, i = buf[i: i + n], i + n
        elif kind == 5:
            value, i = buf[i: i + 4], i + 4
        elif kind == 1:
            value, i = buf[i: i + 8], i + 8
        else:
            raise ValueError(f"unexpected protobuf wire type {kind}")
        yield field, value


def sentencepiece_tokens(sp, text: str) -> List[Token]:
    """The pieces of ``text`` under a ``sentencepiece.SentencePieceProcessor``, with character offsets.

    Offsets come from SentencePiece's own alignment (``begin``/``end`` of each piece in the
    original text's bytes), read from its serialized result so that protobuf is not needed.
    """
    buf = sp.encode(text, out_type="serialized_proto")
    b2c = _byte_to_char(text)
    out = []
    for field, value in _proto_fields(buf):
        if field != 2:  # SentencePieceText.pieces
            continue
        piece, begin, end = "", 0, 0
        for f, v in _proto_fields(value):
            if f == 1:
                piece = v.decode("utf-8")
            elif f == 4:
                begin = v
            elif f == 5:
                end = v
        start = b2c[begin]
        stop = b2c[end - 1] + 1 if end > begin else start
        out.append(Token(piece, start, stop))
    return out


def gpt2_tokens(encoder, text: str) -> List[Token]:
    """GPT-2 BPE ids of ``text`` as decimal strings, with character offsets (``encoder``: fairseq's
    ``gpt2_bpe_utils.Encoder``, as ``get_encoder(encoder.json, vocab.bpe)`` returns it)."""
    b2c = _byte_to_char(text)
    out = []
    byte_pos = 0
    for match in encoder.pat.finditer(text):
        word = match.group(0)
        raw = word.encode("utf-8")
        byte_pos = len(text[: match.start()].encode("utf-8"))
        mapped = "".join(encoder.byte_encoder[b] for b in raw)
        for piece in encoder.bpe(mapped).split(" "):
            n = len(piece)  # one character per byte in GPT-2's byte alphabet
            out.append(Token(str(encoder.encoder[piece]), b2c[byte_pos], b2c[byte_pos + n - 1] + 1))
            byte_pos += n
    return out


def whitespace_tokens(text: str) -> List[Token]:
    """The whitespace-separated words of ``text`` with their character offsets (models without BPE)."""
    return [Token(m.group(0), m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def sentencepiece_line(pieces: Sequence[str]) -> Tuple[str, List[Token]]:
    """The text of SentencePiece pieces as fairseq's ``--bpe sentencepiece`` decodes them (``▁`` -> space,
    outer spaces stripped; a piece such as ``<unk>`` stays as it is written), and each piece's characters in it."""
    tokens, pos = [], 0
    for piece in pieces:
        tokens.append(Token(piece, pos, pos + len(piece)))
        pos += len(piece)
    raw = "".join(pieces).replace("\u2581", " ")
    lead = len(raw) - len(raw.lstrip())
    line = raw.strip()
    return line, [Token(t.symbol, max(t.start - lead, 0), min(max(t.end - lead, 0), len(line))) for t in tokens]


# ---------------------------------------------------------------------------- spans
def _content(text: str, start: int, end: int) -> Tuple[int, int]:
    """``[start, end)`` without leading and trailing whitespace (empty: (start, start))."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def token_span_to_chars(text: str, tokens: Sequence[Token], start: int, end: int) -> Tuple[int, int]:
    """Characters ``[a, b)`` of the tokens ``start .. end - 1`` (whitespace the pieces carry trimmed)."""
    if not 0 <= start < end <= len(tokens):
        raise ValueError(f"token span ({start}, {end}) is outside the {len(tokens)} tokens")
    return _content(text, tokens[start].start, tokens[end - 1].end)


def snap_to_tokens(text: str, tokens: Sequence[Token], start: int, end: int) -> Optional[Tuple[int, int, bool]]:
    """The tokens ``(first, last + 1)`` covering characters ``[start, end)``, and whether the span was
    snapped (its edges are not the tokens' edges); None when no token's text overlaps it."""
    start, end = _content(text, start, end)
    hit = [i for i, t in enumerate(tokens) if _overlaps(_content(text, t.start, t.end), (start, end))]
    if not hit or start >= end:
        return None
    a, b = hit[0], hit[-1] + 1
    return a, b, token_span_to_chars(text, tokens, a, b) != (start, end)


def _overlaps(x: Tuple[int, int], y: Tuple[int, int]) -> bool:
    return x[0] < x[1] and x[0] < y[1] and y[0] < x[1]


def to_markup(text: str, spans: Sequence[Tuple[int, int, str]], markup: Markup = GENRE_MARKUP) -> str:
    """``text`` with each ``(start, end, identifier)`` (characters, end exclusive) written as ``{ m } [ id ]``."""
    out, last = [], 0
    for start, end, ident in sorted(spans):
        if not 0 <= last <= start < end <= len(text):
            raise ValueError(f"span ({start}, {end}) overlaps another or is outside the text ({len(text)} characters)")
        out += [text[last:start], markup.open_mention, " ", text[start:end], " ", markup.close_mention, " ",
                markup.open_entity, " ", ident, " ", markup.close_entity]
        last = end
    out.append(text[last:])
    return "".join(out)


def parse_markup(markup_text: str, text: str, markup: Markup = GENRE_MARKUP) -> List[Tuple[int, int, str]]:
    """The spans ``(start, end, identifier)`` of generated markup text, in characters of ``text``.

    Outside the markup, the generated characters must be those of ``text`` in order; whitespace
    may differ, and a character of ``text`` may appear in NFKC form (as SentencePiece writes it).
    A character of the output that is not the next one of ``text`` raises ``ValueError`` naming
    the position. Prefer the token path (:func:`token_span_to_chars`), which needs no alignment.
    """
    spans = []
    j = 0  # next character of text
    i = 0
    n = len(markup_text)
    open_at: Optional[int] = None
    first_char: Optional[int] = None

    def skip_space(k: int) -> int:
        while k < len(text) and text[k].isspace():
            k += 1
        return k

    while i < n:
        ch = markup_text[i]
        if ch.isspace():
            i += 1
            continue
        if markup_text.startswith(markup.open_mention, i) and open_at is None:
            open_at, first_char = i, None
            i += len(markup.open_mention)
            continue
        if markup_text.startswith(markup.close_mention, i) and open_at is not None:
            rest = markup_text[i + len(markup.close_mention):].lstrip()
            if not rest.startswith(markup.open_entity):
                raise ValueError(f"markup position {i}: {markup.close_mention!r} not followed by {markup.open_entity!r}")
            k = n - len(rest) + len(markup.open_entity)
            close = markup_text.find(markup.close_entity, k)
            if close < 0:
                raise ValueError(f"markup position {k}: identifier without {markup.close_entity!r}")
            if first_char is None:
                raise ValueError(f"markup position {open_at}: empty mention")
            spans.append((first_char, j, markup_text[k:close].strip()))
            open_at = None
            i = close + len(markup.close_entity)
            continue
        j = skip_space(j)
        if j >= len(text):
            raise ValueError(f"markup position {i}: {ch!r} is past the end of the text")
        # the next character of text, or (as a normalizing tokenizer may write it) its NFKC form,
        # or that of the character with its combining marks
        k = j + 1
        while k < len(text) and unicodedata.combining(text[k]):
            k += 1
        width = 0
        for form, stop in ((text[j], j + 1), (unicodedata.normalize("NFKC", text[j:k]), k),
                           (unicodedata.normalize("NFKC", text[j]), j + 1)):
            if form and markup_text.startswith(form, i):
                width, j_next = len(form), stop
                break
        if not width:
            raise ValueError(f"markup position {i}: {ch!r} does not match text position {j} ({text[j]!r})")
        if open_at is not None and first_char is None:
            first_char = j
        i += width
        j = j_next
    if open_at is not None:
        raise ValueError(f"markup position {open_at}: mention not closed")
    if skip_space(j) < len(text):
        raise ValueError(f"the markup ends at text position {j} of {len(text)}: the text is not all copied")
    return spans


def target_symbols(source: Sequence[str], spans: Sequence[Tuple[int, int, Sequence[str]]],
                   markup_symbols: Sequence[str]) -> List[str]:
    """Training target: the source symbols with ``{ m } [ id ]`` inserted around each token span.

    ``spans`` are ``(first token, last token + 1, identifier symbols)``, not overlapping;
    ``markup_symbols`` the dictionary symbols of ``{ } [ ]`` (SentencePiece ``▁{`` ...; GPT-2 the
    ids of ``" {"`` ...). The copied symbols are the source's own, so a model trained on these
    targets copies exactly what :class:`~genre_fairseq.e2e_search.EndToEndSearch` allows.
    """
    o, c, b, e = markup_symbols
    out: List[str] = []
    last = 0
    for start, end, ident in sorted(spans, key=lambda s: (s[0], s[1])):
        if not last <= start < end <= len(source):
            raise ValueError(f"token span ({start}, {end}) overlaps another or is outside the {len(source)} tokens")
        out += list(source[last:start]) + [o] + list(source[start:end]) + [c, b] + list(ident) + [e]
        last = end
    return out + list(source[last:])


# ---------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Window:
    """Tokens ``[tok_start, tok_end)`` of a document, covering characters ``[start, end)``."""

    tok_start: int
    tok_end: int
    start: int
    end: int


_SENTENCE_END = re.compile(r"[.!?。！？…؟।]+[\"'»”’)\]]*$")


def windows(text: str, tokens: Sequence[Token], budget: int) -> List[Window]:
    """Cut a document's tokens into windows of at most ``budget`` tokens, at sentence ends where possible."""
    if budget < 1:
        raise ValueError(f"the window budget must be >= 1 token, got {budget}")
    n = len(tokens)
    # may a window end after token i? 2: at a sentence end or line break, 1: between words, 0: inside a word
    rank = [2] * n
    for i in range(n - 1):
        nxt = tokens[i + 1]
        between = text[tokens[i].end: nxt.start]
        lead = text[nxt.start: _content(text, nxt.start, nxt.end)[0]]
        word = bool(between) or text[nxt.start: nxt.start + 1].isspace()
        a, b = _content(text, tokens[i].start, tokens[i].end)
        if "\n" in between or "\n" in lead or (word and _SENTENCE_END.search(text[a:b])):
            rank[i] = 2
        else:
            rank[i] = 1 if word else 0
    out = []
    i = 0
    while i < n:
        limit = min(i + budget, n)
        end = limit
        if limit < n:
            for want in (2, 1):
                cut = next((k + 1 for k in range(limit - 1, i - 1, -1) if rank[k] >= want), None)
                if cut is not None:
                    end = cut
                    break
        a, b = _content(text, tokens[i].start, tokens[end - 1].end)
        out.append(Window(i, end, a, b))
        i = end
    return out


def merge_window_spans(text: str, tokens: Sequence[Token], wins: Sequence[Window],
                       spans_per_window: Sequence[Sequence[tuple]]) -> List[tuple]:
    """Spans of all windows in document characters: each window's spans are ``(first token, last
    token + 1, *rest)`` relative to the window; returns ``(start, end, *rest)`` sorted by start."""
    if len(wins) != len(spans_per_window):
        raise ValueError(f"{len(wins)} windows but spans for {len(spans_per_window)}")
    out = []
    for w, spans in zip(wins, spans_per_window):
        for span in spans:
            a, b = span[0] + w.tok_start, span[1] + w.tok_start
            if not w.tok_start <= a < b <= w.tok_end:
                raise ValueError(f"span {tuple(span[:2])} is outside its window of {w.tok_end - w.tok_start} tokens")
            out.append(token_span_to_chars(text, tokens, a, b) + tuple(span[2:]))
    return sorted(out, key=lambda s: (s[0], s[1]))


def window_gold_spans(text: str, tokens: Sequence[Token], wins: Sequence[Window],
                      spans: Sequence[tuple]) -> Tuple[List[List[tuple]], dict]:
    """Gold character spans ``(start, end, *rest)`` -> per window ``(first token, last token + 1, *rest)``.

    Returns also counts: ``snapped`` (an edge inside a token), ``crossing`` (across two windows:
    dropped), ``overlapping`` (overlaps an earlier span after snapping: dropped), ``empty``
    (no token: dropped).
    """
    counts = {"snapped": 0, "crossing": 0, "overlapping": 0, "empty": 0}
    per = [[] for _ in wins]
    starts = [w.tok_start for w in wins]
    last_end = -1
    for span in sorted(spans, key=lambda s: (s[0], s[1])):
        snapped = snap_to_tokens(text, tokens, span[0], span[1])
        if snapped is None:
            counts["empty"] += 1
            continue
        a, b, moved = snapped
        counts["snapped"] += moved
        if a < last_end:
            counts["overlapping"] += 1
            continue
        k = max(i for i, s in enumerate(starts) if s <= a)
        w = wins[k]
        if b > w.tok_end:
            counts["crossing"] += 1
            continue
        per[k].append((a - w.tok_start, b - w.tok_start) + tuple(span[2:]))
        last_end = b
    return per, counts
