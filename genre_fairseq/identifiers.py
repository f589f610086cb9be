"""Identifier strings: what the model generates for an entity name, in each of mGENRE's formats.

============  ======================  ==============================================
format        identifier              example
============  ======================  ==============================================
name_lang     ``name >> lang``         ``Albert Einstein >> it``  (mGENRE's released model)
lang_name     ``lang >> name``         ``it >> Albert Einstein``
canonical     ``name``                 ``Albert Einstein``: one name per entity, in the
                                       language chosen for it; ``name >> lang`` only where
                                       two entities would otherwise share the identifier
============  ======================  ==============================================

GENRE (English only) uses plain titles: the ``canonical`` format with every name in one language.

The separator is ``" >> "`` (space, two ``>``, space). Names may themselves contain ``>>``:
``name_lang`` identifiers are split at the *last* separator and ``lang_name`` at the *first*,
so any name round-trips as long as the language code has no ``" >> "``, which
:func:`check_lang` guarantees. A canonical identifier is looked up whole (see
:func:`parse_identifier`): whether a trailing ``" >> xx"`` is a disambiguating language or
part of the name is decided by the table built with it, not by the string.

Choosing the language of a canonical identifier (:func:`choose_canonical`): the language with
the most mentions of the entity when counts are given; ties, and entities without counts, go to
the earliest language in a priority list, then to the smallest language code. The name is the
entity's primary name in that language (its title or label), the smallest if it has several.
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

__all__ = ["FORMATS", "SEPARATOR", "check_lang", "choose_canonical", "format_identifier", "parse_identifier"]

FORMATS = ("name_lang", "lang_name", "canonical")
SEPARATOR = " >> "
_BAD_LANG = re.compile(r"\s|>>")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown identifier format {fmt!r}; expected one of {', '.join(FORMATS)}")


def check_lang(lang: str) -> str:
    """Return ``lang`` if it can be part of an identifier (non-empty, no whitespace, no ``>>``)."""
    if not isinstance(lang, str) or not lang or _BAD_LANG.search(lang):
        raise ValueError(f"invalid language code {lang!r}: it must be non-empty, without whitespace or '>>'")
    return lang


def format_identifier(name: str, lang: str, fmt: str, *, with_lang: bool = False) -> str:
    """The identifier of ``name`` in ``lang``; ``with_lang`` disambiguates a canonical one."""
    _check_format(fmt)
    if not isinstance(name, str) or not name:
        raise ValueError(f"invalid name {name!r}: it must be a non-empty string")
    if fmt == "canonical" and not with_lang:
        return name
    check_lang(lang)
    if fmt == "lang_name":
        return lang + SEPARATOR + name
    return name + SEPARATOR + lang


def parse_identifier(identifier: str, fmt: str) -> Tuple[str, str]:
    """``(lang, name)`` of an identifier; canonical ones give ``("", identifier)`` (looked up whole)."""
    _check_format(fmt)
    if fmt == "canonical":
        return "", identifier
    if fmt == "name_lang":
        name, sep, lang = identifier.rpartition(SEPARATOR)
    else:
        lang, sep, name = identifier.partition(SEPARATOR)
    if not sep or not name or not lang or _BAD_LANG.search(lang):
        raise ValueError(f"not a {fmt} identifier: {identifier!r}")
    return lang, name


def choose_canonical(
    primary_names: Iterable[Tuple[str, str]],
    counts: Optional[Mapping[str, int]] = None,
    priority: Sequence[str] = (),
) -> Optional[Tuple[str, str]]:
    """The ``(lang, name)`` of an entity's canonical identifier among its primary names; None if it has none."""
    by_lang: Dict[str, str] = {}
    for lang, name in primary_names:
        if lang not in by_lang or name < by_lang[lang]:
            by_lang[lang] = name
    if not by_lang:
        return None
    rank = {lang: i for i, lang in enumerate(priority)}
    counts = counts or {}
    best = min(by_lang, key=lambda lang: (-counts.get(lang, 0), rank.get(lang, len(rank)), lang))
    return best, by_lang[best]
