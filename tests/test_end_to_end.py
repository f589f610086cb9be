"""preprocess -> fairseq-train --task genre -> fairseq-generate / fairseq-interactive --trie, on CPU."""

import os
import re
import subprocess
import sys

import pytest

from genre_fairseq.prefix_tree import PrefixTree

from . import inprocess

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "genre_fairseq")
BIN = os.path.dirname(sys.executable)

ROOT = os.path.dirname(PLUGIN)


#: Commands that run in this process (tests/inprocess.py) unless a test asks for a real process.
IN_PROCESS = {"fairseq-preprocess", "fairseq-generate", "fairseq-interactive", "genre-trie"}


def run(cmd, real=False, **kw):
    if cmd[0] in IN_PROCESS and not real:
        return inprocess.run(cmd[0], cmd[1:], input=kw.get("input"))
    exe = os.path.join(BIN, cmd[0])
    return subprocess.run([exe] + cmd[1:], capture_output=True, text=True, timeout=600, **kw)


def check(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Data, a trained genre_tiny checkpoint and a trie of the valid identifiers."""
    w = tmp_path_factory.mktemp("e2e")
    # the demo's synthetic data: 16 identifiers 'name >> lang', 12 test sentences
    check(run(["python", os.path.join(ROOT, "examples", "demo", "make_data.py"), str(w)]))
    check(run([
        "fairseq-preprocess", "--source-lang", "source", "--target-lang", "target",
        "--trainpref", str(w / "train"), "--validpref", str(w / "valid"), "--testpref", str(w / "test"),
        "--destdir", str(w / "bin"), "--joined-dictionary", "--workers", "1",
    ]))
    check(run([
        "fairseq-train", str(w / "bin"), "--user-dir", PLUGIN, "--task", "genre", "--arch", "genre_tiny",
        "--optimizer", "adam", "--lr", "0.01", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
        "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--max-tokens", "4000", "--max-update", "60", "--cpu", "--seed", "1",
        "--save-dir", str(w / "ckpt"), "--no-epoch-checkpoints", "--no-progress-bar", "--log-interval", "20",
        "--disable-validation",
    ]))
    check(run([
        "genre-trie", "build",
        "--tokenized", str(w / "kb.txt"), "--dict", str(w / "bin" / "dict.target.txt"),
        "--format", "name_lang", "--output", str(w / "kb.trie"), "--quiet",
    ]))
    return w


def _generate(w, *extra, real=False):
    return run(real=real, cmd=[
        "fairseq-generate", str(w / "bin"), "--user-dir", PLUGIN, "--task", "genre",
        "--path", str(w / "ckpt" / "checkpoint_last.pt"), "--gen-subset", "test",
        # --batch-size 4 with fairseq's default --required-batch-size-multiple 8 would drop
        # the last batch; the genre task must not (12 sentences in, 12 out)
        "--beam", "5", "--nbest", "5", "--cpu", "--batch-size", "4", *extra,
    ])


def _hypotheses(stdout):
    return [line.split("\t") for line in stdout.splitlines() if line.startswith("H-")]


def test_every_generated_hypothesis_is_a_trie_sequence(workdir):
    out = check(_generate(workdir, "--trie", str(workdir / "kb.trie"), real=True)).stdout  # the command itself
    hyps = _hypotheses(out)
    valid = {line.strip() for line in open(workdir / "kb.txt")}
    assert len(hyps) == 12 * 5
    assert all(h[2] in valid for h in hyps), [h[2] for h in hyps if h[2] not in valid]
    assert all(float(h[1]) > -1e3 for h in hyps)
    # the tree's own view agrees: token ids of each hypothesis + EOS form a sequence of the tree
    tree = PrefixTree.load(str(workdir / "kb.trie"))
    from fairseq.data import Dictionary

    d = Dictionary.load(str(workdir / "bin" / "dict.target.txt"))
    for h in hyps:
        ids = [d.eos()] + [d.index(s) for s in h[2].split()] + [d.eos()]
        assert ids in tree


def test_unconstrained_generation_still_works(workdir):
    out = check(_generate(workdir)).stdout
    assert len(_hypotheses(out)) == 12 * 5


def test_interactive_with_trie(workdir):
    proc = run(
        ["fairseq-interactive", str(workdir / "bin"), "--user-dir", PLUGIN, "--task", "genre",
         "--source-lang", "source", "--target-lang", "target", "--trie", str(workdir / "kb.trie"),
         "--path", str(workdir / "ckpt" / "checkpoint_last.pt"), "--beam", "3", "--nbest", "3", "--cpu"],
        input="the [START] al be [END] of en\n[START] ha [END] de\n", real=True,  # the command itself, its stdin
    )
    check(proc)
    hyps = _hypotheses(proc.stdout)
    valid = {line.strip() for line in open(workdir / "kb.txt")}
    assert len(hyps) == 6 and all(h[2] in valid for h in hyps)


def _last_error_line(proc):
    return proc.stderr.strip().splitlines()[-1]


def test_trie_for_another_dictionary_is_refused(workdir, tmp_path):
    other = tmp_path / "dict.txt"
    other.write_text("".join(f"w{i} 1\n" for i in range(30)))
    toks = tmp_path / "ids.txt"
    toks.write_text("w1 w2\nw3\n")
    check(run(["genre-trie", "build", "--tokenized", str(toks), "--dict", str(other),
               "--output", str(tmp_path / "other.trie"), "--quiet"]))
    proc = _generate(workdir, "--trie", str(tmp_path / "other.trie"))
    assert proc.returncode != 0
    msg = _last_error_line(proc)
    assert "was built for dictionary" in msg and "dict.target.txt" in msg


def test_missing_truncated_and_empty_tries_are_clear_errors(workdir, tmp_path):
    proc = _generate(workdir, "--trie", str(tmp_path / "missing.trie"))
    assert proc.returncode != 0 and "prefix tree file not found" in _last_error_line(proc)

    data = open(workdir / "kb.trie", "rb").read()
    (tmp_path / "cut.trie").write_bytes(data[: len(data) - 16])
    proc = _generate(workdir, "--trie", str(tmp_path / "cut.trie"))
    assert proc.returncode != 0 and "truncated prefix tree file" in _last_error_line(proc)

    PrefixTree.from_sequences([]).save(str(tmp_path / "empty.trie"))
    proc = _generate(workdir, "--trie", str(tmp_path / "empty.trie"))
    assert proc.returncode != 0 and "holds no sequences" in _last_error_line(proc)


def test_conflicting_search_options_are_refused(workdir):
    # an error of the task's set-up in a real process: one line, exit status != 0
    proc = _generate(workdir, "--trie", str(workdir / "kb.trie"), "--sampling", real=True)
    assert proc.returncode != 0 and re.search(r"cannot be combined with --sampling", _last_error_line(proc))


def test_identifier_format_must_agree_with_the_trie(workdir):
    proc = _generate(workdir, "--trie", str(workdir / "kb.trie"), "--identifier-format", "lang_name")
    assert proc.returncode != 0 and "holds name_lang identifiers" in _last_error_line(proc)


def test_genre_trie_reports_unknown_symbols(workdir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("al be\nzz top\n")
    proc = run(["genre-trie", "build", "--tokenized", str(bad), "--dict", str(workdir / "bin" / "dict.target.txt"),
                "--output", str(tmp_path / "x.trie"), "--quiet"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"genre-trie build: error: {bad}:2: symbol 'zz' is not in the dictionary"
    assert not (tmp_path / "x.trie").exists()


@pytest.fixture(scope="module")
def name_table(workdir):
    """A name table of the demo KB: entity 'ent:<name>' is named '<name>' in en and de."""
    from examples.demo.make_data import LANGS, NAMES

    tsv = workdir / "kb.tsv"
    tsv.write_text("".join(f"ent:{n.replace(' ', '_')}\t{lang}\t{n}\n" for n in NAMES for lang in LANGS))
    check(run(["genre-trie", "names", "--tsv", str(tsv), "--output", str(workdir / "kb.names"), "--quiet"]))
    return workdir / "kb.names"


def _entity_lines(stdout):
    return [line.split("\t") for line in stdout.splitlines() if line.startswith("E-")]


def test_generate_prints_marginalized_entities(workdir, name_table):
    import math

    out = check(_generate(workdir, "--trie", str(workdir / "kb.trie"), "--name-table", str(name_table),
                          "--marginalize")).stdout
    hyps = {}
    for sid, score, text in _hypotheses(out):
        hyps.setdefault(sid[2:], []).append((float(score), text))
    entities = _entity_lines(out)
    assert {e[0][2:] for e in entities} == set(hyps) and len(hyps) == 12
    for sid, members in hyps.items():
        rows = [e for e in entities if e[0][2:] == sid]
        assert [int(r[1]) for r in rows] == list(range(len(rows)))
        assert [float(r[2]) for r in rows] == sorted((float(r[2]) for r in rows), reverse=True)
        for _, _, score, entity, texts in rows:
            names = texts.split(" | ")
            assert all(entity == "ent:" + t.split(" >> ")[0].replace(" ", "_") for t in names)
            # fairseq's H score is log2 p / L (base 2, lenpen 1, L counts EOS); the E score is the
            # natural-log logsumexp over the entity's names of ln p / L ** 0.5 = H * ln 2 * sqrt(L).
            parts = [s * math.log(2) * math.sqrt(len(t.split()) + 1) for s, t in members if t in names]
            assert len(parts) == len(names)
            expected = max(parts) + math.log(sum(math.exp(p - max(parts)) for p in parts))
            assert float(score) == pytest.approx(expected, abs=1e-5)


def test_marginalize_needs_a_name_table_and_the_right_one(workdir, name_table, tmp_path):
    proc = _generate(workdir, "--trie", str(workdir / "kb.trie"), "--marginalize")
    assert proc.returncode != 0 and "give --name-table" in _last_error_line(proc)
    tree = PrefixTree.load(str(workdir / "kb.trie"))
    tree.name_table_fingerprint = "0" * 32  # as if built from another knowledge base
    tree.save(str(tmp_path / "other_kb.trie"))
    proc = _generate(workdir, "--trie", str(tmp_path / "other_kb.trie"), "--name-table", str(name_table))
    assert proc.returncode != 0 and "is not the table --trie" in _last_error_line(proc)


@pytest.fixture(scope="module")
def model_dir(workdir):
    """The trained model in the official checkpoint-directory layout (no BPE: plain symbols)."""
    import shutil

    d = workdir / "release"
    d.mkdir(exist_ok=True)
    shutil.copy(workdir / "ckpt" / "checkpoint_last.pt", d / "model.pt")
    for side in ("source", "target"):
        shutil.copy(workdir / "bin" / f"dict.{side}.txt", d / f"dict.{side}.txt")
    return d


SENTENCES = ["the [START] al be [END] of en", "[START] ha [END] de", "a [START] ge be do [END] with and en"]


def test_hub_matches_fairseq_interactive(workdir, model_dir, name_table):
    import math

    from genre_fairseq.hub import mGENRE

    model = mGENRE.from_pretrained(str(model_dir), bpe=None, device="cpu")
    out = model.sample(SENTENCES, beam=4, trie=str(workdir / "kb.trie"), max_len_b=32)
    proc = check(run(
        ["fairseq-interactive", str(model_dir), "--user-dir", PLUGIN, "--task", "genre", "--source-lang", "source",
         "--target-lang", "target", "--trie", str(workdir / "kb.trie"), "--path", str(model_dir / "model.pt"),
         "--beam", "4", "--nbest", "4", "--max-len-b", "32", "--cpu"],
        input="\n".join(SENTENCES) + "\n"))
    hyps = _hypotheses(proc.stdout)
    for i, ranked in enumerate(out):
        theirs = [(h[2], float(h[1])) for h in hyps if h[0] == f"H-{i}"]
        # the same n-best list; ours is ranked by ln p / L ** 0.5, fairseq's by log2 p / L
        assert sorted(r["text"] for r in ranked) == sorted(t for t, _ in theirs) and len(theirs) == 4
        ours = {r["text"]: r["score"] for r in ranked}
        for text, score in theirs:
            length = len(text.split()) + 1
            assert ours[text] == pytest.approx(score * math.log(2) * length / math.sqrt(length), abs=1e-4)
        assert [r["score"] for r in ranked] == sorted(ours.values(), reverse=True)

    entities = model.sample(SENTENCES, beam=4, trie=str(workdir / "kb.trie"), name_table=str(name_table))
    for ranked in entities:
        assert all(e["id"].startswith("ent:") for e in ranked)
        assert [e["score"] for e in ranked] == sorted((e["score"] for e in ranked), reverse=True)


def test_hub_bad_input(model_dir, workdir, tmp_path):
    from genre_fairseq.hub import mGENRE

    model = mGENRE.from_pretrained(str(model_dir), bpe=None, device="cpu")
    assert model.sample([]) == []
    with pytest.raises(ValueError, match=r"sentence 1: no mention marked with \[START\] \.\.\. \[END\]"):
        model.sample(["[START] ha [END] de", "no markers here"], trie=str(workdir / "kb.trie"))
    with pytest.raises(ValueError, match="must appear once each"):
        model.sample(["[END] ha [START] de"])
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        mGENRE.from_pretrained(str(tmp_path), bpe=None)
    with pytest.raises(FileNotFoundError, match="no SentencePiece model"):
        mGENRE.from_pretrained(str(model_dir))


def test_cut_around_mention_keeps_the_mention():
    from genre_fairseq.hub import cut_around_mention

    words = [f"l{i}" for i in range(10)] + ["[START]", "m", "[END]"] + [f"r{i}" for i in range(3)]
    assert cut_around_mention(words, "[START]", "[END]", 100) == words
    assert cut_around_mention(words, "[START]", "[END]", 9) == ["l7", "l8", "l9", "[START]", "m", "[END]", "r0", "r1", "r2"]
    assert cut_around_mention(words, "[START]", "[END]", 7) == ["l8", "l9", "[START]", "m", "[END]", "r0", "r1"]
    assert cut_around_mention(words, "[START]", "[END]", 2) == ["[START]", "m", "[END]"]
    start = ["[START]", "m", "[END]"] + [f"r{i}" for i in range(10)]
    assert cut_around_mention(start, "[START]", "[END]", 5) == ["[START]", "m", "[END]", "r0", "r1"]


# ---------------------------------------------------------------- candidate-restricted decoding
def _test_mentions(w):
    from genre_fairseq.candidates import mention_text

    return [mention_text(line) for line in (w / "test.source").read_text().splitlines()]


def _decoy(name):
    """Another name of the demo KB: the entity the candidates force decoding towards."""
    from examples.demo.make_data import NAMES

    return NAMES[(NAMES.index(name) + 3) % len(NAMES)]


def test_generate_with_explicit_candidates(workdir, name_table, tmp_path):
    mentions = _test_mentions(workdir)
    assert len(mentions) == 12 and all(mentions)
    # Sentence i may only become the decoy's entity; sentence 5 has no candidates (full tree),
    # sentence 7 only an unknown entity (nothing in the tree: full tree too).
    lines = ["ent:" + _decoy(m).replace(" ", "_") for m in mentions]
    lines[5], lines[7] = "", "ent:nobody"
    cands = tmp_path / "cands.tsv"
    cands.write_text("\n".join(lines) + "\n")
    trie = str(workdir / "kb.trie")
    out = check(_generate(workdir, "--trie", trie, "--name-table", str(name_table), "--marginalize",
                          "--candidates-file", str(cands))).stdout
    plain = check(_generate(workdir, "--trie", trie, "--name-table", str(name_table), "--marginalize")).stdout
    how = {line.split("\t")[0][2:]: line.split("\t")[1] for line in out.splitlines() if line.startswith("C-")}
    assert len(how) == 12
    for i in range(12):
        hyps = [h[2] for h in _hypotheses(out) if h[0] == f"H-{i}"]
        if i in (5, 7):
            assert how[str(i)] == ("no candidates: full tree" if i == 5 else
                                   "1 candidates (given), none in the tree: full tree")
            assert hyps == [h[2] for h in _hypotheses(plain) if h[0] == f"H-{i}"]
            continue
        assert how[str(i)] == "1 candidates (given), 2 identifiers"
        decoy = _decoy(mentions[i])
        assert sorted(hyps) == sorted(f"{decoy} >> {lang}" for lang in ("de", "en"))
        ents = [e for e in _entity_lines(out) if e[0] == f"E-{i}"]
        assert [e[3] for e in ents] == ["ent:" + decoy.replace(" ", "_")]


def test_interactive_prints_entities_with_candidates_and_buffers(workdir, name_table, tmp_path):
    """fairseq-interactive's batches carry no ids: E-/C- lines and the candidates still follow the input lines.

    Buffers of 5 lines decoded in batches of 2 (rows reordered by length): line i's candidates
    force the decoy of its mention, so a row given another line's candidates shows at once.
    """
    mentions = _test_mentions(workdir)
    lines = ["ent:" + _decoy(m).replace(" ", "_") for m in mentions]
    cands = tmp_path / "cands.tsv"
    cands.write_text("\n".join(lines) + "\n")
    proc = check(run(
        ["fairseq-interactive", str(workdir / "bin"), "--user-dir", PLUGIN, "--task", "genre",
         "--source-lang", "source", "--target-lang", "target", "--trie", str(workdir / "kb.trie"),
         "--name-table", str(name_table), "--candidates-file", str(cands),
         "--path", str(workdir / "ckpt" / "checkpoint_last.pt"), "--beam", "2", "--nbest", "2",
         "--buffer-size", "5", "--batch-size", "2", "--cpu"],
        input=(workdir / "test.source").read_text()))
    entities = _entity_lines(proc.stdout)
    assert {e[0] for e in entities} == {f"E-{i}" for i in range(12)}
    for i, m in enumerate(mentions):
        decoy = _decoy(m)
        assert sorted(h[2] for h in _hypotheses(proc.stdout) if h[0] == f"H-{i}") == \
            sorted(f"{decoy} >> {lang}" for lang in ("de", "en"))
        assert [e[3] for e in entities if e[0] == f"E-{i}"] == ["ent:" + decoy.replace(" ", "_")]


def test_generate_with_candidates_from_a_mention_table(workdir, name_table, tmp_path):
    from genre_fairseq.name_table import MentionTable

    mentions = _test_mentions(workdir)
    # The true entity is a candidate, but the decoy is more frequent: with k = 1 only the decoy.
    items = [(m, "ent:" + m.replace(" ", "_"), 1) for m in set(mentions)]
    items += [(m, "ent:" + _decoy(m).replace(" ", "_"), 5) for m in set(mentions) if m != mentions[0]]
    MentionTable.build(items, tmp_path / "kb.mentions")
    out = check(_generate(workdir, "--trie", str(workdir / "kb.trie"), "--name-table", str(name_table),
                          "--candidates-table", str(tmp_path / "kb.mentions"), "--candidates-k", "1")).stdout
    for i, m in enumerate(mentions):
        expected = m if m == mentions[0] else _decoy(m)
        assert sorted(h[2] for h in _hypotheses(out) if h[0] == f"H-{i}") == \
            sorted(f"{expected} >> {lang}" for lang in ("de", "en"))
    proc = _generate(workdir, "--trie", str(workdir / "kb.trie"), "--candidates-table", str(tmp_path / "kb.mentions"))
    assert proc.returncode != 0 and "give --name-table" in _last_error_line(proc)
    proc = _generate(workdir, "--candidates-file", str(tmp_path / "kb.mentions"))
    assert proc.returncode != 0 and "give --trie" in _last_error_line(proc)


def test_hub_with_candidates(workdir, model_dir, name_table, tmp_path):
    from genre_fairseq.hub import mGENRE
    from genre_fairseq.name_table import MentionTable

    model = mGENRE.from_pretrained(str(model_dir), bpe=None, device="cpu")
    trie, names = str(workdir / "kb.trie"), str(name_table)
    plain = model.sample(SENTENCES, beam=4, trie=trie, name_table=names)
    got = model.sample(SENTENCES, beam=4, trie=trie, name_table=names, candidates=[["ent:do"], None, ["ent:ha", "ent:fa_al"]])
    assert [e["id"] for e in got[0]] == ["ent:do"]
    assert got[1] == [dict(e, candidates="no candidates: full tree") for e in plain[1]]
    assert {e["id"] for e in got[2]} == {"ent:ha", "ent:fa_al"}
    assert got[2][0]["candidates"] == "2 candidates (given), 4 identifiers"
    MentionTable.build([("al be", "ent:ce_ce_fa", 3), ("al be", "ent:al_be", 1)], tmp_path / "m.mentions")
    got = model.sample(SENTENCES, beam=4, trie=trie, name_table=names, mention_table=str(tmp_path / "m.mentions"),
                       candidates_k=1)
    assert [e["id"] for e in got[0]] == ["ent:ce_ce_fa"]
    assert got[1][0]["candidates"] == "no candidates (mentions): full tree"
    # without a trie, candidates alone constrain decoding; a sentence without any is an error
    got = model.sample(SENTENCES[:1], beam=4, name_table=names, identifier_format="name_lang", candidates=[["ent:ha"]])
    assert [e["id"] for e in got[0]] == ["ent:ha"]
    with pytest.raises(ValueError, match="no trie to fall back on"):
        model.sample(SENTENCES[:2], beam=4, name_table=names, identifier_format="name_lang", candidates=[["ent:ha"], None])
    with pytest.raises(ValueError, match="one entry"):
        model.sample(SENTENCES, trie=trie, candidates=[["ent:ha"]])
    with pytest.raises(ValueError, match="needs name_table"):
        model.sample(SENTENCES, trie=trie, mention_table=str(tmp_path / "m.mentions"))


def test_raw_text_without_bpe_warning(tmp_path):
    from genre_fairseq.task import raw_text_without_bpe_warning as warning

    assert warning(str(tmp_path), 1, 10) is None  # a few unknown words: text in the model's own pieces
    assert warning(str(tmp_path), 3, 10) is None  # no BPE files, and not mostly unknown
    assert "give the --bpe" in warning(str(tmp_path), 6, 10)
    (tmp_path / "encoder.json").write_text("{}")
    (tmp_path / "vocab.bpe").write_text("")
    assert f"--bpe gpt2 --gpt2-encoder-json {tmp_path / 'encoder.json'}" in warning(str(tmp_path), 2, 10)
    (tmp_path / "spm_256000.model").write_text("")
    message = warning(str(tmp_path), 9, 10)
    assert message.startswith("raw text without --bpe: 9 of 10 input tokens are <unk>")
    assert message.endswith(f"give --bpe sentencepiece --sentencepiece-model {tmp_path / 'spm_256000.model'}")
