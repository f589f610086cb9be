"""genre-prepare --end-to-end: documents -> windows with { mention } [ identifier ] targets."""

import json
import os

import pytest

from genre_fairseq import markup
from genre_fairseq.name_table import NameTable
from tests.test_prepare import lines, run

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
AIDA = os.path.join(FIXTURES, "aida", "AIDA-YAGO2-sample.tsv")
MEWSLI = os.path.join(FIXTURES, "mewsli")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPM = os.path.join(ROOT, "examples", "quickstart", "model", "spm.model")

KB = [("Q64", "en", "Berlin"), ("Q183", "en", "Germany"), ("Q567", "en", "Angela Merkel"),
      ("Q183", "de", "Deutschland"), ("Q142", "de", "Frankreich"), ("Q142", "en", "France"), ("Q40", "de", "Österreich"),
      ("Q38", "de", "Italien")]

#   Berlin 0-6 | is | in | Germany. 13-21 | Merkel 22-28 | lives | in | Berliner 38-46 | Strasse. 47-55 | "\n" |
#   Smith 56-61 | came | to | Atlantis. 70-79
TEXT = "Berlin is in Germany. Merkel lives in Berliner Strasse.\nSmith came to Atlantis."
MENTIONS = [
    {"start": 0, "end": 6, "entity_id": "Q64"},        # kept
    {"start": 13, "end": 20, "entity_id": "Q183"},     # kept, snapped to the word "Germany." (13-21)
    {"start": 13, "end": 28, "entity_id": "Q567"},     # "Germany. Merkel": overlaps Germany after snapping: dropped
    {"start": 22, "end": 28, "entity_id": "Q567"},     # kept
    {"start": 38, "end": 44, "entity_id": "Q64"},      # "Berlin" inside "Berliner": kept, snapped (38-46)
    {"start": 47, "end": 61, "entity_id": "Q183"},     # "Strasse.\nSmith": crosses windows 2 and 3: dropped
    {"start": 56, "end": 61, "entity_id": None, "nil": True},  # NIL: dropped
    {"start": 70, "end": 78, "entity_id": "Q999"},     # not in the name table: dropped
]


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    path = tmp_path_factory.mktemp("kb") / "kb.names"
    NameTable.build(KB, str(path))
    return path


def write_docs(path, docs):
    with open(path, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write((doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False)) + "\n")


DOCS = [{"id": "a", "lang": "en", "text": TEXT, "mentions": MENTIONS},
        {"id": "b", "lang": "en", "text": "Nothing here.", "mentions": []}]


def test_exact_windows_targets_and_counts_by_hand(tmp_path, kb, capsys):
    gold, out = tmp_path / "gold.jsonl", tmp_path / "out"
    write_docs(gold, DOCS)
    status, stdout, err = run(capsys, "--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb,
                              "--no-bpe", "--window", 6, "--output", out)
    assert status == 0, err
    # Window 6 tokens: "Berlin is in Germany." ends at a sentence end (4 tokens); "Merkel ... Strasse." at the
    # line break (5 tokens); then "Smith came to Atlantis."; the second document is one window.
    assert lines(out / "train.source") == ["Berlin is in Germany.", "Merkel lives in Berliner Strasse.",
                                           "Smith came to Atlantis.", "Nothing here."]
    assert lines(out / "train.target") == [
        "{ Berlin } [ Berlin >> en ] is in { Germany. } [ Germany >> en ]",
        "{ Merkel } [ Angela Merkel >> en ] lives in { Berliner } [ Berlin >> en ] Strasse.",
        "Smith came to Atlantis.", "Nothing here."]
    assert not (out / "train.bpe.source").exists()  # --no-bpe: the plain lines are the symbols
    line = stdout.splitlines()[-1]
    assert line.startswith("wrote train 4 windows from 2 documents; spans: 8 read, 4 kept (2 snapped to token "
                           "edges), dropped nil 1, not_in_kb 1, overlapping 1, crossing 1; read 7 InKB mentions")


def test_sentencepiece_symbols_exact(tmp_path, kb, capsys):
    # The quickstart model's pieces: "Deutschland" is ▁D e u t s ch land, " Frankreich" is ▁ F r an k r e i ch.
    # The identifiers are encoded as genre-trie build encodes them ("Frankreich >> de" -> ▁ F ... ch ▁ > > ▁de).
    gold, out = tmp_path / "gold.jsonl", tmp_path / "out"
    text = "Deutschland und Frankreich."
    write_docs(gold, [{"id": "d", "lang": "de", "text": text, "mentions": [
        {"start": 0, "end": 11, "entity_id": "Q183"}, {"start": 16, "end": 26, "entity_id": "Q142"}]}])
    status, _, err = run(capsys, "--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb,
                         "--sentencepiece", SPM, "--output", out, "--quiet")
    assert status == 0, err
    assert lines(out / "train.bpe.source") == ["▁D e u t s ch land ▁ und ▁ F r an k r e i ch ."]
    assert lines(out / "train.bpe.target") == [
        "▁{ ▁D e u t s ch land ▁} ▁[ ▁D e u t s ch land ▁ > > ▁de ▁] ▁ und ▁ "
        "▁{ F r an k r e i ch ▁} ▁[ ▁ F r an k r e i ch ▁ > > ▁de ▁] ."]
    assert lines(out / "train.target") == ["{ Deutschland } [ Deutschland >> de ] und { Frankreich } [ Frankreich >> de ]."]


def test_round_trip_targets_parse_back_to_the_gold_spans(tmp_path, kb, capsys):
    """Parse every written window (tokens: e2e_search.parse_output; text: markup.parse_markup) back to the gold."""
    import sentencepiece
    from fairseq.data import Dictionary

    from genre_fairseq.e2e_search import MarkupTokens, parse_output

    text = ("Deutschland grenzt an Österreich. Österreich grenzt an Italien.\n"
            "Frankreich und Deutschland.")
    names = {"Q183": "Deutschland", "Q40": "Österreich", "Q38": "Italien", "Q142": "Frankreich"}
    gold_spans = []
    for entity, word, nth in (("Q183", "Deutschland", 0), ("Q40", "Österreich", 0), ("Q40", "Österreich", 1),
                              ("Q38", "Italien", 0), ("Q142", "Frankreich", 0), ("Q183", "Deutschland", 1)):
        start = -1
        for _ in range(nth + 1):
            start = text.index(word, start + 1)
        gold_spans.append((start, start + len(word), f"{names[entity]} >> de"))
    gold, out = tmp_path / "gold.jsonl", tmp_path / "out"
    write_docs(gold, [{"id": "r", "lang": "de", "text": text, "mentions": [
        {"start": s, "end": e, "entity_id": next(q for q, n in names.items() if ident.startswith(n + " "))}
        for s, e, ident in gold_spans]}])
    window = 24
    status, stdout, err = run(capsys, "--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb,
                              "--sentencepiece", SPM, "--window", window, "--output", out)
    assert status == 0, err
    assert "6 kept (0 snapped" in stdout
    sp = sentencepiece.SentencePieceProcessor(model_file=SPM)
    tokens = markup.sentencepiece_tokens(sp, text)
    wins = markup.windows(text, tokens, window)
    sources, targets = lines(out / "train.bpe.source"), lines(out / "train.bpe.target")
    assert len(wins) == len(sources) > 1
    d = Dictionary()
    for line in sources + targets:
        for s in line.split():
            d.add_symbol(s)
    mk = MarkupTokens.from_dictionary(d, ["▁{", "▁}", "▁[", "▁]"])
    per_window = []
    for w, src, tgt in zip(wins, sources, targets):
        # this SentencePiece model cannot encode "\n": its unknown piece is written as <unk> (a line cannot hold it)
        assert src.split() == ["<unk>" if t.symbol.isspace() else t.symbol for t in tokens[w.tok_start:w.tok_end]]
        spans = parse_output([d.index(s) for s in src.split()], [d.index(s) for s in tgt.split()], mk, d.eos())
        per_window.append([(s.start, s.end, sp.decode([d[i] for i in s.entity_tokens])) for s in spans])
    assert markup.merge_window_spans(text, tokens, wins, per_window) == gold_spans
    # the text form: each window's markup aligned back to its source text
    from_text = []
    for w, src_text, tgt_text in zip(wins, lines(out / "train.source"), lines(out / "train.target")):
        from_text += [(a + w.start, b + w.start, ident) for a, b, ident in markup.parse_markup(tgt_text, src_text)]
    assert from_text == gold_spans


def test_aida_nme_spans_are_dropped_as_nil(tmp_path, capsys):
    out = tmp_path / "out"
    status, stdout, err = run(capsys, "--end-to-end", "--train", f"{AIDA}:train", "--model", "genre", "--no-bpe",
                              "--output", out)
    assert status == 0, err
    # Document 1: EU (--NME--), German, British, Peter Blackburn (--NME--), BRUSSELS
    first = lines(out / "train.target")[0]
    assert first.startswith("EU rejects { German } [ Germany ] call to boycott { British } [ United Kingdom ] lamb .")
    assert "dropped nil 2" in stdout


def test_bad_lines_are_counted_with_file_line_or_fatal_with_strict(tmp_path, kb, capsys):
    gold, out = tmp_path / "gold.jsonl", tmp_path / "out"
    write_docs(gold, [DOCS[1], '{"id": "x", "text": broken',
                      {"id": "y", "lang": "en", "text": "abc", "mentions": [{"start": 1, "end": 9, "entity_id": "Q1"}]}])
    status, stdout, err = run(capsys, "--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb,
                              "--no-bpe", "--output", out)
    assert status == 0, err
    assert f"{gold}:2: invalid JSON" in stdout and f"{gold}:3: document 'y': mention #0: span 1-9 is outside" in stdout
    assert lines(out / "train.source") == ["Nothing here.", "abc"]
    status, _, err = run(capsys, "--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb,
                         "--no-bpe", "--output", tmp_path / "out2", "--strict", "--quiet")
    assert status == 2 and err.startswith(f"genre-prepare: error: {gold}:2: invalid JSON")
    assert not (tmp_path / "out2" / "train.source").exists()


@pytest.mark.parametrize("extra, message", [
    (["--max-words", "5"], "--max-words applies to mention-level data"),
    (["--groups"], "--groups and --split-by mention apply to mention-level data"),
    (["--window", "0"], "--window must be >= 1"),
    (["--markup-symbols", "{ } ["], "--markup-symbols needs 4 different symbols"),
])
def test_usage_errors(tmp_path, kb, capsys, extra, message):
    gold = tmp_path / "gold.jsonl"
    write_docs(gold, DOCS)
    status, _, err = run(capsys, "--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb, "--no-bpe",
                         "--output", tmp_path / "out", *extra)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_end_to_end_options_need_end_to_end_and_documents(tmp_path, kb, capsys):
    gold = tmp_path / "gold.jsonl"
    write_docs(gold, DOCS)
    status, _, err = run(capsys, "--train", gold, "--model", "mgenre", "--name-table", kb, "--output", tmp_path / "o",
                         "--window", 5)
    assert status == 2 and "--window applies to --end-to-end only" in err
    status, _, err = run(capsys, "--end-to-end", "--train", MEWSLI, "--model", "mgenre", "--name-table", kb,
                         "--output", tmp_path / "o")
    assert status == 2 and "anchors or aida format, not mewsli" in err


def test_markup_symbols_must_be_in_the_target_dictionary(tmp_path, kb, capsys):
    gold = tmp_path / "gold.jsonl"
    write_docs(gold, DOCS)
    qs = os.path.join(ROOT, "examples", "quickstart", "model")
    argv = ["--end-to-end", "--train", gold, "--model", "mgenre", "--name-table", kb, "--sentencepiece", SPM,
            "--srcdict", os.path.join(qs, "dict.source.txt"), "--tgtdict", os.path.join(qs, "dict.target.txt"),
            "--destdir", tmp_path / "bin", "--output", tmp_path / "o"]
    status, _, err = run(capsys, *argv)
    assert status == 2 and "no symbol '▁{' for the markup" in err and "append 4 dedicated symbols" in err


def test_recipe_prepares_binarizes_and_trains_a_tiny_model(tmp_path, kb):
    """examples/genre/train_e2e.sh end to end on 2 documents: prepare -> fairseq-preprocess -> 2 updates."""
    import subprocess
    import sys

    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    gold = tmp_path / "gold.jsonl"
    write_docs(gold, DOCS)
    words = set(TEXT.split()) | {"Nothing", "here.", "{", "}", "[", "]", ">>", "en", "Angela", "Germany"}
    (tmp_path / "dict.txt").write_text("".join(f"{w} 1\n" for w in sorted(words)), encoding="utf-8")
    recipe = os.path.join(ROOT, "examples", "genre", "train_e2e.sh")
    tiny = dict(MODEL="mgenre", TRAIN=str(gold), VALID=str(gold), NAME_TABLE=str(kb), NO_BPE="1", WINDOW="6",
                SRCDICT=str(tmp_path / "dict.txt"), WORK=str(tmp_path / "w"), ARCH="mgenre_tiny", FP16="0", CPU="1",
                MAX_TOKENS="200", WARMUP_UPDATES="1", TOTAL_NUM_UPDATE="10", DDP_BACKEND="no_c10d")
    # 1. prepare + binarize; the launcher prints the fairseq-train command instead of running it
    proc = subprocess.run(["bash", recipe], env=dict(env, **tiny, LAUNCHER="printf %s\\n"), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    argv = proc.stdout.splitlines()
    assert argv[:2] == ["fairseq-train", str(tmp_path / "w" / "data-bin")] and "--lr" in argv
    assert lines(tmp_path / "w" / "data" / "train.target")[0] == \
        "{ Berlin } [ Berlin >> en ] is in { Germany. } [ Germany >> en ]"
    # 2. a tiny untrained "pretrained" checkpoint, standing in for mBART (built here: one process less)
    import torch
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    import genre_fairseq

    genre_fairseq.register()  # imported before fairseq: register the task and presets explicitly
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(tmp_path / "w" / "data-bin"), "--task", "genre", "--arch", "mgenre_tiny", "-s", "source", "-t", "target",
        "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    torch.manual_seed(0)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    pretrained = tmp_path / "pretrained.pt"
    torch.save({"args": None, "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                "model": model.state_dict(), "extra_state": {},
                "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {"best": None}, "num_updates": 0}]}, pretrained)
    # 3. the recipe's fine-tuning, 2 updates, on the data it prepared
    # (4 windows: fairseq's default batch multiple of 8 would leave no batch)
    proc = subprocess.run(["bash", recipe, "--no-progress-bar", "--log-interval", "1", "--num-workers", "0",
                           "--no-epoch-checkpoints", "--required-batch-size-multiple", "1", "--disable-validation"],
                          env=dict(env, **tiny, PREPARE="0", PRETRAINED=str(pretrained),
                                   MAX_UPDATE="2"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "w" / "checkpoints" / "checkpoint_last.pt").is_file()
    assert "num_updates 2" in proc.stdout + proc.stderr or '"num_updates": "2"' in proc.stdout + proc.stderr


def test_gpt2_markup_symbols_are_the_bpe_ids_of_space_brace(tmp_path, capsys):
    """GENRE: sources are the text's BPE ids; { } [ ] are the ids of " {", " }", " [", " ]"; the identifier
    is encoded with its leading space, as genre-trie build encodes titles."""
    from tests.toy import write_gpt2_bpe

    merges = [("Ġ", "{"), ("Ġ", "}"), ("Ġ", "["), ("Ġ", "]")]
    encoder_json, vocab_bpe, _ = write_gpt2_bpe(str(tmp_path), merges)
    ids = json.load(open(encoder_json, encoding="utf-8"))
    gold, out = tmp_path / "gold.jsonl", tmp_path / "out"
    write_docs(gold, [{"id": "g", "lang": "en", "text": "Rome is big.",
                       "mentions": [{"start": 0, "end": 4, "entity_id": "Rome"}]}])
    status, _, err = run(capsys, "--end-to-end", "--train", gold, "--model", "genre", "--gold", "names",
                         "--gpt2-encoder-json", encoder_json, "--gpt2-vocab-bpe", vocab_bpe, "--output", out, "--quiet")
    assert status == 0, err
    # only the four merges exist: every other byte is its own token ("Ġ" is GPT-2's space)
    src = ["R", "o", "m", "e", "Ġ", "i", "s", "Ġ", "b", "i", "g", "."]
    tgt = ["Ġ{", "R", "o", "m", "e", "Ġ}", "Ġ[", "Ġ", "R", "o", "m", "e", "Ġ]"] + src[4:]
    assert lines(out / "train.bpe.source") == [" ".join(str(ids[s]) for s in src)]
    assert lines(out / "train.bpe.target") == [" ".join(str(ids[s]) for s in tgt)]
    assert lines(out / "train.target") == ["{ Rome } [ Rome ] is big."]
