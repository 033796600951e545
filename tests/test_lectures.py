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


def lecture_cells(path) -> list[tuple[str, str]]:
    """A percent-format lecture's cells as (marker line, text), the text of a
    markdown cell without its "# " comment prefixes."""
    cells = []
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            cells.append([line, []])
        elif cells:
            cells[-1][1].append(line)
    out = []
    for marker, lines in cells:
        if "[markdown]" in marker:
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        out.append((marker, "\n".join(lines).strip()))
    return out


def is_answer(cell: tuple[str, str]) -> bool:
    marker, text = cell
    if "[markdown]" in marker:
        return text.startswith("<details><summary>Answer</summary>") and text.endswith("</details>")
    return marker.strip() == '# %% tags=["answer"]'


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_every_exercise_is_followed_by_its_answer(path):
    # an exercise is a markdown cell of its own that opens with "**Exercise N.**"; its answer is the next cell:
    # markdown folded in <details>, or a code cell tagged "answer" (the book folds it: test_book.py)
    cells = lecture_cells(path)
    exercises = [i for i, (marker, text) in enumerate(cells) if "[markdown]" in marker and "**Exercise" in text]
    assert len(exercises) >= 3, f"{path.name}: {len(exercises)} exercise(s), expected at least 3"
    for n, i in enumerate(exercises, 1):
        text = cells[i][1]
        assert text.startswith(f"**Exercise {n}.**"), f"{path.name}: exercise {n} does not open its cell: {text[:80]!r}"
        assert text.count("**Exercise") == 1, f"{path.name}: exercise {n} shares its cell with another"
        assert i + 1 < len(cells) and is_answer(cells[i + 1]), (
            f"{path.name}: exercise {n} ({text[:60]!r}) is not followed by an answer cell "
            f'(markdown "<details><summary>Answer</summary> ... </details>" or code "# %% tags=["answer"]")'
        )
    answers = [i for i, c in enumerate(cells) if is_answer(c)]
    assert [i - 1 for i in answers] == exercises, f"{path.name}: an answer cell that follows no exercise"


def show_calls(path) -> list[tuple[str, object, tuple, dict]]:
    """Every show(...) call in a lecture, its target and arguments evaluated after the lecture's imports
    (its top-level import statements: imports alone, none of its computations)."""
    import ast

    tree = ast.parse(path.read_text())
    namespace: dict = {}
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(body=imports, type_ignores=[]), str(path), "exec"), namespace)
    calls = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "show":

            def value(expr):
                return eval(compile(ast.Expression(expr), str(path), "eval"), namespace)

            args = tuple(value(a) for a in node.args)
            kwargs = {k.arg: value(k.value) for k in node.keywords}
            calls.append((ast.unparse(node), args[0], args[1:], kwargs))
    return calls


@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_every_show_prints_at_most_40_lines(path):
    # a lecture prints the idea, not pages of plumbing: a longer function is shown in named slices
    # (show's start/stop) or without its signature and docstring (signature=False)
    from minitransfer.apps.lecture import shown_source

    for call, target, args, kwargs in show_calls(path):
        _, _, lines = shown_source(target, *args, **kwargs)
        assert len(lines) <= 40, f"{path.name}: {call} prints {len(lines)} lines (at most 40)"


def test_lecture_4_shows_the_loop_that_training_runs():
    # not a teaching copy: the function lecture 4 prints, its whole body in slices, is the one finetune and
    # pretrain call
    import minitransfer.loop
    import minitransfer.pretrain
    import minitransfer.train
    from minitransfer.apps.lecture import shown_source

    path = REPO / "lectures" / "04_pretraining_is_the_expensive_part.py"
    assert "from minitransfer.loop import train_loop" in path.read_text()
    shown = [
        line
        for call, target, args, kwargs in show_calls(path)
        if target is minitransfer.loop.train_loop
        for line in shown_source(target, *args, **kwargs)[2]
        if line.strip() and not line.startswith("def train_loop(...):")
    ]
    body = [line for line in shown_source(minitransfer.loop.train_loop, signature=False)[2][1:] if line.strip()]
    assert shown == body, "lecture 4 does not print train_loop's whole body, in order"
    assert minitransfer.train.train_loop is minitransfer.loop.train_loop is minitransfer.pretrain.train_loop
    assert all(
        "train_loop(" in inspect.getsource(f) for f in (minitransfer.train.finetune, minitransfer.pretrain.pretrain)
    )


def test_show_prints_a_body_alone_or_a_slice_and_names_a_missing_marker():
    from minitransfer.apps.lecture import shown_source
    from minitransfer.loop import train_loop

    whole = shown_source(train_loop)[2]
    _, line, body = shown_source(train_loop, signature=False)
    assert body[0] == "def train_loop(...):  # signature and docstring: line " + str(
        inspect.getsourcelines(train_loop)[1]
    )
    assert '"""' not in "\n".join(body) and "    params," not in body  # no docstring, no parameter lines
    assert body[1:] == whole[-(len(body) - 1) :] and whole[line - inspect.getsourcelines(train_loop)[1]] == body[1]
    with pytest.raises(ValueError, match=r"start='no such marker'\): no line of minitransfer/loop.py"):
        shown_source(train_loop, start="no such marker")
