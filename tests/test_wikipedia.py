"""Tests of the MySQL dump scanner, the page/redirect readers and redirect resolution."""
import gzip
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trie_tools import wikipedia
from trie_tools._io import InputError
from trie_tools.wikipedia import (
    PageRow,
    RedirectRow,
    RedirectStats,
    SqlStats,
    iter_pages,
    iter_redirects,
    iter_sql_rows,
    read_redirect_map,
    resolve_redirects,
    unescape_string,
)

FIXTURES = Path(__file__).parent / "fixtures" / "dumps"
PAGE_SQL = FIXTURES / "page.sql"
REDIRECT_SQL = FIXTURES / "redirect.sql"

ARTICLE_PAGES = [
    PageRow(10, 0, "AccessibleComputing"),
    PageRow(12, 0, "Anarchism"),
    PageRow(736, 0, "Albert Einstein"),
    PageRow(3354, 0, "Berlin"),
    PageRow(11867, 0, "Germany"),
    PageRow(22989, 0, "Paris"),
    PageRow(411964, 0, "Computer accessibility"),
    PageRow(5001, 0, "Ivory Coast"),
    PageRow(5002, 0, "Hawaii"),
    PageRow(5003, 0, "Moscow"),
    PageRow(5004, 0, "Beijing"),
    PageRow(5005, 0, "Zürich"),
    PageRow(5006, 0, "São Paulo"),
    PageRow(5007, 0, '"Weird Al" Yankovic'),
    PageRow(5008, 0, "Backslash"),
    PageRow(5009, 0, "Washington, D.C."),
    PageRow(5010, 0, "Tricky (a),(b); c"),
    PageRow(5011, 0, "Rock and roll"),
    PageRow(6001, 0, "Einstein"),
    PageRow(6002, 0, "A. Einstein"),
    PageRow(6003, 0, "Côte d'Ivoire"),
    PageRow(6004, 0, "Hawai'i"),
    PageRow(6005, 0, "Москва"),
    PageRow(6006, 0, "北京"),
    PageRow(6007, 0, "\\"),
    PageRow(6008, 0, "Relativity (Einstein)"),
    PageRow(6009, 0, "Rock 'n' roll"),
    PageRow(6010, 0, "Cycle one"),
    PageRow(6011, 0, "Cycle two"),
    PageRow(6012, 0, "Into cycle"),
    PageRow(6013, 0, "Old name"),
    PageRow(6014, 0, "Wiktionary entry"),
    PageRow(6015, 0, "Einstein category"),
    PageRow(6016, 0, "Via category"),
]
OTHER_PAGES = [
    PageRow(7001, 1, "Albert Einstein"),
    PageRow(7002, 14, "Albert Einstein"),
    PageRow(7003, 1, "Old talk"),
    PageRow(7004, 4, "About"),
]
ALL_REDIRECTS = [
    RedirectRow(10, 0, "Computer accessibility", "", ""),
    RedirectRow(6001, 0, "Albert Einstein", "", ""),
    RedirectRow(6002, 0, "Einstein", "", ""),
    RedirectRow(6003, 0, "Ivory Coast", "", ""),
    RedirectRow(6004, 0, "Hawaii", "", ""),
    RedirectRow(6005, 0, "Moscow", "", ""),
    RedirectRow(6006, 0, "Beijing", "", ""),
    RedirectRow(6007, 0, "Backslash", "", ""),
    RedirectRow(6008, 0, "Albert Einstein", "", "Special relativity"),
    RedirectRow(6009, 0, "Rock and roll", "", ""),
    RedirectRow(6010, 0, "Cycle two", "", ""),
    RedirectRow(6011, 0, "Cycle one", "", ""),
    RedirectRow(6012, 0, "Cycle one", "", ""),
    RedirectRow(6013, 0, "Deleted article", "", ""),
    RedirectRow(6014, 0, "entry", "wikt", ""),
    RedirectRow(6015, 14, "Albert Einstein", "", ""),
    RedirectRow(6016, 0, "Einstein category", "", ""),
    RedirectRow(7003, 1, "Albert Einstein", "", ""),
    RedirectRow(999999, 0, "Paris", "", ""),
]
REDIRECT_MAP = {
    "AccessibleComputing": "Computer accessibility",
    "Einstein": "Albert Einstein",
    "A. Einstein": "Albert Einstein",
    "Côte d'Ivoire": "Ivory Coast",
    "Hawai'i": "Hawaii",
    "Москва": "Moscow",
    "北京": "Beijing",
    "\\": "Backslash",
    "Relativity (Einstein)": "Albert Einstein",
    "Rock 'n' roll": "Rock and roll",
}


# --- readers on the fixtures ---------------------------------------------------------------

def test_pages_of_namespace_zero():
    stats = SqlStats()
    assert list(iter_pages(PAGE_SQL, stats=stats)) == ARTICLE_PAGES
    assert stats.counts() == {"read": 38, "kept": 34, "malformed": 0, "statements": 2,
                              "other_namespace": 4, "interwiki": 0, "undecodable": 0}


def test_pages_of_all_namespaces_keep_file_order():
    got = list(iter_pages(PAGE_SQL, namespace=None))
    assert got == ARTICLE_PAGES + OTHER_PAGES


def test_redirect_rows_default_to_namespace_zero_without_interwiki():
    stats = SqlStats()
    expected = [r for r in ALL_REDIRECTS if r.namespace == 0 and not r.interwiki]
    assert list(iter_redirects(REDIRECT_SQL, stats=stats)) == expected
    assert (stats.read, stats.kept, stats.interwiki, stats.other_namespace) == (19, 16, 1, 2)


def test_all_redirect_rows():
    assert list(iter_redirects(REDIRECT_SQL, namespace=None, interwiki=True)) == ALL_REDIRECTS


def test_redirect_map_from_the_fixture_dumps():
    stats = RedirectStats()
    assert read_redirect_map(PAGE_SQL, REDIRECT_SQL, stats=stats) == REDIRECT_MAP
    assert (stats.redirects, stats.resolved, stats.chained, stats.cycles, stats.missing_source,
            stats.missing_target, stats.interwiki, stats.other_namespace) == (19, 10, 1, 3, 1, 2, 1, 2)
    assert stats.cycle_examples == ["Cycle one"]
    assert stats.page_stats.kept == 34 and stats.redirect_stats.kept == 19
    assert "missing_target=2" in stats.summary()


def test_gzipped_dumps_read_the_same(tmp_path):
    for src in (PAGE_SQL, REDIRECT_SQL):
        with open(src, "rb") as fin, gzip.open(tmp_path / (src.name + ".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    page_gz, redirect_gz = tmp_path / "page.sql.gz", tmp_path / "redirect.sql.gz"
    assert list(iter_pages(page_gz)) == ARTICLE_PAGES
    assert read_redirect_map(page_gz, redirect_gz) == REDIRECT_MAP


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 1000])
def test_any_chunk_size_gives_the_same_rows(chunk_size):
    assert list(iter_pages(PAGE_SQL, namespace=None, chunk_size=chunk_size)) == ARTICLE_PAGES + OTHER_PAGES
    assert list(iter_redirects(REDIRECT_SQL, namespace=None, interwiki=True, chunk_size=chunk_size)) == ALL_REDIRECTS


# --- redirect resolution -------------------------------------------------------------------

def _pages(*titles):
    return [PageRow(i, 0, t) for i, t in enumerate(titles, 1)]


def test_long_chain_resolves_to_its_end():
    pages = _pages("A", "B", "C", "D", "E")
    redirects = [RedirectRow(1, 0, "B", "", ""), RedirectRow(2, 0, "C", "", ""),
                 RedirectRow(3, 0, "D", "", ""), RedirectRow(4, 0, "E", "", "")]
    stats = RedirectStats()
    assert resolve_redirects(pages, redirects, stats=stats) == {"A": "E", "B": "E", "C": "E", "D": "E"}
    assert stats.resolved == 4 and stats.chained == 3


def test_self_redirect_and_cycles_are_dropped():
    pages = _pages("Self", "X", "Y", "Z", "Feeder", "Target", "Ok")
    redirects = [RedirectRow(1, 0, "Self", "", ""),  # Self -> Self
                 RedirectRow(2, 0, "Y", "", ""), RedirectRow(3, 0, "Z", "", ""), RedirectRow(4, 0, "X", "", ""),
                 RedirectRow(5, 0, "Y", "", ""),  # Feeder -> into the X -> Y -> Z -> X cycle
                 RedirectRow(7, 0, "Target", "", "")]
    stats = RedirectStats()
    assert resolve_redirects(pages, redirects, stats=stats) == {"Ok": "Target"}
    assert stats.cycles == 5 and stats.resolved == 1


def test_redirect_through_a_page_that_leaves_the_namespace_is_dropped():
    pages = _pages("Start", "Middle")
    redirects = [RedirectRow(1, 0, "Middle", "", ""), RedirectRow(2, 0, "Middle", "wikt", "")]
    stats = RedirectStats()
    assert resolve_redirects(pages, redirects, stats=stats) == {}
    assert stats.missing_target == 1 and stats.interwiki == 1


def test_pages_of_other_namespaces_are_not_targets():
    pages = [PageRow(1, 0, "Alias"), PageRow(2, 14, "Topic")]
    stats = RedirectStats()
    assert resolve_redirects(pages, [RedirectRow(1, 0, "Topic", "", "")], stats=stats) == {}
    assert stats.missing_target == 1


# --- scanner: escaping, odd syntax, malformed input ------------------------------------------

@pytest.mark.parametrize(
    "body, expected",
    [
        (rb"Hawai\'i", b"Hawai'i"), (b"Rock_''n''_roll", b"Rock_'n'_roll"), (rb"\"q\"", b'"q"'),
        (rb"a\\b", b"a\\b"), (rb"\0\n\r\t\Z\b", b"\0\n\r\t\x1a\b"), (rb"100\%_\_", b"100\\%_\\_"),
        (rb"\x\y", b"xy"), (b"plain", b"plain"), (b"", b""), (rb"\\'", b"\\'"),
    ],
)
def test_unescape_string(body, expected):
    assert unescape_string(body) == expected


def test_whitespace_lowercase_binary_and_hex_values(tmp_path):
    dump = tmp_path / "page.sql"
    dump.write_bytes(
        b"insert into page values\n  (1, 0, _binary 'Foo_bar', 0x41),\n"
        b"  (2 , 0 , 0x4261725F62617A , NULL) ;\n"
        b"INSERT INTO `pagelinks` VALUES (3,0,'Not_a_page');\n"
        b"INSERT INTO `page` VALUES (4,0,'Last',-1.5e3);"  # no final newline
    )
    assert list(iter_pages(dump)) == [PageRow(1, 0, "Foo bar"), PageRow(2, 0, "Bar baz"), PageRow(4, 0, "Last")]
    assert list(iter_sql_rows(dump, "page", 4)) == [(1, 0, b"Foo_bar", b"A"), (2, 0, b"Bar_baz", None),
                                                    (4, 0, b"Last", -1500.0)]


MALFORMED_SQL = (
    b"-- a dump with problems\n"
    b"INSERT INTO `page` VALUES (1,0,'Good_one',0),(2,0,Bare_word,0),(3,0),(4,0,'\xff\xfe',0),(5,0,'Also_good',0);\n"
    b"INSERT INTO `page` VALUES (6,0,'Broken,0),(7,0,'Lost',0);\n"
    b"INSERT INTO `page` VALUES (8,0,'After',0);\n"
    b"INSERT INTO `page` (page_id,page_namespace,page_title) VALUES (9,0,'Named');\n"
    b"INSERT INTO `page` VALUES (10,'x','Bad_namespace',0);\n"
    b"INSERT INTO `page` VALUES (11,0,'Cut at the end"
)


def test_malformed_rows_are_counted_with_line_numbers(tmp_path):
    dump = tmp_path / "page.sql"
    dump.write_bytes(MALFORMED_SQL)
    stats = SqlStats()
    # Row 6's string swallows "),(7,0,": the reader resumes at "(7" and keeps row 7.
    assert [p.page_id for p in iter_pages(dump, stats=stats, chunk_size=16)] == [1, 5, 7, 8]
    assert stats.malformed == 6 and stats.undecodable == 1
    assert stats.malformed_lines == [2, 2, 2, 3, 5, 6, 7]
    reasons = [reason for _, reason in stats.examples]
    assert reasons[0] == "bad value b'Bare_word'"
    assert reasons[1] == "fewer than 3 columns"
    assert reasons[2].startswith("not UTF-8")
    assert reasons[3] == ("malformed row (value 3: expected ',' or ')' after it, found b\"Lost',0);\\nINSERT INT\"); "
                          "resumed at the next row")
    assert reasons[6] == "malformed row (value 3: a string that is never closed); rest of the statement skipped"
    assert "column list" in reasons[4]


def test_line_numbers_point_at_the_row_not_the_separator(tmp_path):
    dump = tmp_path / "page.sql"
    dump.write_bytes(b"INSERT INTO page VALUES\n (1,0,'A'),\n\n (2,0,B),\n (3,0,'C');\n")
    stats = SqlStats()
    assert [p.page_id for p in iter_pages(dump, stats=stats)] == [1, 3]
    assert stats.malformed_lines == [4]


def test_strict_mode_raises_naming_file_and_line(tmp_path):
    dump = tmp_path / "page.sql"
    dump.write_bytes(MALFORMED_SQL)
    with pytest.raises(ValueError, match=r"page\.sql:2: bad value"):
        list(iter_pages(dump, strict=True))


def test_garbage_between_statements_is_reported(tmp_path):
    dump = tmp_path / "page.sql"
    dump.write_bytes(b"INSERT INTO `page` VALUES (1,0,'A');\nthis is not SQL\nINSERT INTO `page` VALUES (2,0,'B');\n")
    stats = SqlStats()
    # "this is not SQL ... ;" reads as one unknown statement up to the next semicolon.
    assert [p.page_id for p in iter_pages(dump, stats=stats)] == [1]
    dump.write_bytes(b"INSERT INTO `page` VALUES (1,0,'A');\nDELETE FROM 'unterminated\n")
    stats = SqlStats()
    assert [p.page_id for p in iter_pages(dump, stats=stats)] == [1]
    assert stats.malformed_lines == [2]


def test_a_very_long_insert_line_streams_in_small_chunks(tmp_path, monkeypatch):
    titles = [f"Title_{i}_(x),(y);_d\\'e_\xe9\u6f22" for i in range(30000)]
    rows = b",".join(f"({i},{i % 3},'{t}',0,0.5,'20240101000000',NULL)".encode()
                     for i, t in enumerate(titles))
    dump = tmp_path / "page.sql"
    dump.write_bytes(b"-- one long statement\nINSERT INTO `page` VALUES " + rows + b";\n")
    assert b"\n" not in rows and len(rows) > 1_500_000

    peak = [0]
    refill = wikipedia._Scanner.refill

    def watched(self):
        refill(self)
        peak[0] = max(peak[0], len(self.buf))

    monkeypatch.setattr(wikipedia._Scanner, "refill", watched)
    got = list(iter_pages(dump, chunk_size=4096))
    expected = [PageRow(i, 0, t.replace("\\'", "'").replace("_", " ")) for i, t in enumerate(titles) if i % 3 == 0]
    assert got == expected
    assert peak[0] <= 3 * 4096  # the buffer stays near the chunk size, far below the line length


# --- round trip of random rows through MySQL escaping ---------------------------------------

_SPECIAL = "'\"\\(),;_ `\n\r\t\b\x00\x1a%é漢😀"
_texts = st.text(alphabet=st.one_of(st.sampled_from(_SPECIAL), st.characters(exclude_categories=("Cs",))))
_strings = st.one_of(_texts.map(lambda s: s.encode("utf-8")), st.binary(max_size=30))
_values = st.one_of(_strings, st.integers(-(2**63), 2**64), st.floats(allow_nan=False, allow_infinity=False),
                    st.none())


def sql_literal(value, doubled_quotes: bool, escape_tabs: bool) -> bytes:
    """A MySQL literal for `value`, escaped as mysqldump does (optionally '' and \\t too)."""
    if value is None:
        return b"NULL"
    if isinstance(value, (int, float)):
        return repr(value).encode("ascii")
    escapes = {ord("\\"): b"\\\\", ord("'"): b"''" if doubled_quotes else b"\\'", ord('"'): b'\\"',
               0: b"\\0", ord("\n"): b"\\n", ord("\r"): b"\\r", 0x1A: b"\\Z"}
    if escape_tabs:
        escapes[ord("\t")] = b"\\t"
    return b"'" + b"".join(escapes.get(byte, bytes([byte])) for byte in value) + b"'"


@st.composite
def sql_dumps(draw):
    ncols = draw(st.integers(1, 5))
    rows = draw(st.lists(st.lists(_values, min_size=ncols, max_size=ncols).map(tuple), min_size=1, max_size=12))
    pretty = draw(st.booleans())
    comma = b",\n  " if pretty else b","
    statements, start = [], 0
    while start < len(rows):  # mysqldump splits long inserts into several statements
        size = draw(st.integers(1, len(rows) - start))
        literals = [b"(" + (b", " if pretty else b",").join(
            sql_literal(v, draw(st.booleans()), draw(st.booleans())) for v in row) + b")"
            for row in rows[start:start + size]]
        statements.append(b"INSERT INTO `t` VALUES " + comma.join(literals) + b";\n")
        start += size
    other = b"INSERT INTO `t_other` VALUES " + statements[0][len(b"INSERT INTO `t` VALUES "):]
    dump = (b"-- MySQL dump\n/*!40101 SET NAMES utf8mb4 */;\nDROP TABLE IF EXISTS `t`;\n"
            b"CREATE TABLE `t` (\n  `a` varbinary(255) NOT NULL DEFAULT '',\n  `b` int COMMENT 'it''s; (x)'\n)"
            b" ENGINE=InnoDB;\nLOCK TABLES `t` WRITE;\n" + other + b"".join(statements) + b"UNLOCK TABLES;\n")
    return ncols, rows, dump


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("sql") / "t.sql"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=sql_dumps(), chunk_size=st.integers(1, 80))
def test_round_trip_of_random_rows(scratch, case, chunk_size):
    ncols, rows, dump = case
    scratch.write_bytes(dump)
    stats = SqlStats()
    assert list(iter_sql_rows(scratch, "t", ncols, chunk_size=chunk_size, stats=stats)) == rows
    assert stats.malformed == 0 and stats.read == len(rows)
    assert list(iter_sql_rows(scratch, "t", 1, chunk_size=chunk_size)) == [row[:1] for row in rows]


@pytest.mark.parametrize("row,cause,kept,then", [
    (b"(1,0,'A'),x(2,0,'B'),(3,0,'C');", "expected '(' to start a row, found b\"x(2,0,'B'),(3,0,'C')\"", [1, 3],
     "resumed at the next row"),
    # No "),(" after the bad row: nothing to resume at.
    (b"(1,0,'A'),(2,0,'B')x,(3,0,'C');", "after the row's ')': expected ',' or ';', found b\"x,(3,0,'C');\\n\"",
     [1], "rest of the statement skipped"),
])
def test_a_malformed_row_names_its_cause_and_the_next_row_is_read(tmp_path, row, cause, kept, then):
    dump = tmp_path / "page.sql"
    dump.write_bytes(b"INSERT INTO `page` VALUES " + row + b"\n")
    stats = SqlStats()
    assert [p.page_id for p in iter_pages(dump, stats=stats)] == kept
    assert stats.malformed == 1 and stats.read == len(kept) + 1
    assert stats.examples == [(1, f"malformed row ({cause}); {then}")]


def test_page_and_redirect_dumps_in_the_wrong_order_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"redirect\.sql: no INSERT INTO `page` statement, but 2 into `redirect`: "
                                         r"this is the redirect dump, not the page dump \(files given in the wrong"):
        list(iter_pages(FIXTURES / "redirect.sql"))
    with pytest.raises(InputError, match=r"page\.sql: no INSERT INTO `redirect` statement, but 2 into `page`"):
        list(iter_redirects(FIXTURES / "page.sql"))
