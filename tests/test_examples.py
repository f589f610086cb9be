"""Every example runs: the demo (examples/demo/run.sh), the quickstart's training script and the cldr_mel miniature, with fewer updates."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "examples", "quickstart")
CLDR_MEL = os.path.join(ROOT, "examples", "cldr_mel", "run.py")


def _env(**variables):
    return dict(os.environ, PYTHONWARNINGS="ignore", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
                **variables)


def test_demo_runs_and_links_every_test_mention_to_a_kb_identifier(tmp_path):
    proc = subprocess.run(["bash", os.path.join(ROOT, "examples", "demo", "run.sh"), str(tmp_path)],
                          capture_output=True, text=True, env=_env(DEMO_UPDATES="60"), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    kb = set(open(tmp_path / "kb.txt", encoding="utf-8").read().splitlines())
    hyps = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("H-")]
    sources = [line for line in proc.stdout.splitlines() if line.startswith("S-")]
    assert len(sources) == 12 and len(hyps) == 24
    assert all(h[2] in kb for h in hyps)
    assert "accuracy@1:" in proc.stdout.splitlines()[-1]


def test_quickstart_train_script_rebuilds_a_consistent_model_directory(tmp_path):
    """examples/quickstart/train.sh end to end with 20 updates: KB, SPM, tree, training, packing, linking.

    The KB of 3 of the 16 locales (QS_LOCALES): every step runs as in the full script, on a sixth of the names.
    """
    import json

    model = tmp_path / "model"
    proc = subprocess.run(["bash", os.path.join(QUICKSTART, "train.sh"), str(tmp_path / "work"), str(model)],
                          capture_output=True, text=True, env=_env(QS_UPDATES="20", QS_LOCALES="de,en,ja"),
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "800 sentences linked in" in proc.stdout
    manifest = json.load(open(model / "MANIFEST.json", encoding="utf-8"))
    assert manifest["model"]["updates"] == 20 and manifest["training"]["updates"] == 20
    assert manifest["training"]["train_pairs"] == 4 * sum(1 for line in open(tmp_path / "work" / "cldr.tsv", encoding="utf-8")
                                                          if not line.startswith("#"))
    assert sorted(manifest["files"]) == ["cldr.names", "cldr.trie", "dict.source.txt", "dict.target.txt", "model.pt",
                                         "spm.model"]
    # the rebuilt directory is what the quickstart command reads
    proc = subprocess.run([sys.executable, "-m", "examples.quickstart", "--model-dir", str(model), "--sentence",
                           "Die Regierung von [START] Frankreich [END] hat neue Regeln beschlossen."],
                          cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 sentences linked in" in proc.stdout.splitlines()[-1]


def test_cldr_mel_accuracy_micro_and_macro():
    sys.path.insert(0, os.path.dirname(CLDR_MEL))
    try:
        from run import accuracy
    finally:
        sys.path.remove(os.path.dirname(CLDR_MEL))
    result = accuracy({"fr": [True, False, False, True], "cs": [True], "zh": [False, False, False], "pl": []})
    assert result == {"cs": 1.0, "fr": 0.5, "zh": 0.0, "micro": 3 / 8, "macro": 0.5, "n": 8}


def test_cldr_mel_smoke_run(tmp_path):
    """The Table 4 miniature on 60 entities and 10 updates: every config trains and is scored.

    --jobs 2: two configs train at once, one thread each (each training is its own seeded process:
    the results do not depend on it); most of a config's time is its three processes starting.
    """
    import json

    proc = subprocess.run([sys.executable, CLDR_MEL, "--work", str(tmp_path), "--updates", "10", "--max-entities", "60",
                           "--unseen-per-lang", "5", "--seen-test", "20", "--vocab-size", "1000", "--jobs", "2"],
                          capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.load(open(tmp_path / "results.json", encoding="utf-8"))
    results, facts = out["results"], out["facts"]
    assert list(results) == ["canonical", "name_lang", "lang_name", "lang_name+M"]
    assert facts["unseen_mentions"] == 35 and facts["seen_mentions"] == 20
    for config, r in results.items():
        for test, n in (("unseen", 35), ("seen", 20)):
            for mode in ("marginalized", "best_name"):
                acc = r[test][mode]
                assert acc["n"] == n and 0 <= acc["micro"] <= 1 and 0 <= acc["macro"] <= 1
                langs = [k for k in acc if k not in ("micro", "macro", "n")]
                assert abs(acc["macro"] - sum(acc[lang] for lang in langs) / len(langs)) < 1e-12
    # one identifier per entity: marginalization cannot change a canonical model's ranking
    assert results["canonical"]["unseen"]["marginalized"] == results["canonical"]["unseen"]["best_name"]
    assert results["canonical"]["seen"]["marginalized"] == results["canonical"]["seen"]["best_name"]
    rows = [line.split("\t") for line in open(tmp_path / "lang_name" / "predictions.tsv", encoding="utf-8")]
    assert len(rows) == 55 and {r[0] for r in rows} == {"unseen", "seen"} and all(len(r) == 7 for r in rows)
    for test, n in (("unseen", 35), ("seen", 20)):  # the file and the accuracies agree
        for column, mode in ((3, "marginalized"), (5, "best_name")):
            right = sum(r[2] == r[column] for r in rows if r[0] == test)
            assert abs(right / n - results["lang_name"][test][mode]["micro"]) < 1e-12
    table = open(tmp_path / "results.md", encoding="utf-8").read()
    assert table.count("\n| ") == 5  # header and the four configs


def test_cldr_mel_rejects_an_unknown_config(tmp_path):
    proc = subprocess.run([sys.executable, CLDR_MEL, "--work", str(tmp_path), "--configs", "name_lang,bogus"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "error: --configs: unknown bogus; choose from canonical, name_lang, lang_name, lang_name+M")
