"""Text generation: sample one token at a time from the next-word distribution.

The prompt runs through the model once, filling a key/value cache; each new
token then costs a single position (``GPT2Backbone.decode`` with T = 1)
instead of re-running the whole prefix. The whole loop (prefill, then a
``jax.lax.fori_loop`` of decode steps) is one compiled program: the cache has
a fixed shape and the position is a traced number, so it compiles once per
(model, lengths, sampling settings) and never returns to Python between tokens.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minitransfer.model import GPT2, check_token_ids


def filter_logits(logits: jax.Array, temperature: float, top_k: int | None, top_p: float | None) -> jax.Array:
    """Reshape the next-token distribution before sampling. (B, V) -> (B, V).

    temperature < 1 sharpens it, > 1 flattens it; top-k keeps the k likeliest
    tokens; top-p (nucleus) keeps the smallest set whose probability reaches p.
    """
    logits = logits / temperature
    neg = jnp.finfo(logits.dtype).min
    rows = jnp.arange(logits.shape[0])[:, None]  # (B, 1)
    # Kept tokens are chosen by position in the ranking, not by comparing with
    # the cutoff's value: tokens tied at the cutoff would all pass (a flat row
    # kept every token under top-k 2). Ties go to the lower token id.
    if top_k is not None and top_k > 0:
        top = jax.lax.top_k(logits, top_k)[1]  # (B, k): the k likeliest tokens' ids
        keep = jnp.zeros(logits.shape, bool).at[rows, top].set(True)  # (B, V)
        logits = jnp.where(keep, logits, neg)
    if top_p is not None and top_p < 1.0:
        order = jnp.argsort(-logits, axis=-1, stable=True)  # (B, V): token ids, likeliest first
        probs = jax.nn.softmax(jnp.take_along_axis(logits, order, axis=-1), axis=-1)  # (B, V), in that order
        # keep a token if the probability mass *before* it is still < p
        keep_sorted = jnp.cumsum(probs, axis=-1) - probs < top_p  # (B, V)
        keep = jnp.zeros(logits.shape, bool).at[rows, order].set(keep_sorted)  # (B, V), back in token order
        logits = jnp.where(keep, logits, neg)
    return logits


def _pick(logits, key, greedy: bool, temperature: float, top_k, top_p):  # (B, V) -> (B,)
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, filter_logits(logits, temperature, top_k, top_p)).astype(jnp.int32)


# Compiled once per (model structure, maximum length, sampling settings) and
# reused across calls: the graphdef and the settings are static arguments,
# the weights, cache and position are traced.
_SAMPLING = ("greedy", "temperature", "top_k", "top_p")


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", *_SAMPLING))
def _generate_cached(params, prompt, keys, *, graphdef, max_new_tokens, greedy, temperature, top_k, top_p):
    """The whole generation as one compiled program: prefill the prompt, then a
    ``fori_loop`` of single-position decode steps. No round trip to Python per
    token. Returns (B, max_new_tokens) token ids."""
    m = nnx.merge(graphdef, params)
    B, P = prompt.shape
    cache = m.backbone.init_cache(B, P + max_new_tokens)
    hidden, cache = m.backbone.decode(prompt, cache, jnp.int32(0))  # (B, P, C): the prompt, once
    token = _pick(m.backbone.wte.attend(hidden[:, -1]), keys[0], greedy, temperature, top_k, top_p)  # (B,)
    out = jnp.zeros((B, max_new_tokens), jnp.int32)

    def step(i, carry):
        token, cache, out = carry
        out = out.at[:, i].set(token)
        hidden, cache = m.backbone.decode(token[:, None], cache, P + i)  # (B, 1, C): one position
        logits = m.backbone.wte.attend(hidden[:, -1])  # (B, V)
        return _pick(logits, keys[i + 1], greedy, temperature, top_k, top_p), cache, out

    token, cache, out = jax.lax.fori_loop(0, max_new_tokens - 1, step, (token, cache, out))
    return out.at[:, max_new_tokens - 1].set(token)


@functools.partial(jax.jit, static_argnames=("graphdef", *_SAMPLING))
def _full_step(params, ids, key, *, graphdef, greedy, temperature, top_k, top_p):
    logits = nnx.merge(graphdef, params)(ids)[:, -1]  # (B, V): the whole prefix, every time
    return _pick(logits, key, greedy, temperature, top_k, top_p)


def _setup(
    model: GPT2, P: int, max_new_tokens: int, temperature: float, top_k, top_p, greedy: bool, seed: int, prompt=None
):
    """Check a generation request (``prompt``: its token ids); (weights, static
    sampling settings, one PRNG key per new token)."""
    if P == 0:
        raise ValueError("the prompt is empty; give at least one token")
    if prompt is not None:  # here, before the compiled generation, where it could not be checked
        check_token_ids(prompt, model.config.vocab_size, "the prompt")
    if max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be at least 1, got {max_new_tokens}")
    if P + max_new_tokens > model.config.n_positions:
        raise ValueError(
            f"prompt ({P} tokens) + `max_new_tokens` ({max_new_tokens}) exceeds the model's "
            f"n_positions={model.config.n_positions}"
        )
    if temperature <= 0:
        raise ValueError(
            f"`temperature` must be > 0, got {temperature} (for the likeliest token every time, use `greedy`)"
        )
    if top_k is not None and not 1 <= top_k <= model.config.vocab_size:
        raise ValueError(
            f"`top_k` must be between 1 and the vocabulary's {model.config.vocab_size} tokens, got {top_k}"
        )
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"`top_p` must be in (0, 1], got {top_p} (1 keeps every token)")
    graphdef, params = nnx.split(model)
    sampling = dict(
        graphdef=graphdef,
        greedy=greedy,
        temperature=float(temperature),
        top_k=top_k,
        top_p=None if top_p is None else float(top_p),
    )
    return params, sampling, jax.random.split(jax.random.key(seed), max_new_tokens)


def generate(
    model: GPT2,
    prompt_ids: list[int] | np.ndarray,
    max_new_tokens: int = 50,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    greedy: bool = False,
    use_cache: bool = True,
    eos_id: int | None = None,
) -> list[int]:
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens (stops early at
    ``eos_id``). ``greedy`` takes the most likely token each time.
    ``use_cache=False`` recomputes the whole prefix per token: slower, same result
    (the tests check that), kept to show what the cache saves."""
    prompt = np.asarray(prompt_ids, dtype=np.int32).reshape(1, -1)  # (1, P)
    params, sampling, keys = _setup(
        model, prompt.shape[1], max_new_tokens, temperature, top_k, top_p, greedy, seed, prompt
    )
    out: list[int] = []
    if use_cache:
        tokens = np.asarray(_generate_cached(params, prompt, keys, max_new_tokens=max_new_tokens, **sampling))[0]
        for t in tokens.tolist():  # stop after the end-of-text token, as the uncached loop does
            out.append(t)
            if t == eos_id:
                break
    else:
        ids = prompt
        for i in range(max_new_tokens):
            t = int(_full_step(params, ids, keys[i], **sampling)[0])
            out.append(t)
            if t == eos_id:
                break
            ids = np.concatenate([ids, [[t]]], axis=1)
    return out


# ----------------------------------------------------------------------------
# The next-word head's candidates, and generation one token at a time
# ----------------------------------------------------------------------------

MIN_BUCKET = 16


def bucket_length(n: int, limit: int) -> int:
    """The padded length a sequence of ``n`` tokens runs at: the next power of
    two (at least 16), at most ``limit``. A handful of shapes means a handful
    of compilations, reused for every request."""
    b = MIN_BUCKET
    while b < n:
        b *= 2
    return min(b, limit)


def _pad(ids: list[int], limit: int) -> np.ndarray:
    out = np.zeros((1, bucket_length(len(ids), limit)), np.int32)  # (1, Tb)
    out[0, : len(ids)] = ids
    return out


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _next_word_probs(params, ids, last, *, graphdef):
    """(1, Tb) right-padded ids -> (V,) next-token probabilities after position
    ``last``. Attention is causal, so the padding after ``last`` changes nothing."""
    logits = nnx.merge(graphdef, params)(ids)  # (1, Tb, V)
    return jax.nn.softmax(logits[0, last].astype(jnp.float32))  # (V,), sums to 1


def next_word_probs(model: GPT2, ids: list[int]) -> np.ndarray:
    """The next-word head's distribution (V,) after ``ids`` (1 <= len <= n_positions)."""
    if not 1 <= len(ids) <= model.config.n_positions:
        raise ValueError(f"need 1 to {model.config.n_positions} tokens of context, got {len(ids)}")
    graphdef, params = nnx.split(model)
    return np.asarray(_next_word_probs(params, _pad(ids, model.config.n_positions), len(ids) - 1, graphdef=graphdef))


def next_word_candidates(model: GPT2, tokenizer, prompt: str, top_k: int = 5) -> list[dict]:
    """The ``top_k`` most likely next tokens after ``prompt`` with their probabilities."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty after tokenisation; give at least one word")
    n_pos = model.config.n_positions
    if len(ids) > n_pos:
        raise ValueError(f"the prompt is {len(ids)} tokens; this model reads at most {n_pos}")
    return top_candidates(next_word_probs(model, ids), tokenizer, top_k)


def top_candidates(probs: np.ndarray, tokenizer, top_k: int) -> list[dict]:
    if top_k < 1:
        raise ValueError(f"`top_k` must be at least 1, got {top_k}")
    top = np.argsort(-probs, kind="stable")[:top_k]
    return [
        {"rank": r + 1, "id": int(i), "token": tokenizer.decode([int(i)]), "prob": float(probs[i])}
        for r, i in enumerate(top)
    ]


@functools.partial(jax.jit, static_argnames=("graphdef", *_SAMPLING))
def _prefill(params, ids, last, key, *, graphdef, greedy, temperature, top_k, top_p):
    """The prompt (1, Tb), right-padded, into a cache of n_positions; the first
    new token. Padding writes garbage keys/values after ``last``, but a query
    only ever sees positions up to its own, and each decode step overwrites its
    position before anything can look at it."""
    m = nnx.merge(graphdef, params)
    cache = m.backbone.init_cache(1, m.config.n_positions)
    hidden, cache = m.backbone.decode(ids, cache, jnp.int32(0))  # (1, Tb, C)
    logits = m.backbone.wte.attend(jax.lax.dynamic_index_in_dim(hidden, last, axis=1, keepdims=False))  # (1, V)
    return _pick(logits, key, greedy, temperature, top_k, top_p), cache


@functools.partial(jax.jit, static_argnames=("graphdef", *_SAMPLING), donate_argnames=("cache",))
def _decode_one(params, token, cache, pos, key, *, graphdef, greedy, temperature, top_k, top_p):
    """One new token at position ``pos``: (1,) -> (1,), cache updated in place."""
    m = nnx.merge(graphdef, params)
    hidden, cache = m.backbone.decode(token[:, None], cache, pos)  # (1, 1, C)
    return _pick(m.backbone.wte.attend(hidden[:, -1]), key, greedy, temperature, top_k, top_p), cache


def stream(
    model: GPT2,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    greedy: bool = False,
    eos_id: int | None = None,
):
    """Like ``generate``, but yields each new token id as soon as it exists (for
    a page that shows tokens arriving). Each token is one compiled decode step
    with the key/value cache; the same seed gives the same tokens as ``generate``."""
    P = len(prompt_ids)
    params, sampling, keys = _setup(model, P, max_new_tokens, temperature, top_k, top_p, greedy, seed, prompt_ids)
    token, cache = _prefill(params, _pad(prompt_ids, model.config.n_positions), P - 1, keys[0], **sampling)
    for i in range(max_new_tokens):
        t = int(token[0])
        yield t
        if t == eos_id or i == max_new_tokens - 1:
            return
        token, cache = _decode_one(params, token, cache, jnp.int32(P + i), keys[i + 1], **sampling)
