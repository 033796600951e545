"""Lectures run as scripts, top to bottom, in fast mode (MINITRANSFER_FAST=1).

Every lecture also runs in the book (test_book.py: each in a fresh kernel, no cell may fail), so as scripts
only the quicker ones run where the book does: they cover what differs between the two ways (lecture.py's
figure files, the working folder); the four slow ones took 150 s more as scripts (21-64 s each).
Without the book's tools (nbclient) every lecture runs here."""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO

LECTURES = sorted((REPO / "lectures").glob("[0-9][0-9]_*.py"))
BOOK_RUNS_THEM = importlib.util.find_spec("nbclient") is not None
# the quick ones (2-17 s each as scripts on the 2-core CPU; the others 21-64 s)
AS_SCRIPTS = [p for p in LECTURES if not BOOK_RUNS_THEM or p.stem[:2] in ("01", "02", "04", "05")]


def test_there_are_seven_to_nine_lectures():
    assert 7 <= len(LECTURES) <= 9, [p.name for p in LECTURES]


@pytest.mark.parametrize("path", AS_SCRIPTS, ids=[p.stem for p in AS_SCRIPTS])
def test_lecture_runs(path, tmp_path):
    env = {**os.environ, "MINITRANSFER_FAST": "1", "MINITRANSFER_LECTURE_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    # (XLA_FLAGS kept, as the book's kernels keep them: with the same flags, the programs the book compiled
    # are read back from the run's compilation cache instead of compiled again; see conftest.py)
    # the lecture imports this checkout's minitransfer, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t
    assert r.returncode == 0, f"{path.name} failed after {took:.0f} s:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert r.stdout.strip(), f"{path.name} printed nothing"
    print(f"{path.name}: {took:.1f} s")


def test_lecture_4_shows_the_loop_that_training_runs():
    # not a teaching copy: the function lecture 4 prints whole is the one finetune and pretrain call
    import minitransfer.loop
    import minitransfer.pretrain
    import minitransfer.train

    source = (REPO / "lectures" / "04_pretraining_is_the_expensive_part.py").read_text()
    assert "from minitransfer.loop import train_loop" in source and "\nshow(train_loop)\n" in source
    assert minitransfer.train.train_loop is minitransfer.loop.train_loop is minitransfer.pretrain.train_loop
    assert all(
        "train_loop(" in inspect.getsource(f) for f in (minitransfer.train.finetune, minitransfer.pretrain.pretrain)
    )
