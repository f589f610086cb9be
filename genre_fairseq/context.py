"""The model's input around a marked mention: the context cut to a word budget (no torch, no fairseq).

Used by the hub (GENRE 384 words, mGENRE 128), the data-set readers and ``genre-prepare``, so
training pairs, evaluation inputs and inference inputs are cut the same way.
"""

from __future__ import annotations

from typing import List, Sequence


def cut_around_mention(words: Sequence[str], start: str, end: str, max_words: int) -> List[str]:
    """Keep the marked mention and at most ``max_words`` words in all, context shared around it."""
    if start not in words or end not in words:
        raise ValueError(f"no mention marked with {start} ... {end}")
    i, j = words.index(start), words.index(end)
    if j < i or words.count(start) != 1 or words.count(end) != 1:
        raise ValueError(f"mention markers must appear once each, {start} before {end}")
    if j == i + 1:
        raise ValueError(f"empty mention: no word between {start} and {end}")
    if len(words) <= max_words:
        return list(words)
    budget = max(max_words - (j - i + 1), 0)
    left_avail, right_avail = i, len(words) - j - 1
    left = min(left_avail, budget // 2)
    right = min(right_avail, budget - left)
    left = min(left_avail, budget - right)
    return list(words[i - left: j + 1 + right])
