"""How much arithmetic a step is, and how much of the accelerator it used (MFU).

Model FLOPs per token of training, forward + backward (the usual count, as in
the PaLM paper's appendix and nanoGPT): 6 x the weights that multiply every
token (the blocks' matmuls and the next-word head, which is the embedding
matrix used a second time), plus 12 x layers x context x width for attention's
two matmuls. MFU = achieved model FLOP/s / the device's dense bf16 peak from
its specification sheet (a CPU has none here: give ``peak_tflops`` yourself).
"""

from __future__ import annotations

import jax

# Dense (not sparse) bfloat16 peak, TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H100": 989.0,  # SXM; the PCIe card is 756
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,  # v5e
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
}


def train_flops_per_token(
    n_layer: int, n_embd: int, context: int, vocab_size: int | None = None, n_inner: int | None = None
) -> float:
    """Model FLOPs to train on one token at this context length (forward + backward)."""
    ff = n_inner or 4 * n_embd
    matmul_weights = n_layer * (4 * n_embd * n_embd + 2 * n_embd * ff)  # qkv + proj + MLP in and out
    if vocab_size:
        matmul_weights += vocab_size * n_embd  # the next-word head
    return 6 * matmul_weights + 12 * n_layer * context * n_embd


def device_peak_tflops(device=None) -> float | None:
    """The spec-sheet bf16 peak of a JAX device (default: the first), or None if unknown."""
    kind = (device or jax.devices()[0]).device_kind
    if "PCIe" in kind and "H100" in kind:
        return 756.0
    for name, peak in PEAK_BF16_TFLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return None


def mfu(flops_per_second: float, peak_tflops: float | None) -> float | None:
    return None if not peak_tflops else flops_per_second / (peak_tflops * 1e12)
