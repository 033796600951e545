"""The training loop that fine-tuning and pretraining share: steps, periodic
validation, the best weights so far, and a crash-safe training state on disk
so that re-running the same command resumes exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from minitransfer import interrupt


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to change."""


# ----------------------------------------------------------------------------
# Checkpointing: training state as safetensors + JSON
# ----------------------------------------------------------------------------


def _save_tree(tree, path: Path):
    from safetensors.numpy import save_file

    leaves = jax.tree.leaves(tree)
    save_file({str(i): np.asarray(x) for i, x in enumerate(leaves)}, str(path))


def _load_tree(like, path: Path):
    from safetensors.numpy import load_file

    flat = load_file(str(path))
    leaves, treedef = jax.tree.flatten(like)
    if len(flat) != len(leaves):
        raise TrainingError(f"{path}: holds {len(flat)} arrays, the run expects {len(leaves)}; delete the --out directory to start over")
    return jax.tree.unflatten(treedef, [jnp.asarray(flat[str(i)]) for i in range(len(leaves))])


# ----------------------------------------------------------------------------
# The training loop, shared by fine-tuning and pretraining
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class LoopResult:
    params: object
    best_params: object
    best_step: int
    best_metrics: dict
    history: list[dict]
    step: int
    steps_per_second: float
    interrupted: bool
    steps_run: int = 0  # steps taken by this call (0: the run had already finished)
    train_seconds: float = 0.0  # wall time of the loop over all calls (resumes included)
    last_call_seconds: float = 0.0  # wall time of this call's steps and evaluations
    state_seconds: float = 0.0  # of which writing the resumable state to disk
    first_step_seconds: float = 0.0  # of which this call's first step, compiling included
    eval_seconds: float = 0.0  # of which validation, best-model copies and writing state

    @property
    def steady_step_seconds(self) -> float:
        """This call's time in training steps after the first: no compiling,
        no validation, no writing (0 when it ran one step or none)."""
        if self.steps_run < 2:
            return 0.0
        return max(0.0, self.last_call_seconds - self.first_step_seconds - self.eval_seconds)


# what else can make a run's key differ, where no setting does (shared by finished and unfinished runs)
OTHER_RUN = "data, tokenizer, model shape or starting weights"


def train_loop(
    *,
    params,
    opt_state,
    train_step: Callable,
    get_batch: Callable[[int], dict],
    total: int,
    eval_every: int,
    validate: Callable[[object], dict],
    is_better: Callable[[dict, dict], bool],
    on_best: Callable[[object, int, dict], None],
    seed: int,
    lrs: np.ndarray,
    lr: float,
    out: Path | None,
    run_key: str,
    desc: str,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after_step: int | None = None,
    postfix: Callable[[dict], dict] = lambda m: {},
    parallel=None,
    resumable: bool = True,
    settings: dict | None = None,
    also_accept: tuple = (),
    lr_option: str = "--lr",
    setting_names: dict | None = None,
) -> LoopResult:
    """Run ``train_step`` from the current step to ``total``.

    Every ``eval_every`` steps (and at the end): ``validate(params)`` -> metrics,
    logged to ``out/metrics.jsonl``; the best metrics so far (``is_better``)
    trigger ``on_best`` (e.g. save a checkpoint); and the whole training state
    goes to ``out/state`` so that re-running resumes here. Batch ``s`` is
    ``get_batch(s)`` and its dropout key ``fold_in(key(seed), s)``: both
    functions of the step alone, so a resumed run repeats an uninterrupted one
    exactly. ``resumable=False`` skips writing ``out/state`` (the metrics log
    is still written): for runs so short that redoing one costs less than
    saving its weights and optimizer state at every evaluation. ``settings``
    (JSON-able) are kept with the state, so that a re-run with other settings
    is told which ones differ, each by ``setting_names[k]`` where given (None:
    not named, a setting derived from another). ``lr_option``: what a
    divergence tells the user to lower. ``also_accept``: other keys that
    name the same run (as an older minitransfer keyed it).
    """
    from tqdm.auto import tqdm

    step, history, seconds_before = 0, [], 0.0
    best = {"step": -1, "metrics": None, "params": None}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        state_dir = out / "state"
        if (state_dir / "state.json").exists():
            st = json.loads((state_dir / "state.json").read_text())
            if st.get("run_key") != run_key and st.get("run_key") not in also_accept:
                there = st.get("settings") or {}
                names = setting_names or {}
                differ = [f"{names.get(k, k)}: {there[k]!r} there, {v!r} now" for k, v in (settings or {}).items()
                          if k in there and there[k] != v and names.get(k, k) is not None]
                # a setting this minitransfer records and that run did not: an older minitransfer saved it
                differ += [f"{names.get(k, k)}: not recorded there (saved by an older minitransfer, which "
                           f"keyed its runs otherwise)" for k in (settings or {})
                           if there and k not in there and names.get(k, k) is not None]
                raise TrainingError(
                    f"{out} holds a run with other " + (
                        f"settings ({'; '.join(differ)})" if differ else OTHER_RUN)
                    + "; choose another --out or delete it"
                )
            params = _load_tree(params, state_dir / "params.safetensors")
            opt_state = _load_tree(opt_state, state_dir / "opt_state.safetensors")
            step = st["step"]
            seconds_before = st.get("train_seconds", 0.0)
            history = _read_log(out)[: st["n_log"]]
            best = {"step": st["best_step"], "metrics": st["best_metrics"], "params": None}
            if (state_dir / "best_params.safetensors").exists():
                best["params"] = _load_tree(params, state_dir / "best_params.safetensors")
            if step < total:  # (a finished run whose state is kept: its caller says so)
                log(f"{out}: resuming at step {step} of {total}")
        if history or (out / "metrics.jsonl").exists():  # cut to the state's step (none yet: no empty log)
            _write_log(out, history)

    if parallel is not None:
        params, opt_state = parallel.place(params), parallel.place(opt_state)
        if best["params"] is not None:
            best["params"] = parallel.place(best["params"])
    place_batch = parallel.place_batch if parallel is not None else (lambda b: b)
    # train_step consumes (donates) its inputs: start from copies, so that the
    # caller's model keeps its own weights whatever happens here.
    params, opt_state = jax.tree.map(jnp.copy, (params, opt_state))
    base_key = jax.random.key(seed)
    bar = tqdm(total=total, initial=step, disable=not progress, desc=desc, unit="step", dynamic_ncols=True)
    t_loop, steps_run, state_seconds, first_step_seconds, eval_seconds = time.perf_counter(), 0, 0.0, 0.0, 0.0
    # The losses stay on the device until the next evaluation: reading each
    # one back at once would make the host wait for every step to finish
    # before queueing the next, which leaves a GPU idle between small steps.
    pending: list = []
    loss = float("nan")
    with interrupt.checkpoints():
        while step < total:
            if interrupt.requested():  # a Ctrl-C that landed where Python ignores exceptions (interrupt.py)
                bar.close()
                raise KeyboardInterrupt
            batch = place_batch(get_batch(step))
            # dropout key: fold_in(base_key, step), computed inside the step
            params, opt_state, m = train_step(params, opt_state, batch, base_key, lrs[step], step)
            pending.append(m["loss"])
            if steps_run == 0:  # one wait, so that compiling is not counted as training speed
                jax.block_until_ready(m["loss"])
                first_step_seconds = time.perf_counter() - t_loop
            step += 1
            steps_run += 1
            bar.update(1)
            if step % eval_every == 0 or step == total:
                losses = np.asarray(jax.device_get(pending), dtype=np.float64)  # (steps since the last check,)
                t_eval = time.perf_counter()  # the wait above was for the queued steps: training time
                bad = np.flatnonzero(~np.isfinite(losses))
                if bad.size:
                    bar.close()
                    removed = ""
                    if out is not None and (out / "state").exists():  # resuming would diverge the same way
                        import shutil

                        shutil.rmtree(out / "state")
                        removed = (f" Its resumable state in {out / 'state'} was removed (resuming would diverge the "
                                   f"same way), so the same --out can be run again with a lower one.")
                    raise TrainingError(
                        f"the training loss became {losses[bad[0]]} at step {step - len(losses) + bad[0] + 1} "
                        f"(peak lr {lr:g}); training stopped. Try a lower {lr_option}." + removed
                    )
                loss, pending = float(losses[-1]), []
                metrics = validate(params)
                rec = {"step": step, "train_loss": loss, "lr": float(lrs[step - 1]), **metrics}
                history.append(rec)
                if best["metrics"] is None or is_better(metrics, best["metrics"]):
                    best = {"step": step, "metrics": metrics, "params": jax.tree.map(jnp.copy, params)}
                    on_best(params, step, metrics)
                bar.set_postfix(loss=f"{loss:.3f}", **postfix(metrics))
                if not progress:  # no bar: a line per evaluation, so that a long run is not silent
                    log(f"{desc} step {step}/{total}: train loss {loss:.4f}, " + ", ".join(
                        f"{k} {int(v)}" if k.endswith("_n") else f"{k} {v:.4f}" for k, v in metrics.items()))
                if out is not None:
                    t_state = time.perf_counter()
                    _write_log(out, history)
                    if resumable:
                        _save_state(out, params, opt_state, best, step, history, run_key,
                                    seconds_before + time.perf_counter() - t_loop, settings)
                    state_seconds += time.perf_counter() - t_state
                eval_seconds += time.perf_counter() - t_eval
                if stop_after_step is not None and stop_after_step <= step < total:
                    bar.close()
                    log(f"stopping at step {step} (interrupted on request)")
                    return LoopResult(params, best["params"], best["step"], best["metrics"], history, step, 0.0, True,
                                      steps_run, seconds_before + time.perf_counter() - t_loop,
                                      time.perf_counter() - t_loop, state_seconds, first_step_seconds, eval_seconds)
    bar.close()
    elapsed = time.perf_counter() - t_loop
    best_params = best["params"] if best["params"] is not None else params
    return LoopResult(params, best_params, best["step"], best["metrics"] or {}, history, step,
                      steps_run / elapsed if steps_run else float("nan"), False, steps_run, seconds_before + elapsed,
                      elapsed, state_seconds, first_step_seconds, eval_seconds)


def _save_state(out: Path, params, opt_state, best, step, history, run_key, train_seconds: float = 0.0,
                settings: dict | None = None):
    """Write the training state to ``out/state``, crash-safely: everything goes
    to ``state.new`` first, which then replaces ``state``. A crash leaves
    either the old complete state or none, never a mix of steps."""
    import shutil

    new, state_dir = out / "state.new", out / "state"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    _save_tree(params, new / "params.safetensors")
    _save_tree(opt_state, new / "opt_state.safetensors")
    if best["params"] is not None:
        _save_tree(best["params"], new / "best_params.safetensors")
    (new / "state.json").write_text(json.dumps({"run_key": run_key, "step": step, "best_step": best["step"],
                                                "best_metrics": best["metrics"], "n_log": len(history),
                                                "train_seconds": train_seconds, "settings": settings},
                                               default=_json_default))
    shutil.rmtree(state_dir, ignore_errors=True)
    new.rename(state_dir)


def _json_default(x):
    return str(x)  # a Path in the settings


def finite_or_none(record: dict) -> dict:
    """NaN and infinities as None: JSON has no NaN (Python writes a bare NaN,
    which other readers refuse); a diverged model's validation loss is one."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _write_log(out: Path, history: list[dict]):
    (out / "metrics.jsonl").write_text("".join(json.dumps(finite_or_none(r)) + "\n" for r in history))


def _read_log(out: Path) -> list[dict]:
    p = out / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
