"""Where the time of one 124M fine-tuning step goes (the step of train_step.py).

    python benchmarks/profile_train_step.py [--batch 8] [--seq 128] [--top 15]

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
    ap.add_argument("--top", type=int, default=15, help="how many non-matmul operation kinds to list")
    ap.add_argument("--out", default="runs/profile_train_step")
    args = ap.parse_args()
    setting = process_setup()
    import jax
    import numpy as np
    from flax import nnx

    import minitransfer as mt
    from minitransfer.heads import ClassificationHead
    from minitransfer.train import TrainConfig, classification_loss, forward_tokens, make_optimizer, make_train_step

    B, T = args.batch, args.seq
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(0, 50257, (B, T)).astype(np.int32),
             "attention_mask": np.ones((B, T), np.int32), "labels": rng.integers(0, 2, B).astype(np.int32)}
    model = mt.GPT2(mt.GPT2Backbone(mt.GPT2Config(), rngs=nnx.Rngs(0)), ClassificationHead(768, ["neg", "pos"]))
    graphdef, params = nnx.split(model)
    tx = make_optimizer(TrainConfig(mode="full", steps=1000, lr=1e-5), params, 1000, 12)
    step = make_train_step(graphdef, classification_loss(forward_tokens), tx)
    opt_state, key = tx.init(params), jax.random.key(0)
    hlo = step.lower(params, opt_state, batch, key, np.float32(1e-5)).compile().as_text()
    op_names = dict(re.findall(r"^\s*%([\w.\-]+) = .*?op_name=\"([^\"]*)\"", hlo, re.M))
    walls = []
    for _ in range(3):  # compile, then warm up
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
    events = [e for e in json.load(gzip.open(trace_file))["traceEvents"]
              if e.get("ph") == "X" and e["name"] in op_names]
    by_phase, by_kind, n_kind = collections.Counter(), collections.Counter(), collections.Counter()
    for e in events:
        name = e["name"]
        if name.startswith(("ynn_fusion", "dot", "xnn_fusion")):
            by_phase["matmuls"] += e["dur"]
            continue
        op = re.sub(r"^jit\(train_step\)/", "", op_names[name])
        by_phase[phase(op)] += e["dur"]
        kind = f"{phase(op)}: {re.sub(r'[.][0-9]+$', '', name)} ({op[:60]})"
        by_kind[kind] += e["dur"]
        n_kind[kind] += 1
    total = sum(by_phase.values())
    print(f"{setting}; untraced step {min(walls[1:]):.3f} s, traced step {traced:.3f} s; "
          f"operations sum to {total / 1e6:.3f} s over XLA's threads")
    for k, v in by_phase.most_common():
        print(f"  {k:<22} {v / 1e6:7.3f} s  {100 * v / total:5.1f}%")
    print(f"largest non-matmul operation kinds (trace: {trace_file}):")
    for k, v in by_kind.most_common(args.top):
        print(f"  {v / 1e3:8.1f} ms  x{n_kind[k]:<4} {k}")


if __name__ == "__main__":
    main()
