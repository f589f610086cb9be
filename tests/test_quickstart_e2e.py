"""The quickstart's end-to-end tooling: its documents (make_e2e_data.py), its starting model
(extend_model.py) and ``python -m examples.quickstart --end-to-end``.

The end-to-end model itself is not shipped yet (docs/quickstart.md says why); ``--end-to-end`` runs
here on the quickstart model with the markup symbols appended (tests/e2e_model.py), whose spans are
noise: the tests check the plumbing (offsets, markup line, gold comparison, errors), not accuracy.
"""
import contextlib
import io
import json
import os
import re
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QS = os.path.join(ROOT, "examples", "quickstart")
sys.path.insert(0, QS)

import extend_model  # noqa: E402
import make_data  # noqa: E402
import make_e2e_data  # noqa: E402

from tests.e2e_model import extended_quickstart  # noqa: E402

KB = [("territory:FR", "en", "France"), ("territory:DE", "en", "Germany"), ("language:de", "en", "German"),
      ("territory:FR", "de", "Frankreich"), ("language:de", "de", "Deutsch"), ("currency:EUR", "de", "Euro")]
TEMPLATES = {
    ("en", "place"): ["She lives in {} now.", "{} is large.", "HELD-OUT place {} end."],
    ("en", "language"): ["He speaks {} well.", "{} is taught.", "HELD-OUT language {} end."],
    ("de", "place"): ["Sie wohnt in {} jetzt.", "{} ist groß.", "ZURÜCK Ort {} Ende."],
    ("de", "language"): ["Er spricht {} gut.", "{} wird gelehrt.", "ZURÜCK Sprache {} Ende."],
    ("de", "currency"): ["Der Preis in {} steigt.", "{} fiel.", "ZURÜCK Währung {} Ende."],
}


def write_inputs(tmp_path):
    kb = tmp_path / "kb.tsv"
    kb.write_text("# entity\tlang\tname\n" + "".join("\t".join(row) + "\n" for row in KB), encoding="utf-8")
    templates = tmp_path / "templates.tsv"
    templates.write_text("".join(f"{lang}\t{kind}\t{t}\n" for (lang, kind), group in TEMPLATES.items() for t in group),
                         encoding="utf-8")
    return str(kb), str(templates)


def make(tmp_path, *extra):
    kb, templates = write_inputs(tmp_path)
    out = tmp_path / "out"
    code = make_e2e_data.main(["--kb", kb, "--templates", templates, "--outdir", str(out), "--seed", "3", *extra])
    assert code == 0
    read = lambda name: [json.loads(line) for line in open(out / name, encoding="utf-8")]  # noqa: E731
    return read("train.jsonl"), read("valid.jsonl")


def test_documents_mark_every_name_at_its_characters(tmp_path):
    train, valid = make(tmp_path, "--per-name", "4", "--valid", "30", "--zero", "0.2")
    names = {(lang, name): entity for entity, lang, name in KB}
    seen = {}
    for doc in train + valid:
        assert len(doc["mentions"]) <= 3
        for m in doc["mentions"]:
            mention = doc["text"][m["start"]:m["end"]]
            assert names[(doc["lang"], mention)] == m["entity_id"]  # the name of that entity in the doc's language
        if doc in train:
            for m in doc["mentions"]:
                key = (doc["lang"], doc["text"][m["start"]:m["end"]])
                seen[key] = seen.get(key, 0) + 1
    assert seen == {key: 4 for key in names}  # every KB name in exactly --per-name training mentions
    assert sum(len(d["mentions"]) for d in valid) == 30
    assert any(not d["mentions"] for d in train) and any(not d["mentions"] for d in valid)
    assert len({d["id"] for d in train + valid}) == len(train) + len(valid)


def unmarked_names(docs, kb):
    """(doc id, name) for every whole-word occurrence of a KB name of the document's language outside its mentions."""
    by_lang = {}
    for _, lang, name in kb:
        by_lang.setdefault(lang, set()).add(name)
    found = []
    for doc in docs:
        covered = set()
        for m in doc["mentions"]:
            covered.update(range(m["start"], m["end"]))
        for name in by_lang.get(doc["lang"], ()):
            for hit in re.finditer(r"(?<!\w)" + re.escape(name) + r"(?!\w)", doc["text"]):
                if not covered.issuperset(range(hit.start(), hit.end())):
                    found.append((doc["id"], name))
    return found


def test_ordinary_words_are_never_names_and_every_name_is_marked(tmp_path):
    kb, templates = write_inputs(tmp_path)
    rows, groups = make_data.load_inputs(kb, templates)
    words = make_e2e_data.ordinary_words(rows, groups, lambda g: g[:-1], True)
    plain = make_e2e_data.ordinary_words(rows, groups, lambda g: g[:-1], False)
    assert "Januar" in words["de"] and "Montag" in words["de"] and "Januar" not in plain["de"]  # CLDR's words
    assert set(plain["de"]) < set(words["de"]) and "gelehrt" in plain["de"] and "ZURÜCK" not in plain["de"]
    for lang, pool in words.items():
        names = {n for _, l, n in KB if l == lang}
        assert not [w for w in pool if any(n in w or w in n for n in names if len(n) >= 4 and len(w) >= 4)]
        assert not names & set(pool)
    train, valid = make(tmp_path, "--per-name", "6", "--insert", "0.9")
    assert unmarked_names(train + valid, KB) == []
    # the CLDR words do reach the training documents (--insert 0.9), never the validation ones
    cldr = set(words["de"]) - set(plain["de"])
    assert any(w in cldr for d in train if d["lang"] == "de" for w in d["text"].split())
    assert not any(w in cldr for d in valid if d["lang"] == "de" for w in d["text"].split())
    train, _ = make(tmp_path, "--no-cldr-words")
    assert not any(w in cldr for d in train if d["lang"] == "de" for w in d["text"].split())


def test_held_out_templates_only_in_validation(tmp_path):
    train, valid = make(tmp_path, "--valid", "40")
    assert not any(marker in d["text"] for d in train for marker in ("HELD-OUT", "ZURÜCK"))
    sentences = [s for d in valid for s in re.split(r"(?<=\.) ", d["text"])]
    assert sentences and all(s.startswith(("HELD-OUT", "ZURÜCK")) for s in sentences)


def test_seeded_and_refusals(tmp_path, capsys):
    first = make(tmp_path)
    assert make(tmp_path) == first
    kb, templates = write_inputs(tmp_path)
    for bad in (["--zero", "1"], ["--mix", "0.8", "--noise", "0.3"], ["--per-name", "0"], ["--insert", "1.5"]):
        assert make_e2e_data.main(["--kb", kb, "--templates", templates, "--outdir", str(tmp_path / "x"), *bad]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("make_e2e_data.py: error: ") for line in lines)


def test_extend_model_appends_the_markup_and_keeps_the_old_rows(tmp_path):
    ckpt, dict_out = str(tmp_path / "init.pt"), str(tmp_path / "dict.txt")
    size = extend_model.extend(os.path.join(QS, "model"), ckpt, dict_out)
    old_lines = open(os.path.join(QS, "model", "dict.target.txt"), encoding="utf-8").read().splitlines()
    new_lines = open(dict_out, encoding="utf-8").read().splitlines()
    assert new_lines == old_lines + [f"{s} 1" for s in extend_model.MARKUP]
    assert size == len(old_lines) + 4 + 4  # + fairseq's four specials
    old = torch.load(os.path.join(QS, "model", "model.pt"), weights_only=False)["model"]
    new = torch.load(ckpt, weights_only=False)["model"]
    for key in ("encoder.embed_tokens.weight", "decoder.output_projection.weight"):
        assert new[key].shape == (size, old[key].size(1)) and new[key].dtype == torch.float32
        assert torch.equal(new[key][:-4], old[key].float())
    assert torch.equal(new["encoder.embed_tokens.weight"][-4:], new["decoder.embed_tokens.weight"][-4:])
    # an end-to-end model already has them: refused
    (tmp_path / "e2e").mkdir()
    with open(tmp_path / "e2e" / "dict.target.txt", "w", encoding="utf-8") as f:
        f.write(open(dict_out, encoding="utf-8").read())
    with pytest.raises(ValueError, match="already has"):
        extend_model.extend(str(tmp_path / "e2e"), ckpt, dict_out)


# ----------------------------------------------------------------------------- --end-to-end

@pytest.fixture(scope="module")
def e2e_dir(tmp_path_factory):
    return extended_quickstart(str(tmp_path_factory.mktemp("qs_e2e_model")))


def run(argv):
    from examples.quickstart import link

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = link.main(argv)
    return code, out.getvalue(), err.getvalue()


SPAN = re.compile(r"^ {2}\s*(\d+)-(\d+)\s+(\S+)\s+(-?\d+\.\d+)  ")


def test_end_to_end_text_prints_markup_and_exact_spans(e2e_dir):
    texts = ["Sie wohnt in Frankreich und spricht Deutsch.", "Flights to Japan were cancelled."]
    code, out, err = run(["--end-to-end", "--model-dir", e2e_dir, "--text", texts[0], "--text", texts[1]])
    assert code == 0, err
    from genre_fairseq.hub import mGENRE

    expected = mGENRE.from_pretrained(e2e_dir).link(texts, trie=os.path.join(e2e_dir, "cldr.trie"),
                                                   name_table=os.path.join(e2e_dir, "cldr.names"), beam=5)
    blocks = out.split("\n[?] ")[1:]
    assert len(blocks) == 2
    for text, block, spans in zip(texts, blocks, expected):
        lines = block.splitlines()
        assert lines[0] == text
        printed = [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in map(SPAN.match, lines[2:]) if m]
        assert printed == [(s["start"], s["end"], s["id"]) for s in spans]
        from genre_fairseq import markup

        assert lines[1] == "  " + markup.to_markup(text, [(s["start"], s["end"], s["identifier"]) for s in spans])
    assert "2 texts linked" in out and "strong matching" not in out


def test_end_to_end_documents_are_checked_against_their_gold(e2e_dir, tmp_path):
    from genre_fairseq.hub import mGENRE

    text = "Sie wohnt in Frankreich und spricht Deutsch."
    spans = mGENRE.from_pretrained(e2e_dir).link([text], trie=os.path.join(e2e_dir, "cldr.trie"),
                                                 name_table=os.path.join(e2e_dir, "cldr.names"), beam=5)[0]
    # gold: the model's first span (found) and a span it did not predict (missed)
    gold = [{"start": 13, "end": 23, "entity_id": "territory:FR"}]
    if spans:
        gold = [{"start": spans[0]["start"], "end": spans[0]["end"], "entity_id": spans[0]["id"]}]
    taken = {(s["start"], s["end"]) for s in spans}
    extra = next((s, e) for s, e in ((36, 43), (13, 23), (0, 3)) if (s, e) not in taken)
    gold.append({"start": extra[0], "end": extra[1], "entity_id": "language:de"})
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"id": "d1", "lang": "de", "text": text, "mentions": gold}) + "\n", encoding="utf-8")
    code, out, err = run(["--end-to-end", "--model-dir", e2e_dir, "--file", str(docs)])
    assert code == 0, err
    found = 1 if spans else 0
    wrong = len(spans) - found
    assert f"strong matching: {found} of 2 gold spans found, {wrong} wrong" in out
    # percentages, by hand: P = found / predicted, R = found / 2 (GERBIL's rule when nothing is found)
    p, r = (100 * found / len(spans), 100 * found / 2) if found else (0.0, 0.0)
    f = 2 * p * r / (p + r) if found else 0.0
    assert f"(P {p:.1f} R {r:.1f} F1 {f:.1f})" in out
    assert f"missed {extra[0]}-{extra[1]} language:de" in out


@pytest.mark.parametrize("argv, message", [
    (["--end-to-end", "--sentence", "a [START] b [END]"], "do not apply to --end-to-end"),
    (["--text", "Paris"], "--text, --any-span and --mention-trie need --end-to-end"),
    (["--any-span", "--sentence", "a [START] b [END]"], "need --end-to-end"),
    (["--end-to-end", "--any-span", "--mention-trie", "x.mtrie", "--text", "x"], "exclude each other"),
    (["--end-to-end", "--mention-trie", "/nonexistent/x.mtrie", "--text", "x"], "/nonexistent/x.mtrie: file not found"),
    (["--end-to-end", "--beam", "0", "--text", "x"], "--beam must be >= 1"),
    (["--end-to-end", "--file", "/nonexistent/docs.jsonl"], "/nonexistent/docs.jsonl: file not found"),
])
def test_end_to_end_bad_options_are_one_line(argv, message):
    code, out, err = run(argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("quickstart: error: ") and message in err


@pytest.mark.parametrize("mode", [["--end-to-end"], []])
def test_file_that_is_a_directory_is_one_line(tmp_path, mode):
    code, out, err = run([*mode, "--file", str(tmp_path)])
    assert code == 2 and out == "" and err == f"quickstart: error: {tmp_path}: is a directory, not a file\n"
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe not text\n")
    code, out, err = run([*mode, "--file", str(binary)])
    assert code == 2 and out == "" and err.startswith(f"quickstart: error: {binary}: not UTF-8 text (")
    assert err.count("\n") == 1


def test_kb_line_with_wrong_columns_names_file_and_line(tmp_path, capsys):
    kb, templates = write_inputs(tmp_path)
    with open(kb, "a", encoding="utf-8") as f:
        f.write("territory:XX\tde\n")
    lines = sum(1 for line in open(kb, encoding="utf-8"))
    assert make_e2e_data.main(["--kb", kb, "--templates", templates, "--outdir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err == (f"make_e2e_data.py: error: {kb}:{lines}: expected 3 tab-separated columns "
                   "(entity_id, lang, name), got 2\n")
    assert not (tmp_path / "x").exists()


def test_pack_refuses_a_mention_tree_of_another_dictionary(tmp_path, e2e_dir, capsys):
    """pack.py copies cldr.mtrie only when it was built for the work directory's dict.txt."""
    import shutil

    from fairseq.data import Dictionary

    import pack
    from genre_fairseq.e2e_search import mention_tree

    work = tmp_path / "work"
    work.mkdir()
    for src, dst in (("dict.target.txt", "dict.txt"), ("spm.model", "spm.model"), ("cldr.trie", "cldr.trie"),
                     ("cldr.names", "cldr.names")):
        shutil.copy(os.path.join(QS, "model", src), work / dst)
    extended = Dictionary.load(os.path.join(e2e_dir, "dict.target.txt"))  # 4 symbols more than dict.txt
    mention_tree([[extended.index("\u2581Paris")]], extended).save(str(work / "cldr.mtrie"))
    code = pack.main(["--checkpoint", str(tmp_path / "missing.pt"), "--work", str(work), "--output", str(tmp_path / "m")])
    assert code == 2 and capsys.readouterr().err == f"pack.py: error: {tmp_path / 'missing.pt'}: file not found\n"
    (tmp_path / "unused.pt").write_bytes(b"")
    code = pack.main(["--checkpoint", str(tmp_path / "unused.pt"), "--work", str(work), "--output", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("pack.py: error: ") and "cldr.mtrie was built for dictionary" in err
    assert err.count("\n") == 1 and not (tmp_path / "m").exists()


def test_outputs_that_would_replace_an_input_or_damaged_inputs_are_one_line(tmp_path, capsys):
    """make_data/make_e2e_data --outdir, extend_model's outputs, pack's --output and damaged checkpoints:
    one line, status 2, nothing written or replaced."""
    import shutil

    import make_data
    import pack

    kb, templates = write_inputs(tmp_path)
    a_file = tmp_path / "a_file"
    a_file.write_text("x\n")
    assert make_e2e_data.main(["--kb", kb, "--templates", templates, "--outdir", str(a_file)]) == 2
    assert make_data.main(["--kb", kb, "--templates", templates, "--outdir", str(a_file)]) == 2
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(kb, out / "train.jsonl")
    before = (out / "train.jsonl").read_bytes()
    assert make_e2e_data.main(["--kb", str(out / "train.jsonl"), "--templates", templates, "--outdir", str(out)]) == 2
    assert (out / "train.jsonl").read_bytes() == before and not (out / "valid.jsonl").exists()
    model = tmp_path / "model"
    shutil.copytree(os.path.join(QS, "model"), model)
    shipped = (model / "model.pt").read_bytes()
    assert extend_model.main(["--model-dir", str(model), "--checkpoint-out", str(model / "model.pt"),
                              "--dict-out", str(tmp_path / "d.txt")]) == 2
    assert extend_model.main(["--model-dir", str(model), "--checkpoint-out", str(tmp_path / "c.pt"),
                              "--dict-out", str(model / "dict.target.txt")]) == 2
    assert (model / "model.pt").read_bytes() == shipped
    (model / "model.pt").write_bytes(shipped[:1000])  # a damaged checkpoint
    assert extend_model.main(["--model-dir", str(model), "--checkpoint-out", str(tmp_path / "c.pt"),
                              "--dict-out", str(tmp_path / "d.txt")]) == 2
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "d.txt").exists()
    work = tmp_path / "work"
    work.mkdir()
    for src, dst in (("dict.target.txt", "dict.txt"), ("spm.model", "spm.model"), ("cldr.trie", "cldr.trie"),
                     ("cldr.names", "cldr.names")):
        shutil.copy(os.path.join(QS, "model", src), work / dst)
    assert pack.main(["--checkpoint", str(model / "model.pt"), "--work", str(work), "--output", str(tmp_path / "m")]) == 2
    assert not (tmp_path / "m").exists()
    assert pack.main(["--checkpoint", os.path.join(QS, "model", "model.pt"), "--work", str(work),
                      "--output", str(work)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 8, lines
    assert lines[0] == lines[1].replace("make_data.py", "make_e2e_data.py") == \
        f"make_e2e_data.py: error: --outdir {a_file}: exists and is not a directory"
    assert f"would overwrite the input {out / 'train.jsonl'}" in lines[2]
    assert "--checkpoint-out" in lines[3] and "is also an input" in lines[3]
    assert "--dict-out" in lines[4] and "is also an input" in lines[4]
    assert lines[5] == f"extend_model.py: error: {model / 'model.pt'}: not a loadable fairseq checkpoint " \
        f"({lines[5].split('(', 1)[1]}"
    assert lines[6].startswith(f"pack.py: error: {model / 'model.pt'}: not a loadable fairseq checkpoint")
    assert lines[7].startswith(f"pack.py: error: --output {work}: would overwrite the input")


def test_end_to_end_bad_documents(tmp_path, e2e_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "abc", "mentions": [{"start": 2, "end": 9}]}\n', encoding="utf-8")
    code, _, err = run(["--end-to-end", "--model-dir", e2e_dir, "--file", str(bad)])
    assert code == 2 and f"{bad}:1: a mention needs 0 <= start < end <= len(text)" in err
    bad.write_text("not json\n", encoding="utf-8")
    code, _, err = run(["--end-to-end", "--model-dir", e2e_dir, "--file", str(bad)])
    assert code == 2 and f"{bad}:1" in err and err.count("\n") == 1


def test_end_to_end_without_the_model_directory_names_it(tmp_path):
    code, _, err = run(["--end-to-end", "--model-dir", str(tmp_path / "model_e2e"), "--text", "Paris"])
    assert code == 2 and f"{tmp_path / 'model_e2e' / 'model.pt'}: missing" in err


def test_train_e2e_script_smoke(tmp_path):
    """examples/quickstart/train_e2e.sh end to end on 2 locales, 2 updates: every stage runs, the model
    directory is complete and holds the markup symbols, and the held-out documents are scored."""
    import subprocess

    env = dict(os.environ, QS_LOCALES="de,en", QS_UPDATES="2", QS_VALID="8", PYTHONWARNINGS="ignore",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", os.path.join(QS, "train_e2e.sh"), str(tmp_path / "work")], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    model = tmp_path / "work" / "model_e2e"
    assert sorted(os.listdir(model)) == sorted(["MANIFEST.json", "model.pt", "dict.source.txt", "dict.target.txt",
                                               "spm.model", "cldr.trie", "cldr.names", "cldr.mtrie"])
    symbols = [line.split()[0] for line in open(model / "dict.target.txt", encoding="utf-8")]
    assert symbols[-4:] == list(extend_model.MARKUP)
    manifest = json.load(open(model / "MANIFEST.json"))
    assert manifest["model"]["updates"] == 2 and "cldr.mtrie" in manifest["files"]
    rows = re.findall(r"^InKB strong +(\d+) +(\d+) +(\d+)", proc.stdout, re.M)
    assert len(rows) == 2  # with the mention tree, then with any span
    assert all(int(tp) + int(fn) == 8 for tp, _, fn in rows)  # TP + FN = the 8 gold mentions
    assert proc.stdout.index("mention tree") < proc.stdout.index("any span")


def test_shipped_samples_are_gold_documents_of_the_kb():
    """e2e_sentences.jsonl: one held-out-template document per KB language (and one without mentions),
    each gold span the KB name of its entity in the document's language."""
    from examples.quickstart import link
    from genre_fairseq.name_table import NameTable

    items = link.read_documents(link.E2E_SAMPLES)
    table = NameTable.load(os.path.join(QS, "model", "cldr.names"))
    assert {item.lang for item in items} == set("ar cs de en es fa fr it ja pl pt ru sr ta tr zh".split())
    assert any(not item.gold for item in items)
    for item in items:
        for start, end, entity in item.gold:
            assert entity in table.ids(item.lang, item.sentence[start:end]), (item.origin, start, end)


# ----------------------------------------------------------------------------- the shipped end-to-end model

E2E_MODEL = os.path.join(QS, "model_e2e")
E2E_VALID = os.path.join(QS, "e2e_valid.jsonl")


def test_shipped_e2e_model_directory_is_whole_and_consistent():
    """model_e2e: every file as MANIFEST.json records it; both trees built for its dictionary (the
    linking model's plus the 4 markup symbols), the entity tree from its name table."""
    import hashlib

    from fairseq.data import Dictionary

    from genre_fairseq.name_table import NameTable
    from genre_fairseq.prefix_tree import PrefixTree, dictionary_fingerprint

    manifest = json.load(open(os.path.join(E2E_MODEL, "MANIFEST.json"), encoding="utf-8"))
    assert sorted(manifest["files"]) == sorted(f for f in os.listdir(E2E_MODEL) if f != "MANIFEST.json")
    for name, entry in manifest["files"].items():
        data = open(os.path.join(E2E_MODEL, name), "rb").read()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], name
    target = Dictionary.load(os.path.join(E2E_MODEL, "dict.target.txt"))
    linking = Dictionary.load(os.path.join(QS, "model", "dict.target.txt"))
    assert target.symbols == linking.symbols + list(extend_model.MARKUP)
    for name in ("cldr.trie", "cldr.mtrie"):
        assert PrefixTree.load(os.path.join(E2E_MODEL, name), verify=True).dictionary_fingerprint == \
            dictionary_fingerprint(target), name
    with NameTable.load(os.path.join(E2E_MODEL, "cldr.names")) as table:
        assert PrefixTree.load(os.path.join(E2E_MODEL, "cldr.trie")).name_table_fingerprint == table.fingerprint
    assert sum(os.path.getsize(os.path.join(E2E_MODEL, f)) for f in os.listdir(E2E_MODEL)) <= 8 * 2**20


@pytest.fixture(scope="module")
def shipped_e2e():
    from genre_fairseq.hub import mGENRE
    from genre_fairseq.name_table import NameTable

    return mGENRE.from_pretrained(E2E_MODEL), NameTable.load(os.path.join(E2E_MODEL, "cldr.names"))


def test_quickstart_end_to_end_default_is_the_shipped_model_with_the_mention_tree(shipped_e2e):
    """`python -m examples.quickstart --end-to-end` (no options): the shipped model on the samples,
    mentions restricted to the KB's names; every printed span is model.link's with that mention tree,
    its text is a KB name, and the gold comparison adds up."""
    from examples.quickstart import link

    model, table = shipped_e2e
    code, out, err = run(["--end-to-end"])
    assert code == 0, err
    assert out.startswith(f"model: {E2E_MODEL} (") and f"mentions: the known names ({E2E_MODEL}/cldr.mtrie)" in out
    items = link.read_documents(link.E2E_SAMPLES)
    expected = model.link([i.sentence for i in items], trie=os.path.join(E2E_MODEL, "cldr.trie"), name_table=table,
                          beam=5, mention_trie=os.path.join(E2E_MODEL, "cldr.mtrie"))
    blocks = out.split("\n[")[1:]
    assert len(blocks) == len(items)
    names = {name for _, name in table}
    tp = fp = fn = 0
    for item, block, spans in zip(items, blocks, expected):
        printed = [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in map(SPAN.match, block.splitlines()) if m]
        assert printed == [(s["start"], s["end"], s["id"]) for s in spans]
        assert all(item.sentence[s:e] in names for s, e, _ in printed)  # mentions are KB names
        gold = set(item.gold)
        tp += len(gold & set(printed))
        fp += len(set(printed) - gold)
        fn += len(gold - set(printed))
    assert f"strong matching: {tp} of {tp + fn} gold spans found, {fp} wrong" in out
    assert tp >= (tp + fn) // 2  # the shipped model finds at least half of the samples' mentions


def test_quickstart_end_to_end_any_span(shipped_e2e):
    """--any-span: model.link without a mention tree."""
    model, table = shipped_e2e
    text = "Sie spricht Deutsch und lebt in Frankreich."
    code, out, err = run(["--end-to-end", "--any-span", "--text", text])
    assert code == 0, err
    assert "mentions: any span of words" in out
    spans = model.link([text], trie=os.path.join(E2E_MODEL, "cldr.trie"), name_table=table, beam=5)[0]
    printed = [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in map(SPAN.match, out.splitlines()) if m]
    assert printed == [(s["start"], s["end"], s["id"]) for s in spans]


def test_shipped_held_out_documents_are_the_recipes(tmp_path):
    """e2e_valid.jsonl is train_e2e.sh's valid.jsonl: what make_e2e_data.py writes for the shipped KB, seed 1."""
    import babel
    import make_kb

    trained_with = json.load(open(os.path.join(E2E_MODEL, "MANIFEST.json"), encoding="utf-8"))["training"]["babel"]
    if babel.__version__ != trained_with:
        pytest.skip(f"babel {babel.__version__} here; the shipped KB's CLDR names came from babel {trained_with}")

    kb = str(tmp_path / "cldr.tsv")
    assert make_kb.main(["--output", kb]) == 0
    assert make_e2e_data.main(["--kb", kb, "--outdir", str(tmp_path), "--seed", "1"]) == 0
    assert (tmp_path / "valid.jsonl").read_bytes() == open(E2E_VALID, "rb").read()
