"""genre-evaluate --end-to-end: GERBIL's InKB strong/weak/MD micro and macro F1, counted by hand."""

import json
import os
import subprocess
import sys

import pytest

from genre_fairseq.e2e_metrics import EndToEndScorer, match_document, prf
from genre_fairseq.evaluate import main

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
AIDA = os.path.join(FIXTURES, "aida", "AIDA-YAGO2-sample.tsv")


def span(text, s, entity, nth=0):
    """(start, end, entity) of the nth occurrence of s in text (offsets written out in the comments)."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(s, start + 1)
    return (start, start + len(s), entity)


T1 = "Berlin is in Germany and Merkel lives there."
T2 = "Smith visited Rome."
T3 = "Nothing here."
T4 = "Oslo."
T5 = "Rome and Paris."

GOLD = [
    # d1: Berlin 0-6 Q64, Germany 13-20 Q183, Merkel 25-31 Q567
    ("d1", T1, [span(T1, "Berlin", "Q64"), span(T1, "Germany", "Q183"), span(T1, "Merkel", "Q567")]),
    # d2: Smith 0-5 is NIL (out of the KB), Rome 14-18 Q220
    ("d2", T2, [span(T2, "Smith", None), span(T2, "Rome", "Q220")]),
    # d3: no mention at all
    ("d3", T3, []),
    # d4: Oslo 0-4 Q585 (no prediction record at all for d4)
    ("d4", T4, [span(T4, "Oslo", "Q585")]),
    # d5: Rome 0-4 Q220, Paris 9-14 Q90
    ("d5", T5, [span(T5, "Rome", "Q220"), span(T5, "Paris", "Q90")]),
]
PRED = {
    # d1: Berlin exact (TP everywhere); Germany with the wrong entity (MD TP; strong and weak FP);
    #     "Merkel lives" 25-37 with the right entity (weak TP; strong and MD FP)
    #     strong TP1 FP2 FN2 | weak TP2 FP1 FN1 | MD TP2 FP1 FN1
    "d1": [span(T1, "Berlin", "Q64"), span(T1, "Germany", "Q1"), span(T1, "Merkel lives", "Q567")],
    # d2: Smith 0-5 linked to Q999: it is the NIL gold span and no InKB span -> ignored (all three);
    #     "visited" 6-13: overlaps no gold span -> FP (all three); Rome missed -> FN
    #     every matching: TP0 FP1 FN1, 1 ignored
    "d2": [span(T2, "Smith", "Q999"), span(T2, "visited", "Q5")],
    # d3: nothing predicted, nothing to find: TP = FP = FN = 0 -> P = R = F1 = 1 (GERBIL)
    "d3": [],
    # d5: "Rome and" 0-8 Q220 (weak TP; strong and MD FP), Paris exact (TP everywhere)
    #     strong TP1 FP1 FN1 | weak TP2 FP0 FN0 | MD TP1 FP1 FN1
    "d5": [span(T5, "Rome and", "Q220"), span(T5, "Paris", "Q90")],
}
# Totals (d4: FN1 everywhere):
#   strong TP2 FP4 FN5: P 2/6, R 2/7, F1 4/13; per-document F1 1/3, 0, 1, 0, 1/2 -> macro 11/30
#   weak   TP4 FP2 FN3: P 4/6, R 4/7, F1 8/13; per-document F1 2/3, 0, 1, 0, 1   -> macro 8/15
#   MD     TP3 FP3 FN4: P 3/6, R 3/7, F1 6/13; per-document F1 2/3, 0, 1, 0, 1/2 -> macro 13/30
EXPECTED = {
    "strong": ((2, 4, 5, 1), (1 / 3, 2 / 7, 4 / 13), (11 / 30, 11 / 30, 11 / 30)),
    "weak": ((4, 2, 3, 1), (2 / 3, 4 / 7, 8 / 13), (8 / 15, 8 / 15, 8 / 15)),
    "md": ((3, 3, 4, 1), (1 / 2, 3 / 7, 6 / 13), (13 / 30, 13 / 30, 13 / 30)),
}


def write_gold(path, docs=GOLD):
    with open(path, "w", encoding="utf-8") as f:
        for doc_id, text, spans in docs:
            mentions = [{"start": s, "end": e, "entity_id": ent} if ent else {"start": s, "end": e,
                                                                                "entity_id": None, "nil": True}
                        for s, e, ent in spans]
            f.write(json.dumps({"id": doc_id, "lang": "en", "text": text, "mentions": mentions}) + "\n")


def pred_line(doc_id, spans, **extra):
    return json.dumps({"id": doc_id, "mentions": [{"start": s, "end": e, "entity_id": ent, "score": -0.5}
                                                 for s, e, ent in spans], **extra})


def write_pred(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def check(results):
    for mode, ((tp, fp, fn, ignored), micro, macro) in EXPECTED.items():
        m = results[mode]
        assert (m["tp"], m["fp"], m["fn"], m["ignored_on_nil"]) == (tp, fp, fn, ignored), mode
        assert [m["micro"][k] for k in ("precision", "recall", "f1")] == pytest.approx(list(micro)), mode
        assert m["macro"]["f1"] == pytest.approx(macro[2]), mode


def test_hand_counted_documents_in_python():
    scorer = EndToEndScorer()
    for doc_id, _, gold in GOLD:
        scorer.add(gold, PRED.get(doc_id, []))
    results = scorer.results()
    check(results)
    assert (results["documents"], results["gold_mentions"], results["gold_nil_mentions"]) == (5, 7, 1)
    # macro P and R average per-document P and R: strong (1/3 + 0 + 1 + 0 + 1/2) / 5 for both here
    assert results["strong"]["macro"]["precision"] == pytest.approx(11 / 30)


def test_gerbil_division_rules_and_md_bounds_strong():
    assert prf(0, 0, 0) == (1.0, 1.0, 1.0)  # nothing to find, nothing found
    assert prf(0, 1, 0) == (0.0, 0.0, 0.0) and prf(0, 0, 3) == (0.0, 0.0, 0.0)
    # A document whose only gold mention is NIL, linked there: ignored, so TP = FP = FN = 0 -> 1
    c = match_document([(0, 5, None)], [(0, 5, "Q1")])
    assert all((x.tp, x.fp, x.fn, x.ignored) == (0, 0, 0, 1) for x in c.values())
    # weak: a prediction overlapping both a NIL and an InKB span of another entity is a false positive
    c = match_document([(0, 5, None), (6, 10, "Q2")], [(3, 8, "Q1")])
    assert (c["weak"].fp, c["weak"].ignored) == (1, 0)
    # one gold span cannot be matched twice (one-to-one), even by weak matching
    c = match_document([(0, 10, "Q1")], [(0, 4, "Q1"), (5, 10, "Q1")])
    assert (c["weak"].tp, c["weak"].fp, c["weak"].fn) == (1, 1, 0)


def test_command_on_predictions_json_and_table(tmp_path, capsys):
    gold, pred, out = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl", tmp_path / "r.json"
    write_gold(gold)
    write_pred(pred, [pred_line(d, spans) for d, spans in PRED.items()])
    status, stdout, err = run(capsys, gold, "--end-to-end", "--predictions", pred, "--output-json", out, "--quiet")
    assert status == 0, err
    results = json.loads(out.read_text())
    check(results)
    assert results["problems"]["document_without_prediction"] == {"count": 1, "examples": ["d4"]}
    assert "InKB strong" in stdout and "30.77" in stdout  # strong micro-F1 4/13
    assert "mention detection" in stdout and "46.15" in stdout  # MD micro-F1 6/13


def test_threshold_drops_low_scores(tmp_path, capsys):
    gold, pred, out = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl", tmp_path / "r.json"
    write_gold(gold, GOLD[:1])
    write_pred(pred, [pred_line("d1", PRED["d1"])])  # every score -0.5
    assert run(capsys, gold, "--end-to-end", "--predictions", pred, "--output-json", out, "--threshold", "-0.4")[0] == 0
    r = json.loads(out.read_text())
    assert (r["strong"]["tp"], r["strong"]["fp"], r["strong"]["fn"]) == (0, 0, 3)


def test_aida_gold_nme_is_left_out(tmp_path, capsys):
    # Document 1 (train) of the sample: EU (--NME--), German -> Germany, British -> United Kingdom,
    # Peter Blackburn (--NME--), BRUSSELS -> Brussels. Text: sentences joined by "\n".
    from genre_fairseq.datasets import aida_documents
    doc = next(d for _, _, d in aida_documents(AIDA) if d["id"] == "1")
    text = doc["text"]
    g = text.index("German")
    preds = [span(text, "EU", "European Union"), (g, g + 6, "Germany"), span(text, "Peter Blackburn", "Peter")]
    pred, out = tmp_path / "pred.jsonl", tmp_path / "r.json"
    write_pred(pred, [pred_line("1", preds)])
    status, _, err = run(capsys, f"{AIDA}:train", "--end-to-end", "--predictions", pred, "--output-json", out, "--quiet")
    assert status == 0, err
    r = json.loads(out.read_text())
    # doc 1: 3 InKB gold, German TP, EU and Peter Blackburn on NIL spans: ignored; FN British, Brussels.
    # The other train documents of the sample have no predictions: their InKB mentions are all FN.
    d1 = (1, 0, 2, 2)
    assert r["gold_nil_mentions"] == 2
    assert (r["strong"]["tp"], r["strong"]["fp"], r["strong"]["ignored_on_nil"]) == (d1[0], d1[1], d1[3])
    assert r["strong"]["fn"] == r["gold_mentions"] - 1


@pytest.mark.parametrize("line, cause, message", [
    (pred_line("nope", []), "unknown_document", "document id 'nope' is not in the gold data"),
    (pred_line("d4", [(0, 99, "Q1")]), "bad_prediction", "span 0-99 is outside the text (length 5)"),
    (pred_line("d5", [(0, 4, "Q220"), (2, 8, "Q2")]), "overlapping_prediction", "span 2-8 overlaps span 0-4"),
    ('{"id": "d1", "mentions": [', "bad_json", "invalid JSON"),
    (pred_line("d3", [], text="Other text."), "bad_record", "differs from the gold document"),
    (pred_line("d1", []), "duplicate_id", "already has predictions at"),
])
def test_bad_predictions_are_counted_with_file_line_or_fatal_with_strict(tmp_path, capsys, line, cause, message):
    gold, pred, out = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl", tmp_path / "r.json"
    write_gold(gold)
    write_pred(pred, [pred_line("d1", PRED["d1"]), line])
    status, stdout, err = run(capsys, gold, "--end-to-end", "--predictions", pred, "--output-json", out, "--quiet")
    assert status == 0, err
    r = json.loads(out.read_text())
    assert r["run"]["predictions_read"]["skipped"] == {cause: 1}
    assert f"{pred}:2: " in stdout and message in stdout
    # d1's own predictions are still scored (Berlin); d5's first span (Rome 0-4) is kept, its overlapping one dropped
    assert r["strong"]["tp"] == (2 if cause == "overlapping_prediction" else 1)
    status, stdout, err = run(capsys, gold, "--end-to-end", "--predictions", pred, "--strict")
    assert status == 2 and err.startswith(f"genre-evaluate: error: {pred}:2: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_gold_lines_are_reported(tmp_path, capsys):
    gold, pred = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl"
    write_gold(gold, GOLD[:1])
    with open(gold, "a") as f:
        f.write('{"id": "x", "lang": "en", "text": "abc", "mentions": [{"start": 2, "end": 9, "entity_id": "Q"}]}\n')
    write_pred(pred, [pred_line("d1", [])])
    status, stdout, _ = run(capsys, gold, "--end-to-end", "--predictions", pred, "--quiet")
    assert status == 0 and f"{gold}:2: document 'x': mention #0: span 2-9 is outside" in stdout


@pytest.mark.parametrize("extra, message", [
    (["--mention-trie", "x.mtrie"], "--mention-trie applies to --end-to-end only"),
    (["--end-to-end", "--beam", "5"], "--beam applies to --model-dir only"),
    (["--end-to-end", "--marginalize"], "--marginalize does not apply to --end-to-end"),
    (["--end-to-end", "--limit", "2"], "--limit applies to --model-dir only"),
    (["--end-to-end", "--format", "mewsli"], "anchors or aida format"),
])
def test_usage_errors(tmp_path, capsys, extra, message):
    gold, pred = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl"
    write_gold(gold)
    write_pred(pred, [pred_line("d1", [])])
    status, _, err = run(capsys, gold, "--predictions", pred, *extra)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_model_dir_needs_trie_and_names(tmp_path, capsys):
    gold = tmp_path / "gold.jsonl"
    write_gold(gold)
    status, _, err = run(capsys, gold, "--end-to-end", "--model-dir", tmp_path, "--model-type", "mgenre")
    assert status == 2 and "needs --trie" in err


def test_metric_modules_import_no_torch():
    code = ("import sys, genre_fairseq.e2e_metrics, genre_fairseq.evaluate_e2e, genre_fairseq.documents; "
            "assert 'torch' not in sys.modules and 'fairseq' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_name_table_makes_gold_outside_the_kb_nil(tmp_path, capsys):
    from genre_fairseq.name_table import NameTable

    gold, pred, out, names = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl", tmp_path / "r.json", tmp_path / "kb.names"
    NameTable.build([("Q64", "en", "Berlin"), ("Q183", "en", "Germany")], str(names))  # no Q567 (Merkel)
    write_gold(gold, GOLD[:1])
    write_pred(pred, [pred_line("d1", PRED["d1"])])
    assert run(capsys, gold, "--end-to-end", "--predictions", pred, "--name-table", names, "--output-json", out)[0] == 0
    r = json.loads(out.read_text())
    # d1 with Merkel out of the KB: InKB gold Berlin, Germany. Berlin TP; Germany/Q1 FP, Germany FN.
    # "Merkel lives" (25-37): strong: not the NIL span (25-31) itself -> FP; weak: overlaps the NIL span and
    # no InKB span -> ignored.
    assert (r["gold_mentions"], r["gold_nil_mentions"]) == (2, 1)
    assert (r["strong"]["tp"], r["strong"]["fp"], r["strong"]["fn"], r["strong"]["ignored_on_nil"]) == (1, 2, 1, 0)
    assert (r["weak"]["tp"], r["weak"]["fp"], r["weak"]["fn"], r["weak"]["ignored_on_nil"]) == (1, 1, 1, 1)
    assert r["problems"]["gold_not_in_kb"]["examples"] == ["d1:25-31 (Q567)"]


def test_model_dir_branch_calls_link_with_the_given_options_and_writes_anchors(tmp_path, capsys, monkeypatch):
    """The --model-dir plumbing with a stand-in for the hub's model.link (the real one is another engineer's)."""
    from genre_fairseq import hub

    model_files = os.path.join(os.path.dirname(FIXTURES), "..", "examples", "quickstart", "model")
    calls = []

    class FakeModel:
        def link(self, texts, **options):
            calls.append((list(texts), options))
            out = []
            for text in texts:
                spans = []
                if "Berlin" in text:  # d1: Berlin -> Q64 (TP), "in" -> an identifier without an entity id
                    spans = [{"start": 0, "end": 6, "mention": "Berlin", "id": "Q64", "identifier": "Berlin >> en",
                              "score": -0.1},
                             {"start": 10, "end": 12, "mention": "in", "id": None, "identifier": "In >> en",
                              "score": -2.0}]
                out.append(spans)
            return out

    monkeypatch.setattr(hub.mGENRE, "from_pretrained", classmethod(lambda cls, *a, **k: FakeModel()))
    from genre_fairseq.name_table import NameTable

    names = tmp_path / "kb.names"
    NameTable.build([("Q64", "en", "Berlin"), ("Q183", "en", "Germany"), ("Q567", "en", "Angela Merkel"),
                     ("Q220", "en", "Rome")], str(names))
    gold, pred, out = tmp_path / "gold.jsonl", tmp_path / "pred.jsonl", tmp_path / "r.json"
    write_gold(gold, GOLD[:3])
    status, stdout, err = run(capsys, gold, "--end-to-end", "--model-dir", model_files, "--model-type", "mgenre",
                              "--trie", os.path.join(model_files, "cldr.trie"), "--name-table", names, "--beam", 3, "--window", 64, "--threshold",
                              -5, "--batch-size", 2, "--write-predictions", pred, "--output-json", out, "--quiet")
    assert status == 0, err
    assert [len(texts) for texts, _ in calls] == [2, 1]  # batches of --batch-size documents
    options = calls[0][1]
    assert set(options) == {"trie", "name_table", "beam", "window", "threshold", "batch_size"}
    assert (options["beam"], options["window"], options["threshold"], options["batch_size"]) == (3, 64, -5.0, 2)
    records = [json.loads(line) for line in pred.read_text().splitlines()]
    assert [r["id"] for r in records] == ["d1", "d2", "d3"] and records[0]["text"] == T1
    assert records[0]["mentions"][0] == {"start": 0, "end": 6, "entity_id": "Q64", "identifier": "Berlin >> en",
                                         "mention": "Berlin", "score": -0.1}
    assert records[0]["mentions"][1]["nil"] is True and records[0]["mentions"][1]["entity_id"] is None
    r = json.loads(out.read_text())
    # d1: Berlin TP, Germany and Merkel FN ("in" has no entity id: not a prediction); d2: Rome FN (Smith is NIL)
    assert (r["strong"]["tp"], r["strong"]["fp"], r["strong"]["fn"]) == (1, 0, 3)
    assert r["run"]["unlinked_spans"] == 1
    # the written predictions score again through --predictions, with the same figures
    out2 = tmp_path / "r2.json"
    assert run(capsys, gold, "--end-to-end", "--predictions", pred, "--name-table", names,
               "--output-json", out2)[0] == 0
    assert json.loads(out2.read_text())["strong"] == r["strong"]
