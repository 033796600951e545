"""Fine-tuning a task head (a classifier, a question answerer, a chat model) on a GPT-2 backbone.

The same architecture (a GPT-2 backbone + a task head) is trained
in one of the modes of ``modes.py``:

* ``scratch``: backbone and head start from random weights (GPT-2's init);
* ``probe``: the pretrained backbone is frozen and only the new head learns.
  Since the backbone never changes, each example's pooled feature vector is
  computed once and cached; training then touches the head alone, so it is
  fast, and gradients and optimizer state exist only for the head;
* ``full``: every weight of the pretrained backbone and the new head learns,
  optionally with ULMFiT-style discriminative learning rates (lower layers
  learn more slowly: ``--lr-decay-per-layer``);
* ``adapt``: as ``full``, from a backbone first adapted to the task's text
  (``adapt.py``).

What the run needs to know about its task (loss, metrics, batches) comes
from the head (``heads.py``). The pieces it runs on are their own modules:
``optim.py`` (AdamW and the schedule), ``steps.py`` (the jitted train and
eval steps), ``loop.py`` (the loop shared with ``pretrain.py``). The batch
order and the dropout key of step ``s`` are functions of (seed, s) alone,
which makes a run reproducible and lets an interrupted run resume exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import types
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx

from minitransfer.data import Dataset, data_record
from minitransfer.encoding import batch_indices, fit_batch_size
from minitransfer.classify import ClassificationHead
from minitransfer.heads import TaskHead
from minitransfer.loop import OTHER_RUN, TrainingError, _read_log, train_loop
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config
from minitransfer.modes import get_mode
from minitransfer.optim import check_optimizer_settings, lr_values
from minitransfer.prompting import DEFAULT_PROMPTS, PromptHead
from minitransfer.steps import (CLASSIFY_FEATURES, CLASSIFY_TOKENS, backbone_features, check_dtype,
                                eval_batch_default, eval_forward, forward_features, make_eval_step, predict,
                                setup_training, weights_fingerprint)


def default_lr(mode: str, config: GPT2Config) -> float:
    """Peak learning rate of a mode (modes.py). Full fine-tuning of a big
    pretrained model wants a small step (it should stay near what pretraining
    found); small models (n_embd <= 256) tolerate, and need, larger ones."""
    m = get_mode(mode)
    return m.lr_small if config.n_embd <= 256 else m.lr


@dataclasses.dataclass
class TrainConfig:
    mode: str = "probe"
    steps: int | None = None  # total optimizer steps; None: from epochs
    epochs: float = 3.0
    batch_size: int = 32
    lr: float | None = None  # None: DEFAULT_LR[mode]
    schedule: str = "linear"  # linear | cosine decay after warmup
    warmup: float = 0.1  # fraction of steps
    weight_decay: float = 0.01
    clip_norm: float = 1.0
    lr_decay_per_layer: float = 1.0  # full mode: layer l learns at lr * decay ** (depth from top)
    eval_every: int | None = None  # None: 10 evaluations per run
    val_examples: int | None = 1000  # validation subset size (None: whole split)
    max_len: int = 128
    labels: int | str | None = None  # label budget; None: all
    seed: int = 0
    pooling: str = "last"
    head_bias: bool = True  # False: a classification head transformers' GPT2ForSequenceClassification loads (with last pooling)
    head_dropout: float = 0.1
    eval_batch_size: int | None = None  # None: steps.eval_batch_default() (32 on a CPU, 64 on an accelerator)
    # modes that keep the next-word head (zero, prompt: prompting.py): the prompt after each text, and a
    # word per label in the labels' order; None: prompting's defaults
    prompt: str | None = None
    label_words: tuple[str, ...] | None = None
    parallel: str = "none"  # none | data | fsdp (see parallel.py)
    dtype: str = "float32"  # compute precision: float32 | bfloat16 (mixed precision, see cast_for_compute)

    def __post_init__(self):
        check_dtype(self.dtype)
        if get_mode(self.mode).trains_nothing:
            raise ValueError(f"mode {self.mode!r} trains nothing: `minitransfer compare --modes {self.mode}` scores "
                             f"it on the test split, and mode prompt fine-tunes from it")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; expected 'linear' or 'cosine'")
        if self.max_len is not None and self.max_len < 1:  # steps, batch_size, eval_every: check_optimizer_settings
            raise ValueError(f"--max-len must be at least 1, got {self.max_len}")
        if self.val_examples is not None and self.val_examples < 1:  # (None: the command line's 0, all of them)
            raise ValueError(f"--val-examples must be at least 1 (or 0 on the command line, None here: the whole "
                             f"validation split), got {self.val_examples}")
        if not 0 < self.epochs < float("inf"):
            raise ValueError(f"--epochs must be a positive, finite number, got {self.epochs}")
        if self.labels is not None and self.labels != "all" and not (
                isinstance(self.labels, int) and self.labels >= 1
                or isinstance(self.labels, str) and self.labels.isdecimal() and int(self.labels) >= 1):
            raise ValueError(f"--labels must be a number of examples (at least 1) or 'all', got {self.labels!r}")
        check_optimizer_settings(self)
        if not 0 < self.lr_decay_per_layer <= 1:
            raise ValueError(f"--lr-decay-per-layer must be in (0, 1], got {self.lr_decay_per_layer:g}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"the head's dropout must be in [0, 1), got {self.head_dropout:g}")

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(self.epochs * n_train / self.batch_size))


# ----------------------------------------------------------------------------
# Metrics


@dataclasses.dataclass
class RunResult:
    out: Path | None
    best_step: int
    best_val: dict
    test: dict
    steps: int
    steps_per_second: float
    wall_seconds: float
    history: list[dict]
    # where the wall time went: "prepare" (encoding; a frozen backbone's features), "train" (the
    # optimizer steps, their compiling included), "validate", "test" and "other" (building the
    # optimizer, saving checkpoints and state) of this call, and for a resumed run "earlier_calls"
    # (the training loops of the calls it resumed), so that they add up to wall_seconds; a finished
    # run reads them back from result.json; empty for an interrupted run
    seconds: dict = dataclasses.field(default_factory=dict)


def build_model(mode: str, base: GPT2 | None, config: GPT2Config, data, cfg: TrainConfig,
                head_cls: type[TaskHead] = ClassificationHead, new_head: bool = False, tokenizer=None) -> GPT2:
    """The model to train: a backbone (pretrained, or random for ``scratch``)
    plus a ``head_cls`` head for ``data``: the checkpoint's own head when it
    is of that kind and fits the data (unless ``new_head``), a fresh one
    otherwise. A mode that keeps the next-word head (``Mode.head == "prompt"``)
    gets a ``PromptHead``, whose label words the ``tokenizer`` turns into ids."""
    def fresh():
        return head_cls.for_data(config.n_embd, data, dropout=cfg.head_dropout, seed=cfg.seed, pooling=cfg.pooling,
                                 bias=cfg.head_bias)

    if get_mode(mode).head == "prompt":
        if head_cls is not ClassificationHead or tokenizer is None:
            raise TrainingError(f"mode {mode!r} keeps the next-word head as a classifier: it needs a classification "
                                f"task and the model's tokenizer")
        assert base is not None
        backbone = nnx.clone(base).backbone
        try:
            head = PromptHead.for_tokenizer(tokenizer, data.label_names, backbone, words=cfg.label_words,
                                            prompt=cfg.prompt or DEFAULT_PROMPTS[0], dropout=cfg.head_dropout)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        return GPT2(backbone, head)

    if not get_mode(mode).pretrained:
        # a stream of its own: the head draws from nnx.Rngs(seed), and a backbone drawing from the same one
        # would start with the same numbers (the head's kernel a copy of the first embedding values)
        return GPT2(GPT2Backbone(config, rngs=nnx.Rngs(jax.random.fold_in(jax.random.key(cfg.seed), 1))), fresh())
    assert base is not None
    # Training writes its result back into the model it is given; a copy keeps
    # ``base`` pristine, so that the next run (compare runs many) starts from
    # the same pretrained weights.
    base = nnx.clone(base)
    if isinstance(base.head, head_cls) and not new_head:
        try:
            base.head.check_data(data)
        except ValueError as e:
            raise TrainingError(f"the checkpoint's head does not fit: {e}. Pass --new-head to replace the head "
                                f"with a fresh one for this data.") from None
        return base
    return GPT2(base.backbone, fresh())


def build_classifier(
    mode: str, base: GPT2 | None, config: GPT2Config, labels: list[str], cfg: TrainConfig, new_head: bool = False,
    tokenizer=None,
) -> GPT2:
    """``build_model`` with a classification head for ``labels``."""
    return build_model(mode, base, config, types.SimpleNamespace(label_names=list(labels)), cfg,
                       ClassificationHead, new_head, tokenizer)


def finetune(
    model: GPT2,
    data: Dataset,
    tokenizer,
    cfg: TrainConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after_step: int | None = None,
    feature_cache: dict | None = None,
    keep_state: bool = True,
    keep_best: bool = True,
) -> RunResult:
    """Train ``model`` (backbone + a task head: its loss, metrics and batches) on ``data`` per ``cfg``.

    ``feature_cache`` (probe mode): a dict kept by the caller across runs, so
    that frozen-backbone features of the same texts are computed once.

    With ``out``, writes ``out/best`` (the best checkpoint by validation
    ``head.best_metric``, loadable by ``load_pretrained``), ``out/metrics.jsonl``,
    ``out/result.json`` and ``out/state`` (for resuming; removed once the
    run has finished). Re-running with the same ``out`` resumes an interrupted
    run, or returns a finished one as is. ``stop_after_step`` simulates an
    interruption (tests).

    ``keep_state=False`` writes neither the resumable state at each evaluation
    nor ``out/best`` at each improvement, only ``out/best`` once at the end:
    an interrupted run then leaves no ``best`` and starts over when re-run.
    ``compare`` runs dozens of short runs this way, where saving weights and
    optimizer state at every evaluation would cost more than redoing a run.
    ``keep_best=False`` (with ``keep_state=False``) writes no ``out/best`` at
    all: the run's metrics and result only (``compare``'s default, where 48
    checkpoints of a 124M model would take 24 GB).
    """

    from minitransfer.convert import save_pretrained

    t_start = time.perf_counter()
    out = Path(out) if out is not None else None
    head: TaskHead = model.head
    if not isinstance(head, TaskHead) or head.best_metric is None:
        raise TrainingError(f"fine-tuning needs a task head; this model's head is {type(head).__name__}")
    try:
        head.check_data(data)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if cfg.max_len > model.config.n_positions:
        raise TrainingError(
            f"--max-len {cfg.max_len} exceeds the model's n_positions={model.config.n_positions}; "
            f"use --max-len {model.config.n_positions} or less"
        )
    if cfg.lr is None:
        cfg = dataclasses.replace(cfg, lr=default_lr(cfg.mode, model.config))
    if cfg.eval_batch_size is None:
        cfg = dataclasses.replace(cfg, eval_batch_size=eval_batch_default())
    if len(tokenizer) > model.config.vocab_size:
        raise TrainingError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}: token ids would fall outside the embedding table. Use the "
            f"tokenizer saved with the model."
        )
    if out is not None:
        check_run_folder(out)
    rows = data_fingerprint(data)
    # a run made before 2026-11-27 was keyed without its data's rows (legacy_key): still this run (its spec,
    # sizes, labels, settings and weights match; its rows were not recorded, so cannot be checked)
    run_key, legacy_key = _run_keys(cfg, data, model, tokenizer, rows)
    if out is not None and (out / "result.json").exists():
        done = json.loads((out / "result.json").read_text())
        if done.get("run_key") != run_key and not (done.get("run_key") == legacy_key and "data_rows" not in done):
            now = json.loads(json.dumps(dataclasses.asdict(cfg)))  # as result.json stores it
            there = done.get("config", {})
            differ = [f"{k}: {there.get(k)!r} there, {v!r} now" for k, v in now.items()
                      if k not in RUN_KEY_IGNORES and there.get(k) != v]
            if done.get("data_rows") not in (None, rows):
                differ.append(f"{DATA_ROWS}: {done['data_rows']!r} there, {rows!r} now")
            raise TrainingError(f"{out} holds a finished run with other " + (
                f"settings ({'; '.join(differ)})" if differ else OTHER_RUN)
                + "; choose another --out or delete it")
        log(f"{out}: this run already finished (best step {done['best_step']}); skipping")
        return RunResult(out, done["best_step"], done["best_val"], done["test"], done["steps"],
                         done["steps_per_second"], done["wall_seconds"], _read_log(out), done.get("seconds", {}))

    # -- data: the head says what its batches hold (budget, validation subset, encoding)
    seconds = {"prepare": 0.0, "train": 0.0, "validate": 0.0, "test": 0.0}
    t_phase = time.perf_counter()
    prepared = head.prepare(data, tokenizer, max_len=cfg.max_len, budget=cfg.labels, seed=cfg.seed,
                            val_examples=cfg.val_examples, log=log)
    enc = {name: examples for name, (_, examples) in prepared.items()}

    # -- what is trained, and on what ----------------------------------------
    if get_mode(cfg.mode).frozen_backbone:
        if not isinstance(head, ClassificationHead):
            raise TrainingError(
                f"mode {cfg.mode!r} caches one pooled feature vector per text, which only the classification "
                f"head reads; the {head.kind} head reads every position: use full, adapt or scratch"
            )
        log(f"{cfg.mode}: computing frozen-backbone features once for {sum(len(e) for e in enc.values())} examples")
        arrays = {name: {"features": backbone_features(model, e, cfg.eval_batch_size, feature_cache, e.texts,
                                                       cfg.dtype, progress=f"{name} features" if progress else None),
                         "labels": e.labels}
                  for name, e in enc.items()}
        net, forward, loss = head, forward_features, CLASSIFY_FEATURES
    else:
        arrays = {name: a for name, (a, _) in prepared.items()}
        net, forward, loss = model, eval_forward(head), CLASSIFY_TOKENS
    seconds["prepare"] = time.perf_counter() - t_phase
    graphdef, params = nnx.split(net)
    n_train = len(enc["train"])
    batch_size = fit_batch_size(cfg.batch_size, n_train, "training examples", log)
    # the run as it trains: its steps, batches and state key use the fitted batch; result.json keeps the
    # settings as asked (so that the same command finds its finished run) and the batch used beside them
    asked, cfg = cfg, dataclasses.replace(cfg, batch_size=batch_size)
    suffix = "" if batch_size == asked.batch_size else f"-batch{batch_size}"
    state_key = run_key + suffix
    best = head.best_metric
    total = cfg.total_steps(n_train)
    eval_every = cfg.eval_every or max(1, total // 10)
    opt_state, parallel, train_step = setup_training(
        cfg, graphdef, params, loss, total, model.config.n_layer)
    eval_step = make_eval_step(graphdef, forward, cfg.dtype)

    def validate(params):
        t = time.perf_counter()
        val = head.metrics(predict(eval_step, params, arrays["validation"], cfg.eval_batch_size), enc["validation"])
        seconds["validate"] += time.perf_counter() - t
        return {f"val_{k}": v for k, v in val.items()}

    def write_best(params, step):
        save_pretrained(_with_params(graphdef, params, model, cfg.mode), out / "best", tokenizer,
                        extra={"max_len": cfg.max_len, "mode": cfg.mode, "step": step,
                               "val_examples": len(enc["validation"]), "dtype": cfg.dtype, **data_record(data)})

    def save_best(params, step, metrics):
        nonlocal saving
        t = time.perf_counter()
        if out is not None and keep_state:
            write_best(params, step)
        saving += time.perf_counter() - t

    train_arrays = arrays["train"]
    saving = 0.0
    loop = train_loop(
        params=params, opt_state=opt_state, train_step=train_step,
        get_batch=lambda step: {k: v[batch_indices(step, cfg.batch_size, n_train, cfg.seed)] for k, v in train_arrays.items()},
        total=total, eval_every=eval_every, validate=validate,
        is_better=head.better, on_best=save_best,
        seed=cfg.seed, lrs=lr_values(cfg, total), lr=cfg.lr,
        out=out, run_key=state_key, desc=cfg.mode, progress=progress, log=log,
        stop_after_step=stop_after_step, postfix=lambda m: {f"val_{best}": f"{m[f'val_{best}']:.3f}"},
        parallel=parallel, resumable=keep_state, also_accept=(legacy_key + suffix,),
        settings={**{k: v for k, v in json.loads(json.dumps(dataclasses.asdict(cfg))).items()
                     if k not in RUN_KEY_IGNORES}, DATA_ROWS: rows},
    )
    best_val = {k[4:]: v for k, v in loop.best_metrics.items() if k.startswith("val_")}
    if loop.interrupted:
        return RunResult(out, loop.best_step, best_val, {}, loop.step, 0.0, time.perf_counter() - t_start, loop.history)

    # the loop's time, less its validations and checkpoints: the steps (and their compiling)
    seconds["train"] = max(0.0, loop.last_call_seconds - seconds["validate"] - saving - loop.state_seconds)

    # -- test the best checkpoint ---------------------------------------------
    t_phase = time.perf_counter()
    test = head.metrics(predict(eval_step, loop.best_params, arrays["test"], cfg.eval_batch_size,
                                "test" if progress else None), enc["test"])
    seconds["test"] = time.perf_counter() - t_phase
    nnx.update(net, loop.best_params)  # the trained weights go back into the caller's model
    if out is not None and not keep_state and keep_best:  # best/ was not written along the way
        write_best(loop.best_params, loop.best_step)
    # a resumed run's wall time counts the training loops of the calls before this one (their state
    # kept them); what those calls spent outside their loops (loading, encoding) is not known
    earlier = max(0.0, loop.train_seconds - loop.last_call_seconds)
    wall = time.perf_counter() - t_start + earlier
    seconds["other"] = max(0.0, wall - earlier - sum(seconds.values()))
    if earlier:
        seconds["earlier_calls"] = earlier
    seconds = {k: round(v, 3) for k, v in seconds.items()}
    result = RunResult(out, loop.best_step, best_val, test, loop.step, loop.steps_per_second,
                       wall, loop.history, seconds)
    if out is not None:
        (out / "result.json").write_text(json.dumps({
            "run_key": run_key, "data_rows": rows, "mode": cfg.mode, "best_step": loop.best_step, "best_val": best_val,
            "test": test, "steps": loop.step, "steps_per_second": loop.steps_per_second,
            "wall_seconds": result.wall_seconds, "seconds": seconds, "n_train": n_train,
            "config": dataclasses.asdict(asked), "batch_size_used": batch_size,
            # what the run did, whichever of epochs and steps it was given (config keeps both, as asked)
            "epochs_trained": round(loop.step * batch_size / n_train, 3),
            "truncated": {name: e.n_truncated for name, e in enc.items()},
        }, indent=2) + "\n")
        # result.json marks the run finished; the state for resuming it (weights, optimizer
        # state and the best weights: four copies of the model) is no longer needed
        shutil.rmtree(out / "state", ignore_errors=True)
        shutil.rmtree(out / "state.new", ignore_errors=True)  # left by a crash while saving, if any
    return result


def check_run_folder(out: str | Path) -> None:
    """A run writes (and at its end removes) files in ``out``: refuse a
    folder that holds anything else (hidden files aside), before any work."""
    out = Path(out)
    if not out.is_dir():
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES and not p.name.startswith("."))
    if foreign:
        from minitransfer.outdir import MARKS

        # another command's folder: say whose, as that command's own check does
        owner = next((c for c, marks in MARKS.items() if c != "finetune" and set(marks) & set(foreign)), None)
        whose = f"a `minitransfer {owner}` run's files" if owner else "files that are not a training run's"
        raise TrainingError(f"--out {out} holds {whose} ({', '.join(foreign[:5])}"
                            f"{' ...' if len(foreign) > 5 else ''}); a run would write among them: choose an "
                            f"empty or new folder")


def _with_params(graphdef, params, model: GPT2, mode: str) -> GPT2:
    """The full model carrying the current trained weights (for saving)."""
    trained = nnx.merge(graphdef, params)
    if get_mode(mode).frozen_backbone:
        return GPT2(model.backbone, trained)
    return trained


# what a run's folder holds (finetune's own files; mode adapt's next-word stage)
RUN_FILES = {"best", "state", "state.new", "metrics.jsonl", "result.json", "adapted"}

# how messages name the data's fingerprint (data_fingerprint) among a run's settings
DATA_ROWS = "the data's rows (a hash of every text and label)"

# settings that do not change what a run computes: how big its evaluation batches
# are, and where it runs
RUN_KEY_IGNORES = ("eval_batch_size", "parallel")


def data_fingerprint(data) -> str:
    """A hash of every row of every split (texts, labels, answers: all of a
    split's fields), so that a run re-run on an edited file is not taken for
    the same run. The spec and sizes alone would miss a changed label."""
    import hashlib

    h = hashlib.sha256()
    for name in ("train", "validation", "test"):
        split = data.split(name)
        for field in dataclasses.fields(split):
            value = getattr(split, field.name)
            h.update(field.name.encode())
            if isinstance(value, np.ndarray):
                h.update(str(value.dtype).encode() + np.ascontiguousarray(value).tobytes())
            else:
                h.update(json.dumps(value, default=str).encode())
    h.update(json.dumps(getattr(data, "label_names", None)).encode())
    return h.hexdigest()[:16]


def _run_keys(cfg: TrainConfig, data: Dataset, model: GPT2, tokenizer, rows: str) -> tuple[str, str]:
    """What makes a run the same run: settings, data (its ``rows`` too),
    tokenizer and starting weights; and the same key as minitransfer made it
    before it hashed the rows (runs made then are still found)."""
    import hashlib

    d = dataclasses.asdict(cfg)
    if d.get("head_bias") is True:  # the default, as every run before the option had: their keys stay as they were
        del d["head_bias"]
    d["weights"] = weights_fingerprint(model)
    d["tokenizer"] = [len(tokenizer), tokenizer.encode("minitransfer: the same tokenizer?")]
    for k in RUN_KEY_IGNORES:
        d.pop(k, None)
    for k in ("prompt", "label_words"):  # read by the prompt modes only: a run of another mode keys as before
        if d.get(k) is None:
            d.pop(k, None)
    d["data"] = data.spec
    d["n"] = [len(data.train), len(data.validation), len(data.test)]
    d["labels_names"] = getattr(data, "label_names", None)
    d["model"] = dataclasses.asdict(model.config)
    key = lambda d: hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]  # noqa: E731
    return key({**d, "rows": rows}), key(d)


def evaluate(model: GPT2, data, tokenizer, split: str = "test", max_len: int | None = None,
             batch_size: int | None = None, val_examples: int | None = None,
             log: Callable[[str], None] = lambda message: None, dtype: str = "float32") -> dict:
    """The head's metrics (accuracy, macro-F1, loss and n for a classifier;
    exact match and F1 for a span head) on one split.

    ``val_examples`` picks the same fixed validation subset that ``finetune``
    validated on, so its logged metrics can be reproduced (in the ``dtype``
    it computed in: bfloat16 rounds differently). ``log`` hears what
    the head's encoding noticed (QA answers not in their context, say)."""
    head = model.head
    if not isinstance(head, TaskHead) or head.best_metric is None:
        raise TrainingError("this model has no task head; evaluate needs a fine-tuned model")
    try:
        head.check_data(data)
    except ValueError as e:
        raise TrainingError(f"{e}; evaluate needs data labelled as the model's training data was") from None
    data.split(split)  # an unknown split name fails here, with the names there are
    arrays, examples = head.prepare(data, tokenizer, max_len=max_len or model.config.n_positions, budget=None,
                                    seed=0, val_examples=val_examples, log=log, splits=(split,),
                                    training=False)[split]
    graphdef, params = nnx.split(model)
    check_dtype(dtype)
    eval_step = make_eval_step(graphdef, eval_forward(head), dtype)
    metrics = head.metrics(predict(eval_step, params, arrays, batch_size or eval_batch_default()), examples)
    metrics["n_truncated"] = examples.n_truncated
    return metrics
