"""Reader of KILT's knowledge source (``kilt_knowledgesource.json``): the page ids and titles it holds.

The file (Petroni et al., 2021; a 2019-08-01 English Wikipedia snapshot, 5.9M pages) is JSON lines,
one page a line: ``{"_id", "wikipedia_id": "290", "wikipedia_title": "A", "text": [...], "anchors",
"categories", "history", "wikidata_info": {"wikidata_id": "Q9659", ...}}``. KILT's page-level
retrieval gold is ``provenance[].wikipedia_id``, so the page id is the entity id by default
(``id_field="wikidata_id"`` takes the Wikidata item where the page has one). Only the id and the
title are kept; the page text is not.

A line that is not JSON, or lacks a non-empty ``wikipedia_id`` / ``wikipedia_title``, is counted
and reported with its line number; ``strict=True`` raises ``InputError`` naming file and line.
The file may be gzip- or bzip2-compressed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator, List, NamedTuple, Optional, Tuple

from ._io import InputError, PathLike, ReadStats, open_binary

__all__ = ["ID_FIELDS", "InputError", "KiltPage", "KiltSourceStats", "iter_kilt_pages", "kilt_names"]

ID_FIELDS = ("wikipedia_id", "wikidata_id")


class KiltPage(NamedTuple):
    """One page of the knowledge source: its Wikipedia page id, title and Wikidata item (or None)."""

    wikipedia_id: str
    title: str
    wikidata_id: Optional[str]


@dataclass
class KiltSourceStats(ReadStats):
    """Counts of a knowledge-source read: `read` = non-blank lines = kept + malformed; `no_wikidata_id` of kept."""

    no_wikidata_id: int = 0


def iter_kilt_pages(path: PathLike, *, strict: bool = False,
                    stats: Optional[KiltSourceStats] = None) -> Iterator[KiltPage]:
    """Stream the (page id, title, Wikidata id) of every page of a KILT knowledge source."""
    stats = stats if stats is not None else KiltSourceStats()
    stats.path = str(path)
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            stats.read += 1
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                stats.malformed += 1
                stats.problem(lineno, f"not a JSON object ({e})", strict=strict)
                continue
            page_id = obj.get("wikipedia_id") if isinstance(obj, dict) else None
            title = obj.get("wikipedia_title") if isinstance(obj, dict) else None
            if isinstance(page_id, int) and not isinstance(page_id, bool):
                page_id = str(page_id)
            if not isinstance(page_id, str) or not page_id.strip() or not isinstance(title, str) or not title.strip():
                stats.malformed += 1
                stats.problem(lineno, "needs a non-empty 'wikipedia_id' and 'wikipedia_title'", strict=strict)
                continue
            info = obj.get("wikidata_info")
            qid = info.get("wikidata_id") if isinstance(info, dict) else None
            if not isinstance(qid, str) or not qid.strip():
                qid = None
                stats.no_wikidata_id += 1
            stats.kept += 1
            yield KiltPage(page_id.strip(), title.strip(), qid.strip() if qid else None)


def kilt_names(path: PathLike, *, id_field: str = "wikipedia_id", lang: str = "en", strict: bool = False,
               stats: Optional[KiltSourceStats] = None,
               mentions: Optional[List[Tuple[str, str]]] = None) -> Iterator[Tuple[str, str, str, bool]]:
    """Name records ``(entity id, lang, title, True)`` of a knowledge source, for ``NameTable.build``.

    With ``id_field="wikidata_id"``, pages without a Wikidata item are left out (counted in
    ``stats.no_wikidata_id``). Titles are appended to ``mentions`` as ``(title, entity id)`` if given.
    """
    if id_field not in ID_FIELDS:
        raise ValueError(f"id_field must be one of {', '.join(ID_FIELDS)}, got {id_field!r}")
    for page in iter_kilt_pages(path, strict=strict, stats=stats):
        entity = page.wikipedia_id if id_field == "wikipedia_id" else page.wikidata_id
        if entity is None:
            continue
        if mentions is not None:
            mentions.append((page.title, entity))
        yield entity, lang, page.title, True
