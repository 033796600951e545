"""Helpers for the lectures in ``lectures/``: show the package's real source
(never a pasted copy that could drift), and pick fast settings in CI."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from minitransfer.assets import REPO, shipped_checkpoint

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


def show(obj, start: str | None = None, stop: str | None = None) -> None:
    """Print the source of a function/class from the package, with its file.

    ``start``/``stop``: print only from the first line containing ``start`` up
    to (not including) the first later line containing ``stop``.
    """
    lines, first = inspect.getsourcelines(obj)
    path = Path(inspect.getsourcefile(obj)).resolve()
    try:
        path = path.relative_to(REPO)
    except ValueError:
        pass
    lo, hi = 0, len(lines)
    if start is not None:
        lo = next(i for i, line in enumerate(lines) if start in line)
    if stop is not None:
        hi = next(i for i, line in enumerate(lines) if i > lo and stop in line)
    print(f"── {path}, line {first + lo} ──")
    print("".join(lines[lo:hi]).rstrip())


def gpt2_tokenizer():
    """The real GPT-2 BPE, from the copy that ships inside the package (offline)."""
    from minitransfer.tokenizer import load_tokenizer

    return load_tokenizer("gpt2")


def pretrained_source() -> str:
    """The shipped small GPT-2 if present, else the hub's gpt2."""
    p = shipped_checkpoint()
    return str(p) if p is not None else "gpt2"
