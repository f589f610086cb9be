"""Tests of the Wikipedia XML dump reader: wikitext -> plain text with exact anchor offsets, resolution, CLI."""
import bz2
import gzip
import json
import random
import re
from pathlib import Path

import pytest

from genre_fairseq.datasets import ReadReport, read_anchors
from genre_fairseq.name_table import NameTable
from trie_tools._io import InputError
from trie_tools.cli import main
from trie_tools.wikipedia import read_redirect_map
from trie_tools.wikipedia_xml import (
    AnchorStats,
    Resolver,
    SiteInfo,
    iter_pages,
    normalize_title,
    page_records,
    parse_wikitext,
    read_xml_redirects,
)

FIXTURES = Path(__file__).parent / "fixtures"
DUMP = FIXTURES / "wikipedia" / "enwiki-sample-pages-articles.xml"
PAGE_SQL, REDIRECT_SQL = FIXTURES / "dumps" / "page.sql", FIXTURES / "dumps" / "redirect.sql"

# The name table of the fixture: sitelink titles (primary) and one redirect name.
NAMES = [("Q90", "en", "Paris", True), ("Q142", "en", "France", True), ("Q13917", "en", "Île-de-France", True),
         ("Q1471", "en", "Seine", True), ("Q621", "en", "Versailles", True), ("Q2001", "en", "Parisii", True),
         ("Q937", "en", "Albert Einstein", True), ("Q90", "fr", "Paris", True),
         # "Paris" is also an alias of another item: the sitelink (primary) one must win
         ("Q7", "en", "Paris", False)]

P0 = "Paris is the capital of france and the largest city of the region. It lies on the Seines banks, near the palace."
P1 = "The city is known as City of Light and is twinned with Nowhere City."
P2 = "The Parisii lived here."
P3 = "In Arabic it is باريس, and a category city."
S0 = "The Seine (עברית ירושלים) flows through Paris and Île-de-France. Einstein swam in it."

# Every anchor of the fixture: (record id, anchor text, start, end, entity id), with the name table,
# the XML's own redirects and the SQL redirects.
EXPECTED = {
    "22989-0": (P0, [("france", 24, 30, "Q142"), ("region", 59, 65, "Q13917"), ("Seines", 82, 88, "Q1471"),
                     ("the palace", 101, 111, "Q621")]),
    "22989-1": (P1, [("City of Light", 21, 34, "Q90")]),
    "22989-2": (P2, [("Parisii", 4, 11, "Q2001")]),
    "22989-3": (P3, []),
    "104-0": (S0, [("Paris", 40, 45, "Q90"), ("Île-de-France", 50, 63, "Q13917"), ("Einstein", 65, 73, "Q937")]),
}


@pytest.fixture(scope="module")
def names(tmp_path_factory):
    path = tmp_path_factory.mktemp("names") / "kb.names"
    NameTable.build(NAMES, path)
    return path


def _resolver(names_path, with_articles=True):
    redirects, articles = read_xml_redirects(DUMP)
    redirects.update(read_redirect_map(PAGE_SQL, REDIRECT_SQL))
    return Resolver("en", redirects, NameTable.load(names_path), articles if with_articles else None)


def _records(path=DUMP, **kwargs):
    return [json.loads(line) for line in page_records(path, lang="en", **kwargs)]


def _as_expected(records):
    out = {}
    for r in records:
        assert r["lang"] == "en" and set(r) == {"id", "lang", "text", "mentions"}
        out[r["id"]] = (r["text"], [(r["text"][m["start"]:m["end"]], m["start"], m["end"], m["entity_id"])
                                    for m in r["mentions"]])
    return out


def test_every_anchor_of_the_fixture(names):
    stats = AnchorStats()
    records = _records(resolver=_resolver(names), stats=stats)
    assert [r["id"] for r in records] == list(EXPECTED)
    assert _as_expected(records) == EXPECTED
    assert stats.pages == 6 and stats.articles == 2 and stats.records == 5
    assert stats.skipped == {"redirect": 1, "disambiguation": 1, "other_namespace": 2}
    assert stats.links_kept == 9
    # Nowhere City and باريس and ירושלים are not articles of this dump; the rest is removed markup
    assert stats.dropped == {"missing_target": 3, "in_template": 2, "in_ref": 1, "in_table": 1, "file": 1,
                             "in_file": 1, "category": 1, "interlanguage": 1, "interwiki": 1, "namespace": 1}
    assert stats.links == 9 + 13
    assert stats.problems == {}


def test_without_article_list_unknown_titles_are_no_entity(names):
    stats = AnchorStats()
    _records(resolver=_resolver(names, with_articles=False), stats=stats)
    assert stats.dropped["no_entity"] == 3 and "missing_target" not in stats.dropped


def test_without_name_table_the_entity_is_the_title():
    redirects, articles = read_xml_redirects(DUMP)
    records = _records(unit="page", resolver=Resolver("en", redirects))
    got = {r["id"]: [(r["text"][m["start"]:m["end"]], m["entity_id"]) for m in r["mentions"]] for r in records}
    assert got["22989"] == [("france", "France"), ("region", "Île-de-France"), ("Seines", "Seine"),
                            ("the palace", "Versailles"), ("City of Light", "Paris"), ("Nowhere City", "Nowhere City"),
                            ("Parisii", "Parisii"), ("باريس", "باريس")]
    assert got["104"] == [("ירושלים", "ירושלים"), ("Paris", "Paris"), ("Île-de-France", "Île-de-France"),
                          ("Einstein", "Einstein")]


def test_page_unit_joins_paragraphs_and_shifts_offsets(names):
    (page, seine) = _records(unit="page", resolver=_resolver(names))
    assert page["id"] == "22989" and page["text"] == "\n\n".join([P0, P1, P2, P3])
    spans = [(page["text"][m["start"]:m["end"]], m["entity_id"]) for m in page["mentions"]]
    assert spans == [("france", "Q142"), ("region", "Q13917"), ("Seines", "Q1471"), ("the palace", "Q621"),
                     ("City of Light", "Q90"), ("Parisii", "Q2001")]
    assert seine["id"] == "104"


def test_site_info_and_pages():
    site = SiteInfo()
    pages = list(iter_pages(DUMP, site=site))
    assert site.dbname == "enwiki" and site.namespaces["category"] == 14 and site.case[0] == "first-letter"
    assert [(p.page_id, p.namespace, p.title, p.redirect) for p in pages] == [
        (22989, 0, "Paris", None), (100, 0, "City of Light", "Paris"), (101, 0, "Mercury", None),
        (102, 14, "Category:Capitals", None), (103, 6, "File:Paris vue.jpg", None), (104, 0, "Seine", None)]
    assert pages[0].line == 20 and pages[0].text.startswith("{{Short description")


def _bz2_multistream(data: bytes) -> bytes:
    """A multistream bz2 like the dumps': the header, then one stream per page, then the footer."""
    text = data.decode()
    first, last = text.index("  <page>"), text.rindex("</page>") + len("</page>\n")
    pieces = [text[:first]] + re.findall(r"  <page>.*?</page>\n", text[first:last], re.S) + [text[last:]]
    assert len(pieces) == 8
    return b"".join(bz2.compress(p.encode()) for p in pieces)


@pytest.mark.parametrize("kind", ["bz2", "multistream", "gz"])
def test_compressed_dumps_give_the_same_records(tmp_path, names, kind):
    data = DUMP.read_bytes()
    packed = {"bz2": bz2.compress, "multistream": _bz2_multistream, "gz": gzip.compress}[kind](data)
    path = tmp_path / f"dump.xml.{kind}"
    path.write_bytes(packed)
    assert _as_expected(_records(path, resolver=_resolver(names))) == EXPECTED


def test_two_workers_keep_order_and_counts(names):
    one, two = AnchorStats(), AnchorStats()
    r1 = _records(resolver=_resolver(names), stats=one)
    r2 = _records(resolver=_resolver(names), stats=two, workers=2, batch_size=1)
    assert r1 == r2 and one.as_dict() == two.as_dict()


def test_records_read_back_with_the_anchors_reader(tmp_path, names):
    path = tmp_path / "anchors.jsonl"
    path.write_text("".join(line + "\n" for line in page_records(DUMP, lang="en", resolver=_resolver(names))),
                    encoding="utf-8")
    report = ReadReport()
    mentions = list(read_anchors(path, report=report, strict=True))
    assert report.mentions == 9 and not report.skipped
    assert [m.mention for m in mentions] == [t for _, spans in EXPECTED.values() for t, *_ in spans]


# ----------------------------------------------------------------------------- wikitext


def _spans(wikitext, **kwargs):
    parsed = parse_wikitext(wikitext, **kwargs)
    return [(text, [(text[a:b], t) for a, b, t in links]) for text, links in parsed.paragraphs]


@pytest.mark.parametrize("wikitext, expected", [
    ("a {{t|x={{u|[[B]]}}|{{{1|}}}}} c", [("a c", [])]),
    # templates that show their text keep it, links included
    ("a {{lang|fr|la [[Ville]]}} b {{Nowrap|[[X]] y}} {{lang|de|Haus|italic=no}}.", [
        ("a la Ville b X y Haus.", [("Ville", "Ville"), ("X", "X")])]),
    ("{{nowrap|{{lang|de|[[Haus]]}}}} {{small}}q", [("Haus q", [("Haus", "Haus")])]),
    ("[[Apple]]s and [[apple|pear]]s, [[Apple]]'s", [("Apples and pears, Apple's", [
        ("Apples", "Apple"), ("pears", "apple"), ("Apple", "Apple")])]),
    ("[[Foo#History|its history]] and [[#Local]]", [("its history and #Local", [("its history", "Foo")])]),
    ("'''[[ Foo_bar |  big  ''cat'' ]]'''", [("big cat", [("big cat", "Foo_bar")])]),
    ("x&amp;[[A&amp;B|A&amp;B]]&nbsp;y", [("x&A&B y", [("A&B", "A&amp;B")])]),  # targets are raw here
    ("<nowiki>[[Not a link]] {{nor}}</nowiki> [[Yes]]", [("[[Not a link]] {{nor}} Yes", [("Yes", "Yes")])]),
    ("== Head [[H]] ==\nOne [[A]]\ntwo\n\n* [[B]] item\n# [[C]]", [
        ("One A\ntwo", [("A", "A")]), ("B item\nC", [("B", "B"), ("C", "C")])]),
    ("see [http://x.org the site] and [http://y.org]", [("see the site and", [])]),
    ("a<ref>[[R]]</ref>b<ref name=n/>c<br/>d __NOTOC__", [("abc d", [])]),
    ("{|\n| [[T]]\n{|\n|[[U]]\n|}\n|}\nafter [[V]]", [("after V", [("V", "V")])]),
    ("[[File:X.png|thumb|a [[Cap]] tion]] [[Image:Y.jpg]]text", [("text", [])]),
    ("[[Help:Contents]] [[:Category:C|cats]] [[wikt:w|word]] [[de:Paris]]", [("Help:Contents cats word", [])]),
    ("[[Ace: a book|Ace]] [[Star Wars: Episode I]]", [("Ace Star Wars: Episode I", [
        ("Ace", "Ace: a book"), ("Star Wars: Episode I", "Star Wars: Episode I")])]),
])
def test_wikitext_to_text_and_spans(wikitext, expected):
    assert _spans(wikitext) == expected


def test_link_trail_follows_the_language():
    assert _spans("[[Haus]]äx [[Café]]é", lang="de") == [("Hausäx Caféé", [("Hausäx", "Haus"), ("Café", "Café")])]
    assert _spans("[[Haus]]äx", lang="en") == [("Hausäx", [("Haus", "Haus")])]
    assert _spans("[[كتاب]]ab", lang="ar") == [("كتابab", [("كتاب", "كتاب")])]
    assert _spans("[[Dog]]s", link_trail="") == [("Dogs", [("Dog", "Dog")])]


@pytest.mark.parametrize("wikitext, text, links, problems", [
    ("a [[Open link and [[B]] more", "a [[Open link and B more", [("B", "B")], ["unclosed_link"]),
    ("a {{open [[C]] more", "a {{open C more", [("C", "C")], ["unclosed_template"]),
    ("ok [[D]]\n{|\n| [[E]] never closed", "ok D", [("D", "D")], ["unclosed_table"]),
    ("x }} y |} [[F]]", "x }} y |} F", [("F", "F")], []),
])
def test_unbalanced_markup_is_kept_literal_and_counted(wikitext, text, links, problems):
    parsed = parse_wikitext(wikitext)
    assert [(t, [(t[a:b], g) for a, b, g in ls]) for t, ls in parsed.paragraphs] == [(text, links)]
    assert parsed.problems == problems


def test_unbalanced_page_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text(DUMP.read_text(encoding="utf-8").replace("[[Parisii]]", "[[Parisii"), encoding="utf-8")
    stats = AnchorStats()
    records = _records(path, stats=stats)
    assert len(records) == 5 and stats.problems == {"unclosed_link": 1}
    assert stats.examples == [f"{path}:20 (page 'Paris'): unclosed link"]
    assert records[2]["text"] == "The [[Parisii lived here." and records[2]["mentions"] == []


def test_random_wikitext_offsets_always_hold():
    """Random mixtures of markup: the anchors found are exactly the labels put in, in order."""
    rng = random.Random(0)
    fillers = ["plain ", "'''bold''' ", "{{tpl|[[Hidden]]}} ", "<ref>[[R]]</ref>", " &amp; ", "\n", "\n\n",
               "ünï ", "עברית ", "[[Category:C]]", "[http://e.org ext] "]
    for _ in range(300):
        parts, labels = [], []
        for _ in range(rng.randint(1, 8)):
            parts.append(rng.choice(fillers))
            label = rng.choice(["Alpha", "beta gamma", "Ωmega", "x"])
            if rng.random() < 0.5:
                parts.append(f"[[Target {len(labels)}|{label}]]")
            else:
                parts.append(f"[[{label}]]")
            labels.append(label)
            parts.append(rng.choice([" ", ", ", "s ", ". "]))
        got = []
        for text, links in parse_wikitext("".join(parts)).paragraphs:
            for a, b, _ in links:
                assert 0 <= a < b <= len(text)
                got.append(text[a:b])
        assert [g.rstrip("s") if g.endswith("s") and g[:-1] in labels else g for g in got] == labels


def test_normalize_title():
    site = SiteInfo()
    assert normalize_title("foo__bar  baz", site) == "Foo bar baz"
    assert normalize_title("île", site) == "Île"
    assert normalize_title("ßtraße", site) == "ßtraße"  # "ß".upper() is two letters: MediaWiki keeps it
    site.case[0] = "case-sensitive"
    assert normalize_title("iPod", site) == "iPod"


# ----------------------------------------------------------------------------- bad input


def test_truncated_bz2_keeps_the_pages_before_and_names_the_file(tmp_path):
    packed = _bz2_multistream(DUMP.read_bytes())
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(packed[: len(packed) - 200])
    seen = []
    with pytest.raises(InputError, match=r"cut\.xml\.bz2: truncated bzip2 file"):
        for page in iter_pages(path):
            seen.append(page.title)
    assert seen == ["Paris", "City of Light", "Mercury", "Category:Capitals", "File:Paris vue.jpg", "Seine"][:len(seen)]
    assert len(seen) >= 4


@pytest.mark.parametrize("content, message", [
    ("<html><body>hi</body></html>", r"x\.xml:1: not a MediaWiki export \(the root element is <html>"),
    ("just some text\n", r"x\.xml:1: not an XML file"),
    ("", r"x\.xml:1: not an XML file"),
    ("<mediawiki>\n<page><title>A</title><ns>0</ns><id>1</id>\n", r"x\.xml:3: malformed XML"),
    ("<mediawiki><page><title>A</title><ns>0</ns><id>one</id></page></mediawiki>", r"x\.xml:1: a <page> without"),
])
def test_not_a_mediawiki_export(tmp_path, content, message):
    path = tmp_path / "x.xml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        list(page_records(path, lang="en"))


# ----------------------------------------------------------------------------- command


def test_command_writes_records_and_counts(tmp_path, names, capsys):
    out, stats = tmp_path / "a.jsonl.gz", tmp_path / "stats.json"
    rc = main(["anchors", "--dump", str(DUMP), "--lang", "en", "--names", str(names), "--xml-redirects",
               "--redirects", str(PAGE_SQL), str(REDIRECT_SQL), "--output", str(out), "--stats", str(stats),
               "--workers", "2", "--quiet"])
    assert rc == 0
    with gzip.open(out, "rt", encoding="utf-8") as f:
        assert _as_expected([json.loads(line) for line in f]) == EXPECTED
    counts = json.loads(stats.read_text())
    assert counts["links_kept"] == 9 and counts["dropped"]["missing_target"] == 3
    assert "links 22: kept 9" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dump", "missing.xml"], "missing.xml: file not found"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--link-trail", "a-"], None),
    (["--link-trail", "z-a"], "--link-trail 'z-a' is not a regex"),
])
def test_command_bad_options_are_one_line(tmp_path, capsys, argv, message):
    args = {"--dump": str(DUMP), "--lang": "en", "--output": str(tmp_path / "o.jsonl"), "--quiet": None}
    for i in range(0, len(argv), 2):
        args[argv[i]] = argv[i + 1]
    flat = ["anchors"] + [x for k, v in args.items() for x in ([k] if v is None else [k, v])]
    rc = main(flat)
    err = capsys.readouterr().err
    if message is None:
        assert rc == 0
        return
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_command_truncated_dump_is_one_line(tmp_path, capsys):
    packed = _bz2_multistream(DUMP.read_bytes())
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(packed[: len(packed) - 200])
    rc = main(["anchors", "--dump", str(path), "--lang", "en", "--output", str(tmp_path / "o.jsonl"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "truncated bzip2 file" in err[0] and "records before it are in" in err[0]


def test_anchor_counts_make_a_mention_table_with_priors(tmp_path, names):
    from genre_fairseq.name_table import MentionTable
    from trie_tools.anchor_priors import anchor_mentions

    path = tmp_path / "anchors.jsonl"
    lines = list(page_records(DUMP, lang="en", resolver=_resolver(names)))
    # the same dump twice, and one more record where "Paris" links to Q7: Q90 must lead with 2 of 3
    extra = json.dumps({"id": "x", "lang": "en", "text": "Paris", "mentions": [
        {"start": 0, "end": 5, "entity_id": "Q7"}, ]})
    path.write_text("\n".join(lines + lines + [extra]) + "\n", encoding="utf-8")
    table_path = tmp_path / "anchors.mentions"
    MentionTable.build(anchor_mentions([path]), table_path)
    with MentionTable.load(table_path) as table:
        assert table.candidates("Paris") == [("Q90", 2), ("Q7", 1)]
        assert table.candidates("City of Light") == [("Q90", 2)]
        assert table.candidates("the palace") == [("Q621", 2)]
        assert len(table) == 9 and table.num_pairs == 10


def test_workers_read_ahead_a_bounded_number_of_pages(monkeypatch):
    """The dump is not read ahead of the workers: memory stays bounded whatever its size."""
    from trie_tools import wikipedia_xml
    from trie_tools.wikipedia_xml import Page

    read = []

    def many_pages(path, site=None, text=True, decompress_process=False):
        for i in range(1000):
            read.append(i)
            yield Page(1, i + 1, 0, f"T{i}", None, f"Page [[T{i + 1}]] text.")

    monkeypatch.setattr(wikipedia_xml, "iter_pages", many_pages)
    records = page_records("unused.xml", lang="en", workers=2, batch_size=1)
    first = next(records)
    assert json.loads(first)["id"] == "1-0"
    assert len(read) <= 6  # the first page, then at most 2 * workers batches of one page in flight
    assert sum(1 for _ in records) == 999


def test_a_page_the_converter_fails_on_is_skipped_counted_and_named(monkeypatch):
    from trie_tools.wikipedia_xml import _Converter

    original = _Converter.convert

    def fragile(self, wikitext):
        if "Seine" in wikitext[:20]:
            raise IndexError("boom")
        return original(self, wikitext)

    monkeypatch.setattr(_Converter, "convert", fragile)
    stats = AnchorStats()
    records = _records(stats=stats)
    assert [r["id"] for r in records] == ["22989-0", "22989-1", "22989-2", "22989-3"]
    assert stats.skipped["conversion_error"] == 1 and stats.articles == 1
    assert stats.examples == [f"{DUMP}:96 (page 'Seine'): conversion error (IndexError: boom)"]


@pytest.mark.skipif(__import__("shutil").which("bzip2") is None, reason="no bzip2 program")
def test_bzip2_child_process_gives_the_same_pages_and_errors(tmp_path, names):
    packed = _bz2_multistream(DUMP.read_bytes())
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(packed)
    assert list(iter_pages(path, decompress_process=True)) == list(iter_pages(DUMP))
    # --workers > 1 decompresses in a child process
    assert _as_expected(_records(path, resolver=_resolver(names), workers=2)) == EXPECTED
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(packed[: len(packed) - 200])
    seen = []
    with pytest.raises(InputError, match=r"cut\.xml\.bz2: truncated bzip2 file \(bzip2: "):
        for page in iter_pages(cut, decompress_process=True):
            seen.append(page.title)
    assert seen == [p.title for p in iter_pages(DUMP)][:len(seen)] and len(seen) >= 4
    # a reader that stops early leaves no child behind
    pages = iter_pages(path, decompress_process=True)
    next(pages)
    pages.close()
