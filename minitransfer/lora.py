"""Low-rank adapters (LoRA, Hu et al. 2021) on a GPT-2's projections, built on ``flax.nnx.LoRALinear``.

Mode ``lora`` freezes every pretrained weight and learns, beside each
attention and MLP projection ``W`` (C_in, C_out), a product ``A @ B`` of a
(C_in, r) and an (r, C_out) matrix: the layer computes
``x @ W + b + (alpha / r) * x @ A @ B``. ``B`` starts at zero, so training
starts from exactly the pretrained model; ``A`` and ``B`` together are a
small fraction of ``W``'s size when ``r`` is small. ``alpha / r`` keeps the
update's size about the same when ``r`` changes, so one learning rate serves
several ranks.

``add_adapters`` (the mode's ``prepare``) swaps each projection for a
``ScaledLoRALinear`` that keeps its weights; ``merge_adapters`` (the mode's
``finish``) folds ``W + (alpha / r) A @ B`` back into a plain ``nnx.Linear``,
so that a saved checkpoint is an ordinary GPT-2 that transformers loads.
``save_adapters`` writes the adapters alone.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from flax import nnx
from safetensors.numpy import save_file

ADAPTERS_FILE = "adapters.safetensors"  # beside model.safetensors in a lora run's best/


class ScaledLoRALinear(nnx.LoRALinear):
    """``nnx.LoRALinear`` with LoRA's ``alpha / rank`` scale on the adapters' output.

    ``nnx.LoRA`` computes ``x @ A @ B`` with no scale of its own, so this
    subclass adds it where ``nnx.LoRALinear`` adds the adapters' output: the
    smallest change that gives the paper's layer. Built from an existing
    ``nnx.Linear``, whose kernel and bias it keeps (as ``LoRALinear``'s own
    ``kernel`` and ``bias``: the same paths as in a plain ``Linear``)."""

    def __init__(self, linear: nnx.Linear, *, rank: int, alpha: float, rngs: nnx.Rngs):
        super().__init__(
            linear.in_features,
            linear.out_features,
            lora_rank=rank,
            use_bias=linear.bias is not None,
            dtype=linear.dtype,
            param_dtype=linear.param_dtype,
            precision=linear.precision,
            # the pretrained weights, not fresh ones: the initializers hand them over
            kernel_init=lambda key, shape, dtype: linear.kernel[...],
            bias_init=lambda key, shape, dtype: linear.bias[...],
            rngs=rngs,
        )
        self.scale = alpha / rank

    def __call__(self, x, out_sharding=None):
        return nnx.Linear.__call__(self, x, out_sharding=out_sharding) + self.scale * self.lora(x)

    def merged(self) -> nnx.Linear:
        """A plain ``nnx.Linear`` computing what this layer computes: ``W + scale * A @ B``."""
        kernel = self.kernel[...] + self.scale * (self.lora.lora_a[...] @ self.lora.lora_b[...])  # (C_in, C_out)
        return nnx.Linear(
            self.in_features,
            self.out_features,
            use_bias=self.bias is not None,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            precision=self.precision,
            kernel_init=lambda key, shape, dtype: kernel.astype(dtype),
            bias_init=lambda key, shape, dtype: self.bias[...],
            rngs=nnx.Rngs(0),  # (no random draw reaches the weights: the initializers ignore their keys)
        )


def projections(model):
    """Every (module, attribute name) of the projections adapters go on: each
    block's attention (``c_attn``, ``c_proj``) and MLP (``c_fc``, ``c_proj``)."""
    for block in model.backbone.h:
        yield from ((block.attn, "c_attn"), (block.attn, "c_proj"), (block.mlp, "c_fc"), (block.mlp, "c_proj"))


def add_adapters(model, cfg):
    """A copy of ``model`` with a rank ``cfg.lora_rank`` adapter (scale
    ``cfg.lora_alpha / cfg.lora_rank``) on every projection; ``model`` is left
    as it is. The adapters' random ``A`` draws from a stream of their own
    (seed ``cfg.seed``), so that the head's and the backbone's draws are those
    of the other modes."""
    model = nnx.clone(model)
    rngs = nnx.Rngs(jax.random.fold_in(jax.random.key(cfg.seed), 2))  # (1 is the scratch backbone's stream)
    for owner, name in projections(model):
        linear = getattr(owner, name)
        if not isinstance(linear, ScaledLoRALinear):
            setattr(owner, name, ScaledLoRALinear(linear, rank=cfg.lora_rank, alpha=cfg.lora_alpha, rngs=rngs))
    return model


def merge_adapters(model):
    """``model`` with each adapted projection folded back into a plain
    ``nnx.Linear`` (in place; returned): the GPT-2 that transformers loads."""
    for owner, name in projections(model):
        linear = getattr(owner, name)
        if isinstance(linear, ScaledLoRALinear):
            setattr(owner, name, linear.merged())
    return model


def adapter_tensors(model) -> dict[str, np.ndarray]:
    """The adapters alone, named after the projection they sit on
    (``h.0.attn.c_attn.lora_a``): all that a lora run learned in the backbone."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        keys = [str(k) for k in path if k not in ("backbone", "lora")]
        out[".".join(keys)] = np.asarray(var.get_value(), dtype=np.float32)
    return out


def save_adapters(model, directory: str | Path) -> Path | None:
    """Write ``model``'s adapters (and their rank and scale) to
    ``directory/adapters.safetensors``; None where the model has none."""
    tensors = adapter_tensors(model)
    if not tensors:
        return None
    layer = next(getattr(o, n) for o, n in projections(model))
    path = Path(directory) / ADAPTERS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"rank": str(layer.lora.lora_a.shape[1]), "scale": repr(layer.scale)})
    return path
