"""genre-prepare: data sets -> fairseq source/target pairs (+ groups), BPE and fairseq-preprocess."""

import json
import os
import re

import pytest

from genre_fairseq.name_table import NameTable
from trie_tools.prepare import main, other_language_order, split_of

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
ANCHORS = os.path.join(FIXTURES, "prepare", "anchors.jsonl")
KILT = os.path.join(FIXTURES, "kilt", "el-dev.jsonl")
MEWSLI = os.path.join(FIXTURES, "mewsli")

# Names of the anchors fixture's entities. Q937 has no Swedish name (the fixture's t3 is Swedish);
# its English "Einstein" is not primary, so "Albert Einstein" is its English name.
KB = [("Q90", "fr", "Paris"), ("Q90", "en", "Paris"), ("Q90", "de", "Paris"),
      ("Q142", "fr", "France"), ("Q142", "en", "France"), ("Q142", "de", "Frankreich"),
      ("Q64", "en", "Berlin"), ("Q64", "de", "Berlin"), ("Q64", "fr", "Berlin"), ("Q220", "en", "Rome"),
      ("Q937", "en", "Einstein", False), ("Q937", "en", "Albert Einstein"), ("Q937", "de", "Albert Einstein"),
      ("Q937", "it", "Alberto Einstein"), ("Q937", "fr", "Albert Einstein (physicien)"),
      ("Q937", "es", "Albert Einstein (es)"), ("Q937", "pt", "Albert Einstein (pt)"),
      ("Q937", "nl", "Albert Einstein (nl)")]
EINSTEIN = "[START] Einstein [END] var fysiker."


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of genre-prepare."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    path = tmp_path_factory.mktemp("kb") / "kb.names"
    NameTable.build(KB, str(path))
    return path


def anchors_run(capsys, kb, out, *extra):
    return run(capsys, "--train", ANCHORS, "--model", "mgenre", "--name-table", kb, "--output", out,
               "--max-words", 5, "--quiet", *extra)


def test_anchors_mgenre_exact_lines_cutting_groups_and_skips(tmp_path, kb, capsys):
    out = tmp_path / "out"
    status, stdout, err = anchors_run(capsys, kb, out, "--max-other-langs", 3, "--groups")
    assert status == 0 and stdout == ""
    assert lines(out / "train.source") == [
        "[START] Paris [END] est la",          # mention at the very start: the whole budget goes right
        "de la [START] France [END]",          # mention at the very end: the whole budget goes left
        "seven [START] Berlin [END] eight",    # cut on both sides: 5 words, 1 + 3 + 1
        EINSTEIN, EINSTEIN, EINSTEIN,          # no Swedish name: 3 names in other languages, same source
        "[START] Berlin [END] ist groß.",
    ]
    assert lines(out / "train.target") == [
        "Paris >> fr", "France >> fr", "Berlin >> en",
        "Albert Einstein >> de", "Albert Einstein (physicien) >> fr", "Albert Einstein (nl) >> nl",
        "Berlin >> de",
    ]
    assert lines(out / "train.group") == ["0", "1", "2", "3", "3", "3", "4"]
    assert sorted(os.listdir(out)) == ["train.group", "train.source", "train.target"]  # no temporary file left
    summary = err.strip().split("\n")
    assert len(summary) == 1
    assert summary[0].startswith(
        "wrote train 7 examples from 5 mentions; mentions given names in other languages: 1; read 7 mentions; "
        "skipped 4 (bad_json 1, bad_mention 1, marker_in_text 1, not_in_kb 1); first: ")
    for where, why in ((4, "invalid JSON"), (5, "mention #0: span 3-40 is outside the text (length 6)"),
                       (6, "mention 't6:0-8': entity Q999999 is not in the name table"),
                       (7, "mention 't7:18-22': its text already contains the marker '[START]'")):
        assert f"{ANCHORS}:{where}: {why}" in summary[0]


def test_genre_markers_and_word_cap_by_default(tmp_path, kb, capsys):
    # GENRE's markers: the text's "[START]" is an ordinary word; 384 words keep every context whole
    canonical = tmp_path / "kb.canonical.names"
    NameTable.build([(e, "", n) for e, lang, n, *primary in KB if lang == "en" and not primary], str(canonical),
                    meta={"kind": "canonical identifiers"})
    out = tmp_path / "out"
    status, _, err = run(capsys, "--train", ANCHORS, "--model", "genre", "--name-table", canonical, "--output", out,
                         "--quiet")
    assert status == 0
    assert lines(out / "train.source")[:3] == [
        "[START_ENT] Paris [END_ENT] est la capitale de la France",
        "Paris est la capitale de la [START_ENT] France [END_ENT]",
        "one two three four five six seven [START_ENT] Berlin [END_ENT] eight nine ten eleven twelve"]
    assert lines(out / "train.source")[-2:] == ["See [START] here: [START_ENT] Rome [END_ENT] .",
                                                "[START_ENT] Berlin [END_ENT] ist groß."]
    # canonical identifiers come from the canonical table, whatever the mention's language
    assert lines(out / "train.target") == ["Paris", "France", "Berlin", "Albert Einstein", "Rome", "Berlin"]
    assert ("wrote train 6 examples from 6 mentions; read 7 mentions; skipped 3 (bad_json 1, bad_mention 1, "
            "not_in_kb 1)") in err
    # overridden markers and cap
    status, _, _ = run(capsys, "--train", ANCHORS, "--model", "genre", "--name-table", canonical, "--output", out,
                       "--quiet", "--start-marker", "<m>", "--end-marker", "</m>", "--max-words", 4)
    assert status == 0
    assert lines(out / "train.source")[:3] == ["<m> Paris </m> est", "la <m> France </m>", "<m> Berlin </m> eight"]


def test_other_language_names_respect_n_seed_and_priority(tmp_path, kb, capsys):
    def einstein(*extra):
        out = tmp_path / "out"
        status, _, err = anchors_run(capsys, kb, out, "--groups", *extra)
        assert status == 0, err
        pairs = [(s, t, g) for s, t, g in zip(lines(out / "train.source"), lines(out / "train.target"),
                                               lines(out / "train.group")) if s == EINSTEIN]
        assert {g for _, _, g in pairs} <= {"3"}
        return [t for _, t, _ in pairs], err

    seed0 = ["Albert Einstein >> de", "Albert Einstein (physicien) >> fr", "Albert Einstein (nl) >> nl"]
    assert einstein("--max-other-langs", 3)[0] == seed0
    assert einstein("--max-other-langs", 3, "--seed", 0)[0] == seed0  # deterministic
    assert einstein("--max-other-langs", 3, "--seed", 1)[0] == [
        "Albert Einstein (nl) >> nl", "Albert Einstein (pt) >> pt", "Albert Einstein >> de"]
    assert einstein("--max-other-langs", 1)[0] == seed0[:1]
    # default N = 5; more than the entity has: all 7 languages
    assert len(einstein()[0]) == 5
    assert sorted(einstein("--max-other-langs", 10)[0]) == [
        "Albert Einstein (es) >> es", "Albert Einstein (nl) >> nl", "Albert Einstein (physicien) >> fr",
        "Albert Einstein (pt) >> pt", "Albert Einstein >> de", "Albert Einstein >> en", "Alberto Einstein >> it"]
    # preferred languages first, in order, then the seeded order; English: the primary name
    assert einstein("--max-other-langs", 3, "--lang-priority", "it,en")[0] == [
        "Alberto Einstein >> it", "Albert Einstein >> en", "Albert Einstein >> de"]
    # lang_name identifiers follow the same rule
    assert einstein("--max-other-langs", 2, "--format", "lang_name")[0] == [
        "de >> Albert Einstein", "fr >> Albert Einstein (physicien)"]
    # N = 0: such mentions are skipped and counted
    targets, err = einstein("--max-other-langs", 0)
    assert targets == [] and "no_name_in_lang 1" in err
    assert f"{ANCHORS}:3: mention 't3:0-8': entity Q937 has no name in 'sv' (--max-other-langs 0)" in err


def test_an_empty_split_is_warned_about(tmp_path, kb, capsys):
    status, _, err = anchors_run(capsys, kb, tmp_path / "out", "--valid-fraction", 0.01)
    assert status == 0
    assert "wrote train 9 examples from 5 mentions, valid 0 examples from 0 mentions" in err
    assert err.strip().split("\n")[-1] == "warning: the valid split is empty (valid.source has no example)"
    assert lines(tmp_path / "out" / "valid.source") == []


def test_language_selection(tmp_path, kb, capsys):
    status, _, err = anchors_run(capsys, kb, tmp_path / "out", "--langs", "fr,de")
    assert status == 0
    assert lines(tmp_path / "out" / "train.target") == ["Paris >> fr", "France >> fr", "Berlin >> de"]
    assert "skipped 6 (bad_json 1, bad_mention 1, lang_not_selected 4)" in err


def test_rules_as_functions():
    assert other_language_order(["de", "fr", "nl"], "t3:0-8", 0) == other_language_order(["nl", "fr", "de"],
                                                                                          "t3:0-8", 0)
    assert other_language_order(["de", "fr", "nl", "en"], "m", 5, priority=["nl", "xx", "en"])[:2] == ["nl", "en"]
    assert [split_of(k, 0, 0.5) for k in ("de-1", "de-2", "ja-1", "ar-1")] == ["valid", "valid", "train", "valid"]
    assert split_of("de-1", 0, 0.0) == "train" and split_of("de-1", 0, 0.0, 0.999) == "test"


def test_kilt_titles_used_directly_and_checked_against_a_table(tmp_path, kb, capsys):
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, "--train", KILT, "--model", "genre", "--output", out)
    assert status == 0
    assert lines(out / "train.source") == [
        "Obama met [START_ENT] Merkel [END_ENT] in Berlin .",
        "[START_ENT] Paris [END_ENT] is the capital .",
        "He drove a [START_ENT] Jaguar [END_ENT] to work .",  # from meta: the input has no markers
        "The [START_ENT] Thames [END_ENT] flows through London .",
    ]
    assert lines(out / "train.target") == ["Angela Merkel", "Paris", "Jaguar Cars", "River Thames"]
    assert stdout.strip().split("\n")[-1] == "wrote train 4 examples from 4 mentions; read 4 mentions"
    # mGENRE identifiers of the same titles (KILT is English: --lang en by default); a table keeps known names only
    status, _, err = run(capsys, "--train", KILT, "--model", "mgenre", "--name-table", kb, "--output", out, "--quiet")
    assert status == 0
    assert lines(out / "train.source") == ["[START] Paris [END] is the capital ."]
    assert lines(out / "train.target") == ["Paris >> en"]
    assert "skipped 3 (not_in_kb 3)" in err and f"{KILT}:1: mention 'k1': gold name 'Angela Merkel' (en)" in err


def test_mewsli_canonical_table_and_seeded_split_by_document(tmp_path, capsys):
    from trie_tools.names import canonical_table

    names = tmp_path / "kb.names"
    NameTable.build([("Q567", "de", "Angela Merkel"), ("Q567", "en", "Angela Merkel"),
                     ("Q3052772", "fr", "Emmanuel Macron"), ("Q64", "de", "Berlin"), ("Q64", "en", "Berlin"),
                     ("Q15789", "de", "FC Bayern München"), ("Q1490", "ja", "東京都"), ("Q1490", "en", "Tokyo"),
                     ("Q17", "ja", "日本"), ("Q85", "ar", "القاهرة"), ("Q90", "ar", "باريس"), ("Q90", "en", "Paris")],
                    str(names))
    canonical = tmp_path / "kb.canonical.names"
    canonical_table(NameTable.load(str(names)), str(canonical), priority=["en"], progress=False)
    out = tmp_path / "out"
    status, _, err = run(capsys, "--train", MEWSLI, "--model", "genre", "--name-table", canonical, "--output", out,
                         "--valid-fraction", 0.5, "--groups", "--quiet")
    assert status == 0, err
    # documents ar-1, de-1, de-2 go to valid and ja-1 to train (see test_rules_as_functions)
    assert lines(out / "train.source") == [
        "[START_ENT] 東京 [END_ENT] は日本の首都である。 富士山は静岡県と山梨県にまたがる。",
        "東京は [START_ENT] 日本 [END_ENT] の首都である。 富士山は静岡県と山梨県にまたがる。"]
    assert lines(out / "train.target") == ["Tokyo", "日本"]
    assert lines(out / "train.group") == ["0", "1"]
    assert lines(out / "valid.target") == ["القاهرة", "Paris", "Angela Merkel", "Emmanuel Macron", "Berlin",
                                           "FC Bayern München"]
    assert lines(out / "valid.group") == ["0", "1", "2", "3", "4", "5"]
    assert lines(out / "valid.source")[4] == (
        "Angela Merkel traf Emmanuel Macron in [START_ENT] Berlin [END_ENT] . Die Kanzlerin sprach über Europa.")
    assert ("wrote train 2 examples from 2 mentions, valid 6 examples from 6 mentions; read 12 mentions; "
            "skipped 4 (not_in_kb 4)") in err
    # by mention, with another seed: a document's mentions may be split; the splits still cover everything
    status, _, err = run(capsys, "--train", MEWSLI, "--model", "genre", "--name-table", canonical, "--output", out,
                         "--valid-fraction", 0.3, "--test-fraction", 0.3, "--split-by", "mention", "--seed", 7,
                         "--langs", "de", "--quiet")
    assert status == 0
    counts = [len(lines(out / f"{s}.target")) for s in ("train", "valid", "test")]
    assert sum(counts) == 4 and "read 6 mentions" in err and "skipped 2 (not_in_kb 2)" in err


# ----------------------------------------------------------------------------- malformed input and --strict


@pytest.mark.parametrize("fmt,bad,fatal", [
    ("anchors", '{"id": "x", "lang": "en", "text": oops}', r"2: invalid JSON"),
    ("anchors", '{"id": "x", "lang": "en", "text": "Short.", "mentions": [{"start": 3, "end": 40, "entity_id": "Q1"}]}',
     r"2: mention #0: span 3-40 is outside the text"),
    ("anchors", '{"id": "x", "lang": "en", "text": "a [START] Rome", "mentions": [{"start": 10, "end": 14, '
     '"entity_id": "Q220"}]}', r"2: mention 'x:10-14': its text already contains the marker '\[START\]'"),
    ("anchors", '{"id": "x", "text": "Rome", "mentions": [{"start": 0, "end": 4, "entity_id": "Q220"}]}',
     r"2: 'lang' must be a non-empty string"),
    ("kilt", '{"id": "k9", "input": "[START_ENT] A [END_ENT] b", "output": [{"answer": "A\\u2028B"}]}',
     r"2: mention 'k9': 'A\\u2028B >> en' holds a line break or control character$"),
])
def test_malformed_lines_are_counted_or_fatal_with_strict(tmp_path, kb, capsys, fmt, bad, fatal):
    good = {"anchors": json.dumps({"id": "ok", "lang": "en", "text": "Rome",
                                   "mentions": [{"start": 0, "end": 4, "entity_id": "Q220"}]}),
            "kilt": json.dumps({"id": "k0", "input": "[START_ENT] Rome [END_ENT] .", "output": [{"answer": "Rome"}]})}
    data = tmp_path / f"data.{fmt}.jsonl"
    data.write_text(good[fmt] + "\n" + bad + "\n", encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--train", data, "--model", "mgenre", "--output", out, "--quiet"]
    argv += ["--name-table", kb] if fmt == "anchors" else []
    status, _, err = run(capsys, *argv)
    assert status == 0
    assert "wrote train 1 examples from 1 mentions; read " in err and "; skipped 1 (" in err and f"{data}:2: " in err
    assert lines(out / "train.target") == ["Rome >> en"]
    os.remove(out / "train.source")
    status, _, err = run(capsys, *argv, "--strict")
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(f"genre-prepare: error: {data}:") and re.search(fatal, err.strip()), err
    assert sorted(os.listdir(out)) == ["train.target"]  # the old file stays, nothing new or temporary is left


def test_entities_outside_the_kb_are_not_fatal_with_strict(tmp_path, kb, capsys):
    data = tmp_path / "a.jsonl"
    data.write_text(json.dumps({"id": "x", "lang": "en", "text": "Atlantis",
                                "mentions": [{"start": 0, "end": 8, "entity_id": "Q999999"}]}) + "\n")
    status, _, err = run(capsys, "--train", data, "--model", "mgenre", "--name-table", kb, "--output", tmp_path / "o",
                         "--strict", "--quiet")
    assert status == 0 and "skipped 1 (not_in_kb 1)" in err


@pytest.mark.parametrize("extra,message", [
    ([], "gold entities are ids (anchors); give --name-table"),
    (["--name-table", "{kb}", "--format", "canonical"], "--format canonical needs the canonical table"),
    (["--name-table", "{kb}", "--destdir", "{tmp}/bin"], "--destdir, --srcdict and --tgtdict go together"),
    (["--name-table", "{kb}", "--valid-fraction", "1.5"], "--valid-fraction must be in [0, 1), got 1.5"),
    (["--name-table", "{kb}", "--valid", ANCHORS, "--valid-fraction", "0.1"],
     "give --valid inputs or --valid-fraction"),
    (["--name-table", "{kb}", "--sentencepiece", "{tmp}/missing.model"],
     "--sentencepiece {tmp}/missing.model: file not found"),
    (["--name-table", "{kb}", "--max-source-tokens", "8"], "--max-source-tokens counts tokens"),
    (["--name-table", "{tmp}/nothing.names"], "--name-table {tmp}/nothing.names: file not found"),
])
def test_usage_errors_are_one_line_and_status_2(tmp_path, kb, capsys, extra, message):
    extra = [e.format(kb=kb, tmp=tmp_path) for e in extra]
    status, _, err = run(capsys, "--train", ANCHORS, "--model", "mgenre", "--output", tmp_path / "o", "--quiet", *extra)
    assert status == 2
    assert err == f"genre-prepare: error: {err.split('error: ', 1)[1]}" and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    assert not os.path.exists(tmp_path / "o" / "train.source")


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in ("--train", "--valid-fraction", "--seed", "--model", "--max-words", "--format", "--name-table",
                   "--max-other-langs", "--groups", "--sentencepiece", "--gpt2-encoder-json", "--destdir",
                   "--srcdict", "--tgtdict", "--strict"):
        assert option in text


# ----------------------------------------------------------------------------- BPE and fairseq-preprocess


def load_pair(destdir, split):
    from fairseq.data import Dictionary, LanguagePairDataset, data_utils

    src_dict = Dictionary.load(os.path.join(destdir, "dict.source.txt"))
    tgt_dict = Dictionary.load(os.path.join(destdir, "dict.target.txt"))
    src = data_utils.load_indexed_dataset(os.path.join(destdir, f"{split}.source-target.source"), src_dict)
    tgt = data_utils.load_indexed_dataset(os.path.join(destdir, f"{split}.source-target.target"), tgt_dict)
    return LanguagePairDataset(src, src.sizes, src_dict, tgt, tgt.sizes, tgt_dict), src_dict, tgt_dict


def test_sentencepiece_then_fairseq_preprocess_gives_a_loadable_data_bin(tmp_path, kb, capsys):
    from tests.toy import fairseq_bpe, train_sentencepiece

    texts = [json.loads(x)["text"] for x in open(ANCHORS, encoding="utf-8") if "broken" not in x]
    texts += [f"{n} >> {lang}" for _, lang, n, *_ in KB] + ["[START] [END]"]
    spm_model, spm_dict = train_sentencepiece(texts * 3, str(tmp_path))
    out, destdir = tmp_path / "out", tmp_path / "data-bin"
    status, stdout, err = run(capsys, "--train", ANCHORS, "--model", "mgenre", "--name-table", kb, "--output", out,
                              "--max-other-langs", 2, "--groups", "--valid-fraction", 0.4, "--seed", 3,
                              "--sentencepiece", spm_model, "--srcdict", spm_dict, "--tgtdict", spm_dict,
                              "--destdir", destdir, "--quiet")
    assert status == 0, err
    last = err.strip().split("\n")[-1]
    n = {s: len(lines(out / f"{s}.source")) for s in ("train", "valid")}
    # seed 3 sends documents t2, t6 and t8 to valid; t3 (no Swedish name) gets 2 targets; t6, t7 are skipped
    assert n == {"train": 4, "valid": 2}
    assert last == f"{destdir}: binarized train 4 examples, valid 2 examples (fairseq-preprocess)"
    bpe = fairseq_bpe(sentencepiece_model=spm_model)
    for split in ("train", "valid"):
        # BPE files: exactly fairseq's --bpe sentencepiece encoding of the plain lines
        for side in ("source", "target"):
            assert lines(out / f"{split}.bpe.{side}") == [bpe.encode(x) for x in lines(out / f"{split}.{side}")]
        pairs, src_dict, tgt_dict = load_pair(destdir, split)
        assert len(pairs) == n[split]
        for i, (source, target) in enumerate(zip(lines(out / f"{split}.source"), lines(out / f"{split}.target"))):
            item = pairs[i]
            assert bpe.decode(src_dict.string(item["source"])) == source
            assert bpe.decode(tgt_dict.string(item["target"])) == target
            assert tgt_dict.unk() not in item["target"].tolist()
        # the group file travels with the data, aligned with the examples
        assert lines(destdir / f"{split}.group") == lines(out / f"{split}.group")
    assert lines(out / "train.target") == ["Paris >> fr", "France >> fr", "Alberto Einstein >> it",
                                           "Albert Einstein (pt) >> pt"]
    assert lines(out / "valid.target") == ["Berlin >> en", "Berlin >> de"]
    assert lines(destdir / "train.group") == ["0", "1", "2", "2"]
    # what `fairseq-train --task genre --target-groups` reads: groups of one source with several targets
    from genre_fairseq.task import GroupedTargetsDataset, read_group_ids

    pairs, _, _ = load_pair(destdir, "train")
    grouped = GroupedTargetsDataset(pairs, read_group_ids(str(destdir / "train.group")))
    assert len(grouped) == 3 and [len(grouped[i]["members"]) for i in range(3)] == [1, 1, 2]


def test_targets_that_cannot_be_encoded_are_passed_over(tmp_path, kb, capsys):
    # --no-bpe: words are the dictionary's symbols; "(physicien)", "(nl)" and "Paris" are missing from the target side
    words = sorted({w for x in lines(ANCHORS) if "broken" not in x for w in json.loads(x)["text"].split()}
                   | {"[START]", "[END]"})
    src_dict, tgt_dict = tmp_path / "dict.source.txt", tmp_path / "dict.target.txt"
    src_dict.write_text("".join(f"{w} 1\n" for w in words), encoding="utf-8")
    targets = {w for _, lang, n, *_ in KB for w in f"{n} >> {lang}".split()} - {"(physicien)", "(nl)", "Paris"}
    tgt_dict.write_text("".join(f"{w} 1\n" for w in sorted(targets)), encoding="utf-8")
    out, destdir = tmp_path / "out", tmp_path / "bin"
    argv = ["--max-other-langs", 3, "--no-bpe", "--srcdict", src_dict, "--tgtdict", tgt_dict, "--destdir", destdir]
    status, _, err = anchors_run(capsys, kb, out, *argv)
    assert status == 0, err
    # the seed-0 order is de, fr, nl, it, en, pt, es: fr and nl cannot be encoded, so de, it and en are taken
    assert [t for s, t in zip(lines(out / "train.source"), lines(out / "train.target")) if s == EINSTEIN] == [
        "Albert Einstein >> de", "Alberto Einstein >> it", "Albert Einstein >> en"]
    assert not os.path.exists(out / "train.bpe.source")
    # a mention whose only target cannot be encoded is skipped (never written with <unk>), and fatal with --strict
    assert lines(out / "train.target")[0] == "France >> fr"
    assert "skipped 5 (bad_json 1, bad_mention 1, marker_in_text 1, not_in_kb 1, unencodable_target 1)" in err
    unencodable = f"{ANCHORS}:1: mention 't1:0-5': 'Paris >> fr': symbol 'Paris' is not in the dictionary"
    assert unencodable in err
    pairs, _, tgt = load_pair(destdir, "train")
    assert len(pairs) == 6 and tgt.string(pairs[2]["target"]) == "Albert Einstein >> de"
    status, _, err = anchors_run(capsys, kb, out, *argv, "--strict")
    assert status == 2 and err == f"genre-prepare: error: {unencodable}\n"


def test_gpt2_sources_as_fairseq_targets_as_the_tree(tmp_path, kb, capsys):
    from tests.toy import fairseq_bpe, write_gpt2_bpe
    from trie_tools.encode import GPT2Tokenizer

    encoder_json, vocab_bpe, _ = write_gpt2_bpe(str(tmp_path), [("Ġ", "B"), ("e", "r")])
    out = tmp_path / "out"
    status, _, err = anchors_run(capsys, kb, out, "--gpt2-encoder-json", encoder_json, "--gpt2-vocab-bpe", vocab_bpe)
    assert status == 0, err
    bpe = fairseq_bpe(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=vocab_bpe)
    assert lines(out / "train.bpe.source") == [bpe.encode(x) for x in lines(out / "train.source")]
    # targets with the leading space genre-trie build gives identifiers by default
    assert lines(out / "train.bpe.target") == [bpe.encode(" " + x) for x in lines(out / "train.target")]
    tree_side = GPT2Tokenizer(encoder_json, vocab_bpe)
    assert lines(out / "train.bpe.target") == [" ".join(s) for s in tree_side.symbols(lines(out / "train.target"))]
    status, _, _ = anchors_run(capsys, kb, out, "--gpt2-encoder-json", encoder_json, "--gpt2-vocab-bpe", vocab_bpe,
                               "--gpt2-no-leading-space")
    assert lines(out / "train.bpe.target") == [bpe.encode(x) for x in lines(out / "train.target")]


def test_max_source_tokens_cuts_around_the_mention(tmp_path, kb, capsys):
    words = ["[START]", "[END]"] + sorted({w for x in lines(ANCHORS) if "broken" not in x
                                           for w in json.loads(x)["text"].split()})
    vocab = tmp_path / "dict.txt"
    vocab.write_text("".join(f"{w} 1\n" for w in words + [f"{n} >> {lang}" for _, lang, n, *_ in KB]),
                     encoding="utf-8")
    out = tmp_path / "out"
    status, _, err = run(capsys, "--train", ANCHORS, "--model", "mgenre", "--name-table", kb, "--output", out,
                         "--quiet", "--max-other-langs", 1, "--no-bpe", "--srcdict", vocab, "--tgtdict", vocab,
                         "--destdir", tmp_path / "bin", "--max-source-tokens", 6)
    assert status == 2 and "--max-source-tokens counts tokens: it needs a tokenizer" in err
    from tests.toy import train_sentencepiece

    spm_model, spm_dict = train_sentencepiece([json.loads(x)["text"] for x in lines(ANCHORS) if "broken" not in x] * 3
                                              + ["[START] [END] >> en"] * 3, str(tmp_path))
    status, _, err = run(capsys, "--train", ANCHORS, "--model", "mgenre", "--name-table", kb, "--output", out,
                         "--quiet", "--max-other-langs", 1, "--sentencepiece", spm_model, "--srcdict", spm_dict,
                         "--tgtdict", spm_dict, "--destdir", tmp_path / "bin", "--max-source-tokens", 24,
                         "--max-words", 5)
    assert status == 0, err
    from tests.toy import fairseq_bpe

    bpe = fairseq_bpe(sentencepiece_model=spm_model)
    sources = lines(out / "train.source")
    # the 5-word cap alone gives "seven [START] Berlin [END] eight" (26 tokens): cut further, around the mention
    assert sources == ["[START] Paris [END] est la", "de la [START] France [END]", "[START] Berlin [END] eight",
                       "[START] Berlin [END] ist"]
    assert [len(bpe.encode(s).split()) + 1 for s in sources] == [22, 24, 23, 21]
    assert "; 2 sources cut to --max-source-tokens; " in err  # Berlin (t2) and Berlin (t8)
