"""Schematic pictures of the ideas, drawn from a live model.

Every label in a diagram is read off the module tree it is given (layer
names, weight shapes, the head's class and its labels), so a picture cannot
drift from the code: change the model and the picture changes with it.

    python -m minitransfer.apps.diagrams docs/head_swap.png   # README's picture, from the shipped stand-in
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from matplotlib.patches import FancyBboxPatch

from minitransfer.classify import ClassificationHead
from minitransfer.model import GPT2, NextWordHead

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
        label = (
            f"{type(head).__name__}:\nhidden @ wte.T (tied to the embedding)\n"
            f"(B, T, {width}) -> (B, T, {vocab}): the next word"
        )
        if getattr(head, "kind", None) == "chat":  # the same head; its task counts the replies alone
            label += ",\nits loss on the replies' tokens only"
        return label
    if hasattr(head, "qa_outputs"):  # qa.SpanHead
        c_in, k = head.qa_outputs.kernel[...].shape  # (C, 2)
        return (
            f"{type(head).__name__}:\nqa_outputs: Linear({c_in}, {k}) at every position\n"
            f"(B, T, {width}) -> (B, T, {k}): answer start / end"
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


# ----------------------------------------------------------------------------
# The helpers every picture below uses
# ----------------------------------------------------------------------------

FROZEN_COLOUR = "#e6e6e6"  # weights that do not train
TRAINED_COLOUR = "#f4cccc"  # weights that train
DATA_COLOUR = "white"


def _canvas(width: float, height: float, xlim: tuple[float, float], ylim: tuple[float, float]):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return fig, ax


def _arrow(ax, start, end, *, colour="#555555", text=None, fontsize=8):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color=colour, linewidth=1.1))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, text, fontsize=fontsize, ha="center", va="bottom")


def _finish(fig, path):
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def texts(fig) -> list[str]:
    """Every string drawn in ``fig`` (titles, labels, boxes): what the tests read."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _shape(x) -> tuple[int, ...]:
    return tuple(int(d) for d in x[...].shape)


# ----------------------------------------------------------------------------
# Lecture 1: byte-pair encoding, merge by merge
# ----------------------------------------------------------------------------


def bpe_steps(tokenizer, word: str) -> tuple[list[tuple[int, str, str, list[str]]], list[str], list[int]]:
    """Replay byte-pair encoding of one pre-tokenised ``word`` with the
    tokenizer's own merge table: ``(steps, pieces, ids)``, each step
    ``(rank, left, right, symbols after the merge)``.

    The tokenizer's merges, applied lowest rank first (the order they were
    learnt), until no adjacent pair is in the table. The result is checked
    against the tokenizer's own encoding, so a replay that disagrees with the
    real tokenizer is an error, never a picture."""
    model = _bpe_model(tokenizer)
    if model.get("type") != "BPE":
        raise ValueError(f"the tokenizer's model is {model.get('type')!r}; bpe_steps replays a 'BPE' one")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    rank = {pair: r for r, pair in enumerate(merges)}
    pre = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(word)
    if len(pre) != 1:
        raise ValueError(f"{word!r} pre-tokenises into {len(pre)} words {[p for p, _ in pre]}; give one word")
    symbols = list(pre[0][0])  # byte-level: one printable stand-in per byte ("Ġ" for a space)
    steps = []
    while True:
        pairs = [(rank[p], i) for i, p in enumerate(zip(symbols, symbols[1:], strict=False)) if p in rank]
        if not pairs:
            break
        r, _ = min(pairs)
        left, right = merges[r]
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == (left, right):
                merged.append(left + right)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
        steps.append((r, left, right, symbols))
    ids = tokenizer.encode(word, add_special_tokens=False)
    real = tokenizer.convert_ids_to_tokens(ids)
    if real != symbols:
        raise ValueError(f"replaying the merges of {word!r} gave {symbols}, but the tokenizer gives {real}")
    return steps, symbols, ids


def _bpe_model(tokenizer) -> dict:
    """The tokenizer's model as the ``tokenizers`` library serialises it (its merges, in rank order)."""
    import json

    return json.loads(tokenizer.backend_tokenizer.to_str())["model"]


def _readable(symbol: str) -> str:
    return symbol.replace("Ġ", "·").replace("Ċ", "⏎")


def draw_bpe(tokenizer, word: str, path: str | Path | None = None):
    """``word`` from its bytes to its tokens: one row per merge of the
    tokenizer's real merge table (its rank: the order it was learnt in), the
    token ids at the bottom."""
    steps, pieces, ids = bpe_steps(tokenizer, word)
    first = list(tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(word)[0][0])
    rows = [("bytes (byte-level stand-ins)", first)] + [
        (f"merge #{r:,}: {_readable(a)} + {_readable(b)}", syms) for r, a, b, syms in steps
    ]
    n_chars = len(first)
    height = 0.42 * (len(rows) + 2) + 0.6
    fig, ax = _canvas(max(7.5, 3.4 + 0.55 * n_chars), height, (-3.3, n_chars + 0.2), (-1.9, len(rows) + 0.3))
    for k, (label, syms) in enumerate(rows):
        y = len(rows) - 1 - k
        ax.text(-0.15, y + 0.35, label, ha="right", va="center", fontsize=8.5, fontfamily="monospace")
        x = 0.0
        for s in syms:
            w = len(s)
            final = k == len(rows) - 1
            _box(ax, x + 0.05, y + 0.08, w - 0.1, 0.55, _readable(s), "#fde9c9" if final else "#eef3fb", fontsize=9)
            x += w
    x = 0.0
    for s, i in zip(pieces, ids, strict=True):
        _box(ax, x + 0.05, -1.0, len(s) - 0.1, 0.55, f"id {i}", BACKBONE_COLOUR, fontsize=9)
        _arrow(ax, (x + len(s) / 2, -0.02), (x + len(s) / 2, -0.42))
        x += len(s)
    ax.text(-0.15, -0.72, "token ids", ha="right", va="center", fontsize=8.5, fontfamily="monospace")
    n_merges = len(_bpe_model(tokenizer)["merges"])
    ax.set_title(
        f"{word!r}: {len(steps)} of the tokenizer's {n_merges:,} merges, then {len(ids)} token id(s)",
        fontsize=10,
    )
    ax.text(
        (n_chars - 3.3) / 2,
        -1.6,
        "· stands for a space; a merge's number is its rank: merges apply in the order they were learnt",
        ha="center",
        fontsize=8,
        color="#333333",
    )
    return _finish(fig, path)


# ----------------------------------------------------------------------------
# Lecture 2: one block and the residual stream
# ----------------------------------------------------------------------------


def _sum_node(ax, x, y):
    ax.add_patch(plt.Circle((x, y), 0.17, facecolor="white", edgecolor="#555555", linewidth=1.1))
    ax.text(x, y, "+", ha="center", va="center", fontsize=12)


def draw_block(backbone, layer: int = 0, path: str | Path | None = None):
    """Block ``layer`` of ``backbone``: its sublayers with their live weight
    shapes, beside the residual stream that each adds its output to."""
    block = backbone.h[layer]
    config = backbone.config
    C = _shape(block.ln_1.scale)[0]
    c_attn, a_proj = _shape(block.attn.c_attn.kernel), _shape(block.attn.c_proj.kernel)
    c_fc, m_proj = _shape(block.mlp.c_fc.kernel), _shape(block.mlp.c_proj.kernel)
    H, D = block.attn.n_head, block.attn.head_dim
    n_weights = sum(x.size for x in jax.tree.leaves(nnx.state(block, nnx.Param)))
    fig, ax = _canvas(12.0, 4.4, (-0.6, 13.2), (-0.45, 4.6))
    stream_x = 0.5
    ax.plot([stream_x, stream_x], [0.25, 3.9], color="#3d7bd9", linewidth=3, zorder=0)
    _box(ax, -0.45, -0.35, 1.9, 0.55, f"x in: (B, T, {C})", DATA_COLOUR)
    _box(ax, -0.45, 3.95, 1.9, 0.55, f"x out: (B, T, {C})", DATA_COLOUR)
    ax.text(0.3, 2.6, "residual stream", rotation=90, ha="right", va="center", fontsize=9, color="#3d7bd9")
    branches = [
        (
            0.45,
            [
                f"ln_1\nLayerNorm({C})",
                f"attn.c_attn\nkernel {c_attn}\nq, k, v",
                f"causal attention\n{H} heads x {D}\n(t sees s <= t)",
                f"attn.c_proj\nkernel {a_proj}",
            ],
            "attention: mixes information between positions",
        ),
        (
            2.15,
            [
                f"ln_2\nLayerNorm({C})",
                f"mlp.c_fc\nkernel {c_fc}",
                f"{config.activation_function}",
                f"mlp.c_proj\nkernel {m_proj}",
            ],
            "MLP: each position on its own",
        ),
    ]
    for y, labels, name in branches:  # y: the bottom of the branch's boxes
        mid, add_y, x = y + 0.4, y + 1.25, 1.5
        _arrow(ax, (stream_x, mid), (x, mid))
        ax.text(x, y + 0.88, name, fontsize=8.5, va="bottom", style="italic")
        for k, label in enumerate(labels):
            colour = "#eeeeee" if k in (0, 2) else BACKBONE_COLOUR
            _box(ax, x, y, 2.35, 0.8, label, colour, fontsize=8.5)
            if k < len(labels) - 1:
                _arrow(ax, (x + 2.4, mid), (x + 2.8, mid))
            x += 2.8
        # back into the stream: right of the last box, up, then left to the sum
        ax.plot([x - 0.43, x - 0.2, x - 0.2], [mid, mid, add_y], color="#555555", linewidth=1.1)
        _arrow(ax, (x - 0.2, add_y), (stream_x + 0.17, add_y))
        _sum_node(ax, stream_x, add_y)
    ax.set_title(
        f"block h[{layer}] of {len(backbone.h)}: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))  ({n_weights:,} weights)",
        fontsize=10,
    )
    return _finish(fig, path)


# ----------------------------------------------------------------------------
# Lecture 3: the next-word head, and the key/value cache
# ----------------------------------------------------------------------------


def draw_next_word_and_cache(model: GPT2, tokenizer, prompt: str, path: str | Path | None = None):
    """Left: the last hidden state times the (tied) embedding table gives one
    score per vocabulary entry, softmax turns them into the distribution
    (its live top five after ``prompt``). Right: what the key/value cache
    holds per layer, its shape, and what one decode step adds."""
    from minitransfer.generate import next_word_candidates

    backbone = model.backbone
    V, C = _shape(backbone.wte.embedding)
    ids = tokenizer.encode(prompt)
    T, L = len(ids), len(backbone.h)
    top = next_word_candidates(model, tokenizer, prompt, top_k=5)
    cache = jax.eval_shape(lambda: backbone.init_cache(1, backbone.config.n_positions))  # shapes only
    k_shape = tuple(cache["k"][0].shape)  # (B, H, S, D)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 4.8), gridspec_kw={"width_ratios": [1, 1.15]})
    for ax in (left, right):
        ax.axis("off")

    ax = left
    ax.set_xlim(0, 6)
    ax.set_ylim(-0.2, 6.3)
    _box(ax, 0.2, 0.0, 2.6, 0.6, f"prompt: {T} token ids", DATA_COLOUR)
    _box(ax, 0.2, 1.0, 2.6, 0.7, f"backbone: {L} blocks\nhidden (1, {T}, {C})", BACKBONE_COLOUR)
    _box(ax, 0.2, 2.1, 2.6, 0.6, f"last position's h: ({C},)", "#eeeeee")
    _box(
        ax,
        0.2,
        3.1,
        2.6,
        0.85,
        f"{type(model.head).__name__}:\nh @ wte.T, wte.T ({C}, {V:,})\n(tied to the embedding)",
        NEXT_WORD_COLOUR,
    )
    _box(ax, 0.2, 4.35, 2.6, 0.6, f"logits: ({V:,},), one per token", "#eeeeee")
    _box(ax, 0.2, 5.35, 2.6, 0.6, "softmax: probabilities, sum 1", "#eeeeee")
    for y0, y1 in ((0.6, 1.0), (1.7, 2.1), (2.7, 3.1), (3.95, 4.35), (4.95, 5.35)):
        _arrow(ax, (1.5, y0), (1.5, y1))
    ax.text(3.2, 5.95, f"after {prompt!r}:", fontsize=8.5, va="center")
    for k, c in enumerate(top):
        y = 5.45 - 0.5 * k
        ax.add_patch(plt.Rectangle((4.1, y - 0.17), 1.8 * c["prob"] / top[0]["prob"], 0.34, color="#3d7bd9"))
        ax.text(4.0, y, repr(c["token"]), ha="right", va="center", fontsize=8.5, fontfamily="monospace")
        ax.text(4.15, y, f"{100 * c['prob']:.1f}%", va="center", fontsize=8, color="white")
    _arrow(ax, (2.85, 5.65), (3.2, 5.65))
    ax.set_title("the next-word head: one hidden state -> a distribution", fontsize=10)

    ax = right
    S = k_shape[2]
    ax.set_xlim(-1.9, 6.3)
    ax.set_ylim(-1.15, L * 1.05 + 0.5)
    width = 5.6  # the whole cache length S, drawn
    cell = width / S
    for i in range(L):
        for j, name in enumerate(("k", "v")):
            y = (L - 1 - i) * 1.05 + (0.45 if j == 0 else 0.0)
            ax.add_patch(plt.Rectangle((0, y), width, 0.38, facecolor="white", edgecolor="#999999"))
            ax.add_patch(plt.Rectangle((0, y), T * cell, 0.38, facecolor=BACKBONE_COLOUR, edgecolor="#555555"))
            ax.add_patch(plt.Rectangle((T * cell, y), cell, 0.38, facecolor="#e69138", edgecolor="#e69138"))
            ax.text(-0.1, y + 0.19, f"h[{i}].{name}", ha="right", va="center", fontsize=8.5, fontfamily="monospace")
    ax.text(
        width / 2,
        -0.35,
        f"each k, v: (B, H, S, D) = {k_shape}; S = n_positions\n"
        f"blue: the prompt's {T} positions, written once;  orange: one decode step\n"
        f"adds 1 position to each of the {2 * L} arrays: 2 x {L} x {k_shape[1]} x {k_shape[3]} = "
        f"{2 * L * k_shape[1] * k_shape[3]:,} numbers",
        ha="center",
        va="top",
        fontsize=8.5,
    )
    ax.set_title(f"the key/value cache: per layer, keys and values of every position (S = {S})", fontsize=10)
    return _finish(fig, path)


# ----------------------------------------------------------------------------
# Lecture 4: what pretraining costs, on a log scale
# ----------------------------------------------------------------------------


def parameter_count(config) -> int:
    """The weights of a GPT-2 of this shape, counted off the module tree itself
    (built abstractly: shapes only, no memory), the tied head owning none.
    Blocks are alike, so one is built and counted ``n_layer`` times: building
    GPT-2 1.5B's 48, even abstractly, takes tens of seconds."""
    import dataclasses

    from minitransfer.model import GPT2Backbone

    def count(module) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))

    one = nnx.eval_shape(lambda: GPT2Backbone(dataclasses.replace(config, n_layer=1), rngs=nnx.Rngs(0)))
    per_block = count(one.h[0])
    return count(one) - per_block + config.n_layer * per_block


def _duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} seconds"


def draw_pretraining_cost(runs: list[dict], path: str | Path | None = None, *, device: dict | None = None):
    """Training compute, 6 x parameters x tokens, on a log scale, one bar per run.

    Each run: ``name``, ``config`` (a GPT2Config: the parameters are counted
    from it) and ``tokens``, with ``tokens_note`` saying where the token count
    comes from (a measurement, or an assumption). ``device`` (optional):
    ``name``, ``flops_per_second`` and ``note``, to put each bar in days of
    that device."""
    rows = []
    for r in runs:
        n = parameter_count(r["config"])
        rows.append((r["name"], n, r["tokens"], 6 * n * r["tokens"], r.get("tokens_note", "")))
    fig, ax = plt.subplots(figsize=(12.0, 1.3 + 1.1 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [f for *_, f, _ in rows], height=0.55, color=["#3d7bd9", "#e69138", "#cc4125", "#6aa84f"][: len(rows)])
    ax.set_xscale("log")
    ax.set_yticks(y, [name for name, *_ in rows])
    lo, hi = min(f for *_, f, _ in rows), max(f for *_, f, _ in rows)
    ax.set_xlim(lo / 30, hi * 3e5)
    for yy, (_, n, d, f, note) in zip(y, rows, strict=True):
        tokens = f"{d:,.0f}" if d < 1e9 else f"{d:.3g}"
        line = f"6 x {n:,} parameters x {tokens} tokens = {f:.2g} FLOPs"
        if device:
            line += f"\n= {_duration(f / device['flops_per_second'])} of {device['name']}"
        ax.text(f * 1.6, yy + 0.05, line, va="bottom", fontsize=8.5)
        ax.text(f * 1.6, yy - 0.02, note, va="top", fontsize=7.5, color="#444444")
    ax.set_xlabel("training compute (FLOPs, log scale): 6 x parameters x tokens")
    title = "What pretraining costs: parameters counted from each config"
    ax.set_title(title, fontsize=10)
    if device:
        fig.text(0.01, 0.01, device["note"], fontsize=7.5, color="#444444")
    fig.tight_layout(rect=(0, 0.05 if device else 0, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# ----------------------------------------------------------------------------
# Lecture 5: a checkpoint's tensor names on the module tree
# ----------------------------------------------------------------------------


def _module_at(root, path):
    m = root
    for p in path[:-1]:
        m = m[p] if isinstance(p, int) else getattr(m, p)
    return m


def draw_checkpoint_mapping(backbone, path: str | Path | None = None):
    """Each tensor name of a Hugging Face GPT-2 file (``convert.hf_name``)
    beside the parameter of the module tree it is copied into, with its shape:
    the embeddings, the whole of block 0, the final LayerNorm (the other
    blocks repeat block 0's names)."""
    from minitransfer import convert

    flat = nnx.to_flat_state(nnx.state(backbone, nnx.Param))
    L = len(backbone.h)
    shown, hidden = [], 0
    for p, var in flat:
        if p[0] == "h" and p[1] != 0:
            hidden += 1
            continue
        shown.append((p, var))
    order = {"wte": 0, "wpe": 1, "h": 2, "ln_f": 3}
    shown.sort(key=lambda pv: order.get(pv[0][0], 9))
    rows = []
    for p, var in shown:
        owner = _module_at(backbone, p)
        module_path = "backbone." + ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in p).replace(".[", "[")
        rows.append((convert.hf_name(p), tuple(var.get_value().shape), f"{module_path}  ({type(owner).__name__})"))
    # the blocks not drawn, in one row after block 0
    block0 = [r for r in rows if r[0].startswith("h.0.")]
    others = [r for r in rows if not r[0].startswith("h.")]
    rows = others[:2] + block0
    if L > 1:
        rows.append((f"h.1 ... h.{L - 1}.*", None, f"backbone.h[1] ... h[{L - 1}]: {hidden} more, block 0's names"))
    rows += others[2:]
    height = 1.5 + 0.3 * len(rows)
    fig, ax = _canvas(12.5, height, (0, 12.5), (-1.5, len(rows) + 0.6))
    ax.text(0.1, len(rows) + 0.1, "tensor in model.safetensors", fontsize=9, weight="bold")
    ax.text(4.35, len(rows) + 0.1, "shape", fontsize=9, weight="bold")
    ax.text(6.35, len(rows) + 0.1, "parameter in the module tree (module)", fontsize=9, weight="bold")
    for k, (name, shape, target) in enumerate(rows):
        y = len(rows) - 1 - k
        colour = BACKBONE_COLOUR if shape is not None else "#eeeeee"
        ax.add_patch(plt.Rectangle((0.05, y - 0.02), 3.95, 0.68, facecolor=colour, edgecolor="#999999"))
        ax.text(0.15, y + 0.32, name, va="center", fontsize=8.5, fontfamily="monospace")
        ax.text(4.35, y + 0.32, "" if shape is None else str(shape), va="center", fontsize=8.5, fontfamily="monospace")
        _arrow(ax, (5.55, y + 0.32), (6.25, y + 0.32))
        ax.text(6.35, y + 0.32, target, va="center", fontsize=8.5, fontfamily="monospace")
    ax.text(
        0.1,
        -0.6,
        "before the copy, normalize_state_dict drops the prefix 'transformer.' (save_pretrained's names), skips "
        f"the buffers matching {convert._BUFFER.pattern} (the causal mask, rebuilt)\n"
        "and checks that lm_head.weight equals wte.weight (the tied next-word head). Linear kernels are "
        "(in, out) in both: no transposes.",
        fontsize=8,
        color="#333333",
        va="top",
    )
    ax.set_title(
        f"A Hugging Face GPT-2 checkpoint on minitransfer's module tree: {len(flat)} tensors, names by convert.hf_name",
        fontsize=10,
    )
    return _finish(fig, path)


# ----------------------------------------------------------------------------
# Lecture 7: ULMFiT's three stages, and which modes run which
# ----------------------------------------------------------------------------


def _qualname(f) -> str:
    return f"{f.__module__.removeprefix('minitransfer.')}.{f.__name__}"


def mode_stages(mode) -> tuple[bool, bool, bool]:
    """Which of ULMFiT's three stages a mode runs: general pretraining (its
    backbone starts pretrained), target-text next-word training (it starts
    adapted), classifier fine-tuning (its filter trains something)."""
    return mode.start in ("pretrained", "adapted"), mode.start == "adapted", not mode.trains_nothing


def draw_ulmfit(modes: dict | None = None, path: str | Path | None = None):
    """ULMFiT's three stages with the function (and command) that runs each
    here, and below them, for every mode of ``modes`` (default
    ``modes.MODES``), the stages it runs and what its last stage trains."""
    from minitransfer.adapt import adapt_language_model
    from minitransfer.modes import MODES
    from minitransfer.pretrain import pretrain
    from minitransfer.train import finetune

    modes = MODES if modes is None else modes
    stages = [
        (
            "1. general-domain LM pretraining",
            f"{_qualname(pretrain)}\nminitransfer pretrain\nhead: {NextWordHead.__name__}",
            "lots of unlabelled text",
        ),
        (
            "2. target-domain LM fine-tuning",
            f"{_qualname(adapt_language_model)}\nmode adapt (pretrain --init-from)\nhead: {NextWordHead.__name__}",
            "the task's own texts, labels unused",
        ),
        (
            "3. classifier fine-tuning",
            f"{_qualname(finetune)}\nminitransfer finetune\nhead: a task head (chopped and swapped)",
            "the labelled budget",
        ),
    ]
    n = len(modes)
    fig, ax = _canvas(12.0, 2.9 + 0.36 * n, (-2.2, 12.2), (-0.45 * n - 0.4, 2.55))
    xs = [0.0, 4.1, 8.2]
    for x, (title, body, data) in zip(xs, stages, strict=True):
        ax.text(x + 1.8, 2.3, title, ha="center", fontsize=9.5, weight="bold")
        _box(ax, x, 0.75, 3.6, 1.25, body, NEXT_WORD_COLOUR if x < 8 else NEW_HEAD_COLOUR, fontsize=8.5)
        ax.text(x + 1.8, 0.45, f"data: {data}", ha="center", fontsize=8, color="#333333")
    for a, b in ((3.6, 4.1), (7.7, 8.2)):
        _arrow(ax, (a + 0.02, 1.37), (b - 0.02, 1.37))
    ax.text(-0.1, 0.0, "mode", ha="right", fontsize=8.5, weight="bold")
    ax.text(12.1, 0.0, "", ha="right")
    for k, m in enumerate(modes.values()):
        y = -0.45 * (k + 1)
        ax.text(-0.1, y, m.name, ha="right", va="center", fontsize=9, fontfamily="monospace")
        runs = mode_stages(m)
        for x, on in zip(xs, runs, strict=True):
            ax.plot([x + 0.2, x + 3.4], [y, y], color="#3d7bd9" if on else "#dddddd", linewidth=5 if on else 1.5)
        if runs[2]:
            ax.text(8.2 + 1.8, y + 0.05, f"trains {m.trains_text}", ha="center", va="bottom", fontsize=7.5)
        elif m.head != "new":
            ax.text(
                8.2 + 1.8,
                y + 0.05,
                "nothing trains: the next-word head answers",
                ha="center",
                va="bottom",
                fontsize=7.5,
            )
    ax.set_title(
        "ULMFiT (Howard & Ruder 2018): three stages; each mode of modes.MODES runs the blue ones",
        fontsize=10,
    )
    return _finish(fig, path)


# ----------------------------------------------------------------------------
# Lecture 8: one backbone, many heads; LoRA
# ----------------------------------------------------------------------------


def draw_heads(backbone, heads: list, path: str | Path | None = None):
    """One backbone, several heads on it: what each reads and what it outputs."""
    rows = backbone_rows(GPT2(backbone, NextWordHead()))
    n = len(heads)
    width = 3.5
    fig, ax = _canvas(max(9.0, 3.9 * n), 4.0, (-0.2, n * (width + 0.35)), (-0.1, 4.2))
    total = n * (width + 0.35) - 0.35
    y = 0.0
    _box(ax, 0, y, total, 0.4, "token ids (B, T)", DATA_COLOUR)
    y += 0.55
    for row in rows:
        _box(ax, 0, y, total, 0.45, row, BACKBONE_COLOUR)
        y += 0.6
    for k, head in enumerate(heads):
        x = k * (width + 0.35)
        _arrow(ax, (x + width / 2, y - 0.15), (x + width / 2, y + 0.2))
        _box(ax, x, y + 0.25, width, 1.1, head_label(GPT2(backbone, head)), NEW_HEAD_COLOUR)
    ax.set_title("one backbone (blue: pretrained, shared), a head per task", fontsize=10)
    return _finish(fig, path)


def trainable_share(model, trains) -> tuple[int, int]:
    """(weights the filter ``trains`` selects, all weights) of ``model``."""
    _, selected, _ = nnx.split(model, trains, ...)
    total = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    return sum(x.size for x in jax.tree.leaves(selected)), total


def draw_lora(model, trains, path: str | Path | None = None):
    """One adapted projection of a model built by mode ``lora`` (its first:
    block 0's ``attn.c_attn``): the frozen weight W beside the low-rank update
    A @ B, drawn to their live shapes, and the share of all weights that
    ``trains`` (the mode's filter) selects."""
    from minitransfer.lora import ScaledLoRALinear, projections

    owner, name = next(iter(projections(model)))
    layer = getattr(owner, name)
    if not isinstance(layer, ScaledLoRALinear):
        raise ValueError(f"{name} of block 0 has no adapter ({type(layer).__name__}); give a model built by mode lora")
    c_in, c_out = _shape(layer.kernel)
    r = _shape(layer.lora.lora_a)[1]
    n_train, n_total = trainable_share(model, trains)
    w_params, ab_params = c_in * c_out, r * (c_in + c_out)
    s = 2.6 / max(c_in, c_out)  # drawing units per row/column
    thin = max(r * s, 0.1)  # (a rank-1 or rank-8 side still visible)
    wx, wy = 1.0, 0.3  # W: above the line of x; A and B: below it
    ax_, ay = 1.0, -0.3 - c_in * s
    bx, by = ax_ + thin + 1.6, -0.3 - thin
    end = max(wx, bx) + c_out * s + 0.6
    top, bottom = wy + c_in * s + 0.35, ay - 1.0
    # one unit the same length across and up, so that each matrix is drawn to its own proportions
    fig, ax = _canvas(12.0, 0.5 + 12.0 * (top - bottom) / (end + 5.4), (-1.2, end + 4.2), (bottom, top))
    ax.set_aspect("equal")
    ax.text(-0.5, 0.0, f"x\n(B, T, {c_in})", ha="center", va="center", fontsize=9)
    ax.add_patch(plt.Rectangle((wx, wy), c_out * s, c_in * s, facecolor=FROZEN_COLOUR, edgecolor="#555555", hatch="//"))
    ax.text(
        wx + c_out * s / 2,
        wy + c_in * s / 2,
        f"W: kernel {(c_in, c_out)}, frozen\n{w_params:,} weights",
        ha="center",
        va="center",
        fontsize=9,
        bbox=dict(facecolor="white", edgecolor="none", alpha=0.85),
    )
    ax.add_patch(plt.Rectangle((ax_, ay), thin, c_in * s, facecolor=TRAINED_COLOUR, edgecolor="#555555"))
    ax.text(ax_ + thin / 2, ay - 0.1, f"A: lora_a {(c_in, r)}\nrandom at first", ha="center", va="top", fontsize=9)
    ax.add_patch(plt.Rectangle((bx, by), c_out * s, thin, facecolor=TRAINED_COLOUR, edgecolor="#555555"))
    ax.text(
        bx + c_out * s / 2,
        by - 0.1,
        f"B: lora_b {(r, c_out)}, zero at first\nx @ A @ B scaled by alpha / r = {layer.scale:g}",
        ha="center",
        va="top",
        fontsize=9,
    )
    _sum_node(ax, end, 0.0)
    _arrow(ax, (-0.15, 0.1), (wx - 0.05, wy + c_in * s / 2))
    _arrow(ax, (-0.15, -0.1), (ax_ - 0.05, ay + c_in * s / 2))
    _arrow(ax, (ax_ + thin + 0.05, ay + c_in * s / 2), (bx - 0.05, by + thin / 2))
    _arrow(ax, (wx + c_out * s + 0.05, wy + c_in * s / 2), (end - 0.15, 0.08))
    _arrow(ax, (bx + c_out * s + 0.05, by + thin / 2), (end - 0.15, -0.08))
    ax.text(end + 0.3, 0.0, f"y = x @ W + b + {layer.scale:g} x @ A @ B\n(B, T, {c_out})", va="center", fontsize=9)
    ax.text(
        (end + 3.0) / 2,
        bottom + 0.15,
        f"the whole model: {n_train:,} of {n_total:,} weights train ({100 * n_train / n_total:.1f}%): "
        f"every projection's adapters and the task head",
        ha="center",
        fontsize=9,
    )
    ax.set_title(
        f"LoRA on block 0's {name} (rank r = {r}): A and B hold {ab_params:,} weights beside W's {w_params:,} "
        f"({100 * ab_params / w_params:.1f}%)",
        fontsize=10,
    )
    return _finish(fig, path)


# ----------------------------------------------------------------------------
# Lecture 9: which arrays are split over the mesh
# ----------------------------------------------------------------------------


def planned_shardings(strategy: str, n_devices: int, tree):
    """``parallel.Parallel``'s shardings of ``tree`` for ``strategy`` on a mesh
    of ``n_devices`` that need not exist (an abstract mesh: the rule, not the
    devices)."""
    from jax.sharding import AbstractMesh

    from minitransfer.parallel import Parallel

    par = Parallel("none")
    par.strategy, par.mesh = strategy, AbstractMesh((n_devices,), ("data",))
    return par.param_sharding(tree)


def draw_sharding(params: dict, batch_shape: tuple[int, int], n_devices: int, path: str | Path | None = None):
    """How ``--parallel data`` and ``--parallel fsdp`` lay arrays out over a
    one-axis mesh of ``n_devices`` (axis ``data``): the batch (split along
    its first axis in both) and each of ``params`` (name -> array or shape),
    with its PartitionSpec and what one device holds."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    shapes = {k: tuple(v) if isinstance(v, tuple) else tuple(np.shape(v)) for k, v in params.items()}
    strategies = ("data", "fsdp")
    abstract = {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in shapes.items()}
    plans = {s: planned_shardings(s, n_devices, abstract) for s in strategies}
    mesh = next(iter(plans["data"].values())).mesh
    batch = NamedSharding(mesh, P("data"))  # Parallel.place_batch's layout, in both strategies
    rows = [("batch input_ids", tuple(batch_shape), {s: batch for s in strategies})]
    rows += [(k, v, {s: plans[s][k] for s in strategies}) for k, v in shapes.items()]
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(rows), 2, figsize=(11.5, 0.95 * len(rows) + 0.9), squeeze=False)
    for i, (name, shape, plan) in enumerate(rows):
        for j, s in enumerate(strategies):
            ax = axes[i, j]
            ax.axis("off")
            ax.set_xlim(0, 10)
            ax.set_ylim(0, 1)
            spec = plan[s].spec
            local = plan[s].shard_shape(shape)
            split = [a for a, name_ in enumerate(tuple(spec) + (None,) * (len(shape) - len(spec))) if name_]
            w, h = 3.2, (0.8 if len(shape) > 1 else 0.25)
            if split:  # stripes: one per device, along the split axis (axis 0 drawn vertically)
                for d in range(n_devices):
                    if split[0] == 0 and len(shape) > 1:
                        rect = (0.2, 0.1 + h - (d + 1) * h / n_devices, w, h / n_devices)
                    else:
                        rect = (0.2 + d * w / n_devices, 0.1, w / n_devices, h)
                    ax.add_patch(plt.Rectangle(rect[:2], *rect[2:], facecolor=colours(d % 10), alpha=0.55))
            else:
                ax.add_patch(plt.Rectangle((0.2, 0.1), w, h, facecolor="#cccccc"))
            ax.add_patch(plt.Rectangle((0.2, 0.1), w, h, fill=False, edgecolor="#333333"))
            where = f"split over {n_devices} devices" if split else f"replicated: all of it on each of {n_devices}"
            ax.text(3.6, 0.72, f"{name} {shape}", fontsize=8.5, va="center", fontfamily="monospace")
            ax.text(3.6, 0.42, f"{spec}: {where}", fontsize=8.5, va="center")
            ax.text(3.6, 0.14, f"one device holds {local}", fontsize=8.5, va="center")
            if i == 0:
                ax.set_title(f"--parallel {s}", fontsize=10)
    fig.suptitle(f"a mesh of {n_devices} devices along one axis, 'data'; a colour per device", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def main(argv: list[str]) -> int:
    """Draw README's head-swap picture from the shipped stand-in and a tweet classifier on it."""
    from minitransfer.assets import shipped_checkpoint
    from minitransfer.convert import load_pretrained

    matplotlib.use("Agg")  # a file only: no window, no display needed
    out = Path(argv[0]) if argv else Path("docs/head_swap.png")
    lm = load_pretrained(str(shipped_checkpoint()))
    clf = GPT2(lm.backbone, ClassificationHead(lm.config.n_embd, ["negative", "neutral", "positive"], pooling="mean"))
    draw_head_swap(lm, clf, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
