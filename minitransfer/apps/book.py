"""The lectures as a book: execute every lecture and write a static HTML site.

Each ``lectures/NN_*.py`` is a jupytext "percent" script. Building the book
reads it as a notebook (jupytext), runs it top to bottom in a fresh Python
kernel (nbclient), and renders the executed notebook to one HTML page
(nbconvert: highlighted source, printed output, figures embedded as images,
so the site opens offline). A code cell tagged ``answer`` (``# %% tags=["answer"]``:
an exercise's answer as code) runs with the rest but is shown folded, its
source and output inside a ``<details>`` element. ``index.html`` lists the lectures in reading
order with each one's first paragraph and build time.

``MINITRANSFER_FAST=1`` (``--fast``) runs every lecture on tiny settings, as
the tests do; without it the lectures use sizes worth reading.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from pathlib import Path

from minitransfer.apps import provenance
from minitransfer.apps.colab import write_colab_notebook
from minitransfer.assets import REPO
from minitransfer.errors import BookError

LECTURES = REPO / "lectures"


# The book's page template: nbconvert's "lab" page, with a code cell tagged
# ``answer`` folded away, as the lectures' written answers are.
# The lab template's head loads require.js, MathJax and mermaid from CDNs. No
# lecture uses them (no math, no mermaid diagrams), and the book must open
# offline: the three blocks are emptied, which also keeps ~450 lines of
# script out of every page.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{% block html_head_js %}{% endblock html_head_js %}
{% block html_head_js_mathjax %}{% endblock html_head_js_mathjax %}
{% block html_head_js_mermaidjs %}{% endblock html_head_js_mermaidjs %}
{% block codecell %}
{%- if 'answer' in cell.metadata.get('tags', []) -%}
<details class="minitransfer-answer"><summary>Answer</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock codecell %}
"""


def page_exporter():
    """nbconvert's HTML exporter with the book's page template."""
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"minitransfer_page.html.j2": PAGE_TEMPLATE})],
        template_file="minitransfer_page.html.j2",
    )


def lecture_paths(directory: Path = LECTURES) -> list[Path]:
    paths = sorted(directory.glob("[0-9][0-9]_*.py"))
    if not paths:
        raise BookError(f"{directory}: no lectures (NN_name.py) found")
    return paths


def _title_and_intro(nb) -> tuple[str, str]:
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    text = first.source if first else ""
    title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), "Lecture")
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip() and not p.strip().startswith("#")]
    intro = paras[0] if paras else ""
    if intro.endswith(":") and ". " in intro:  # it leads into a list the index does not show: its sentences before
        intro = intro[: intro.rindex(". ") + 1]
    return title, intro


def _kernel_died(path: Path, nb, running: int | None, fast: bool) -> str:
    """What to say when the lecture's Python process ended under it: which
    cell was running (``running``, its index among all cells), and how to see
    why (the notebook client only learns that the process is gone)."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    where = ""
    if running in code:
        first = next((ln for ln in nb.cells[running].source.splitlines() if ln.strip()), "")
        where = f" while code cell {code.index(running) + 1} of {len(code)} was running ({first.strip()[:80]!r})"
    return (
        f"{path.name}: the lecture's Python process died{where}: a crash in native code (JAX, a "
        f"GPU library; JAX runs work asynchronously, so possibly an earlier cell's) or the machine "
        f"running out of memory. The notebook cannot say which; run the lecture as a script to see "
        f"it: MINITRANSFER_FAST={int(fast)} python -X faulthandler {path}"
    )


def _kernel_config(sockets: str | None):
    """nbclient's configuration: where the OS has Unix sockets, the kernel
    talks to us over them, in the private folder ``sockets``. Over TCP (the
    default) every kernel prints a warning that its loopback traffic is
    unencrypted. (Configured, not a kernel manager of our own: nbclient
    notices a dead kernel only in the manager it makes itself.)"""
    from traitlets.config import Config

    if sockets is None:
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}})


def _execute_interruptibly(client) -> None:
    """``client.execute()`` in a worker thread, so that Ctrl-C and SIGTERM
    keep their usual meaning for this process.

    In the main thread nbclient replaces both signals' handlers with its own,
    which only shuts the kernel down: the build then failed with a page of
    ZMQ, dead-kernel and assertion tracebacks (Ctrl-C), or went on to the next
    lecture (SIGTERM). Outside the main thread it installs none. On Ctrl-C the
    kernel is killed, the worker ends with it, and the KeyboardInterrupt goes
    on to the command's one "interrupted" line. SIGTERM, whose default ends
    the process at once (leaving the kernel's socket folder behind), kills the
    kernel the same way and exits with status 143 after the clean-up."""
    import signal
    import threading

    failed: list[BaseException] = []
    # (an Event, not the thread's is_alive(): a join() cut short by Ctrl-C leaves Python 3.11's Thread
    # marked as stopped while it still runs)
    done = threading.Event()

    def work():
        try:
            client.execute()
        except BaseException as e:  # handed to the main thread, which raises it there
            failed.append(e)
        finally:
            done.set()

    def on_sigterm(signum, frame):
        raise SystemExit(128 + signum)  # as a shell reports it; unlike the default, the finally blocks run

    worker = threading.Thread(target=work, name="lecture-kernel", daemon=True)
    previous = None  # (only where signals arrive, and not over a handler someone else installed)
    try:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            previous = signal.signal(signal.SIGTERM, on_sigterm)
        worker.start()
        while not done.wait(0.2):
            pass
    except (KeyboardInterrupt, SystemExit):
        if worker.ident is None:  # interrupted before the worker ran: there is no kernel to stop
            raise
        # a kernel still starting is waited for (up to 10 s), so that it is killed as soon as it is
        # there rather than left to run the lecture's cells until the worker gives up
        deadline = time.monotonic() + 10
        while True:
            process = getattr(getattr(client.km, "provisioner", None), "process", None)
            if process is not None or done.is_set() or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if process is not None:  # the kernel runs in a session of its own: its whole group goes
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (OSError, AttributeError):  # (no process groups on Windows)
                process.kill()
        done.wait(10)
        raise
    finally:  # nbclient's clean-up at exit, for a kernel that is gone by then (it printed a traceback)
        import atexit

        atexit.unregister(client._cleanup_kernel)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if failed:
        raise failed[0]


def build_lecture(path: Path, out: Path, *, fast: bool, timeout: int = 900) -> dict:
    """Execute one lecture and write ``out/<name>.html`` (recording the inputs
    it was built from: provenance.py) and ``out/notebooks/<name>.ipynb`` (to
    open in Colab); return what the index needs."""
    import jupytext
    import nbformat

    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    title, intro = _title_and_intro(nb)
    record = out / "_work" / f"{path.stem}.inputs.jsonl"  # what the lecture shows and reads, as it runs
    (out / "_work" / path.stem).mkdir(parents=True, exist_ok=True)
    record.unlink(missing_ok=True)
    seconds = _execute(path, nb, out / "_work" / path.stem, record, fast=fast, timeout=timeout)
    for c in nb.cells:  # tqdm's "IProgress not found" notice is about notebook widgets, not the lecture
        if c.cell_type == "code":
            c.outputs = [o for o in c.get("outputs", []) if "TqdmWarning" not in o.get("text", "")]
    figures = sum(
        1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    )
    body, _ = page_exporter().from_notebook_node(nb)
    if re.search(r'<script[^>]*src="https?://', body):
        raise BookError(f"{path.name}: its page loads a script from the network; the book must open offline")
    notebook = write_colab_notebook(path, out).relative_to(out).as_posix()
    nav = (
        f'<nav style="font:14px system-ui;padding:10px 20px;border-bottom:1px solid #ddd">'
        f'<a href="index.html">minitransfer lectures</a> · {html.escape(title)} · '
        f'<a href="{notebook}" download>this lecture as a notebook</a> (Colab: File &gt; Upload notebook)</nav>'
    )
    body = re.sub(r"(<body[^>]*>)", r"\1" + nav, body, count=1)
    body = re.sub(r"<title>.*?</title>", lambda m: f"<title>{html.escape(title)}</title>", body, count=1)
    body = _shared_css(body, out)
    inputs = {"fast": fast, **provenance.page_inputs(path, record)}
    (out / f"{path.stem}.html").write_text(provenance.embed(body, inputs))
    nbformat.write(nb, out / "_work" / f"{path.stem}.ipynb")
    page = {"name": path.stem, "title": title, "intro": intro, "seconds": seconds, "figures": figures, "fast": fast}
    (out / "_work" / f"{path.stem}.json").write_text(json.dumps(page))  # for an index that a later --only rebuilds
    return page


def _shared_css(body: str, out: Path) -> str:
    """``body`` with its style sheets (about 260 KB, the same on every page)
    moved into one ``out/book.css`` that every page links."""
    styles = re.findall(r"<style[^>]*>(.*?)</style>", body, flags=re.S)
    if not styles:
        return body
    (out / "book.css").write_text("\n".join(styles))
    body = re.sub(r"<style[^>]*>.*?</style>", "", body, flags=re.S)
    return body.replace("</head>", '<link rel="stylesheet" href="book.css">\n</head>', 1)


def _execute(path: Path, nb, work: Path, record: Path, *, fast: bool, timeout: int) -> float:
    """Run ``nb`` (lecture ``path``) in a fresh kernel, in ``work``; return its seconds."""
    import tempfile

    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    names = ("MINITRANSFER_FAST", "MINITRANSFER_LECTURE_OUT", "MPLBACKEND", "PYTHONPATH", provenance.RECORD_ENV)
    env_before = {k: os.environ.get(k) for k in names}
    os.environ.update(
        {
            "MINITRANSFER_FAST": "1" if fast else "0",
            "MINITRANSFER_LECTURE_OUT": str(work),
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            # the kernel imports the same minitransfer as this process, installed or not
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            provenance.RECORD_ENV: str(record.resolve()),
        }
    )
    started = []  # nbclient's on_cell_start calls: which cell is running if the kernel dies
    sockets = tempfile.TemporaryDirectory(prefix="minitransfer-kernel-") if os.name == "posix" else None
    t0 = time.perf_counter()
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            config=_kernel_config(sockets and sockets.name),
            on_cell_start=lambda cell, cell_index: started.append(cell_index),
            resources={"metadata": {"path": str(work)}},
        )
        _execute_interruptibly(client)
    except CellExecutionError as e:
        raise BookError(f"{path.name} failed while building the book:\n{str(e)[-3000:]}") from None
    except DeadKernelError:
        raise BookError(_kernel_died(path, nb, started[-1] if started else None, fast)) from None
    finally:
        if sockets is not None:
            sockets.cleanup()
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    if errors:
        raise BookError(f"{path.name}: a cell raised {errors[0].get('ename')}: {errors[0].get('evalue')}")
    return time.perf_counter() - t0


def build_site(out: str | Path, *, fast: bool = False, only: list[str] | None = None, log=print) -> list[dict]:
    """Build every lecture (or those whose name starts with one of ``only``) and the index."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    t0 = time.perf_counter()
    built = 0
    for path in lecture_paths():
        if only and not any(path.stem.startswith(o) for o in only):
            page = earlier_page(out, path)  # built by an earlier call: still in the index
            if page is not None:
                pages.append(page)
            continue
        log(f"building {path.name} ({'fast' if fast else 'full'} mode) ...")
        page = build_lecture(path, out, fast=fast)
        log(f"  {page['figures']} figure(s), {page['seconds']:.0f} s -> {out / (path.stem + '.html')}")
        pages.append(page)
        built += 1
    write_index(out, pages, seconds=time.perf_counter() - t0)
    kept = len(pages) - built
    log(
        f"wrote {out / 'index.html'} ({built} lecture(s) built in {time.perf_counter() - t0:.0f} s"
        + (f"; {kept} built earlier, still listed" if kept else "")
        + ")"
    )
    return pages


def earlier_page(out: Path, path: Path) -> dict | None:
    """What an earlier build of lecture ``path`` into ``out`` recorded, if its
    page is still there."""
    record, html_page = out / "_work" / f"{path.stem}.json", out / f"{path.stem}.html"
    if not html_page.exists():
        return None
    try:
        page = json.loads(record.read_text())
        if isinstance(page, dict) and {"name", "title", "intro", "seconds", "fast"} <= set(page):
            return page
    except (OSError, ValueError):
        pass
    # a page built before builds kept a record: its title from the page itself, its mode unknown
    title = re.search(r"<title>(.*?)</title>", html_page.read_text(errors="replace"), re.S)
    return {
        "name": path.stem,
        "title": html.unescape(title[1]) if title else path.stem,
        "intro": "",
        "seconds": 0.0,
        "figures": None,
        "fast": None,
    }


def write_index(out: Path, pages: list[dict], *, seconds: float) -> None:
    import mistune  # nbconvert's own markdown renderer

    n_fast = sum(1 for p in pages if p.get("fast"))
    unknown = [p["name"][:2] for p in pages if p.get("fast") is None]  # built before builds recorded their mode
    pages_known = [p for p in pages if p.get("fast") is not None]
    if unknown and not pages_known:
        mode = "settings not recorded"
    elif n_fast == len(pages_known):
        mode = "fast mode: tiny settings, the numbers mean little"
    elif n_fast == 0:
        mode = "full settings"
    else:
        mode = (
            f"mixed: {', '.join(p['name'][:2] for p in pages if p.get('fast'))} in fast mode (tiny settings, "
            f"the numbers mean little), the others with full settings"
        )
    if unknown and pages_known:
        mode += f"; {', '.join(unknown)} from an earlier build, settings not recorded"

    items = "\n".join(
        f'<li><a href="{p["name"]}.html">{html.escape(p["title"])}</a>{mistune.html(p["intro"])}</li>' for p in pages
    )
    (out / "index.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>minitransfer: the lectures</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 820px; margin: 32px auto; padding: 0 20px; color: #1d1d1f; }}
li {{ margin: 14px 0; }} li p {{ margin: 2px 0; color: #555; font-size: 14px; }}
a {{ font-weight: 600; }} .meta {{ color: #777; font-size: 13px; }}
</style></head><body>
<h1>minitransfer: transfer learning on a GPT-2 you can read</h1>
<p>Annotated source that runs: each lecture shows the package's own code and ends with something to
look at and things to try. Read them in order.</p>
<ol>
{items}
</ol>
<p class="meta">Built by <code>minitransfer lectures</code> ({mode}); the last build took {seconds:.0f} s.</p>
</body></html>
""")
