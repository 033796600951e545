"""Greedy generation at the GPT-2 124M shape: minitransfer (key/value cache,
one jitted decode step) vs transformers' ``generate``, same prompt and length.

    python benchmarks/generate.py [--prompt-len 16] [--new 64]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # leave GPU memory for PyTorch
sys.path.insert(0, os.path.dirname(__file__))
from common import accelerator, interleaved_best, process_setup, sync, threads  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new", "--new-tokens", dest="new", type=int, default=64)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    setting = process_setup()
    import numpy as np
    import torch

    torch.set_num_threads(threads())
    import tempfile

    from transformers import GPT2Config, GPT2LMHeadModel

    import minitransfer as mt
    from minitransfer.generate import generate

    platform, device_name, torch_device = accelerator()
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=args.layers)).eval()
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        ours = mt.load_pretrained(d)
    prompt = np.random.default_rng(0).integers(0, 50257, args.prompt_len).tolist()

    def run_ours():
        return generate(ours, prompt, args.new, greedy=True)

    a = run_ours()  # compile

    hf = hf.to(torch_device)
    t_prompt = torch.tensor([prompt]).to(torch_device)

    def run_hf():
        with torch.no_grad():
            out = hf.generate(
                t_prompt,
                attention_mask=torch.ones_like(t_prompt),
                do_sample=False,
                max_new_tokens=args.new,
                min_new_tokens=args.new,
                pad_token_id=50256,
            )
        sync(torch_device)
        return out

    b = run_hf()[0, args.prompt_len :].tolist()
    best = interleaved_best({"ours": run_ours, "hf": run_hf}, args.repeats, rounds=2)
    t_ours, t_hf = best["ours"], best["hf"]
    print(
        f"machine: {os.cpu_count()} cores, {threads()} threads, {setting}; jax on {platform} ({device_name}), "
        f"torch on {torch_device}; GPT-2 124M shape ({args.layers} layers), random weights, "
        f"prompt {args.prompt_len} tokens, {args.new} new tokens, greedy"
    )
    print(f"same tokens: {a == b}")
    for name, t in (("minitransfer", t_ours), ("transformers", t_hf)):
        print(f"{name:>12}: {t:.3f} s, {args.new / t:.1f} new tokens/s")
    print(f"generation ratio minitransfer/transformers speed-up: {t_hf / t_ours:.2f}x")


if __name__ == "__main__":
    main()
