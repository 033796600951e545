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
  learn more slowly: ``lr_decay_per_layer``);
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
import hashlib
import json
import math
import types
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from minitransfer.classify import ClassificationHead
from minitransfer.convert import save_pretrained
from minitransfer.data import Dataset, data_record
from minitransfer.encoding import batch_indices, fit_batch_size
from minitransfer.errors import TrainingError
from minitransfer.heads import TaskHead
from minitransfer.loop import LoopResult, Schedule, Validation, train_loop
from minitransfer.lora import save_adapters
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config
from minitransfer.modes import MODES, get_mode
from minitransfer.optim import check_optimizer_settings, lr_values
from minitransfer.prompting import DEFAULT_PROMPTS, PromptHead
from minitransfer.runs import RunFolder, Stopwatch, check_out_folder, run_key
from minitransfer.steps import (
    CLASSIFY_FEATURES,
    CLASSIFY_TOKENS,
    backbone_features,
    check_dtype,
    eval_batch_default,
    eval_forward,
    forward_features,
    make_eval_step,
    predict,
    setup_training,
    split_trained,
    weights_fingerprint,
    within,
)


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
    head_bias: bool = (
        True  # False: a classification head transformers' GPT2ForSequenceClassification loads (with last pooling)
    )
    head_dropout: float = 0.1
    eval_batch_size: int | None = None  # None: steps.eval_batch_default() (32 on a CPU, 64 on an accelerator)
    # modes that keep the next-word head (zero, prompt: prompting.py): the prompt after each text, and a
    # word per label in the labels' order; None: prompting's defaults
    prompt: str | None = None
    label_words: tuple[str, ...] | None = None
    parallel: str = "none"  # none | data | fsdp (see parallel.py)
    dtype: str = "float32"  # compute precision: float32 | bfloat16 (mixed precision, see cast_for_compute)
    unfreeze: int = 1  # mode top: how many of the last blocks train (with the final LayerNorm and the head)
    lora_rank: int = 8  # mode lora: the adapters' rank r
    lora_alpha: float = 16.0  # mode lora: the adapters' output is scaled by lora_alpha / lora_rank

    def __post_init__(self):
        check_dtype(self.dtype)
        if get_mode(self.mode).trains_nothing:
            raise ValueError(
                f"mode {self.mode!r} trains nothing: `minitransfer compare --modes {self.mode}` scores "
                f"it on the test split, and mode prompt fine-tunes from it"
            )
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; expected 'linear' or 'cosine'")
        if self.max_len is not None and self.max_len < 1:  # steps, batch_size, eval_every: check_optimizer_settings
            raise ValueError(f"`max_len` must be at least 1, got {self.max_len}")
        if self.val_examples is not None and self.val_examples < 1:  # (None: the command line's 0, all of them)
            raise ValueError(
                f"`val_examples` must be at least 1 (or 0 on the command line, None here: the whole "
                f"validation split), got {self.val_examples}"
            )
        if not 0 < self.epochs < float("inf"):
            raise ValueError(f"`epochs` must be a positive, finite number, got {self.epochs}")
        if (
            self.labels is not None
            and self.labels != "all"
            and not (
                isinstance(self.labels, int)
                and self.labels >= 1
                or isinstance(self.labels, str)
                and self.labels.isdecimal()
                and int(self.labels) >= 1
            )
        ):
            raise ValueError(f"`labels` must be a number of examples (at least 1) or 'all', got {self.labels!r}")
        check_optimizer_settings(self)
        if not 0 < self.lr_decay_per_layer <= 1:
            raise ValueError(f"`lr_decay_per_layer` must be in (0, 1], got {self.lr_decay_per_layer:g}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"the head's dropout must be in [0, 1), got {self.head_dropout:g}")
        if self.unfreeze < 1:  # (its upper bound, the model's depth: modes.top_blocks)
            raise ValueError(
                f"`unfreeze` must be at least 1 (the number of top blocks that train), got {self.unfreeze}"
            )
        if self.lora_rank < 1:
            raise ValueError(f"`lora_rank` must be at least 1, got {self.lora_rank}")
        if not 0 < self.lora_alpha < float("inf"):
            raise ValueError(f"`lora_alpha` must be a positive, finite number, got {self.lora_alpha:g}")

    def resolved(self, config: GPT2Config) -> TrainConfig:
        """These settings with the defaults that depend on the model and device filled in."""
        return dataclasses.replace(
            self,
            lr=self.lr or default_lr(self.mode, config),
            eval_batch_size=self.eval_batch_size or eval_batch_default(),
        )

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

    RECORDED = ("best_step", "best_val", "test", "steps", "steps_per_second", "wall_seconds", "seconds")

    def record(self) -> dict:
        """What result.json keeps of it."""
        return {k: getattr(self, k) for k in self.RECORDED}

    @classmethod
    def of(cls, out, record: dict, history: list[dict]) -> RunResult:
        """A finished run's result, read back from its record."""
        return cls(out, *(record[k] for k in cls.RECORDED[:-1]), history, record["seconds"])

    @classmethod
    def of_loop(cls, out, loop: LoopResult, test: dict, watch: Stopwatch) -> RunResult:
        """A run's result from its loop's, its test metrics and the run's stopwatch (``run_seconds``)."""
        seconds, wall = run_seconds(watch, loop)
        best_val = {k[4:]: v for k, v in loop.best_metrics.items() if k.startswith("val_")}
        return cls(out, loop.best_step, best_val, test, loop.step, loop.steps_per_second, wall, loop.history, seconds)


def build_model(
    mode: str,
    base: GPT2 | None,
    config: GPT2Config,
    data,
    cfg: TrainConfig,
    head_cls: type[TaskHead] = ClassificationHead,
    new_head: bool = False,
    tokenizer=None,
) -> GPT2:
    """The model to train: a backbone (pretrained, or random for ``scratch``)
    plus a ``head_cls`` head for ``data``: the checkpoint's own head when it
    is of that kind and fits the data (unless ``new_head``), a fresh one
    otherwise. A mode that keeps the next-word head (``Mode.head == "prompt"``)
    gets a ``PromptHead``, whose label words the ``tokenizer`` turns into ids."""

    def fresh():
        return head_cls.for_data(
            config.n_embd, data, dropout=cfg.head_dropout, seed=cfg.seed, pooling=cfg.pooling, bias=cfg.head_bias
        )

    if get_mode(mode).head == "prompt":
        if head_cls is not ClassificationHead or tokenizer is None:
            raise TrainingError(
                f"mode {mode!r} keeps the next-word head as a classifier: it needs a classification "
                f"task and the model's tokenizer"
            )
        assert base is not None
        backbone = nnx.clone(base).backbone
        try:
            head = PromptHead.for_tokenizer(
                tokenizer,
                data.label_names,
                backbone,
                words=cfg.label_words,
                prompt=cfg.prompt or DEFAULT_PROMPTS[0],
                dropout=cfg.head_dropout,
            )
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
            raise TrainingError(
                f"the checkpoint's head does not fit: {e}. Pass `new_head` to replace the head "
                f"with a fresh one for this data."
            ) from None
        return base
    return GPT2(base.backbone, fresh())


def build_classifier(
    mode: str,
    base: GPT2 | None,
    config: GPT2Config,
    labels: list[str],
    cfg: TrainConfig,
    new_head: bool = False,
    tokenizer=None,
) -> GPT2:
    """``build_model`` with a classification head for ``labels``."""
    return build_model(
        mode,
        base,
        config,
        types.SimpleNamespace(label_names=list(labels)),
        cfg,
        ClassificationHead,
        new_head,
        tokenizer,
    )


def finetune(
    model: GPT2,
    data: Dataset,
    tokenizer,
    cfg: TrainConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    feature_cache: dict | None = None,
    keep_state: bool = True,
    keep_best: bool = True,
) -> RunResult:
    """Train ``model`` (backbone + a task head: its loss, metrics and batches) on ``data`` per ``cfg``.

    With ``out``: ``out/best`` (the best checkpoint by validation), ``out/metrics.jsonl``, ``out/result.json``;
    the same ``out`` again resumes an interrupted run or returns a finished one (``runs.py``). ``feature_cache``:
    probe's features kept across runs. ``keep_state=False``: nothing saved along the way, ``out/best`` at the end
    (``keep_best=False``: not even that), for compare's short runs, cheaper to redo than to save at each validation.
    """
    # ---- the run: its settings, and whether it has finished already ----------
    watch, mode = Stopwatch(), get_mode(cfg.mode)
    head = check_fits(model, data, tokenizer, cfg)
    cfg = cfg.resolved(model.config)
    run = open_run(model, data, tokenizer, cfg, out, keep_state)
    if (done := run.finished()) is not None:
        log(f"{out}: this run already finished (best step {done['best_step']}); skipping")
        return RunResult.of(run.out, done, run.history())

    # ---- data: the head says what its batches hold (budget, validation subset, encoding), and what trains
    with watch("prepare"):
        prepared = prepare_run(head, data, tokenizer, cfg, log)
        enc = {name: examples for name, (_, examples) in prepared.items()}
        net, arrays, forward, loss, trains = what_trains(model, cfg, prepared, feature_cache, progress, log)

    # ---- optimizer and steps ----------------------------------------------------
    graphdef, params, rest = split_trained(net, trains)  # rest: what stays frozen (None: nothing)
    asked, n_train = cfg, len(enc["train"])  # asked: the settings as given, for the record
    cfg = dataclasses.replace(cfg, batch_size=fit_batch_size(cfg.batch_size, n_train, "training examples", log))
    total = cfg.total_steps(n_train)
    opt_state, parallel, train_step = setup_training(cfg, graphdef, params, loss, total, model.config.n_layer, rest)
    eval_step = make_eval_step(graphdef, forward, cfg.dtype, rest)

    def validate(params):
        val = head.metrics(predict(eval_step, params, arrays["validation"], cfg.eval_batch_size), enc["validation"])
        return {f"val_{k}": v for k, v in val.items()}

    def save_best(params, step, metrics=None):
        trained = _with_params(net, params, model)
        card = {"max_len": cfg.max_len, "mode": cfg.mode, "val_examples": len(enc["validation"]), "dtype": cfg.dtype}
        extra = {**card, "step": step, **data_record(data)}
        save_pretrained(mode.finished(nnx.clone(trained)), run.out / "best", tokenizer, extra=extra)
        save_adapters(trained, run.out / "best")  # lora: the adapters alone too (the other modes have none)

    def get_batch(step):
        return {k: v[batch_indices(step, cfg.batch_size, n_train, cfg.seed)] for k, v in arrays["train"].items()}

    # ---- train ------------------------------------------------------------------
    schedule = Schedule(total, cfg.eval_every or max(1, total // 10), lr_values(cfg, total), cfg.seed)
    best = f"val_{head.best_metric}"
    on_best = save_best if out and keep_state else None  # (compare's runs: best/ once, at the end)
    validation = Validation(validate, head.better, on_best, lambda m: {best: f"{m[best]:.3f}"})
    how = {"progress": progress, "log": log, "parallel": parallel}
    loop = train_loop(params, opt_state, train_step, get_batch, schedule, validation, run, desc=cfg.mode, **how)

    # ---- test the best weights ----------------------------------------------------
    with watch("test"):
        outputs = predict(
            eval_step, loop.best_params, arrays["test"], cfg.eval_batch_size, "test" if progress else None
        )
        test = head.metrics(outputs, enc["test"])
    # the trained weights go back into the caller's model (lora's merged into its plain weights)
    nnx.update(model, nnx.state(mode.finished(_with_params(net, loop.best_params, model))))
    if out is not None and not keep_state and keep_best:  # best/ was not written along the way
        save_best(loop.best_params, loop.best_step)

    # ---- record -------------------------------------------------------------------
    result = RunResult.of_loop(run.out, loop, test, watch)
    run.finish({**result.record(), **what_ran(asked, cfg, enc)})
    return result


def prepare_run(head: TaskHead, data, tokenizer, cfg: TrainConfig, log: Callable[[str], None]) -> dict:
    """The head's arrays and examples for a run of ``cfg``: its budget of training examples, the fixed
    validation subset, the test split (``TaskHead.prepare``)."""
    return head.prepare(
        data, tokenizer, max_len=cfg.max_len, budget=cfg.labels, seed=cfg.seed, val_examples=cfg.val_examples, log=log
    )


def what_ran(asked: TrainConfig, trained: TrainConfig, enc: dict) -> dict:
    """What result.json records of a run beside its result: the settings as asked (a re-run finds its
    run by them), the batch it trained with, the epochs that made (whichever of epochs and steps it was
    given) and how many texts of each split were cut to max_len."""
    n_train = len(enc["train"])
    return {
        "mode": trained.mode,
        "n_train": n_train,
        "config": dataclasses.asdict(asked),
        "batch_size_used": trained.batch_size,
        "truncated": {name: e.n_truncated for name, e in enc.items()},
        "epochs_trained": round(trained.total_steps(n_train) * trained.batch_size / n_train, 3),
    }


def open_run(model: GPT2, data, tokenizer, cfg: TrainConfig, out, keep_state: bool) -> RunFolder:
    """The run's folder (``runs.py``), keyed by what makes this run the one it
    is: its settings (the data's rows among them, the options of other modes
    not), the data's name and sizes, the tokenizer, the model's shape and
    starting weights."""
    if out is not None:
        check_out_folder(out, "finetune")
    settings = {
        **{k: v for k, v in dataclasses.asdict(cfg).items() if k not in ignored_settings(cfg.mode)},
        "data_rows": data_rows_hash(data),
    }
    key = run_key(
        {
            **settings,
            "weights": weights_fingerprint(model),
            "data": data.spec,
            "tokenizer": [len(tokenizer), tokenizer.encode("minitransfer: the same tokenizer?")],
            "n": [len(data.train), len(data.validation), len(data.test)],
            "label_names": getattr(data, "label_names", None),
            "model": dataclasses.asdict(model.config),
        }
    )
    return RunFolder(out, key, settings, resumable=keep_state)


def what_trains(model: GPT2, cfg: TrainConfig, prepared: dict, feature_cache: dict | None, progress: bool, log):
    """(net, arrays, forward, loss, trains): the module the optimizer sees, the
    arrays it trains and is evaluated on, its forward pass and loss, and the
    mode's filter of what in ``net`` trains. A mode whose filter leaves the
    backbone frozen trains the head alone on the backbone's features,
    computed once (and kept in ``feature_cache`` across runs); lora trains a
    copy of the model with adapters (``Mode.prepared``)."""
    mode, head = get_mode(cfg.mode), model.head
    trains = mode.filter(cfg, model.config.n_layer)
    if not mode.frozen_backbone:
        arrays = {name: a for name, (a, _) in prepared.items()}
        return mode.prepared(model, cfg), arrays, eval_forward(head), CLASSIFY_TOKENS, trains
    if not isinstance(head, ClassificationHead):
        raise TrainingError(
            f"mode {cfg.mode!r} caches one pooled feature vector per text, which only the "
            f"classification head reads; the {head.kind} head reads every position: use full, "
            f"adapt or scratch"
        )
    enc = {name: examples for name, (_, examples) in prepared.items()}
    log(f"{cfg.mode}: computing frozen-backbone features once for {sum(len(e) for e in enc.values())} examples")
    arrays = {
        name: {
            "features": backbone_features(
                model,
                e,
                cfg.eval_batch_size,
                feature_cache,
                e.texts,
                cfg.dtype,
                progress=f"{name} features" if progress else None,
            ),
            "labels": e.labels,
        }
        for name, e in enc.items()
    }
    return head, arrays, forward_features, CLASSIFY_FEATURES, within("head", trains)


def check_fits(model: GPT2, data, tokenizer, cfg: TrainConfig) -> TaskHead:
    """The model's task head, where model, data, tokenizer and settings fit
    together; a TrainingError that says what does not, before any work."""
    head = model.head
    if not isinstance(head, TaskHead) or head.best_metric is None:
        raise TrainingError(f"fine-tuning needs a task head; this model's head is {type(head).__name__}")
    try:
        head.check_data(data)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if cfg.max_len > model.config.n_positions:
        raise TrainingError(
            f"`max_len` {cfg.max_len} exceeds the model's n_positions={model.config.n_positions}; "
            f"use `max_len` {model.config.n_positions} or less"
        )
    if len(tokenizer) > model.config.vocab_size:
        raise TrainingError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}: token ids would fall outside the embedding table. Use the "
            f"tokenizer saved with the model."
        )
    return head


def run_seconds(watch: Stopwatch, loop: LoopResult) -> tuple[dict, float]:
    """Where a fine-tuning run's wall time went, and the wall time: "prepare"
    (encoding; a frozen backbone's features), "train" (the optimizer steps,
    their compiling included), "validate", "test" and "other" (building the
    optimizer, saving checkpoints and state) of this call, and for a resumed
    run "earlier_calls" (the training loops of the calls it resumed: what
    those calls spent outside their loops is not known), adding up to it."""
    s = loop.seconds
    seconds = {
        "prepare": watch.seconds["prepare"],
        "train": max(0.0, s["loop"] - s.get("validate", 0) - s.get("on_best", 0) - s.get("save", 0)),
        "validate": s.get("validate", 0.0),
        "test": watch.seconds["test"],
    }
    earlier = max(0.0, loop.train_seconds - s["loop"])
    wall = watch.elapsed() + earlier
    seconds["other"] = max(0.0, wall - earlier - sum(seconds.values()))
    if earlier:
        seconds["earlier_calls"] = earlier
    return {k: round(v, 3) for k, v in seconds.items()}, wall


def _with_params(net, params, model: GPT2) -> GPT2:
    """A copy of the trained ``net`` (``model``, its head alone, or the copy
    its mode prepared) carrying the trained weights ``params``, as a whole
    model: ``model``'s backbone beside a head trained alone."""
    trained = nnx.clone(net)
    nnx.update(trained, params)
    return trained if isinstance(trained, GPT2) else GPT2(model.backbone, trained)


# settings that do not change what a run computes: how big its evaluation batches are, and where it runs
RUN_KEY_IGNORES = ("eval_batch_size", "parallel")


def ignored_settings(mode: str) -> set[str]:
    """The settings that do not make a run of ``mode`` what it is: the
    ``RUN_KEY_IGNORES`` and the options of other modes (``Mode.options``)."""
    others = {k for m in MODES.values() for k in m.options} - set(get_mode(mode).options)
    return {*RUN_KEY_IGNORES, *others}


def data_rows_hash(data) -> str:
    """A hash of every row of every split (texts, labels, answers: all of a
    split's fields), so that a run re-run on an edited file is not taken for
    the same run. The spec and sizes alone would miss a changed label."""
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


def evaluate(
    model: GPT2,
    data,
    tokenizer,
    split: str = "test",
    max_len: int | None = None,
    batch_size: int | None = None,
    val_examples: int | None = None,
    log: Callable[[str], None] = lambda message: None,
    dtype: str = "float32",
) -> dict:
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
    arrays, examples = head.prepare(
        data,
        tokenizer,
        max_len=max_len or model.config.n_positions,
        budget=None,
        seed=0,
        val_examples=val_examples,
        log=log,
        splits=(split,),
        training=False,
    )[split]
    graphdef, params = nnx.split(model)
    check_dtype(dtype)
    eval_step = make_eval_step(graphdef, eval_forward(head), dtype)
    metrics = head.metrics(predict(eval_step, params, arrays, batch_size or eval_batch_default()), examples)
    metrics["n_truncated"] = examples.n_truncated
    return metrics
