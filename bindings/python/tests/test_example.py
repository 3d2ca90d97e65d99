"""examples/python/score_batch.py runs and classifies the digits batch."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_score_batch_example():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "bindings" / "python"), env.get("PYTHONPATH")) if p)
    r = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "score_batch.py")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "scored 20 images" in r.stdout and "accuracy" in r.stdout
