"""Helpers for the lectures in ``lectures/``: show the package's real source
(never a pasted copy that could drift), and pick fast settings in CI."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from minitransfer.apps import provenance
from minitransfer.assets import REPO, shipped_checkpoint

# while the book builds a lecture: record the repository files it reads (its page records them)
provenance.start_recording()

# MINITRANSFER_FAST=1 (set by the lecture tests) shrinks every experiment so
# that all lectures run in a few minutes; unset, they use sizes worth reading.
FAST = os.environ.get("MINITRANSFER_FAST") == "1"

# Optional local data of this project's development setup (IMDB); a fresh
# clone does not have it, and every lecture runs without it.
SHARED_DATA = Path(os.environ.get("MINITRANSFER_SHARED_DATA", REPO.parent / "shared" / "data"))


_told = []


def out_dir() -> Path:
    """Where lectures write their figures (MINITRANSFER_LECTURE_OUT, default
    lecture_out/ in the current folder, said once when a lecture first uses it)."""
    chosen = os.environ.get("MINITRANSFER_LECTURE_OUT")
    p = Path(chosen or "lecture_out")
    p.mkdir(parents=True, exist_ok=True)
    if not chosen and not _told:  # (the book and the tests choose a folder of their own: nothing to say)
        _told.append(p)
        print(
            f"(this lecture's figures and files go to {p.resolve()}/; MINITRANSFER_LECTURE_OUT chooses another folder)"
        )
    return p


def shown_source(obj, start: str | None = None, stop: str | None = None, *, signature: bool = True):
    """What ``show`` prints: ``(file, first line number, lines)`` of ``obj``'s
    source (the lecture tests count these lines).

    ``start``/``stop``: only from the first line containing ``start`` up to
    (not including) the first later line containing ``stop``.
    ``signature=False``: a function's body alone, after a one-line ``def
    name(...):`` in place of its signature, decorators and docstring (a
    signature of one parameter per line can be a third of a short function).
    """
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        path = path.relative_to(REPO)
    except ValueError:
        pass
    name = getattr(obj, "__qualname__", repr(obj))
    head, lo, hi = [], 0, len(lines)
    if not signature:
        import ast
        import textwrap

        tree = ast.parse(textwrap.dedent("".join(lines)))
        fn = tree.body[0]
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            raise TypeError(f"show(..., signature=False): {name} is not a function")
        body = fn.body
        if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        lo = body[0].lineno - 1
        while lo > 0 and lines[lo - 1].strip().startswith("#"):  # comments that open the body belong to it
            lo -= 1
        indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
        head = [f"{indent}def {fn.name}(...):  # signature and docstring: line {first}\n"]
    if start is not None:
        lo = next((i for i, line in enumerate(lines) if i >= lo and start in line), None)
        if lo is None:
            raise ValueError(f"show({name}, start={start!r}): no line of {path} from line {first} contains it")
    if stop is not None:
        hi = next((i for i, line in enumerate(lines) if i > lo and stop in line), None)
        if hi is None:
            raise ValueError(f"show({name}, stop={stop!r}): no line of {path} after line {first + lo} contains it")
    if start is not None:
        head = []  # a slice from a marker shows that line first, not the def
    body_lines = [line.rstrip("\n") for line in lines[lo:hi]]
    while body_lines and not body_lines[-1].strip():
        body_lines.pop()
    return path, first + lo, [h.rstrip("\n") for h in head] + body_lines


def show(obj, start: str | None = None, stop: str | None = None, *, signature: bool = True) -> None:
    """Print the source of a function/class from the package, with its file
    (``shown_source`` says what ``start``, ``stop`` and ``signature`` pick)."""
    path, line, lines = shown_source(obj, start, stop, signature=signature)
    provenance.note_shown(obj)
    print(f"── {path}, line {line} ──")
    print("\n".join(lines))


def gpt2_tokenizer():
    """The real GPT-2 BPE, from the copy that ships inside the package (offline)."""
    from minitransfer.tokenizer import load_tokenizer

    return load_tokenizer("gpt2")


def pretrained_source() -> str:
    """The shipped small GPT-2 if present, else the hub's gpt2."""
    p = shipped_checkpoint()
    if p is not None:
        provenance.note_read(p)  # its weights are read in Rust, where Python's open does not see them
    return str(p) if p is not None else "gpt2"
