"""The released checkpoint-directory layouts load through the hub and through fairseq-generate, identically.

The module fixture builds two tiny model directories the way the released ones look, through the
real pipeline: text -> fairseq's own BPE (``--bpe gpt2`` for GENRE, ``--bpe sentencepiece`` for
mGENRE) -> ``fairseq-preprocess`` -> ``fairseq-train --user-dir genre_fairseq --task genre`` ->
``model.pt`` rewritten in the released models' storage style (``args`` Namespace, ``cfg`` None, task
``translation``, arch ``bart_large`` / ``mbart_large``; see ``tests.toy.released_checkpoint``); then
the prefix tree with ``genre-trie build`` and the model's tokenizer, and ``fairseq-generate`` with
and without it. Both layouts' commands run side by side, two at a time.

* GENRE: ``model.pt``, ``dict.source.txt``, ``dict.target.txt`` (GPT-2 ids as fairseq-preprocess
  counts them, so dictionary index != BPE id), the BPE files ``encoder.json`` / ``vocab.bpe`` kept
  outside the directory and passed as local paths; English titles, canonical identifiers, mentions
  marked ``[START_ENT] ... [END_ENT]``. Targets are encoded with a leading space, as GENRE's
  released tries encode titles (``genre-trie build``'s default).
* mGENRE: ``model.pt``, ``dict.source.txt``, ``dict.target.txt`` (every piece of the SentencePiece
  model, as mBART's dictionary), ``spm_256000.model``; ``name >> lang`` identifiers, mentions marked
  ``[START] ... [END]``; arch ``mgenre_tiny`` (pre-norm, layernorm_embedding, like mBART).

fairseq prints base-2 scores ``log2 p / L`` (length penalty 1, L counting the end token); the hub
returns ``ln p / L ** alpha``. The comparisons convert explicitly.
"""

import math
import os
import random
import shutil
import subprocess
import sys

import pytest
import torch

from genre_fairseq.hub import GENRE, mGENRE
from genre_fairseq.name_table import NameTable
from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint
from tests import inprocess
from tests.toy import (bpe_encode_file, fairseq_bpe, released_checkpoint, train_sentencepiece,
                       write_gpt2_bpe)
from trie_tools.cli import main as genre_trie

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "genre_fairseq")
BIN = os.path.dirname(sys.executable)
BEAM = 5
UPDATES = 60

# GENRE: English titles (canonical identifiers) and the mentions that name them.
GENRE_KB = {
    "Q90": ("Paris", ["Paris"]),
    "Q47899": ("Paris Hilton", ["Paris Hilton", "Hilton"]),
    "Q3183": ("Perth", ["Perth"]),
    "Q419": ("Peru", ["Peru"]),
    "Q64": ("Berlin", ["Berlin"]),
    "Q70": ("Bern", ["Bern", "Berne"]),
    "Q937": ("Albert Einstein", ["Albert Einstein", "Einstein"]),
    "Q183": ("Germany", ["Germany"]),
}
GENRE_FILLER = ["the", "city", "of", "in", "is", "a", "capital", "visited", "near", "famous", "physicist", "river"]
# byte-level merges, so that names and markers span a few multi-byte tokens
GPT2_MERGES = [("Ġ", "P"), ("a", "r"), ("ĠP", "ar"), ("e", "r"), ("Ġ", "B"), ("ĠB", "er"), ("i", "n"),
               ("ĠBer", "l"), ("ĠBerl", "in"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "c"), ("i", "t"),
               ("Ġc", "it"), ("S", "T"), ("A", "R"), ("ST", "AR"), ("E", "N"), ("EN", "T"), ("N", "D"),
               ("E", "ND"), ("Ġ", "E"), ("ĠE", "in"), ("Ġ", "A"), ("l", "b"), ("ĠA", "lb"), ("i", "s")]

# mGENRE: names per language ("name >> lang" identifiers); "simple" (Simple English Wikipedia) is a
# real wiki language code that is not ISO 639.
MGENRE_KB = {
    "Q64": {"en": "Berlin", "de": "Berlin", "it": "Berlino", "simple": "Berlin"},
    "Q90": {"en": "Paris", "fr": "Paris", "it": "Parigi"},
    "Q937": {"en": "Albert Einstein", "de": "Albert Einstein", "it": "Albert Einstein"},
    "Q70": {"de": "Bern", "fr": "Berne", "it": "Berna"},
    "Q183": {"en": "Germany", "de": "Deutschland", "it": "Germania", "fr": "Allemagne"},
}
MGENRE_FILLER = {
    "en": ["the", "city", "is", "a", "capital", "of", "physicist"],
    "de": ["die", "Stadt", "ist", "eine", "Hauptstadt", "von", "Physiker"],
    "it": ["la", "città", "è", "una", "capitale", "di", "fisico"],
    "fr": ["la", "ville", "est", "une", "capitale", "de", "physicien"],
}

# Test inputs: one with irregular whitespace, which both paths must keep exactly as fairseq's BPE sees it.
GENRE_TEST = ["the famous [START_ENT] Paris [END_ENT] is a city .",
              "[START_ENT] Einstein [END_ENT] the physicist visited Bern .",
              "near  the [START_ENT] Hilton [END_ENT]\tis a city .",
              "a river in [START_ENT] Berne [END_ENT] .",
              "[START_ENT] Germany [END_ENT] ."]
MGENRE_TEST = ["la città di [START] Berlino [END] è una capitale",
               "[START] Einstein [END] ist ein Physiker",
               "la  ville de [START] Paris [END]\test une capitale",
               "[START] Berna [END] è la capitale",
               "the [START] Germany [END] is a city"]


# One thread per process: the models are tiny, and torch's thread pool only spins on a shared machine.
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def run_all(commands, logs, parallel=2):
    """Run console scripts of this environment, ``parallel`` at a time; return their stdouts (each must exit 0).

    Output goes to files in ``logs``, not pipes, so that no process blocks on a full pipe.
    """
    def start(i):
        out, err = open(logs / f"cmd{i}.out", "w+"), open(logs / f"cmd{i}.err", "w+")
        argv = [os.path.join(BIN, commands[i][0])] + [str(c) for c in commands[i][1:]]
        return subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=ENV), out, err

    running = [start(i) for i in range(min(parallel, len(commands)))]
    results = []
    try:
        for i in range(len(commands)):
            proc, out, err = running[i]
            proc.wait(timeout=900)
            if len(running) < len(commands):
                running.append(start(len(running)))
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
            assert proc.returncode == 0, f"{proc.args[0]} failed:\n{stderr[-3000:]}"
            results.append(stdout)
    finally:
        for proc, out, err in running:
            if proc.poll() is None:  # a failure above: do not leave the others running
                proc.kill()
                proc.wait()
            out.close()
            err.close()
    return results


def _write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def _genre_examples(rng, n):
    pairs = []
    for _ in range(n):
        title, mentions = GENRE_KB[rng.choice(sorted(GENRE_KB))]
        left = [rng.choice(GENRE_FILLER) for _ in range(rng.randint(0, 3))]
        right = [rng.choice(GENRE_FILLER) for _ in range(rng.randint(1, 4))]
        pairs.append((" ".join(left + ["[START_ENT]", rng.choice(mentions), "[END_ENT]"] + right + ["."]), title))
    return pairs


def _mgenre_examples(rng, n):
    pairs = []
    for _ in range(n):
        names = MGENRE_KB[rng.choice(sorted(MGENRE_KB))]
        lang = rng.choice(sorted(set(names) & set(MGENRE_FILLER)))
        mention = names[lang].split()[-1] if rng.random() < 0.3 else names[lang]
        left = [rng.choice(MGENRE_FILLER[lang]) for _ in range(rng.randint(0, 3))]
        right = [rng.choice(MGENRE_FILLER[lang]) for _ in range(rng.randint(1, 4))]
        pairs.append((" ".join(left + ["[START]", mention, "[END]"] + right), f"{names[lang]} >> {lang}"))
    return pairs


def _preprocess(w, dict_args):
    """fairseq-preprocess the BPE-encoded splits in w/bpe, in this process (the command's own main())."""
    import logging

    from fairseq import options
    from fairseq_cli import preprocess

    argv = ["--source-lang", "source", "--target-lang", "target", "--trainpref", w / "bpe" / "train",
            "--testpref", w / "bpe" / "test", "--destdir", w / "bin", "--joined-dictionary", "--workers", "1",
            *dict_args]
    log = logging.getLogger("fairseq_cli.preprocess")
    before = len(log.handlers)
    try:
        preprocess.main(options.get_preprocessing_parser().parse_args([str(a) for a in argv]))
    finally:
        for handler in log.handlers[before:]:  # main() adds a log-file handler on every call
            log.removeHandler(handler)
            handler.close()


def _train_command(layout):
    """A few dozen updates of fairseq-train --task genre; the checkpoint is written once, at the end."""
    w = layout["work"]
    return ["fairseq-train", w / "bin", "--user-dir", PLUGIN, "--task", "genre", "--arch", layout["arch"],
            "--optimizer", "adam", "--lr", "0.01", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
            "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--max-tokens", "2500",
            "--max-update", UPDATES, "--cpu", "--seed", "1", "--save-dir", w / "ckpt", "--no-epoch-checkpoints",
            "--save-interval", "1000", "--num-workers", "0", "--no-progress-bar", "--disable-validation"]


def _generate_command(layout, *extra):
    return ["fairseq-generate", layout["work"] / "bin", "--user-dir", PLUGIN, "--task", "genre",
            "--path", layout["dir"] / "model.pt", "--gen-subset", "test", "--beam", BEAM, "--nbest", BEAM,
            "--max-len-b", "32", "--batch-size", "16", "--cpu", *layout["bpe_args"], *extra]


def prepare_genre(w):
    """GENRE data through fairseq's GPT-2 BPE and fairseq-preprocess (dictionary counted from the data)."""
    for sub in ("raw", "bpe", "gpt2", "model"):
        (w / sub).mkdir()
    encoder_json, vocab_bpe, _ = write_gpt2_bpe(str(w / "gpt2"), GPT2_MERGES)
    train = _genre_examples(random.Random(0), 240)
    _write(w / "raw" / "train.source", [s for s, _ in train])
    _write(w / "raw" / "train.target", [t for _, t in train])
    _write(w / "raw" / "test.source", GENRE_TEST)
    _write(w / "raw" / "test.target", ["Paris", "Albert Einstein", "Paris Hilton", "Bern", "Germany"])
    bpe = fairseq_bpe(gpt2_encoder_json=encoder_json, gpt2_vocab_bpe=vocab_bpe)
    for split in ("train", "test"):
        bpe_encode_file(bpe, w / "raw" / f"{split}.source", w / "bpe" / f"{split}.source")
        # titles with a leading space, as GENRE's released tries (and genre-trie build) encode them
        bpe_encode_file(bpe, w / "raw" / f"{split}.target", w / "bpe" / f"{split}.target", prefix=" ")
    _preprocess(w, [])
    _write(w / "kb.tsv", [f"{qid}\ten\t{title}" for qid, (title, _) in GENRE_KB.items()])
    return {"name": "genre", "cls": GENRE, "arch": "genre_tiny", "released_arch": "bart_large", "dir": w / "model",
            "work": w, "sentences": GENRE_TEST,
            "kwargs": {"gpt2_encoder_json": encoder_json, "gpt2_vocab_bpe": vocab_bpe},
            "bpe_args": ["--bpe", "gpt2", "--gpt2-encoder-json", encoder_json, "--gpt2-vocab-bpe", vocab_bpe],
            "trie_args": ["--format", "canonical", "--gpt2-encoder-json", encoder_json, "--gpt2-vocab-bpe", vocab_bpe],
            "trie": str(w / "kb.trie"), "names": str(w / "kb.canonical.names"), "kb_names": str(w / "kb.names"),
            "start": "[START_ENT]", "end": "[END_ENT]", "other_start": "[START]", "other_end": "[END]"}


def prepare_mgenre(w):
    """mGENRE data through fairseq's SentencePiece BPE and fairseq-preprocess --srcdict (every piece)."""
    for sub in ("raw", "bpe", "spm", "model"):
        (w / sub).mkdir()
    train = _mgenre_examples(random.Random(0), 240)
    identifiers = [f"{name} >> {lang}" for names in MGENRE_KB.values() for lang, name in names.items()]
    spm_model, spm_dict = train_sentencepiece([s for s, _ in train] + [t for _, t in train] + identifiers * 3
                                              + ["Berlin >> nl"], str(w / "spm"), vocab_size=200)
    shutil.copy(spm_model, w / "model" / "spm_256000.model")
    _write(w / "raw" / "train.source", [s for s, _ in train])
    _write(w / "raw" / "train.target", [t for _, t in train])
    _write(w / "raw" / "test.source", MGENRE_TEST)
    _write(w / "raw" / "test.target", ["Berlino >> it", "Albert Einstein >> de", "Paris >> fr", "Berna >> it",
                                       "Germany >> en"])
    bpe = fairseq_bpe(sentencepiece_model=spm_model)
    for split in ("train", "test"):
        for side in ("source", "target"):
            bpe_encode_file(bpe, w / "raw" / f"{split}.{side}", w / "bpe" / f"{split}.{side}")
    _preprocess(w, ["--srcdict", spm_dict])
    _write(w / "kb.tsv", [f"{qid}\t{lang}\t{name}" for qid, names in MGENRE_KB.items() for lang, name in names.items()])
    spm = w / "model" / "spm_256000.model"
    return {"name": "mgenre", "cls": mGENRE, "arch": "mgenre_tiny", "released_arch": "mbart_large", "dir": w / "model",
            "work": w, "sentences": MGENRE_TEST, "kwargs": {},
            "bpe_args": ["--bpe", "sentencepiece", "--sentencepiece-model", spm],
            "trie_args": ["--format", "name_lang", "--sentencepiece", str(spm)],
            "trie": str(w / "kb.trie"), "names": str(w / "kb.names"), "kb_names": str(w / "kb.names"),
            "start": "[START]", "end": "[END]", "other_start": "[START_ENT]", "other_end": "[END_ENT]"}


def release(layout):
    """The trained checkpoint as a released model directory, the KB's name table and its prefix tree."""
    w, d = layout["work"], layout["dir"]
    released_checkpoint(str(w / "ckpt" / "checkpoint_last.pt"), str(d / "model.pt"), layout["released_arch"])
    for side in ("source", "target"):
        shutil.copy(w / "bin" / f"dict.{side}.txt", d / f"dict.{side}.txt")
    assert genre_trie(["names", "--tsv", str(w / "kb.tsv"), "--output", str(w / "kb.names"), "--quiet"]) == 0
    assert genre_trie(["build", "--names", str(w / "kb.names"), *layout["trie_args"], "--dict",
                       str(d / "dict.target.txt"), "--output", layout["trie"], "--workers", "1", "--strict",
                       "--quiet"]) == 0


def build_layouts(root):
    """Both layouts, trained side by side, with fairseq-generate's output with and without the trie."""
    layouts = [prepare_genre(root / "genre"), prepare_mgenre(root / "mgenre")]
    run_all([_train_command(x) for x in layouts], root)
    for x in layouts:
        release(x)
    # the constrained runs in fresh processes, side by side (a released checkpoint loading through
    # fairseq-generate --path with nothing imported before); the unconstrained ones in this process
    outputs = run_all([_generate_command(x, "--trie", x["trie"], "--name-table", x["names"], "--marginalize")
                       for x in layouts], root)
    for x, output in zip(layouts, outputs):
        x["generate_trie"] = output
        proc = inprocess.run("fairseq-generate", _generate_command(x)[1:])
        assert proc.returncode == 0, f"fairseq-generate failed:\n{proc.stderr[-3000:]}"
        x["generate_free"] = proc.stdout
    return {x["name"]: x for x in layouts}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The hub runs in this process: one thread, as the subprocesses (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_layouts")
    (root / "genre").mkdir()
    (root / "mgenre").mkdir()
    return build_layouts(root)


@pytest.fixture(scope="module")
def mgenre_layout(layouts):
    return layouts["mgenre"]


@pytest.fixture(scope="module", params=["genre", "mgenre"])
def layout(request, layouts):
    return layouts[request.param]


@pytest.fixture(scope="module")
def hub(layout):
    """The layout's model, loaded through ``from_pretrained``."""
    return layout["cls"].from_pretrained(str(layout["dir"]), device="cpu", **layout["kwargs"])


@pytest.fixture(scope="module")
def other(layout, layouts):
    """The other layout (its trie, name table and BPE files are the wrong ones for ``layout``)."""
    return layouts["mgenre" if layout["name"] == "genre" else "genre"]


def _nbest(stdout):
    """Per sentence id: [(detokenized text, base-2 score, length with EOS)] in fairseq's order."""
    out = {}
    lines = stdout.splitlines()
    for line, following in zip(lines, lines[1:]):
        if line.startswith("D-"):
            sid, score, text = line.split("\t")
            tag, scores = following.split("\t")
            assert tag == "P" + sid[1:]
            out.setdefault(int(sid[2:]), []).append((text.strip(), float(score), len(scores.split())))
    return out


def _entities(stdout):
    """Per sentence id: [(entity id or None, score, identifiers)] from fairseq's E- lines, best first."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith("E-"):
            sid, rank, score, entity, texts = line.split("\t")
            rows = out.setdefault(int(sid[2:]), [])
            assert int(rank) == len(rows)
            rows.append((None if entity == "-" else entity, float(score), texts.split(" | ")))
    return out


# ------------------------------------------------------------------ the layouts load as released


def test_checkpoint_is_stored_like_the_released_models(layout):
    state = torch.load(layout["dir"] / "model.pt", map_location="cpu", weights_only=False)
    assert state["cfg"] is None and state["args"].task == "translation" and state["args"].user_dir is None
    assert not hasattr(state["args"], "trie") and not hasattr(state["args"], "name_table")
    assert state["args"].arch == layout["released_arch"]
    assert state["args"].layernorm_embedding is True and "encoder.layernorm_embedding.weight" in state["model"]
    pre_norm = layout["name"] == "mgenre"  # mBART: pre-norm encoder and decoder; BART: post-norm
    assert state["args"].encoder_normalize_before is pre_norm and state["args"].decoder_normalize_before is pre_norm
    assert ("encoder.layer_norm.weight" in state["model"]) is pre_norm


def test_hub_loads_the_layout(layout, hub):
    model = hub.models[0]
    assert type(hub.task).__name__ == "TranslationTask"  # the released checkpoints name fairseq's task
    assert model.encoder.layernorm_embedding is not None
    assert model.cfg.encoder_normalize_before is (layout["name"] == "mgenre")
    assert len(hub.tgt_dict) == len(hub.src_dict) == model.encoder.embed_tokens.weight.shape[0]
    assert type(hub.bpe).__name__ == {"genre": "GPT2BPE", "mgenre": "SentencepieceBPE"}[layout["name"]]
    tree = PrefixTree.load(layout["trie"])
    assert tree.dictionary_fingerprint == dictionary_fingerprint(hub.tgt_dict)


# ------------------------------------------------------------------ hub == fairseq-generate


def _compare_nbest(layout, hub, fairseq_nbest, trie):
    ours = hub.sample(layout["sentences"], beam=BEAM, trie=trie, alpha=1.0, max_len_b=32)
    assert len(ours) == len(layout["sentences"]) == len(fairseq_nbest)
    for i, ranked in enumerate(ours):
        theirs = fairseq_nbest[i]
        assert len(theirs) == BEAM
        # alpha=1: ln p / L, fairseq's ranking; fairseq prints log2 p / L
        assert [r["text"] for r in ranked] == [t for t, _, _ in theirs]
        for r, (_, score, _) in zip(ranked, theirs):
            assert r["score"] == pytest.approx(score * math.log(2), abs=1e-4)
    # the default alpha = 0.5: ln p / sqrt(L) = log2 p / L * ln 2 * L / sqrt(L), re-ranked
    ours = hub.sample(layout["sentences"], beam=BEAM, trie=trie, max_len_b=32)
    for i, ranked in enumerate(ours):
        expected = sorted(((t, s * math.log(2) * n / math.sqrt(n)) for t, s, n in fairseq_nbest[i]),
                          key=lambda e: -e[1])
        assert [r["text"] for r in ranked] == [t for t, _ in expected]
        assert [r["score"] for r in ranked] == pytest.approx([s for _, s in expected], abs=1e-4)
    return ours


def test_constrained_nbest_and_entities_match_fairseq_generate(layout, hub):
    out = layout["generate_trie"]
    nbest = _nbest(out)
    valid = {name for _, name in NameTable.load(layout["names"])}
    valid = valid if layout["name"] == "genre" else {
        f"{name} >> {lang}" for names in MGENRE_KB.values() for lang, name in names.items()}
    assert all(t in valid for hyps in nbest.values() for t, _, _ in hyps)
    _compare_nbest(layout, hub, nbest, layout["trie"])

    ours = hub.sample(layout["sentences"], beam=BEAM, trie=layout["trie"], name_table=layout["names"],
                      marginalize=True, max_len_b=32)
    theirs = _entities(out)
    for i, ranked in enumerate(ours):
        assert [(e["id"], e["texts"]) for e in ranked] == [(e, t) for e, _, t in theirs[i]]
        assert [e["score"] for e in ranked] == pytest.approx([s for _, s, _ in theirs[i]], abs=1e-4)
        assert all(e["id"] is not None for e in ranked)


def test_unconstrained_nbest_matches_fairseq_generate(layout, hub):
    _compare_nbest(layout, hub, _nbest(layout["generate_free"]), None)


# ------------------------------------------------------------------ bad input through the hub


def _error(exc_type, call):
    with pytest.raises(exc_type) as info:
        call()
    return str(info.value)


def test_sentences_must_mark_one_mention_with_the_models_markers(layout, hub):
    s, e, os_, oe = layout["start"], layout["end"], layout["other_start"], layout["other_end"]
    other_model = "mGENRE" if layout["name"] == "genre" else "GENRE"
    good = f"the {s} Paris {e} city"
    none, once = f"no mention marked with {s} ... {e}", f"mention markers must appear once each, {s} before {e}"
    cases = {
        "no markers here": none,
        "": none,
        f"only {s} Paris here": f"{none}; found 1 {s} and 0 {e}",  # unbalanced
        f"only Paris {e} here": f"{none}; found 0 {s} and 1 {e}",
        f"{s} Paris {e} and {s} Bern {e}": f"{once}; found 2 {s} and 2 {e}",  # duplicated
        f"{s} {s} Paris {e}": f"{once}; found 2 {s} and 1 {e}",
        f"the {e} Paris {s} city": f"{once}; {e} comes first",  # reversed
        f"the {os_} Paris {oe} city": f"{none}; found {os_} ... {oe}, which are {other_model}'s markers",
        f"the {s}Paris {e} city": f"{none}; found 0 {s} and 1 {e}; {s} must be a separate word, with whitespace "
                                  f"around it",
        f"the {s} Paris {e}, city": f"{none}; found 1 {s} and 0 {e}; {e} must be a separate word, with whitespace "
                                    f"around it",
    }
    for bad, message in cases.items():
        assert _error(ValueError, lambda: hub.sample([good, bad], beam=2)) == f"sentence 1: {message}: {bad!r}"
    assert _error(TypeError, lambda: hub.sample([good, None])) == "sentence 1: expected a string, got NoneType"
    assert _error(TypeError, lambda: hub.sample(good)) == "sample() takes a list of sentences, not one string"
    assert _error(TypeError, lambda: hub.sample(good.encode())) == "sample() takes a list of sentences, not one string"
    # documented: an empty batch returns [] without loading anything (not even a missing trie)
    assert hub.sample([]) == [] and hub.sample([], trie="/nonexistent.trie") == []


def test_trie_and_name_table_must_be_this_models_and_this_kbs(layout, hub, other):
    from genre_fairseq.name_table import NameTable as Table

    sentences = layout["sentences"][:1]
    theirs, ours = PrefixTree.load(other["trie"]), dictionary_fingerprint(hub.tgt_dict)
    assert _error(ValueError, lambda: hub.sample(sentences, trie=other["trie"])) == (
        f"trie {other['trie']} was built for dictionary {theirs.dictionary_fingerprint[:16]}..., but this model's "
        f"target dictionary is {ours[:16]}...; rebuild the trie with the model's dict.txt")

    expected = PrefixTree.load(layout["trie"]).name_table_fingerprint
    wrong_tables = [other["kb_names"]] + ([layout["kb_names"]] if layout["name"] == "genre" else [])
    for table in wrong_tables:  # another KB's table; for GENRE's canonical tree also the non-canonical one
        assert _error(ValueError, lambda: hub.sample(sentences, trie=layout["trie"], name_table=table)) == (
            f"name table {table} (fingerprint {Table.load(table).fingerprint[:12]}...) is not the table trie "
            f"{layout['trie']} was built from ({expected[:12]}...); for a canonical tree give the .canonical.names "
            f"table")

    fmt = "canonical" if layout["name"] == "genre" else "name_lang"
    wrong = "name_lang" if fmt == "canonical" else "lang_name"
    assert _error(ValueError, lambda: hub.sample(sentences, trie=layout["trie"], name_table=layout["names"],
                                                 identifier_format=wrong)) == (
        f"identifier_format={wrong!r} disagrees with trie {layout['trie']}, which holds {fmt} identifiers")
    assert _error(ValueError, lambda: hub.sample(sentences, trie=layout["trie"], name_table=layout["names"],
                                                 identifier_format="name-lang")) == (
        "identifier_format='name-lang': expected one of name_lang, lang_name, canonical")
    missing = str(layout["work"] / "missing.trie")
    assert _error(FileNotFoundError, lambda: hub.sample(sentences, trie=missing)) == (
        f"prefix tree file not found: {missing}")
    missing = str(layout["work"] / "missing.names")
    assert _error(FileNotFoundError, lambda: hub.sample(sentences, trie=layout["trie"], name_table=missing)) == (
        f"name table file not found: {missing}")


class _Payload:
    """Pickles as a call to ``builtins.exec`` that would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import builtins

        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


def test_missing_and_corrupt_files_are_named(layout, other, tmp_path):
    cls, kwargs = layout["cls"], layout["kwargs"]

    def copy(name):
        d = tmp_path / name
        shutil.copytree(layout["dir"], d)
        return d

    def load(d, **extra):
        return lambda: cls.from_pretrained(str(d), device="cpu", **{**kwargs, **extra})

    for name, message in (("model.pt", "checkpoint not found"), ("dict.source.txt", "dictionary not found"),
                          ("dict.target.txt", "dictionary not found")):
        d = copy("no_" + name)
        os.remove(d / name)
        assert _error(FileNotFoundError, load(d)) == f"{d / name}: {message}"

    if layout["name"] == "mgenre":
        d = copy("no_spm")
        os.remove(d / "spm_256000.model")
        assert _error(FileNotFoundError, load(d)) == f"{d}: no SentencePiece model (*.model); pass sentencepiece_model="
        missing = tmp_path / "missing.model"
        assert _error(FileNotFoundError, load(layout["dir"], sentencepiece_model=str(missing))) == (
            f"{missing}: SentencePiece model not found")
        bad = tmp_path / "bad.model"
        bad.write_text("not a model\n")
        assert _error(ValueError, load(layout["dir"], sentencepiece_model=str(bad))) == (
            f"{bad}: unreadable SentencePiece model (RuntimeError: INTERNAL: could not parse ModelProto from {bad})")
    else:
        for option in ("gpt2_encoder_json", "gpt2_vocab_bpe"):
            missing = tmp_path / f"missing.{option}"
            assert _error(FileNotFoundError, load(layout["dir"], **{option: str(missing)})) == (
                f"{missing}: GPT-2 BPE file not found; pass {option}= (a local path)")
        # without the options they are looked up in the directory, which the GENRE release lacks
        assert _error(FileNotFoundError, lambda: cls.from_pretrained(str(layout["dir"]), device="cpu")) == (
            f"{layout['dir'] / 'encoder.json'}: GPT-2 BPE file not found; pass gpt2_encoder_json= (a local path)")
        bad = tmp_path / "encoder.json"
        bad.write_text("{not json")
        assert _error(ValueError, load(layout["dir"], gpt2_encoder_json=str(bad))) == (
            f"{bad} / {kwargs['gpt2_vocab_bpe']}: unreadable GPT-2 BPE files "
            f"(JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")

    d = copy("bad_dict")
    (d / "dict.source.txt").write_text("one-field-only\n")
    assert _error(ValueError, load(d)) == (f"{d / 'dict.source.txt'}: not a fairseq dictionary (ValueError: Incorrect "
                                           f"dictionary format, expected '<token> <cnt> [flags]': \"one-field-only)")

    # dictionaries that fit the BPE but not the checkpoint's embeddings (8 more symbols)
    d = copy("bigger_dicts")
    rows = len(open(d / "dict.target.txt", encoding="utf-8").read().splitlines()) + 4  # + fairseq's specials
    for side in ("source", "target"):
        with open(d / f"dict.{side}.txt", "a", encoding="utf-8") as f:
            f.write("".join(f"extra{i} 1\n" for i in range(8)))
    assert _error(ValueError, load(d)) == (
        f"{d / 'model.pt'} does not fit the dictionaries in {d} (size mismatch for encoder.embed_tokens.weight: "
        f"copying a param with shape torch.Size([{rows}, 16]) from checkpoint, the shape in current model is "
        f"torch.Size([{rows + 8}, 16]).); use the dict.source.txt / dict.target.txt released with the checkpoint")

    # the other model's BPE files with this model's dictionary
    if layout["name"] == "mgenre":
        files = f"{other['kwargs']['gpt2_encoder_json']} / {other['kwargs']['gpt2_vocab_bpe']}"
        call = lambda: GENRE.from_pretrained(str(layout["dir"]), device="cpu", **other["kwargs"])  # noqa: E731
        what, verb = "GPT-2 BPE ids", "do"
    else:
        files = str(other["dir"] / "spm_256000.model")
        call = lambda: mGENRE.from_pretrained(str(layout["dir"]), device="cpu", sentencepiece_model=files)  # noqa: E731
        what, verb = "pieces of the SentencePiece model", "does"
    n = sum(1 for line in open(layout["dir"] / "dict.target.txt", encoding="utf-8")
            if not line.startswith(("madeupword", "<", "[")))  # the symbols the check looks at
    assert _error(ValueError, call) == (
        f"{files} {verb} not fit {layout['dir'] / 'dict.target.txt'}: only 0 of its first {n} symbols are {what} "
        f"(is this the other model's BPE, or its dictionary?)")

    # not checkpoints: cut in half, empty, a bare state dict
    d = copy("not_checkpoints")
    data = (d / "model.pt").read_bytes()
    not_loadable = f"{d / 'model.pt'}: not a loadable fairseq checkpoint"
    (d / "model.pt").write_bytes(data[: len(data) // 2])
    assert _error(ValueError, load(d)) == (
        f"{not_loadable} (RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central "
        f"directory)")
    (d / "model.pt").write_bytes(b"")
    assert _error(ValueError, load(d)) == f"{not_loadable} (EOFError: the file ends early)"
    torch.save({"encoder.embed_tokens.weight": torch.zeros(3, 4)}, d / "model.pt")
    assert _error(ValueError, load(d)) == f"{not_loadable} (KeyError: 'best_loss')"

    # a checkpoint carrying a pickled call is refused by torch's safe loading, and the call never runs
    d, marker = copy("malicious"), tmp_path / "PWNED"
    state = torch.load(d / "model.pt", map_location="cpu", weights_only=False)  # our own file: trusted
    state["extra_state"] = dict(state.get("extra_state") or {}, payload=_Payload(marker))
    torch.save(state, d / "model.pt")
    assert _error(ValueError, load(d)) == (
        f"{d / 'model.pt'}: not a loadable fairseq checkpoint (refused by torch's safe loading: Unsupported global: "
        f"GLOBAL exec was not an allowed global by default)")
    assert not marker.exists()


def test_language_codes_are_name_table_keys(mgenre_layout):
    """Where a language code enters: a generated identifier, parsed and looked up in the name table.

    Not checked against ISO 639 ("simple" is Simple English Wikipedia's code): a (lang, name) the table
    lacks, e.g. an unknown language "nl", or an identifier without " >> lang", gets id None, ranked on its own.
    """
    from fairseq.data import Dictionary

    from trie_tools.encode import SentencePieceTokenizer, TargetEncoder

    layout = mgenre_layout
    hub = mGENRE.from_pretrained(str(layout["dir"]), device="cpu")
    encoder = TargetEncoder(SentencePieceTokenizer(str(layout["dir"] / "spm_256000.model")),
                            Dictionary.load(str(layout["dir"] / "dict.target.txt")))
    identifiers = ["Berlin >> simple", "Berlino >> it", "Berlin >> nl", "Berlin"]
    eos = hub.tgt_dict.eos()
    tree = PrefixTree.from_sequences([[eos] + encoder.encode(t) + [eos] for t in identifiers],
                                     dictionary_fingerprint=dictionary_fingerprint(hub.tgt_dict), start_token=eos,
                                     identifier_format="name_lang")
    sentence = [layout["sentences"][0]]
    (plain,) = hub.sample(sentence, beam=BEAM, trie=tree)
    assert sorted(h["text"] for h in plain) == sorted(identifiers)
    score = {h["text"]: h["score"] for h in plain}
    (ranked,) = hub.sample(sentence, beam=BEAM, trie=tree, name_table=layout["names"], marginalize=True)
    assert sorted((e["id"] or "-", sorted(e["texts"])) for e in ranked) == [
        ("-", ["Berlin"]), ("-", ["Berlin >> nl"]), ("Q64", ["Berlin >> simple", "Berlino >> it"])]
    for entity in ranked:
        parts = [score[t] for t in entity["texts"]]
        assert entity["score"] == pytest.approx(math.log(sum(math.exp(p) for p in parts)), abs=1e-6)
    assert [e["score"] for e in ranked] == sorted((e["score"] for e in ranked), reverse=True)
