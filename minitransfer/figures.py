"""compare's two figures: ``budget.png`` (the task's headline metric on the
test split against the budget, and the paired gains with their intervals) and
``curves.png`` (the validation curves at one budget). What is drawn, and its
name, comes from the task's head (``compare_metrics``, ``metric_names``,
``baseline_names``), which the summary names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minitransfer.heads import TaskHead
from minitransfer.modes import get_mode
from minitransfer.tasks import get_task


def summary_task(summary: dict) -> type[TaskHead]:
    """The head of the task a compare summary reports on; a summary that names none is refused."""
    if "task" not in summary:
        raise ValueError(
            "this compare summary names no task: it was written by an earlier minitransfer; run "
            "compare again to write it anew"
        )
    return get_task(summary["task"]).head


def short_spec(spec: str) -> str:
    """'jsonl:/a/long/path/imdb' -> 'imdb' for plot titles."""
    kind, _, rest = spec.partition(":")
    return Path(rest).name if kind in ("jsonl", "csv", "tsv", "txt") and rest else spec


COLORS = {
    "scratch": "#7f7f7f",
    "probe": "#1f77b4",
    "full": "#d62728",
    "adapt": "#2ca02c",
    "zero": "#9467bd",
    "prompt": "#9467bd",
}


def plot_curves(rows: list[dict], cc, path: Path, spec: str):
    """The headline metric on the validation split against the step, at ``cc.curve_budget`` (a CompareConfig)."""
    import matplotlib  # here: slow to import, and only the figures need it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = get_task(cc.task).head
    metric = task.compare_metrics[0]
    budget = cc.curve_budget if cc.curve_budget is not None else cc.budgets[-1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in [m for m in cc.modes if any(r["mode"] == m and r["split"] == "validation" for r in rows)]:
        pts = [r for r in rows if r["split"] == "validation" and r["mode"] == mode and str(r["budget"]) == str(budget)]
        steps = sorted({r["step"] for r in pts})
        mean = [np.mean([r[metric] for r in pts if r["step"] == st]) for st in steps]
        ax.plot(steps, [100 * m for m in mean], marker="o", label=mode, color=COLORS.get(mode))
    ax.set_xlabel("training step (optimizer updates)")
    ax.set_ylabel(f"validation {task.metric_names[metric]} (%)")
    ax.set_title(f"Learning curves at {budget} {task.budget_unit} ({short_spec(spec)}), mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def accuracy_axis(means: list, baseline: float | None, bands: list) -> tuple[tuple[float, float], bool]:
    """The metric's axis (accuracy, F1: percent) limits, and whether the intervals' bands are drawn:
    the axis spans the means and the baseline if any (8 points beyond), and
    grows to hold every band whole, unless a band would need more than 10
    points past that span or past 0-100 (two seeds' t-intervals, for
    instance, are 12.7 standard errors wide each way): then no band is drawn,
    rather than bands that fill the panel or are cut off without a sign."""
    lo, hi = max(0.0, min(means + ([baseline] if baseline is not None else [])) - 8), min(100.0, max(means) + 8)
    if not bands:
        return (lo, hi), False
    b_lo = min(float(np.min(low)) for low, _ in bands)
    b_hi = max(float(np.max(high)) for _, high in bands)
    if b_lo < max(0.0, lo - 10) or b_hi > min(100.0, hi + 10):
        return (lo, hi), False
    return (max(0.0, min(lo, b_lo - 1)), min(100.0, max(hi, b_hi + 1))), True


def plot_budget(summary: dict, path: Path, spec: str):
    """Left: the headline metric on the test split vs the budget (band: 95%
    interval of the mean over seeds). Right: its paired gains (``gain_pairs``:
    over scratch, and a stage's own, dashed) with their 95% intervals as error
    bars; a bar that crosses zero is no evidence of a difference."""
    import matplotlib  # (here: see plot_curves)
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = summary_task(summary)
    metric = task.compare_metrics[0]
    name = task.metric_names[metric]
    gains = summary["gains"]
    with_gains = bool(gains)
    fig, axes = plt.subplots(1, 2 if with_gains else 1, figsize=(12.5 if with_gains else 7, 4.6), squeeze=False)
    ax = axes[0, 0]
    means = [100 * summary["table"][m][b][f"{metric}_mean"] for m in summary["modes"] for b in summary["budgets"]]
    bands = {}  # mode -> (x, lo, hi) arrays, where every budget has an interval
    for mode in summary["modes"]:
        cells = [summary["table"][mode][b] for b in summary["budgets"]]
        x = np.array([c["n_train"] for c in cells])
        ax.plot(x, [100 * c[f"{metric}_mean"] for c in cells], marker="o", label=mode, color=COLORS.get(mode))
        if all(c.get(f"{metric}_ci95") for c in cells):
            bands[mode] = (x, *(np.array([100 * c[f"{metric}_ci95"][i] for c in cells]) for i in (0, 1)))
    baselines = {nm: 100 * summary[key] for key, nm in task.baseline_names.items() if key in summary}
    ylim, drawn = accuracy_axis(
        means, min(baselines.values(), default=None), [(lo, hi) for _, lo, hi in bands.values()]
    )
    for mode, (x, lo, hi) in bands.items() if drawn else ():
        ax.fill_between(x, lo, hi, alpha=0.15, color=COLORS.get(mode))
    zero = summary.get("zero_label")
    if zero:  # the next-word head before any label, drawn left of the smallest budget, where "0" stands
        ylim = plot_zero_label(ax, summary, ylim)
    for nm, value in baselines.items():
        ax.axhline(value, ls="--", color="black", lw=0.8, label=nm)
    ax.set_ylim(*ylim)
    ax.set_ylabel(f"test {name} (%)")
    widest = max((float(np.max(hi - lo)) / 2 for _, lo, hi in bands.values()), default=0.0)
    ax.set_title(
        f"Test {name} vs {task.budget_unit} on {short_spec(spec)}\n"
        + (
            f"(band: each mean's 95% interval over {summary['seeds']} seeds; overlap is not the test)"
            if drawn
            else f"(mean over {summary['seeds']} seeds; 95% intervals up to ±{widest:.0f} points: too wide to draw)"
            if bands
            else f"(mean over {summary['seeds']} seed(s); no interval to draw)"
        )
    )
    if with_gains:
        plot_gains(axes[0, 1], summary, name)
    for k, a in enumerate(axes[0]):
        a.set_xscale("log")
        ticks = [summary["table"][summary["modes"][0]][b]["n_train"] for b in summary["budgets"]]
        if zero and k == 0:
            a.set_xticks([ticks[0] / 3] + ticks, ["0"] + [str(t) for t in ticks])
        else:
            a.set_xticks(ticks)
            a.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        a.minorticks_off()
        a.set_xlabel("labelled training examples (log scale)")
        a.grid(alpha=0.3, which="both")
        a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_zero_label(ax, summary: dict, ylim: tuple) -> tuple:
    """Mode zero's mean over prompts, with its 95% interval, left of the smallest budget; returns the
    y-range widened to hold that interval."""
    zero = summary["zero_label"]
    x0 = min(c["n_train"] for c in summary["table"][summary["modes"][0]].values()) / 3
    ci = zero.get("accuracy_ci95")
    err = [[100 * (zero["accuracy_mean"] - ci[0])], [100 * (ci[1] - zero["accuracy_mean"])]] if ci else None
    ax.errorbar(
        [x0],
        [100 * zero["accuracy_mean"]],
        yerr=err,
        marker="D",
        capsize=4,
        color=COLORS["zero"],
        ls="none",
        label=f"zero labels (mean over {len(zero['prompts'])} prompts)",
    )
    if ci:
        return (min(ylim[0], 100 * ci[0] - 1), max(ylim[1], 100 * ci[1] + 1))
    return ylim


def plot_gains(g, summary: dict, name: str) -> None:
    """The paired gains of the headline metric (``name``) against the budget, with their 95% intervals
    as error bars."""
    gains, barred = summary["gains"], False
    ref = gains[0]["over"]  # the main reference (scratch); a stage's own gain (adapt over full) dashed
    for k, gain in enumerate(gains):
        cells = [gain["budgets"][b] for b in summary["budgets"]]
        n = [summary["table"][gain["mode"]][b]["n_train"] for b in summary["budgets"]]
        x = np.array(n, dtype=float) * (1 + 0.06 * (k - (len(gains) - 1) / 2))  # side by side, bars apart
        m = np.array([100 * c["mean"] for c in cells])
        style = dict(
            marker="o",
            color=COLORS.get(gain["mode"]),
            ls="-" if gain["over"] == ref else "--",
            label=gain["mode"] if gain["over"] == ref else f"{gain['mode']} over {gain['over']}",
        )
        if all(c.get("ci95") for c in cells):
            err = np.array(
                [
                    [100 * (c["mean"] - c["ci95"][0]) for c in cells],
                    [100 * (c["ci95"][1] - c["mean"]) for c in cells],
                ]
            )
            g.errorbar(x, m, yerr=err, capsize=4, **style)
            barred = True
        else:
            g.plot(x, m, **style)
    g.axhline(0, color="black", lw=0.8)
    g.set_ylabel(f"paired gain ({name} points)")
    others = [x for x in gains if x["over"] != ref]  # dashed: a stage on its own (adapt over full), or another pair
    stages = all(get_mode(x["mode"]).adds_to == x["over"] for x in others)
    g.set_title(
        f"Paired gain over {ref}"
        + ((", and of a stage on its own (dashed)" if stages else ", and over other modes (dashed)") if others else "")
        + (
            "\n(error bars: 95% interval; crossing 0 = no evidence)"
            if barred
            else "\n(no interval to draw: one seed, or no spread)"
        )
    )
