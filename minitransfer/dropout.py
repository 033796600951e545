"""Dropout with explicit PRNG keys, shared by the model and the heads."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout. Dropout is on exactly when a PRNG key is passed.

    Passing keys explicitly (instead of hiding an RNG inside the module) makes
    every training step a pure function of (weights, batch, key): the same
    seed gives the same run, and a resumed run can re-create the key of any
    step with ``jax.random.fold_in(seed_key, step)``.
    """
    if key is None or rate == 0.0:
        return x
    # Each element is dropped when 16 random bits fall below rate * 2^16, so
    # the rate is exact to 1/65536. The PRNG (threefry) makes 32 bits per
    # call; one call serves two elements here, where jax.random.bernoulli
    # spends a whole call on each: that halves the cost of dropout's random
    # numbers, about 0.15 s of a 124M training step on a 2-core CPU.
    threshold = round(rate * 2**16)
    words = jax.random.bits(key, ((x.size + 1) // 2,), jnp.uint32)  # (ceil(N/2),)
    bits = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[: x.size]  # (N,) 16-bit halves
    keep = bits.reshape(x.shape) >= threshold  # same shape as x; True with probability 1 - rate
    return jnp.where(keep, x * (2**16 / (2**16 - threshold)), 0.0)


def split_key(key: jax.Array | None, n: int):
    return [None] * n if key is None else list(jax.random.split(key, n))
