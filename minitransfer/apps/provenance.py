"""What a lecture's page was built from, so that a published page can tell
when it no longer matches the code and data it shows.

While the book builds a lecture, the lecture's Python process records what
it read: every object it ``show()``s (by module and name) and every file of
this repository it opened (the shipped checkpoint, ``docs/compare*``, the
tokenizer's files). The builder turns that record into a SHA-256 per input
and writes it into the page; ``stale_inputs`` recomputes each from the tree
as it is now and names every input that changed.

Only what the lecture itself reads counts: the package's other code and the
installed libraries (JAX, the tweets corpus) are not inputs of a page.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import sys
from pathlib import Path

from minitransfer.assets import REPO

RECORD_ENV = "MINITRANSFER_BOOK_RECORD"  # the builder sets it: a file the lecture's process appends to

# files that are code or build output, not data a page is built from
_NOT_INPUTS = re.compile(
    r"(^|/)(\.venv|\.git|__pycache__|lecture_out|site|_work|\.pytest_cache|[^/]*\.egg-info|build|dist)(/|$)|\.pyc?$"
)


def _append(kind: str, value: str) -> None:
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps([kind, value]) + "\n")


def _repo_file(path) -> str | None:
    """``path`` relative to the repository, if it is a data file inside it."""
    try:
        rel = Path(os.path.abspath(os.fsdecode(path))).relative_to(REPO).as_posix()
    except (TypeError, ValueError):
        return None
    return None if _NOT_INPUTS.search(rel) else rel


def note_shown(obj) -> None:
    """Record that the lecture prints ``obj``'s source."""
    _append("shown", f"{obj.__module__}:{obj.__qualname__}")


def note_read(path) -> None:
    """Record that the lecture reads ``path`` (a folder: every file in it).
    For reads Python's ``open`` does not see (safetensors reads in Rust)."""
    p = Path(path)
    for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
        rel = _repo_file(f)
        if rel is not None and f.is_file():
            _append("file", rel)


def _on_open(event: str, args) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        mode = args[1] if len(args) > 1 else None
        if isinstance(mode, str) and any(m in mode for m in "wax+"):
            return  # a file the lecture writes is output, not input
        rel = _repo_file(args[0])
        if rel is not None and os.path.isfile(args[0]):
            _append("file", rel)


def start_recording() -> None:
    """In the lecture's process: record every repository file it opens (a
    no-op unless the book builder asked for a record)."""
    if os.environ.get(RECORD_ENV) and not getattr(start_recording, "started", False):
        sys.addaudithook(_on_open)
        start_recording.started = True


# ----------------------------------------------------------------------------
# Hashes: what the builder writes into a page, what the staleness check recomputes
# ----------------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _shown_source(name: str) -> str | None:
    module, _, qualname = name.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return inspect.getsource(obj)
    except (ImportError, AttributeError, OSError, TypeError):
        return None


def page_inputs(lecture: Path, record: Path) -> dict:
    """The inputs of a page: the lecture's source, the source of every object
    it showed and every repository file it read, each with its SHA-256."""
    shown, files = set(), set()
    lines = record.read_text().splitlines() if record.exists() else []
    for kind, value in map(json.loads, lines):
        (shown if kind == "shown" else files).add(value)
    lecture = lecture.resolve()
    lecture_rel = lecture.relative_to(REPO).as_posix() if lecture.is_relative_to(REPO) else str(lecture)
    files.discard(lecture_rel)
    return {
        "lecture": {lecture_rel: _sha(lecture.read_bytes())},
        "shown": {n: _sha((_shown_source(n) or "").encode()) for n in sorted(shown)},
        "files": {f: _sha((REPO / f).read_bytes()) for f in sorted(files) if (REPO / f).is_file()},
    }


def stale_inputs(inputs: dict) -> list[str]:
    """Every input of a page whose content differs from the tree now, in words."""
    changed = []
    for rel, sha in {**inputs.get("lecture", {}), **inputs.get("files", {})}.items():
        path = REPO / rel
        if not path.is_file():
            changed.append(f"{rel} is gone")
        elif _sha(path.read_bytes()) != sha:
            changed.append(f"{rel} changed")
    for name, sha in inputs.get("shown", {}).items():
        source = _shown_source(name)
        if source is None:
            changed.append(f"{name} (shown) no longer exists")
        elif _sha(source.encode()) != sha:
            changed.append(f"{name} (shown) changed")
    return changed


PAGE_TAG = '<script type="application/json" id="minitransfer-inputs">'


def embed(body: str, inputs: dict) -> str:
    """``body`` (a page's HTML) with ``inputs`` written into it."""
    tag = PAGE_TAG + json.dumps(inputs, indent=1).replace("</", "<\\/") + "</script>\n"
    return body.replace("</body>", tag + "</body>", 1) if "</body>" in body else body + tag


def read_embedded(body: str) -> dict | None:
    """The inputs a page records, or None for a page that records none."""
    start = body.find(PAGE_TAG)
    if start < 0:
        return None
    start += len(PAGE_TAG)
    return json.loads(body[start : body.index("</script>", start)].replace("<\\/", "</"))
