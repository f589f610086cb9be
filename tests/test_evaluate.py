"""genre-evaluate: metrics computed by hand on the fixtures, bad input, and the model-driven path."""

import json
import os

import pytest

from genre_fairseq.datasets import Mention
from genre_fairseq.evaluate import Scorer, candidate_bucket, main
from genre_fairseq.name_table import MentionTable, NameTable

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MEWSLI = os.path.join(FIXTURES, "mewsli")
KILT = os.path.join(FIXTURES, "kilt", "el-dev.jsonl")
PLUGIN = os.path.join(os.path.dirname(FIXTURES), "..", "genre_fairseq")

# Predictions for the 12 Mewsli fixture mentions; the first gold entity is at the rank in the comment.
MEWSLI_PREDICTIONS = [
    ("de-1:0-13", ["Q567", "Q1"]),  # 0
    ("de-1:19-34", ["Q1", "Q3052772"]),  # 1
    ("de-1:38-44", ["Q64"]),  # 0
    ("de-1:72-78", ["Q2", "Q3", "Q4", "Q5", "Q6", "Q46"]),  # 5: in R@10, not in R@5
    ("de-2:26-43", []),  # none
    # de-2:50-67 has no line: a missing prediction
    ("ja-1:0-2", ["Q1490"]),  # 0
    ("ja-1:3-5", ["Q17", "Q1490"]),  # 0
    ("ja-1:13-16", ["Q1490", "Q39231"]),  # 1
    ("ja-1:17-20", ["Q999"]),  # none
    ("ar-1:11-18", ["Q85"]),  # 0
    ("ar-1:31-36", ["Q90", "Q85"]),  # 0
    ("de-9:0-3", ["Q1"]),  # not a mention of the data set
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture
def mewsli_predictions(tmp_path):
    return _write_jsonl(tmp_path / "pred.jsonl", [{"id": i, "predictions": p} for i, p in MEWSLI_PREDICTIONS])


def _evaluate(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_mewsli_predictions_scored_by_hand(tmp_path, capsys, mewsli_predictions):
    out_json = tmp_path / "results.json"
    code, out, err = _evaluate(capsys, MEWSLI, "--predictions", mewsli_predictions, "--output-json", out_json,
                               "--quiet")
    assert code == 0, err
    r = json.loads(out_json.read_text())
    # de: ranks 0, 1, 0, 5, none, missing -> acc 2/6, R@5 3/6, R@10 4/6
    # ja: ranks 0, 0, 1, none -> acc 2/4, R@5 3/4; ar: 0, 0 -> 2/2
    assert r["languages"]["de"] == {"mentions": 6, "correct": 2, "accuracy": 2 / 6, "not_in_kb": 0,
                                    "recall": {"1": 2 / 6, "5": 3 / 6, "10": 4 / 6}}
    assert r["languages"]["ja"] == {"mentions": 4, "correct": 2, "accuracy": 2 / 4, "not_in_kb": 0,
                                    "recall": {"1": 2 / 4, "5": 3 / 4, "10": 3 / 4}}
    assert r["languages"]["ar"]["accuracy"] == 1.0 and r["languages"]["ar"]["recall"]["10"] == 1.0
    assert r["micro"] == {"mentions": 12, "correct": 6, "accuracy": 6 / 12,
                          "recall": {"1": 6 / 12, "5": 8 / 12, "10": 9 / 12}}
    assert r["macro"]["languages"] == 3
    assert r["macro"]["accuracy"] == pytest.approx((2 / 6 + 2 / 4 + 1) / 3, abs=1e-15)  # 11/18
    assert r["macro"]["recall"]["5"] == pytest.approx((3 / 6 + 3 / 4 + 1) / 3, abs=1e-15)  # 3/4
    assert r["macro"]["recall"]["10"] == pytest.approx((4 / 6 + 3 / 4 + 1) / 3, abs=1e-15)  # 29/36
    assert r["candidates"] is None
    assert r["problems"] == {"missing_prediction": {"count": 1, "examples": ["de-2:50-67"]}}
    assert r["run"]["unknown_ids"] == {"count": 1, "examples": ["de-9:0-3"]}
    assert r["data"]["mentions"] == 12 and r["data"]["skipped"] == {}
    lines = out.splitlines()
    assert lines[0] == f"{MEWSLI}: read 12 mentions"
    assert lines[1] == (f"{mewsli_predictions}: 1 prediction(s) match no mention of the data set (ignored), "
                        "e.g. 'de-9:0-3'")
    assert lines[2].split() == ["language", "mentions", "acc@1", "R@1", "R@5", "R@10", "not", "in", "KB"]
    assert lines[3].split() == ["ar", "2", "100.00", "100.00", "100.00", "100.00", "0"]
    assert lines[4].split() == ["de", "6", "33.33", "33.33", "50.00", "66.67", "0"]
    assert lines[6].split() == ["micro", "12", "50.00", "50.00", "66.67", "75.00", "0"]
    assert lines[7].split() == ["macro", "3", "langs", "61.11", "61.11", "75.00", "80.56"]
    assert lines[8] == "missing_prediction: 1 mention(s) counted as wrong, e.g. de-2:50-67"


def test_recall_cutoffs_language_selection_and_limit(tmp_path, capsys, mewsli_predictions):
    out_json = tmp_path / "r.json"
    code, _, err = _evaluate(capsys, MEWSLI, "--predictions", mewsli_predictions, "--k", "2,6", "--langs", "de",
                             "--output-json", out_json, "--quiet")
    assert code == 0, err
    r = json.loads(out_json.read_text())
    assert list(r["languages"]) == ["de"] and r["ks"] == [2, 6]
    assert r["micro"]["recall"] == {"2": 3 / 6, "6": 4 / 6}
    code, _, err = _evaluate(capsys, MEWSLI, "--predictions", mewsli_predictions, "--limit", "3", "--output-json",
                             out_json, "--quiet")
    r = json.loads(out_json.read_text())
    # the first 3 mentions: ar-1 (2, both right), de-1:0-13 (right)
    assert code == 0 and r["micro"]["mentions"] == 3 and r["micro"]["correct"] == 3


def test_breakdown_by_candidates_and_gold_not_in_kb(tmp_path, capsys, mewsli_predictions):
    mentions = tmp_path / "kb.mentions"
    MentionTable.build(
        [("Angela Merkel", "Q567", 9), ("Berlin", "Q64", 9), ("Berlin", "Q821244", 2), ("Berlin", "Q614184", 1)]
        + [("東京", f"Q{1490 + i}", 10 - i) for i in range(7)]  # gold Q1490 first
        + [("باريس", f"Q{500 + i}", 20 - i) for i in range(12)],  # gold Q90 not among them
        str(mentions))
    names = tmp_path / "kb.names"
    golds = ["Q85", "Q90", "Q567", "Q3052772", "Q64", "Q46", "Q15789", "Q1490", "Q17", "Q39231"]  # no Q41420, Q131320
    NameTable.build([(q, "en", f"name of {q}") for q in golds], str(names))
    out_json = tmp_path / "r.json"
    code, out, err = _evaluate(capsys, MEWSLI, "--predictions", mewsli_predictions, "--candidates-from", mentions,
                               "--name-table", names, "--output-json", out_json, "--quiet")
    assert code == 0, err
    r = json.loads(out_json.read_text())
    # 0 candidates: 8 mentions, of which 日本 and القاهرة are right; 1: Merkel (right, gold in);
    # 2-5: Berlin (3, right, gold in); 6-10: 東京 (7, right, gold in); >10: باريس (12, right, gold out)
    assert r["candidates"] == {
        "0": {"mentions": 8, "correct": 2, "accuracy": 2 / 8, "gold_in_candidates": 0.0},
        "1": {"mentions": 1, "correct": 1, "accuracy": 1.0, "gold_in_candidates": 1.0},
        "2-5": {"mentions": 1, "correct": 1, "accuracy": 1.0, "gold_in_candidates": 1.0},
        "6-10": {"mentions": 1, "correct": 1, "accuracy": 1.0, "gold_in_candidates": 1.0},
        ">10": {"mentions": 1, "correct": 1, "accuracy": 1.0, "gold_in_candidates": 0.0},
    }
    assert r["languages"]["de"]["not_in_kb"] == 1 and r["languages"]["ja"]["not_in_kb"] == 1
    assert r["problems"]["not_in_kb"] == {"count": 2, "examples": ["de-2:50-67 (Q41420)", "ja-1:17-20 (Q131320)"]}
    table = [line.split() for line in out.splitlines()]
    assert ["candidates", "mentions", "acc@1", "gold", "in", "cands"] in table
    assert ["0", "8", "25.00", "0.00"] in table and [">10", "1", "100.00", "0.00"] in table
    assert "not_in_kb: 2 mention(s) counted as wrong, e.g. de-2:50-67 (Q41420); ja-1:17-20 (Q131320)" in out
    # the top 5 candidates only: 東京 and باريس move to 2-5
    _evaluate(capsys, MEWSLI, "--predictions", mewsli_predictions, "--candidates-from", mentions, "--candidates-k", "5",
              "--output-json", out_json, "--quiet")
    buckets = json.loads(out_json.read_text())["candidates"]
    assert buckets["2-5"] == {"mentions": 3, "correct": 3, "accuracy": 1.0, "gold_in_candidates": 2 / 3}
    assert buckets["6-10"] == buckets[">10"] == {"mentions": 0, "correct": 0, "accuracy": None,
                                                 "gold_in_candidates": None}


def test_kilt_predictions_with_several_gold_titles(tmp_path, capsys):
    pred = _write_jsonl(tmp_path / "p.jsonl", [
        {"id": "k1", "predictions": ["Angela Merkel"], "scores": [-0.1]},
        {"id": "k2", "predictions": ["Paris, France", "Paris"]},  # the second gold title counts
        {"id": "k3", "predictions": ["Jaguar", "Jaguar Cars"]},
    ])
    out_json = tmp_path / "r.json"
    code, _, err = _evaluate(capsys, KILT, "--predictions", pred, "--k", "1,2", "--output-json", out_json, "--quiet")
    assert code == 0, err
    r = json.loads(out_json.read_text())
    assert r["data"]["format"] == "kilt" and list(r["languages"]) == ["en"]
    assert r["micro"] == {"mentions": 4, "correct": 2, "accuracy": 0.5, "recall": {"1": 0.5, "2": 0.75}}
    assert r["macro"]["accuracy"] == 0.5
    assert r["problems"]["missing_prediction"]["examples"] == ["k4"]


def test_bad_prediction_lines_are_reported_and_strict_is_fatal(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "k1", "predictions": ["Angela Merkel"]}\n'
                    '{"id": "k2", "predictions": "Paris"}\n'
                    'oops\n'
                    '{"id": "k1", "predictions": []}\n')
    out_json = tmp_path / "r.json"
    code, out, err = _evaluate(capsys, KILT, "--predictions", path, "--output-json", out_json, "--quiet")
    assert code == 0, err
    read = json.loads(out_json.read_text())["run"]["predictions_read"]
    assert read["mentions"] == 1 and read["skipped"] == {"bad_json": 1, "bad_record": 1, "duplicate_id": 1}
    assert read["examples"] == [
        f"{path}:2: 'predictions' must be a list of strings (entity ids, best first)",
        f"{path}:3: invalid JSON (Expecting value at column 1)",
        f"{path}:4: id 'k1' already has predictions at {path}:1",
    ]
    assert f"{path}: skipped 3 bad line(s) (bad_json 1, bad_record 1, duplicate_id 1)" in out
    code, out, err = _evaluate(capsys, KILT, "--predictions", path, "--strict", "--quiet")
    assert code == 2 and out == ""
    assert err == (f"genre-evaluate: error: {path}:2: 'predictions' must be a list of strings "
                   "(entity ids, best first)\n")


def test_bad_data_and_bad_options_exit_2_with_one_line(tmp_path, capsys, mewsli_predictions):
    bad = tmp_path / "kilt.jsonl"
    bad.write_text('{"id": "k1", "input": "[START_ENT] a [END_ENT]", "output": []}\n')
    cases = [
        ((bad, "--predictions", mewsli_predictions, "--format", "kilt", "--strict"),
         f"{bad}:1: no gold entity: no output has an 'answer' or a provenance 'title'"),
        ((bad, "--predictions", mewsli_predictions),
         f"{bad}: no usable mention (read 0 mentions; skipped 1 (bad_record 1); first: {bad}:1: no gold entity: no "
         "output has an 'answer' or a provenance 'title')"),
        ((MEWSLI, "--predictions", tmp_path / "none.jsonl"),
         f"--predictions {tmp_path / 'none.jsonl'}: file not found"),
        ((MEWSLI, "--predictions", mewsli_predictions, "--trie", "kb.trie"),
         "--trie applies to --model-dir only, not to --predictions"),
        ((MEWSLI, "--predictions", mewsli_predictions, "--beam", "5"),
         "--beam applies to --model-dir only, not to --predictions"),
        ((MEWSLI, "--predictions", mewsli_predictions, "--langs", "xx"),
         f"{MEWSLI}: no language directory for xx (found ar, de, ja)"),
        ((KILT, "--predictions", mewsli_predictions, "--langs", "de", "--format", "kilt"),
         "--langs selects Mewsli language directories; use it with a Mewsli data set"),
        ((MEWSLI, "--predictions", mewsli_predictions, "--candidates-k", "3"),
         "--candidates-k needs --candidates-from"),
        ((MEWSLI, "--predictions", mewsli_predictions, "--name-table", tmp_path / "x.names"),
         f"--name-table {tmp_path / 'x.names'}: file not found"),
        ((MEWSLI, "--model-dir", tmp_path), "--model-dir needs --model-type genre or mgenre"),
        ((MEWSLI, "--model-dir", tmp_path, "--model-type", "mgenre"),
         "--model-dir needs --trie KB.trie (decoding is constrained to its identifiers)"),
        ((MEWSLI, "--model-dir", tmp_path, "--model-type", "mgenre", "--trie", "kb.trie"),
         "--predict ids needs --name-table to map identifiers to entity ids (or use --predict names)"),
        ((MEWSLI, "--model-dir", tmp_path, "--model-type", "mgenre", "--trie", "kb.trie", "--predict", "names",
          "--marginalize"), "--marginalize groups names by entity: it needs --predict ids and --name-table"),
        ((MEWSLI, "--model-dir", tmp_path, "--model-type", "mgenre", "--trie", tmp_path / "kb.trie", "--predict",
          "names"), f"--trie {tmp_path / 'kb.trie'}: file not found"),
        ((MEWSLI, "--model-dir", tmp_path / "nodir", "--model-type", "mgenre", "--trie", KILT, "--predict", "names"),
         f"--model-dir {tmp_path / 'nodir'}: not a directory"),
    ]
    for argv, message in cases:
        code, out, err = _evaluate(capsys, *argv, "--quiet")
        assert (code, err) == (2, f"genre-evaluate: error: {message}\n"), argv
    code, _, err = _evaluate(capsys, MEWSLI, "--predictions", mewsli_predictions, "--name-table", KILT)
    assert code == 2 and err.startswith(f"genre-evaluate: error: --name-table {KILT}: ") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main([MEWSLI, "--predictions", mewsli_predictions, "--k", "0,5"])
    assert e.value.code == 2 and "--k: expected comma-separated integers >= 1, got '0,5'" in capsys.readouterr().err


def test_scorer_and_buckets_directly():
    assert [candidate_bucket(n) for n in (0, 1, 2, 5, 6, 10, 11, 500)] == ["0", "1", "2-5", "2-5", "6-10", "6-10",
                                                                            ">10", ">10"]
    with pytest.raises(ValueError, match="must be >= 0"):
        candidate_bucket(-1)
    with pytest.raises(ValueError, match="recall cut-offs must be integers >= 1"):
        Scorer([0])
    scorer = Scorer(ks=[3, 1])
    m = Mention(id="a", lang="xx", left="", mention="m", right="", entities=("E1", "E2"))
    assert scorer.add(m, ["E9", "E9", "E2"]) == 2 and scorer.add(m, []) is None
    r = scorer.results()
    assert r["ks"] == [1, 3] and r["micro"]["recall"] == {"1": 0.0, "3": 0.5} and r["candidates"] is None
    # a gold entity outside the knowledge base is wrong even when predicted
    assert scorer.add(m, ["E1"], in_kb=False) is None and scorer.add(m, ["E1"], in_kb=True) == 0
    assert scorer.results()["problems"] == {"not_in_kb": {"count": 1, "examples": ["a (E1, E2)"]}}


# ----------------------------------------------------------------------------- the model-driven path

NAMES = ["al be", "be do", "ce ce fa", "do", "ha"]
LANGS = ["en", "de"]
WORDS = ["al", "be", "ce", "do", "fa", "ha", ">>", "en", "de", "the", "a", "of", "with", "and",
         "[START]", "[END]", "[START_ENT]", "[END_ENT]"]


def _entity(name):
    return "ent:" + name.replace(" ", "_")


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    """A randomly initialised genre_tiny checkpoint directory, its name table, a full and a one-entity trie."""
    import torch
    from fairseq import options, tasks
    from fairseq.data import Dictionary
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from omegaconf import OmegaConf

    import genre_fairseq
    from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint

    # genre_fairseq was imported before fairseq (the NameTable import above): --user-dir does not
    # import it again, so the task is registered the documented way (else this file fails alone)
    genre_fairseq.register()
    w = tmp_path_factory.mktemp("evaluate_model")
    model_dir = w / "model"
    model_dir.mkdir()
    for side in ("source", "target"):
        (model_dir / f"dict.{side}.txt").write_text("".join(f"{s} 1\n" for s in WORDS))
    # No training: an untrained model is enough, the tries decide what it can say.
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(model_dir), "--user-dir", os.path.abspath(PLUGIN), "--task", "genre", "--arch", "genre_tiny",
        "-s", "source", "-t", "target", "--cpu"])
    cfg = convert_namespace_to_omegaconf(args)
    torch.manual_seed(0)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    torch.save({"args": None, "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                "model": model.state_dict(), "extra_state": {},
                "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "optimizer_name": "Adam",
                                       "lr_scheduler_state": {"best": None}, "num_updates": 0}]},
               model_dir / "model.pt")
    NameTable.build([(_entity(n), lang, n) for n in NAMES for lang in LANGS], str(w / "kb.names"))
    table = NameTable.load(str(w / "kb.names"))
    d = Dictionary.load(str(model_dir / "dict.target.txt"))

    def trie(path, names):
        seqs = [[d.eos()] + [d.index(t) for t in f"{n} >> {lang}".split()] + [d.eos()] for n in names for lang in LANGS]
        tree = PrefixTree.from_sequences(seqs, dictionary_fingerprint=dictionary_fingerprint(d), start_token=d.eos(),
                                         identifier_format="name_lang", name_table_fingerprint=table.fingerprint)
        tree.save(str(path))
        return path

    data = _write_jsonl(w / "data.jsonl", [
        {"id": "s1", "lang": "en", "text": "the al be of",
         "mentions": [{"start": 4, "end": 9, "entity_id": "ent:al_be"}]},
        {"id": "s2", "lang": "de", "text": "ha with a", "mentions": [{"start": 0, "end": 2, "entity_id": "ent:ha"}]},
        {"id": "s3", "lang": "en", "text": "a ha and do", "mentions": [
            {"start": 2, "end": 4, "entity_id": "ent:ha"}, {"start": 9, "end": 11, "entity_id": "ent:do"}]},
        {"id": "s4", "lang": "de", "text": "zz of", "mentions": [{"start": 0, "end": 2, "entity_id": "ent:zz"}]},
    ])
    return {"dir": model_dir, "names": w / "kb.names", "full": trie(w / "full.trie", NAMES),
            "ha": trie(w / "ha.trie", ["ha"]), "data": data}


def _model_args(kb, trie, *extra):
    return [kb["data"], "--model-dir", kb["dir"], "--model-type", "mgenre", "--bpe", "none", "--device", "cpu",
            "--trie", kb[trie], "--quiet", *extra]


def test_model_restricted_to_one_entity_scores_exactly(kb, tmp_path, capsys):
    out_json, pred = tmp_path / "r.json", tmp_path / "pred.jsonl"
    code, out, err = _evaluate(capsys, *_model_args(kb, "ha", "--name-table", kb["names"], "--marginalize",
                                                    "--beam", "2", "--batch-size", "3",
                                                    "--write-predictions", pred, "--output-json", out_json))
    assert code == 0, err
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    # both identifiers of the tree (ha >> en, ha >> de) name ent:ha, so marginalized: one entity
    assert [(r["id"], r["predictions"], len(r["scores"])) for r in rows] == [
        ("s1:4-9", ["ent:ha"], 1), ("s2:0-2", ["ent:ha"], 1), ("s3:2-4", ["ent:ha"], 1), ("s3:9-11", ["ent:ha"], 1),
        ("s4:0-2", ["ent:ha"], 1)]
    r = json.loads(out_json.read_text())
    # en: s1 wrong, s3:2-4 right, s3:9-11 wrong; de: s2 right, s4 wrong (ent:zz is not in the KB)
    assert r["languages"]["en"]["accuracy"] == 1 / 3 and r["languages"]["de"]["accuracy"] == 1 / 2
    assert r["micro"]["accuracy"] == 2 / 5 and r["macro"]["accuracy"] == pytest.approx(5 / 12, abs=1e-15)
    assert r["languages"]["de"]["not_in_kb"] == 1 and r["problems"]["not_in_kb"]["examples"] == ["s4:0-2 (ent:zz)"]
    assert r["run"]["model_type"] == "mgenre" and r["run"]["identifier_format"] == "name_lang"

    # GENRE's markers, and names instead of entity ids (no name table needed); a text that already
    # holds a marker cannot be given to the model: wrong, reported, and an error in the predictions file
    names_data = _write_jsonl(tmp_path / "names.jsonl", [
        {"id": "u1", "lang": "en", "text": "ha [START_ENT] of",
         "mentions": [{"start": 0, "end": 2, "entity_id": "ha"}]},
        {"id": "u2", "lang": "en", "text": "ha of", "mentions": [{"start": 0, "end": 2, "entity_id": "ha"}]},
        {"id": "u3", "lang": "en", "text": "do", "mentions": [{"start": 0, "end": 2, "entity_id": "do"}]},
    ])
    args = _model_args(kb, "ha", "--predict", "names", "--write-predictions", pred, "--output-json", out_json)
    args[0], args[4] = names_data, "genre"
    code, _, err = _evaluate(capsys, *args)
    assert code == 0, err
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert rows[0] == {"id": "u1:0-2", "predictions": [], "error": f"{names_data}:1: mention 'u1:0-2': its text "
                                                                   "already contains the marker '[START_ENT]'"}
    # "ha >> en" and "ha >> de" both name "ha": one prediction, scored by the better identifier (log p < 0)
    assert [(r["id"], r["predictions"], len(r["scores"]), r["scores"][0] < 0) for r in rows[1:]] == [
        ("u2:0-2", ["ha"], 1, True), ("u3:0-2", ["ha"], 1, True)]
    r = json.loads(out_json.read_text())
    assert r["micro"] == {"mentions": 3, "correct": 1, "accuracy": 1 / 3,
                          "recall": {"1": 1 / 3, "5": 1 / 3, "10": 1 / 3}}
    assert r["problems"]["unusable_input"]["count"] == 1


def test_model_predictions_match_the_hub_and_rescore_identically(kb, tmp_path, capsys):
    from genre_fairseq.datasets import read_anchors
    from genre_fairseq.hub import mGENRE

    out_json, pred, rescored = tmp_path / "r.json", tmp_path / "pred.jsonl", tmp_path / "r2.json"
    code, _, err = _evaluate(capsys, *_model_args(kb, "full", "--name-table", kb["names"], "--marginalize", "--beam",
                                                  "4", "--write-predictions", pred, "--output-json", out_json))
    assert code == 0, err
    model = mGENRE.from_pretrained(str(kb["dir"]), bpe=None, device="cpu")
    mentions = list(read_anchors(kb["data"]))
    ranked = model.sample([m.marked("[START]", "[END]") for m in mentions], beam=4, trie=str(kb["full"]),
                          name_table=str(kb["names"]), marginalize=True)
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    assert [r["id"] for r in rows] == [m.id for m in mentions]
    assert [r["predictions"] for r in rows] == [[e["id"] for e in entries] for entries in ranked]
    assert all(r["predictions"] and set(r["predictions"]) <= {_entity(n) for n in NAMES} for r in rows)
    code, _, err = _evaluate(capsys, kb["data"], "--predictions", pred, "--name-table", kb["names"], "--output-json",
                             rescored, "--quiet")
    assert code == 0, err
    first, second = json.loads(out_json.read_text()), json.loads(rescored.read_text())
    for key in ("micro", "macro", "languages", "problems"):
        assert first[key] == second[key], key


def test_model_restricted_to_candidates(kb, tmp_path, capsys):
    mentions = tmp_path / "kb.mentions"
    MentionTable.build([("al be", "ent:al_be", 5), ("ha", "ent:ha", 3), ("ha", "ent:do", 1), ("do", "ent:ce_ce_fa", 2)],
                       str(mentions))
    out_json, pred = tmp_path / "r.json", tmp_path / "pred.jsonl"
    code, _, err = _evaluate(capsys, *_model_args(kb, "full", "--name-table", kb["names"], "--marginalize", "--beam",
                                                  "4", "--candidates-from", mentions, "--write-predictions", pred,
                                                  "--output-json", out_json))
    assert code == 0, err
    preds = {json.loads(line)["id"]: json.loads(line)["predictions"] for line in pred.read_text().splitlines()}
    assert preds["s1:4-9"] == ["ent:al_be"] and preds["s3:9-11"] == ["ent:ce_ce_fa"]  # the only candidate
    assert set(preds["s2:0-2"]) | set(preds["s3:2-4"]) <= {"ent:ha", "ent:do"}
    assert preds["s4:0-2"]  # no candidates: the whole tree
    r = json.loads(out_json.read_text())
    assert r["run"]["restrict_to_candidates"] is True and r["run"]["mentions_restricted"] == 4
    assert r["candidates"]["0"] == {"mentions": 1, "correct": 0, "accuracy": 0.0, "gold_in_candidates": 0.0}
    assert r["candidates"]["1"] == {"mentions": 2, "correct": 1, "accuracy": 0.5, "gold_in_candidates": 0.5}
    assert r["candidates"]["2-5"]["mentions"] == 2 and r["candidates"]["2-5"]["gold_in_candidates"] == 1.0

    # only counted, not restricted: every mention decodes over the whole tree
    code, _, err = _evaluate(capsys, *_model_args(kb, "full", "--name-table", kb["names"], "--candidates-from",
                                                  mentions, "--no-restrict", "--output-json", out_json))
    assert code == 0, err
    r = json.loads(out_json.read_text())
    assert r["run"]["restrict_to_candidates"] is False and r["candidates"]["1"]["mentions"] == 2
