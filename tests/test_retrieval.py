"""Page-level retrieval: hub ``retrieve``, ``fairseq-generate --task genre --retrieval``, ``genre-evaluate --retrieval``.

The model is the shipped quickstart mGENRE; its CLDR knowledge base (cldr.trie / cldr.names) plays
the pages. Scores are checked against teacher-forced log-probabilities of every identifier of a
small tree (an exhaustive oracle), and KILT's metrics against values worked out by hand.
"""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from genre_fairseq.evaluate import main as evaluate_main
from genre_fairseq.retrieval_metrics import score_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "examples", "quickstart", "model")
TRIE, NAMES = os.path.join(MODEL, "cldr.trie"), os.path.join(MODEL, "cldr.names")
PLUGIN = os.path.join(ROOT, "genre_fairseq")
BIN = os.path.dirname(sys.executable)
QUERIES = ["Frankreich", "Schweizer Franken", "die Sprache von Italien"]


@pytest.fixture(scope="module")
def model():
    from genre_fairseq.hub import mGENRE

    torch.set_num_threads(1)
    return mGENRE.from_pretrained(MODEL, device="cpu")


# ----------------------------------------------------------------------------- hub retrieve


def test_retrieve_ranks_pages_without_markers(model):
    pages = model.retrieve(QUERIES, trie=TRIE, name_table=NAMES, beam=5, k=3)
    assert len(pages) == len(QUERIES)
    for found in pages:
        assert 1 <= len(found) <= 3
        assert all(set(p) == {"id", "title", "score"} for p in found)
        assert [p["score"] for p in found] == sorted((p["score"] for p in found), reverse=True)
        assert len({p["id"] for p in found}) == len(found)  # one entry per page
    assert pages[0][0]["id"] == "territory:FR" and pages[0][0]["title"] == "Frankreich"
    assert model.retrieve([], trie=TRIE, name_table=NAMES) == []
    # no name table: titles only, ids None
    bare = model.retrieve(QUERIES[:1], trie=TRIE, beam=5, k=2)
    assert [p["id"] for p in bare[0]] == [None, None] and all(isinstance(p["title"], str) for p in bare[0])


def test_retrieve_scores_are_the_teacher_forced_scores_of_every_identifier(model):
    """With beam >= the tree's size the constrained search keeps every identifier: scores must be exact."""
    from genre_fairseq.candidates import IdentifierEncoder
    from genre_fairseq.name_table import NameTable
    from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint

    identifiers = ["Frankreich >> de", "France >> fr", "Francia >> it", "Französisch >> de", "français >> fr",
                   "Italien >> de", "franc français >> fr"]  # 3 names of territory:FR, 2 of language:fr
    encode = IdentifierEncoder(model.bpe, model.tgt_dict)
    seqs = [encode(x) for x in identifiers]
    assert all(seqs)
    tree = PrefixTree.from_sequences(seqs, dictionary_fingerprint=dictionary_fingerprint(model.tgt_dict),
                                     start_token=model.tgt_dict.eos(), identifier_format="name_lang")
    table = NameTable.load(NAMES)
    query = "Frankreich"
    got = model.retrieve([query], trie=tree, name_table=table, beam=8, marginalize=True)[0]

    src = model._query_ids(query, 0).unsqueeze(0)
    net = model.models[0]
    net.decoder.set_beam_size(1)  # the search left its beam size in the attention layers
    by_entity = {}
    for identifier, seq in zip(identifiers, seqs):
        target = torch.tensor([seq[1:]])  # tokens + EOS
        prev = torch.tensor([seq[:-1]])  # decoder start (EOS) + tokens
        with torch.no_grad():
            logits, _ = net(src, torch.tensor([src.numel()]), prev)
        logprob = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.unsqueeze(-1)).sum().item()
        lang, name = identifier.split(" >> ")[1], identifier.split(" >> ")[0]
        entity = table.ids(lang, name)[0]
        by_entity.setdefault(entity, []).append(logprob / math.sqrt(target.numel()))
    expected = {e: max(s) + math.log(sum(math.exp(x - max(s)) for x in s)) for e, s in by_entity.items()}
    assert {p["id"] for p in got} == set(expected)
    for page in got:
        assert page["score"] == pytest.approx(expected[page["id"]], abs=1e-3)
    assert [p["id"] for p in got] == sorted(expected, key=expected.get, reverse=True)
    assert len(got) == 4  # territory:FR (3 names marginalized), language:fr (2), territory:IT, currency:FRF


@pytest.mark.parametrize("queries,kwargs,error,message", [
    ("Frankreich", {}, TypeError, "takes a list of queries"),
    (["Frankreich", "  "], {}, ValueError, "query 1: empty"),
    ([3], {}, TypeError, "query 0: expected a string"),
    (["Frankreich"], {"k": 0}, ValueError, "k must be None (all) or an integer >= 1"),
    (["Frankreich"], {"beam": 0}, ValueError, "beam must be an integer >= 1"),
    (["Frankreich"], {"marginalize": True, "name_table": None}, ValueError, "needs name_table="),
])
def test_bad_retrieve_arguments_are_refused(model, queries, kwargs, error, message):
    options = {"trie": TRIE, "name_table": NAMES, **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.retrieve(queries, **options)


def test_a_long_query_is_cut_at_the_end(model):
    ids = model._query_ids("Frankreich " * 1000, 0)
    assert ids.numel() <= model._max_source_tokens and ids[-1].item() == model.src_dict.eos()


# ----------------------------------------------------------------------------- fairseq-generate --retrieval


def _run(cmd):
    return subprocess.run([os.path.join(BIN, cmd[0])] + cmd[1:], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore"))


def test_fairseq_generate_accepts_unmarked_queries_with_retrieval(model, tmp_path):
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=os.path.join(MODEL, "spm.model"))
    (tmp_path / "test.source").write_text("".join(" ".join(sp.encode(q, out_type=str)) + "\n" for q in QUERIES),
                                          encoding="utf-8")
    proc = _run(["fairseq-preprocess", "--only-source", "--source-lang", "source", "--target-lang", "target",
                 "--testpref", str(tmp_path / "test"), "--destdir", str(tmp_path / "bin"),
                 "--srcdict", os.path.join(MODEL, "dict.source.txt"), "--workers", "1"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.copy(os.path.join(MODEL, "dict.target.txt"), tmp_path / "bin")
    generate = ["fairseq-generate", str(tmp_path / "bin"), "--user-dir", PLUGIN, "--task", "genre",
                "--source-lang", "source", "--target-lang", "target", "--path", os.path.join(MODEL, "model.pt"),
                "--trie", TRIE, "--name-table", NAMES, "--marginalize", "--bpe", "sentencepiece",
                "--sentencepiece-model", os.path.join(MODEL, "spm.model"), "--gen-subset", "test",
                "--beam", "4", "--nbest", "4", "--cpu", "--batch-size", "2"]
    # (without --retrieval the same lines are refused: test_bad_input_decoding's "unmarked" subset)
    proc = _run(generate + ["--retrieval"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [x.split("\t") for x in proc.stdout.splitlines() if x.startswith("E-")]
    expected = model.retrieve(QUERIES, trie=TRIE, name_table=NAMES, beam=4, marginalize=True)
    for i, pages in enumerate(expected):
        mine = sorted((x for x in lines if x[0] == f"E-{i}"), key=lambda x: int(x[1]))
        assert [x[3] for x in mine] == [p["id"] for p in pages]
        assert [float(x[2]) for x in mine] == pytest.approx([p["score"] for p in pages], abs=1e-4)


# ----------------------------------------------------------------------------- genre-evaluate --retrieval


def kilt_gold(qid, *sets, text="q"):
    return {"id": qid, "input": text, "output": [{"answer": "a", "provenance": [{"wikipedia_id": p} for p in s]}
                                                  for s in sets]}


def kilt_guess(qid, *pages):
    return {"id": qid, "output": [{"provenance": [{"wikipedia_id": p, "title": f"T{p}"} for p in pages]}]}


def write_lines(path, items):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items), encoding="utf-8")
    return path


def evaluate(*argv):
    return evaluate_main([str(a) for a in argv])


def test_evaluate_predictions_by_hand(tmp_path, capsys):
    gold = write_lines(tmp_path / "gold.jsonl", [
        kilt_gold("a", ["1"], ["2"]),       # two one-page evidence sets
        kilt_gold("b", ["10", "11"]),       # one two-page set
        kilt_gold(3, ["5"]),                # an integer id
        kilt_gold("d", ["7"]),              # no prediction: scores 0
        {"id": "e", "input": "q", "output": [{"answer": "no page"}]},  # no provenance: not scored
        "not json",
        {"input": "q", "output": []},       # no id
        kilt_gold("a", ["9"]),              # repeated id
    ])
    pred = write_lines(tmp_path / "pred.jsonl", [
        kilt_guess("a", "3", "2", "1"),
        kilt_guess("b", "10", "12", "11"),
        kilt_guess("3", "5", "6"),
        kilt_guess("zzz", "1"),             # unknown id
        {"id": "b", "output": []},          # bad record
    ])
    out = tmp_path / "r.json"
    assert evaluate(gold, "--retrieval", "--predictions", pred, "--k", "1,2,3", "--output-json", out) == 0
    r = json.loads(out.read_text())
    # R-precision: a: best of {1} (first 1: "3" -> 0) and {2} (0) = 0; b: first 2 = 10, 12 -> 1/2; 3: 1; d: 0
    assert r["r_precision"] == pytest.approx((0 + 0.5 + 1 + 0) / 4)
    # grouped ranks: a [F, T, T] of 2 sets; b [F, T] (10 partial then 11 completes it); 3 [T, F]
    assert r["recall@1"] == pytest.approx((0 + 0 + 1 + 0) / 4)
    assert r["recall@2"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert r["recall@3"] == pytest.approx((1 + 1 + 1 + 0) / 4)
    assert r["precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 2 + 0) / 4)
    assert r["precision@3"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3 + 0) / 4)
    assert r["queries"] == 4 and r["no_provenance"] == 1 and r["unknown_ids"] == 1
    assert r["data"]["skipped"] == {"bad_json": 1, "bad_record": 1, "duplicate_id": 1}
    assert r["run"]["predictions_read"]["skipped"] == {"bad_record": 1}
    stdout = capsys.readouterr().out
    assert f"{gold}:6: invalid JSON" in stdout and f"{gold}:7: 'id' must be" in stdout
    assert f"{gold}:8: id 'a' already read at {gold}:1" in stdout
    assert f"{pred}:5: 'output' must be a list" in stdout
    assert "R-precision  37.50" in stdout
    # the library's own file scorer agrees
    lib = score_files(gold, pred, ks=(1, 2, 3))
    assert lib["r_precision"] == r["r_precision"] and lib["recall@2"] == r["recall@2"]


@pytest.mark.parametrize("extra,message", [
    (["--predictions", "{pred}", "--strict"], "{gold}:2: invalid JSON"),
    (["--predictions", "{pred}", "--candidates-from", "{gold}"], "--candidates-from does not apply to --retrieval"),
    (["--predictions", "{pred}", "--name-table", NAMES], "--name-table applies to --model-dir only"),
    (["--predictions", "{pred}", "--format", "mewsli"], "--retrieval reads KILT task files, not --format mewsli"),
    (["--predictions", "{tmp}/none.jsonl"], "--predictions {tmp}/none.jsonl: file not found"),
    (["--model-dir", MODEL, "--model-type", "mgenre", "--trie", TRIE], "--retrieval --model-dir needs --name-table"),
    (["--model-dir", MODEL, "--model-type", "mgenre", "--name-table", NAMES], "needs --trie"),
])
def test_bad_retrieval_options_are_one_line_errors(tmp_path, capsys, extra, message):
    gold = write_lines(tmp_path / "gold.jsonl", [kilt_gold("a", ["1"]), "{broken"])
    pred = write_lines(tmp_path / "pred.jsonl", [kilt_guess("a", "1")])
    fill = {"gold": gold, "pred": pred, "tmp": tmp_path}
    assert evaluate(gold, "--retrieval", *[x.format(**fill) for x in extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genre-evaluate: error: ") and message.format(**fill) in err[0], err


def test_evaluate_runs_the_model_and_writes_kilt_predictions(model, tmp_path, capsys):
    gold = write_lines(tmp_path / "task.jsonl", [
        kilt_gold("q1", ["territory:FR"], text=QUERIES[0]),
        kilt_gold("q2", ["currency:CHF"], ["territory:CH"], text=QUERIES[1]),
        {"id": "q3", "input": "", "output": [{"provenance": [{"wikipedia_id": "territory:DE"}]}]},
        {"id": "q4", "input": QUERIES[2]},  # a test-set line: no output, predicted but not scored
    ])
    pred, out = tmp_path / "pred.jsonl", tmp_path / "r.json"
    assert evaluate(gold, "--retrieval", "--model-dir", MODEL, "--model-type", "mgenre", "--trie", TRIE,
                    "--name-table", NAMES, "--beam", "4", "--k", "1,5", "--batch-size", "2", "--quiet",
                    "--write-predictions", pred, "--output-json", out) == 0
    written = [json.loads(x) for x in pred.read_text(encoding="utf-8").splitlines()]
    assert [w["id"] for w in written] == ["q1", "q2", "q3", "q4"]
    expected = model.retrieve([QUERIES[0], QUERIES[1], QUERIES[2]], trie=TRIE, name_table=NAMES, beam=4,
                              marginalize=False)
    for w, pages in zip([written[0], written[1], written[3]], expected):
        assert w["output"][0]["provenance"] == [{"wikipedia_id": p["id"], "title": p["title"]} for p in pages]
    assert written[2]["output"] == [{"provenance": []}]
    r = json.loads(out.read_text())
    assert r["queries"] == 3 and r["no_provenance"] == 1 and r["unknown_ids"] == 0
    assert r["data"]["warnings"] == {"unusable_input": 1}
    lib = score_files(gold, pred, ks=(1, 5))
    for key in ("r_precision", "recall@1", "recall@5", "precision@5"):
        assert r[key] == pytest.approx(lib[key])
    # q1 and q2 each have one-page sets: recall@1 is whether the top page is one of them; q3 scores 0
    tops = [expected[0][0]["id"] in {"territory:FR"}, expected[1][0]["id"] in {"currency:CHF", "territory:CH"}]
    assert r["recall@1"] == pytest.approx(sum(tops) / 3) and r["r_precision"] == pytest.approx(sum(tops) / 3)
    stdout = capsys.readouterr().out
    assert f"{gold}:3: query 'q3': 'input' must be a non-empty string" in stdout
    assert "warning: --beam 4 gives at most 4 pages a query: recall@k for k > 4 counts only those" in stdout
