"""Task heads: small explicit modules over the backbone's hidden states (B, T, C).

Every head has the same call signature::

    head(hidden, attention_mask, backbone, dropout_key=None)

so a model is "a backbone plus one head" and heads swap freely. The
``backbone`` argument is there for heads that share weights with it (the
next-word head reuses the token embedding); other heads ignore it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from minitransfer.model import _dropout


class NextWordHead(nnx.Module):
    """Hidden states (B, T, C) -> next-word logits (B, T, V).

    GPT-2 *ties* this head to the token embedding ``wte``: the score of word v
    is the dot product of the hidden state with v's own embedding. So the head
    owns no weights; it reads ``backbone.wte``. That is also why chopping it
    off loses nothing: every weight stays in the backbone.
    """

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return backbone.wte.attend(hidden)  # (B, T, C) @ (C, V) -> (B, T, V)


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last real (mask == 1) token of each row: (B, T) -> (B,).

    Works for right padding ``[a, b, pad]`` (-> 1) and left padding
    ``[pad, a, b]`` (-> 2) alike.
    """
    T = attention_mask.shape[-1]
    return (T - 1 - jnp.argmax(attention_mask[:, ::-1], axis=-1)).astype(jnp.int32)


def pool(hidden: jax.Array, attention_mask: jax.Array | None, how: str = "last") -> jax.Array:
    """Summarise a sequence (B, T, C) as one vector (B, C).

    ``last``: the hidden state of the last real token. In a causal model it is
    the only position that has seen the whole text, which is why GPT-style
    classifiers read it. ``mean``: the average over real tokens.
    """
    B, T, C = hidden.shape
    if attention_mask is None:
        attention_mask = jnp.ones((B, T), jnp.int32)
    if how == "last":
        idx = last_token_index(attention_mask)  # (B,)
        return hidden[jnp.arange(B), idx]  # (B, C)
    if how == "mean":
        m = attention_mask.astype(hidden.dtype)[:, :, None]  # (B, T, 1)
        # summed in float32: a bfloat16 running sum over T tokens loses digits
        total = (hidden * m).sum(1, dtype=jnp.float32)  # (B, C)
        return (total / jnp.maximum(m.sum(1, dtype=jnp.float32), 1.0)).astype(hidden.dtype)  # (B, C)
    raise ValueError(f"unknown pooling {how!r}; expected 'last' or 'mean'")


class ClassificationHead(nnx.Module):
    """Hidden states (B, T, C) -> class logits (B, K): pool -> dropout -> linear.

    ``labels`` are the class names in logit order; they travel with the head
    so that a saved classifier knows what its outputs mean.
    """

    def __init__(
        self,
        n_embd: int,
        labels: list[str] | tuple[str, ...],
        *,
        pooling: str = "last",
        dropout: float = 0.1,
        seed: int = 0,
    ):
        if pooling not in ("last", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}; expected 'last' or 'mean'")
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {list(labels)}")
        self.labels = tuple(str(x) for x in labels)
        self.pooling = pooling
        self.dropout = dropout
        self.score = nnx.Linear(
            n_embd, len(self.labels), kernel_init=nnx.initializers.normal(0.02), rngs=nnx.Rngs(seed)
        )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def features(self, hidden, attention_mask):
        return pool(hidden, attention_mask, self.pooling)  # (B, C)

    def classify(self, features, dropout_key=None):
        """Pooled features (B, C) -> logits (B, K). Split out so that a frozen
        backbone's features can be computed once and cached (linear probing)."""
        return self.score(_dropout(features, self.dropout, dropout_key))  # (B, K)

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return self.classify(self.features(hidden, attention_mask), dropout_key)
