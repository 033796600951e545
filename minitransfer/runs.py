"""A training run's bookkeeping, kept apart from the learning: which folder
it may write, what makes two runs the same run, resuming an interrupted one,
recognising a finished one, and where its time went.

The training loop (``loop.py``) and the functions that train (``train.py``,
``pretrain.py``) hand all of this to a ``RunFolder`` and never look inside a
run's folder themselves. A run's folder holds::

    state/          weights, optimizer state, best weights, state.json (while the run is unfinished)
    metrics.jsonl   one line per validation
    result.json     the record of a finished fine-tuning run
    best/           fine-tuning's best checkpoint (pretraining writes its checkpoint into the folder itself)

``state.json`` and ``result.json`` carry ``FORMAT``: a folder that another
version of minitransfer wrote is refused with one line that says what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from minitransfer.errors import TrainingError

FORMAT = 2  # of state.json and result.json; a file without it, or with another, is refused

# ----------------------------------------------------------------------------
# Whose files a folder holds, so that no command writes among another's
# ----------------------------------------------------------------------------

# the files that say which command wrote a folder
MARKS = {
    "finetune": ("result.json", "best"),
    "pretrain": ("pretrain.json", "MODEL_CARD.md"),
    "compare": ("compare.json", "results.csv", "summary.json", "runs"),
}
CHECKPOINT = ("config.json", "model.safetensors")  # a saved model: convert's output, a download, a pretraining run's
RUN_STATE = ("state", "metrics.jsonl")  # what a training run keeps for resuming (pretrain, finetune)
# everything a fine-tuning run's folder holds (mode adapt's next-word stage is "adapted")
RUN_FILES = {"best", "state", "state.new", "metrics.jsonl", "result.json", "adapted"}


def check_out_folder(out: str | Path, command: str) -> None:
    """Refuse ``out`` (before any work) where ``command`` would write among the
    files of another command's run, or over a checkpoint it did not write.

    ``finetune`` refuses any file that is not a run's own. ``pretrain``,
    ``compare`` and ``convert`` write files whose names depend on the
    tokenizer, so they refuse by what marks another command's folder
    instead: re-running a command into its own folder (to resume it, or to
    read back its runs) stays possible."""
    out = Path(out)
    if not out.is_dir():
        return
    if command == "finetune":
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith("."))
        if foreign:
            # another command's folder: say whose
            owner = next((c for c, marks in MARKS.items() if c != "finetune" and set(marks) & set(foreign)), None)
            whose = f"a `minitransfer {owner}` run's files" if owner else "files that are not a training run's"
            raise TrainingError(
                f"`out` {out} holds {whose} ({', '.join(foreign[:5])}"
                f"{' ...' if len(foreign) > 5 else ''}); a run would write among them: choose an "
                f"empty or new folder"
            )
        return
    here = {p.name for p in out.iterdir()}
    for other, marks in MARKS.items():
        found = [m for m in marks if m in here]
        if other != command and found:
            raise TrainingError(
                f"`out` {out} holds a `minitransfer {other}` run ({', '.join(found)}); "
                f"`minitransfer {command}` would write among its files: choose an empty or new folder"
            )
    own = [m for m in (*MARKS.get(command, ()), *RUN_STATE) if m in here]
    if command == "convert" and own:
        raise TrainingError(
            f"`out` {out} holds a training run ({', '.join(own)}); converting into it would replace its "
            f"checkpoint under its model card and resumable state: choose an empty or new folder"
        )
    if command == "pretrain" and "pretrain.json" in here and "state" not in here:
        raise TrainingError(
            f"`out` {out} holds a finished pretraining run without its resumable state (as shipped "
            f"checkpoints are); pretraining would write over its model: choose an empty or new folder (to go "
            f"on from that model, give it as `init_from`)"
        )
    checkpoint = [m for m in CHECKPOINT if m in here]
    if command in ("pretrain", "compare") and checkpoint and not own:
        what, option = (
            ("pretraining would write over it", "`init_from`")
            if command == "pretrain"
            else ("compare would write among its files", "`model`")
        )
        raise TrainingError(
            f"`out` {out} holds a saved model ({', '.join(checkpoint)}) that no `minitransfer {command}` run "
            f"wrote; {what}: choose an empty or new folder (to start from that model, give it as {option})"
        )


# ----------------------------------------------------------------------------
# What makes two runs the same run
# ----------------------------------------------------------------------------

# what else can make a run's key differ, where no setting does
OTHER_RUN = "data, tokenizer, model shape or starting weights"

# how messages name the settings that are hashes, not values a user chose (a setting a user chose is named
# as Python spells it, in backticks: errors.py)
SETTING_NAMES = {
    "data_rows": "the data's rows (a hash of every text and label)",
    "text_tokens": "the training text (a hash of its tokens)",
    "validation_tokens": "the validation blocks (a hash of their tokens)",
}


def run_key(record: dict) -> str:
    """A short hash of everything that makes a run what it is (settings, data,
    tokenizer, model shape, starting weights): equal keys, the same run."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def array_hash(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def other_run(out: Path, finished: bool, there: dict, now: dict, names: dict | None = None) -> TrainingError:
    """The error for a folder that holds another run: which of its settings
    differ (``names``: how to call a setting, as ``RunFolder.name``; None
    leaves it out, a setting that follows from another), or what else can,
    where none does."""
    names = {**{k: f"`{k}`" for k in now}, **SETTING_NAMES, **(names or {})}
    differ = [
        f"{names[k]}: {there[k]!r} there, {v!r} now"
        for k, v in now.items()
        if k in there and there[k] != v and names[k] is not None
    ]
    return TrainingError(
        f"{out} holds {'a finished run' if finished else 'a run'} with other "
        + (f"settings ({'; '.join(differ)})" if differ else OTHER_RUN)
        + "; choose another `out` or delete it"
    )


def _read_record(path: Path) -> dict:
    record = json.loads(path.read_text())
    if record.get("format") != FORMAT:
        raise TrainingError(
            f"{path} was written by another version of minitransfer (format "
            f"{record.get('format', 'unrecorded')}, this one reads {FORMAT}); choose another `out` "
            f"or delete {path.parent}"
        )
    return record


# ----------------------------------------------------------------------------
# A run's folder: resumable state, metrics log, the finished run's record
# ----------------------------------------------------------------------------


class RunFolder:
    """Where a training run keeps its metrics log (``metrics.jsonl``), the
    state to resume it from (``state/``) and, once finished, its record
    (``result.json``). ``out=None``: a run that keeps nothing.

    ``key`` says which run this is (``run_key``); ``settings`` (JSON-able,
    identifiers as keys) are kept beside it, so that a folder holding another
    run is refused naming the settings that differ (``names``: how messages
    call them where not as their own names in backticks, ``lr`` included:
    what a diverged run tells the user to lower).
    ``resumable=False`` writes no state: for runs so short that redoing one
    costs less than saving its weights and optimizer state at every
    validation (compare's); the metrics log is still written."""

    def __init__(
        self, out: str | Path | None, key: str, settings: dict, *, resumable: bool = True, names: dict | None = None
    ):
        self.out = Path(out) if out is not None else None
        self.key, self.resumable, self.names = key, resumable, names or {}
        self.settings = json.loads(json.dumps(settings, default=str))  # as state.json will hold them

    def name(self, setting: str) -> str:
        """How messages call ``setting``: as ``names`` says, else as Python spells it, in backticks."""
        return self.names.get(setting) or f"`{setting}`"

    # -- a finished run -------------------------------------------------------

    def finished(self) -> dict | None:
        """The record of this run where it has finished (``result.json``), else None;
        a folder holding another finished run is refused."""
        if self.out is None or not (self.out / "result.json").exists():
            return None
        done = _read_record(self.out / "result.json")
        if done["run_key"] != self.key:
            raise other_run(self.out, True, done["settings"], self.settings, self.names)
        return done

    def finish(self, record: dict) -> None:
        """Write ``result.json`` (which marks the run finished) and drop the
        resumable state: weights, optimizer state and best weights, four
        copies of the model, no longer needed."""
        if self.out is None:
            return
        (self.out / "result.json").write_text(
            json.dumps({"format": FORMAT, "run_key": self.key, "settings": self.settings, **record}, indent=2) + "\n"
        )
        shutil.rmtree(self.out / "state", ignore_errors=True)
        shutil.rmtree(self.out / "state.new", ignore_errors=True)  # left by a crash while saving, if any

    # -- an unfinished run ------------------------------------------------------

    def resume(self, params, opt_state) -> tuple[object, object, dict]:
        """Where an earlier call of this run stopped: (params, opt_state, progress)
        with progress ``{"step", "history", "best", "seconds"}`` (``best``:
        ``{"step", "metrics", "params"}``); the arguments and step 0 where
        there is nothing to resume."""
        progress = {"step": 0, "history": [], "best": {"step": -1, "metrics": None, "params": None}, "seconds": 0.0}
        if self.out is None:
            return params, opt_state, progress
        self.out.mkdir(parents=True, exist_ok=True)
        state = self.out / "state"
        if (state / "state.json").exists():
            st = _read_record(state / "state.json")
            if st["run_key"] != self.key:
                raise other_run(self.out, False, st["settings"], self.settings, self.names)
            params = _load_tree(params, state / "params.safetensors")
            opt_state = _load_tree(opt_state, state / "opt_state.safetensors")
            best = {"step": st["best_step"], "metrics": st["best_metrics"], "params": None}
            if (state / "best_params.safetensors").exists():
                best["params"] = _load_tree(params, state / "best_params.safetensors")
            progress = {
                "step": st["step"],
                "history": self.history()[: st["n_log"]],
                "best": best,
                "seconds": st["train_seconds"],
            }
        if progress["history"] or (self.out / "metrics.jsonl").exists():  # cut to the state's step
            self.write_log(progress["history"])
        return params, opt_state, progress

    def save(self, params, opt_state, best: dict, step: int, history: list[dict], train_seconds: float) -> None:
        """The metrics log, and (``resumable``) the training state, crash-safely:
        everything goes to ``state.new`` first, which then replaces ``state``,
        so a crash leaves either the old complete state or none."""
        if self.out is None:
            return
        self.write_log(history)
        if not self.resumable:
            return
        new, state = self.out / "state.new", self.out / "state"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        _save_tree(params, new / "params.safetensors")
        _save_tree(opt_state, new / "opt_state.safetensors")
        if best["params"] is not None:
            _save_tree(best["params"], new / "best_params.safetensors")
        (new / "state.json").write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "run_key": self.key,
                    "settings": self.settings,
                    "step": step,
                    "best_step": best["step"],
                    "best_metrics": best["metrics"],
                    "n_log": len(history),
                    "train_seconds": train_seconds,
                }
            )
        )
        shutil.rmtree(state, ignore_errors=True)
        new.rename(state)

    def diverged(self) -> str:
        """Remove the resumable state of a run whose loss became NaN (resuming
        would diverge the same way); says so, for the error message."""
        if self.out is None or not (self.out / "state").exists():
            return ""
        shutil.rmtree(self.out / "state")
        return (
            f" Its resumable state in {self.out / 'state'} was removed (resuming would diverge the same way), "
            f"so the same `out` can be run again with a lower one."
        )

    # -- the metrics log ------------------------------------------------------------

    def write_log(self, history: list[dict]) -> None:
        (self.out / "metrics.jsonl").write_text("".join(json.dumps(finite_or_none(r)) + "\n" for r in history))

    def history(self) -> list[dict]:
        p = self.out / "metrics.jsonl" if self.out is not None else None
        if p is None or not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def finite_or_none(record: dict) -> dict:
    """NaN and infinities as None: JSON has no NaN (Python writes a bare NaN,
    which other readers refuse); a diverged model's validation loss is one."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


def _save_tree(tree, path: Path) -> None:
    save_file({str(i): np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))}, str(path))


def _load_tree(like, path: Path):
    flat = load_file(str(path))
    leaves, treedef = jax.tree.flatten(like)
    if len(flat) != len(leaves):
        raise TrainingError(
            f"{path}: holds {len(flat)} arrays, the run expects {len(leaves)}; delete "
            f"{path.parent.parent} to start over"
        )
    return jax.tree.unflatten(treedef, [jnp.asarray(flat[str(i)]) for i in range(len(leaves))])


# ----------------------------------------------------------------------------
# Where the time went
# ----------------------------------------------------------------------------


class Stopwatch:
    """Seconds by phase: ``with watch("validate"): ...`` adds the block's
    time to ``watch.seconds["validate"]``; ``watch.elapsed()`` is the time
    since the watch was made."""

    def __init__(self):
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t

    def mark(self, phase: str) -> None:
        """Record the time since the watch was made as ``phase`` (a first step, say)."""
        self.seconds[phase] = time.perf_counter() - self.start

    def elapsed(self) -> float:
        return time.perf_counter() - self.start
