"""Each lecture as a notebook that opens in Colab (or any Jupyter).

The book writes ``notebooks/NN_*.ipynb`` beside its pages: the lecture's
cells, without outputs, after one setup cell that installs minitransfer from
a clone of this repository when the package is not importable (on Colab:
File > Upload notebook, then run all). Locally, with minitransfer installed,
the setup cell does nothing.
"""

from __future__ import annotations

from pathlib import Path

SETUP = """\
# Setup (Colab or a fresh Jupyter): install minitransfer, with the lectures' extras, from a clone of its
# repository. Set REPOSITORY to the URL you cloned it from. Where minitransfer is installed, nothing happens.
REPOSITORY = "<this repository's clone URL>"
try:
    import minitransfer  # noqa: F401
except ImportError:
    import subprocess
    import sys

    # the folder must not be named minitransfer: beside the notebook it would hide the installed package
    subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, "minitransfer-src"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "./minitransfer-src[lectures]"], check=True)
    print("installed; on Colab: Runtime > Restart session, then run all cells again")"""


def colab_notebook(lecture: Path):
    """The lecture at ``lecture`` as a notebook: a setup cell, then its cells, no outputs."""
    import jupytext  # the lectures extra
    import nbformat

    nb = jupytext.read(lecture)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def write_colab_notebook(lecture: Path, out: Path) -> Path:
    """Write ``out/notebooks/<lecture's name>.ipynb``; return its path."""
    import nbformat

    path = out / "notebooks" / f"{lecture.stem}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(colab_notebook(lecture), path)
    return path
