"""Anchors from Wikipedia XML dumps: article plain text with the exact offsets of its internal links.

Input: a MediaWiki export (``{lang}wiki-YYYYMMDD-pages-articles[-multistream].xml[.bz2|.gz]``):
``<mediawiki>`` holding ``<siteinfo>`` (its ``<namespaces>``: key, case rule, name) and ``<page>``
elements (``<title>``, ``<ns>``, ``<id>``, optional ``<redirect title=...>``, ``<revision><text>``).
It is streamed with expat, so memory does not grow with the dump; bzip2 (also multistream: several
concatenated streams), gzip and plain files are recognised by their first bytes.

Output: anchors JSON lines, the format ``genre_fairseq.datasets.read_anchors`` reads::

    {"id": "12-0", "lang": "en", "text": "...", "mentions": [{"start": 0, "end": 4, "entity_id": "Q1"}]}

one record per paragraph (id ``<page id>-<paragraph index>``) or per page (id ``<page id>``); offsets
are Python ``str`` indices (code points), ``end`` exclusive, and ``text[start:end]`` is the anchor text.

Wikitext -> plain text (what is kept and removed)
-------------------------------------------------
Removed with their content: comments; templates and template parameters (nested, ``{{...}}``,
``{{{...}}}``), except the few that show their text (:data:`TEXT_TEMPLATES`: ``{{lang|fr|texte}}``
-> ``texte``, ``{{nowrap|[[X]] y}}`` -> ``X y`` with its link); tables (``{| ... |}``, nested); ``<ref>`` and the other tags whose content is not
prose (``references``, ``gallery``, ``math``, ``timeline``, ``syntaxhighlight``, ...); file and image
links with their captions; category links; interlanguage and interwiki links; magic words
(``__TOC__``); heading lines; horizontal rules. Removed, content kept: other HTML tags,
bold/italic quotes, list and indentation markers at line starts, external-link brackets (the
label stays, a bare ``[URL]`` goes). HTML entities are decoded; ``<nowiki>`` content is kept
literally. Runs of spaces collapse to one; lines are stripped; a paragraph is a run of non-blank
lines (joined with ``\\n``), paragraphs of a page are joined with a blank line.

An unclosed ``{{`` or ``[[`` is literal text, as MediaWiki shows it (the page is kept and the problem
counted, with the page's line in the dump); an unclosed table runs to the end of the page, as
MediaWiki renders it (counted too).

Links: ``[[Target]]``, ``[[Target|label]]``, ``[[Target#Section|label]]`` (links to Target) and the
link trail: letters right after ``]]`` join the anchor (``[[apple]]s`` -> ``apples``). The trail
rule is the language's ``$linkTrail`` character class (:data:`LINK_TRAILS`; English ``a-z`` only,
as MediaWiki's default; a language not listed there gets no trail letters beyond ``a-z``; pass
``link_trail`` to override). Targets are normalized as MediaWiki does: underscores -> spaces,
whitespace collapsed, entities decoded, first letter upper-cased when the namespace's case rule is
``first-letter``. A target with a namespace prefix (``Category:``, ``File:``, ``Help:``, ...) or an
interwiki prefix is not an article link: its label is kept as text, without a mention (category,
file and interlanguage links are removed entirely, see above).

Resolution: a target goes through the redirect map (the XML's own redirect pages, read in a first
pass, and/or the SQL dumps' ``read_redirect_map``), then to an entity id through a name table: the
entity whose primary name (its sitelink title) in the language is the title; failing that, the one
entity the table gives for the name (e.g. a redirect name). Without a name table the entity id is
the resolved title itself (GENRE's English identifiers are titles).

Counted (:class:`AnchorStats`): pages read, skipped by reason (other namespace, redirect,
disambiguation), records written, links kept, and links dropped by reason.
"""
from __future__ import annotations

import bz2
import collections
import gzip
import html
import json
import logging
import multiprocessing
import os
import re
import shutil
import subprocess
import xml.parsers.expat
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Tuple

from ._io import InputError, PathLike

__all__ = ["AnchorStats", "DISAMBIGUATION_TEMPLATES", "LINK_TRAILS", "TEXT_TEMPLATES", "Page", "PageText", "Resolver", "SiteInfo", "UNITS", "iter_pages",
           "add_anchors_parser", "cmd_anchors", "normalize_title", "page_records", "parse_wikitext", "read_xml_redirects", "write_anchors"]

logger = logging.getLogger(__name__)

UNITS = ("paragraph", "page")

# MediaWiki's $linkTrail per language (MessagesXx.php), as a character class; "" means no trail.
LINK_TRAILS: Dict[str, str] = {
    "en": "a-z",
    "de": "äöüßa-z",
    "fr": "a-zàâçéèêîôûäëïöüùÇÉÂÊÎÔÛÄËÏÖÜÀÈÙ",
    "es": "a-záéíñóúü",
    "it": "àéèíîìóòúùa-z",
    "nl": "a-zäöüïëéèà",
    "pt": "áâãàéêẽçíòóôõq̃úüűũa-z",
    "pl": "a-zęóąśłżźćńĘÓĄŚŁŻŹĆŃ",
    "ru": "а-яё",
    "ar": "",
    "he": "א-ת",
    "ja": "",
    "zh": "",
}
DEFAULT_LINK_TRAIL = "a-z"

# Tags whose content is not article prose.
_DROP_TAGS = ("ref", "references", "gallery", "math", "chem", "ce", "timeline", "syntaxhighlight", "source",
              "score", "templatedata", "imagemap", "mapframe", "maplink", "graph", "hiero", "inputbox",
              "categorytree", "poem_not_prose", "templatestyles", "indicator", "section")
_DROP_TAG_RE = re.compile(
    r"<(%s)\b[^>]*?/\s*>|<(%s)\b[^>]*>.*?</\2\s*>" % ("|".join(_DROP_TAGS), "|".join(_DROP_TAGS)),
    re.IGNORECASE | re.DOTALL)
_COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_NOWIKI_RE = re.compile(r"<nowiki\s*>(.*?)</nowiki\s*>|<nowiki\s*/>", re.IGNORECASE | re.DOTALL)
_NOWIKI_ESCAPES = {c: f"&#{ord(c)};" for c in "[]{}|'<>=*#:;_"}
_BRACES_RE = re.compile(r"\{{2,}|\}{2,}|^[ \t]*\{\||^[ \t]*\|\}", re.MULTILINE)
_TAG_RE = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*\b[^<>]*>")
_BR_RE = re.compile(r"<br\s*/?>", re.IGNORECASE)
_MAGIC_RE = re.compile(r"__[A-Z]+__")
_QUOTES_RE = re.compile(r"'{2,}")
_SPACES_RE = re.compile(r"[ \t\u00a0]+")
_EXTERNAL_RE = re.compile(r"\[((?:https?:|ftp:|mailto:|//)[^\s\]]+)(?:\s+([^\]]*))?\]")
_LINK_OPEN, _LINK_CLOSE = "[[", "]]"
_HEADING_RE = re.compile(r"^=+.*=+\s*$")
_LIST_PREFIX_RE = re.compile(r"^[*#:;]+\s*")

# Canonical namespace names and common aliases; siteinfo adds the wiki's own (localized) names.
_CANONICAL_NAMESPACES = {
    "media": -2, "special": -1, "talk": 1, "user": 2, "user talk": 3, "project": 4, "project talk": 5,
    "file": 6, "image": 6, "file talk": 7, "image talk": 7, "mediawiki": 8, "mediawiki talk": 9,
    "template": 10, "template talk": 11, "help": 12, "help talk": 13, "category": 14, "category talk": 15,
    "portal": 100, "draft": 118, "module": 828, "wp": 4, "wikipedia": 4, "wt": 5, "cat": 14, "t": 10,
}
# Interwiki prefixes of the Wikimedia projects (links to other projects, not articles of this wiki).
_INTERWIKI = frozenset("""wikipedia w wiktionary wikt wikinews n wikibooks b wikiquote q wikisource s
wikispecies species wikiversity v wikivoyage voy wikimedia foundation wmf commons c meta m metawikimedia
mediawikiwiki mw wikidata d phabricator phab incubator outreach""".split())
_LANG_PREFIX_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})*\Z")

# Templates that show one of their arguments as text (1: the first positional one, -1: the last);
# every other template is removed with its content.
TEXT_TEMPLATES: Dict[str, int] = {"lang": -1, "transl": -1, "transliteration": -1, "nowrap": 1, "nobr": 1,
                                  "small": 1, "smaller": 1, "big": 1, "nobold": 1, "noitalic": 1}

DISAMBIGUATION_TEMPLATES: Dict[str, str] = {
    "en": r"disambiguation|disambig|dab|disamb|hndis|geodis|numberdis|letter-numbercombdisambig|"
          r"set index article|sia|surname|given name|mathdab|hospitaldis|schooldis|roaddis|shipindex",
}


# ----------------------------------------------------------------------------- counts


@dataclass
class AnchorStats:
    """What an anchors run read, wrote and dropped (every link lands in ``links_kept`` or one drop reason)."""

    pages: int = 0  # <page> elements read
    articles: int = 0  # pages of namespace 0 that are not redirects, converted
    skipped: Dict[str, int] = field(default_factory=dict)  # pages not converted, by reason
    records: int = 0  # JSON lines written
    links_kept: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)  # links without a mention, by reason
    problems: Dict[str, int] = field(default_factory=dict)  # pages with unbalanced markup (kept) or errors, by kind
    examples: List[str] = field(default_factory=list)

    MAX_EXAMPLES = 10

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` pages not converted for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` links dropped for ``reason``."""
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def problem(self, kind: str, where: str, detail: str = "") -> None:
        """Count one page with unbalanced markup (or that failed), remembering the first few places."""
        self.problems[kind] = self.problems.get(kind, 0) + 1
        if len(self.examples) < self.MAX_EXAMPLES:
            self.examples.append(f"{where}: {kind.replace('_', ' ')}" + (f" ({detail})" if detail else ""))

    def merge(self, other: "AnchorStats") -> None:
        """Add another run's counts (a worker's) to these."""
        for name in ("pages", "articles", "records", "links_kept"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("skipped", "dropped", "problems"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine[k] = mine.get(k, 0) + v
        self.examples.extend(other.examples[: self.MAX_EXAMPLES - len(self.examples)])

    @property
    def links(self) -> int:
        """All links met: kept plus dropped."""
        return self.links_kept + sum(self.dropped.values())

    def as_dict(self) -> dict:
        """The counts, for JSON output."""
        return {"pages": self.pages, "articles": self.articles, "skipped": dict(sorted(self.skipped.items())),
                "records": self.records, "links": self.links, "links_kept": self.links_kept,
                "dropped": dict(sorted(self.dropped.items())), "problems": dict(sorted(self.problems.items())),
                "examples": list(self.examples)}

    def summary(self) -> str:
        """One line of counts, then the first problems."""
        def fmt(d: Dict[str, int]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items())) or "none"

        text = (f"pages {self.pages:,} (articles {self.articles:,}; skipped: {fmt(self.skipped)}); "
                f"records {self.records:,}; links {self.links:,}: kept {self.links_kept:,}, "
                f"dropped: {fmt(self.dropped)}")
        if self.problems:
            text += f"; pages with unbalanced markup: {fmt(self.problems)}; first: " + " | ".join(self.examples)
        return text


# ----------------------------------------------------------------------------- the XML stream


@dataclass
class SiteInfo:
    """What a dump's ``<siteinfo>`` says: its database name and namespaces (name -> key, key -> case rule)."""

    dbname: str = ""
    namespaces: Dict[str, int] = field(default_factory=dict)  # lower-cased name -> key
    case: Dict[int, str] = field(default_factory=dict)  # key -> "first-letter" or "case-sensitive"

    def namespace_of(self, prefix: str) -> Optional[int]:
        """The namespace key a ``Prefix:`` names, or None."""
        key = prefix.strip().replace("_", " ").lower()
        key = _SPACES_RE.sub(" ", key)
        if key in self.namespaces:
            return self.namespaces[key]
        return _CANONICAL_NAMESPACES.get(key)


class Page(NamedTuple):
    """One ``<page>``: where it starts in the dump, its id, namespace, title, redirect target, wikitext."""

    line: int
    page_id: int
    namespace: int
    title: str
    redirect: Optional[str]
    text: str


class _ExportParser:
    """Expat handlers that collect ``<siteinfo>`` and complete ``<page>`` elements."""

    def __init__(self, path: str, want_text: bool) -> None:
        self.path, self.want_text = path, want_text
        self.parser = xml.parsers.expat.ParserCreate()
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.CharacterDataHandler = self.chars
        self.site = SiteInfo()
        self.pages: List[Page] = []
        self.depth = 0
        self.stack: List[str] = []
        self.buf: List[str] = []
        self.collect = False
        self.cur: Dict[str, object] = {}
        self._ns_key: Optional[int] = None

    def error(self, why: str) -> InputError:
        return InputError(f"{self.path}:{self.parser.CurrentLineNumber}: {why}")

    def start(self, name: str, attrs: Dict[str, str]) -> None:
        name = name.rpartition(":")[2] if ":" in name else name
        if not self.stack and name != "mediawiki":
            raise self.error(f"not a MediaWiki export (the root element is <{name}>, expected <mediawiki>)")
        parent = self.stack[-1] if self.stack else ""
        self.stack.append(name)
        if name == "page":
            self.cur = {"line": self.parser.CurrentLineNumber, "redirect": None, "text": ""}
        elif name == "redirect" and parent == "page":
            self.cur["redirect"] = attrs.get("title", "")
        elif name == "namespace" and parent == "namespaces":
            self._ns_key = int(attrs.get("key", "0"))
            self.site.case[self._ns_key] = attrs.get("case", "first-letter")
            self.buf, self.collect = [], True
        elif (parent == "page" and name in ("title", "ns", "id")) or (parent == "siteinfo" and name == "dbname") \
                or (name == "text" and parent == "revision" and self.want_text):
            self.buf, self.collect = [], True

    def chars(self, data: str) -> None:
        if self.collect:
            self.buf.append(data)

    def end(self, name: str) -> None:
        name = name.rpartition(":")[2] if ":" in name else name
        self.stack.pop()
        parent = self.stack[-1] if self.stack else ""
        if self.collect:
            value = "".join(self.buf)
            self.collect = False
            if name == "namespace":
                if value.strip():
                    self.site.namespaces[value.strip().lower()] = self._ns_key
            elif name == "dbname":
                self.site.dbname = value.strip()
            elif name == "text":
                if parent == "revision" and len(self.stack) >= 2 and self.stack[-2] == "page":
                    self.cur["text"] = value
            elif parent == "page":
                self.cur[name] = value
        if name == "page":
            try:
                page = Page(int(self.cur["line"]), int(str(self.cur.get("id", "")).strip()),
                            int(str(self.cur.get("ns", "0")).strip() or 0), str(self.cur.get("title", "")),
                            self.cur["redirect"], str(self.cur["text"]))  # type: ignore[arg-type]
            except ValueError:
                raise self.error("a <page> without a numeric <id> or <ns>") from None
            self.pages.append(page)


def _chunks(path: PathLike, chunk_size: int, decompress_process: bool = False) -> Iterator[bytes]:
    """Decompressed chunks of a plain, gzip or bzip2 file, then ``b""``; truncation is an ``InputError``.

    ``read1`` hands over what was decompressed before a truncated end, so the pages before it are kept.
    With ``decompress_process`` a bzip2 file is decompressed by a ``bzip2 -dc`` child process (when
    the program exists), so that decompression runs beside the parsing instead of before it.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(3)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    kind = "gzip" if magic[:2] == b"\x1f\x8b" else "bzip2" if magic == b"BZh" else None
    if kind == "bzip2" and decompress_process and shutil.which("bzip2"):
        yield from _bzip2_process_chunks(path, chunk_size)
        return
    opener = {"gzip": gzip.open, "bzip2": bz2.open}.get(kind, open) if kind else open
    with opener(path, "rb") as fh:
        while True:
            try:
                data = fh.read1(chunk_size)
            except EOFError:
                raise InputError(f"{path}: truncated {kind} file (it ends before its end-of-stream marker)") from None
            except (OSError, zlib.error) as e:
                raise InputError(f"{path}: corrupt {kind} data ({e})") from None
            yield data
            if not data:
                return


def _bzip2_process_chunks(path: PathLike, chunk_size: int) -> Iterator[bytes]:
    """Chunks of ``bzip2 -dc path`` (concatenated streams included); its failure is an ``InputError``."""
    proc = subprocess.Popen(["bzip2", "-dc", "--", os.fspath(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            data = proc.stdout.read1(chunk_size)  # type: ignore[union-attr]
            if not data:
                break
            yield data
        error = proc.stderr.read().decode("utf-8", "replace").strip()  # type: ignore[union-attr]
        if proc.wait() != 0:
            why = error.splitlines()[0] if error else f"bzip2 exited with status {proc.returncode}"
            kind = "truncated" if "ends unexpectedly" in error else "corrupt"
            raise InputError(f"{path}: {kind} bzip2 file ({why})")
        yield b""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def iter_pages(path: PathLike, *, site: Optional[SiteInfo] = None, text: bool = True,
               chunk_size: int = 1 << 20, decompress_process: bool = False) -> Iterator[Page]:
    """Pages of a MediaWiki XML export, streamed; ``site`` is filled from ``<siteinfo>`` before the first page."""
    p = _ExportParser(str(path), text)
    if site is not None:
        p.site = site
    seen_root = False
    for data in _chunks(path, chunk_size, decompress_process):
        try:
            p.parser.Parse(data, not data)
        except xml.parsers.expat.ExpatError as e:
            what = "not an XML file" if not seen_root and not p.stack else "malformed XML"
            raise InputError(f"{path}:{e.lineno}: {what} ({xml.parsers.expat.ErrorString(e.code)})") from None
        seen_root = seen_root or bool(p.stack) or bool(p.pages)
        if p.pages:
            yield from p.pages
            p.pages.clear()
    if not seen_root:
        raise InputError(f"{path}:1: not a MediaWiki export (no XML elements)")


# ----------------------------------------------------------------------------- wikitext -> text


class PageText(NamedTuple):
    """A page's plain text as paragraphs, each with its links ``(start, end, raw target)``."""

    paragraphs: List[Tuple[str, List[Tuple[int, int, str]]]]
    dropped: Dict[str, int]  # links removed with their surroundings (in templates, refs, tables, files), by reason
    problems: List[str]  # unbalanced markup kinds


def _count_links(text: str) -> int:
    return text.count(_LINK_OPEN)


def _remove_braces(text: str, dropped: Dict[str, int], problems: List[str]) -> str:
    """Drop templates, parameters and tables (nested); unclosed ``{{`` stays literal, an unclosed table runs to the end."""
    stack: List[Tuple[str, int]] = []  # (kind, start) with kind "t" (template), "p" (parameter), "table"
    spans: List[Tuple[int, int, str]] = []
    for m in _BRACES_RE.finditer(text):
        tok = m.group()
        if tok.startswith("{{"):
            n = len(tok)
            kinds = ["t"] * (n // 2) if n % 2 == 0 else ["p"] + ["t"] * ((n - 3) // 2)
            for i, kind in enumerate(kinds):
                stack.append((kind, m.start()))
        elif tok.startswith("}}"):
            n, pos = len(tok), m.start()
            while n >= 2:
                idx = next((i for i in range(len(stack) - 1, -1, -1) if stack[i][0] != "table"), None)
                if idx is None:
                    break
                kind = stack[idx][0]
                if kind == "p" and n < 3:
                    kind = "t"  # "{{{x}}" : close as a template
                width = 3 if kind == "p" else 2
                start = stack[idx][1]
                del stack[idx:]
                pos += width
                n -= width
                spans.append((start, pos, "in_template"))
        elif tok.lstrip().startswith("{|"):
            stack.append(("table", m.start()))
        else:  # "|}" at a line start
            if stack and stack[-1][0] == "table":
                spans.append((stack.pop()[1], m.end(), "in_table"))
    for kind, start in stack:
        if kind == "table":
            problems.append("unclosed_table")
            spans.append((start, len(text), "in_table"))
            break
    if any(kind != "table" for kind, _ in stack):
        problems.append("unclosed_template")
    if not spans:
        return text
    spans.sort(key=lambda span: (span[0], -span[1]))  # outermost first
    out, last = [], 0
    for start, end, reason in spans:
        if end <= last:
            continue  # inside a span already removed
        start = max(start, last)
        out.append(text[last:start])
        kept = _template_text(text[start:end]) if reason == "in_template" else None
        if kept is not None:
            kept = _remove_braces(kept, dropped, problems)
            out.append(kept)
        lost = _count_links(text[start:end]) - (_count_links(kept) if kept else 0)
        if lost:
            dropped[reason] = dropped.get(reason, 0) + lost
        last = end
    out.append(text[last:])
    return "".join(out)


def _split_arguments(body: str) -> List[str]:
    """A template's name and arguments: ``body`` split at the ``|`` outside nested ``{{ }}`` and ``[[ ]]``."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(body):
        two = body[i:i + 2]
        if two in ("{{", "[["):
            depth, i = depth + 1, i + 2
        elif two in ("}}", "]]"):
            depth, i = max(depth - 1, 0), i + 2
        elif body[i] == "|" and depth == 0:
            parts.append(body[start:i])
            start = i = i + 1
        else:
            i += 1
    parts.append(body[start:])
    return parts


def _template_text(template: str) -> Optional[str]:
    """The text a text-bearing template shows (:data:`TEXT_TEMPLATES`), or None to remove it."""
    if not (template.startswith("{{") and template.endswith("}}")) or template.startswith("{{{"):
        return None
    parts = _split_arguments(template[2:-2])
    which = TEXT_TEMPLATES.get(_SPACES_RE.sub(" ", parts[0].replace("_", " ")).strip().lower())
    if which is None:
        return None
    positional = [a for a in parts[1:] if "=" not in a.split("[[", 1)[0].split("{{", 1)[0]]
    if not positional:
        return ""
    return positional[-1] if which == -1 else positional[which - 1] if len(positional) >= which else ""


def _nowiki(m: re.Match) -> str:
    body = m.group(1) or ""
    return "".join(_NOWIKI_ESCAPES.get(c, c) for c in body)


def _quotes(m: re.Match) -> str:
    n = len(m.group())
    return "'" if n == 4 else "'" * (n - 5) if n > 5 else ""


def _inline(text: str) -> str:
    """Text of a run without links: external-link brackets, tags, quotes, magic words and entities handled."""
    if "[" in text:
        text = _EXTERNAL_RE.sub(lambda m: m.group(2) or "", text)
    if "<" in text:
        text = _TAG_RE.sub("", _BR_RE.sub(" ", text))
    if "''" in text:
        text = _QUOTES_RE.sub(_quotes, text)
    if "__" in text:
        text = _MAGIC_RE.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


class _Line:
    """A line being built: text pieces with single spaces, and link spans."""

    def __init__(self) -> None:
        self.parts: List[str] = []
        self.length = 0
        self.space = True  # the line so far ends with a space (or is empty): leading spaces are dropped
        self.links: List[Tuple[int, int, str]] = []

    def add(self, text: str) -> None:
        text = _SPACES_RE.sub(" ", text)
        if self.space:
            text = text.lstrip(" ")
        if text:
            self.parts.append(text)
            self.length += len(text)
            self.space = text.endswith(" ")

    def link(self, label: str, target: str) -> bool:
        """Add a link's label; False if it is blank (no mention then)."""
        start = self.length
        self.add(label.strip())
        if self.length == start:
            return False
        self.links.append((start, self.length, target))
        return True

    def finish(self) -> Tuple[str, List[Tuple[int, int, str]]]:
        text = "".join(self.parts)
        stripped = text.rstrip(" ")
        return stripped, [(s, min(e, len(stripped)), t) for s, e, t in self.links if s < len(stripped)]


class _Converter:
    """Wikitext of one page -> paragraphs with link spans, under one wiki's namespaces and trail rule."""

    def __init__(self, site: SiteInfo, lang: str, link_trail: Optional[str] = None) -> None:
        self.site = site
        trail = LINK_TRAILS.get(lang, DEFAULT_LINK_TRAIL) if link_trail is None else link_trail
        self.trail = re.compile(f"[{trail}]+") if trail else None

    def classify(self, target: str) -> Tuple[str, str]:
        """(kind, target): kind is article, file, category, interlanguage, interwiki, namespace, self or empty."""
        t = target
        leading_colon = t.lstrip().startswith(":")
        t = t.strip().lstrip(":").strip() if leading_colon else t.strip()
        t = t.split("#", 1)[0] if "#" in t else t
        if not t.strip():
            return ("self" if "#" in target else "empty"), ""
        if ":" in t:
            prefix = t.split(":", 1)[0]
            ns = self.site.namespace_of(prefix)
            if ns is not None and ns != 0:
                if leading_colon:
                    return "namespace", t
                return {6: "file", -2: "file", 14: "category"}.get(ns, "namespace"), t
            written = prefix.strip()
            if written.lower() in _INTERWIKI:
                return "interwiki", t
            # interlanguage links are written in lower case ([[fr:Paris]]); "[[Ace: a book]]" is an article
            if _LANG_PREFIX_RE.match(written):
                return ("interwiki" if leading_colon else "interlanguage"), t
        return "article", t

    def convert(self, wikitext: str) -> PageText:
        """Paragraphs of plain text with links to raw (un-normalized) article targets."""
        dropped: Dict[str, int] = {}
        problems: List[str] = []
        text = _COMMENT_RE.sub("", wikitext) if "<!--" in wikitext else wikitext
        if "<" in text:
            text = _NOWIKI_RE.sub(_nowiki, text)

            def drop_tag(m: re.Match) -> str:
                lost = _count_links(m.group())
                if lost:
                    reason = "in_ref" if (m.group(1) or m.group(2)).lower() == "ref" else "in_tag"
                    dropped[reason] = dropped.get(reason, 0) + lost
                return ""

            text = _DROP_TAG_RE.sub(drop_tag, text)
        if "{" in text:
            text = _remove_braces(text, dropped, problems)
        paragraphs: List[Tuple[str, List[Tuple[int, int, str]]]] = []
        cur_text: List[str] = []
        cur_links: List[Tuple[int, int, str]] = []
        offset = 0

        def flush() -> None:
            nonlocal cur_text, cur_links, offset
            if cur_text:
                paragraphs.append(("\n".join(cur_text), cur_links))
            cur_text, cur_links, offset = [], [], 0

        for raw in text.split("\n"):
            s = raw.strip()
            if not s:
                flush()
                continue
            if s.startswith("=") and _HEADING_RE.match(s):
                dropped["in_heading"] = dropped.get("in_heading", 0) + _count_links(s)
                flush()
                continue
            if s.startswith("----"):
                s = s.lstrip("-")
            if s[0] in "*#:;":
                s = _LIST_PREFIX_RE.sub("", s)
            line_text, links = self._line(s, dropped, problems)
            if not line_text:
                continue
            if cur_text:
                offset += 1  # the "\n" joining lines of a paragraph
            cur_links.extend((offset + a, offset + b, t) for a, b, t in links)
            cur_text.append(line_text)
            offset += len(line_text)
        flush()
        return PageText(paragraphs, dropped, sorted(set(problems)))

    def _line(self, s: str, dropped: Dict[str, int], problems: List[str]) -> Tuple[str, List[Tuple[int, int, str]]]:
        line = _Line()
        i, n = 0, len(s)
        while i < n:
            j = s.find(_LINK_OPEN, i)
            if j < 0:
                line.add(_inline(s[i:]))
                break
            line.add(_inline(s[i:j]))
            end = self._link_end(s, j)
            if end < 0:
                problems.append("unclosed_link")
                dropped["unclosed"] = dropped.get("unclosed", 0) + 1
                line.add(_inline(s[j:j + 2]))
                i = j + 2
                continue
            inner = s[j + 2:end]
            i = end + 2
            target, pipe, label = inner.partition("|")
            kind, clean = self.classify(target)
            if kind in ("file", "category", "interlanguage"):
                # removed with their text; links nested in a file caption go with it
                dropped[kind] = dropped.get(kind, 0) + 1
                nested = _count_links(inner) if kind == "file" else 0
                if nested:
                    dropped["in_file"] = dropped.get("in_file", 0) + nested
                continue
            if "[[" in label:  # a link inside a link label is not a link: keep the text
                label = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", label)
            shown = label if pipe else target.lstrip(":")
            trail = ""
            if self.trail is not None and i < n:
                m = self.trail.match(s, i)
                if m:
                    trail = m.group()
                    i = m.end()
            shown = _inline(shown) + trail
            if kind == "article":
                if not line.link(shown, clean):
                    dropped["empty_label"] = dropped.get("empty_label", 0) + 1
            else:
                dropped[kind] = dropped.get(kind, 0) + 1
                line.add(shown)
        return line.finish()

    @staticmethod
    def _link_end(s: str, j: int) -> int:
        """Index of the ``]]`` closing the link opened at ``j`` (nested ``[[..]]`` in captions skipped), or -1."""
        depth, k = 0, j
        while True:
            o, c = s.find(_LINK_OPEN, k + 2 if k == j else k), s.find(_LINK_CLOSE, k + 2 if k == j else k)
            if c < 0:
                return -1
            if 0 <= o < c:
                depth += 1
                k = o + 2
                continue
            if depth == 0:
                return c
            depth -= 1
            k = c + 2


def parse_wikitext(wikitext: str, *, site: Optional[SiteInfo] = None, lang: str = "en",
                   link_trail: Optional[str] = None) -> PageText:
    """Plain-text paragraphs of one page's wikitext with its article links ``(start, end, raw target)``."""
    return _Converter(site or SiteInfo(), lang, link_trail).convert(wikitext)


# ----------------------------------------------------------------------------- resolution


def normalize_title(title: str, site: SiteInfo, namespace: int = 0) -> str:
    """A title as MediaWiki stores it: entities decoded, ``_`` -> space, spaces collapsed, first letter upper."""
    t = html.unescape(title) if "&" in title else title
    t = _SPACES_RE.sub(" ", t.replace("_", " ")).strip()
    if t and site.case.get(namespace, "first-letter") == "first-letter":
        first = t[0].upper()
        if len(first) == 1:
            t = first + t[1:]
    return t


class Resolver:
    """Target title -> entity id: through redirects, then a name table's sitelinks (or the title itself)."""

    def __init__(self, lang: str, redirects: Optional[Mapping[str, str]] = None, name_table=None,
                 articles: Optional[Iterable[str]] = None) -> None:
        self.lang = lang
        self.redirects = redirects or {}
        self.table = name_table
        self.articles = set(articles) if articles is not None else None
        self._cache: Dict[str, Tuple[Optional[str], str]] = {}

    def resolve(self, title: str) -> Tuple[Optional[str], str]:
        """(entity id, "") or (None, drop reason: missing_target or no_entity)."""
        hit = self._cache.get(title)
        if hit is not None:
            return hit
        final = self.redirects.get(title, title)
        result: Tuple[Optional[str], str]
        if self.table is None:
            if self.articles is not None and final not in self.articles:
                result = (None, "missing_target")
            else:
                result = (final, "")
        else:
            ids = self.table.ids(self.lang, final)
            primary = [e for e in ids if (self.lang, final) in self.table.primary_names(e)]
            if primary:
                result = (primary[0], "")
            elif len(ids) == 1:
                result = (ids[0], "")
            elif self.articles is not None and final not in self.articles:
                result = (None, "missing_target")
            else:
                result = (None, "no_entity" if not ids else "ambiguous")
        if len(self._cache) > 1_000_000:
            self._cache.clear()
        self._cache[title] = result
        return result


def read_xml_redirects(path: PathLike, *, stats: Optional["RedirectStats"] = None,  # noqa: F821
                       site: Optional[SiteInfo] = None) -> Tuple[Dict[str, str], set]:
    """(redirect title -> final article title, set of article titles) of namespace 0, from the dump's own pages."""
    from .wikipedia import PageRow, RedirectRow, RedirectStats, resolve_redirects

    site = site if site is not None else SiteInfo()
    pages: List[PageRow] = []
    redirects: List[RedirectRow] = []
    articles: set = set()
    for page in iter_pages(path, site=site, text=False):
        if page.namespace != 0:
            continue
        pages.append(PageRow(page.page_id, 0, page.title))
        if page.redirect is None:
            articles.add(page.title)
            continue
        target = page.redirect.split("#", 1)[0]
        ns = 0
        if ":" in target:
            prefix, rest = target.split(":", 1)
            key = site.namespace_of(prefix)
            if key is not None and key != 0:
                ns = key
        redirects.append(RedirectRow(page.page_id, ns, normalize_title(target, site, ns) if ns == 0 else target,
                                     "", ""))
    result = resolve_redirects(pages, redirects, stats=stats if stats is not None else RedirectStats())
    return result, articles


# ----------------------------------------------------------------------------- records


class _Job:
    """What a worker needs: the site, language, unit, trail, resolver and the disambiguation rule."""

    def __init__(self, site: SiteInfo, lang: str, unit: str, resolver: Resolver, link_trail: Optional[str],
                 disambiguation: Optional[str], path: str) -> None:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")
        self.site, self.lang, self.unit, self.resolver, self.path = site, lang, unit, resolver, path
        self.converter = _Converter(site, lang, link_trail)
        self.disambiguation = (re.compile(r"\{\{\s*(?:%s)\s*[|}]" % disambiguation, re.IGNORECASE)
                               if disambiguation else None)

    def records(self, page: Page, stats: AnchorStats) -> List[str]:
        """The JSON lines of one page (none for a page that is skipped), counting into ``stats``."""
        stats.pages += 1
        if page.namespace != 0:
            stats.skip("other_namespace")
            return []
        if page.redirect is not None:
            stats.skip("redirect")
            return []
        if self.disambiguation is not None and self.disambiguation.search(page.text):
            stats.skip("disambiguation")
            return []
        where = f"{self.path}:{page.line} (page {page.title!r})"
        try:
            parsed = self.converter.convert(page.text)
        except Exception as e:  # noqa: BLE001 - one odd page must not end a run of hours; it is counted and named
            stats.skip("conversion_error")
            stats.problem("conversion_error", where, f"{type(e).__name__}: {e}")
            return []
        stats.articles += 1
        for kind in parsed.problems:
            stats.problem(kind, where)
        for reason, n in parsed.dropped.items():
            stats.drop(reason, n)
        units: List[Tuple[str, List[dict]]] = []
        for text, links in parsed.paragraphs:
            mentions = []
            for start, end, raw in links:
                entity, why = self.resolver.resolve(normalize_title(raw, self.site))
                if entity is None:
                    stats.drop(why)
                    continue
                stats.links_kept += 1
                mentions.append({"start": start, "end": end, "entity_id": entity})
            units.append((text, mentions))
        if self.unit == "page" and units:
            text, mentions, offset = [], [], 0
            for t, ms in units:
                mentions.extend({"start": m["start"] + offset, "end": m["end"] + offset,
                                 "entity_id": m["entity_id"]} for m in ms)
                text.append(t)
                offset += len(t) + 2
            units = [("\n\n".join(text), mentions)]
            ids = [str(page.page_id)]
        else:
            ids = [f"{page.page_id}-{k}" for k in range(len(units))]
        out = []
        for rid, (text, mentions) in zip(ids, units):
            out.append(json.dumps({"id": rid, "lang": self.lang, "text": text, "mentions": mentions},
                                  ensure_ascii=False))
        stats.records += len(out)
        return out


_WORKER_JOB: Optional[_Job] = None


def _worker_init(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _worker_batch(pages: List[Page]) -> Tuple[List[str], AnchorStats]:
    stats = AnchorStats()
    lines: List[str] = []
    for page in pages:
        lines.extend(_WORKER_JOB.records(page, stats))  # type: ignore[union-attr]
    return lines, stats


def _batches(pages: Iterator[Page], size: int) -> Iterator[List[Page]]:
    batch: List[Page] = []
    for page in pages:
        batch.append(page)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def page_records(path: PathLike, *, lang: str, unit: str = "paragraph", resolver: Optional[Resolver] = None,
                 link_trail: Optional[str] = None, disambiguation: Optional[str] = "default", workers: int = 1,
                 batch_size: int = 64, stats: Optional[AnchorStats] = None,
                 site: Optional[SiteInfo] = None) -> Iterator[str]:
    """Anchors JSON lines (without newline) of a dump's articles, in dump order; counts go to ``stats``.

    ``disambiguation`` is a regex of template names that mark a disambiguation page (skipped);
    ``"default"`` takes :data:`DISAMBIGUATION_TEMPLATES` for the language, ``None`` keeps them all.
    """
    stats = stats if stats is not None else AnchorStats()
    site = site if site is not None else SiteInfo()
    if disambiguation == "default":
        disambiguation = DISAMBIGUATION_TEMPLATES.get(lang)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    pages = iter_pages(path, site=site, decompress_process=workers > 1)
    first = next(pages, None)  # siteinfo is read before the first page: the job needs it
    if first is None:
        return
    job = _Job(site, lang, unit, resolver or Resolver(lang), link_trail, disambiguation, str(path))

    def all_pages() -> Iterator[Page]:
        yield first
        yield from pages

    if workers == 1:
        for page in all_pages():
            yield from job.records(page, stats)
        return
    # Pool.imap would read the whole dump ahead into its task queue when the workers are slower than
    # the XML parser; at most `in_flight` batches are pending here, so memory stays bounded.
    in_flight = 2 * workers
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_init, initargs=(job,)) as pool:
        pending: "collections.deque" = collections.deque()
        for batch in _batches(all_pages(), batch_size):
            pending.append(pool.apply_async(_worker_batch, (batch,)))
            if len(pending) >= in_flight:
                lines, part = pending.popleft().get()
                stats.merge(part)
                yield from lines
        while pending:
            lines, part = pending.popleft().get()
            stats.merge(part)
            yield from lines


def write_anchors(path: PathLike, output, **kwargs) -> AnchorStats:
    """Write :func:`page_records` of a dump to an open text file (one JSON object a line); return the counts."""
    stats = kwargs.pop("stats", None) or AnchorStats()
    for line in page_records(path, stats=stats, **kwargs):
        output.write(line + "\n")
    return stats



# ----------------------------------------------------------------------------- command


def add_anchors_parser(subparsers) -> None:
    """Register the ``anchors`` subcommand of ``genre-trie`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "anchors", help="hyperlink anchors of a Wikipedia XML dump as anchors JSON lines",
        description="Stream a MediaWiki XML dump (.xml, .xml.bz2 incl. multistream, .xml.gz), turn each article's "
        "wikitext into plain text and write every internal link as a mention (start, end, entity_id) in the anchors "
        "JSON-lines format genre-prepare reads. Links are resolved through redirects and, with --names, to entity "
        "ids through the name table's Wikipedia titles (without --names the entity id is the article title). "
        "Pages read, links kept and links dropped by reason are reported.")
    p.add_argument("--dump", required=True, metavar="XML", help="the pages-articles dump (xml, xml.bz2 or xml.gz)")
    p.add_argument("--lang", required=True, metavar="LANG", help="the wiki's language (en for enwiki): the records' "
                   "lang, the name-table language and the link-trail rule")
    p.add_argument("--output", required=True, metavar="ANCHORS.jsonl", help="where to write the records "
                   "(.gz: gzip-compressed)")
    p.add_argument("--unit", choices=UNITS, default="paragraph", help="one record per paragraph (default) or page")
    p.add_argument("--names", metavar="KB.names", help="name table (genre-trie names): title -> entity id")
    p.add_argument("--redirects", nargs=2, metavar=("PAGE_SQL", "REDIRECT_SQL"),
                   help="the wiki's page.sql(.gz) and redirect.sql(.gz), to resolve links to redirects")
    p.add_argument("--xml-redirects", action="store_true",
                   help="read the dump's own redirect pages and article titles first (one extra pass over the "
                   "dump): links to redirects are resolved and links to missing pages are known without --names")
    p.add_argument("--link-trail", metavar="CHARS", default=None,
                   help="characters of the link trail as a regex class body (default: the language's rule, "
                   "'a-z' for English; '' for none)")
    p.add_argument("--keep-disambiguation", action="store_true",
                   help="also convert disambiguation pages (default: skipped, recognised by their templates)")
    p.add_argument("--workers", type=int, default=1, help="processes converting pages (default 1); order is kept")
    p.add_argument("--stats", metavar="JSON", help="also write the counts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar; the summary goes to stderr")
    p.set_defaults(func=cmd_anchors)


def cmd_anchors(args) -> None:
    """Run ``genre-trie anchors``: write the records, print the counts (errors are ValueError/InputError)."""
    import sys

    from tqdm import tqdm

    say = sys.stderr if args.quiet else sys.stdout
    for path in [args.dump, args.names] + list(args.redirects or []):
        if path is not None and not os.path.isfile(path):
            raise InputError(f"{path}: file not found")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.link_trail:
        try:
            re.compile(f"[{args.link_trail}]")
        except re.error as e:
            raise ValueError(f"--link-trail {args.link_trail!r} is not a regex character class body ({e})") from None
    redirects: Dict[str, str] = {}
    articles = None
    if args.redirects:
        from .wikipedia import RedirectStats, read_redirect_map

        rstats = RedirectStats()
        redirects.update(read_redirect_map(*args.redirects, stats=rstats))
        print(f"SQL {rstats.summary()}", file=say)
    site = SiteInfo()
    if args.xml_redirects:
        from .wikipedia import RedirectStats

        rstats = RedirectStats()
        xml_map, articles = read_xml_redirects(args.dump, stats=rstats, site=site)
        for source, target in xml_map.items():
            redirects.setdefault(source, target)
        print(f"XML {rstats.summary()}; articles {len(articles):,}", file=say)
    table = None
    if args.names:
        from genre_fairseq.name_table import NameTable

        table = NameTable.load(args.names)
    resolver = Resolver(args.lang, redirects, table, articles)
    stats = AnchorStats()
    written = 0
    opener = gzip.open if args.output.endswith(".gz") else open
    try:
        with opener(args.output, "wt", encoding="utf-8") as out:
            lines = page_records(args.dump, lang=args.lang, unit=args.unit, resolver=resolver,
                                 link_trail=args.link_trail, workers=args.workers, stats=stats, site=site,
                                 disambiguation=None if args.keep_disambiguation else "default")
            for line in tqdm(lines, unit=" records", disable=args.quiet, mininterval=2.0):
                out.write(line + "\n")
                written += 1
    except InputError as e:
        raise InputError(f"{e} (the {written:,} records before it are in {args.output})") from None
    finally:
        if table is not None:
            table.close()
    print(stats.summary(), file=say)
    if args.stats:
        with open(args.stats, "w", encoding="utf-8") as f:
            json.dump(stats.as_dict(), f, indent=1, sort_keys=True)
    if stats.pages == 0:
        raise InputError(f"{args.dump}: no <page> in the dump")
