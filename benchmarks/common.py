"""Shared helpers for the benchmarks (run by hand, never in CI)."""

from __future__ import annotations

import os
import time

import numpy as np


def threads() -> int:
    return int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))


def best_of(fn, repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (after the caller warmed up)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Measured float32 matmul throughput of this machine: (jax, torch), FLOP/s."""
    import jax
    import jax.numpy as jnp
    import torch

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t_jax = best_of(lambda: f(a).block_until_ready(), repeats)
    ta = torch.from_numpy(np.array(a))  # a writable copy
    ta @ ta
    t_torch = best_of(lambda: ta @ ta, repeats)
    flops = 2 * n**3
    return flops / t_jax, flops / t_torch
