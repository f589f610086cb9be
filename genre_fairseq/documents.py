"""Documents with all their gold spans (end-to-end entity linking): anchors JSON lines and AIDA.

The mention readers of :mod:`genre_fairseq.datasets` yield one record per InKB mention, which is
what disambiguation needs. End-to-end evaluation and training need whole documents instead: the
text, every span (NIL ones included, marked), and the documents without any mention (they count
in the macro average and are training examples of "nothing to link").

A :class:`Document` is read from

* an anchors JSON-lines file: ``{"id", "lang", "text", "mentions": [{"start", "end", "entity_id",
  "score": optional, "mention": optional check}]}`` (character offsets, end exclusive); a mention
  ``{"entity_id": null, "nil": true}`` is NIL (out of the knowledge base). ``id`` defaults to
  ``<file name>:<line>`` as in :func:`genre_fairseq.datasets.read_anchors`;
* AIDA CoNLL-YAGO (``FILE`` or ``FILE:testb``), through :func:`genre_fairseq.datasets.aida_documents`
  (``--NME--`` mentions are NIL).

Bad records and mentions are skipped, counted by cause in a
:class:`~genre_fairseq.datasets.ReadReport` with their ``file:line`` (``strict=True``: the first one
raises :class:`~genre_fairseq.datasets.DatasetError`). No torch, no fairseq.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from .datasets import DatasetError, ReadReport, _aida_path, aida_documents, detect_format, iter_json_lines

__all__ = ["Document", "Span", "DOCUMENT_FORMATS", "read_documents", "parse_document"]

DOCUMENT_FORMATS = ("anchors", "aida")


@dataclass(frozen=True)
class Span:
    """Characters ``[start, end)`` of a text linked to ``entity`` (None: NIL, out of the knowledge base)."""

    start: int
    end: int
    entity: Optional[str]
    score: Optional[float] = None


@dataclass
class Document:
    """A text and its spans, as read (in file order), and where it was read from."""

    id: str
    lang: str
    text: str
    spans: List[Span] = field(default_factory=list)
    source: str = ""  #: ``file:line``


def parse_document(obj: dict, where: str, report: ReadReport, strict: bool, *, default_id: str,
                   lang: Optional[str] = None, text: Optional[str] = None, cause: str = "bad_mention") -> Optional[Document]:
    """One anchors record -> :class:`Document` (None if unusable); bad mentions are skipped and reported.

    ``text`` given (predictions scored against a gold document): the record's own ``text``, if
    any, must equal it, and spans are checked against it.
    """
    own_text, mentions, doc_lang = obj.get("text"), obj.get("mentions"), obj.get("lang", lang)
    doc_id = obj.get("id", default_id)
    why = None
    if text is None and not isinstance(own_text, str):
        why = "'text' must be a string"
    elif own_text is not None and not isinstance(own_text, str):
        why = "'text' must be a string"
    elif not isinstance(mentions, list):
        why = "'mentions' must be a list"
    elif text is None and (not isinstance(doc_lang, str) or not doc_lang):
        why = "'lang' must be a non-empty string (or pass --lang)"
    elif not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        why = "'id' must be a string or an integer"
    elif text is not None and own_text is not None and own_text != text:
        why = f"its 'text' differs from the gold document {doc_id!r}'s (the offsets would not mean the same)"
    if why is not None:
        report.skip("bad_record", where, why, strict)
        return None
    text = text if text is not None else own_text
    doc = Document(str(doc_id), doc_lang if isinstance(doc_lang, str) else "", text, source=where)
    for index, m in enumerate(mentions):
        try:
            if not isinstance(m, dict):
                raise ValueError("must be an object")
            start, end, entity, score = m.get("start"), m.get("end"), m.get("entity_id"), m.get("score")
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
                raise ValueError("'start' and 'end' must be integers")
            if not 0 <= start < end <= len(text):
                raise ValueError(f"span {start}-{end} is outside the text (length {len(text)}) or empty")
            if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                      or not math.isfinite(score)):
                raise ValueError("'score' must be a finite number")
            nil = m.get("nil") is True and entity is None
            if not nil and (not isinstance(entity, str) or not entity):
                raise ValueError("'entity_id' must be a non-empty string (or null with \"nil\": true)")
            if "mention" in m and m["mention"] != text[start:end]:
                raise ValueError(f"'mention' {m['mention']!r} does not match the text at {start}-{end} "
                                 f"({text[start:end]!r})")
            if not text[start:end].strip():
                raise ValueError(f"the mention at {start}-{end} is blank")
        except ValueError as e:
            report.skip(cause, where, f"document {doc.id!r}: mention #{index}: {e}", strict)
            continue
        doc.spans.append(Span(start, end, None if nil else entity, None if score is None else float(score)))
    return doc


def read_documents(path: str, fmt: str = "auto", *, lang: Optional[str] = None, strict: bool = False,
                   report: Optional[ReadReport] = None) -> Iterator[Document]:
    """The documents of an anchors JSON-lines file or of AIDA (``FILE[:split]``), NIL spans kept (entity None)."""
    report = report if report is not None else ReadReport()
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "anchors":
        base = os.path.basename(os.fspath(path))
        for where, obj in iter_json_lines(path, report, strict):
            doc = parse_document(obj, where, report, strict, default_id=f"{base}:{where.rpartition(':')[2]}",
                                 lang=lang)
            if doc is not None:
                report.mentions += sum(1 for s in doc.spans if s.entity is not None)
                yield doc
        return
    if fmt == "aida":
        file, split = _aida_path(path)
        for _, where, rec in aida_documents(file, splits=[split] if split else None, strict=strict, report=report):
            spans = [Span(m["start"], m["end"], m["entity_id"]) for m in rec["mentions"]]
            report.mentions += sum(1 for s in spans if s.entity is not None)
            yield Document(rec["id"], rec["lang"], rec["text"], spans, source=where)
        return
    raise DatasetError(f"{path}: end-to-end documents are read from {' or '.join(DOCUMENT_FORMATS)} data, "
                       f"not {fmt}")


def inkb_and_nil(doc: Document) -> Tuple[List[Span], List[Span]]:
    """The document's InKB spans and its NIL spans."""
    return [s for s in doc.spans if s.entity is not None], [s for s in doc.spans if s.entity is None]
