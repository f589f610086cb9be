"""From dump fixtures to trees: `genre-trie names` -> `genre-trie build` -> PrefixTree/NameTable, and bad input."""
import bz2
import gzip
import os
import shutil
from pathlib import Path

import pytest

from genre_fairseq.identifiers import format_identifier, parse_identifier
from genre_fairseq.name_table import MentionTable, NameTable
from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
from tests.toy import train_sentencepiece, write_gpt2_bpe
from trie_tools.cli import main
from trie_tools.encode import load_dictionary
from trie_tools.encode import GPT2Tokenizer, SentencePieceTokenizer, TargetEncoder

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "dumps")
WIKIDATA = os.path.join(FIXTURES, "wikidata.json")
PAGE_SQL = os.path.join(FIXTURES, "page.sql")
REDIRECT_SQL = os.path.join(FIXTURES, "redirect.sql")
KB_TSV = os.path.join(FIXTURES, "custom_kb.tsv")

# What the fixtures hold (see fixtures/dumps/README.md): the kept items and their English names
# (Wikipedia titles, plus the redirects of page.sql/redirect.sql that resolve to them).
KEPT = {"Q937", "Q183", "Q90", "Q64", "Q900000002", "Q900000005"}
FILTERED = {"Q900000001", "Q900000003"}  # a category and a template (P279)
ENGLISH = {
    "Q937": {"Albert Einstein", "A. Einstein", "Einstein", "Relativity (Einstein)"},
    "Q183": {"Germany"},
    "Q90": {"Paris"},
    "Q64": {"Berlin"},
    "Q900000002": {"Paris (disambiguation)"},
}


def run(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    """Name table + mention table of the Wikidata fixture with enwiki redirects, an SPM model and a name_lang tree."""
    d = tmp_path_factory.mktemp("kb")
    names, mentions = d / "kb.names", d / "kb.mentions"
    assert run("names", "--wikidata", WIKIDATA, "--redirects", PAGE_SQL, REDIRECT_SQL, "--lang", "en",
               "--output", names, "--mentions", mentions, "--quiet") == 0
    with NameTable.load(str(names)) as table:
        texts = [format_identifier(n, lang, "name_lang") for lang, n in table]
    spm_path, dict_path = train_sentencepiece(texts * 3, str(d))
    trie = d / "kb.trie"
    assert run("build", "--names", names, "--format", "name_lang", "--sentencepiece", spm_path, "--dict", dict_path,
               "--output", trie, "--workers", 1, "--quiet") == 0
    return {"dir": d, "names": str(names), "mentions": str(mentions), "spm": spm_path, "dict": dict_path,
            "trie": str(trie)}


def encoder(kb):
    from fairseq.data import Dictionary

    return TargetEncoder(SentencePieceTokenizer(kb["spm"]), Dictionary.load(kb["dict"]))


def test_names_table_holds_titles_and_resolved_redirects(kb):
    with NameTable.load(kb["names"]) as table:
        assert set(table.entity_ids()) == KEPT
        for entity, names in ENGLISH.items():
            assert {n for lang, n in table.names(entity) if lang == "en"} == names
            assert table.primary_names(entity)[0:0] == []  # (exists)
        # Titles are primary, redirects are not.
        assert ("en", "Albert Einstein") in table.primary_names("Q937")
        assert ("en", "Einstein") not in table.primary_names("Q937")
        assert table.ids("en", "Einstein") == ["Q937"]
        assert table.ids("ru", "Эйнштейн, Альберт") == ["Q937"]
        assert table.ids("ja", "テスト") == ["Q900000005"]
        for filtered in FILTERED:
            assert table.names(filtered) == []
        assert table.ids("en", "Category:Albert Einstein") == []
        assert table.ids("en", "Template:Germany") == []
        assert table.meta["redirect_langs"] == ["en"]


def test_mention_table_counts_languages_and_sources(kb):
    with MentionTable.load(kb["mentions"]) as mentions:
        # "Berlin": title in de, en, fr and label in de, en, fr -> 6 (language, source) pairs.
        assert mentions.candidates("Berlin") == [("Q64", 6)]
        # "Einstein": an enwiki redirect, an English alias and a German alias.
        assert mentions.candidates("Einstein") == [("Q937", 3)]
        assert mentions.candidates("Category:Albert Einstein") == []


def test_every_name_is_in_the_tree_decodes_back_and_maps_to_its_entities(kb):
    tree = PrefixTree.load(kb["trie"], verify=True)
    enc = encoder(kb)
    eos = enc.dictionary.eos()
    expected = set()
    with NameTable.load(kb["names"]) as table:
        assert tree.identifier_format == "name_lang"
        assert tree.dictionary_fingerprint == dictionary_fingerprint(enc.dictionary)
        assert tree.name_table_fingerprint == table.fingerprint
        assert tree.start_token == eos
        for entity in KEPT:
            for lang, name in table.names(entity):
                identifier = format_identifier(name, lang, "name_lang")
                seq = tuple([eos] + enc.encode(identifier) + [eos])
                assert seq in tree, identifier
                expected.add(seq)
                assert enc.decode(seq[1:-1]) == identifier
                assert entity in table.ids(*parse_identifier(identifier, "name_lang"))
    assert set(tree) == expected  # nothing else: filtered items are absent


def test_compressed_dumps_give_the_same_table(kb, tmp_path):
    fingerprint = NameTable.load(kb["names"]).fingerprint
    for suffix, opener in ((".gz", gzip.open), (".bz2", bz2.open)):
        packed = tmp_path / ("wikidata.json" + suffix)
        with open(WIKIDATA, "rb") as src, opener(packed, "wb") as dst:
            shutil.copyfileobj(src, dst)
        out = tmp_path / f"kb{suffix}.names"
        assert run("names", "--wikidata", packed, "--redirects", PAGE_SQL, REDIRECT_SQL, "--lang", "en",
                   "--output", out, "--quiet") == 0
        assert NameTable.load(str(out)).fingerprint == fingerprint


def test_encoders_match_fairseqs_bpe(kb, tmp_path):
    from fairseq.data.encoders.gpt2_bpe import GPT2BPE, GPT2BPEConfig
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    texts = ["Albert Einstein >> en", "Эйнштейн, Альберт >> ru", "阿尔伯特·爱因斯坦 >> zh", "Paris >> fr"]
    ours = SentencePieceTokenizer(kb["spm"])
    theirs = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=kb["spm"]))
    assert [" ".join(s) for s in ours.symbols(texts)] == [theirs.encode(t) for t in texts]
    assert [ours.decode(s) for s in ours.symbols(texts)] == texts

    encoder_json, vocab_bpe, _ = write_gpt2_bpe(str(tmp_path), [("Ġ", "P"), ("a", "r"), ("ĠP", "ar"), ("i", "s")])
    gpt2 = GPT2Tokenizer(encoder_json, vocab_bpe)
    fair = GPT2BPE(GPT2BPEConfig(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=vocab_bpe))
    titles = ["Paris", "Paris (disambiguation)", "Москва", "Einstein"]
    assert [" ".join(s) for s in gpt2.symbols(titles)] == [fair.encode(" " + t) for t in titles]
    assert [gpt2.decode(s) for s in gpt2.symbols(titles)] == titles
    no_space = GPT2Tokenizer(encoder_json, vocab_bpe, leading_space=False)
    assert [" ".join(s) for s in no_space.symbols(titles)] == [fair.encode(t) for t in titles]


def test_gpt2_canonical_tree_like_genre(kb, tmp_path):
    """GENRE's setting: English titles, GPT-2 BPE with a leading space, one identifier per entity."""
    encoder_json, vocab_bpe, dict_path = write_gpt2_bpe(str(tmp_path), [("Ġ", "P"), ("a", "r"), ("ĠP", "ar")])
    out = tmp_path / "genre.trie"
    assert run("build", "--names", kb["names"], "--format", "canonical", "--langs", "en", "--gpt2-encoder-json",
               encoder_json, "--gpt2-vocab-bpe", vocab_bpe, "--dict", dict_path, "--output", out,
               "--workers", 2, "--quiet") == 0
    from fairseq.data import Dictionary

    enc = TargetEncoder(GPT2Tokenizer(encoder_json, vocab_bpe), Dictionary.load(dict_path))
    tree = PrefixTree.load(str(out))
    canonical = NameTable.load(str(tmp_path / "genre.canonical.names"))
    assert tree.name_table_fingerprint == canonical.fingerprint
    titles = {"Q937": "Albert Einstein", "Q183": "Germany", "Q90": "Paris", "Q64": "Berlin",
              "Q900000002": "Paris (disambiguation)"}  # Q900000005 has no English name
    assert {e: canonical.names(e) for e in canonical.entity_ids()} == {e: [("", t)] for e, t in titles.items()}
    assert set(tree) == {tuple([2] + enc.encode(t) + [2]) for t in titles.values()}
    assert enc.encode("Paris")[0] == enc.dictionary.index(str(256 + 2))  # "ĠPar" merged with the leading space


def test_canonical_collisions_get_the_language(tmp_path):
    kb_tsv = tmp_path / "kb.tsv"
    kb_tsv.write_text("kb:1\ten\tParis\nkb:1\tfr\tParis\nkb:2\tfr\tParis\nkb:2\ten\tParis, Texas\n"
                      "kb:3\tde\tBerlin\nkb:3\ten\tBerlin\n", encoding="utf-8")
    names = tmp_path / "kb.names"
    assert run("names", "--tsv", kb_tsv, "--output", names, "--quiet") == 0
    counts = tmp_path / "counts.tsv"
    counts.write_text("kb:2\tfr\t5\nkb:2\ten\t1\n", encoding="utf-8")
    spm_path, dict_path = train_sentencepiece(["Paris >> en", "Paris >> fr", "Berlin", "Paris, Texas"] * 5,
                                              str(tmp_path), vocab_size=40)
    assert run("build", "--names", names, "--format", "canonical", "--counts", counts, "--lang-priority", "en",
               "--sentencepiece", spm_path, "--dict", dict_path, "--output", tmp_path / "c.trie",
               "--canonical-table", tmp_path / "c.names", "--workers", 1, "--quiet") == 0
    table = NameTable.load(str(tmp_path / "c.names"))
    # kb:1: no counts -> priority en -> "Paris"; kb:2: counts pick fr -> "Paris", which collides with kb:1.
    assert table.names("kb:1") == [("", "Paris >> en")]
    assert table.names("kb:2") == [("", "Paris >> fr")]
    assert table.names("kb:3") == [("", "Berlin")]
    assert table.ids("", "Paris >> fr") == ["kb:2"]
    assert len(PrefixTree.load(str(tmp_path / "c.trie"))) == 3


# ----------------------------------------------------------------------------- bad input


def test_lookups_shared_by_workers_write_the_same_files(kb, tmp_path, monkeypatch):
    # --workers also splits the tables' key-id lookups and builds a table's two tries at once (above
    # PARALLEL_LOOKUPS lines, here every spool): the name and mention tables are the files one
    # process writes, for each kind of input.
    import genre_fairseq.name_table as name_table

    monkeypatch.setattr(name_table, "PARALLEL_LOOKUPS", 1)
    shared, parallel_ids = [], name_table._parallel_ids
    monkeypatch.setattr(name_table, "_parallel_ids", lambda *a: shared.append(a[3]) or parallel_ids(*a))
    written = {}
    for source in (["--wikidata", WIKIDATA, "--redirects", PAGE_SQL, REDIRECT_SQL, "--lang", "en"],
                   ["--tsv", KB_TSV]):
        for workers in (1, 3):
            out = tmp_path / f"{source[0][2:]}{workers}"
            assert run("names", *source, "--output", f"{out}.names", "--mentions", f"{out}.mentions",
                       "--workers", workers, "--quiet") == 0
            written[source[0], workers] = [open(f"{out}.{kind}", "rb").read() for kind in ("names", "mentions")]
        assert written[source[0], 1] == written[source[0], 3]
        # the larger spool of each table (the name table's keys, the mention table's pairs); the smaller
        # one's trie is built in a process of its own meanwhile
        assert shared == [3, 3]
        shared.clear()
    assert [open(kb[kind], "rb").read() for kind in ("names", "mentions")] == written["--wikidata", 3]


def test_malformed_wikidata_lines_are_counted_or_fatal(tmp_path, capsys):
    bad = os.path.join(FIXTURES, "wikidata-malformed.json")
    assert run("names", "--wikidata", bad, "--output", tmp_path / "m.names", "--sources", "titles,labels") == 0
    out = capsys.readouterr().out
    assert "malformed=4" in out and "wikidata-malformed.json:3 (bad JSON" in out
    assert "wikidata-malformed.json:8 (unexpected structure in Q1" in out
    # The titles alone do not read the labels: line 8's broken labels are not looked at (it is valid
    # JSON, an item without sitelinks); every line is still checked to be JSON.
    assert run("names", "--wikidata", bad, "--output", tmp_path / "t.names") == 0
    out = capsys.readouterr().out
    assert "malformed=3" in out and "empty=2" in out and "wikidata-malformed.json:8" not in out
    assert run("names", "--wikidata", bad, "--output", tmp_path / "s.names", "--strict") == 2
    err = capsys.readouterr().err  # progress bars, then one error line
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("genre-trie names: error: ") and "malformed.json:3:" in last
    assert not (tmp_path / "s.names").exists()


@pytest.mark.parametrize("opener,kind", [(bz2.open, "bzip2"), (gzip.open, "gzip")])
def test_truncated_compressed_dump_is_one_error_line(tmp_path, capsys, opener, kind):
    packed = tmp_path / "dump.json.x"
    with open(WIKIDATA, "rb") as src, opener(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    data = packed.read_bytes()
    packed.write_bytes(data[: len(data) * 2 // 3])
    assert run("names", "--wikidata", packed, "--output", tmp_path / "t.names", "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"genre-trie names: error: {packed}: truncated {kind} file (it ends before its end-of-stream marker)"]
    assert not (tmp_path / "t.names").exists()


def test_broken_sql_rows_are_counted(tmp_path, capsys):
    page = tmp_path / "page.sql"
    text = open(PAGE_SQL, encoding="utf-8").read()
    # Break one row: a namespace that is not a number.
    marker = "(12,0,'Anarchism',"
    assert marker in text
    page.write_text(text.replace(marker, "(12,zero,'Anarchism',", 1), encoding="utf-8")
    assert run("names", "--wikidata", WIKIDATA, "--redirects", page, REDIRECT_SQL, "--lang", "en",
               "--output", tmp_path / "b.names") == 0
    out = capsys.readouterr().out
    page_line = [line for line in out.splitlines() if line.startswith(str(page))][0]
    assert "malformed=0" not in page_line and "first problems" in page_line
    assert run("names", "--wikidata", WIKIDATA, "--redirects", page, REDIRECT_SQL, "--lang", "en",
               "--output", tmp_path / "s.names", "--strict") == 2


def test_names_with_control_characters_or_empty_are_counted(tmp_path, capsys):
    dump = tmp_path / "dump.json"
    dump.write_text(
        "[\n"
        '{"type":"item","id":"Q1","labels":{"en":{"language":"en","value":"Tab\\tName"}},'
        '"sitelinks":{"enwiki":{"site":"enwiki","title":"Good title"},"dewiki":{"site":"dewiki","title":" "}}},\n'
        '{"type":"item","id":"Q2","labels":{"en":{"language":"en","value":"Line\\nbreak"}},"sitelinks":{}},\n'
        # a lone surrogate (valid JSON, not storable as UTF-8): skipped and counted, not a crash
        '{"type":"item","id":"Q3","labels":{"en":{"language":"en","value":"half \\ud800 pair"}},"sitelinks":{}}\n'
        "]\n", encoding="utf-8")
    out_path = tmp_path / "c.names"
    assert run("names", "--wikidata", dump, "--sources", "titles,labels", "--output", out_path) == 0
    out = capsys.readouterr().out
    assert "skipped=4" in out and "U+0009" in out and "U+000A" in out and "empty name" in out
    assert "lone surrogate" in out
    table = NameTable.load(str(out_path))
    assert list(table) == [("en", "Good title")]  # the good record of Q1 is kept
    assert run("names", "--wikidata", dump, "--sources", "titles,labels", "--output", tmp_path / "s.names",
               "--strict") == 2
    assert "error" in capsys.readouterr().err


def test_dict_lacking_tokens_is_counted_or_fatal(kb, tmp_path, capsys):
    full = open(kb["dict"], encoding="utf-8").read().splitlines()
    enc = encoder(kb)
    # Remove the pieces of one identifier that no other identifier uses.
    target = format_identifier("テスト", "ja", "name_lang")
    pieces = set(enc.tokenizer.symbols([target])[0])
    with NameTable.load(kb["names"]) as table:
        others = {p for lang, n in table if (lang, n) != ("ja", "テスト")
                  for p in enc.tokenizer.symbols([format_identifier(n, lang, "name_lang")])[0]}
    unique = pieces - others
    assert unique
    small = tmp_path / "dict.txt"
    small.write_text("\n".join(line for line in full if line.split(" ")[0] not in unique) + "\n", encoding="utf-8")
    out = tmp_path / "small.trie"
    argv = ["build", "--names", kb["names"], "--format", "name_lang", "--sentencepiece", kb["spm"], "--dict", small,
            "--output", out, "--workers", 1]
    assert run(*argv) == 0
    printed = capsys.readouterr().out
    assert "1 failed" in printed and "not in the dictionary" in printed and "テスト" in printed
    assert len(PrefixTree.load(str(out))) == len(NameTable.load(kb["names"])) - 1
    assert run(*argv, "--output", tmp_path / "strict.trie", "--strict") == 2
    assert "テスト" in capsys.readouterr().err
    assert not (tmp_path / "strict.trie").exists()


@pytest.mark.parametrize("argv,message", [
    (["build", "--names", "{names}", "--format", "name_lang", "--dict", "{dict}", "--output", "{tmp}/x.trie"],
     "no tokenizer"),
    (["build", "--names", "{names}", "--format", "name_lang", "--sentencepiece", "{tmp}/missing.model", "--dict",
      "{dict}", "--output", "{tmp}/x.trie"], "missing.model: file not found"),
    (["build", "--names", "{names}", "--format", "name_lang", "--sentencepiece", "{dict}", "--dict",
      "{dict}", "--output", "{tmp}/x.trie"], "not a SentencePiece model"),
    (["build", "--names", "{names}", "--format", "name_lang", "--gpt2-encoder-json", "{dict}", "--dict",
      "{dict}", "--output", "{tmp}/x.trie"], "needs both"),
    (["build", "--names", "{names}", "--sentencepiece", "{spm}", "--dict", "{dict}", "--output", "{tmp}/x.trie"],
     "--names needs --format"),
    (["build", "--names", "{trie}", "--format", "name_lang", "--sentencepiece", "{spm}", "--dict", "{dict}",
      "--output", "{tmp}/x.trie"], "this is a genre_fairseq prefix tree, not a name table"),
    (["names", "--wikidata", "{tmp}/nope.json", "--output", "{tmp}/x.names"], "nope.json: file not found"),
    (["names", "--wikidata", "{names}", "--redirects", "{names}", "{names}", "--output", "{tmp}/x.names"],
     "give one --lang per --redirects pair"),
    (["names", "--tsv", "{names}", "--sources", "titles,anchors", "--output", "{tmp}/x.names"], "unknown source"),
    (["inspect", "{dict}"], "not a file genre-trie knows"),
])
def test_usage_errors_are_one_line(kb, tmp_path, capsys, argv, message):
    fill = {"names": kb["names"], "dict": kb["dict"], "spm": kb["spm"], "trie": kb["trie"], "tmp": str(tmp_path)}
    assert run(*[a.format(**fill) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_inspect_each_kind(kb, capsys):
    for path, kind in ((kb["trie"], "prefix tree"), (kb["names"], "name table"), (kb["mentions"], "mention table")):
        assert run("inspect", path, "--samples", 3) == 0
        out = capsys.readouterr().out
        assert f"kind: {kind}" in out and f"version: {2 if kind == 'prefix tree' else 1}" in out
    assert run("inspect", kb["names"], "--samples", 50) == 0
    assert "[en] Einstein -> Q937" in capsys.readouterr().out


def test_control_characters_in_entity_ids_and_language_codes_are_counted(tmp_path, capsys):
    dump = tmp_path / "dump.json"
    dump.write_text(
        "[\n"
        '{"type":"item","id":"Q1","labels":{"en":{"language":"en","value":"Good"},'
        '"e\\u0001n":{"language":"e\\u0001n","value":"Bad lang"}},"sitelinks":{}},\n'
        '{"type":"item","id":"Q\\u00072","labels":{"en":{"language":"en","value":"Bad id"}},"sitelinks":{}}\n'
        "]\n", encoding="utf-8")
    out_path = tmp_path / "c.names"
    code = run("names", "--wikidata", dump, "--sources", "labels", "--output", out_path)
    out = capsys.readouterr()
    assert code == 0, out.err
    # the reader counts the id as a malformed line (with its line); names.py skips the one bad name
    assert "malformed=1" in out.out and f"{dump}:3" in out.out and "entity id" in out.out
    assert "skipped=1" in out.out and "language code" in out.out
    assert list(NameTable.load(str(out_path))) == [("en", "Good")]
    tsv = tmp_path / "kb.tsv"
    tsv.write_bytes(b"Q1\ten\tGood\nQ2\te\x01n\tBad lang\n")
    assert run("names", "--tsv", tsv, "--output", tmp_path / "t.names") == 0
    out = capsys.readouterr().out
    assert f"{tsv}:2 (control character '\\x01' in the language code" in out
    assert list(NameTable.load(str(tmp_path / "t.names"))) == [("en", "Good")]


def test_names_whose_tokens_decode_to_another_string_are_counted_not_stored():
    from trie_tools.encode import SentencePieceTokenizer, TargetEncoder

    model = Path(__file__).parent.parent / "examples" / "quickstart" / "model"
    encoder = TargetEncoder(SentencePieceTokenizer(str(model / "spm.model")),
                            load_dictionary(str(model / "dict.target.txt")))
    ids, failures = encoder.encode_batch(["Paris >> en", "A  B >> en", "x\u2581y >> en"])
    assert ids[0] and encoder.decode(ids[0]) == "Paris >> en"
    assert ids[1:] == [[], []]
    assert failures == [(1, "'A  B >> en' does not survive the tokenizer: its tokens decode to 'A B >> en'"),
                        (2, "'x\u2581y >> en' does not survive the tokenizer: its tokens decode to 'x y >> en'")]


def test_a_run_that_finds_no_name_leaves_existing_outputs_untouched(tmp_path, capsys):
    tsv = tmp_path / "kb.tsv"
    tsv.write_text("Q1\ten\tGood\n", encoding="utf-8")
    out, mentions = tmp_path / "kb.names", tmp_path / "kb.mentions"
    assert run("names", "--tsv", tsv, "--output", out, "--mentions", mentions) == 0
    before = out.read_bytes(), mentions.read_bytes()
    capsys.readouterr()
    # --langs de keeps nothing: one error line, and yesterday's tables are still there, unchanged
    assert run("names", "--tsv", tsv, "--langs", "de", "--output", out, "--mentions", mentions) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"no entity has a name: {out} was not written (check --langs and --sources)")
    assert (out.read_bytes(), mentions.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kb.mentions", "kb.names", "kb.tsv"]


def test_the_spooled_build_writes_the_tree_the_in_memory_path_writes(kb, tmp_path):
    # genre-trie build spools the encoded sequences to --tmp-dir and compiles from its memory map;
    # the tree must be the file that encoding into memory and PrefixTree.from_arrays give.
    import numpy as np

    from trie_tools.encode import TokenizerSpec, encode_identifiers
    from trie_tools.names import iter_identifiers

    spec = TokenizerSpec(sentencepiece=kb["spm"])
    with NameTable.load(kb["names"]) as table:
        flat, lengths = encode_identifiers(iter_identifiers(table, "name_lang"), spec, kb["dict"], progress=False,
                                           chunk_size=7)
        spooled, spooled_lengths = encode_identifiers(iter_identifiers(table, "name_lang"), spec, kb["dict"],
                                                      progress=False, chunk_size=7, spool_dir=str(tmp_path))
        assert np.array_equal(flat, spooled) and np.array_equal(lengths, spooled_lengths)
        del spooled
        dictionary = load_dictionary(kb["dict"])
        memory = tmp_path / "memory.trie"
        PrefixTree.from_arrays(flat, lengths, dictionary_fingerprint=dictionary_fingerprint(dictionary),
                               start_token=dictionary.eos(), identifier_format="name_lang",
                               name_table_fingerprint=table.fingerprint).save(str(memory))
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    again = tmp_path / "again.trie"
    assert run("build", "--names", kb["names"], "--format", "name_lang", "--sentencepiece", kb["spm"], "--dict",
               kb["dict"], "--output", again, "--tmp-dir", spool_dir, "--workers", 1, "--quiet") == 0
    assert again.read_bytes() == memory.read_bytes() == Path(kb["trie"]).read_bytes()
    assert list(spool_dir.iterdir()) == []  # the spool is removed
