"""Streaming readers of entity-linking data sets: one :class:`Mention` per annotated mention.

Every reader yields records with the *raw* context (``left``, ``mention``, ``right``), so that each
caller marks the mention with its own model's markers (``[START_ENT] ... [END_ENT]`` for GENRE,
``[START] ... [END]`` for mGENRE) and cuts the context to its own length (:meth:`Mention.marked`
uses ``genre_fairseq.context.cut_around_mention``). ``genre-evaluate`` reads test sets with them;
data preparation reads training sets with them.

Formats (offsets are in Unicode code points, i.e. Python ``str`` indices):

* ``mewsli``: the Mewsli-9 layout (Botha et al., 2020). A directory holding one language
  (``docs.tsv``, ``mentions.tsv``, ``text/<docid>``), or a directory of such language
  directories (``ar/``, ``de/``, ...). ``mentions.tsv`` is a tab-separated file with a header
  naming at least ``docid``, ``position``, ``length``, ``mention`` and ``qid`` (the release also
  has ``url``, ``lang``, ``qid_in_refs``, ``freq_bin``); fields with tabs or quotes are quoted
  CSV-style (``"..."``, inner quotes doubled), as pandas writes them. ``text/<docid>`` is the
  cleaned article text in UTF-8; ``text[position:position + length]`` must equal ``mention``.
  ``docs.tsv`` (optional) gives each document's ``text_md5``: the MD5 of its text's UTF-8 bytes.
  The language is the ``lang`` column, or the directory's name.
* ``kilt``: KILT JSON lines: ``{"id", "input", "output": [{"answer", "provenance": [{"title",
  "wikipedia_id"}]}], "meta": {...}}``. The mention is marked in ``input`` with
  ``[START_ENT] ... [END_ENT]`` (or, if not, given by ``meta.left_context / mention /
  right_context``). Gold entities: the ``answer`` strings (Wikipedia titles); where no output
  has an answer, the provenance titles.
* ``anchors``: JSON lines, one text per line with any number of mentions:
  ``{"id": optional, "lang": "en", "text": "...", "mentions": [{"start": 0, "end": 4,
  "entity_id": "Q1", "mention": optional check, "candidates": optional [entity ids]}]}``;
  ``end`` is exclusive. A mention ``{"start", "end", "entity_id": null, "nil": true}`` is an
  out-of-KB (NIL) mention: it is not yielded (InKB evaluation and training leave it out) and is
  counted as skipped ``nil``.
* ``aida``: AIDA CoNLL-YAGO's ``AIDA-YAGO2-dataset.tsv`` (Hoffart et al., 2011): ``-DOCSTART- (1 EU)``
  lines open documents; then one token per line, blank lines between sentences; an annotated token
  has the columns token, ``B``/``I``, the full mention, the YAGO2 entity (or ``--NME--``), and for
  known entities the Wikipedia URL, its page id and (mostly) a Freebase mid. The text of a document
  is its tokens joined by spaces, sentences joined by ``\n``; the gold entity is the Wikipedia title
  of the URL (``http://en.wikipedia.org/wiki/Germany`` -> ``Germany``). ``--NME--`` mentions are
  NIL: skipped and counted (``nil``), as InKB metrics require. The split is in the document id
  (``947testa``, ``1163testb``; others are train); ``FILE:testb`` (or ``:train``, ``:testa``) reads one
  split, also from ``genre-evaluate`` and ``genre-prepare``. :func:`aida_documents` gives the
  documents as anchors records, NIL mentions kept and marked.

Bad input is never used silently. A malformed line or mention is skipped, counted by cause in a
:class:`ReadReport` and remembered with its ``file:line``; with ``strict=True`` the first one
raises :class:`DatasetError` instead. A missing or unreadable file (or a ``mentions.tsv`` without
the required columns) always raises.

Memory: files are read line by line. The Mewsli reader keeps ``docs.tsv``'s ``docid -> text_md5``
(a few dozen bytes per document) and the texts of the last few documents it read; its
``mentions.tsv`` is sorted by document, so each text is read once.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
import os
import re
import urllib.parse
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .context import cut_around_mention

__all__ = ["AIDA_SPLITS", "FORMATS", "DatasetError", "Mention", "ReadReport", "aida_documents", "data_path_exists",
           "detect_format",
           "iter_json_lines", "read_aida", "read_anchors", "read_dataset", "read_kilt", "read_mewsli"]

FORMATS = ("mewsli", "kilt", "anchors", "aida")
AIDA_SPLITS = ("train", "testa", "testb")
KILT_START, KILT_END = "[START_ENT]", "[END_ENT]"
MEWSLI_COLUMNS = ("docid", "position", "length", "mention", "qid")

PathLike = Union[str, "os.PathLike[str]"]


class DatasetError(ValueError):
    """Unusable input: a missing file, or (``strict=True``) the first malformed line; names file and line."""


@dataclass(frozen=True)
class Mention:
    """One annotated mention: raw context around it, its gold entities, where it was read."""

    id: str  #: unique in its data set: ``docid:start-end`` (Mewsli, anchors) or the KILT ``id``
    lang: str
    left: str  #: text before the mention (the whole document's, for Mewsli and anchors)
    mention: str
    right: str  #: text after the mention
    entities: Tuple[str, ...]  #: gold entity ids (Mewsli: one QID; KILT: answer titles)
    doc_id: Optional[str] = None
    candidates: Optional[Tuple[str, ...]] = None  #: candidate entity ids given by the data, if any
    source: str = ""  #: ``file:line`` it was read from

    def marked(self, start: str, end: str, max_words: Optional[int] = None) -> str:
        """One line of words: context with the mention between ``start`` and ``end``, cut to ``max_words``."""
        left, mention, right = self.left.split(), self.mention.split(), self.right.split()
        for marker in (start, end):
            if marker in left or marker in mention or marker in right:
                raise ValueError(f"{self.source}: mention {self.id!r}: its text already contains the marker {marker!r}")
        words = left + [start] + mention + [end] + right
        if max_words is not None:
            words = cut_around_mention(words, start, end, max_words)
        return " ".join(words)


class ReadReport:
    """What a reader yielded and skipped: counts by cause, the first few ``file:line: cause`` messages."""

    def __init__(self, max_examples: int = 5) -> None:
        self.mentions = 0
        self.skipped: Counter = Counter()  # cause -> number of mentions (or lines) left out
        self.warnings: Counter = Counter()  # cause -> number of suspicious but used items
        self.examples: List[str] = []
        self.max_examples = max_examples

    def _note(self, message: str, strict: bool) -> None:
        if strict:
            raise DatasetError(message)
        if len(self.examples) < self.max_examples:
            self.examples.append(message)

    def skip(self, cause: str, where: str, why: str, strict: bool, count: int = 1) -> None:
        """Count ``count`` items skipped for ``cause``; in strict mode raise ``DatasetError(where: why)``."""
        self._note(f"{where}: {why}", strict)
        self.skipped[cause] += count

    def warn(self, cause: str, where: str, why: str, strict: bool) -> None:
        """Count a problem that does not skip anything (e.g. a text checksum); fatal in strict mode."""
        self._note(f"{where}: {why}", strict)
        self.warnings[cause] += 1

    @property
    def num_skipped(self) -> int:
        """Total number of skipped items."""
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line: mentions read, skipped by cause, warnings, first problems."""
        text = f"read {self.mentions:,} mentions"
        if self.skipped:
            causes = ", ".join(f"{k} {v:,}" for k, v in sorted(self.skipped.items()))
            text += f"; skipped {self.num_skipped:,} ({causes})"
        if self.warnings:
            text += "; warnings: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.warnings.items()))
        if self.examples:
            text += "; first: " + " | ".join(self.examples)
        return text

    def as_dict(self) -> dict:
        """The counts and examples, for JSON output."""
        return {"mentions": self.mentions, "skipped": dict(sorted(self.skipped.items())),
                "warnings": dict(sorted(self.warnings.items())), "examples": list(self.examples)}


# ----------------------------------------------------------------------------- files


def _open_binary(path: PathLike):
    """Open a plain, gzip or bzip2 file (judged by its first bytes) for binary reading."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    with open(path, "rb") as f:
        magic = f.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(path, "rb")
    if magic == b"BZh":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _lines(path: PathLike, report: ReadReport, strict: bool) -> Iterator[Tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 file, newline kept; a line that is not UTF-8 is skipped and reported."""
    with _open_binary(path) as f:
        try:
            for lineno, raw in enumerate(f, 1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    report.skip("bad_utf8", f"{path}:{lineno}", f"not valid UTF-8 ({e.reason} at byte {e.start})",
                                strict)
        except (EOFError, OSError) as e:
            raise DatasetError(f"{path}: unreadable or truncated file ({e})") from None


def iter_json_lines(path: PathLike, report: Optional[ReadReport] = None,
                    strict: bool = False) -> Iterator[Tuple[str, dict]]:
    """``("file:line", object)`` of a JSON-lines file; blank lines are ignored, others must be JSON objects."""
    report = report if report is not None else ReadReport()
    for lineno, line in _lines(path, report, strict):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            report.skip("bad_json", where, f"invalid JSON ({e.msg} at column {e.colno})", strict)
            continue
        if not isinstance(obj, dict):
            report.skip("bad_record", where, f"expected a JSON object, got {type(obj).__name__}", strict)
            continue
        yield where, obj


def _entity_list(value, what: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{what} must be a list of non-empty strings")
    return tuple(value)


# ----------------------------------------------------------------------------- anchors


def read_anchors(path: PathLike, *, lang: Optional[str] = None, strict: bool = False,
                 report: Optional[ReadReport] = None) -> Iterator[Mention]:
    """Mentions of an anchors JSON-lines file (``text``, ``mentions[start, end, entity_id]``, ``lang``)."""
    report = report if report is not None else ReadReport()
    for where, obj in iter_json_lines(path, report, strict):
        text, mentions, text_lang = obj.get("text"), obj.get("mentions"), obj.get("lang", lang)
        doc_id = obj.get("id", os.path.basename(os.fspath(path)) + ":" + where.rpartition(":")[2])
        why = None
        if not isinstance(text, str):
            why = "'text' must be a string"
        elif not isinstance(mentions, list):
            why = "'mentions' must be a list"
        elif not isinstance(text_lang, str) or not text_lang:
            why = "'lang' must be a non-empty string (or pass lang=)"
        elif not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
            why = "'id' must be a string or an integer"
        if why is not None:
            lost = max(len(mentions), 1) if isinstance(mentions, list) else 1
            report.skip("bad_record", where, why, strict, count=lost)
            continue
        for index, m in enumerate(mentions):
            try:
                if not isinstance(m, dict):
                    raise ValueError("must be an object")
                start, end, entity = m.get("start"), m.get("end"), m.get("entity_id")
                if not all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
                    raise ValueError("'start' and 'end' must be integers")
                if not 0 <= start < end <= len(text):
                    raise ValueError(f"span {start}-{end} is outside the text (length {len(text)}) or empty")
                if m.get("nil") is True and entity is None:
                    report.skipped["nil"] += 1  # out of the knowledge base: not an error, not an InKB mention
                    continue
                if not isinstance(entity, str) or not entity:
                    raise ValueError("'entity_id' must be a non-empty string")
                if "mention" in m and m["mention"] != text[start:end]:
                    raise ValueError(f"'mention' {m['mention']!r} does not match the text at {start}-{end} "
                                     f"({text[start:end]!r})")
                if not text[start:end].strip():
                    raise ValueError(f"the mention at {start}-{end} is blank")
                candidates = _entity_list(m["candidates"], "'candidates'") if "candidates" in m else None
            except ValueError as e:
                report.skip("bad_mention", where, f"mention #{index}: {e}", strict)
                continue
            report.mentions += 1
            yield Mention(id=f"{doc_id}:{start}-{end}", lang=text_lang, left=text[:start], mention=text[start:end],
                          right=text[end:], entities=(entity,), doc_id=str(doc_id), candidates=candidates,
                          source=where)


# ----------------------------------------------------------------------------- KILT


def _kilt_context(obj: dict) -> Tuple[str, str, str]:
    """(left, mention, right) from the markers in ``input``, else from ``meta``; ValueError if neither."""
    text = obj.get("input")
    if not isinstance(text, str):
        raise ValueError("'input' must be a string")
    if KILT_START in text or KILT_END in text:
        i, j = text.find(KILT_START), text.find(KILT_END)
        if text.count(KILT_START) != 1 or text.count(KILT_END) != 1 or j < i:
            raise ValueError(f"'input' must hold {KILT_START} and {KILT_END} once each, in that order")
        return text[:i], text[i + len(KILT_START): j].strip(), text[j + len(KILT_END):]
    meta = obj.get("meta")
    parts = [meta.get(k) for k in ("left_context", "mention", "right_context")] if isinstance(meta, dict) else []
    if len(parts) == 3 and all(isinstance(p, str) for p in parts):
        # meta's contexts are stripped token strings: keep a space between them and the mention
        left, right = parts[0].rstrip(), parts[2].lstrip()
        return left + " " if left else "", parts[1].strip(), " " + right if right else ""
    raise ValueError(f"no mention: 'input' has no {KILT_START} ... {KILT_END} and 'meta' no left_context/mention/"
                     "right_context")


def _kilt_gold(obj: dict) -> Tuple[str, ...]:
    outputs = obj.get("output")
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ValueError("'output' must be a list of objects")
    answers: Dict[str, None] = {}
    for o in outputs:
        if isinstance(o.get("answer"), str) and o["answer"].strip():
            answers.setdefault(o["answer"].strip())
    if not answers:
        for o in outputs:
            for p in o.get("provenance") or []:
                if isinstance(p, dict) and isinstance(p.get("title"), str) and p["title"].strip():
                    answers.setdefault(p["title"].strip())
    if not answers:
        raise ValueError("no gold entity: no output has an 'answer' or a provenance 'title'")
    return tuple(answers)


def read_kilt(path: PathLike, *, lang: str = "en", strict: bool = False,
              report: Optional[ReadReport] = None) -> Iterator[Mention]:
    """Mentions of a KILT entity-linking JSON-lines file; gold = the answer titles."""
    report = report if report is not None else ReadReport()
    for where, obj in iter_json_lines(path, report, strict):
        try:
            kid = obj.get("id")
            if not isinstance(kid, (str, int)) or isinstance(kid, bool) or kid == "":
                raise ValueError("'id' must be a non-empty string or an integer")
            left, mention, right = _kilt_context(obj)
            if not mention:
                raise ValueError("the marked mention is empty")
            gold = _kilt_gold(obj)
        except ValueError as e:
            report.skip("bad_record", where, str(e), strict)
            continue
        report.mentions += 1
        yield Mention(id=str(kid), lang=lang, left=left, mention=mention, right=right, entities=gold, doc_id=str(kid),
                      source=where)


# ----------------------------------------------------------------------------- Mewsli-9


def _language_dirs(path: PathLike) -> List[Tuple[str, str]]:
    """``(directory name, directory)`` of each language directory under ``path`` (or ``path`` itself)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DatasetError(f"{path}: not a directory (a Mewsli data set is a directory)")
    if os.path.isfile(os.path.join(path, "mentions.tsv")):
        return [(os.path.basename(os.path.normpath(path)), path)]
    found = sorted((name, os.path.join(path, name)) for name in os.listdir(path)
                   if os.path.isfile(os.path.join(path, name, "mentions.tsv")))
    if not found:
        raise DatasetError(f"{path}: no mentions.tsv in it or in its subdirectories "
                           "(expected <lang>/mentions.tsv, <lang>/docs.tsv, <lang>/text/<docid>)")
    return found


class _TsvRows:
    """Rows of a CSV-quoted TSV file with the line each row starts on (quoted fields may span lines)."""

    def __init__(self, path: str, report: ReadReport, strict: bool) -> None:
        self.path = path
        self._lines = _lines(path, report, strict)
        self._next_start: Optional[int] = None

    def _feed(self) -> Iterator[str]:
        for lineno, line in self._lines:
            if self._next_start is None:
                self._next_start = lineno
            yield line

    def __iter__(self) -> Iterator[Tuple[int, List[str]]]:
        reader = csv.reader(self._feed(), delimiter="\t", quotechar='"', doublequote=True, strict=False)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # e.g. a field over the csv module's size limit: the rest cannot be trusted
                raise DatasetError(f"{self.path}:{self._next_start}: {e}") from None
            start, self._next_start = self._next_start, None
            yield start, row


def _doc_checksums(path: str, report: ReadReport, strict: bool) -> Dict[str, str]:
    """``docid -> text_md5`` from a ``docs.tsv`` (empty if it has no ``text_md5`` column)."""
    rows = iter(_TsvRows(path, report, strict))
    header = next(rows, (0, []))[1]
    if "docid" not in header or "text_md5" not in header:
        return {}
    i, j = header.index("docid"), header.index("text_md5")
    return {row[i]: row[j] for _, row in rows if len(row) == len(header) and row[j]}


def read_mewsli(path: PathLike, *, langs: Optional[Sequence[str]] = None, strict: bool = False,
                report: Optional[ReadReport] = None) -> Iterator[Mention]:
    """Mentions of a Mewsli-9 style directory, each checked against its document's text."""
    report = report if report is not None else ReadReport()
    dirs = _language_dirs(path)
    if langs is not None:
        missing = sorted(set(langs) - {name for name, _ in dirs})
        if missing:
            raise DatasetError(f"{path}: no language directory for {', '.join(missing)} "
                               f"(found {', '.join(name for name, _ in dirs)})")
        wanted = set(langs)
        dirs = [(name, d) for name, d in dirs if name in wanted]
    for name, directory in dirs:
        yield from _read_mewsli_language(name, directory, report, strict)


def _read_mewsli_language(name: str, directory: str, report: ReadReport, strict: bool) -> Iterator[Mention]:
    mentions_path = os.path.join(directory, "mentions.tsv")
    docs_path = os.path.join(directory, "docs.tsv")
    checksums = _doc_checksums(docs_path, report, strict) if os.path.isfile(docs_path) else {}
    texts: "OrderedDict[str, Tuple[Optional[str], str]]" = OrderedDict()  # the last few documents read

    def text_of(docid: str) -> Tuple[Optional[str], str]:
        """(text, "") of a document, or (None, why it cannot be read)."""
        if docid in texts:
            texts.move_to_end(docid)
            return texts[docid]
        text_path = os.path.join(directory, "text", docid)
        try:
            with open(text_path, "rb") as f:
                data = f.read()
            result: Tuple[Optional[str], str] = (data.decode("utf-8"), "")
        except FileNotFoundError:
            result = (None, f"document text {text_path} not found")
        except UnicodeDecodeError as e:
            result = (None, f"document text {text_path} is not valid UTF-8 ({e.reason} at byte {e.start})")
        expected = checksums.pop(docid, None)  # popped: each text is checked once, even if read again
        if result[0] is not None and expected is not None and hashlib.md5(data).hexdigest() != expected:
            report.warn("text_md5_mismatch", text_path,
                        f"MD5 {hashlib.md5(data).hexdigest()} differs from text_md5 {expected} in {docs_path}: "
                        "the text was extracted differently (each mention is still checked against it)", strict)
        texts[docid] = result
        if len(texts) > 8:
            texts.popitem(last=False)
        return result

    rows = iter(_TsvRows(mentions_path, report, strict))
    header = next(rows, (0, []))[1]
    absent = [c for c in MEWSLI_COLUMNS if c not in header]
    if absent:
        raise DatasetError(f"{mentions_path}:1: the header lacks column(s) {', '.join(absent)} "
                           f"(found: {', '.join(header) or 'nothing'}; Mewsli-9's mentions.tsv has docid, position, "
                           "length, mention, url, lang, qid, qid_in_refs, freq_bin)")
    col = {c: header.index(c) for c in header}
    for lineno, row in rows:
        where = f"{mentions_path}:{lineno}"
        if row == [] or row == [""]:
            continue
        if len(row) != len(header):
            report.skip("bad_record", where, f"{len(row)} fields, the header has {len(header)}", strict)
            continue
        docid, mention, qid = row[col["docid"]], row[col["mention"]], row[col["qid"]].strip()
        lang = row[col["lang"]].strip() if "lang" in col and row[col["lang"]].strip() else name
        try:
            position, length = int(row[col["position"]]), int(row[col["length"]])
        except ValueError:
            report.skip("bad_record", where, f"position {row[col['position']]!r} and length {row[col['length']]!r} "
                        "must be integers", strict)
            continue
        why = None
        if not docid or docid in (".", "..") or "/" in docid or "\\" in docid or "\0" in docid:
            why = f"docid {docid!r} cannot name a file in text/"
        elif position < 0 or length <= 0:
            why = f"position {position} must be >= 0 and length {length} > 0"
        elif not qid:
            why = "the qid field is empty"
        elif not mention.strip():
            why = "the mention is blank"
        if why is not None:
            report.skip("bad_record", where, why, strict)
            continue
        text, why = text_of(docid)
        if text is None:
            report.skip("missing_text", where, why, strict)
            continue
        found = text[position: position + length]
        if found != mention:
            report.skip("mention_mismatch", where, f"mention {mention!r} does not match the text of {docid} at "
                        f"{position}+{length} ({found!r})", strict)
            continue
        report.mentions += 1
        yield Mention(id=f"{docid}:{position}-{position + length}", lang=lang, left=text[:position], mention=mention,
                      right=text[position + length:], entities=(qid,), doc_id=docid, source=where)


# ----------------------------------------------------------------------------- AIDA CoNLL-YAGO

_DOCSTART = re.compile(r"-DOCSTART-\s*\((\S+)[^)]*\)\s*$")
AIDA_NIL = "--NME--"


def _aida_path(path: PathLike) -> Tuple[str, Optional[str]]:
    """``(file, split)`` of ``FILE`` or ``FILE:split`` (the suffix only when FILE exists and ``path`` does not)."""
    path = os.fspath(path)
    if not os.path.exists(path) and ":" in path:
        file, _, split = path.rpartition(":")
        if split in AIDA_SPLITS and os.path.isfile(file):
            return file, split
    return path, None


def data_path_exists(path: PathLike) -> bool:
    """Whether a data set path names something to read (a file, a directory, or an AIDA ``FILE:split``)."""
    return os.path.exists(path) or _aida_path(path)[1] is not None


def aida_split(doc_id: str) -> str:
    """The split an AIDA document id names: ``testa``, ``testb`` or ``train``."""
    return "testa" if "testa" in doc_id else "testb" if "testb" in doc_id else "train"


def _aida_title(fields: List[str]) -> str:
    """The Wikipedia title of an annotated line: from its URL, else from the YAGO2 name (``\\uXXXX`` escapes)."""
    if len(fields) >= 5 and "/wiki/" in fields[4]:
        title = urllib.parse.unquote(fields[4].rsplit("/wiki/", 1)[1])
    else:
        title = re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), fields[3])
    return title.replace("_", " ").strip()


def aida_documents(path: PathLike, *, splits: Optional[Iterable[str]] = None, strict: bool = False,
                   report: Optional[ReadReport] = None) -> Iterator[Tuple[str, str, dict]]:
    """``(split, "file:line", anchors record)`` of each AIDA document; NIL mentions have ``entity_id`` None, ``nil``."""
    report = report if report is not None else ReadReport()
    wanted = set(splits) if splits is not None else set(AIDA_SPLITS)
    bad = wanted - set(AIDA_SPLITS)
    if bad:
        raise DatasetError(f"unknown AIDA split(s) {', '.join(sorted(bad))}; expected {', '.join(AIDA_SPLITS)}")
    doc: Optional[dict] = None
    where = ""
    sentences: List[List[str]] = []
    length = 0  # characters of the text so far
    open_mention: Optional[dict] = None  # the mention being extended by I lines

    def finish() -> Optional[Tuple[str, str, dict]]:
        if doc is None:
            return None
        doc["text"] = "\n".join(" ".join(tokens) for tokens in sentences if tokens)
        for m in doc["mentions"]:
            check = m.pop("_mention")
            if doc["text"][m["start"]:m["end"]] != check:
                report.warn("mention_mismatch", m.pop("_where"), f"mention {check!r} differs from its tokens "
                            f"{doc['text'][m['start']:m['end']]!r} (the tokens are used)", strict)
            else:
                m.pop("_where")
        split = aida_split(doc["id"])
        return (split, where, doc) if split in wanted else None

    for lineno, line in _lines(path, report, strict):
        here = f"{path}:{lineno}"
        line = line.rstrip("\r\n")
        if line.startswith("-DOCSTART-"):
            done = finish()
            if done:
                yield done
            m = _DOCSTART.match(line)
            if not m:
                report.skip("bad_record", here, "a -DOCSTART- line without '(id ...)'", strict)
                doc = None
                continue
            doc, where, sentences, length, open_mention = {"id": m.group(1), "lang": "en", "mentions": []}, here, \
                [[]], 0, None
            continue
        if doc is None:
            if line.strip():
                report.skip("bad_record", here, "a token before the first -DOCSTART- line", strict)
            continue
        if not line.strip():
            if sentences[-1]:
                length += 1  # the "\n" before the next sentence
                sentences.append([])
            open_mention = None
            continue
        fields = line.split("\t")
        token = fields[0]
        start = length + (1 if sentences[-1] else 0)
        if sentences[-1]:
            length += 1
        sentences[-1].append(token)
        length += len(token)
        if len(fields) == 1:
            open_mention = None
            continue
        why = None
        if len(fields) < 4 or fields[1] not in ("B", "I"):
            why = f"{len(fields)} tab-separated fields; an annotated token has 4 (--NME--) or 6-7: token, B/I, " \
                  "mention, YAGO2 entity[, URL, id, mid]"
        elif fields[3] != AIDA_NIL and len(fields) < 5:
            why = f"entity {fields[3]!r} without its Wikipedia URL"
        elif fields[1] == "I" and (open_mention is None or open_mention["_mention"] != fields[2]):
            why = "an I (inside) token without the B token of the same mention before it"
        if why is not None:
            report.skip("bad_record", here, why, strict)
            open_mention = None
            continue
        if fields[1] == "I":
            open_mention["end"] = length
            continue
        nil = fields[3] == AIDA_NIL
        open_mention = {"start": start, "end": length, "entity_id": None if nil else _aida_title(fields),
                        "_mention": fields[2], "_where": here}
        if nil:
            open_mention["nil"] = True
        doc["mentions"].append(open_mention)
    done = finish()
    if done:
        yield done


def read_aida(path: PathLike, *, splits: Optional[Iterable[str]] = None, strict: bool = False,
              report: Optional[ReadReport] = None) -> Iterator[Mention]:
    """InKB mentions of AIDA CoNLL-YAGO (gold: Wikipedia titles); NIL mentions are counted as skipped ``nil``."""
    report = report if report is not None else ReadReport()
    for _, where, doc in aida_documents(path, splits=splits, strict=strict, report=report):
        text = doc["text"]
        for m in doc["mentions"]:
            if m["entity_id"] is None:
                report.skipped["nil"] += 1
                continue
            start, end = m["start"], m["end"]
            report.mentions += 1
            yield Mention(id=f"{doc['id']}:{start}-{end}", lang="en", left=text[:start], mention=text[start:end],
                          right=text[end:], entities=(m["entity_id"],), doc_id=doc["id"], source=where)


# ----------------------------------------------------------------------------- any format


def detect_format(path: PathLike) -> str:
    """``mewsli`` for a directory; for a JSON-lines file ``kilt`` or ``anchors`` by its first record's keys."""
    if os.path.isdir(path):
        return "mewsli"
    path = _aida_path(path)[0]
    with _open_binary(path) as f:
        for raw in f:
            if not raw.strip():
                continue
            if raw.lstrip(b"\xef\xbb\xbf").startswith(b"-DOCSTART-"):
                return "aida"
            try:
                obj = json.loads(raw.decode("utf-8-sig"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                break
            if isinstance(obj, dict) and "input" in obj:
                return "kilt"
            if isinstance(obj, dict) and "text" in obj and "mentions" in obj:
                return "anchors"
            break
    raise DatasetError(f"{path}: cannot tell the format from its first record; give the format "
                       f"({', '.join(FORMATS)})")


def read_dataset(path: PathLike, fmt: str = "auto", *, strict: bool = False, report: Optional[ReadReport] = None,
                 langs: Optional[Iterable[str]] = None, lang: Optional[str] = None) -> Iterator[Mention]:
    """Mentions of a data set in any of :data:`FORMATS` (``auto``: :func:`detect_format`).

    ``langs`` keeps those Mewsli language directories; ``lang`` is the language of KILT records
    (default ``en``) and of anchors records without one.
    """
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "mewsli":
        return read_mewsli(path, langs=list(langs) if langs is not None else None, strict=strict, report=report)
    if fmt == "kilt":
        return read_kilt(path, lang=lang or "en", strict=strict, report=report)
    if fmt == "anchors":
        return read_anchors(path, lang=lang, strict=strict, report=report)
    if fmt == "aida":
        file, split = _aida_path(path)
        return read_aida(file, splits=[split] if split else None, strict=strict, report=report)
    raise ValueError(f"unknown data set format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
