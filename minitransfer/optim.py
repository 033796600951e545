"""The optimizer of every training run: AdamW as clipping + Adam's scaled
update + decoupled weight decay (none on biases and LayerNorm), warmup then
decay, and ULMFiT's per-layer learning rates where a pretrained backbone trains.

The learning rate is not inside the optimizer: ``lr_values`` computes every
step's rate on the host and the compiled step takes it as an argument, so
one compiled step serves every schedule, budget and seed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from minitransfer.modes import get_mode

# ----------------------------------------------------------------------------
# Optimizer: AdamW, warmup + decay, clipping, no decay on biases/LayerNorm
# ----------------------------------------------------------------------------


def check_optimizer_settings(cfg) -> None:
    """The optimizer settings a training config carries, each in its range
    (each named as its field): a negative learning rate or a
    warmup past the run's end would train, quietly, to nonsense."""
    # (written so that NaN fails each test: every comparison with NaN is false)
    if cfg.lr is not None and not 0 < cfg.lr < float("inf"):
        raise ValueError(f"`lr` must be a positive, finite number, got {cfg.lr:g}")
    if not 0 <= cfg.warmup < 1:
        raise ValueError(f"`warmup` is a fraction of the steps, in [0, 1); got {cfg.warmup:g}")
    if not 0 <= cfg.weight_decay < float("inf"):
        raise ValueError(f"`weight_decay` must be at least 0 and finite, got {cfg.weight_decay:g}")
    for name in ("steps", "batch_size", "eval_every", "block_size"):
        v = getattr(cfg, name, None)
        if v is not None and v < 1:
            raise ValueError(f"`{name}` must be at least 1, got {v}")


def lr_schedule(cfg, total_steps: int) -> optax.Schedule:
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


def make_optimizer(cfg, params, total_steps: int, n_layer: int) -> optax.GradientTransformation:
    """AdamW without its learning rate: clipping, Adam's scaled update, decoupled
    weight decay and (where a pretrained backbone trains) per-layer factors,
    for ``params``: what the run trains (its mode's filter), nothing else. The step multiplies
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
    if layer_decay(cfg) != 1.0:  # (cfg.lr_decay_per_layer exists wherever a mode is set)
        parts.append(scale_by_tree(layer_lr_factors(params, n_layer, cfg.lr_decay_per_layer)))
    return optax.chain(*parts)


def layer_decay(cfg) -> float:
    """The per-layer lr factor in effect: only where weights of a pretrained
    backbone train (all of them in full, adapt and prompt; the top blocks in
    top; the adapters in lora, each block's at its block's factor)."""
    if getattr(cfg, "mode", None) is None:  # pretraining: no mode, every layer alike
        return 1.0
    m = get_mode(cfg.mode)
    return cfg.lr_decay_per_layer if m.pretrained and m.trains_backbone else 1.0


def lr_values(cfg, total_steps: int) -> np.ndarray:
    """The learning rate of every step 0 .. total_steps-1, computed once on the host."""
    return np.asarray(jax.vmap(lr_schedule(cfg, total_steps))(jnp.arange(total_steps)), dtype=np.float32)
