"""One fine-tuning step at the GPT-2 124M shape: minitransfer vs transformers.

    python benchmarks/train_step.py [--batch 8] [--seq 128] [--steps 3] [--rounds 3] [--dtype float32]
    python benchmarks/train_step.py --shapes 32x512,8x1024,8x128 --dtype bfloat16   # several, one process

Both sides: random weights, float32 (``--dtype bfloat16``: mixed precision,
float32 weights with bfloat16 matmuls; torch via autocast), sequence classification (2 classes) from
the last token, AdamW, batch x seq tokens; the same machine, the same run,
BENCH_THREADS threads (default: all cores). Prints tokens/s, achieved FLOP/s
(model FLOPs: 6 N per token for the matmul weights + attention), the fraction
of this machine's measured matmul FLOP/s, and the minitransfer/transformers
ratio. Steps are timed in alternating rounds (minitransfer, transformers,
minitransfer, ...) and the fastest of each side is reported.
"""

from __future__ import annotations

import argparse
import os
import sys

# On a GPU, leave memory for PyTorch: JAX would otherwise take 75% of it up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(__file__))
from common import accelerator, interleaved_best, matmul_flops_per_second, process_setup, sync, threads  # noqa: E402


def model_flops(L: int, C: int, B: int, T: int) -> float:
    n_matmul = 12 * L * C * C  # qkv (3C^2) + proj (C^2) + MLP (8C^2) per layer
    attention = 12 * L * B * T * T * C  # QK^T and AV, forward + backward
    return 6 * n_matmul * B * T + attention


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--shapes",
        help="several batch shapes, BxT,BxT,... (overrides --batch/--seq): the models, "
        "the matmul peak and both frameworks' start-up are shared, each shape "
        "compiles once",
    )
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument(
        "--attn-pdrop",
        type=float,
        default=0.1,
        help="dropout on the attention weights, both sides (GPT-2's 0.1 by default). At 0, "
        "minitransfer's 'auto' attention takes the fused cuDNN kernel on an NVIDIA GPU of the "
        "Ampere generation or later in bfloat16 (the 124M shape's 64-wide heads fit it)",
    )
    ap.add_argument(
        "--pdrop",
        type=float,
        default=0.1,
        help="dropout on the embeddings and residual branches, both sides (GPT-2's 0.1 by default; "
        "0 with --attn-pdrop 0: no dropout at all, to see what dropout costs)",
    )
    ap.add_argument(
        "--no-torch",
        action="store_true",
        help="time minitransfer alone (for experiments that change only its side; no ratio)",
    )
    ap.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's dense bf16 peak for MFU (default: from minitransfer.flops's table, GPUs/TPUs)",
    )
    args = ap.parse_args()
    setting = process_setup()
    n_threads = threads()
    import numpy as np
    import torch

    torch.set_num_threads(n_threads)
    import jax
    from flax import nnx

    import minitransfer as mt
    from minitransfer.classify import ClassificationHead
    from minitransfer.optim import make_optimizer
    from minitransfer.steps import classification_loss, forward_tokens, make_train_step, matmul_dtypes
    from minitransfer.train import TrainConfig

    shapes = parse_shapes(ap, args.shapes) if args.shapes else [(args.batch, args.seq)]
    L, C = args.layers, 768
    rng = np.random.default_rng(0)
    platform, device_name, torch_device = accelerator()
    from minitransfer.flops import device_peak_tflops

    spec_peak = args.peak_tflops or device_peak_tflops()
    peak_jax, peak_torch = matmul_flops_per_second(dtype=args.dtype, torch_device=torch_device)
    print(
        f"machine: {os.cpu_count()} cores, {n_threads} threads, {setting}; jax on {platform} ({device_name}), "
        f"torch on {torch_device}"
        + (f" ({torch.cuda.get_device_name()})" if torch_device == "cuda" else "")
        + f"; measured {args.dtype} matmul: jax {peak_jax / 1e9:.1f} GFLOP/s, torch {peak_torch / 1e9:.1f} GFLOP/s"
        + (f"; spec bf16 peak {spec_peak:g} TFLOP/s" if spec_peak else "")
    )

    # -- minitransfer: one model and one jitted step, compiled once per shape --
    cfg = mt.GPT2Config(n_layer=L, attn_pdrop=args.attn_pdrop, embd_pdrop=args.pdrop, resid_pdrop=args.pdrop)
    model = mt.GPT2(mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0)), ClassificationHead(C, ["neg", "pos"]))
    path = model.backbone.h[0].attn.fused(jax.numpy.dtype(args.dtype), dropout_active=args.attn_pdrop > 0)
    print(
        f"minitransfer attention: {'fused (' + path + ')' if path else 'explicit'}; "
        f"attention-weight dropout {args.attn_pdrop:g}, other dropout {args.pdrop:g}"
    )
    graphdef, params = nnx.split(model)
    tc = TrainConfig(mode="full", steps=1000, lr=1e-5)
    tx = make_optimizer(tc, params, 1000, L)
    opt_state = tx.init(params)
    step = make_train_step(graphdef, classification_loss(forward_tokens), tx, dtype=args.dtype)
    key = jax.random.key(0)
    state = [params, opt_state]
    hf = None if args.no_torch else transformers_side(args, L, torch_device)

    for B, T in shapes:
        flops = model_flops(L, C, B, T)
        tag = f"{B}x{T} " if len(shapes) > 1 else ""  # each line names its shape when there are several
        ids = rng.integers(0, 50257, (B, T)).astype(np.int32)
        labels = rng.integers(0, 2, B).astype(np.int32)
        print(
            f"{tag}shape: GPT-2 124M (n_layer={L}), batch {B} x seq {T} = {B * T} tokens/step, "
            f"{flops / 1e9:.1f} GFLOP/step, {args.dtype}"
        )
        batch = {"input_ids": ids, "attention_mask": np.ones((B, T), np.int32), "labels": labels}

        def run_ours():
            p, o, m = step(state[0], state[1], batch, key, np.float32(1e-5))
            jax.block_until_ready(m["loss"])
            state[0], state[1] = p, o

        if (B, T) == shapes[0]:  # the step's matmuls by operand dtype: mixed precision must really be mixed
            found = matmul_dtypes(step, state[0], state[1], batch, key, np.float32(1e-5))
            want = {"float32": "f32", "bfloat16": "bf16"}[args.dtype]
            print(
                f"minitransfer matmuls by operand dtype: {dict(found)}"
                + ("" if set(found) == {want} else f"  WARNING: not all in {want}")
            )
        run_ours()  # compile

        def report(name, t, peak):
            print(
                f"{tag}{name}: {1000 * t:.1f} ms/step, {B * T / t:.0f} tokens/s, {flops / t / 1e9:.1f} GFLOP/s "
                f"= {100 * flops / t / peak:.0f}% of measured matmul peak"
                + (f", MFU {100 * flops / t / (spec_peak * 1e12):.1f}% of the spec bf16 peak" if spec_peak else "")
            )

        if hf is None:
            t_ours = interleaved_best({"ours": run_ours}, args.steps, args.rounds)["ours"]
            report("minitransfer", t_ours, peak_jax)
            continue
        run_hf = hf(ids, labels)
        best = interleaved_best({"ours": run_ours, "hf": run_hf}, args.steps, args.rounds)
        report("minitransfer", best["ours"], peak_jax)
        report("transformers", best["hf"], peak_torch)
        print(f"{tag}train step ratio minitransfer/transformers speed-up: {best['hf'] / best['ours']:.2f}x")
    if hf is None:
        print(f"jax default PRNG: {jax.config.jax_default_prng_impl}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    else:
        print(f"transformers attention: {hf.attention}")


def parse_shapes(ap, text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        b, _, t = part.strip().partition("x")
        if not (b.isdigit() and t.isdigit() and int(b) > 0 and int(t) > 0):
            ap.error(f"--shapes: {part!r} is not BATCHxSEQ (for example 32x512)")
        shapes.append((int(b), int(t)))
    return shapes


def transformers_side(args, L, torch_device):
    """The same step in transformers' PyTorch on the same device: ``side(ids, labels)``
    returns a function that runs one step on that batch (``side.attention`` names
    transformers' attention implementation)."""
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    hf = GPT2ForSequenceClassification(
        GPT2Config(
            n_layer=L,
            num_labels=2,
            pad_token_id=50256,
            attn_pdrop=args.attn_pdrop,
            embd_pdrop=args.pdrop,
            resid_pdrop=args.pdrop,
        )
    ).to(torch_device)
    hf.train()
    # the fastest AdamW PyTorch has on a GPU: one fused kernel for all parameters
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-5, **({"fused": True} if torch_device == "cuda" else {}))

    def side(ids, labels):
        t_ids = torch.from_numpy(ids.astype(np.int64)).to(torch_device)
        t_labels = torch.from_numpy(labels.astype(np.int64)).to(torch_device)

        def run_hf():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(torch_device, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16"):
                loss = hf(input_ids=t_ids, labels=t_labels).loss
            loss.backward()
            opt.step()
            sync(torch_device)

        run_hf()  # warm-up
        return run_hf

    side.attention = hf.config._attn_implementation
    return side


if __name__ == "__main__":
    main()
