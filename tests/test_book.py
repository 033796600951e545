"""The lectures as a book: `minitransfer lectures --fast` builds every page,
no cell errors, every page embeds a figure; in headless Chromium (where
installed) the index and one lecture render, and screenshots are saved."""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from minitransfer.apps import provenance
from minitransfer.apps.book import lecture_paths

pytest.importorskip("nbclient", reason="the book needs the lectures extra (nbconvert, nbclient, ipykernel)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from minitransfer.cli import main

    out = tmp_path_factory.mktemp("site")
    assert main(["lectures", "--fast", "--out", str(out)]) == 0
    return out


def test_every_lecture_has_a_page_with_a_figure_and_no_errors(site):
    index = (site / "index.html").read_text()
    for path in lecture_paths():
        page = site / f"{path.stem}.html"
        assert page.exists(), page
        assert f'href="{path.stem}.html"' in index
        html = page.read_text()
        assert "data:image/png;base64" in html, f"{path.stem}: no embedded figure"
        assert "Traceback (most recent call last)" not in html and 'class="ansi-red-fg"' not in html
        assert not re.search(r'<script[^>]*src="https?://', html), f"{path.stem}: loads a script from the network"
        assert "Try it" in html or "Exercises" in html, f"{path.stem}: no exercises"
        title = re.search(r"<title>(.*?)</title>", html)[1]
        assert title.startswith("Lecture "), f"{path.stem}: page title {title!r}"  # its own, not "Notebook"
        # the page records what it was built from (test_published_book.py reads it), and links its notebook
        inputs = provenance.read_embedded(html)
        assert inputs["fast"] is True and provenance.stale_inputs(inputs) == [], path.stem
        assert f'href="notebooks/{path.stem}.ipynb"' in html and (site / "notebooks" / f"{path.stem}.ipynb").exists()


def test_rebuilding_one_lecture_keeps_the_others_in_the_index(site, tmp_path, capsys):
    """`--only 01` into a built site listed lecture 01 alone: the other pages
    were still there, but no longer linked."""
    import json

    from minitransfer.cli import main

    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    first = lecture_paths()[0].stem
    record = copy / "_work" / f"{lecture_paths()[-1].stem}.json"  # as if the last lecture had been built in full
    record.write_text(json.dumps({**json.loads(record.read_text()), "fast": False}))
    older = lecture_paths()[1].stem  # as if built before builds kept a record: listed all the same
    (copy / "_work" / f"{older}.json").unlink()
    assert main(["lectures", "--fast", "--only", first[:2], "--out", str(copy)]) == 0
    n = len(lecture_paths())
    printed = capsys.readouterr().out
    assert "(1 lecture(s) built in" in printed and f"; {n - 1} built earlier, still listed)" in printed
    index = (copy / "index.html").read_text()
    assert all(f'href="{p.stem}.html"' in index for p in lecture_paths())
    fast = [p.stem[:2] for p in lecture_paths()[:-1] if p.stem != older]
    assert f"mixed: {', '.join(fast)} in fast mode" in index
    assert f"; {older[:2]} from an earlier build, settings not recorded" in index


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs headless Chromium: apt-get install chromium chromium-driver (.ci/run does)",
)
def test_book_renders_in_headless_chromium(site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1100,1300",
    ):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get((site / "index.html").as_uri())
        links = driver.find_elements(By.CSS_SELECTOR, "ol li a")
        assert len(links) == len(lecture_paths())
        driver.save_screenshot(str(tmp_path / "book_index.png"))
        links[1].click()  # lecture 2: the attention maps
        imgs = driver.find_elements(By.CSS_SELECTOR, "img")
        assert any(driver.execute_script("return arguments[0].naturalWidth", i) > 100 for i in imgs)
        driver.execute_script("window.scrollTo(0, document.body.scrollHeight * 0.62)")
        driver.save_screenshot(str(tmp_path / "book_lecture2.png"))
    finally:
        driver.quit()


def test_a_lecture_whose_process_dies_names_the_cell_and_how_to_see_why(tmp_path):
    """A crash in native code (seen on a GPU) ends the kernel's process: the
    notebook client only says "Kernel died". The book's error must name the
    lecture, the cell that was running and the command that shows the crash."""
    from minitransfer.apps.book import BookError, build_lecture

    lecture = tmp_path / "09_dies.py"
    lecture.write_text(
        "# %% [markdown]\n# # Lecture 9: dies\n\n# %%\nx = 1\n\n# %%\nimport os\nos._exit(1)\n\n# %%\nprint('never')\n"
    )
    with pytest.raises(BookError) as e:
        build_lecture(lecture, tmp_path / "site", fast=True, timeout=120)
    message = str(e.value)
    assert "09_dies.py: the lecture's Python process died while code cell 2 of 3 was running ('import os')" in message
    assert f"MINITRANSFER_FAST=1 python -X faulthandler {lecture}" in message


def test_an_answer_cell_is_folded_with_its_output(tmp_path):
    """A code cell tagged "answer" (an exercise's answer as code) runs with the
    lecture, and its page shows it folded: source and output inside a
    <details> element; the cells around it stay open."""
    from minitransfer.apps.book import build_lecture

    lecture = tmp_path / "09_answers.py"
    lecture.write_text(
        "# %% [markdown]\n# # Lecture 9: answers\n\n# %%\nprint('open ' + 'cell')\n\n"
        "# %% [markdown]\n# **Exercise 1.** What is 6 * 7?\n\n"
        "# %% tags=[\"answer\"]\nprint('answer is', 6 * 7)\n"
    )
    build_lecture(lecture, tmp_path / "site", fast=True, timeout=120)
    page = (tmp_path / "site" / "09_answers.html").read_text()
    folded = re.findall(r'<details class="minitransfer-answer"><summary>Answer</summary>(.*?)</details>', page, re.S)
    assert len(folded) == 1, page[-3000:]
    assert "answer is 42" in folded[0] and "6</span>" in folded[0]  # its output and its (highlighted) source
    assert "open cell" in page and "open cell" not in folded[0]


@pytest.fixture
def private_tmp():
    """A temporary folder of a test's own, with a short path (a Unix socket's path holds at most 107
    bytes): kernel socket folders made there are this test's, not those of a lecture built beside it."""
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="mtk-"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_lecture_builds_without_the_kernels_transport_warning(tmp_path, capfd, monkeypatch, private_tmp):
    """Over TCP every kernel warned that its traffic is unencrypted, once per
    lecture; the book talks to its kernels over Unix sockets where there are
    such, in a private folder that goes with the kernel."""
    import tempfile

    from minitransfer.apps.book import build_lecture

    lecture = tmp_path / "09_tiny.py"
    lecture.write_text("# %% [markdown]\n# # Lecture 9: tiny\n\n# %%\nprint('hello from the kernel')\n")
    tmp = private_tmp
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    build_lecture(lecture, tmp_path / "site", fast=True, timeout=120)
    assert "hello from the kernel" in (tmp_path / "site" / "09_tiny.html").read_text()
    err = capfd.readouterr().err
    assert "without encryption" not in err and "WARNING" not in err, err
    assert not list(tmp.glob("minitransfer-kernel-*"))


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_stops_a_lecture_build_and_its_kernel(tmp_path, signame, private_tmp):
    """nbclient, run in the main thread, took Ctrl-C and SIGTERM for its own:
    the build printed ZMQ, dead-kernel and assertion tracebacks (Ctrl-C) or
    went on to the next lecture (SIGTERM). Then SIGTERM ended the build at
    once, leaving the kernel's socket folder behind."""
    import signal
    import subprocess
    import sys

    marker = tmp_path / "cell-started"
    lecture = tmp_path / "09_slow.py"
    lecture.write_text(
        "# %% [markdown]\n# # Lecture 9: slow\n\n# %%\nimport os, pathlib, time\n"
        f"pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\ntime.sleep(120)\n"
    )
    script = (
        "import sys\nfrom pathlib import Path\nfrom minitransfer.apps.book import build_lecture\n"
        f"try:\n    build_lecture(Path({str(lecture)!r}), Path({str(tmp_path / 'site')!r}), fast=True)\n"
        "except KeyboardInterrupt:\n    print('interrupted', file=sys.stderr)\n    sys.exit(130)\n"
    )
    tmp = private_tmp
    # (SIGINT's default action in the child even where this run was started with SIGINT ignored, as a shell
    # without job control starts a background job: Python then leaves it ignored and no KeyboardInterrupt comes)
    p = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(tmp)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), p.communicate()
    kernel = int(marker.read_text())
    # the build's process group, as a terminal's Ctrl-C or a `kill` of the job (the kernel has its own)
    os.killpg(p.pid, getattr(signal, signame))
    out, err = p.communicate(timeout=60)
    if signame == "SIGINT":
        assert p.returncode == 130 and err.strip() == "interrupted", err
    else:
        assert p.returncode == 143 and err.strip() == "", err
    assert not list(tmp.glob("minitransfer-kernel-*"))  # the socket folder went with the kernel
    for _ in range(50):  # the kernel is gone too (killed, not left to notice its parent's exit)
        try:
            os.kill(kernel, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the lecture's kernel (pid {kernel}) outlived the build")


def test_ctrl_c_while_the_kernel_starts_kills_it_once_it_is_there():
    """A Ctrl-C before the kernel's process existed killed nothing, and the
    kernel, once up, ran the lecture's cells; Python 3.11 also took the worker
    for finished once a join() had been cut short, so nothing waited for it."""
    import _thread
    import signal
    import subprocess
    import types

    from minitransfer.apps.book import _execute_interruptibly

    kernel = subprocess.Popen(["sleep", "60"], start_new_session=True)
    km = types.SimpleNamespace(provisioner=types.SimpleNamespace(process=None))

    def execute():  # Ctrl-C; the kernel "starts" 0.5 s later and runs until it is killed
        _thread.interrupt_main()
        time.sleep(0.5)
        km.provisioner.process = kernel
        while kernel.poll() is None:
            time.sleep(0.05)
        raise RuntimeError("kernel died")

    client = types.SimpleNamespace(km=km, execute=execute, _cleanup_kernel=lambda: None)
    t0 = time.monotonic()
    # interrupt_main() raises KeyboardInterrupt only through Python's own SIGINT handler, which a run started
    # with SIGINT ignored (a background job of a shell without job control) does not have
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _execute_interruptibly(client)
        while kernel.returncode is None and time.monotonic() - t0 < 5:  # (set by execute's poll: one waiter)
            time.sleep(0.05)
        assert kernel.returncode is not None and time.monotonic() - t0 < 5
    finally:
        signal.signal(signal.SIGINT, previous)
        kernel.kill()
