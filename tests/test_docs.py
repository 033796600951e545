"""README and docs/ hold themselves to the code: links resolve, commands parse,
README stays short and dated facts stay out of it, and the diagrams read their
labels off the live model."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from minitransfer.apps.diagrams import backbone_rows, draw_head_swap, head_label
from minitransfer.classify import ClassificationHead
from minitransfer.cli import build_parser
from minitransfer.model import GPT2, GPT2Config

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {github_slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(page):
    links = relative_links(page)
    broken = []
    for target in links:
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            broken.append(f"{target}: no such file {where}")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: {where.name} has no heading with anchor #{anchor}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_finds_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title), [gone](missing.md), ![img](nope.png), [web](https://example.com)\n")
    assert relative_links(page) == ["#title", "missing.md", "nope.png"]
    with pytest.raises(AssertionError, match="missing.md.*nope.png"):
        test_every_relative_link_and_image_resolves(page)


def shown_commands(page: Path) -> list[str]:
    """Every `minitransfer ...` line in the page's shell code blocks (```bash: continuation lines joined;
    a block without a language is output)."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().lstrip("!").strip()
            if line.startswith("cd ") and "&& minitransfer" in line:  # Colab's "!cd DIR && minitransfer ..."
                line = line.split("&&", 1)[1].strip()
            if line.startswith("minitransfer "):
                commands.append(line)
    return commands


def test_readme_shows_commands_and_they_all_parse():
    parser = build_parser()
    commands = [c for page in PAGES for c in shown_commands(page)]
    assert len(shown_commands(REPO / "README.md")) >= 5
    refused = []
    for command in commands:
        argv = shlex.split(command, comments=True)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit:
            refused.append(command)
    assert not refused, f"commands shown in README/docs that minitransfer does not accept: {refused}"


def test_the_command_check_refuses_an_unknown_option():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--no-such-option"])


def test_readme_command_table_names_real_commands():
    table = re.search(r"## Commands\n(.*?)\n## ", (REPO / "README.md").read_text(), flags=re.S).group(1)
    named = re.findall(r"^\| `([a-z-]+)`", table, flags=re.M)
    assert named and set(named) <= set(build_parser().commands), named


def test_readme_is_short_and_states_the_present():
    readme = (REPO / "README.md").read_bytes()
    assert len(readme) <= 12 * 1024, f"README.md is {len(readme)} bytes; details belong in docs/"
    text = readme.decode()
    assert not re.findall(r"\b20\d\d-\d\d-\d\d\b", text), "dates belong in docs/benchmarks.md or CHANGELOG.md"
    lines = text.splitlines()
    first_100 = "\n".join(lines[:100])
    assert "pip install" in first_100 and "## Quick start" in first_100 and "## The lectures" in first_100


def test_help_texts_hold_no_measured_minutes_or_dates():
    parser = build_parser()
    texts = [parser.format_help()] + [p.format_help() for p in parser.commands.values()]
    diary = re.compile(r"\b20\d\d-\d\d-\d\d\b|\d+(\.\d+)? ?min\b|\b\d+(\.\d+)? ?(MB|GB)\b")
    found = [m.group(0) for t in texts for m in diary.finditer(t)]
    assert not found, found


def test_head_swap_diagram_reads_its_labels_from_the_model(tmp_path):
    config = GPT2Config(vocab_size=97, n_positions=24, n_embd=16, n_layer=3, n_head=2)
    lm = GPT2.language_model(config)
    clf = GPT2(lm.backbone, ClassificationHead(16, ["spam", "ham", "eggs"], pooling="mean"))
    assert backbone_rows(lm) == [
        "wte: Embed(97, 16)  +  wpe: Embed(24, 16)",
        "h[0..2]: 3 x Block (attention + MLP)",
        "ln_f: LayerNorm(16)",
    ]
    assert "(B, T, 16) -> (B, T, 97)" in head_label(lm)
    assert "Linear(16, 3)" in head_label(clf) and "spam / ham / eggs" in head_label(clf)
    draw_head_swap(lm, clf, tmp_path / "swap.png")
    assert (tmp_path / "swap.png").stat().st_size > 10_000
    other = GPT2.language_model(GPT2Config(vocab_size=97, n_positions=24, n_embd=16, n_layer=2, n_head=2))
    with pytest.raises(ValueError, match="share a backbone shape"):
        draw_head_swap(lm, other)
