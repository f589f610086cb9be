"""model.link: end-to-end linking on the hub (raw text and given spans), with hand-set probabilities."""

import math

import pytest

from genre_fairseq import markup
from genre_fairseq.candidates import IdentifierEncoder
from genre_fairseq.e2e_search import mention_tree
from genre_fairseq.hub import mGENRE
from genre_fairseq.name_table import MentionTable
from tests.e2e_model import ON_PATH, QUICKSTART, OracleModel, extended_quickstart


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return extended_quickstart(str(tmp_path_factory.mktemp("e2e_model")))


@pytest.fixture(scope="module")
def hub(model_dir):
    return mGENRE.from_pretrained(model_dir, device="cpu")


def files(model_dir):
    return {"trie": f"{model_dir}/cldr.trie", "name_table": f"{model_dir}/cldr.names"}


def mention_ids(hub, text, mention, occurrence=0):
    """The source token ids of the ``occurrence``-th ``mention`` in ``text``, and its characters."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(mention, start + 1)
    tokens = hub.tokens_with_offsets(text)
    a, b, snapped = markup.snap_to_tokens(text, tokens, start, start + len(mention))
    assert not snapped, (mention, [t.symbol for t in tokens[a:b]])
    return tuple(hub.src_dict.index(t.symbol) for t in tokens[a:b]), (start, start + len(mention))


def identifier_ids(hub, identifier):
    seq = IdentifierEncoder(hub.bpe, hub.tgt_dict)(identifier)
    assert seq is not None and tuple(seq) in hub._tree(hub._trees_path), identifier
    return tuple(seq[1:-1])


def oracle_hub(hub, model_dir, gold):
    """A hub over the extended model's dictionaries and BPE whose model writes ``gold``'s markup."""
    hub._trees_path = f"{model_dir}/cldr.trie"
    table = {}
    for text, mention, identifier, q in gold:
        ids, _ = mention_ids(hub, text, mention)
        table[ids] = (identifier_ids(hub, identifier), q)
    return mGENRE([OracleModel(hub.tgt_dict, table, hub.markup_tokens().as_tuple())], hub.task, hub.bpe, "cpu")


def expected_score(hub, identifier, q):
    """A span's score: the mean log-probability of its identifier's tokens (each q) and ] (ON_PATH)."""
    n = len(identifier_ids(hub, identifier))
    return (n * math.log(q) + math.log(ON_PATH)) / (n + 1)


TEXT = "Ich wohne in Deutschland und spreche Deutsch, nicht Französisch. 🙂 Ça va, Zürich? Deutschland!"


def test_offsets_are_the_text_slices_and_scores_are_hand_computed(hub, model_dir):
    gold = [(TEXT, "Deutschland", "Deutschland >> de", 0.8), (TEXT, "Französisch", "Französisch >> de", 0.5)]
    model = oracle_hub(hub, model_dir, gold)
    (spans,) = model.link([TEXT], trie=files(model_dir)["trie"], beam=3)
    starts = [TEXT.index("Deutschland"), TEXT.index("Französisch"), TEXT.rindex("Deutschland")]
    assert [(s["start"], s["end"]) for s in spans] == [(a, a + len(m)) for a, m in
                                                        zip(starts, ["Deutschland", "Französisch", "Deutschland"])]
    for s in spans:
        assert s["mention"] == TEXT[s["start"]: s["end"]]
        assert s["id"] is None  # no name table
    assert [s["identifier"] for s in spans] == ["Deutschland >> de", "Französisch >> de", "Deutschland >> de"]
    assert spans[0]["score"] == pytest.approx(expected_score(hub, "Deutschland >> de", 0.8), abs=1e-4)
    assert spans[1]["score"] == pytest.approx(expected_score(hub, "Französisch >> de", 0.5), abs=1e-4)
    # with the name table: entity ids, and the score marginalized over the n-best's identifiers of the
    # entity (the others are off the oracle's path: they add almost nothing)
    (named,) = model.link([TEXT], beam=3, **files(model_dir))
    assert [s["id"] for s in named] == ["territory:DE", "language:fr", "territory:DE"]
    assert [(s["start"], s["end"]) for s in named] == [(s["start"], s["end"]) for s in spans]
    for s, t in zip(named, spans):
        assert s["score"] == pytest.approx(t["score"], abs=1e-2) and s["score"] >= t["score"] - 1e-6


def test_offsets_with_combining_characters_and_outside_the_bmp(hub, model_dir):
    text = "Cafe\u0301 in Deutschland 𝔘𝔫𝔦 Japan 😀 Japan."
    gold = [(text, "Japan", "Japan >> de", 0.9), (text, "Deutschland", "Deutschland >> de", 0.9)]
    (spans,) = oracle_hub(hub, model_dir, gold).link([text], beam=2, **files(model_dir))
    want = [(text.index("Deutschland"), "Deutschland"), (text.index("Japan"), "Japan"), (text.rindex("Japan"), "Japan")]
    assert [(s["start"], s["mention"]) for s in spans] == want
    assert all(text[s["start"]: s["end"]] == s["mention"] for s in spans)
    assert [s["id"] for s in spans] == ["territory:DE", "territory:JP", "territory:JP"]


def test_windows_give_the_spans_of_one_window(hub, model_dir):
    text = ("Ich wohne in Deutschland. Er spricht Französisch. Sie kommt aus Japan. "
            "Wir lernen Deutsch. Die Schweiz ist klein. Deutschland ist groß.")
    gold = [(text, "Deutschland", "Deutschland >> de", 0.9), (text, "Französisch", "Französisch >> de", 0.7),
            (text, "Japan", "Japan >> de", 0.6), (text, "Schweiz", "Schweiz >> de", 0.8)]
    model = oracle_hub(hub, model_dir, gold)
    tokens = model.tokens_with_offsets(text)
    assert len(tokens) > 60
    cut = markup.windows(text, tokens, 30)
    assert len(cut) >= 3 and all(text[w.end - 1] == "." for w in cut)  # at sentence ends
    (one,) = model.link([text], window=len(tokens), **files(model_dir))
    (many,) = model.link([text], window=30, batch_size=2, **files(model_dir))
    assert len(one) == 5
    assert [(s["start"], s["end"], s["id"], s["identifier"]) for s in many] == \
        [(s["start"], s["end"], s["id"], s["identifier"]) for s in one]
    assert [s["score"] for s in many] == pytest.approx([s["score"] for s in one], abs=1e-4)


def test_threshold_drops_low_scoring_spans(hub, model_dir):
    gold = [(TEXT, "Deutschland", "Deutschland >> de", 0.9), (TEXT, "Französisch", "Französisch >> de", 0.05)]
    model = oracle_hub(hub, model_dir, gold)
    (every,) = model.link([TEXT], **files(model_dir))
    low = expected_score(hub, "Französisch >> de", 0.05)
    high = expected_score(hub, "Deutschland >> de", 0.9)
    assert [s["mention"] for s in every] == ["Deutschland", "Französisch", "Deutschland"]
    (kept,) = model.link([TEXT], threshold=(low + high) / 2, **files(model_dir))
    assert [s["mention"] for s in kept] == ["Deutschland", "Deutschland"]


def test_mention_trie_and_candidates(hub, model_dir, tmp_path):
    text = "Wir sprechen Deutsch in Japan."
    gold = [(text, "Deutsch", "Deutschland >> de", 0.9), (text, "Japan", "Japan >> de", 0.9)]
    model = oracle_hub(hub, model_dir, gold)
    deutsch, _ = mention_ids(hub, text, "Deutsch")
    (free,) = model.link([text], **files(model_dir))
    assert [(s["mention"], s["id"]) for s in free] == [("Deutsch", "territory:DE"), ("Japan", "territory:JP")]
    # the mention tree knows "Deutsch" only: Japan may not be marked
    only = mention_tree([deutsch], hub.tgt_dict)
    (spans,) = model.link([text], mention_trie=only, **files(model_dir))
    assert [(s["mention"], s["id"]) for s in spans] == [("Deutsch", "territory:DE")]
    # with a mention table, "Deutsch" may only be the language (whatever the model prefers)
    MentionTable.build([("Deutsch", "language:de", 3)], tmp_path / "m.mentions")
    (spans,) = model.link([text], mention_trie=only, mention_table=str(tmp_path / "m.mentions"), candidates_k=1,
                          **files(model_dir))
    assert [(s["mention"], s["id"]) for s in spans] == [("Deutsch", "language:de")]


def test_empty_and_whitespace_texts_have_no_spans(hub, model_dir):
    gold = [(TEXT, "Deutschland", "Deutschland >> de", 0.9)]
    out = oracle_hub(hub, model_dir, gold).link(["", "  \n ", TEXT], **files(model_dir))
    assert out[0] == [] and out[1] == [] and len(out[2]) == 2


@pytest.fixture(scope="module")
def quickstart():
    return mGENRE.from_pretrained(QUICKSTART, device="cpu")


def test_given_spans_equal_sample_on_the_marked_inputs(quickstart):
    kb = {"trie": f"{QUICKSTART}/cldr.trie", "name_table": f"{QUICKSTART}/cldr.names"}
    texts = ["Ich wohne in Deutschland und spreche Deutsch.", "Paris est en France.", "Nothing here."]
    spans = [[(37, 44), (13, 24)], [(13, 19)], []]
    out = quickstart.link(texts, spans=spans, beam=4, **kb)
    marked = ["Ich wohne in Deutschland und spreche [START] Deutsch [END] .",
              "Ich wohne in [START] Deutschland [END] und spreche Deutsch.",
              "Paris est en [START] France [END] ."]
    ranked = quickstart.sample(marked, beam=4, alpha=1.0, **kb)
    got = [(s["start"], s["end"], s["mention"], s["id"], s["identifier"], s["score"]) for text in out for s in text]
    want = [(13, 24, "Deutschland", ranked[1][0]["id"], ranked[1][0]["texts"][0], ranked[1][0]["score"]),
            (37, 44, "Deutsch", ranked[0][0]["id"], ranked[0][0]["texts"][0], ranked[0][0]["score"]),
            (13, 19, "France", ranked[2][0]["id"], ranked[2][0]["texts"][0], ranked[2][0]["score"])]
    assert got == want
    assert out[2] == []
    assert [s["id"] for s in out[0]] == ["territory:DE", "language:de"]  # the trained model knows these
    # the threshold drops given spans too
    lowest = min(s["score"] for text in out for s in text)
    kept = quickstart.link(texts, spans=spans, beam=4, threshold=lowest + 1e-9, **kb)
    assert sum(map(len, kept)) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(texts=[]), "non-empty list of texts"),
    (dict(beam=0), "beam must be an integer >= 1"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(window=0), "window must be an integer >= 1"),
    (dict(max_len_b=0), "max_len_b must be an integer >= 1"),
    (dict(window=10**6), "does not fit the model"),
    (dict(threshold=float("nan")), "threshold must be a finite number"),
    (dict(trie=None), "needs trie="),
    (dict(mention_table="x.mentions"), "needs mention_trie="),
    (dict(markup=["{", "}"]), "four dictionary symbols"),
    (dict(spans=[[(0, 99)]]), r"spans\[0\]: \(0, 99\) is not a span of text 0"),
    (dict(spans=[[(0, 3), (2, 5)]]), r"spans\[0\]: \(2, 5\) overlaps \(0, 3\)"),
    (dict(spans=[[(3, 4)]]), "covers only whitespace"),
    (dict(spans=[]), "one list of \\(start, end\\) per text"),
    (dict(spans=[[(0, 3)]], window=4), "window= is for linking raw text"),
])
def test_bad_options_are_one_line_errors(hub, model_dir, kwargs, message):
    options = dict(texts=["Ich bin da."], **files(model_dir))
    options.update(kwargs)
    with pytest.raises(ValueError, match=message) as error:
        hub.link(options.pop("texts"), **options)
    assert "\n" not in str(error.value)


def test_a_model_without_markup_symbols_says_which_and_how_to_add_them(quickstart):
    with pytest.raises(ValueError, match="markup symbol '▁{' is not in this model's dict.target.txt") as error:
        quickstart.link(["Ich bin da."], trie=f"{QUICKSTART}/cldr.trie")
    assert "append them to dict.source.txt and dict.target.txt" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(TypeError):
        quickstart.link("Ich bin da.", trie=f"{QUICKSTART}/cldr.trie")


def test_gpt2_models_get_their_markup_tokens_and_exact_offsets(tmp_path):
    """A GENRE (GPT-2 BPE) hub: markup " {" " }" " [" " ]" by default, offsets exact across byte pieces."""
    from argparse import Namespace

    from fairseq.data import Dictionary

    from genre_fairseq.hub import GENRE
    from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
    from tests.toy import fairseq_bpe, write_gpt2_bpe

    merges = [("\u0120", c) for c in "{}[]"] + [("B", "e"), ("Be", "r")]
    encoder_json, vocab_bpe, dict_txt = write_gpt2_bpe(str(tmp_path), merges)
    bpe = fairseq_bpe(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=vocab_bpe)
    d = Dictionary.load(dict_txt)
    encode = IdentifierEncoder(bpe, d)
    tree = PrefixTree.from_sequences([encode(x) for x in ("Berlin", "Zürich", "Bern")], start_token=d.eos(),
                                     dictionary_fingerprint=dictionary_fingerprint(d))
    task = Namespace(source_dictionary=d, target_dictionary=d)
    plain = GENRE([OracleModel(d, {}, (4, 5, 6, 7))], task, bpe, "cpu")
    mk = plain.markup_tokens()
    assert [bpe.decode(d[t]) for t in mk.as_tuple()] == [" {", " }", " [", " ]"]
    text = "In Zürich 😀 und Berlin, nicht Bern."
    tokens = plain.tokens_with_offsets(text)
    gold = {}
    for mention, identifier in (("Zürich", "Zürich"), ("Berlin", "Berlin")):
        start = text.index(mention)
        a, b, snapped = markup.snap_to_tokens(text, tokens, start, start + len(mention))
        assert not snapped
        gold[tuple(d.index(t.symbol) for t in tokens[a:b])] = (tuple(encode(identifier)[1:-1]), 0.9)
    model = GENRE([OracleModel(d, gold, mk.as_tuple())], task, bpe, "cpu")
    (spans,) = model.link([text], trie=tree, beam=2)
    assert [(s["start"], s["end"], s["mention"], s["identifier"]) for s in spans] == [
        (3, 9, "Zürich", "Zürich", ), (text.index("Berlin"), text.index("Berlin") + 6, "Berlin", "Berlin")]


def test_span_entities_marginalizes_a_spans_identifiers_by_hand():
    """Two hypotheses mark the same span with two names of one entity, a third with another entity."""
    import torch

    from genre_fairseq.e2e_search import LinkedSpan, span_entities
    from tests.toy import make_dictionary

    d = make_dictionary(6)
    w = [d.index(f"w{i}") for i in range(6)]

    # output positions: the identifier at `at`, its ] right after; scores chosen per position
    def hyp(spans, scores):
        return {"spans": spans, "positional_scores": torch.tensor(scores)}

    h1 = hyp([LinkedSpan(0, 1, [w[3]], 4), LinkedSpan(2, 3, [w[5]], 10)],
             [0, 0, 0, 0, -0.5, -0.1, 0, 0, 0, 0, -2.0, -0.2])
    h2 = hyp([LinkedSpan(0, 1, [w[3], w[4]], 4)], [0, 0, 0, 0, -1.0, -0.3, -0.2])
    h3 = hyp([LinkedSpan(0, 2, [w[4]], 5)], [0, 0, 0, 0, 0, -0.05, -0.05])  # another span: not counted
    entity = {"w3": "E1", "w3 w4": "E1", "w4": "E2", "w5": None}.get
    out = span_entities([h1, h2, h3], d, None, entity)
    first = math.log(math.exp((-0.5 - 0.1) / 2) + math.exp((-1.0 - 0.3 - 0.2) / 3))
    assert [(s["start"], s["end"], s["id"], s["identifier"]) for s in out] == [(0, 1, "E1", "w3"), (2, 3, None, "w5")]
    assert out[0]["score"] == pytest.approx(first) and out[1]["score"] == pytest.approx((-2.0 - 0.2) / 2)
    best = span_entities([h1, h2, h3], d, None, entity, marginalize=False)
    assert best[0]["score"] == pytest.approx(-0.3)
    plain = span_entities([h1, h2, h3], d, None, None, alpha=0.0)  # no table: the best hypothesis's own
    assert [(s["id"], s["identifier"], s["score"]) for s in plain] == [(None, "w3", pytest.approx(-0.6)),
                                                                      (None, "w5", pytest.approx(-2.2))]


def test_genre_evaluate_end_to_end_model_dir_writes_what_link_returns(model_dir, hub, tmp_path):
    """genre-evaluate --end-to-end --model-dir: its predictions are model.link's spans, and scoring the
    written file with --predictions gives the same figures."""
    import json

    from genre_fairseq import evaluate

    texts = ["Ich wohne in Deutschland und spreche Deutsch.", "Paris est la capitale de la France."]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in [
        {"id": "d1", "lang": "de", "text": texts[0], "mentions": [
            {"start": 13, "end": 24, "entity_id": "territory:DE"}, {"start": 37, "end": 44, "entity_id": "language:de"}]},
        {"id": "d2", "lang": "fr", "text": texts[1], "mentions": [{"start": 0, "end": 5, "entity_id": "territory:FR"}]},
    ]), encoding="utf-8")
    assert texts[0][13:24] == "Deutschland" and texts[0][37:44] == "Deutsch"
    common = [str(gold), "--end-to-end", "--name-table", f"{model_dir}/cldr.names", "--quiet"]
    pred, first, second = tmp_path / "pred.jsonl", tmp_path / "r1.json", tmp_path / "r2.json"
    assert evaluate.main(common + ["--model-dir", model_dir, "--model-type", "mgenre", "--trie", f"{model_dir}/cldr.trie",
                                   "--beam", "3", "--device", "cpu", "--write-predictions", str(pred),
                                   "--output-json", str(first)]) == 0
    expected = hub.link(texts, **files(model_dir), beam=3)
    written = [json.loads(line) for line in pred.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in written] == ["d1", "d2"]
    for record, spans in zip(written, expected):
        assert [(m["start"], m["end"], m["entity_id"]) for m in record["mentions"]] == \
            [(s["start"], s["end"], s["id"]) for s in spans]
        for m in record["mentions"]:
            assert m["mention"] == record["text"][m["start"]:m["end"]]
    assert evaluate.main(common + ["--predictions", str(pred), "--output-json", str(second)]) == 0
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    for mode in ("strong", "weak", "md"):
        assert a[mode] == b[mode], mode
    assert a["documents"] == 2 and a["gold_mentions"] == 3
    assert a["predicted_mentions"] == sum(len(spans) for spans in expected)
