"""Write the quickstart's knowledge base from Unicode CLDR data (through babel): entity_id<TAB>lang<TAB>name.

Entities and their ids (CLDR / ISO codes, *not* Wikidata ids):

* ``territory:DE``  a two-letter CLDR territory (ISO 3166-1 alpha-2 countries, plus CLDR's few
  extra two-letter areas such as ``territory:EU`` European Union, ``territory:XK`` Kosovo);
* ``region:150``    a numeric UN M.49 grouping CLDR names (``region:150`` Europe, ``region:001``
  World): places too, but not countries, so they are their own type;
* ``language:de``   a CLDR language (with CLDR's regional variants such as ``language:de_AT``);
* ``currency:EUR``  an ISO 4217 currency, historic ones included (their names carry the years).

Left out: CLDR's placeholders, which name no thing (``ZZ`` unknown region, ``XA``/``XB``
pseudo-locales, ``und``/``zxx`` unknown or no language, ``XXX``/``XTS`` unknown or testing
currency). Each entity has one name per locale: its CLDR display name, the primary name in the TSV.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterator, Sequence, Tuple

# mGENRE's seen (Mewsli-9) and unseen (Wikinews-7) languages; the KB has both.
MEWSLI9 = ("ar", "de", "en", "es", "fa", "ja", "sr", "ta", "tr")
WIKINEWS7 = ("zh", "cs", "fr", "it", "pl", "pt", "ru")
DEFAULT_LOCALES = MEWSLI9 + WIKINEWS7
PLACEHOLDERS = {"territory": {"ZZ", "XA", "XB"}, "language": {"und", "zxx"}, "currency": {"XXX", "XTS"}}
ENTITY_TYPES = ("territory", "region", "language", "currency")


def entity_id(kind: str, code: str) -> str:
    """The KB id of a CLDR code: ``territory:DE``, ``region:150``, ``language:de``, ``currency:EUR``."""
    if kind == "territory" and code.isdigit():
        return f"region:{code}"
    return f"{kind}:{code}"


def cldr_names(locales: Sequence[str]) -> Iterator[Tuple[str, str, str]]:
    """(entity_id, lang, name) of every kept territory, language and currency, in each locale."""
    from babel import Locale, UnknownLocaleError

    for lang in locales:
        try:
            locale = Locale.parse(lang)
        except (UnknownLocaleError, ValueError) as e:
            raise ValueError(f"locale {lang!r}: babel has no CLDR data for it ({e})") from None
        for kind, names in (("territory", locale.territories), ("language", locale.languages),
                            ("currency", locale.currencies)):
            for code in sorted(names):
                name = " ".join(names[code].split())
                if code in PLACEHOLDERS[kind] or not name:
                    continue
                yield entity_id(kind, code), lang, name


def cldr_words(lang: str) -> list:
    """Ordinary words of a locale from CLDR, none of them an entity of the KB's kinds: month and day
    names, the long names of measurement units, and the exemplar cities of time zones (cities are
    not KB entities); split at spaces, deduplicated, sorted. Empty for a locale babel does not know.
    make_e2e_data.py puts them around and between the names, so that a word the model has not seen
    in a template is not taken for a mention."""
    from babel import Locale, UnknownLocaleError

    try:
        locale = Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        return []
    phrases = []
    for context in ("format", "stand-alone"):
        phrases += list(locale.months.get(context, {}).get("wide", {}).values())
        phrases += list(locale.days.get(context, {}).get("wide", {}).values())
    for forms in locale.unit_display_names.values():
        if forms.get("long"):
            phrases.append(forms["long"])
    for zone in locale.time_zones.values():
        if zone.get("city"):
            phrases.append(zone["city"])
    return sorted({word for phrase in phrases for word in str(phrase).split()
                   if any(c.isalpha() for c in word) and all(c.isalpha() or c in "-'’." for c in word)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="where to write the TSV (entity_id<TAB>lang<TAB>name)")
    parser.add_argument("--locales", default=",".join(DEFAULT_LOCALES),
                        help="comma-separated CLDR locales (default: the Mewsli-9 and Wikinews-7 languages)")
    args = parser.parse_args(argv)
    import babel
    from babel.core import get_cldr_version

    locales = [x.strip() for x in args.locales.split(",") if x.strip()]
    try:
        rows = list(cldr_names(locales))
    except ValueError as e:
        print(f"make_kb.py: error: {e}", file=sys.stderr)
        return 2
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(f"# CLDR {get_cldr_version()} names via babel {babel.__version__}; ids are CLDR codes, not Wikidata\n")
        f.writelines(f"{e}\t{lang}\t{name}\n" for e, lang, name in rows)
    print(f"{args.output}: {len(rows):,} names of {len({r[0] for r in rows}):,} entities in {len(locales)} languages "
          f"(CLDR {get_cldr_version()}, babel {babel.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
