"""The matmuls of one 124M training step, alone: how fast can they be?

    python benchmarks/gemm_shapes.py [--batch 32] [--seq 512] [--dtype bfloat16] [--repeats 20] [--rounds 3]

A GPT-2 layer has four weight matmuls (qkv C->3C, attention output C->C,
MLP C->4C and 4C->C). Training runs each three times: forward ``x @ W``, and
backward ``dy @ W.T`` (the input's gradient) and ``x.T @ dy`` (the weight's),
at M = batch x seq rows. This script times those 12 shapes, each jitted on
its own, in four variants, and sums them over the layers:

* ``--dtype operands``: both operands already in ``--dtype`` (16-bit by
  default): the best case;
* ``float32 weights, cast in the jit``: what mixed precision does (the
  float32 master weights are cast inside the step); on a GPU, XLA may fuse
  the cast into a Triton gemm instead of calling cuBLAS;
* ``float32 weights, cast apart``: the same cast kept out of the matmul's
  fusion (``jax.lax.optimization_barrier``), so the matmul reads a finished
  16-bit weight, as cuBLAS needs;
* ``transformers' side``: the same shapes in torch (autocast off, 16-bit
  tensors), on the device JAX uses.

Each time is the device's, not the host's: ``--repeats`` calls are queued back
to back and synchronised once, best of ``--rounds``. (The first version synced
after every call. On one H100 (2026-11-27) its JAX times came out 0.06-0.10 ms
above torch's for every one of the 12 shapes, small and large, which is about
what a JAX dispatch plus a sync costs: its floor, 26.8 ms per step against
torch's 15.1 ms, measured the host as much as the matmuls.)

The sum is a floor for the time of the step's weight matmuls (90% of the
step's FLOPs at batch 32 x 512; the attention's own matmuls and the small
classifier head are not in it): ``profile_train_step.py`` reports what the
step's matmuls take inside the whole program. If the floor
is near that figure, the shapes themselves are slow on this device; if it is
far below, the step's matmuls lose time to fusion choices (try again with
``XLA_FLAGS=--xla_gpu_enable_triton_gemm=false``, which ``benchmarks/gpu.sh``
also runs).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(__file__))
from common import accelerator, per_call, sync  # noqa: E402


def step_gemms(M: int, C: int) -> list[tuple[str, tuple, tuple, str]]:
    """(name, shape of x, shape of the weight or dy, kind) of the 12 matmuls of
    one layer's forward and backward, with the operands as the step stores
    them: x (M, k), W (k, n), dy (M, n)."""
    out = []
    for name, k, n in (("qkv", C, 3 * C), ("attn-out", C, C), ("mlp-up", C, 4 * C), ("mlp-down", 4 * C, C)):
        out += [
            (f"{name} forward x@W", (M, k), (k, n), "forward"),
            (f"{name} backward dy@W.T", (M, n), (k, n), "input grad"),
            (f"{name} backward x.T@dy", (M, k), (M, n), "weight grad"),
        ]
    return out


def gemm_fns(kind: str, dt):
    """(16-bit, mixed precision, mixed precision with the cast apart) versions
    of one matmul kind. Mixed precision casts the float32 weight inside the
    jit (forward, input grad), and the weight gradient comes back as float32."""
    import jax
    import jax.numpy as jnp

    def apart(w):
        return jax.lax.optimization_barrier(w.astype(dt))

    if kind == "forward":
        return (jax.jit(lambda x, w: x @ w), jax.jit(lambda x, w: x @ w.astype(dt)), jax.jit(lambda x, w: x @ apart(w)))
    if kind == "input grad":
        return (
            jax.jit(lambda dy, w: dy @ w.T),
            jax.jit(lambda dy, w: dy @ w.astype(dt).T),
            jax.jit(lambda dy, w: dy @ apart(w).T),
        )
    grad = jax.jit(lambda x, dy: (x.T @ dy).astype(jnp.float32))
    return jax.jit(lambda x, dy: x.T @ dy), grad, grad


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    ap.add_argument("--repeats", type=int, default=20, help="calls queued per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per matmul; the best is kept")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch side")
    args = ap.parse_args()
    import jax
    import jax.numpy as jnp
    import numpy as np

    platform, device_name, torch_device = accelerator()
    M, C, L = args.batch * args.seq, args.width, args.layers
    dt = jnp.dtype(args.dtype)
    rng = np.random.default_rng(0)
    print(
        f"gemms of one step: {L} layers x 12 matmuls at M = {args.batch} x {args.seq} = {M} rows, width {C}, "
        f"{args.dtype}; jax on {platform} ({device_name}), torch on {torch_device}; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
    )
    totals = {
        f"{args.dtype} operands": 0.0,
        "float32 weights, cast in the jit": 0.0,
        "float32 weights, cast apart": 0.0,
        "torch": 0.0,
    }
    flops_layer = 0
    for name, shape_a, shape_b, kind in step_gemms(M, C):
        a32 = rng.standard_normal(shape_a, np.float32)
        b32 = rng.standard_normal(shape_b, np.float32) * 0.02
        a, b = jnp.asarray(a32, dt), jnp.asarray(b32, dt)
        b_mixed = b if kind == "weight grad" else jnp.asarray(b32)  # the float32 master weight
        f16, fmixed, fapart = gemm_fns(kind, dt)
        for f, y in ((f16, b), (fmixed, b_mixed), (fapart, b_mixed)):
            f(a, y).block_until_ready()

        def jax_done(outs):
            jax.block_until_ready(outs)

        t16 = per_call(lambda: f16(a, b), jax_done, args.repeats, args.rounds)
        tmixed = per_call(lambda: fmixed(a, b_mixed), jax_done, args.repeats, args.rounds)
        tapart = per_call(lambda: fapart(a, b_mixed), jax_done, args.repeats, args.rounds)
        m, k, n = (
            (shape_a[0], shape_a[1], shape_b[1])
            if kind == "forward"
            else (shape_a[0], shape_a[1], shape_b[0])
            if kind == "input grad"
            else (shape_a[1], shape_a[0], shape_b[1])
        )
        row = (
            f"  {name:<26} {m:>6} x {k:>5} x {n:>5}: {1e3 * t16:7.3f} ms {args.dtype}, "
            f"{1e3 * tmixed:7.3f} ms mixed, {1e3 * tapart:7.3f} ms apart"
        )
        totals[f"{args.dtype} operands"] += t16
        totals["float32 weights, cast in the jit"] += tmixed
        totals["float32 weights, cast apart"] += tapart
        if not args.no_torch:
            import torch

            ta = torch.from_numpy(a32).to(getattr(torch, args.dtype)).to(torch_device)
            tb = torch.from_numpy(b32).to(getattr(torch, args.dtype)).to(torch_device)
            mm = {"forward": lambda: ta @ tb, "input grad": lambda: ta @ tb.T, "weight grad": lambda: ta.T @ tb}[kind]
            mm()
            sync(torch_device)
            tt = per_call(mm, lambda outs: sync(torch_device), args.repeats, args.rounds)
            totals["torch"] += tt
            row += f", {1e3 * tt:7.3f} ms torch"
        flops_layer += 2 * m * k * n
        print(row)
    flops = flops_layer * L
    for variant, t in totals.items():
        if variant == "torch" and args.no_torch:
            continue
        print(
            f"gemm floor, {variant}: {1e3 * t * L:.1f} ms per step ({flops / (t * L) / 1e12:.1f} TFLOP/s over "
            f"{flops / 1e12:.2f} TFLOP)"
        )


if __name__ == "__main__":
    main()
