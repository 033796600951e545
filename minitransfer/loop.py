"""The training loop that fine-tuning and pretraining share: steps, periodic
validation, the best weights so far. What the run keeps on disk so that
re-running the same command resumes exactly where it stopped is the
``RunFolder``'s business (``runs.py``); the loop only tells it when.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from minitransfer import interrupt
from minitransfer.errors import TrainingError
from minitransfer.parallel import Parallel
from minitransfer.runs import RunFolder, Stopwatch


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a run trains and how often it is validated. Step ``s`` trains at
    learning rate ``lrs[s]`` (``optim.lr_values``) with the dropout key
    ``fold_in(key(seed), s)``, a function of the step alone, so that a resumed
    run repeats an uninterrupted one exactly."""

    total: int
    eval_every: int
    lrs: np.ndarray  # (total,) every step's learning rate
    seed: int


@dataclasses.dataclass(frozen=True)
class Validation:
    """What a validation computes from the weights (``metrics``), which
    metrics are better (``better(new, old)``), what to do with better
    weights (``on_best(params, step, metrics)``: save a checkpoint, say) and
    what the progress bar shows of them."""

    metrics: Callable[[object], dict]
    better: Callable[[dict, dict], bool]
    on_best: Callable[[object, int, dict], None] | None = None
    show: Callable[[dict], dict] = lambda metrics: {}


@dataclasses.dataclass
class LoopResult:
    params: object
    best_params: object
    best_step: int
    best_metrics: dict
    history: list[dict]
    step: int
    steps_run: int  # by this call (0: the run had already finished)
    train_seconds: float  # the loop's wall time over all calls (resumes included)
    seconds: dict  # this call's: "loop" (all of it) and, within it, "first_step" (compiling too),
    # "validate", "on_best" and "save" (state and log)

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds["loop"] if self.steps_run else float("nan")

    @property
    def steady_step_seconds(self) -> float:
        """This call's time in training steps after the first: no compiling,
        no validation, no writing (0 when it ran one step or none)."""
        if self.steps_run < 2:
            return 0.0
        s = self.seconds
        return max(0.0, s["loop"] - s["first_step"] - s.get("validate", 0) - s.get("on_best", 0) - s.get("save", 0))


def train_loop(
    params,
    opt_state,
    train_step: Callable,
    get_batch: Callable[[int], dict],
    schedule: Schedule,
    validation: Validation,
    run: RunFolder,
    *,
    desc: str,
    progress: bool = True,
    log: Callable[[str], None] = print,
    parallel: Parallel | None = None,
) -> LoopResult:
    """Run ``train_step`` on batch ``get_batch(s)`` for steps s = (where ``run``
    stopped) .. ``schedule.total``; validate every ``schedule.eval_every``
    steps and at the end, keep the best weights, and let ``run`` save."""
    # ---- resume where an earlier call of this run stopped --------------------
    params, opt_state, done = run.resume(params, opt_state)
    start, history, best = done["step"], done["history"], done["best"]
    if 0 < start < schedule.total:
        log(f"{run.out}: resuming at step {start} of {schedule.total}")
    parallel = parallel if parallel is not None else Parallel("none")  # ("none" leaves every array where it is)
    best["params"] = parallel.place(best["params"])
    # train_step donates its inputs: copies, so that the caller's weights survive whatever happens here
    params, opt_state = jax.tree.map(jnp.copy, parallel.place((params, opt_state)))
    key = jax.random.key(schedule.seed)
    watch = Stopwatch()
    # The losses stay on the device until the next validation: reading each one at once would make the
    # host wait for every step before queueing the next, which leaves a GPU idle between small steps.
    pending = []

    # ---- the loop --------------------------------------------------------------
    bar = tqdm(total=schedule.total, initial=start, disable=not progress, desc=desc, unit="step", dynamic_ncols=True)
    with bar, interrupt.checkpoints():
        for step in range(start, schedule.total):
            interrupt.check()  # a Ctrl-C that landed where Python ignores exceptions (interrupt.py)
            batch = parallel.place_batch(get_batch(step))
            params, opt_state, m = train_step(params, opt_state, batch, key, schedule.lrs[step], step)
            pending.append(m["loss"])
            if step == start:  # one wait, so that compiling is not counted as training speed
                jax.block_until_ready(m["loss"])
                watch.mark("first_step")
            bar.update(1)
            if (step + 1) % schedule.eval_every and step + 1 < schedule.total:
                continue

            # ---- validate, keep the best, save ---------------------------------------
            loss, pending = last_finite_loss(pending, step + 1, run), []
            with watch("validate"):
                metrics = validation.metrics(params)
            history.append({"step": step + 1, "train_loss": loss, "lr": float(schedule.lrs[step]), **metrics})
            if best["metrics"] is None or validation.better(metrics, best["metrics"]):
                best = {"step": step + 1, "metrics": metrics, "params": jax.tree.map(jnp.copy, params)}
                if validation.on_best is not None:
                    with watch("on_best"):
                        validation.on_best(params, step + 1, metrics)
            bar.set_postfix(loss=f"{loss:.3f}", **validation.show(metrics))
            if not progress:  # no bar: a line per validation, so that a long run is not silent
                log(f"{desc} step {step + 1}/{schedule.total}: train loss {loss:.4f}, {metrics_line(metrics)}")
            with watch("save"):
                run.save(params, opt_state, best, step + 1, history, done["seconds"] + watch.elapsed())

    watch.seconds["loop"] = watch.elapsed()
    return LoopResult(
        params,
        best["params"] if best["params"] is not None else params,
        best["step"],
        best["metrics"] or {},
        history,
        step=schedule.total,
        steps_run=schedule.total - start,
        train_seconds=done["seconds"] + watch.seconds["loop"],
        seconds=watch.seconds,
    )


def metrics_line(metrics: dict) -> str:
    """'val_loss 0.6931, val_accuracy 0.5000': a validation's metrics (counts, ``..._n``, as whole numbers)."""
    return ", ".join(f"{k} {int(v)}" if k.endswith("_n") else f"{k} {v:.4f}" for k, v in metrics.items())


def last_finite_loss(losses: list, step: int, run: RunFolder) -> float:
    """The last of the training losses since the previous validation (waiting
    for their steps); a run whose loss became NaN or infinite stops here."""
    losses = np.asarray(jax.device_get(losses), dtype=np.float64)  # (steps since the last validation,)
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise TrainingError(
            f"the training loss became {losses[bad[0]]} at step {step - len(losses) + bad[0] + 1} "
            f"(peak lr {run.settings.get('lr', float('nan')):g}); training stopped. Try a lower "
            f"{run.name('lr')}." + run.diverged()
        )
    return float(losses[-1])
