"""Fine-tuning a classifier, next-word pretraining, and the loop they share.

The same architecture (a GPT-2 backbone + a ``ClassificationHead``) is trained
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

``train_step`` and ``eval_step`` are pure functions of (weights, optimizer
state, batch, PRNG key), compiled once with ``jax.jit``. The batch order and
the dropout key of step ``s`` are functions of (seed, s) alone, which makes a
run reproducible and lets an interrupted run resume exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import types
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minitransfer.data import Dataset, Encoded, batch_indices
from minitransfer.heads import ClassificationHead, TaskHead, classification_metrics  # noqa: F401 (re-exported)
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config
from minitransfer.modes import MODES, get_mode
from minitransfer.parallel import Parallel

def default_lr(mode: str, config: GPT2Config) -> float:
    """Peak learning rate of a mode (modes.py). Full fine-tuning of a big
    pretrained model wants a small step (it should stay near what pretraining
    found); small models (n_embd <= 256) tolerate, and need, larger ones."""
    m = get_mode(mode)
    return m.lr_small if config.n_embd <= 256 else m.lr


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to change."""


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
    head_dropout: float = 0.1
    eval_batch_size: int = 64
    parallel: str = "none"  # none | data | fsdp (see parallel.py)
    dtype: str = "float32"  # compute precision: float32 | bfloat16 (mixed precision, see cast_for_compute)

    def __post_init__(self):
        check_dtype(self.dtype)
        get_mode(self.mode)
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"unknown schedule {self.schedule!r}; expected 'linear' or 'cosine'")
        for name in ("batch_size", "steps", "eval_every", "max_len", "val_examples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
        if self.epochs <= 0:
            raise ValueError(f"--epochs must be positive, got {self.epochs}")

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(self.epochs * n_train / self.batch_size))


# ----------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------


# ----------------------------------------------------------------------------
# Optimizer: AdamW, warmup + decay, clipping, no decay on biases/LayerNorm
# ----------------------------------------------------------------------------


def lr_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    warmup = int(round(cfg.warmup * total_steps))
    decay = optax.linear_schedule if cfg.schedule == "linear" else optax.cosine_decay_schedule
    if cfg.schedule == "linear":
        after = decay(cfg.lr, 0.0, max(1, total_steps - warmup))
    else:
        after = decay(cfg.lr, max(1, total_steps - warmup))
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), after], [warmup])


def _decay_mask(params):
    # Weight decay pulls weights towards 0. That regularises matrices
    # (kernels, embeddings); for biases and LayerNorm gains/offsets, 0 is not a
    # sensible prior, so they are left alone: exactly the arrays with ndim < 2.
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def layer_lr_factors(params, n_layer: int, decay: float):
    """Per-parameter learning-rate factors for discriminative fine-tuning.

    The head and the final LayerNorm learn at the full rate; block ``i`` at
    ``decay ** (n_layer - i)``; the embeddings at ``decay ** (n_layer + 1)``:
    general low-level features change least (ULMFiT, Howard & Ruder 2018).
    """

    def factor(path, _):
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        if "backbone" not in keys:
            return decay**0
        if "h" in keys:
            i = keys[keys.index("h") + 1]
            return decay ** (n_layer - int(i))
        if "wte" in keys or "wpe" in keys:
            return decay ** (n_layer + 1)
        return decay**0  # ln_f

    return jax.tree_util.tree_map_with_path(factor, params)


def scale_by_tree(factors) -> optax.GradientTransformation:
    """Multiply each parameter's update by its own constant factor."""

    def init(params):
        return optax.EmptyState()

    def update(updates, state, params=None):
        return jax.tree.map(lambda u, f: u * f, updates, factors), state

    return optax.GradientTransformation(init, update)


def make_optimizer(cfg: TrainConfig, params, total_steps: int, n_layer: int) -> optax.GradientTransformation:
    """AdamW without its learning rate: clipping, Adam's scaled update, decoupled
    weight decay and (full fine-tuning) per-layer factors. The step multiplies
    the result by ``-lr`` for the current step, which it receives as an
    argument (``lr_values``): the compiled step then does not depend on the
    schedule, so ``compare`` compiles it once and reuses it for every budget
    and seed. This is optax.adamw(schedule) computed in the same order."""
    if cfg.lr is None:
        raise ValueError("the learning rate is not set: give lr=..., or use default_lr(mode, config)")
    parts = [
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.scale_by_adam(b1=0.9, b2=0.999),
        optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask),
    ]
    if layer_decay(cfg) != 1.0:
        parts.append(scale_by_tree(layer_lr_factors(params, n_layer, cfg.lr_decay_per_layer)))
    return optax.chain(*parts)


def layer_decay(cfg) -> float:
    """The per-layer lr factor in effect: only where a pretrained backbone trains."""
    if not isinstance(cfg, TrainConfig):
        return 1.0
    m = get_mode(cfg.mode)
    return cfg.lr_decay_per_layer if m.pretrained and not m.frozen_backbone else 1.0


def lr_values(cfg, total_steps: int) -> np.ndarray:
    """The learning rate of every step 0 .. total_steps-1, computed once on the host."""
    return np.asarray(jax.vmap(lr_schedule(cfg, total_steps))(jnp.arange(total_steps)), dtype=np.float32)


# ----------------------------------------------------------------------------
# The jitted steps
# ----------------------------------------------------------------------------

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_dtype(name: str) -> None:
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown --dtype {name!r}; expected one of {sorted(COMPUTE_DTYPES)}")


def cast_for_compute(params, dtype: str):
    """The weights the forward pass computes with.

    ``bfloat16`` is mixed precision: the weights, their gradients and the
    optimizer state stay float32 (``params`` is the float32 master copy); only
    the copy the forward pass uses is cast, so matmuls and activations run in
    bfloat16, where GPUs and TPUs are several times faster. Gradients flow
    back through the cast and arrive in float32. Softmax and the loss are
    computed in float32 (see model.py and the loss functions); bfloat16 has
    float32's exponent range, so no loss scaling is needed. ``float32``
    returns ``params`` unchanged.
    """
    if dtype == "float32":
        return params
    target = COMPUTE_DTYPES[dtype]
    return jax.tree.map(lambda p: p.astype(target) if jnp.issubdtype(p.dtype, jnp.floating) else p, params)


def make_train_step(graphdef, loss_fn: Callable, tx: optax.GradientTransformation, out_shardings=None,
                    dtype: str = "float32"):
    """One optimizer step as a pure function, compiled once.

    ``loss_fn(net, batch, dropout_key) -> scalar`` where ``net`` is the module
    being trained (rebuilt from ``graphdef`` + ``params`` inside the trace).
    ``params`` holds only what is trained, so gradients and optimizer state
    exist only for it. ``out_shardings`` (params, opt_state) keeps sharded
    weights sharded across steps (see parallel.py); the step itself does not
    change. ``dtype`` is the compute precision (see ``cast_for_compute``).

    ``params`` and ``opt_state`` are *donated*: the step writes the new
    weights and optimizer state into the buffers of the old ones, which are
    invalid afterwards (pass copies if you still need them). Without this,
    every step allocates fresh memory for weights + both Adam moments (1.5 GB
    at the 124M shape) and the operating system has to fault in and zero
    every new page: about 0.5 s of a 4 s CPU step (benchmarks/train_step.py).
    """

    def loss_of_params(params, batch, key):
        return loss_fn(nnx.merge(graphdef, cast_for_compute(params, dtype)), batch, key)

    def train_step(params, opt_state, batch, key, lr):
        loss, grads = jax.value_and_grad(loss_of_params)(params, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)  # lr: this step's learning rate
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    if out_shardings is None:
        return jax.jit(train_step, donate_argnums=(0, 1))
    return jax.jit(train_step, donate_argnums=(0, 1), out_shardings=(*out_shardings, None))


# Compiled steps, kept for reuse: a run with the same model structure, loss
# and optimizer settings (compare runs dozens) skips tracing and compiling.
_COMPILED: dict = {}


def _cached(key, build: Callable):
    if key not in _COMPILED:
        _COMPILED[key] = build()
    return _COMPILED[key]


def setup_training(cfg, graphdef, params, loss_fn: Callable, total_steps: int, n_layer: int):
    """Optimizer state, device placement and the compiled step for one run:
    the part fine-tuning and pretraining share. ``loss_fn`` should be a
    module-level function (such as ``CLASSIFY_TOKENS``), so that runs share
    the compiled step."""
    tx = make_optimizer(cfg, params, total_steps, n_layer)
    opt_state = tx.init(params)
    parallel = Parallel(cfg.parallel)
    if parallel.mesh:
        shardings = (parallel.param_sharding(params), parallel.param_sharding(opt_state))
        return opt_state, parallel, make_train_step(graphdef, loss_fn, tx, shardings, cfg.dtype)
    key = ("train", graphdef, loss_fn, cfg.dtype, cfg.clip_norm, cfg.weight_decay,
           layer_decay(cfg), n_layer)
    return opt_state, parallel, _cached(key, lambda: make_train_step(graphdef, loss_fn, tx, None, cfg.dtype))


def make_eval_step(graphdef, forward: Callable, dtype: str = "float32"):
    """``eval_step(params, batch) -> forward(net, batch, None)``: no dropout,
    computed in ``dtype`` like training; float32 outputs. Compiled once per
    (model structure, forward, dtype) and reused."""

    def build():
        @jax.jit
        def eval_step(params, batch):
            return forward(nnx.merge(graphdef, cast_for_compute(params, dtype)), batch, None).astype(jnp.float32)

        return eval_step

    return _cached(("eval", graphdef, forward, dtype), build)


def classification_loss(forward: Callable) -> Callable:
    def loss_fn(net, batch, key):
        logits = forward(net, batch, key).astype(jnp.float32)  # (B, K); float32 under mixed precision too
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    return loss_fn


def forward_tokens(net: GPT2, batch, key):
    return net(batch["input_ids"], batch["attention_mask"], dropout_key=key)


def forward_features(net: ClassificationHead, batch, key):
    return net.classify(batch["features"], dropout_key=key)


def head_loss_tokens(net: GPT2, batch, key):
    """The model's own head's loss (``TaskHead.loss``), from token ids."""
    outputs = forward_tokens(net, batch, key).astype(jnp.float32)  # float32 under mixed precision too
    return net.head.loss(outputs, batch)


def head_loss_features(net: ClassificationHead, batch, key):
    """A frozen backbone's head alone, from cached pooled features."""
    return net.loss(forward_features(net, batch, key).astype(jnp.float32), batch)


# module-level, so that every run with the same model structure shares one compiled step
CLASSIFY_TOKENS = head_loss_tokens  # backbone + head from token ids
CLASSIFY_FEATURES = head_loss_features  # head alone from cached features


LENGTH_BUCKET = 16  # evaluation batches are cut to a multiple of this many tokens


def batched(arrays: dict[str, np.ndarray], batch_size: int, order: np.ndarray | None = None):
    """Fixed-size batches over all rows (the last one padded by repeating its
    first row, with ``n_real`` saying how many rows count), so eval compiles
    once per shape. With ``order``, rows are taken in that order, and token
    arrays (those beside an ``attention_mask``) are cut to the batch's longest
    row rounded up to ``LENGTH_BUCKET``: right padding that no row needs costs
    compute but cannot change a real token's output (attention is causal and
    pooling is masked), so evaluating short texts together is faster and gives
    the same results."""
    n = len(next(iter(arrays.values())))
    order = np.arange(n) if order is None else order
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        pad = batch_size - len(idx)
        full = np.concatenate([idx, np.full(pad, idx[0])]) if pad else idx
        batch = {k: v[full] for k, v in arrays.items()}
        if "attention_mask" in batch:
            T = batch["attention_mask"].shape[1]
            used = int(batch["attention_mask"].sum(1).max())
            cut = min(T, max(LENGTH_BUCKET, -(-used // LENGTH_BUCKET) * LENGTH_BUCKET))
            batch = {k: (v[:, :cut] if v.ndim == 2 and v.shape[1] == T else v) for k, v in batch.items()}
        yield batch, len(idx)


def length_order(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """Rows sorted by token count (stable), or None when there are no tokens."""
    if "attention_mask" not in arrays:
        return None
    return np.argsort(arrays["attention_mask"].sum(1), kind="stable")


def predict(eval_step, params, arrays: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    """eval_step over all rows, in length-sorted batches; outputs in row order."""
    order = length_order(arrays)
    out = []
    T = arrays["attention_mask"].shape[1] if "attention_mask" in arrays else None
    for batch, n_real in batched(arrays, batch_size, order):
        o = np.asarray(eval_step(params, batch))[:n_real]
        if o.ndim >= 3 and T is not None and o.shape[1] < T:  # per-token outputs (B, cut, ...): back to (B, T, ...)
            o = np.pad(o, [(0, 0), (0, T - o.shape[1])] + [(0, 0)] * (o.ndim - 2))
        out.append(o)
    out = np.concatenate(out)
    if order is None:
        return out
    unsorted = np.empty_like(out)
    unsorted[order] = out
    return unsorted


def _pooled_features(net: GPT2, batch, key):
    hidden = net.backbone(batch["input_ids"], batch["attention_mask"])  # (B, T, C)
    return net.head.features(hidden, batch["attention_mask"])  # (B, C)


def backbone_features(model: GPT2, enc: Encoded, batch_size: int, cache: dict | None = None,
                      texts: list[str] | None = None, dtype: str = "float32") -> np.ndarray:
    """Pooled hidden states (N, C) of the frozen backbone, computed once.

    This is what makes probing fast: the expensive part of the network runs
    once per example instead of once per example per epoch. With ``cache``
    (a dict the caller keeps) and the examples' ``texts``, features already
    computed for the same weights, pooling and length are reused: ``compare``
    computes each test and validation text's features once, not once per run."""
    graphdef, params = nnx.split(model)
    features = make_eval_step(graphdef, _pooled_features, dtype)
    arrays = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
    if cache is None or texts is None:
        return predict(features, params, arrays, batch_size)
    key = (weights_fingerprint(model.backbone), model.head.pooling, enc.input_ids.shape[1], dtype)
    store = cache.setdefault(key, {})
    todo = np.asarray([i for i, t in enumerate(texts) if t not in store], dtype=np.int64)
    if len(todo):
        new = predict(features, params, {k: v[todo] for k, v in arrays.items()}, batch_size)
        store.update({texts[i]: f for i, f in zip(todo, new)})
    return np.stack([store[t] for t in texts])


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
) -> LoopResult:
    """Run ``train_step`` from the current step to ``total``.

    Every ``eval_every`` steps (and at the end): ``validate(params)`` -> metrics,
    logged to ``out/metrics.jsonl``; the best metrics so far (``is_better``)
    trigger ``on_best`` (e.g. save a checkpoint); and the whole training state
    goes to ``out/state`` so that re-running resumes here. Batch ``s`` is
    ``get_batch(s)`` and its dropout key ``fold_in(key(seed), s)``: both
    functions of the step alone, so a resumed run repeats an uninterrupted one
    exactly.
    """
    from tqdm.auto import tqdm

    step, history, seconds_before = 0, [], 0.0
    best = {"step": -1, "metrics": None, "params": None}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        state_dir = out / "state"
        if (state_dir / "state.json").exists():
            st = json.loads((state_dir / "state.json").read_text())
            if st.get("run_key") != run_key:
                raise TrainingError(
                    f"{out} holds a different run (other data, mode or settings); choose another --out "
                    f"or delete it"
                )
            params = _load_tree(params, state_dir / "params.safetensors")
            opt_state = _load_tree(opt_state, state_dir / "opt_state.safetensors")
            step = st["step"]
            seconds_before = st.get("train_seconds", 0.0)
            history = _read_log(out)[: st["n_log"]]
            best = {"step": st["best_step"], "metrics": st["best_metrics"], "params": None}
            if (state_dir / "best_params.safetensors").exists():
                best["params"] = _load_tree(params, state_dir / "best_params.safetensors")
            log(f"{out}: resuming at step {step} of {total}")
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
    t_loop, steps_run = time.perf_counter(), 0
    # The losses stay on the device until the next evaluation: reading each
    # one back at once would make the host wait for every step to finish
    # before queueing the next, which leaves a GPU idle between small steps.
    pending: list = []
    loss = float("nan")
    while step < total:
        batch = place_batch(get_batch(step))
        params, opt_state, m = train_step(params, opt_state, batch, jax.random.fold_in(base_key, step), lrs[step])
        pending.append(m["loss"])
        step += 1
        steps_run += 1
        bar.update(1)
        if step % eval_every == 0 or step == total:
            losses = np.asarray(jax.device_get(pending), dtype=np.float64)  # (steps since the last check,)
            bad = np.flatnonzero(~np.isfinite(losses))
            if bad.size:
                bar.close()
                raise TrainingError(
                    f"the training loss became {losses[bad[0]]} at step {step - len(losses) + bad[0] + 1} "
                    f"(peak lr {lr:g}); training stopped. Try a lower --lr."
                )
            loss, pending = float(losses[-1]), []
            metrics = validate(params)
            rec = {"step": step, "train_loss": loss, "lr": float(lrs[step - 1]), **metrics}
            history.append(rec)
            if best["metrics"] is None or is_better(metrics, best["metrics"]):
                best = {"step": step, "metrics": metrics, "params": jax.tree.map(jnp.copy, params)}
                on_best(params, step, metrics)
            bar.set_postfix(loss=f"{loss:.3f}", **postfix(metrics))
            if out is not None:
                _write_log(out, history)
                _save_state(out, params, opt_state, best, step, history, run_key,
                            seconds_before + time.perf_counter() - t_loop)
            if stop_after_step is not None and stop_after_step <= step < total:
                bar.close()
                log(f"stopping at step {step} (interrupted on request)")
                return LoopResult(params, best["params"], best["step"], best["metrics"], history, step, 0.0, True,
                                  steps_run, seconds_before + time.perf_counter() - t_loop,
                                  time.perf_counter() - t_loop)
    bar.close()
    elapsed = time.perf_counter() - t_loop
    best_params = best["params"] if best["params"] is not None else params
    return LoopResult(params, best_params, best["step"], best["metrics"] or {}, history, step,
                      steps_run / elapsed if steps_run else float("nan"), False, steps_run, seconds_before + elapsed,
                      elapsed)


def _save_state(out: Path, params, opt_state, best, step, history, run_key, train_seconds: float = 0.0):
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
                                                "train_seconds": train_seconds}))
    shutil.rmtree(state_dir, ignore_errors=True)
    new.rename(state_dir)


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


def build_model(mode: str, base: GPT2 | None, config: GPT2Config, data, cfg: TrainConfig,
                head_cls: type[TaskHead] = ClassificationHead, new_head: bool = False) -> GPT2:
    """The model to train: a backbone (pretrained, or random for ``scratch``)
    plus a ``head_cls`` head for ``data``: the checkpoint's own head when it
    is of that kind and fits the data (unless ``new_head``), a fresh one
    otherwise."""
    def fresh():
        return head_cls.for_data(config.n_embd, data, dropout=cfg.head_dropout, seed=cfg.seed, pooling=cfg.pooling)

    if not get_mode(mode).pretrained:
        return GPT2(GPT2Backbone(config, rngs=nnx.Rngs(cfg.seed)), fresh())
    assert base is not None
    # Training writes its result back into the model it is given; a copy keeps
    # ``base`` pristine, so that the next run (compare runs many) starts from
    # the same pretrained weights.
    base = nnx.clone(base)
    if isinstance(base.head, head_cls) and not new_head:
        try:
            base.head.check_data(data)
        except ValueError as e:
            raise TrainingError(f"the checkpoint's head does not fit: {e}") from None
        return base
    return GPT2(base.backbone, fresh())


def build_classifier(
    mode: str, base: GPT2 | None, config: GPT2Config, labels: list[str], cfg: TrainConfig, new_head: bool = False
) -> GPT2:
    """``build_model`` with a classification head for ``labels``."""
    return build_model(mode, base, config, types.SimpleNamespace(label_names=list(labels)), cfg,
                       ClassificationHead, new_head)


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
) -> RunResult:
    """Train ``model`` (backbone + ClassificationHead) on ``data`` per ``cfg``.

    ``feature_cache`` (probe mode): a dict kept by the caller across runs, so
    that frozen-backbone features of the same texts are computed once.

    With ``out``, writes ``out/best`` (the best checkpoint by validation
    accuracy, loadable by ``load_pretrained``), ``out/metrics.jsonl``,
    ``out/result.json`` and ``out/state`` (for resuming). Re-running with the
    same ``out`` resumes an interrupted run, or returns a finished one as is.
    ``stop_after_step`` simulates an interruption (tests).
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
    if len(tokenizer) > model.config.vocab_size:
        raise TrainingError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}: token ids would fall outside the embedding table. Use the "
            f"tokenizer saved with the model."
        )
    run_key = _run_key(cfg, data, model, tokenizer)
    if out is not None and (out / "result.json").exists():
        done = json.loads((out / "result.json").read_text())
        if done.get("run_key") == run_key:
            log(f"{out}: this run already finished (best step {done['best_step']}); skipping")
            return RunResult(out, done["best_step"], done["best_val"], done["test"], done["steps"],
                             done["steps_per_second"], done["wall_seconds"], _read_log(out))

    # -- data: the head says what its batches hold (budget, validation subset, encoding)
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
        arrays = {name: {"features": backbone_features(model, e, cfg.eval_batch_size, feature_cache,
                                                       e.texts, cfg.dtype), "labels": e.labels}
                  for name, e in enc.items()}
        net, forward, loss = head, forward_features, CLASSIFY_FEATURES
    else:
        arrays = {name: a for name, (a, _) in prepared.items()}
        net, forward, loss = model, forward_tokens, CLASSIFY_TOKENS
    graphdef, params = nnx.split(net)
    n_train = len(enc["train"])
    best = head.best_metric
    total = cfg.total_steps(n_train)
    eval_every = cfg.eval_every or max(1, total // 10)
    opt_state, parallel, train_step = setup_training(
        cfg, graphdef, params, loss, total, model.config.n_layer)
    eval_step = make_eval_step(graphdef, forward, cfg.dtype)

    def validate(params):
        val = head.metrics(predict(eval_step, params, arrays["validation"], cfg.eval_batch_size), enc["validation"])
        return {f"val_{k}": v for k, v in val.items()}

    def save_best(params, step, metrics):
        if out is not None:
            save_pretrained(_with_params(graphdef, params, model, cfg.mode), out / "best", tokenizer,
                            extra={"max_len": cfg.max_len, "mode": cfg.mode, "step": step,
                                   "val_examples": len(enc["validation"]), "data": data.spec})

    train_arrays = arrays["train"]
    loop = train_loop(
        params=params, opt_state=opt_state, train_step=train_step,
        get_batch=lambda step: {k: v[batch_indices(step, cfg.batch_size, n_train, cfg.seed)] for k, v in train_arrays.items()},
        total=total, eval_every=eval_every, validate=validate,
        is_better=lambda new, old: new[f"val_{best}"] > old[f"val_{best}"], on_best=save_best,
        seed=cfg.seed, lrs=lr_values(cfg, total), lr=cfg.lr,
        out=out, run_key=run_key, desc=cfg.mode, progress=progress, log=log,
        stop_after_step=stop_after_step, postfix=lambda m: {f"val_{best}": f"{m[f'val_{best}']:.3f}"},
        parallel=parallel,
    )
    best_val = {k[4:]: v for k, v in loop.best_metrics.items() if k.startswith("val_")}
    if loop.interrupted:
        return RunResult(out, loop.best_step, best_val, {}, loop.step, 0.0, time.perf_counter() - t_start, loop.history)

    # -- test the best checkpoint ---------------------------------------------
    test = head.metrics(predict(eval_step, loop.best_params, arrays["test"], cfg.eval_batch_size), enc["test"])
    nnx.update(net, loop.best_params)  # the trained weights go back into the caller's model
    result = RunResult(out, loop.best_step, best_val, test, loop.step, loop.steps_per_second,
                       time.perf_counter() - t_start, loop.history)
    if out is not None:
        (out / "result.json").write_text(json.dumps({
            "run_key": run_key, "mode": cfg.mode, "best_step": loop.best_step, "best_val": best_val,
            "test": test, "steps": loop.step, "steps_per_second": loop.steps_per_second,
            "wall_seconds": result.wall_seconds, "n_train": n_train, "config": dataclasses.asdict(cfg),
            "truncated": {name: e.n_truncated for name, e in enc.items()},
        }, indent=2) + "\n")
    return result


def _with_params(graphdef, params, model: GPT2, mode: str) -> GPT2:
    """The full model carrying the current trained weights (for saving)."""
    trained = nnx.merge(graphdef, params)
    if get_mode(mode).frozen_backbone:
        return GPT2(model.backbone, trained)
    return trained


def weights_fingerprint(module) -> str:
    """A short hash of a module's weights (sum and sum of squares per array):
    cheap, and different for different starting points."""
    import hashlib

    stats = [(float(np.asarray(x, np.float64).sum()), float(np.square(np.asarray(x, np.float64)).sum()))
             for x in jax.tree.leaves(nnx.state(module, nnx.Param))]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def _run_key(cfg: TrainConfig, data: Dataset, model: GPT2, tokenizer) -> str:
    """What makes a run the same run: settings, data, tokenizer and starting weights."""
    import hashlib

    d = dataclasses.asdict(cfg)
    d["weights"] = weights_fingerprint(model)
    d["tokenizer"] = [len(tokenizer), tokenizer.encode("minitransfer: the same tokenizer?")]
    d.pop("eval_batch_size", None)
    d.pop("parallel", None)  # where it runs does not change what it computes
    d["data"] = data.spec
    d["n"] = [len(data.train), len(data.validation), len(data.test)]
    d["labels_names"] = getattr(data, "label_names", None)
    d["model"] = dataclasses.asdict(model.config)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_log(out: Path, history: list[dict]):
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))


def _read_log(out: Path) -> list[dict]:
    p = out / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def evaluate(model: GPT2, data, tokenizer, split: str = "test", max_len: int | None = None,
             batch_size: int = 64, val_examples: int | None = None) -> dict:
    """The head's metrics (accuracy, macro-F1, loss and n for a classifier;
    exact match and F1 for a span head) on one split.

    ``val_examples`` picks the same fixed validation subset that ``finetune``
    validated on, so its logged metrics can be reproduced."""
    head = model.head
    if not isinstance(head, TaskHead) or head.best_metric is None:
        raise TrainingError("this model has no task head; evaluate needs a fine-tuned model")
    try:
        head.check_data(data)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    data.split(split)  # an unknown split name fails here, with the names there are
    arrays, examples = head.prepare(data, tokenizer, max_len=max_len or model.config.n_positions, budget=None,
                                    seed=0, val_examples=val_examples, log=lambda m: None, splits=(split,))[split]
    graphdef, params = nnx.split(model)
    eval_step = make_eval_step(graphdef, forward_tokens)
    metrics = head.metrics(predict(eval_step, params, arrays, batch_size), examples)
    metrics["n_truncated"] = examples.n_truncated
    return metrics


# ----------------------------------------------------------------------------
# Next-word pretraining (same loop, another loss)
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 32
    block_size: int = 128
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: float = 0.05
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    eval_every: int = 100
    val_blocks: int = 128  # validation blocks scored at each evaluation
    seed: int = 0
    mode: str = "pretrain"
    lr_decay_per_layer: float = 1.0
    parallel: str = "none"
    dtype: str = "float32"

    def __post_init__(self):
        check_dtype(self.dtype)


def next_word_loss(net: GPT2, batch, key):
    """Mean cross-entropy of predicting token t+1 from tokens <= t."""
    tokens = batch["tokens"]  # (B, T+1)
    logits = net(tokens[:, :-1], dropout_key=key).astype(jnp.float32)  # (B, T, V)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()


def make_block_loss(graphdef, dtype: str = "float32"):
    @jax.jit
    def block_loss(params, tokens):  # (B, T+1) -> (B,) mean next-word loss per block
        logits = nnx.merge(graphdef, cast_for_compute(params, dtype))(tokens[:, :-1]).astype(jnp.float32)  # (B, T, V)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(-1)

    return block_loss


def block_perplexity(block_loss, params, blocks: np.ndarray, batch_size: int = 32) -> tuple[float, float]:
    """(mean next-word loss, perplexity = exp(loss)) over token blocks (N, T+1)."""
    losses = []
    for batch, n in batched({"tokens": blocks}, batch_size):
        losses.append(np.asarray(block_loss(params, batch["tokens"]))[:n])
    loss = float(np.concatenate(losses).mean())
    return loss, math.exp(loss)


def text_perplexity(model: GPT2, tokenizer, texts: list[str], block_size: int = 128) -> float:
    """Perplexity of ``model`` on ``texts`` packed into blocks (all held out)."""
    from minitransfer.data import pack_blocks

    blocks = pack_blocks(texts, tokenizer, block_size, val_fraction=0.0).train
    graphdef, params = nnx.split(model)
    return block_perplexity(make_block_loss(graphdef), params, blocks)[1]


def language_model_from(source, dropout: float = 0.0):
    """(model, tokenizer) of a pretrained checkpoint, ready for more next-word
    training: its weights and shape, with ``dropout`` in every dropout slot."""
    from minitransfer.convert import load_pretrained
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.heads import NextWordHead

    loaded = load_pretrained(source)
    if not isinstance(loaded.head, NextWordHead):
        raise TrainingError(f"{source}: holds a {type(loaded.head).__name__}; next-word training needs a language "
                            f"model (a checkpoint with its next-word head)")
    config = dataclasses.replace(loaded.config, embd_pdrop=dropout, attn_pdrop=dropout, resid_pdrop=dropout)
    model = GPT2.language_model(config)
    nnx.update(model, nnx.state(loaded, nnx.Param))
    return model, load_tokenizer(source)


@dataclasses.dataclass
class PretrainResult:
    out: Path | None
    best_step: int
    val_loss: float
    val_perplexity: float
    steps: int
    tokens_seen: int
    steps_per_second: float
    wall_seconds: float
    history: list[dict]
    steps_run: int = 0
    val_blocks: int = 0
    train_seconds: float = 0.0
    tokens_per_second: float | None = None  # this call's training throughput
    model_tflops_per_second: float | None = None
    mfu: float | None = None  # against the device's spec-sheet bf16 peak, where known


def pretrain(
    model: GPT2,
    blocks,
    tokenizer,
    cfg: PretrainConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_after_step: int | None = None,
    run_key_extra: dict | None = None,
) -> PretrainResult:
    """Next-word training of ``model`` (a GPT2 with its NextWordHead) on packed
    token ``blocks`` (see ``data.pack_blocks``). With ``out``, the checkpoint
    with the lowest validation loss is written there in Hugging Face format."""
    from minitransfer.convert import save_pretrained

    t_start = time.perf_counter()
    out = Path(out) if out is not None else None
    if cfg.block_size > model.config.n_positions:
        raise TrainingError(f"--block-size {cfg.block_size} exceeds n_positions={model.config.n_positions}")
    train_blocks = blocks.train
    val_blocks = blocks.validation[: cfg.val_blocks]
    if len(val_blocks) == 0:
        raise TrainingError("no validation blocks: give more text or a larger validation fraction")
    import hashlib

    run_key = hashlib.sha256(json.dumps(
        {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "parallel"}, "model": dataclasses.asdict(model.config), "n_blocks": len(train_blocks),
         **(run_key_extra or {})}, sort_keys=True, default=str).encode()).hexdigest()[:16]

    graphdef, params = nnx.split(model)
    opt_state, parallel, train_step = setup_training(
        cfg, graphdef, params, next_word_loss, cfg.steps, model.config.n_layer)
    block_loss = make_block_loss(graphdef, cfg.dtype)
    n = len(train_blocks)

    def validate(params):
        loss, ppl = block_perplexity(block_loss, params, val_blocks)
        return {"val_loss": loss, "val_perplexity": ppl}

    def save_best(params, step, metrics):
        if out is not None:
            save_pretrained(nnx.merge(graphdef, params), out, tokenizer,
                            extra={"pretrain_step": step, "val_perplexity": metrics["val_perplexity"]})

    loop = train_loop(
        params=params, opt_state=opt_state, train_step=train_step,
        get_batch=lambda step: {"tokens": train_blocks[batch_indices(step, cfg.batch_size, n, cfg.seed)]},
        total=cfg.steps, eval_every=cfg.eval_every, validate=validate,
        is_better=lambda new, old: new["val_loss"] < old["val_loss"], on_best=save_best,
        seed=cfg.seed, lrs=lr_values(cfg, cfg.steps), lr=cfg.lr,
        out=out, run_key=run_key, desc="pretrain", progress=progress, log=log,
        stop_after_step=stop_after_step, postfix=lambda m: {"val_ppl": f"{m['val_perplexity']:.1f}"},
        parallel=parallel,
    )
    nnx.update(model, loop.best_params)
    if loop.steps_run:
        from minitransfer.flops import device_peak_tflops, mfu, train_flops_per_token

        c = model.config
        tok_s = loop.steps_run * cfg.batch_size * cfg.block_size / max(1e-9, loop.last_call_seconds)
        fps = tok_s * train_flops_per_token(c.n_layer, c.n_embd, cfg.block_size, c.vocab_size, c.n_inner)
        u = mfu(fps, device_peak_tflops())
        log(f"next-word training: {tok_s:,.0f} tokens/s, {fps / 1e12:.3f} model TFLOP/s"
            + (f", MFU {100 * u:.1f}% of the device's bf16 peak" if u is not None else
               " (MFU: no spec-sheet peak known for this device)"))
    return PretrainResult(
        out, loop.best_step, loop.best_metrics.get("val_loss", float("nan")),
        loop.best_metrics.get("val_perplexity", float("nan")), loop.step,
        loop.step * cfg.batch_size * cfg.block_size, loop.steps_per_second,
        time.perf_counter() - t_start, loop.history, loop.steps_run, len(val_blocks), loop.train_seconds,
        *((tok_s, fps / 1e12, u) if loop.steps_run else ()),
    )
