"""Every lecture runs, top to bottom, in fast mode (MINITRANSFER_FAST=1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

LECTURES = sorted((REPO / "lectures").glob("[0-9][0-9]_*.py"))


def test_there_are_seven_to_nine_lectures():
    assert 7 <= len(LECTURES) <= 9, [p.name for p in LECTURES]


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs(path, tmp_path):
    env = {**os.environ, "MINITRANSFER_FAST": "1", "MINITRANSFER_LECTURE_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    env.pop("XLA_FLAGS", None)
    # the lecture imports this checkout's minitransfer, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t
    assert r.returncode == 0, f"{path.name} failed after {took:.0f} s:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.strip(), f"{path.name} printed nothing"
    print(f"{path.name}: {took:.1f} s")
