"""Marginalization over the names of an entity: exact numbers worked out by hand."""
import math

import pytest

from genre_fairseq.marginalize import NameResolver, normalized_score, rank_entities
from genre_fairseq.name_table import NameTable


@pytest.fixture
def table(tmp_path):
    path = str(tmp_path / "kb.names")
    NameTable.build([("Q90", "fr", "Paris"), ("Q90", "en", "Paris"), ("Q90", "ru", "Париж"),
                     ("Q90", "de", "Paris"), ("Q167646", "de", "Paris"),  # an ambiguous name
                     ("Q900000002", "en", "Paris (disambiguation)")], path)
    with NameTable.load(path) as t:
        yield t


# (identifier, log p, length) -> normalized score log p / L ** 0.5
HYPOTHESES = [
    ("Paris >> fr", -0.4, 4),  # -0.2
    ("Paris >> en", -1.8, 9),  # -0.6
    ("Paris (disambiguation) >> en", -0.5, 16),  # -0.125
    ("Париж >> ru", -2.0, 4),  # -1.0
    ("Nowhere >> en", -3.0, 9),  # -1.0, not in the table
    ("Paris >> de", -1.4, 4),  # -0.7, Q90 and Q167646: the id rule gives Q90
]


def run(table, **kwargs):
    texts, logprobs, lengths = zip(*HYPOTHESES)
    return rank_entities(texts, logprobs, lengths, NameResolver(table, "name_lang"), **kwargs)


def test_marginal_scores_by_hand(table):
    ranked = run(table, marginalize=True, alpha=0.5)
    assert [e["id"] for e in ranked] == ["Q90", "Q900000002", None]
    # log(e^-0.2 + e^-0.6 + e^-0.7 + e^-1.0)
    assert ranked[0]["score"] == pytest.approx(0.8029012408109366, abs=1e-6)
    assert ranked[0]["texts"] == ["Paris >> fr", "Paris >> en", "Paris >> de", "Париж >> ru"]
    assert ranked[0]["scores"] == pytest.approx([-0.2, -0.6, -0.7, -1.0], abs=1e-9)
    assert ranked[1] == {"id": "Q900000002", "score": pytest.approx(-0.125), "texts": ["Paris (disambiguation) >> en"],
                         "scores": [pytest.approx(-0.125)]}
    assert ranked[2]["texts"] == ["Nowhere >> en"] and ranked[2]["score"] == pytest.approx(-1.0)


def test_without_marginalization_the_best_name_decides(table):
    ranked = run(table, marginalize=False)
    assert [e["id"] for e in ranked] == ["Q900000002", "Q90", None]
    assert [e["score"] for e in ranked] == pytest.approx([-0.125, -0.2, -1.0])


def test_alpha_changes_the_normalization(table):
    ranked = run(table, marginalize=True, alpha=1.0)
    # Q90: log(e^-0.1 + e^-0.2 + e^-0.35 + e^-0.5); Q900000002: -0.5 / 16.
    expected = math.log(math.exp(-0.1) + math.exp(-0.2) + math.exp(-0.35) + math.exp(-0.5))
    assert ranked[0]["id"] == "Q90" and ranked[0]["score"] == pytest.approx(expected, abs=1e-9)
    assert normalized_score(-0.5, 16, 1.0) == pytest.approx(-0.03125)


def test_ties_keep_beam_order_and_bad_input():
    ranked = rank_entities(["b", "a"], [-1.0, -1.0], [1, 1], lambda t: t.upper(), marginalize=False)
    assert [e["id"] for e in ranked] == ["B", "A"]
    assert rank_entities([], [], [], lambda t: None) == []
    with pytest.raises(ValueError, match="differ in length"):
        rank_entities(["a"], [], [], lambda t: None)
    with pytest.raises(ValueError, match="length must be >= 1"):
        normalized_score(-1.0, 0, 0.5)


def test_resolver_formats(table, tmp_path):
    resolve = NameResolver(table, "name_lang")
    assert resolve("Paris >> de") == "Q90"
    assert resolve("Paris") is None  # malformed for name_lang
    assert resolve("Paris >> xx") is None
    canonical_path = str(tmp_path / "c.names")
    NameTable.build([("Q90", "", "Paris"), ("Q167646", "", "Paris >> de")], canonical_path)
    with NameTable.load(canonical_path) as canonical:
        resolve = NameResolver(canonical, "canonical")
        assert resolve("Paris") == "Q90" and resolve("Paris >> de") == "Q167646"
