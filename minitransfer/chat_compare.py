"""Scratch vs transfer for the chat task: ``minitransfer compare --task chat``.

The compare of tasks with labels (``compare.py``: classify, qa) draws label
budgets, plots curves over them, and pairs differences of a metric where
higher is better; a chat model has no labels and its score
(``ChatHead.best_metric``) is a perplexity, where lower is better, whose
differences pair best as ratios (on the log scale). So this is its own,
smaller grid: each mode (scratch
and full by default) x each seed fine-tunes on the same training
conversations with ``train.finetune`` and is scored on the same test
conversations. Since a seed fixes the batch order and dropout for every mode,
the difference between two modes is paired by seed and reported with its 95%
confidence interval over seeds (``compare.paired_difference``). The
pretrained model itself, without chat fine-tuning (zero-shot), is scored on
the same test set as a reference row.

Writes into ``out``: ``compare.json`` (the settings, checked on a re-run),
``results.csv`` (one row per run: its test and best validation perplexity),
``summary.json`` and ``summary.md``; each run lives in
``out/runs/MODE-sSEED`` and a finished one is read back, not redone.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from minitransfer.adapt import AdaptConfig, adapt_language_model
from minitransfer.chat import ChatHead
from minitransfer.compare import paired_difference, write_record
from minitransfer.model import GPT2
from minitransfer.modes import get_mode
from minitransfer.runs import check_out_folder
from minitransfer.train import TrainConfig, build_model, data_rows_hash, evaluate, finetune

RESULT_COLUMNS = [
    "mode",
    "seed",
    "n_train",
    "steps",
    "best_step",
    "val_perplexity",
    "test_perplexity",
    "test_accuracy",
    "test_loss",
    "wall_seconds",
]


@dataclasses.dataclass
class ChatCompareConfig:
    modes: list = dataclasses.field(default_factory=lambda: ["scratch", "full"])
    seeds: int = 3  # a paired interval needs at least 2; 3 keep the default run within minutes on 2 cores
    first_seed: int = 0
    split_seed: int = 0
    steps: int | None = None  # per run; None: epochs over the training conversations
    epochs: float = 3.0
    batch_size: int = 32
    max_len: int = 128
    val_examples: int = 400
    adapt_steps: int | None = None  # mode adapt's next-word steps (None: AdaptConfig's)
    parallel: str = "none"
    dtype: str = "float32"

    def seed_ids(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


def run_name(mode: str, seed: int) -> str:
    return f"{mode}-s{seed}"


def check_settings(cc: ChatCompareConfig) -> None:
    """Refuse settings no run could use, before any work (the command line calls it before the model and
    the data load, ``compare_chat`` again for every other caller)."""
    for m in cc.modes:
        if get_mode(m).frozen_backbone and not ChatHead.pooled_features:
            raise ValueError(
                f"`modes`: {m} caches one pooled vector per text, which the {ChatHead.kind} head "
                f"cannot use (it reads every position); choose among scratch, full and adapt"
            )
    if len(set(cc.modes)) < len(cc.modes):
        raise ValueError(f"`modes` names a mode more than once ({','.join(cc.modes)})")
    for name in ("seeds", "steps", "max_len", "batch_size"):
        if getattr(cc, name) is not None and getattr(cc, name) < 1:
            raise ValueError(f"`{name}` must be at least 1, got {getattr(cc, name)}")


def run_config(cc: ChatCompareConfig, mode: str, seed: int) -> TrainConfig:
    """The fine-tuning settings of one run of the grid."""
    return TrainConfig(
        mode=mode,
        steps=cc.steps,
        epochs=cc.epochs,
        batch_size=cc.batch_size,
        max_len=cc.max_len,
        seed=seed,
        val_examples=cc.val_examples,
        parallel=cc.parallel,
        dtype=cc.dtype,
    )


def run_row(mode: str, seed: int, n_train: int, r) -> dict:
    """results.csv's row of one run (``r``: finetune's result)."""
    return {
        "mode": mode,
        "seed": seed,
        "n_train": n_train,
        "steps": r.steps,
        "best_step": r.best_step,
        "val_perplexity": r.best_val["perplexity"],
        "test_perplexity": r.test["perplexity"],
        "test_accuracy": r.test["accuracy"],
        "test_loss": r.test["loss"],
        "wall_seconds": round(r.wall_seconds, 2),
    }


def compare_chat(
    base_model, data, tokenizer, cc: ChatCompareConfig, out: str | Path, *, log=print, progress: bool = True
) -> dict:
    """Run the grid, write the result files, return the summary."""
    # ---- the settings, and the folder's record of them
    out = Path(out)
    check_out_folder(out, "compare")
    check_settings(cc)
    if cc.max_len > base_model.config.n_positions:
        raise ValueError(f"`max_len` {cc.max_len} exceeds the model's n_positions={base_model.config.n_positions}")
    settings = {"task": "chat", **json.loads(json.dumps(dataclasses.asdict(cc)))}
    record = {"config": settings, "data": data.spec, "rows": data_rows_hash(data)}
    write_record(out, record)
    t0 = time.perf_counter()

    # ---- the reference: the pretrained model's replies as they are (the chat head is its own next-word head)
    zero = evaluate(GPT2(base_model.backbone, ChatHead()), data, tokenizer, max_len=cc.max_len, dtype=cc.dtype)
    log(f"zero-shot (the pretrained model, no chat fine-tuning): test reply perplexity {zero['perplexity']:.2f}")

    # ---- where the runs start: the checkpoint, or it adapted to the conversations' text (once for all)
    adapted = None
    if any(get_mode(m).start == "adapted" for m in cc.modes):
        acfg = AdaptConfig(parallel=cc.parallel, dtype=cc.dtype)
        if cc.adapt_steps is not None:
            acfg = dataclasses.replace(
                acfg, steps=cc.adapt_steps, eval_every=max(1, min(acfg.eval_every, cc.adapt_steps))
            )
        adapted = adapt_language_model(
            base_model, tokenizer, data, acfg, out / "adapted", progress=progress, log=log
        ).model
    starts = {"random": base_model, "pretrained": base_model, "adapted": adapted}

    # ---- the runs
    rows = []
    grid = [(m, s) for s in cc.seed_ids() for m in cc.modes]
    for i, (mode, seed) in enumerate(grid):
        cfg = run_config(cc, mode, seed)
        name = run_name(mode, seed)
        done = (out / "runs" / name / "result.json").exists()
        log(f"[{i + 1}/{len(grid)}] {name}: {mode}, seed {seed}" + (" (finished earlier: read back)" if done else ""))
        model = build_model(mode, starts[get_mode(mode).start], base_model.config, data, cfg, ChatHead, new_head=True)
        r = finetune(
            model,
            data,
            tokenizer,
            cfg,
            out / "runs" / name,
            progress=False,
            log=lambda msg: None,
            keep_state=False,
            keep_best=False,
        )
        n_train = json.loads((out / "runs" / name / "result.json").read_text())["n_train"]
        rows.append(run_row(mode, seed, n_train, r))
        log(f"    test reply perplexity {r.test['perplexity']:.2f}, next-token accuracy {r.test['accuracy']:.4f}")

    # ---- the results
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    summary = summarise_chat(rows, cc, data, zero, time.perf_counter() - t0)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(chat_summary_markdown(summary))
    return summary


def summarise_chat(rows: list[dict], cc: ChatCompareConfig, data, zero: dict, wall_seconds: float) -> dict:
    """Per mode: the test perplexity per seed and its mean; per pair of modes
    (each against scratch): the paired difference, on the log scale (the test
    loss, whose exp is the perplexity) and as a ratio of perplexities."""
    seeds = cc.seed_ids()
    by = {(r["mode"], r["seed"]): r for r in rows}
    table = {}
    for m in cc.modes:
        ppl = [by[m, s]["test_perplexity"] for s in seeds]
        table[m] = {
            "perplexity_per_seed": ppl,
            "perplexity_mean": float(np.mean(ppl)),
            "accuracy_mean": float(np.mean([by[m, s]["test_accuracy"] for s in seeds])),
            "loss_per_seed": [by[m, s]["test_loss"] for s in seeds],
        }
    gains = []
    for m in cc.modes:
        if m == "scratch" or "scratch" not in cc.modes:
            continue
        # the loss is the log of the perplexity: a paired difference of losses is the log of a ratio of
        # perplexities, which is what "x times lower" means, and is closer to normal than a difference of
        # perplexities
        d = paired_difference(table[m]["loss_per_seed"], table["scratch"]["loss_per_seed"])
        ratio = {k: (math.exp(d[k]) if d[k] is not None else None) for k in ("mean", "low", "high")}
        gains.append({"mode": m, "over": "scratch", "loss_difference": d, "perplexity_ratio": ratio})
    return {
        "task": "chat",
        "data": data.spec,
        "seeds": len(seeds),
        "first_seed": cc.first_seed,
        "test_n": zero["n"],
        "test_reply_tokens": zero["n_tokens"],
        "zero_shot": zero,
        "table": table,
        "gains": gains,
        "wall_seconds": wall_seconds,
        "config": dataclasses.asdict(cc),
    }


def chat_summary_markdown(s: dict) -> str:
    name = ChatHead.metric_names[ChatHead.best_metric]  # reply perplexity
    lines = [
        f"Test {name} ({'lower' if ChatHead.best_is_lower else 'higher'} is better) on `{s['data']}` "
        f"({s['test_n']} test conversations, "
        f"{s['test_reply_tokens']:,} reply tokens), {s['seeds']} seed(s) from {s['first_seed']}:",
        "",
        f"| mode | {name} (mean) | per seed | {ChatHead.metric_names['accuracy']} (mean) |",
        "|---|---|---|---|",
        f"| zero-shot (no chat fine-tuning) | {s['zero_shot']['perplexity']:.2f} | - | "
        f"{100 * s['zero_shot']['accuracy']:.1f}% |",
    ]
    for m, cell in s["table"].items():
        lines.append(
            f"| {m} | {cell['perplexity_mean']:.2f} | "
            f"{', '.join(f'{p:.2f}' for p in cell['perplexity_per_seed'])} | "
            f"{100 * cell['accuracy_mean']:.1f}% |"
        )
    lines.append("")
    for g in s["gains"]:
        r, d = g["perplexity_ratio"], g["loss_difference"]
        interval = (
            f"95% interval {r['low']:.3f} to {r['high']:.3f}, p = {d['p']:.3g}"
            + ("" if d["significant"] else ": the interval includes 1, no difference is shown")
            if r["low"] is not None
            else "no interval: it needs at least 2 seeds whose differences vary"
        )
        lines.append(f"{g['mode']} vs {g['over']}: test perplexity x {r['mean']:.3f} (paired by seed; {interval}).")
    return "\n".join(lines) + "\n"
