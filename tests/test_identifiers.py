"""Identifier formats: formatting and parsing both ways, and the canonical choice."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from genre_fairseq.identifiers import FORMATS, check_lang, choose_canonical, format_identifier, parse_identifier

TRICKY_NAMES = ["Albert Einstein", ">>", "a >> b", "x >>", ">> y", "A >> B >> C", "Альберт Эйнштейн",
                "阿尔伯特·爱因斯坦", "ألبرت أينشتاين", "a  b", "e\u0301", "x > > y", " >> "]


@pytest.mark.parametrize("name", TRICKY_NAMES)
@pytest.mark.parametrize("lang", ["en", "zh_yue", "sr-Latn", "be_x_old"])
def test_name_lang_and_lang_name_round_trip(name, lang):
    assert format_identifier(name, lang, "name_lang") == f"{name} >> {lang}"
    assert format_identifier(name, lang, "lang_name") == f"{lang} >> {name}"
    for fmt in ("name_lang", "lang_name"):
        assert parse_identifier(format_identifier(name, lang, fmt), fmt) == (lang, name)


@given(name=st.text(min_size=1, max_size=12), lang=st.from_regex(r"[a-z]{2,3}(_[a-z]{1,4})?", fullmatch=True))
def test_round_trip_any_name(name, lang):
    for fmt in ("name_lang", "lang_name"):
        assert parse_identifier(format_identifier(name, lang, fmt), fmt) == (lang, name)


def test_canonical_is_the_name_or_name_lang_on_collision():
    assert format_identifier("Paris", "fr", "canonical") == "Paris"
    assert format_identifier("Paris", "fr", "canonical", with_lang=True) == "Paris >> fr"
    assert parse_identifier("Paris >> fr", "canonical") == ("", "Paris >> fr")  # looked up whole


@pytest.mark.parametrize("identifier,fmt", [("Albert Einstein", "name_lang"), ("en >>", "lang_name"),
                                            (">> en", "name_lang"), ("Paris >> f r", "name_lang"),
                                            ("x >> ", "name_lang"), (" >> x", "lang_name")])
def test_malformed_identifiers_are_refused(identifier, fmt):
    with pytest.raises(ValueError, match="not a"):
        parse_identifier(identifier, fmt)


@pytest.mark.parametrize("lang", ["", "e n", "a>>b", None])
def test_bad_language_codes(lang):
    with pytest.raises(ValueError, match="invalid language code"):
        check_lang(lang)
    with pytest.raises(ValueError):
        format_identifier("x", lang, "name_lang")


def test_unknown_format_and_empty_name():
    with pytest.raises(ValueError, match="unknown identifier format"):
        format_identifier("x", "en", "title")
    with pytest.raises(ValueError, match="invalid name"):
        format_identifier("", "en", "name_lang")
    assert FORMATS == ("name_lang", "lang_name", "canonical")


def test_choose_canonical_counts_then_priority_then_code():
    names = [("de", "Deutschland"), ("en", "Germany"), ("fr", "Allemagne"), ("en", "A Germany")]
    assert choose_canonical(names) == ("de", "Deutschland")  # smallest code
    assert choose_canonical(names, priority=["en", "de"]) == ("en", "A Germany")  # smallest name in the language
    assert choose_canonical(names, {"fr": 3, "de": 2}, ["en"]) == ("fr", "Allemagne")
    assert choose_canonical(names, {"fr": 2, "de": 2}, ["de"]) == ("de", "Deutschland")
    assert choose_canonical(names, {"xx": 9}, ["fr"]) == ("fr", "Allemagne")  # counts of absent languages ignored
    assert choose_canonical([]) is None
