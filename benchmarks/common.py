"""Shared helpers for the benchmarks (run by hand, never in CI)."""

from __future__ import annotations

import os
import time

import numpy as np


def process_setup() -> str:
    """Run under the malloc setting the ``minitransfer`` command uses (glibc
    huge pages, see ``minitransfer.cli.process.huge_pages_env``; restarts this script
    once) so that both frameworks are measured under it; say which it is.
    ``MINITRANSFER_NO_HUGEPAGES=1`` measures without."""
    from minitransfer.cli.process import restart_with_huge_pages

    restart_with_huge_pages()
    on = "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", "")
    return "malloc huge pages " + ("on" if on else "off")


def interleaved_best(fns: dict, steps: int, rounds: int) -> dict:
    """Fastest call of each function, timed in alternating rounds of ``steps``
    calls so that a slow patch of a shared machine hits both sides."""
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], best_of(fn, steps))
    return best


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


def per_call(launch, finish, repeats: int, rounds: int) -> float:
    """Seconds per call of ``launch``, with ``repeats`` calls queued back to
    back and one ``finish`` (a sync) per round; the best of ``rounds``.
    Queued calls keep the device busy while the host dispatches the next, so
    this is the kernel's time wherever a kernel outlasts a dispatch (the
    larger of the two otherwise); a sync after each call would add the host's
    dispatch and sync to every call instead. Every queued output is kept
    until the round's sync: ``repeats`` outputs at once in memory."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        out = [launch() for _ in range(repeats)]
        finish(out)
        best = min(best, (time.perf_counter() - t) / repeats)
    return best


def accelerator() -> tuple[str, str, str]:
    """(jax platform, jax device name, torch device) : torch goes to CUDA when JAX uses a GPU,
    so both frameworks are measured on the same device."""
    import jax
    import torch

    d = jax.devices()[0]
    torch_device = "cuda" if d.platform == "gpu" and torch.cuda.is_available() else "cpu"
    return d.platform, d.device_kind, torch_device


def sync(torch_device: str) -> None:
    if torch_device == "cuda":
        import torch

        torch.cuda.synchronize()


def matmul_flops_per_second(
    n: int = 2048, repeats: int = 5, dtype: str = "float32", torch_device: str = "cpu"
) -> tuple[float, float]:
    """Measured ``dtype`` matmul throughput of this machine: (jax, torch), FLOP/s."""
    import jax
    import jax.numpy as jnp
    import torch

    if torch_device == "cuda":
        n = max(n, 8192)  # a GPU needs a big matmul to reach its peak
    x = np.random.default_rng(0).standard_normal((n, n), np.float32)
    a = jnp.asarray(x, dtype=dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    # calls queued back to back, one sync per round: the matmul's time, not the host's
    t_jax = per_call(lambda: f(a), jax.block_until_ready, repeats, 3)
    ta = torch.from_numpy(x).to(getattr(torch, dtype)).to(torch_device)
    ta @ ta
    sync(torch_device)
    t_torch = per_call(lambda: ta @ ta, lambda outs: sync(torch_device), repeats, 3)
    flops = 2 * n**3
    return flops / t_jax, flops / t_torch
