"""The ```bash blocks of README.md and docs/*.md against the code, from a directory that is not the repository.

Every block is accounted for: each ``genre-trie`` / ``genre-prepare`` / ``genre-evaluate`` command in
it has its sub-command and every option it uses checked against that command's ``--help``, and
the commands that can run on the repository's own files are run (with the shipped quickstart files
substituted for the user's). Blocks that need external data (dumps, pre-trained models, GPUs) or
that other tests already run are listed in SKIPPED with the reason; a new block that is in
neither list fails the test, so none is skipped silently.
"""

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "examples", "quickstart", "model")
ENV = dict(os.environ, PYTHONWARNINGS="ignore", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
CHECKED = ("genre-trie", "genre-prepare", "genre-evaluate")

#: (file, first command line) -> why the block's commands are not run here (their options still are checked).
SKIPPED = {
    ("README.md", "python3 -m venv .venv && . .venv/bin/activate"): "the installation itself (CI installs the same way)",
    ("README.md", "genre-quickstart"): "run by tests/test_quickstart.py, from another directory",
    ("README.md", "python -m pytest"): "the test suite itself",
    ("README.md", 'PLUGIN="$(python -m genre_fairseq --user-dir)"'):
        "needs a Wikidata dump, a pre-trained model and training data; its first line and `genre-trie inspect` run "
        "below on the shipped files",
    ("README.md", "genre-evaluate mewsli-9/output/dataset --model-dir model_dir --model-type mgenre --trie kb.trie \\"):
        "needs Mewsli-9; tests/test_evaluate.py runs genre-evaluate on fixtures",
    ("README.md", "tar -xzf fairseq_multilingual_entity_disambiguation.tar.gz"):
        "needs the released GENRE/mGENRE models and pickles; tests/test_convert.py converts pickles of the same "
        "formats, tests/test_hub_layouts.py loads directories of the same layouts",
    ("docs/end_to_end.md", 'PLUGIN="$(python -m genre_fairseq --user-dir)"'):
        "run below on the shipped end-to-end model (test_end_to_end_block_runs_on_the_shipped_model)",
    ("docs/evaluate.md", None): "needs Mewsli-9 and the released mGENRE; tests/test_evaluate.py runs genre-evaluate "
                                "on fixtures",
    ("docs/prepare.md", None): "needs a Wikidata dump and KILT/Mewsli data; tests/test_prepare.py runs genre-prepare "
                               "on fixtures",
    ("docs/quickstart.md", None): "run by tests/test_quickstart.py, tests/test_quickstart_e2e.py and "
                                  "tests/test_examples.py",
    ("docs/training.md", None): "training needs pre-trained BART/mBART or several processes; "
                                "tests/test_distributed.py and tests/test_examples.py run the recipes on tiny models",
    ("docs/trie_tools.md", None): "needs a Wikidata dump or the user's KB; tests/test_trie_pipeline.py runs the same "
                                  "commands on fixtures",
}


def bash_blocks():
    """(file relative to the repository, first command line, commands) of every ```bash block."""
    out = []
    for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        text = open(path, encoding="utf-8").read()
        for match in re.finditer(r"```bash\n(.*?)```", text, re.S):
            lines = [line for line in match.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
            commands = re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()
            out.append((os.path.relpath(path, ROOT), lines[0] if lines else "", commands))
    return out


def skip_reason(name, first):
    return SKIPPED.get((name, first)) or SKIPPED.get((name, None))


def test_every_block_is_run_or_listed_with_a_reason():
    unlisted = [(name, first) for name, first, _ in bash_blocks() if not skip_reason(name, first)]
    assert not unlisted, f"add these blocks to SKIPPED (with the reason) or run them here: {unlisted}"
    found = {(name, first) for name, first, _ in bash_blocks()}
    stale = [key for key in SKIPPED if key[1] is not None and key not in found]
    assert not stale, f"SKIPPED names blocks that are no longer in the docs: {stale}"


def invocations():
    """(block, argv) of each genre-* command in the blocks (shell syntax after the command ignored)."""
    out = []
    for name, first, commands in bash_blocks():
        for command in commands:
            command = command.split("#", 1)[0]
            for part in re.split(r"&&|\|\||;|\|", command):
                try:
                    argv = shlex.split(part)
                except ValueError:
                    continue
                while argv and "=" in argv[0] and not argv[0].startswith("-"):
                    argv = argv[1:]  # VAR=value prefixes
                if argv and argv[0] in CHECKED:
                    out.append((f"{name}: {first[:40]}", argv))
    return out


_HELP = {}


def help_text(command, sub):
    key = (command, sub)
    if key not in _HELP:
        argv = [command] + ([sub] if sub else []) + ["--help"]
        proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300, check=False)
        assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr[-1000:]}"
        _HELP[key] = proc.stdout
    return _HELP[key]


def test_every_option_in_the_docs_exists(tmp_path):
    found = invocations()
    assert len(found) >= 8  # the README and docs/trie_tools.md alone have that many
    problems = []
    for where, argv in found:
        command = argv[0]
        sub = argv[1] if command == "genre-trie" else None
        if sub is not None and sub not in help_text(command, None):
            problems.append(f"{where}: {command} has no sub-command {sub}")
            continue
        text = help_text(command, sub)
        for option in (a.split("=", 1)[0] for a in argv[1:] if a.startswith("--")):
            if not re.search(re.escape(option) + r"\b", text):
                problems.append(f"{where}: {' '.join(argv[:2])} has no option {option}")
    assert not problems, "\n".join(problems)


def test_the_plugin_dir_line_and_inspect_run_from_elsewhere(tmp_path):
    """The README's first line of "Using it" and its `genre-trie inspect kb.trie`, on the shipped tree."""
    os.symlink(os.path.join(MODEL, "cldr.trie"), tmp_path / "kb.trie")
    script = 'PLUGIN="$(python -m genre_fairseq --user-dir)" && test -f "$PLUGIN/task.py" && genre-trie inspect kb.trie'
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("kind: prefix tree\n") and "sequences: " in proc.stdout


@pytest.mark.parametrize("name", ["README.md"])
def test_readme_names_no_repository_relative_user_dir(name):
    """`--user-dir genre_fairseq` works only from the repository root; the README's commands use the printed path."""
    for block, _, commands in bash_blocks():
        if block == name:
            assert not any("--user-dir genre_fairseq" in c for c in commands), commands


def test_end_to_end_block_runs_on_the_shipped_model(tmp_path):
    """docs/end_to_end.md's fairseq-interactive command, as written, from a directory holding
    ``model_dir``: links to examples/quickstart/model_e2e (kb.* for its cldr.* files)."""
    e2e = os.path.join(ROOT, "examples", "quickstart", "model_e2e")
    (tmp_path / "model_dir").mkdir()
    for dst, src in (("model.pt", "model.pt"), ("dict.source.txt", "dict.source.txt"),
                     ("dict.target.txt", "dict.target.txt"), ("spm.model", "spm.model"), ("kb.trie", "cldr.trie"),
                     ("kb.names", "cldr.names"), ("kb.mtrie", "cldr.mtrie")):
        os.symlink(os.path.join(e2e, src), tmp_path / "model_dir" / dst)
    [block] = [lines for name, first, lines in bash_blocks()
               if name == "docs/end_to_end.md" and first.startswith('PLUGIN="$(python -m genre_fairseq')]
    proc = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(block)], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    d_line = next(line for line in proc.stdout.splitlines() if line.startswith("D-0"))
    l_lines = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("L-0")]
    text = "Ich wohne in Deutschland und spreche Deutsch."
    assert "{" in d_line and l_lines  # the markup and at least one linked span
    for fields in l_lines:  # L-<id> start end score entity identifier mention
        start, end = int(fields[1]), int(fields[2])
        assert text[start:end] == fields[6] and " >> " in fields[5]
