"""Schematic pictures of the ideas, drawn from a live model.

Every label in a diagram is read off the module tree it is given (layer
names, weight shapes, the head's class and its labels), so a picture cannot
drift from the code: change the model and the picture changes with it.

    python -m minitransfer.apps.diagrams docs/head_swap.png   # README's picture, from the shipped stand-in
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no window, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from minitransfer.classify import ClassificationHead  # noqa: E402
from minitransfer.model import GPT2, NextWordHead  # noqa: E402

BACKBONE_COLOUR = "#cfe2f3"  # the weights that transfer
NEXT_WORD_COLOUR = "#fde9c9"
NEW_HEAD_COLOUR = "#d9ead3"


def backbone_rows(model: GPT2) -> list[str]:
    """The backbone's layers bottom to top, each as 'name: Class(shape)' from the live weights."""
    b = model.backbone
    vocab, width = b.wte.embedding[...].shape  # (V, C)
    positions = b.wpe.embedding[...].shape[0]  # (P, C) -> P
    return [
        f"wte: Embed({vocab}, {width})  +  wpe: Embed({positions}, {width})",
        f"h[0..{len(b.h) - 1}]: {len(b.h)} x Block (attention + MLP)",
        f"ln_f: LayerNorm({b.ln_f.scale[...].shape[0]})",
    ]


def head_label(model: GPT2) -> str:
    """What the head is and what it outputs, from the head itself."""
    head = model.head
    vocab, width = model.backbone.wte.embedding[...].shape
    if isinstance(head, NextWordHead):
        return (
            f"{type(head).__name__}:\nhidden @ wte.T (tied to the embedding)\n"
            f"(B, T, {width}) -> (B, T, {vocab}): the next word"
        )
    if isinstance(head, ClassificationHead):
        c_in, k = head.score.kernel[...].shape  # (C, K)
        return (
            f"{type(head).__name__}:\n{head.pooling} pool -> dropout -> Linear({c_in}, {k})\n"
            f"(B, T, {width}) -> (B, {k}): {' / '.join(head.labels)}"
        )
    return f"{type(head).__name__}"


def _box(ax, x, y, w, h, text, colour, *, dashed=False, fontsize=8):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02",
            facecolor=colour,
            edgecolor="#555555",
            linestyle="--" if dashed else "-",
            linewidth=1.0,
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _column(ax, x, title, rows, head_text, head_colour, *, chopped=False):
    w, h, gap = 3.3, 0.5, 0.16
    ax.text(x + w / 2, 4.45, title, ha="center", va="center", fontsize=10, weight="bold")
    _box(ax, x, 0.0, w, h * 0.8, "token ids (B, T)", "white")
    y = 0.0 + h * 0.8 + gap
    for row in rows:
        _box(ax, x, y, w, h, row, BACKBONE_COLOUR)
        y += h + gap
    head_y = y + 0.25
    _box(ax, x, head_y, w, h * 1.5, head_text, head_colour, dashed=chopped)
    if chopped:  # a cross over the head, and the cut line below it
        ax.plot([x, x + w], [head_y, head_y + h * 1.5], color="#c00000", linewidth=1.5)
        ax.plot([x, x + w], [head_y + h * 1.5, head_y], color="#c00000", linewidth=1.5)
        ax.plot([x - 0.1, x + w + 0.1], [head_y - 0.13] * 2, color="#c00000", linestyle=":", linewidth=1.5)
    ax.annotate(
        "", xy=(x + w / 2, head_y), xytext=(x + w / 2, y - gap), arrowprops=dict(arrowstyle="->", color="#555555")
    )


def draw_head_swap(pretrained: GPT2, fine_tuned: GPT2, path: str | Path | None = None):
    """Backbone + next-word head; the head chopped off; the same backbone with a new head.

    ``pretrained`` and ``fine_tuned`` are the two live models (a language
    model and a classifier on the same backbone shape); returns the figure.
    """
    rows = backbone_rows(pretrained)
    if backbone_rows(fine_tuned) != rows:
        raise ValueError(
            "pretrained and fine_tuned must share a backbone shape: "
            f"{backbone_rows(pretrained)} vs {backbone_rows(fine_tuned)}"
        )
    fig, ax = plt.subplots(figsize=(11.5, 4.0))
    _column(ax, 0.0, "1. pretrain: next-word prediction", rows, head_label(pretrained), NEXT_WORD_COLOUR)
    _column(ax, 3.8, "2. chop off the next-word head", rows, head_label(pretrained), NEXT_WORD_COLOUR, chopped=True)
    _column(ax, 7.6, "3. put on a task head, fine-tune", rows, head_label(fine_tuned), NEW_HEAD_COLOUR)
    ax.text(
        5.45,
        -0.35,
        "blue: the backbone, whose weights carry over from step 1 to step 3 "
        "(the next-word head owns none: it reads wte)",
        ha="center",
        fontsize=8.5,
        color="#333333",
    )
    ax.set_xlim(-0.15, 11.05)
    ax.set_ylim(-0.55, 4.65)
    ax.axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def main(argv: list[str]) -> int:
    """Draw README's head-swap picture from the shipped stand-in and a tweet classifier on it."""
    from minitransfer.assets import shipped_checkpoint
    from minitransfer.convert import load_pretrained

    out = Path(argv[0]) if argv else Path("docs/head_swap.png")
    lm = load_pretrained(str(shipped_checkpoint()))
    clf = GPT2(lm.backbone, ClassificationHead(lm.config.n_embd, ["negative", "neutral", "positive"], pooling="mean"))
    draw_head_swap(lm, clf, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
