"""Import the pickles released with the reference GENRE / mGENRE into this project's formats.

The reference project (facebookresearch/GENRE) ships its prefix trees and its title table
as Python pickles:

``kilt_titles_trie_dict.pkl`` (GENRE)
    a plain nested dict of token ids, ``{2: {tok: {... {2: {}}}}}``: every root-to-leaf
    path is one sequence ``[2] + bpe_ids + [2]``; an empty dict is a leaf. The dict may
    also come wrapped in a ``genre.trie.Trie`` instance (attribute ``trie_dict``).
``titles_lang_all105_marisa_trie_with_redirect.pkl`` (mGENRE)
    a ``genre.trie.MarisaTrie`` instance whose ``trie`` attribute is a ``marisa_trie.Trie``
    holding every sequence written as a string, one character per token (token ``i`` is
    ``chr(i)`` below 55000 and ``chr(i + 10000)`` from there on, skipping the surrogates),
    with ``char2int`` / ``int2char`` and the cached first branch (``zero_iter``,
    ``first_iter``).
``lang_title2wikidataID-normalized_with_redirect.pkl`` (mGENRE)
    ``{(lang, title): {QID, ...}}``.

Tries become a compiled :class:`~genre_fairseq.prefix_tree.PrefixTree`, the title table a
:class:`~genre_fairseq.name_table.NameTable`.

Unpickling is restricted: a pickle can name any importable callable and have it called
(``os.system`` included), and users do not have the ``genre`` package anyway. So
:func:`load_reference_pickle` resolves only an allow-list of globals, maps the reference
classes to inert stand-ins defined here, and refuses everything else with a ``ValueError``
before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import marisa_trie
from tqdm import tqdm

from genre_fairseq.name_table import text_problem
from genre_fairseq.prefix_tree import IDENTIFIER_FORMATS, PrefixTree, dictionary_fingerprint
from trie_tools._io import open_binary
from trie_tools.encode import load_dictionary

__all__ = [
    "ConvertStats",
    "load_reference_pickle",
    "detect_kind",
    "iter_reference_sequences",
    "convert_reference_trie",
    "convert_title_table",
    "convert",
    "add_convert_parser",
    "cmd_convert",
]

logger = logging.getLogger(__name__)

KINDS = ("dict_trie", "marisa_trie", "title_table")

# The reference MarisaTrie's token <-> character mapping: code points 55000..64999 are
# skipped because 0xD800..0xDFFF (surrogates) lie in that range and cannot be stored.
_CHAR_GAP_START = 55000
_CHAR_GAP = 10000

# NameTable's input rule: no C0 control characters in any field.
_CONTROL = re.compile(r"[\x00-\x1f]")
_MAX_EXAMPLES = 5


# ----------------------------------------------------------------------------- safe unpickling


class _ReferenceObject:
    """Base of the stand-ins: a bag of attributes that runs no code of the pickle's choosing."""

    def __setstate__(self, state: Any) -> None:
        # Only a plain attribute dict is accepted; a (dict, slots) state would reach setattr,
        # which is more than a data file needs.
        if not isinstance(state, dict):
            raise ValueError(f"unexpected pickled state of type {type(state).__name__} for {type(self).__name__}")
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} attributes={sorted(map(str, self.__dict__))}>"


class ReferenceMarisaTrie(_ReferenceObject):
    """Stand-in for ``genre.trie.MarisaTrie`` (attributes: trie, char2int, int2char, ...)."""


class ReferenceTrie(_ReferenceObject):
    """Stand-in for ``genre.trie.Trie`` (attributes: trie_dict, len, ...)."""


_STAND_INS = (ReferenceMarisaTrie, ReferenceTrie)


def _new_marisa_trie(*args: Any) -> marisa_trie.Trie:
    # marisa_trie.Trie pickles as REDUCE(Trie, ()) then BUILD(serialized bytes): only the
    # empty constructor call is needed, so nothing else (e.g. a huge key list) is accepted.
    if args:
        raise pickle.UnpicklingError("marisa_trie.Trie is only rebuilt from its serialized state, not from arguments")
    return marisa_trie.Trie()


def _latin1_encode(text: Any, encoding: str = "utf-8", *rest: Any) -> bytes:
    # Protocols 0-2 have no bytes opcode; they write bytes b as _codecs.encode(str, "latin1").
    # Other codecs can be arbitrary registered code, so only this one use is honoured.
    if rest or not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only allowed as encode(str, 'latin1') (pickled bytes)")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor is how protocols 0-1 recreate a plain instance: restrict it to
    # our stand-ins on `object`, where it is just object.__new__(cls).
    if cls not in _STAND_INS or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor is only allowed for the reference trie classes")
    return object.__new__(cls)


# (module, name) -> what it resolves to; nothing else is ever imported or called.
_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("marisa_trie", "Trie"): _new_marisa_trie,
    ("_codecs", "encode"): _latin1_encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): object,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the allow-list; every global passes through find_class."""

    def __init__(self, file: Any, path: str):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        # An overridden find_class receives Python 2 names (copy_reg, __builtin__) unmapped;
        # map them as the default find_class would, so the allow-list and messages use one spelling.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        # The reference classes, wherever a user's copy of the code lived (genre.trie,
        # a vendored my_project.trie, ...): never imported, replaced by the stand-ins.
        if module.split(".")[-1].endswith("trie") and module != "marisa_trie":
            if name == "MarisaTrie":
                return ReferenceMarisaTrie
            if name == "Trie":
                return ReferenceTrie
        raise ValueError(
            f"{self._path}: refusing to unpickle {module}.{name}: not one of the classes of the reference "
            "GENRE pickles (a pickle can run arbitrary code, so only an allow-list is loaded)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise ValueError(f"{self._path}: refusing a pickle with persistent ids (not a reference GENRE file)")


def load_reference_pickle(path: str) -> object:
    """Unpickle a reference GENRE file with the allow-list; ValueError naming the file otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: file not found")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a pickle")
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ValueError(f"{path}: empty file, not a pickle")
    if head in (b"GENRETRI", b"GFNAMES\0", b"GFMENTN\0"):
        raise ValueError(f"{path}: already a genre_fairseq file (magic {head!r}), not a reference pickle")
    try:
        with open_binary(path) as f:
            return _RestrictedUnpickler(f, path).load()
    except ValueError as e:
        if str(e).startswith(f"{path}:"):
            raise  # our own refusal, already naming the file
        raise ValueError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    except EOFError:
        raise ValueError(f"{path}: truncated pickle (the data ends before the pickle's STOP)") from None
    except pickle.UnpicklingError as e:
        if "truncated" in str(e):
            raise ValueError(f"{path}: truncated pickle ({e})") from None
        raise ValueError(f"{path}: not a pickle, or a corrupt one ({e})") from None
    except MemoryError:
        raise ValueError(f"{path}: out of memory while unpickling") from None
    except Exception as e:  # a corrupt stream surfaces as almost any error type
        raise ValueError(f"{path}: not a pickle, or a corrupt one ({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- kinds


def _attrs(obj: Any) -> Dict[str, Any]:
    state = getattr(obj, "__dict__", None)
    return state if isinstance(state, dict) else {}


def _is_token(value: Any) -> bool:
    return type(value) is int and value >= 0  # bool is an int subclass but no token id


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def detect_kind(obj: object) -> str:
    """Which reference format ``obj`` is: "dict_trie", "marisa_trie" or "title_table"; ValueError otherwise."""
    if isinstance(obj, dict):
        if not obj:
            raise ValueError("the pickle holds an empty dict: nothing to convert")
        # Vote over the first few items, so that one malformed record at the start of a
        # title table (skipped later) does not hide what the file is.
        votes = {"dict_trie": 0, "title_table": 0}
        first = None
        for i, (key, value) in enumerate(obj.items()):
            if i == 100:
                break
            first = first or (key, value)
            if _is_token(key) and isinstance(value, dict):
                votes["dict_trie"] += 1
            elif isinstance(key, tuple) and len(key) == 2:
                votes["title_table"] += 1
        if votes["dict_trie"] or votes["title_table"]:
            return max(votes, key=votes.__getitem__)
        key, value = first
        raise ValueError(
            f"unknown kind of dict (first item {key!r:.60} -> {_type_name(value)}): expected a GENRE trie "
            "{token_id: {...}} or a title table {(lang, title): {QID, ...}}"
        )
    if isinstance(obj, marisa_trie.Trie):
        return "marisa_trie"
    attrs = _attrs(obj)
    if isinstance(attrs.get("trie"), marisa_trie.Trie):
        return "marisa_trie"
    if isinstance(attrs.get("trie_dict"), dict):
        return "dict_trie"
    raise ValueError(
        f"unknown kind of object: {_type_name(obj)}; expected a GENRE dict trie, a genre.trie.Trie, "
        "a genre.trie.MarisaTrie or a {(lang, title): {QID, ...}} title table"
    )


# ----------------------------------------------------------------------------- sequences


def _dict_trie_sequences(root: dict) -> Iterator[Tuple[int, ...]]:
    """Every root-to-leaf path of a nested dict trie, depth first, without recursion."""
    path: List[int] = []
    stack = [iter(root.items())]
    on_path = {id(root)}  # a dict reachable from itself would make the walk endless
    seen = {id(root)}  # every non-empty dict entered: a genuine trie enters each once
    checked = False
    nodes = [root]
    while stack:
        try:
            token, child = next(stack[-1])
        except StopIteration:
            stack.pop()
            on_path.discard(id(nodes.pop()))
            if path:
                path.pop()
            continue
        if not _is_token(token):
            raise ValueError(f"trie key {token!r:.40} after prefix {path[:12]} is not a token id (an int >= 0)")
        if not isinstance(child, dict):
            raise ValueError(f"trie node after prefix {(path + [token])[:12]} is a {_type_name(child)}, not a dict")
        if not child:
            yield tuple(path) + (token,)
            continue
        if id(child) in on_path:
            raise ValueError(f"trie node after prefix {(path + [token])[:12]} contains itself (a cycle)")
        if id(child) in seen and not checked:
            # A sub-dict reached twice: the pickle is a DAG, whose paths can be exponentially many.
            _check_expansion(root, path + [token])
            checked = True
        seen.add(id(child))
        path.append(token)
        on_path.add(id(child))
        nodes.append(child)
        stack.append(iter(child.items()))


#: A DAG of shared sub-dicts may expand to at most this many sequences per distinct dict (plus a constant).
EXPANSION_PER_NODE = 8


def _check_expansion(root: dict, where: List[int]) -> None:
    """Refuse a dict trie whose shared sub-dicts expand to far more sequences than it has dicts."""
    # Sequences below each distinct dict, memoized by identity, children before parents (no recursion).
    below: Dict[int, int] = {}
    entered: set = set()
    stack = [root]
    while stack:
        node = stack[-1]
        if id(node) in below:
            stack.pop()
            continue
        pending = [c for c in node.values() if isinstance(c, dict) and c and id(c) not in below]
        if pending:
            if id(node) in entered:  # its children were pushed before and are still not done: a cycle
                raise ValueError(f"a trie node contains itself (a cycle; shared sub-dicts first after prefix "
                                 f"{where[:12]})")
            entered.add(id(node))
            stack.extend(pending)
            continue
        stack.pop()
        below[id(node)] = sum(below[id(c)] if isinstance(c, dict) and c else 1 for c in node.values())
    sequences, nodes = below[id(root)], len(below)
    if sequences > EXPANSION_PER_NODE * nodes + 1000:
        raise ValueError(f"the trie shares sub-dicts (first after prefix {where[:12]}): its {nodes:,} distinct dicts "
                         f"would expand to {sequences:,} sequences; refusing (a reference trie is a tree, "
                         f"each dict under one parent)")


def _token_of_char(ch: str) -> int:
    o = ord(ch)
    if o < _CHAR_GAP_START:
        return o
    if o >= _CHAR_GAP_START + _CHAR_GAP:
        return o - _CHAR_GAP
    raise KeyError(ch)


def _marisa_parts(obj: Any) -> Tuple[marisa_trie.Trie, Optional[dict]]:
    """The marisa trie and the char -> token dict to decode it with (None: the documented mapping)."""
    if isinstance(obj, marisa_trie.Trie):
        return obj, None
    attrs = _attrs(obj)
    trie = attrs.get("trie")
    if not isinstance(trie, marisa_trie.Trie):
        raise ValueError(f"{_type_name(obj)} has no marisa_trie.Trie in its 'trie' attribute")
    char2int = attrs.get("char2int")
    if isinstance(char2int, dict) and char2int:
        # The pickle's own table is what the reference decoded with; check it once so that
        # decoding cannot produce anything but token ids.
        bad = next(((k, v) for k, v in char2int.items() if not (isinstance(k, str) and len(k) == 1 and _is_token(v))), None)
        if bad is not None:
            raise ValueError(f"char2int maps {bad[0]!r:.20} to {bad[1]!r:.20}: expected one character -> a token id")
        return trie, char2int
    return trie, None


def _marisa_sequences(obj: Any) -> Iterator[Tuple[int, ...]]:
    trie, char2int = _marisa_parts(obj)
    decode: Callable[[str], int] = char2int.__getitem__ if char2int is not None else _token_of_char
    empty = 0
    for key in trie.iterkeys():
        if not key:
            empty += 1  # the empty sequence is no identifier (the reference could never emit it)
            continue
        try:
            seq = tuple(map(decode, key))
        except KeyError as e:
            ch = e.args[0] if e.args and isinstance(e.args[0], str) and e.args[0] else "?"
            raise ValueError(f"marisa key {key[:12]!r}: character U+{ord(ch[0]):04X} maps to no token id") from None
        yield seq
    if empty:
        logger.warning("skipped the empty sequence of the marisa trie")


def iter_reference_sequences(obj: object) -> Iterator[Tuple[int, ...]]:
    """Stream the token sequences of a reference trie (dict_trie or marisa_trie), never listing them all."""
    kind = detect_kind(obj)
    if kind == "dict_trie":
        root = obj if isinstance(obj, dict) else _attrs(obj)["trie_dict"]
        return _dict_trie_sequences(root)
    if kind == "marisa_trie":
        return _marisa_sequences(obj)
    raise ValueError("a title table holds no token sequences (convert it to a name table instead)")


class _MixedStart(Exception):
    """The guessed start token is not shared by every sequence (internal: triggers a rebuild)."""


def _guess_start_token(obj: Any, kind: str) -> Optional[int]:
    """The first token every sequence presumably shares (GENRE: 2), or None when they clearly differ."""
    if kind == "dict_trie":
        root = obj if isinstance(obj, dict) else _attrs(obj)["trie_dict"]
        # Exact: the root's keys are the first tokens.
        return next(iter(root)) if len(root) == 1 and _is_token(next(iter(root))) else None
    # marisa lists no "children of the root"; guess from the cached first branch or from the
    # first key, and let the conversion check the guess (_MixedStart when it is wrong).
    zero = _attrs(obj).get("zero_iter")
    if isinstance(zero, list) and len(zero) == 1 and _is_token(zero[0]):
        return zero[0]
    for seq in _marisa_sequences(obj):
        return seq[0]
    return None


def _bounded(
    seqs: Iterable[Tuple[int, ...]], limit: Optional[int], start: Optional[int]
) -> Iterator[Tuple[int, ...]]:
    """Pass sequences through, refusing tokens outside the dictionary and checking the start token."""
    n = 0
    for seq in seqs:
        if limit is not None and max(seq) >= limit:
            raise ValueError(
                f"sequence {list(seq[:16])} has token id {max(seq)}, but the dictionary has only {limit} "
                "symbols: the pickle was made for another dictionary"
            )
        if start is not None and seq[0] != start:
            raise _MixedStart()
        n += 1
        yield seq
    if n == 0:
        raise ValueError("the reference trie holds no sequences: nothing to convert")


def _check_cached_branches(obj: Any, tree: PrefixTree) -> None:
    """Warn when the reference's cached first branch disagrees with its trie (the conversion follows the trie)."""
    attrs = _attrs(obj)
    zero, one = attrs.get("zero_iter"), attrs.get("first_iter")
    if not attrs.get("cache_fist_branch") or not isinstance(zero, list):
        return
    # The reference answered the first two decoding steps from these caches, not from its trie.
    if not all(_is_token(t) for t in zero) or sorted(set(zero)) != tree.allowed([]):
        logger.warning("the pickle's zero_iter %s differs from its trie's first tokens %s",
                       zero[:8], tree.allowed([])[:8])
    elif isinstance(one, list) and len(zero) == 1:
        second = tree.allowed(zero)
        if not all(_is_token(t) for t in one) or sorted(set(one)) != second:
            logger.warning("the pickle's first_iter (%d tokens) differs from its trie's second tokens (%d tokens)",
                           len(set(map(repr, one))), len(second))


def convert_reference_trie(
    obj: object,
    output: str,
    *,
    dictionary: Any = None,
    identifier_format: Optional[str] = None,
    progress: bool = False,
) -> PrefixTree:
    """Compile a reference trie (dict_trie or marisa_trie) into a PrefixTree saved at ``output``."""
    kind = detect_kind(obj)
    if kind not in ("dict_trie", "marisa_trie"):
        raise ValueError(f"a {kind} is not a trie; use convert_title_table")
    if identifier_format is not None and identifier_format not in IDENTIFIER_FORMATS:
        raise ValueError(f"unknown identifier format {identifier_format!r}; expected one of {IDENTIFIER_FORMATS}")
    fingerprint = dictionary_fingerprint(dictionary) if dictionary is not None else None
    limit = len(dictionary) if dictionary is not None else None
    total = None
    if kind == "marisa_trie":
        total = len(_marisa_parts(obj)[0])
    elif not isinstance(obj, dict) and type(_attrs(obj).get("len")) is int:
        total = _attrs(obj)["len"]

    def build(start: Optional[int]) -> PrefixTree:
        seqs = tqdm(
            _bounded(iter_reference_sequences(obj), limit, start),
            total=total, desc="converting", unit=" seqs", disable=not progress, mininterval=1.0,
        )
        try:
            return PrefixTree.from_sequences(
                seqs, dictionary_fingerprint=fingerprint, start_token=start, identifier_format=identifier_format
            )
        finally:
            seqs.close()

    # GENRE sequences all begin with EOS (2), the decoder's start token; recording it lets the
    # search check it against the model. A wrong guess (sequences with different first
    # tokens) costs a second pass without a start token.
    start = _guess_start_token(obj, kind)
    try:
        tree = build(start)
    except _MixedStart:
        logger.info("the sequences do not share one first token: no start token recorded")
        tree = build(None)
    if kind == "marisa_trie":
        _check_cached_branches(obj, tree)
    tree.save(output)
    return PrefixTree.load(output)


# ----------------------------------------------------------------------------- title table


@dataclass
class ConvertStats:
    """Counts of a title-table conversion; the first few skipped records are kept as examples."""

    output: str = ""
    keys: int = 0  # (lang, title) keys read
    records: int = 0  # (QID, lang, title) records read
    kept: int = 0  # records handed to the name table (it collapses duplicates)
    skipped: int = 0  # records that break the name table's rules
    keys_without_ids: int = 0  # keys mapped to an empty set
    examples: List[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        """Count one skipped record and keep its description if it is among the first few."""
        self.skipped += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(text)

    def summary(self) -> str:
        """One line: the counters, then the first problems."""
        text = (
            f"{self.output}: {self.keys:,} (lang, title) keys, {self.records:,} records read, "
            f"{self.kept:,} kept, {self.skipped:,} skipped"
        )
        if self.keys_without_ids:
            text += f", {self.keys_without_ids:,} keys without ids"
        if self.examples:
            text += "; first problems: " + "; ".join(self.examples)
        return text


def _record_problem(qid: Any, lang: Any, title: Any) -> Optional[str]:
    # Fast path for the common, valid record; the slow path names the offending field.
    try:
        if qid and title and _CONTROL.search(lang + title + qid) is None:
            (lang + title + qid).encode("utf-8")
            if type(qid) is str and type(lang) is str and type(title) is str:
                return None
    except (TypeError, UnicodeEncodeError):
        pass
    for name, value, empty_ok in (("lang", lang, True), ("title", title, False), ("QID", qid, False)):
        why = text_problem(value, name, empty_ok=empty_ok)
        if why:
            return why
    return None if all(type(v) is str for v in (qid, lang, title)) else "a field is a str subclass"


def _title_records(obj: dict, stats: ConvertStats, strict: bool, progress: bool) -> Iterator[Tuple[str, str, str]]:
    def bad(text: str) -> None:
        if strict:
            raise ValueError(f"{text} (rerun without --strict to skip such records)")
        stats.problem(text)

    for key, value in tqdm(obj.items(), total=len(obj), desc="converting", unit=" keys",
                           disable=not progress, mininterval=1.0):
        stats.keys += 1
        if not (isinstance(key, tuple) and len(key) == 2):
            stats.records += 1
            bad(f"key {key!r:.80}: expected a (lang, title) tuple")
            continue
        lang, title = key
        if not isinstance(value, (set, frozenset, list, tuple)):
            stats.records += 1
            bad(f"({lang!r:.20}, {title!r:.60}): value has type {_type_name(value)}, not a set of QIDs")
            continue
        if not value:
            stats.keys_without_ids += 1
            continue
        for qid in value:
            stats.records += 1
            why = _record_problem(qid, lang, title)
            if why:
                bad(f"({lang!r:.20}, {title!r:.60}) -> {qid!r:.30}: {why}")
                continue
            stats.kept += 1
            yield qid, lang, title
    if stats.kept == 0:
        raise ValueError(f"the title table has no valid records ({stats.skipped:,} skipped): nothing to convert")


def convert_title_table(
    obj: object,
    output: str,
    *,
    strict: bool = False,
    progress: bool = False,
    meta: Optional[dict] = None,
) -> ConvertStats:
    """Write a reference ``{(lang, title): {QID, ...}}`` table as a NameTable at ``output``."""
    from genre_fairseq.name_table import NameTable

    kind = detect_kind(obj)
    if kind != "title_table":
        raise ValueError(f"a {kind} is not a title table; use convert_reference_trie")
    assert isinstance(obj, dict)
    stats = ConvertStats(output=os.fspath(output))
    # Records stream into the build; an error raised by the generator (strict mode, empty
    # result) aborts the build before the output is touched.
    NameTable.build(_title_records(obj, stats, strict, progress), output, meta=meta or {"source": "GENRE title table"})
    return stats


# ----------------------------------------------------------------------------- command


_KIND_LABELS = {
    "dict_trie": "GENRE dict trie",
    "marisa_trie": "mGENRE marisa trie",
    "title_table": "mGENRE title table",
}


def convert(
    path: str,
    output: str,
    *,
    dict_path: Optional[str] = None,
    identifier_format: Optional[str] = None,
    strict: bool = False,
    progress: bool = True,
) -> str:
    """Convert one reference pickle by its kind (trie -> prefix tree, title table -> name table); a summary line."""
    obj = load_reference_pickle(path)
    try:
        kind = detect_kind(obj)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    label = _KIND_LABELS[kind]
    if kind == "title_table":
        # Refuse rather than ignore options that only mean something for a trie.
        if dict_path is not None or identifier_format is not None:
            raise ValueError(f"{path} is a {label}: --dict and --format apply to tries only")
        try:
            stats = convert_title_table(
                obj, output, strict=strict, progress=progress,
                meta={"source": "GENRE title table", "source_file": os.path.basename(path)},
            )
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        from genre_fairseq.name_table import NameTable

        with NameTable.load(output) as table:
            counts = f"{len(table):,} names, {table.num_entities:,} entities, {table.num_links:,} links"
        return f"{path} ({label}) -> name table {output}: {counts}; " + stats.summary().split(": ", 1)[1]

    dictionary = load_dictionary(dict_path) if dict_path is not None else None
    try:
        tree = convert_reference_trie(
            obj, output, dictionary=dictionary, identifier_format=identifier_format, progress=progress
        )
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    fingerprint = (tree.dictionary_fingerprint[:16] + "...") if tree.dictionary_fingerprint else "none (no --dict)"
    return (
        f"{path} ({label}) -> prefix tree {output}: {len(tree):,} sequences, {tree.num_nodes:,} nodes, "
        f"start token {tree.start_token}, format {tree.identifier_format}, dictionary {fingerprint}"
    )


def cmd_convert(args: argparse.Namespace) -> None:
    """The ``convert`` subcommand: print the summary line; ValueError on bad input."""
    from genre_fairseq.outputs import check_output

    if not os.path.isfile(args.from_genre):
        raise ValueError(f"--from-genre {args.from_genre}: " + ("is a directory, expected a file"
                         if os.path.isdir(args.from_genre) else "file not found"))
    check_output(args.output, "--output", [args.from_genre, args.dict])
    print(
        convert(
            args.from_genre,
            args.output,
            dict_path=args.dict,
            identifier_format=args.format,
            strict=args.strict,
            progress=not args.quiet,
        )
    )


_DESCRIPTION = """\
Import a pickle released with the reference GENRE / mGENRE code (facebookresearch/GENRE).
The kind is detected from the content:

  kilt_titles_trie_dict.pkl                            GENRE nested-dict trie  -> prefix tree
  titles_lang_all105_marisa_trie_with_redirect.pkl     mGENRE marisa trie      -> prefix tree
  lang_title2wikidataID-normalized_with_redirect.pkl   mGENRE title table      -> name table

The pickle is read with an allow-list of classes (the reference's own Trie / MarisaTrie,
marisa_trie.Trie, plain containers); anything else is refused without being run, and the
genre package need not be installed."""

_EPILOG = """\
examples:
  genre-trie convert --from-genre kilt_titles_trie_dict.pkl --dict dict.target.txt \\
      --format canonical --output kilt_titles.trie
  genre-trie convert --from-genre titles_lang_all105_marisa_trie_with_redirect.pkl \\
      --dict dict.target.txt --format name_lang --output mgenre_titles.trie
  genre-trie convert --from-genre lang_title2wikidataID-normalized_with_redirect.pkl \\
      --output mgenre.names"""


def add_convert_parser(subparsers: Any) -> None:
    """Register the ``convert`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "convert",
        help="import a reference GENRE/mGENRE pickle (trie or title table)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from-genre", required=True, metavar="PICKLE",
                   help="the reference pickle: a dict trie, a MarisaTrie or the (lang, title) -> QIDs table")
    p.add_argument("--output", required=True, metavar="OUT",
                   help="where to write the prefix tree (for a trie) or the name table (for a title table)")
    p.add_argument("--dict", default=None, metavar="DICT",
                   help="tries only: the model's target dictionary (dict.txt); records its fingerprint in the "
                   "tree and refuses token ids it does not have. Recommended")
    p.add_argument("--format", choices=IDENTIFIER_FORMATS, default=None,
                   help="tries only: identifier format recorded in the tree header "
                   "(GENRE titles: canonical; mGENRE 'title >> lang': name_lang)")
    p.add_argument("--strict", action="store_true",
                   help="title tables: stop at the first record the name table cannot hold (control "
                   "characters, empty title, non-string) instead of skipping and counting it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_convert)
