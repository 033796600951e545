"""GPT-2 in Flax NNX, written to be read top to bottom.

The model is split in two, because transfer learning is about keeping one part
and replacing the other:

* ``GPT2Backbone`` turns token ids ``(B, T)`` into hidden states ``(B, T, C)``:
  token + position embeddings, ``n_layer`` pre-LayerNorm Transformer blocks,
  a final LayerNorm.
* a *head* turns hidden states into what a task needs: next-word logits
  ``(B, T, vocab)`` for language modelling (``NextWordHead``, below), class
  logits ``(B, num_classes)`` for classification (``classify.py``; every head:
  ``heads.py``).

Shapes in comments use B = batch, T = sequence length, C = n_embd (channels),
H = n_head, D = C // H (head size), V = vocab size.

Parameter names mirror Hugging Face's ``GPT2Model`` (``wte``, ``h[i].attn.c_attn``,
``ln_f`` ...) so that ``convert.py`` can copy a checkpoint tensor by tensor.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minitransfer.dropout import dropout, split_key
from minitransfer.heads import TaskHead, register_head

# ----------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------

# The activation functions GPT-2-family configs name. "gelu_new" is the tanh
# approximation OpenAI used; "gelu" is the exact (erf) form.
ACTIVATIONS = {
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    """The hyper-parameters of a GPT-2, named as in a Hugging Face ``config.json``."""

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # MLP width; None means 4 * n_embd
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    embd_pdrop: float = 0.1
    attn_pdrop: float = 0.1
    resid_pdrop: float = 0.1
    initializer_range: float = 0.02
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"activation_function={self.activation_function!r} is not supported; "
                f"expected one of {sorted(ACTIVATIONS)}"
            )

    @property
    def mlp_width(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    # -- Hugging Face config.json <-> GPT2Config ------------------------------
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> GPT2Config:
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a JSON object of model settings, found {type(d).__name__}")
        model_type = d.get("model_type")
        if model_type != "gpt2":
            raise ValueError(
                f"{source}: model_type is {model_type!r}, but minitransfer loads GPT-2 "
                f"checkpoints only (model_type 'gpt2', e.g. gpt2, distilgpt2, gpt2-medium)."
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head") if k not in d]
        if missing:
            raise ValueError(f"{source}: missing required GPT-2 fields {missing}")
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner"):
            v = d.get(name)
            if (
                name in d
                and not (v is None and name == "n_inner")
                and (not isinstance(v, int) or isinstance(v, bool) or v < 1)
            ):
                raise ValueError(f"{source}: {name} must be a positive whole number, got {v!r}")
        for name in ("layer_norm_epsilon", "embd_pdrop", "attn_pdrop", "resid_pdrop", "initializer_range"):
            if name not in d:  # absent: GPT2Config's default (transformers' too)
                continue
            v = d[name]
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"{source}: {name} must be a number, got {v!r}")
            # a dropout rate of 1 or more drops everything; a LayerNorm epsilon of 0 or less divides by zero (or
            # takes the root of a negative number): either trains or predicts NaN without another word
            if name.endswith("pdrop") and not 0 <= v < 1:
                raise ValueError(f"{source}: {name} is a dropout rate, from 0 up to (not including) 1; got {v!r}")
            if name == "layer_norm_epsilon" and not 0 < v < float("inf"):
                raise ValueError(f"{source}: layer_norm_epsilon must be a small positive number, got {v!r}")
        try:
            return cls(**{k: v for k, v in d.items() if k in fields})
        except ValueError as e:  # __post_init__'s checks, named by the file they come from
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> GPT2Config:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_hf_dict(d, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], tie_word_embeddings=True)
        return d


# Named sizes: the OpenAI/Hugging Face shapes, plus small ones that train on a
# laptop CPU in minutes. Used by ``--config NAME`` wherever a model is built
# from scratch.
NAMED_CONFIGS: dict[str, dict[str, int]] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),  # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M
    "distilgpt2": dict(n_layer=6, n_head=12, n_embd=768),  # 82M
    "mini": dict(n_layer=4, n_head=4, n_embd=256, n_positions=512),
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, n_positions=256),
}


def named_config(name: str, **overrides) -> GPT2Config:
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown config name {name!r}; expected one of {sorted(NAMED_CONFIGS)}")
    return GPT2Config(**{**NAMED_CONFIGS[name], **overrides})


# ----------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------


# How attention is computed (see ``CausalSelfAttention.fused``):
#   "explicit": the scores (B, H, T, T) written out, masked, softmaxed: the
#               readable version the lectures walk through; the only one with
#               dropout on the attention weights, and the one the key/value
#               cache (generation) uses.
#   "fused":    ``jax.nn.dot_product_attention``: one cuDNN flash-attention
#               kernel on NVIDIA GPUs in bfloat16/float16, which never writes
#               the (B, H, T, T) scores to memory; XLA's plain version elsewhere.
#   "auto":     fused where it pays and cuDNN can run it (an NVIDIA GPU of the
#               Ampere generation or later, 16-bit compute, heads a multiple of
#               8 wide up to 128, no attention-weight dropout in play), explicit
#               everywhere else. The default.
ATTENTION_KINDS = ("auto", "explicit", "fused")


def _gpu_compute_capability() -> tuple[int, int] | None:
    """The first device's CUDA compute capability, e.g. (9, 0) for an H100;
    None off NVIDIA GPUs (a CPU, a TPU, a ROCm GPU)."""
    if jax.default_backend() != "gpu":
        return None
    device = jax.devices()[0]
    # JAX's own cuDNN checks tell CUDA from ROCm by the platform version ("cuda 12080")
    if "cuda" not in str(getattr(getattr(device, "client", None), "platform_version", "")).lower():
        return None
    try:
        major, minor = str(device.compute_capability).split(".")[:2]
        return int(major), int(minor)
    except (AttributeError, ValueError):
        return None


def cudnn_attention_fits(head_dim: int) -> bool:
    """Can cuDNN's flash attention run here? It needs an NVIDIA GPU of the
    Ampere generation or later (compute capability 8.0+) and a head size that
    is a multiple of 8, at most 128 (256 on Hopper, but 128 holds on every
    such GPU). Neither falls back: JAX raises for such a head size, and
    cuDNN has no such kernel before Ampere, so "auto" asks first: GPT-2's
    heads (64) fit; a model with 12-wide heads, or a T4, keeps the explicit
    attention."""
    cc = _gpu_compute_capability()
    return cc is not None and cc >= (8, 0) and head_dim % 8 == 0 and head_dim <= 128


class CausalSelfAttention(nnx.Module):
    """Multi-head self-attention where position t only sees positions <= t."""

    def __init__(self, config: GPT2Config, layer_idx: int, *, rngs: nnx.Rngs):
        C = config.n_embd
        init = nnx.initializers.normal(config.initializer_range)
        # GPT-2 scales the init of every projection that writes into the
        # residual stream by 1/sqrt(2 * n_layer): there are two per block
        # (attention and MLP), and this keeps the stream's variance bounded.
        proj_init = nnx.initializers.normal(config.initializer_range / math.sqrt(2 * config.n_layer))
        # one matmul computes queries, keys and values for all heads at once
        self.c_attn = nnx.Linear(C, 3 * C, kernel_init=init, rngs=rngs)
        self.c_proj = nnx.Linear(C, C, kernel_init=proj_init, rngs=rngs)
        self.n_head = config.n_head
        self.head_dim = C // config.n_head
        self.attn_pdrop = config.attn_pdrop
        self.resid_pdrop = config.resid_pdrop
        scale = 1.0 / math.sqrt(C // config.n_head) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= float(layer_idx + 1)
        self.scale = scale
        self.attention = "auto"  # one of ATTENTION_KINDS; see set_attention

    def fused(self, dtype, dropout_active: bool) -> str | None:
        """Which ``jax.nn.dot_product_attention`` implementation to use
        ("cudnn" or "xla"), or None for the explicit computation."""
        half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
        cudnn = half and cudnn_attention_fits(self.head_dim)  # cuDNN takes 16-bit inputs only
        if self.attention == "explicit":
            return None
        if self.attention == "auto" and not (cudnn and not dropout_active):
            return None
        if dropout_active:
            raise ValueError(
                "attention='fused' has no dropout on the attention weights, but attn_pdrop="
                f"{self.attn_pdrop} is active; set attn_pdrop=0 or use attention 'explicit' or 'auto'"
            )
        return "cudnn" if cudnn else "xla"

    def __call__(self, x: jax.Array, attention_mask: jax.Array | None, dropout_key=None) -> jax.Array:
        """Self-attention over ``x`` (B, T, C) -> (B, T, C)."""
        B, T, C = x.shape
        k_attn, k_resid = split_key(dropout_key, 2)
        q, k, v = jnp.split(self.c_attn(x), 3, axis=-1)  # 3 x (B, T, C): one matmul for every head
        implementation = self.fused(q.dtype, k_attn is not None and self.attn_pdrop > 0)
        if implementation is not None:  # the same attention in one call (lecture 9)
            y = fused_attention(q, k, v, self.n_head, attention_mask, self.scale, implementation)  # (B, T, C)
        else:
            # may query t look at key s?  only the past (causal), and never padding
            allowed = jnp.tril(jnp.ones((T, T), dtype=bool))[None, None]  # (1, 1, T, T)
            if attention_mask is not None:
                allowed = allowed & attention_mask.astype(bool)[:, None, None, :]  # (B, 1, T, T)
            y = explicit_attention(
                split_heads(q, self.n_head),
                split_heads(k, self.n_head),
                split_heads(v, self.n_head),
                allowed,
                self.scale,
                self.attn_pdrop,
                k_attn,
            )
            y = merge_heads(y)  # (B, T, C): heads side by side
        return dropout(self.c_proj(y), self.resid_pdrop, k_resid)  # (B, T, C)

    def decode(self, x: jax.Array, cache: tuple) -> tuple[jax.Array, tuple]:
        """Attention with a key/value cache: ``x`` (B, T, C) holds the tokens at
        positions ``start .. start+T-1`` of ``cache = (k_cache, v_cache, start)``
        (each cache (B, H, S, D)). Their keys and values are written into the
        cache, each query attends to every cached position up to its own, and
        ``(y, (k_cache, v_cache))`` comes back. This is what makes generation
        cost one position per new token instead of the whole prefix."""
        T = x.shape[1]
        k_cache, v_cache, start = cache
        q, k, v = (split_heads(t, self.n_head) for t in jnp.split(self.c_attn(x), 3, axis=-1))  # 3 x (B, H, T, D)
        k = jax.lax.dynamic_update_slice(k_cache, k, (0, 0, start, 0))  # (B, H, S, D)
        v = jax.lax.dynamic_update_slice(v_cache, v, (0, 0, start, 0))  # (B, H, S, D)
        q_pos = start + jnp.arange(T)  # (T,) absolute positions of the queries
        allowed = (jnp.arange(k.shape[2])[None, :] <= q_pos[:, None])[None, None]  # (1, 1, T, S)
        y = explicit_attention(q, k, v, allowed, self.scale, self.attn_pdrop, None)  # (B, H, T, D)
        return self.c_proj(merge_heads(y)), (k, v)  # (B, T, C)


def split_heads(x: jax.Array, n_head: int) -> jax.Array:
    """(B, T, C) -> (B, H, T, D): each head its own slice of the channels."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def merge_heads(y: jax.Array) -> jax.Array:
    """(B, H, T, D) -> (B, T, C): the heads' outputs side by side."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def explicit_attention(q, k, v, allowed, scale: float, pdrop: float, dropout_key) -> jax.Array:
    """Attention written out: q (B, H, T, D) against k, v (B, H, S, D), where
    ``allowed`` (broadcast to (B, H, T, S)) says which keys each query may see."""
    # how much query t attends to key s: scaled dot products
    # float32 from here to the softmax even when computing in bfloat16:
    # exponentials of low-precision scores are where mixed precision hurts.
    # The products come out of a bfloat16 matmul (as under PyTorch's
    # autocast) and are cast after it, so that the backward pass's two
    # matmuls through here stay bfloat16 too (steps.matmul_dtypes checks)
    scores = jnp.einsum("bhtd,bhsd->bhts", q, k).astype(jnp.float32) * scale  # (B, H, T, S)
    # The most negative finite float, not -inf: a padding query that may see
    # no key at all then gets a harmless uniform row instead of NaN.
    scores = jnp.where(allowed, scores, jnp.finfo(scores.dtype).min)  # (B, H, T, S)
    weights = jax.nn.softmax(scores, axis=-1)  # (B, H, T, S), rows sum to 1
    weights = dropout(weights, pdrop, dropout_key).astype(v.dtype)
    return jnp.einsum("bhts,bhsd->bhtd", weights, v)  # (B, H, T, D)


def fused_attention(q, k, v, n_head: int, attention_mask, scale: float, implementation: str) -> jax.Array:
    """The same causal attention in one ``jax.nn.dot_product_attention`` call:
    q, k, v (B, T, C) -> (B, T, C). Its padding is given as each row's number
    of real tokens, which assumes right padding ([a, b, pad, pad]: what
    encoding.encode builds); outputs at padding positions are never used
    (pooling and losses mask them)."""
    B, T, C = q.shape
    H, D = n_head, C // n_head
    lengths = None if attention_mask is None else attention_mask.sum(-1).astype(jnp.int32)  # (B,)
    y = jax.nn.dot_product_attention(
        q.reshape(B, T, H, D),
        k.reshape(B, T, H, D),
        v.reshape(B, T, H, D),  # 3 x (B, T, H, D)
        scale=scale,
        is_causal=True,
        key_value_seq_lengths=lengths,
        query_seq_lengths=None if lengths is None else jnp.full((B,), T, jnp.int32),
        implementation=implementation,
    )  # (B, T, H, D)
    return y.reshape(B, T, C)


class MLP(nnx.Module):
    """Position-wise feed-forward: widen to 4C, nonlinearity, project back."""

    def __init__(self, config: GPT2Config, *, rngs: nnx.Rngs):
        C, W = config.n_embd, config.mlp_width
        init = nnx.initializers.normal(config.initializer_range)
        proj_init = nnx.initializers.normal(config.initializer_range / math.sqrt(2 * config.n_layer))
        self.c_fc = nnx.Linear(C, W, kernel_init=init, rngs=rngs)
        self.c_proj = nnx.Linear(W, C, kernel_init=proj_init, rngs=rngs)
        self.act = ACTIVATIONS[config.activation_function]
        self.resid_pdrop = config.resid_pdrop

    def __call__(self, x: jax.Array, dropout_key=None) -> jax.Array:
        h = self.act(self.c_fc(x))  # (B, T, W), W = n_inner or 4C
        y = self.c_proj(h)  # (B, T, C)
        return dropout(y, self.resid_pdrop, dropout_key)


class Block(nnx.Module):
    """One Transformer block, pre-LayerNorm as in GPT-2:

        x = x + attn(ln_1(x))
        x = x + mlp(ln_2(x))

    The residual stream ``x`` passes through untouched; each sub-layer only
    adds to it.
    """

    def __init__(self, config: GPT2Config, layer_idx: int, *, rngs: nnx.Rngs):
        C, eps = config.n_embd, config.layer_norm_epsilon
        self.ln_1 = nnx.LayerNorm(C, epsilon=eps, rngs=rngs)
        self.attn = CausalSelfAttention(config, layer_idx, rngs=rngs)
        self.ln_2 = nnx.LayerNorm(C, epsilon=eps, rngs=rngs)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(self, x: jax.Array, attention_mask: jax.Array | None, dropout_key=None) -> jax.Array:
        k_attn, k_mlp = split_key(dropout_key, 2)
        x = x + self.attn(self.ln_1(x), attention_mask, k_attn)  # (B, T, C)
        return x + self.mlp(self.ln_2(x), k_mlp)  # (B, T, C)

    def decode(self, x: jax.Array, cache: tuple) -> tuple[jax.Array, tuple]:
        """The block with the attention's key/value cache (see ``CausalSelfAttention.decode``)."""
        a, cache = self.attn.decode(self.ln_1(x), cache)
        x = x + a  # (B, T, C)
        return x + self.mlp(self.ln_2(x)), cache  # (B, T, C)


# ----------------------------------------------------------------------------
# The backbone: everything but the head
# ----------------------------------------------------------------------------


def position_ids_from_mask(attention_mask: jax.Array) -> jax.Array:
    """Position of each token counted over real tokens only.

    With left padding ``[pad, pad, a, b]`` the first real token ``a`` must get
    position 0, exactly as when the sequence runs alone; padding gets 0 too
    (its output is never used).
    """
    return jnp.maximum(jnp.cumsum(attention_mask, axis=-1) - 1, 0).astype(jnp.int32)


def lookup(embed: nnx.Embed, ids: jax.Array) -> jax.Array:
    """``embed(ids)``: the table's row for each id, in the table's dtype.

    The rows are read from a float32 copy of the table. Going forward that
    changes nothing; it matters for the gradient, which adds one row per
    token into the table's gradient. Under mixed precision that sum would
    run in bfloat16, and a common token appears hundreds of times in a
    batch: in ``tests/test_train.py`` a token that fills two thirds of a
    batch (1,363 times) gets a gradient row 68% away from float32's with a
    bfloat16 sum and 3.1% with this one (a jitted gradient, as in training). PyTorch's autocast keeps embeddings
    in float32 for the same reason."""
    table = embed.embedding[...]  # (V, C)
    return jnp.take(table.astype(jnp.float32), ids, axis=0).astype(table.dtype)  # (..., C)


def is_concrete(x) -> bool:
    """Are ``x``'s values known here: a NumPy array, or a JAX array outside
    any trace (not a tracer inside jit or grad)?"""
    tracer = getattr(jax.core, "Tracer", None)  # (where a JAX version moves it: NumPy arrays are still checked)
    return isinstance(x, np.ndarray) or (tracer is not None and isinstance(x, jax.Array) and not isinstance(x, tracer))


def check_token_ids(ids, vocab_size: int, what: str) -> None:
    """Refuse token ids outside ``0 .. vocab_size - 1`` (another tokenizer's,
    typically): a gather past the embedding table returns NaN rows, so NaN
    logits or garbage tokens, silently."""
    ids = np.asarray(ids)
    if ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(
                f"{what} holds token id {hi if hi >= vocab_size else lo}, outside the model's vocabulary "
                f"(ids 0..{vocab_size - 1}): were they made by another model's tokenizer?"
            )


class GPT2Backbone(nnx.Module):
    """Token ids (B, T) -> hidden states (B, T, C)."""

    def __init__(self, config: GPT2Config, *, rngs: nnx.Rngs):
        self.config = config
        init = nnx.initializers.normal(config.initializer_range)
        self.wte = nnx.Embed(config.vocab_size, config.n_embd, embedding_init=init, rngs=rngs)
        self.wpe = nnx.Embed(config.n_positions, config.n_embd, embedding_init=init, rngs=rngs)
        # nnx.Embed fixes its compute dtype to float32 when it is built, so
        # its lookups and `attend` (the tied next-word head) would return
        # float32 even from the bfloat16 copy of the weights that mixed
        # precision makes (steps.py), and float32 activations pull every later
        # matmul up to float32. None makes them follow the weights they are
        # given, as nnx.Linear and nnx.LayerNorm already do.
        self.wte.dtype = self.wpe.dtype = None
        self.h = nnx.List([Block(config, i, rngs=rngs) for i in range(config.n_layer)])
        self.ln_f = nnx.LayerNorm(config.n_embd, epsilon=config.layer_norm_epsilon, rngs=rngs)

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """``input_ids`` int (B, T); ``attention_mask`` (B, T), 1 = real token, 0 = padding.

        Where the fused attention runs (see ``ATTENTION_KINDS``), padding must
        be on the right: it is passed as each row's number of real tokens.
        Left-padded batches need ``set_attention(model, "explicit")``.

        Dropout is applied only when ``dropout_key`` is given (training).
        """
        B, T = input_ids.shape
        if T > self.config.n_positions:
            raise ValueError(f"sequence length {T} exceeds the model's n_positions={self.config.n_positions}")
        if is_concrete(input_ids):  # (inside jit the values are not known: not checkable)
            check_token_ids(input_ids, self.config.vocab_size, "input_ids")
        if attention_mask is not None and is_concrete(attention_mask) and self.config.n_layer:
            self._check_fused_padding(np.asarray(attention_mask), dropout_key is not None)
        if attention_mask is None:
            pos = jnp.arange(T, dtype=jnp.int32)[None, :]  # (1, T)
        else:
            pos = position_ids_from_mask(attention_mask)  # (B, T)
        keys = split_key(dropout_key, self.config.n_layer + 1)

        x = lookup(self.wte, input_ids) + lookup(self.wpe, pos)  # (B, T, C): what + where
        x = dropout(x, self.config.embd_pdrop, keys[0])
        for block, key in zip(self.h, keys[1:], strict=True):
            x = block(x, attention_mask, key)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def _check_fused_padding(self, mask: np.ndarray, dropout: bool) -> None:
        """Where the fused attention will run, refuse a mask that is not
        right-padded: it is passed as each row's count of real tokens, so a
        left-padded row would attend to its padding and miss its last tokens,
        silently. (A mask known only inside jit cannot be checked; minitransfer's
        own batches are right-padded.)"""
        attn = self.h[0].attn
        if attn.fused(self.wte.embedding[...].dtype, dropout and attn.attn_pdrop > 0) is None:
            return
        real = mask.astype(bool)  # (B, T)
        right = np.arange(mask.shape[1])[None, :] < real.sum(-1, keepdims=True)  # (B, T): [1, 1, .., 0, 0]
        if not (real == right).all():
            row = int(np.flatnonzero((real != right).any(-1))[0])
            raise ValueError(
                f"attention_mask row {row} is not right-padded (real tokens first, then padding), "
                f"which the fused attention needs: it takes each row's number of real tokens. Pad on "
                f"the right, or use set_attention(model, 'explicit')"
            )

    def init_cache(self, batch_size: int, max_len: int) -> dict:
        """An empty key/value cache for ``max_len`` positions: for each layer,
        k and v of shape (B, H, max_len, D). One array per layer (not one
        stacked array) so that a decode step updates each in place instead of
        slicing and re-stacking the whole cache."""
        c = self.config
        shape = (batch_size, c.n_head, max_len, c.n_embd // c.n_head)
        return {
            "k": tuple(jnp.zeros(shape, jnp.float32) for _ in range(c.n_layer)),
            "v": tuple(jnp.zeros(shape, jnp.float32) for _ in range(c.n_layer)),
        }

    def decode(self, input_ids: jax.Array, cache: dict, start: jax.Array) -> tuple[jax.Array, dict]:
        """Run tokens at positions ``start .. start+T-1`` (B, T) against a
        key/value ``cache`` of everything before them; return hidden states
        (B, T, C) and the updated cache. The prompt goes in once (T = its
        length, start = 0); then each new token is one call with T = 1."""
        B, T = input_ids.shape
        pos = start + jnp.arange(T, dtype=jnp.int32)[None, :]  # (1, T)
        x = lookup(self.wte, input_ids) + lookup(self.wpe, pos)  # (B, T, C)
        ks, vs = [], []
        for i, block in enumerate(self.h):
            x, (k, v) = block.decode(x, (cache["k"][i], cache["v"][i], start))  # (B, T, C)
            ks.append(k)
            vs.append(v)
        return self.ln_f(x), {"k": tuple(ks), "v": tuple(vs)}


def set_attention(module: nnx.Module, kind: str) -> nnx.Module:
    """Choose how every attention layer in ``module`` computes: one of
    ``ATTENTION_KINDS``. Returns ``module`` (changed in place)."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"unknown attention {kind!r}; expected one of {list(ATTENTION_KINDS)}")
    for _, m in nnx.iter_graph(module):
        if isinstance(m, CausalSelfAttention):
            m.attention = kind
    return module


def num_params(module: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


# ----------------------------------------------------------------------------
# A model = a backbone + one head
# ----------------------------------------------------------------------------


@register_head
class NextWordHead(TaskHead):
    """Hidden states (B, T, C) -> next-word logits (B, T, V).

    GPT-2 *ties* this head to the token embedding ``wte``: the score of word v
    is the dot product of the hidden state with v's own embedding. So the head
    owns no weights; it reads ``backbone.wte``. That is also why chopping it
    off loses nothing: every weight stays in the backbone.
    """

    kind = "next-word"

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return backbone.wte.attend(hidden)  # (B, T, C) @ (C, V) -> (B, T, V)

    def loss(self, outputs, batch):
        """Cross-entropy of token t+1 given tokens <= t: outputs (B, T, V), batch["targets"] (B, T)."""
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]).mean()


class GPT2(nnx.Module):
    """A GPT-2 backbone with one swappable head.

    ``model(input_ids)`` returns whatever the head returns: next-word logits
    ``(B, T, V)`` with ``NextWordHead``, class logits ``(B, K)`` with
    ``ClassificationHead``. Replacing ``model.head`` never touches
    ``model.backbone``.
    """

    def __init__(self, backbone: GPT2Backbone, head: nnx.Module):
        self.backbone = backbone
        self.head = head

    @property
    def config(self) -> GPT2Config:
        return self.backbone.config

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        *,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        k_backbone, k_head = split_key(dropout_key, 2)
        hidden = self.backbone(input_ids, attention_mask, dropout_key=k_backbone)  # (B, T, C)
        # NextWordHead: (B, T, V) next-word logits; ClassificationHead: (B, K) class logits
        return self.head(hidden, attention_mask, self.backbone, dropout_key=k_head)

    @classmethod
    def language_model(cls, config: GPT2Config, seed: int = 0) -> GPT2:
        """A randomly initialised GPT-2 with its next-word head (GPT-2's init scheme)."""
        return cls(GPT2Backbone(config, rngs=nnx.Rngs(seed)), NextWordHead())
