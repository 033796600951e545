"""The jitted steps: one optimizer step and one evaluation step, each a pure
function of (weights, optimizer state, batch, PRNG key), compiled once and
kept for reuse; mixed precision; batched, length-sorted prediction; and the
frozen backbone's cached features (linear probing).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from minitransfer import interrupt
from minitransfer.classify import ClassificationHead
from minitransfer.encoding import Encoded
from minitransfer.model import GPT2
from minitransfer.optim import layer_decay, make_optimizer
from minitransfer.parallel import Parallel

# ----------------------------------------------------------------------------
# The jitted steps
# ----------------------------------------------------------------------------

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_dtype(name: str) -> None:
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown `dtype` {name!r}; expected one of {sorted(COMPUTE_DTYPES)}")


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


def matmul_dtypes(jitted, *args) -> collections.Counter:
    """The matrix products (``dot_general``) in the program ``jit`` hands to
    XLA for ``jitted(*args)`` (StableHLO, before any backend rewrites it),
    counted by operand dtype: ``{"bf16": 144}``; mixed operands read
    ``"bf16/f32"``. Each is counted where it is written, so a loop body or a
    function called twice counts once; fused kernels that are calls of their
    own (cuDNN's attention on a GPU) are not matmuls here.

    This is how to check that mixed precision is mixed: a single float32
    activation upstream promotes every later bfloat16 matmul to float32
    without an error, and only the speed shows it."""
    found = collections.Counter()
    for operands in re.findall(r"stablehlo\.dot_general.*: \((.*)\) -> ", jitted.lower(*args).as_text()):
        kinds = {t.split("x")[-1] for t in re.findall(r"tensor<([^<>]*)>", operands)}  # "2x8x32xbf16" -> "bf16"
        found["/".join(sorted(kinds))] += 1
    return found


def make_train_step(
    graphdef, loss_fn: Callable, tx: optax.GradientTransformation, out_shardings=None, dtype: str = "float32"
):
    """One optimizer step as a pure function, compiled once.

    ``loss_fn(net, batch, dropout_key) -> scalar`` where ``net`` is the module
    being trained (rebuilt from ``graphdef`` + ``params`` (+ ``rest``) inside
    the trace). ``params`` holds only what is trained (the mode's filter:
    ``split_trained``), so gradients and optimizer state exist only for it;
    ``rest``, the frozen weights, goes into the forward pass as it is (not
    donated: every step reads the same). ``out_shardings`` (params,
    opt_state) keeps sharded weights sharded across steps (see parallel.py);
    the step itself does not change. ``dtype`` is the compute precision (see
    ``cast_for_compute``).

    ``params`` and ``opt_state`` are *donated*: the step writes the new
    weights and optimizer state into the buffers of the old ones, which are
    invalid afterwards (pass copies if you still need them). Without this,
    every step allocates fresh memory for weights + both Adam moments (1.5 GB
    at the 124M shape) and the operating system has to fault in and zero
    every new page: about 0.5 s of a 4 s CPU step (benchmarks/train_step.py).

    ``train_step(params, opt_state, batch, key, lr)`` uses ``key`` for
    dropout as it is; ``train_step(..., key, lr, step)`` uses
    ``fold_in(key, step)``, the same key computed inside the compiled step.
    The training loop passes the run's key and the step number that way:
    deriving each step's key outside would run one more program per step,
    about a millisecond of the host's time each on a CPU, in a step that on
    an accelerator can take less. ``rest`` is a keyword argument, or bound
    once with ``with_rest``.
    """

    def loss_of_params(params, batch, key, rest):
        return loss_fn(merge_for_compute(graphdef, params, rest, dtype), batch, key)

    def train_step(params, opt_state, batch, key, lr, step=None, rest=None):
        if step is not None:  # key is the run's: this step's is derived here, not by a small program of its own
            key = jax.random.fold_in(key, step)
        loss, grads = jax.value_and_grad(loss_of_params)(params, batch, key, rest)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: (-lr * u).astype(u.dtype), updates)  # lr: this step's learning rate
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

    if out_shardings is None:
        return jax.jit(train_step, donate_argnums=(0, 1))
    return jax.jit(train_step, donate_argnums=(0, 1), out_shardings=(*out_shardings, None))


def merge_for_compute(graphdef, params, rest, dtype: str):
    """The module of ``graphdef`` with the trained ``params`` and the frozen
    ``rest`` (None: nothing frozen), both cast to the compute ``dtype``."""
    if rest is None:
        return nnx.merge(graphdef, cast_for_compute(params, dtype))
    return nnx.merge(graphdef, cast_for_compute(params, dtype), cast_for_compute(rest, dtype))


def split_trained(net, trains):
    """``graphdef, params, rest``: ``net`` split by the filter ``trains`` into
    what trains and what stays frozen. ``rest`` is None where nothing is
    frozen, so that a mode that trains everything compiles exactly the step
    it would without a filter."""
    graphdef, params, rest = nnx.split(net, trains, ...)
    return graphdef, params, (rest if jax.tree.leaves(rest) else None)


def within(prefix: str, trains):
    """The filter ``trains`` of a whole model, read on its submodule
    ``prefix`` (the head alone, as probing trains it): the submodule's paths
    are looked up as the whole model's."""
    predicate = nnx.filterlib.to_predicate(trains)
    return lambda path, variable: predicate((prefix, *path), variable)


def with_rest(step: Callable, rest) -> Callable:
    """``step`` (a train or eval step) with the frozen weights ``rest`` bound: the training loop and
    ``predict`` call it with the trained weights alone."""
    return step if rest is None else functools.partial(step, rest=rest)


# jax.monitoring's events for the three stages of turning a Python function
# into a program: tracing it to a jaxpr, lowering that to StableHLO, and
# XLA's compiler (the last is sent once per program compiled)
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"  # a program read from the disk cache, not compiled


@contextlib.contextmanager
def compile_meter():
    """Count, inside the ``with`` block, the programs JAX compiles and the
    seconds spent tracing, lowering and compiling them: yields a dict
    ``{"programs": n, "seconds": s, "from_disk_cache": k}`` that fills in as
    the block runs; ``k`` of the ``n`` programs were read from JAX's
    persistent compilation cache instead of compiled (see
    ``process.enable_compilation_cache``). On an accelerator, where each step
    takes milliseconds, compiling can be most of a short run's time; this
    says how much."""
    found = {"programs": 0, "seconds": 0.0, "from_disk_cache": 0}

    def listen(event, duration, **kwargs):
        if event in COMPILE_EVENTS:
            found["seconds"] += duration
            found["programs"] += event == COMPILE_EVENTS[-1]

    def count_hit(event, **kwargs):
        found["from_disk_cache"] += event == CACHE_HIT_EVENT

    jax.monitoring.register_event_duration_secs_listener(listen)
    jax.monitoring.register_event_listener(count_hit)
    try:
        yield found
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
        jax.monitoring.unregister_event_listener(count_hit)


# Compiled steps, kept for reuse: a run with the same model structure, loss
# and optimizer settings (compare runs dozens) skips tracing and compiling.
_COMPILED: dict = {}


def _cached(key, build: Callable):
    if key not in _COMPILED:
        _COMPILED[key] = build()
    return _COMPILED[key]


def setup_training(cfg, graphdef, params, loss_fn: Callable, total_steps: int, n_layer: int, rest=None):
    """Optimizer state, device placement and the compiled step for one run:
    the part fine-tuning and pretraining share. ``params`` are the weights
    that train, ``rest`` the frozen ones (``split_trained``; None: none),
    which the returned step carries. ``loss_fn`` should be a module-level
    function (such as ``CLASSIFY_TOKENS``), so that runs share the compiled
    step."""
    tx = make_optimizer(cfg, params, total_steps, n_layer)
    opt_state = tx.init(params)
    parallel = Parallel(cfg.parallel)
    if parallel.mesh:
        shardings = (parallel.param_sharding(params), parallel.param_sharding(opt_state))
        step = make_train_step(graphdef, loss_fn, tx, shardings, cfg.dtype)
        return opt_state, parallel, with_rest(step, None if rest is None else parallel.place(rest))
    # (the trained weights' tree: a filter that trains other weights of the same model needs its own step)
    key = (
        "train",
        graphdef,
        jax.tree.structure(params),
        loss_fn,
        cfg.dtype,
        cfg.clip_norm,
        cfg.weight_decay,
        layer_decay(cfg),
        n_layer,
    )
    return (
        opt_state,
        parallel,
        with_rest(_cached(key, lambda: make_train_step(graphdef, loss_fn, tx, None, cfg.dtype)), rest),
    )


def make_eval_step(graphdef, forward: Callable, dtype: str = "float32", rest=None):
    """``eval_step(params, batch) -> forward(net, batch, None)``: no dropout,
    computed in ``dtype`` like training; float32 outputs; ``rest``: the
    frozen weights beside ``params`` (``split_trained``), bound into the
    step. Compiled once per (model structure, forward, dtype) and reused."""

    def build():
        @jax.jit
        def eval_step(params, batch, rest=None):
            return forward(merge_for_compute(graphdef, params, rest, dtype), batch, None).astype(jnp.float32)

        return eval_step

    return with_rest(_cached(("eval", graphdef, forward, dtype), build), rest)


def classification_loss(forward: Callable) -> Callable:
    def loss_fn(net, batch, key):
        logits = forward(net, batch, key).astype(jnp.float32)  # (B, K); float32 under mixed precision too
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()

    return loss_fn


def forward_tokens(net: GPT2, batch, key):
    return net(batch["input_ids"], batch["attention_mask"], dropout_key=key)


def forward_scores(net: GPT2, batch, key):
    """The head's ``scores`` of its outputs: what evaluation keeps where the
    outputs themselves are too big to bring back (a chat head's (B, T, V))."""
    return net.head.scores(forward_tokens(net, batch, key).astype(jnp.float32), batch)


def eval_forward(head) -> Callable:
    """The forward pass an evaluation of ``head``'s model runs: its ``scores`` where it has them."""
    return forward_scores if hasattr(head, "scores") else forward_tokens


def forward_features(net: ClassificationHead, batch, key):
    # the cached features are float32; in the head's compute dtype, as the
    # backbone would have handed them over (bfloat16 under mixed precision)
    features = batch["features"].astype(net.score.kernel[...].dtype)  # (B, C)
    return net.classify(features, dropout_key=key)


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


def eval_batch_default() -> int:
    """Rows per evaluation batch where none is asked for. On the 2-core CPU
    the stand-in model scored the 3,719 test tweets (max_len 64) in 2.4 s in
    batches of 32 and 3.1-3.2 s in batches of 64 (best of 3): smaller batches
    stay in the cache and are cut shorter to their longest row. An accelerator
    wants fewer, larger calls: 64 there, as before."""
    return 32 if jax.default_backend() == "cpu" else 64


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
        interrupt.check()  # evaluation and feature passes can be long: a swallowed Ctrl-C is acted on here too
        idx = order[start : start + batch_size]
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


IN_FLIGHT = 8  # evaluation batches queued on the device before the host reads one back


def predict(
    eval_step, params, arrays: dict[str, np.ndarray], batch_size: int, progress: str | None = None
) -> np.ndarray:
    """eval_step over all rows, in length-sorted batches; outputs in row order.
    ``progress``: a progress bar of that name (for passes long enough to wait on)."""
    order = length_order(arrays)
    T = arrays["attention_mask"].shape[1] if "attention_mask" in arrays else None
    # Up to IN_FLIGHT batches are queued before the oldest result is read
    # back: the device works through the queue while the host cuts the next
    # batches, instead of waiting for each result in turn.
    out, pending = [], collections.deque()

    def take_oldest():
        o, n_real = pending.popleft()
        o = np.asarray(o)[:n_real]
        if o.ndim >= 3 and T is not None and o.shape[1] < T:  # per-token outputs (B, cut, ...): back to (B, T, ...)
            o = np.pad(o, [(0, 0), (0, T - o.shape[1])] + [(0, 0)] * (o.ndim - 2))
        out.append(o)

    n = len(next(iter(arrays.values())))
    with tqdm(total=n, desc=progress, unit="example", disable=progress is None, leave=False, dynamic_ncols=True) as bar:
        for batch, n_real in batched(arrays, batch_size, order):
            pending.append((eval_step(params, batch), n_real))
            if len(pending) > IN_FLIGHT:
                take_oldest()
                bar.update(len(out[-1]))
        while pending:
            take_oldest()
            bar.update(len(out[-1]))
    out = np.concatenate(out)
    if order is None:
        return out
    unsorted = np.empty_like(out)
    unsorted[order] = out
    return unsorted


def _pooled_features(net: GPT2, batch, key):
    hidden = net.backbone(batch["input_ids"], batch["attention_mask"])  # (B, T, C)
    return net.head.features(hidden, batch["attention_mask"])  # (B, C)


def backbone_features(
    model: GPT2,
    enc: Encoded,
    batch_size: int,
    cache: dict | None = None,
    texts: list[str] | None = None,
    dtype: str = "float32",
    progress: str | None = None,
) -> np.ndarray:
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
        return predict(features, params, arrays, batch_size, progress)
    store = cache.setdefault(_feature_key(model, enc.input_ids.shape[1], dtype), {})
    todo = np.asarray([i for i, t in enumerate(texts) if t not in store], dtype=np.int64)
    if len(todo):
        new = predict(features, params, {k: v[todo] for k, v in arrays.items()}, batch_size, progress)
        store.update({texts[i]: f for i, f in zip(todo, new, strict=True)})
    return np.stack([store[t] for t in texts])


def _feature_key(model: GPT2, length: int, dtype: str) -> tuple:
    return weights_fingerprint(model.backbone), model.head.pooling, length, dtype


def warm_feature_cache(model: GPT2, encs: list, batch_size: int, cache: dict, dtype: str = "float32") -> int:
    """Compute, in one fixed order (the texts sorted), the features of every
    text in ``encs`` (``Encoded`` with ``texts``, all of one length) that the
    cache lacks; returns how many. Runs that then read the cache get the same
    bits whichever ran before them: features computed as runs happen to need
    them come out of batches whose make-up (and so padded length) depends on
    what earlier runs left, which moves their last bits, so a resumed
    ``compare`` would not repeat an uninterrupted one exactly."""
    rows = {}
    for e in encs:
        for i, t in enumerate(e.texts):
            rows.setdefault(t, (e, i))
    if not rows:
        return 0
    texts = sorted(rows)
    union = Encoded(
        np.stack([rows[t][0].input_ids[rows[t][1]] for t in texts]),
        np.stack([rows[t][0].attention_mask[rows[t][1]] for t in texts]),
        np.zeros(len(texts), np.int32),
        np.zeros(len(texts), np.int32),
        0,
        texts,
    )
    before = len(cache.get(_feature_key(model, union.input_ids.shape[1], dtype), {}))
    backbone_features(model, union, batch_size, cache, texts, dtype)
    return len(cache[_feature_key(model, union.input_ids.shape[1], dtype)]) - before


def weights_fingerprint(module) -> str:
    """A short hash of a module's weights (sum and sum of squares per array):
    cheap, and different for different starting points."""
    stats = [
        (float(np.asarray(x, np.float64).sum()), float(np.square(np.asarray(x, np.float64)).sum()))
        for x in jax.tree.leaves(nnx.state(module, nnx.Param))
    ]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
