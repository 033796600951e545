"""The book published in docs/book/ matches the lectures, the code they show
and the data they read; and the record that says so can fail."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minitransfer.apps import provenance
from minitransfer.apps.book import lecture_paths

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "docs" / "book"


def published_inputs(path: Path) -> dict:
    page = BOOK / f"{path.stem}.html"
    assert page.exists(), f"docs/book has no page for {path.name}: rebuild with `minitransfer lectures --out docs/book`"
    inputs = provenance.read_embedded(page.read_text())
    assert inputs is not None, f"{page.relative_to(REPO)} records no inputs: rebuild it"
    return inputs


@pytest.mark.parametrize("path", lecture_paths(), ids=lambda p: p.stem[:2])
def test_the_published_page_is_not_stale(path):
    inputs = published_inputs(path)
    stale = provenance.stale_inputs(inputs)
    assert not stale, (
        f"docs/book/{path.stem}.html is stale: {'; '.join(stale)}. Rebuild it with "
        f"`minitransfer lectures --out docs/book --only {path.stem[:2]}`"
    )
    assert inputs["fast"] is False, f"docs/book/{path.stem}.html was built in fast mode; publish the full build"


@pytest.mark.parametrize("path", lecture_paths(), ids=lambda p: p.stem[:2])
def test_a_published_page_runs_no_script(path):
    # the book opens offline and runs nothing: the one <script> a page holds is its inputs record (JSON, never run)
    page = (BOOK / f"{path.stem}.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", page, flags=re.I)
    assert scripts == ['<script type="application/json" id="minitransfer-inputs">'], (
        f"docs/book/{path.stem}.html holds {scripts}: rebuild it with "
        f"`minitransfer lectures --out docs/book --only {path.stem[:2]}`"
    )


def test_the_published_book_is_within_its_size_budget():
    # every page embeds its figures; the style sheet is shared (book.css); notebooks carry no outputs
    files = [f for f in BOOK.rglob("*") if f.is_file() and "_work" not in f.parts]
    size = sum(f.stat().st_size for f in files)
    assert size < 6_000_000, f"docs/book holds {size:,} bytes in {len(files)} files; the budget is 6 MB"


def test_a_page_records_what_it_showed_and_read():
    # lecture 04 prints the training loop and reads the shipped checkpoint
    inputs = published_inputs(next(p for p in lecture_paths() if p.stem.startswith("04")))
    assert "lectures/04_pretraining_is_the_expensive_part.py" in inputs["lecture"]
    assert "minitransfer.loop:train_loop" in inputs["shown"]
    assert any(f.startswith("checkpoints/minigpt2-imdb/") for f in inputs["files"]), sorted(inputs["files"])


def test_the_staleness_check_sees_every_kind_of_change(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    lecture = tmp_path / "lectures" / "01_x.py"
    data = tmp_path / "docs" / "compare" / "results.csv"
    for f, text in ((lecture, "print(1)\n"), (data, "mode,acc\nfull,0.5\n")):
        f.parent.mkdir(parents=True)
        f.write_text(text)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv(provenance.RECORD_ENV, str(record))
    provenance.note_shown(provenance.page_inputs)  # a function whose source exists
    provenance.note_read(data.parent)  # a folder: each file in it
    provenance.note_read(tmp_path / ".venv" / "lib.py")  # not an input: never recorded
    inputs = provenance.page_inputs(lecture, record)
    assert set(inputs["files"]) == {"docs/compare/results.csv"}
    assert set(inputs["shown"]) == {"minitransfer.apps.provenance:page_inputs"}

    page = provenance.embed("<html><body><p>a page</p></body></html>", inputs)
    assert provenance.read_embedded(page) == inputs
    assert provenance.stale_inputs(inputs) == []

    data.write_text("mode,acc\nfull,0.6\n")
    lecture.write_text("print(2)\n")
    inputs["shown"]["minitransfer.apps.provenance:gone_function"] = "0" * 64
    assert provenance.stale_inputs(inputs) == [
        "lectures/01_x.py changed",
        "docs/compare/results.csv changed",
        "minitransfer.apps.provenance:gone_function (shown) no longer exists",
    ]
    inputs["shown"]["minitransfer.apps.provenance:page_inputs"] = "0" * 64
    assert "minitransfer.apps.provenance:page_inputs (shown) changed" in provenance.stale_inputs(inputs)
    data.unlink()
    assert "docs/compare/results.csv is gone" in provenance.stale_inputs(inputs)


def test_a_lecture_process_records_the_repository_files_it_opens(tmp_path):
    import subprocess
    import sys

    record = tmp_path / "record.jsonl"
    code = (
        "from minitransfer.apps import provenance\n"
        "provenance.start_recording()\n"
        "open('README.md').read()\n"  # read: an input
        "open('pyproject.toml', 'rb').read()\n"
        f"open({str(tmp_path / 'out.txt')!r}, 'w').write('x')\n"  # outside the repository: not an input
        "import minitransfer.model\n"  # code is not data
    )
    env = {**__import__("os").environ, provenance.RECORD_ENV: str(record)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    files = {value for kind, value in map(json.loads, record.read_text().splitlines()) if kind == "file"}
    assert files == {"README.md", "pyproject.toml"}


def test_a_lecture_as_a_notebook_for_colab(tmp_path):
    import nbformat

    from minitransfer.apps.colab import write_colab_notebook

    lecture = tmp_path / "01_tiny.py"
    lecture.write_text("# %% [markdown]\n# # Lecture 1: tiny\n\n# %%\nprint('hello')\n")
    path = write_colab_notebook(lecture, tmp_path / "book")
    assert path == tmp_path / "book" / "notebooks" / "01_tiny.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert [c.cell_type for c in nb.cells] == ["code", "markdown", "code"]
    assert "pip" in nb.cells[0].source and nb.cells[2].source == "print('hello')"
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    exec(nb.cells[0].source, {})  # where minitransfer is installed, the setup cell does nothing
