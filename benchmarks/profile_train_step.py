"""Where the time of one 124M fine-tuning step goes (the step of train_step.py).

    python benchmarks/profile_train_step.py [--batch 8] [--seq 128] [--top 15] [--dtype bfloat16] [--attn-pdrop 0]

On a GPU the times are the device's own, per XLA operation (the profiler's
"XLA Ops" line); matmuls are cuBLAS/Triton gemms and cuDNN's fused attention
is its own line.

Traces one compiled step with ``jax.profiler`` (the trace lands in
runs/profile_train_step/, viewable in Perfetto or TensorBoard), then sums the
time of every XLA operation by kind: matmuls (XNNPACK/YNNPACK ``ynn_fusion``
and plain ``dot``) and everything else, split by the JAX operation it came
from: forward (``jvp``), backward (``transpose(jvp)``), the dropout PRNG
(``threefry``) and the optimizer (outside the gradient). Times are summed
over the XLA worker threads, so parts that run side by side can add up to
more than the wall time.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import process_setup  # noqa: E402


def phase(op_name: str) -> str:
    if "threefry" in op_name or "/while" in op_name:
        return "dropout PRNG"
    if "transpose(jvp" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    return "optimizer + clipping"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--top", type=int, default=15, help="how many non-matmul operation kinds to list")
    ap.add_argument("--out", default="runs/profile_train_step")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument(
        "--attn-pdrop", type=float, default=0.1, help="dropout on the attention weights (see train_step.py)"
    )
    args = ap.parse_args()
    setting = process_setup()
    import jax
    import numpy as np
    from flax import nnx

    import minitransfer as mt
    from minitransfer.classify import ClassificationHead
    from minitransfer.optim import make_optimizer
    from minitransfer.steps import classification_loss, forward_tokens, make_train_step
    from minitransfer.train import TrainConfig

    B, T = args.batch, args.seq
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(0, 50257, (B, T)).astype(np.int32),
        "attention_mask": np.ones((B, T), np.int32),
        "labels": rng.integers(0, 2, B).astype(np.int32),
    }
    cfg = mt.GPT2Config(n_layer=args.layers, attn_pdrop=args.attn_pdrop)
    model = mt.GPT2(mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0)), ClassificationHead(768, ["neg", "pos"]))
    path = model.backbone.h[0].attn.fused(jax.numpy.dtype(args.dtype), dropout_active=args.attn_pdrop > 0)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(TrainConfig(mode="full", steps=1000, lr=1e-5), params, 1000, args.layers)
    step = make_train_step(graphdef, classification_loss(forward_tokens), tx, dtype=args.dtype)
    opt_state, key = tx.init(params), jax.random.key(0)
    hlo = step.lower(params, opt_state, batch, key, np.float32(1e-5)).compile().as_text()
    op_names = dict(re.findall(r"^\s*(?:ROOT )?%([\w.\-]+) = .*?op_name=\"([^\"]*)\"", hlo, re.M))
    hlo_lines = dict(re.findall(r"^\s*(?:ROOT )?%([\w.\-]+) = (.*)$", hlo, re.M))
    walls = []
    for _ in range(4):  # compile, then warm up
        t = time.perf_counter()
        params, opt_state, m = step(params, opt_state, batch, key, np.float32(1e-5))
        jax.block_until_ready(m)
        walls.append(time.perf_counter() - t)
    os.makedirs(args.out, exist_ok=True)
    before = set(glob.glob(f"{args.out}/plugins/profile/*/*.trace.json.gz"))
    jax.profiler.start_trace(args.out)
    t = time.perf_counter()
    params, opt_state, m = step(params, opt_state, batch, key, np.float32(1e-5))
    jax.block_until_ready(m)
    traced = time.perf_counter() - t
    jax.profiler.stop_trace()
    (trace_file,) = set(glob.glob(f"{args.out}/plugins/profile/*/*.trace.json.gz")) - before
    events = device_events(json.load(gzip.open(trace_file))["traceEvents"], op_names)
    by_phase, by_kind, n_kind = collections.Counter(), collections.Counter(), collections.Counter()
    by_matmul = collections.Counter()
    for name, dur in events:
        kind_of_op = op_kind(name, hlo_lines.get(name, ""))
        if kind_of_op.startswith(("matmuls", "fused attention")):
            by_phase[kind_of_op] += dur
            by_matmul[f"{kind_of_op}: {re.sub(r'[.][0-9]+$', '', name)}"] += dur
            continue
        op = re.sub(r"^jit\(train_step\)/", "", op_names.get(name, name))
        by_phase[phase(op)] += dur
        kind = f"{phase(op)}: {re.sub(r'[.][0-9]+$', '', name)} ({op[:60]})"
        by_kind[kind] += dur
        n_kind[kind] += 1
    total = sum(by_phase.values())
    where = f"{jax.devices()[0].device_kind}" + (
        " (summed over XLA's threads)" if jax.default_backend() == "cpu" else ""
    )
    print(
        f"{setting}; batch {B} x {T}, {args.dtype}, attention {'fused (' + path + ')' if path else 'explicit'}; "
        f"untraced step {1000 * min(walls[1:]):.1f} ms, traced step {1000 * traced:.1f} ms; "
        f"operations sum to {total / 1e3:.1f} ms on {where}"
    )
    for k, v in by_phase.most_common():
        print(f"  {k:<22} {v / 1e3:8.1f} ms  {100 * v / total:5.1f}%")
    print(f"largest non-matmul operation kinds (trace: {trace_file}):")
    for k, v in by_kind.most_common(args.top):
        print(f"  {v / 1e3:8.1f} ms  x{n_kind[k]:<4} {k}")
    # which library runs the matmuls (on a GPU: cuBLAS calls, or Triton gemm
    # fusions that XLA generated, for instance with a cast fused in)
    print("largest matmul operations:")
    for k, v in by_matmul.most_common(args.top):
        print(f"  {v / 1e3:8.1f} ms  {k}")


def device_events(trace_events: list[dict], op_names: dict) -> list[tuple[str, float]]:
    """(XLA operation name, microseconds) of every operation the step ran.
    On a GPU/TPU: the device's "XLA Ops" line (or its streams' kernels, named
    by their ``hlo_op``); on the CPU: the XLA worker threads' events."""
    procs = {e["pid"]: e["args"]["name"] for e in trace_events if e.get("ph") == "M" and e["name"] == "process_name"}
    threads = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in trace_events
        if e.get("ph") == "M" and e["name"] == "thread_name"
    }
    device = {p for p, n in procs.items() if "/device:GPU" in n or "/device:TPU" in n}
    spans = [e for e in trace_events if e.get("ph") == "X"]
    if device:
        ops = [e for e in spans if e["pid"] in device and "XLA Ops" in threads.get((e["pid"], e["tid"]), "")]
        if ops:
            return [(e["name"], e["dur"]) for e in ops]
        return [
            (e.get("args", {}).get("hlo_op", e["name"]), e["dur"])
            for e in spans
            if e["pid"] in device and "Stream" in threads.get((e["pid"], e["tid"]), "")
        ]
    return [(e["name"], e["dur"]) for e in spans if e["name"] in op_names]


def op_kind(name: str, hlo_line: str) -> str:
    if "fmha" in hlo_line or "fmha" in name or "flash" in name:
        return "fused attention"
    if "__triton_gemm" in hlo_line or "triton_gemm" in name:
        return "matmuls (Triton)"
    if "__cublas" in hlo_line or name.startswith(("gemm", "cublas")):
        return "matmuls (cuBLAS)"
    if name.startswith(("ynn_fusion", "dot", "xnn_fusion")) or any(k in hlo_line for k in (" dot(", "convolution(")):
        return "matmuls"
    return "other"


if __name__ == "__main__":
    main()
