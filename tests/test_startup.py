"""The formats and the commands start without fairseq (and --help without torch); imports change nothing.

Each check runs in a fresh interpreter from a directory that is not the repository, so neither an
earlier test's imports nor the working directory hide an import.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TREE = os.path.join(ROOT, "examples", "quickstart", "model", "cldr.trie")
TABLE = os.path.join(ROOT, "examples", "quickstart", "model", "cldr.names")


def run_python(code, cwd, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def loaded_after(statements, cwd, *argv):
    """The heavy modules (fairseq, torch) in sys.modules after running ``statements``."""
    code = ("import sys\n" + statements + "\n"
            "print('LOADED', *(m for m in ('fairseq', 'torch') if m in sys.modules))")
    return run_python(code, cwd, *argv).splitlines()[-1].split()[1:]


def run_main(module, argv):
    """Statements that run ``module.main`` on ``argv`` and swallow its SystemExit."""
    return (f"import {module} as m\nsys.argv = {argv!r}\n"
            "try:\n    m.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n")


def test_formats_import_neither_fairseq_nor_torch(tmp_path):
    modules = "genre_fairseq, genre_fairseq.prefix_tree, genre_fairseq.name_table, genre_fairseq.identifiers, " \
              "genre_fairseq.marginalize, trie_tools.cli, trie_tools.names, trie_tools.encode"
    assert loaded_after(f"import {modules}", tmp_path) == []


def test_prefix_tree_builds_and_looks_up_without_torch(tmp_path):
    code = ("from genre_fairseq.prefix_tree import PrefixTree\n"
            "t = PrefixTree.from_sequences([[2, 5, 6, 2], [2, 5, 7, 2]])\n"
            "assert [2, 5, 6, 2] in t and [2, 5, 8, 2] not in t and len(t) == 2, (len(t),)\n")
    assert loaded_after(code, tmp_path) == []


@pytest.mark.parametrize("argv", [["genre-trie", "--help"], ["genre-trie", "inspect", TREE],
                                  ["genre-trie", "inspect", TABLE]])
def test_genre_trie_needs_no_torch(tmp_path, argv):
    assert loaded_after(run_main("trie_tools.cli", argv), tmp_path) == []


def test_importing_the_package_changes_no_global_state(tmp_path):
    """With fairseq imported first (a program using both): the plugin registers, and fixes nothing yet."""
    code = (
        "import atexit, torch\n"
        "from fairseq.distributed import utils as d\n"
        "from fairseq.tasks import TASK_REGISTRY\n"
        "before = (list(torch.serialization.get_safe_globals()), d._broadcast_object_slow)\n"
        "import genre_fairseq\n"
        "from genre_fairseq import iterators\n"
        "assert 'genre' in TASK_REGISTRY\n"
        "assert d._broadcast_object_slow is before[1] and not iterators._registered\n"
        "genre_fairseq.apply_fairseq_fixes()\n"
        "assert d._broadcast_object_slow is not before[1] and iterators._registered\n"
        "print('ok')\n"
    )
    assert run_python(code, tmp_path).split()[-1] == "ok"


def test_formats_leave_the_torch_allow_list_alone(tmp_path):
    code = ("import torch\nbefore = list(torch.serialization.get_safe_globals())\n"
            "import genre_fairseq.prefix_tree, genre_fairseq.name_table\n"
            "assert torch.serialization.get_safe_globals() == before\nprint('ok')\n")
    assert run_python(code, tmp_path).split()[-1] == "ok"


def test_user_dir_is_printed_and_loads_from_anywhere(tmp_path):
    """The printed --user-dir registers task, presets and criterion; --task-options lists the task's own."""
    out = run_python("import runpy, sys\nsys.argv = ['genre_fairseq', '--user-dir']\n"
                     "runpy.run_module('genre_fairseq', run_name='__main__')\n", tmp_path)
    user_dir = out.strip()
    assert os.path.samefile(user_dir, os.path.join(ROOT, "genre_fairseq"))
    code = ("import sys\nfrom argparse import Namespace\nfrom fairseq import utils\n"
            "utils.import_user_module(Namespace(user_dir=sys.argv[1]))\n"
            "from fairseq.tasks import TASK_REGISTRY\nfrom fairseq.models import ARCH_MODEL_REGISTRY\n"
            "from fairseq.criterions import CRITERION_REGISTRY\n"
            "assert 'genre' in TASK_REGISTRY and 'genre_tiny' in ARCH_MODEL_REGISTRY\n"
            "assert 'genre_marginal' in CRITERION_REGISTRY\n"
            "from genre_fairseq.__main__ import task_options\nlisted = task_options()\n"
            "assert '--trie (default: None)' in listed and '--marginalize-alpha (default: 0.5)' in listed\n"
            "assert '--source-lang' not in listed, listed\nprint('ok')\n")
    assert run_python(code, tmp_path, user_dir).split()[-1] == "ok"


@pytest.mark.parametrize("module, prog", [("trie_tools.prepare", "genre-prepare"),
                                          ("genre_fairseq.evaluate", "genre-evaluate")])
def test_other_commands_help_needs_no_torch(tmp_path, module, prog):
    assert loaded_after(run_main(module, [prog, "--help"]), tmp_path) == []
