"""KILT page-level retrieval metrics, against hand-computed values."""
import pytest

from genre_fairseq.retrieval_metrics import (
    RetrievalScorer,
    evidence_sets,
    precision_at_k,
    predicted_pages,
    r_precision,
    rank_points,
    recall_at_k,
)


def gold(qid, *sets):
    return {"id": qid, "input": "q", "output": [{"answer": "a", "provenance": [{"wikipedia_id": p} for p in s]}
                                                 for s in sets]}


def guess(qid, *pages):
    return {"id": qid, "output": [{"provenance": [{"wikipedia_id": p, "title": f"T{p}"} for p in pages]}]}


def test_single_queries_by_hand():
    # two one-page evidence sets, the second found at rank 2 and the first at rank 3
    sets = evidence_sets(gold("a", ["1"], ["2"]))
    assert sets == [{"1"}, {"2"}]
    assert rank_points(["3", "2", "1"], sets) == [False, True, True]
    assert r_precision(["3", "2", "1"], sets) == 0
    assert [recall_at_k(["3", "2", "1"], sets, k) for k in (1, 2, 3)] == [0, 0.5, 1]
    assert [precision_at_k(["3", "2", "1"], sets, k) for k in (1, 2, 4)] == [0, 0.5, 0.5]
    # one two-page evidence set: it counts once, where its last page comes
    sets = [{"10", "11"}]
    assert rank_points(["10", "12", "11"], sets) == [False, True]
    assert r_precision(["10", "12", "11"], sets) == 0.5
    assert recall_at_k(["10", "12", "11"], sets, 1) == 0 and recall_at_k(["10", "12", "11"], sets, 2) == 1
    assert rank_points(["10", "12"], sets) == ["set:0", False]  # incomplete: no credit
    # the best evidence set gives R-precision
    assert r_precision(["7", "9"], [{"8", "9"}, {"7"}]) == 1
    with pytest.raises(ValueError):
        recall_at_k(["1"], [{"1"}], 0)


def test_page_ids_come_in_rank_order_without_repeats():
    assert predicted_pages(guess("a", "3", 3, "2", "3")) == ["3", "2"]
    assert predicted_pages({"id": "a", "output": []}) == []
    assert evidence_sets(gold("a", ["1"], ["1"], [])) == [{"1"}]


def test_scorer_means_over_gold_queries():
    scorer = RetrievalScorer(ks=(1, 2, 5))
    for item in (gold("a", ["1"], ["2"]), gold("b", ["10", "11"]), gold("c", ["5"])):
        assert scorer.add_gold(item)
    assert not scorer.add_gold({"id": "d", "output": [{"answer": "no page"}]})
    for item in (guess("a", "3", "3", "2", "1"), guess("b", "10", "12", "11"), guess("z", "1"),
                 guess("a", "1")):  # a second prediction for "a" is ignored
        scorer.add_prediction(item)
    r = scorer.results()
    # a: R-prec 0, recall@1,2,5 = 0, 1/2, 1; b: 1/2, 0, 1, 1; c (not predicted): 0
    assert r["r_precision"] == pytest.approx(1 / 6)
    assert (r["recall@1"], r["recall@2"], r["recall@5"]) == (0, pytest.approx(0.5), pytest.approx(2 / 3))
    assert (r["precision@1"], r["precision@2"], r["precision@5"]) == (0, pytest.approx(1 / 3), pytest.approx(0.2))
    assert (r["queries"], r["predicted"], r["no_provenance"], r["unknown_ids"]) == (3, 2, 1, 1)
    assert RetrievalScorer().results()["r_precision"] is None


def test_kilt_task_file_and_knowledge_source_fixtures(tmp_path):
    import json
    import os

    from genre_fairseq.name_table import NameTable
    from trie_tools._io import InputError
    from trie_tools.kilt_knowledge import KiltSourceStats, iter_kilt_pages, kilt_names

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "kilt")
    source = os.path.join(here, "kilt_knowledgesource-sample.json")
    stats = KiltSourceStats()
    assert [tuple(p) for p in iter_kilt_pages(source, stats=stats)] == [
        ("290", "A", "Q9659"), ("22989", "Paris", "Q90"), ("5001", "São Tomé", None)]
    assert (stats.read, stats.kept, stats.malformed, stats.no_wikidata_id) == (3, 3, 0, 1)
    assert list(kilt_names(source, id_field="wikidata_id")) == [("Q9659", "en", "A", True), ("Q90", "en", "Paris", True)]
    table_path = tmp_path / "kilt.names"
    NameTable.build(kilt_names(source), table_path)
    with NameTable.load(table_path) as table:
        assert table.ids("en", "São Tomé") == ["5001"] and table.primary_names("22989") == [("en", "Paris")]
    scorer = RetrievalScorer(ks=(1,))
    with open(os.path.join(here, "nq-dev-sample.jsonl"), encoding="utf-8") as f:
        for line in f:
            scorer.add_gold(json.loads(line))
    scorer.add_prediction(guess("-1", "22989", "290"))
    scorer.add_prediction(guess("-2", "22989", "290"))
    r = scorer.results()
    assert r["r_precision"] == 0.5 and r["recall@1"] == 0.5 and r["queries"] == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"wikipedia_id": "1", "wikipedia_title": "X"}\nnot json\n{"wikipedia_id": "", "wikipedia_title": "Y"}\n')
    stats = KiltSourceStats()
    assert [p.title for p in iter_kilt_pages(bad, stats=stats)] == ["X"]
    assert stats.malformed == 2 and stats.malformed_lines == [2, 3]
    with pytest.raises(InputError, match=r"bad\.json:2: not a JSON object"):
        list(iter_kilt_pages(bad, strict=True))
    with pytest.raises(ValueError, match="id_field"):
        list(kilt_names(source, id_field="title"))


def test_score_files_with_kilt_predictions(tmp_path):
    import json
    import os

    from genre_fairseq.retrieval_metrics import kilt_prediction, score_files

    gold = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "kilt", "nq-dev-sample.jsonl")
    pred = tmp_path / "pred.jsonl"
    assert kilt_prediction("-1", [("22989", "Paris")]) == {
        "id": "-1", "output": [{"provenance": [{"wikipedia_id": "22989", "title": "Paris"}]}]}
    pred.write_text(json.dumps(kilt_prediction("-1", [("1", "X"), ("22989", "Paris")])) + "\nnot json\n"
                    + json.dumps(kilt_prediction("-2", [("290", "A")])) + "\n", encoding="utf-8")
    r = score_files(gold, pred, ks=(1, 2))
    assert (r["r_precision"], r["recall@1"], r["recall@2"], r["precision@2"]) == (0.5, 0.5, 1.0, 0.5)
    assert r["read"]["skipped"] == {"bad_json": 1}
