"""Every example runs: the README's main command (examples/demo/run.sh), with fewer updates."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs_and_links_every_test_mention_to_a_kb_identifier(tmp_path):
    env = dict(os.environ, DEMO_UPDATES="60", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", os.path.join(ROOT, "examples", "demo", "run.sh"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    kb = set(open(tmp_path / "kb.txt", encoding="utf-8").read().splitlines())
    hyps = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("H-")]
    sources = [line for line in proc.stdout.splitlines() if line.startswith("S-")]
    assert len(sources) == 12 and len(hyps) == 24
    assert all(h[2] in kb for h in hyps)
    assert "accuracy@1:" in proc.stdout.splitlines()[-1]
