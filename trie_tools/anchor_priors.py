"""Hyperlink counts from anchors JSON lines: ``(anchor text, entity id, 1)`` items for a mention table.

A mention table built from these (``MentionTable.build``, which sums the counts of repeated pairs
on disk, so memory stays bounded) holds p(e|m) as counts: how often a text links to an entity,
the prior GENRE's ``mention2wikidataID`` held and mGENRE's "+ candidates" results use. The anchor
text is taken as it appears in the text, with surrounding whitespace stripped; NIL and malformed
mentions are skipped and counted by ``genre_fairseq.datasets.read_anchors``.

Wiring: ``genre-trie names ... --anchors ANCHORS.jsonl[.gz]`` would pass
``anchor_mentions(paths)`` to ``MentionTable.build`` (alone, or chained with the name sources).
"""
from __future__ import annotations

from typing import Iterable, Iterator, Optional, Tuple

from genre_fairseq.datasets import ReadReport, read_anchors

from ._io import PathLike

__all__ = ["anchor_mentions"]


def anchor_mentions(paths: Iterable[PathLike], *, strict: bool = False,
                    report: Optional[ReadReport] = None) -> Iterator[Tuple[str, str, int]]:
    """``(anchor text, entity id, 1)`` for every mention of the given anchors JSON-lines files."""
    report = report if report is not None else ReadReport()
    for path in paths:
        for mention in read_anchors(path, strict=strict, report=report):
            text = mention.mention.strip()
            if text:
                yield text, mention.entities[0], 1
