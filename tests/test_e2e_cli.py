"""fairseq-interactive --task genre --end-to-end: L- lines that parse and agree with model.link."""

import os
import subprocess
import sys

import pytest

from genre_fairseq.e2e_search import mention_tree
from genre_fairseq.hub import mGENRE
from genre_fairseq.markup import snap_to_tokens
from genre_fairseq.name_table import MentionTable
from tests.e2e_model import extended_quickstart

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "genre_fairseq")
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
TEXTS = ["Ich wohne in Deutschland und spreche Deutsch.", "Paris est la capitale de la France.",
         "Tokyo est loin de Zürich."]
UNKNOWN = "Tokyo 🙂 est loin."  # 🙂 is <unk> to the quickstart model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return extended_quickstart(str(tmp_path_factory.mktemp("e2e_cli_model")))


def interactive(model_dir, lines, *extra):
    argv = [os.path.join(BIN, "fairseq-interactive"), model_dir, "--user-dir", PLUGIN, "--task", "genre",
            "--source-lang", "source", "--target-lang", "target", "--path", f"{model_dir}/model.pt",
            "--bpe", "sentencepiece", "--sentencepiece-model", f"{model_dir}/spm.model", "--cpu",
            "--beam", "3", "--max-len-b", "250", *extra]
    return subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, env=ENV, timeout=600)


def parse_spans(stdout):
    """The L- lines: {sentence id: [(start, end, score, id, identifier, mention)]}."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("L-"):
            head, start, end, score, entity, identifier, mention = line.split("\t")
            out.setdefault(int(head[2:]), []).append(
                (int(start), int(end), float(score), None if entity == "-" else entity, identifier, mention))
    return out


def test_l_lines_parse_and_agree_with_the_hub(model_dir):
    proc = interactive(model_dir, TEXTS + [UNKNOWN], "--end-to-end", "--trie", f"{model_dir}/cldr.trie",
                       "--name-table", f"{model_dir}/cldr.names")
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = parse_spans(proc.stdout)
    assert sum(map(len, printed.values())) >= 3  # the extended model marks some mentions
    assert sum(line.startswith("D-") for line in proc.stdout.splitlines()) == len(TEXTS) + 1  # the markup line
    # offsets into the detokenized line, where the unknown character is written <unk>, as in the D- line
    line = "Tokyo <unk> est loin."
    assert printed.get(3) and all(line[a:b] == mention for a, b, _, _, _, mention in printed[3]), printed.get(3)
    hub = mGENRE.from_pretrained(model_dir, device="cpu")
    linked = hub.link(TEXTS, trie=f"{model_dir}/cldr.trie", name_table=f"{model_dir}/cldr.names", beam=3,
                      max_len_b=250, marginalize=False)
    for i, (text, spans) in enumerate(zip(TEXTS, linked)):
        got = printed.get(i, [])
        assert [(a, b, entity, identifier, mention) for a, b, _, entity, identifier, mention in got] == \
            [(s["start"], s["end"], s["id"], s["identifier"], s["mention"]) for s in spans]
        assert [x[2] for x in got] == pytest.approx([s["score"] for s in spans], abs=1e-4)  # float32, batched differently
        assert all(text[a:b] == mention for a, b, _, _, _, mention in got)  # offsets into the (same) line


def test_end_to_end_without_a_trie_is_one_line_error(model_dir):
    proc = interactive(model_dir, TEXTS[:1], "--end-to-end")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == "error: --end-to-end links mentions to the identifiers of an entity tree: give --trie KB.trie"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_options_that_do_not_apply_are_refused(model_dir, tmp_path):
    """The refusals of build_generator, in process (the command prints each as ``error: <line>``, as above)."""
    from argparse import Namespace
    from copy import deepcopy

    from omegaconf import open_dict

    from genre_fairseq.task import GenreError, GenreTask

    hub = mGENRE.from_pretrained(model_dir, device="cpu")
    MentionTable.build([("Deutsch", "language:de", 3)], tmp_path / "m.mentions")
    (tmp_path / "cands.txt").write_text("language:de\n")
    kb = {"end_to_end": True, "trie": f"{model_dir}/cldr.trie", "name_table": f"{model_dir}/cldr.names"}
    for options, args, message in [
        (dict(candidates_file=str(tmp_path / "cands.txt")), {}, "cannot be combined with --candidates-file"),
        (dict(nil_threshold=-1.0), {}, "cannot be combined with --nil-threshold"),
        ({}, dict(sampling=True), "cannot be combined with --sampling"),
        ({}, dict(prefix_size=1), "cannot be combined with --prefix-size"),
        (dict(candidates_table=str(tmp_path / "m.mentions")), {}, "it needs --mention-trie"),
        (dict(mention_trie=str(tmp_path / "none.mtrie")), {}, "--mention-trie " + str(tmp_path / "none.mtrie") +
         ": file not found"),
        (dict(markup_symbols="{ } [ ]"), {}, "--markup-symbols: markup symbol '{' is not"),
        (dict(markup_symbols="{ }"), {}, "--markup-symbols must be four"),
        ({}, dict(beam=2, nbest=3), "--nbest must be between 1 and --beam 2"),
        (dict(retrieval=True), {}, "cannot be combined with --retrieval"),
        ({}, dict(min_len=5), "cannot be combined with --min-len"),
        ({}, dict(lenpen=float("nan")), "--lenpen must be a finite number"),
        ({}, dict(max_len_a=0, max_len_b=0), "--max-len-b must be >= 1"),
    ]:
        cfg = deepcopy(hub.task.cfg)
        with open_dict(cfg):
            for key, value in dict(kb, **options).items():
                cfg[key] = value
        with pytest.raises(GenreError) as error:
            GenreTask(cfg, hub.src_dict, hub.tgt_dict).build_generator(hub.models, Namespace(**dict(dict(beam=3), **args)))
        assert message in str(error.value) and "\n" not in str(error.value), (options, args, str(error.value))


def test_mention_trie_and_candidates_table_agree_with_the_hub(model_dir, tmp_path):
    from fairseq.data import Dictionary

    hub = mGENRE.from_pretrained(model_dir, device="cpu")
    d = Dictionary.load(f"{model_dir}/dict.target.txt")
    # the mentions as they are tokenized inside these sentences
    mentions = {"Deutschland": "territory:DE", "Deutsch": "language:de", "Paris": "territory:FR"}
    seqs = []
    for text in TEXTS:
        tokens = hub.tokens_with_offsets(text)
        for m in mentions:
            if m in text:
                a, b, _ = snap_to_tokens(text, tokens, text.index(m), text.index(m) + len(m))
                seqs.append([d.index(t.symbol) for t in tokens[a:b]])
    mention_tree(seqs, d).save(str(tmp_path / "m.mtrie"))
    MentionTable.build([(m, e, 1) for m, e in mentions.items()], tmp_path / "m.mentions")
    proc = interactive(model_dir, TEXTS, "--end-to-end", "--trie", f"{model_dir}/cldr.trie",
                       "--name-table", f"{model_dir}/cldr.names", "--mention-trie", str(tmp_path / "m.mtrie"),
                       "--candidates-table", str(tmp_path / "m.mentions"), "--candidates-k", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = parse_spans(proc.stdout)
    linked = hub.link(TEXTS, trie=f"{model_dir}/cldr.trie", name_table=f"{model_dir}/cldr.names", beam=3,
                      max_len_b=250, marginalize=False, mention_trie=str(tmp_path / "m.mtrie"),
                      mention_table=str(tmp_path / "m.mentions"), candidates_k=1)
    spans = [(i, a, b, entity, mention) for i, lines in printed.items() for a, b, _, entity, _, mention in lines]
    assert spans and all(mentions[mention] == entity for _, _, _, entity, mention in spans)
    assert sorted(spans) == sorted((i, s["start"], s["end"], s["id"], s["mention"])
                                   for i, text_spans in enumerate(linked) for s in text_spans)
