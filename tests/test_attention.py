"""The fused attention path computes the same attention as the explicit one.

On the CPU "fused" runs XLA's ``dot_product_attention``; on an NVIDIA GPU in
bfloat16 it runs cuDNN's flash-attention kernel (what "auto" picks there), so
running this file on a GPU checks the kernel the fast path really uses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minitransfer as mt
from minitransfer.model import set_attention
from minitransfer.steps import cast_for_compute

CFG = mt.GPT2Config(
    n_layer=2, n_head=4, n_embd=64, vocab_size=211, n_positions=64, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0
)
IDS = np.random.default_rng(0).integers(0, 211, (3, 40)).astype(np.int32)
# right padding, as encoding.encode builds it: full row, 25 real tokens, 3 real tokens
MASK = np.array([[1] * 40, [1] * 25 + [0] * 15, [1] * 3 + [0] * 37], np.int32)


def hidden(kind: str, dtype: str):
    model = set_attention(mt.GPT2.language_model(CFG, seed=1), kind)
    from flax import nnx

    graphdef, params = nnx.split(model.backbone)
    net = nnx.merge(graphdef, cast_for_compute(params, dtype))
    return np.asarray(net(jnp.asarray(IDS), jnp.asarray(MASK)).astype(jnp.float32))  # (B, T, C)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("bfloat16", 0.1)])
def test_fused_attention_equals_explicit(dtype, tol):
    explicit, fused = hidden("explicit", dtype), hidden("fused", dtype)
    real = MASK.astype(bool)  # only real tokens are compared: outputs at padding are never used
    diff = np.abs(explicit - fused)[real].max()
    # bfloat16 keeps 8 bits of mantissa: hidden states of size ~1-5 round to ~0.02-0.03,
    # and two differently ordered bfloat16 computations differ by a few such steps
    assert diff < tol, f"{dtype}: fused differs from explicit by {diff}"


def attention_grads(kind: str, dtype: str):
    """Gradients (float32 master weights) of a loss over the real tokens, computed in ``dtype``."""
    from flax import nnx

    model = set_attention(mt.GPT2.language_model(CFG, seed=1), kind)
    graphdef, params = nnx.split(model)

    def loss(p):
        logits = nnx.merge(graphdef, cast_for_compute(p, dtype))(jnp.asarray(IDS), jnp.asarray(MASK))  # (B, T, V)
        return (logits.astype(jnp.float32).mean(-1) * MASK).sum()

    return jax.tree.leaves(jax.grad(loss)(params))


def test_fused_attention_gradients_equal_explicit():
    for g_explicit, g_fused in zip(
        attention_grads("explicit", "float32"), attention_grads("fused", "float32"), strict=True
    ):
        np.testing.assert_allclose(np.asarray(g_fused), np.asarray(g_explicit), rtol=1e-4, atol=1e-6)


def test_fused_attention_gradients_in_bfloat16():
    """The backward pass of the path mixed-precision training takes (cuDNN's on
    a GPU): each weight's gradient within 5% of the explicit one (norm of the
    difference over norm of the gradient). bfloat16 itself moves these
    gradients up to 0.9% away from float32 (measured on the CPU, explicit
    path), and on the CPU the two paths agree to 0.4%; a wrong mask or scale
    moves them by far more than 5%."""
    worst = 0.0
    for g_explicit, g_fused in zip(
        attention_grads("explicit", "bfloat16"), attention_grads("fused", "bfloat16"), strict=True
    ):
        g_explicit, g_fused = np.asarray(g_explicit, np.float64), np.asarray(g_fused, np.float64)
        scale = np.linalg.norm(g_explicit)
        if scale > 0:
            worst = max(worst, np.linalg.norm(g_fused - g_explicit) / scale)
    assert worst < 0.05, f"a bfloat16 gradient differs by {worst:.3f} of its norm"


def test_auto_stays_explicit_on_cpu_and_fused_refuses_attention_dropout():
    model = mt.GPT2.language_model(mt.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50, n_positions=16))
    attn = model.backbone.h[0].attn
    assert attn.attention == "auto"
    if jax.default_backend() == "cpu":
        assert attn.fused(jnp.bfloat16, dropout_active=False) is None
    assert attn.fused(jnp.float32, dropout_active=True) is None  # auto: dropout keeps it explicit
    set_attention(model, "fused")
    with pytest.raises(ValueError, match="attn_pdrop"):
        model(jnp.zeros((1, 4), jnp.int32), dropout_key=jax.random.key(0))
    with pytest.raises(ValueError, match="unknown attention 'flash'"):
        set_attention(model, "flash")


@pytest.mark.parametrize(
    "capability,n_embd,n_head,dtype,auto,fused",
    [
        ((9, 0), 256, 4, jnp.bfloat16, "cudnn", "cudnn"),  # GPT-2's 64-wide heads on an H100
        ((8, 0), 64, 8, jnp.float16, "cudnn", "cudnn"),  # 8-wide heads on an A100
        ((9, 0), 48, 4, jnp.bfloat16, None, "xla"),  # 12-wide heads: not a multiple of 8
        ((9, 0), 256, 1, jnp.bfloat16, None, "xla"),  # 256-wide heads: over 128
        ((7, 5), 256, 4, jnp.bfloat16, None, "xla"),  # a T4: before Ampere
        (None, 256, 4, jnp.bfloat16, None, "xla"),  # a CPU, TPU or ROCm GPU
        ((9, 0), 256, 4, jnp.float32, None, "xla"),  # cuDNN's kernel takes 16-bit inputs only
    ],
)
def test_auto_takes_cudnn_only_where_it_can_run(monkeypatch, capability, n_embd, n_head, dtype, auto, fused):
    """JAX raises, instead of falling back, when cuDNN's flash attention cannot
    take a shape or a GPU: "auto" must choose it only where it runs, and a
    forced "fused" must fall back to XLA's version there (simulated devices:
    nothing runs on them)."""
    from minitransfer import model as model_mod

    monkeypatch.setattr(model_mod, "_gpu_compute_capability", lambda: capability)
    cfg = mt.GPT2Config(n_layer=1, n_head=n_head, n_embd=n_embd, vocab_size=50, n_positions=16)
    model = mt.GPT2.language_model(cfg)
    attn = model.backbone.h[0].attn
    assert attn.fused(dtype, dropout_active=False) == auto
    set_attention(model, "fused")
    assert attn.fused(dtype, dropout_active=False) == fused


def _device(platform_version: str, **attributes):
    client = type("Client", (), {"platform_version": platform_version})()
    return type("Device", (), {"client": client, **attributes})()


@pytest.mark.parametrize(
    "backend,device,expected",
    [
        ("gpu", _device("cuda 12080", compute_capability="8.6"), (8, 6)),
        ("gpu", _device("rocm 60342", compute_capability="9.0"), None),  # ROCm: not cuDNN, whatever it reports
        ("gpu", _device("cuda 12080"), None),  # no compute capability reported
        ("gpu", _device("cuda 12080", compute_capability="sm_90a"), None),  # one it cannot read
        ("tpu", _device("PJRT C API", compute_capability="9.0"), None),
    ],
)
def test_gpu_compute_capability_reads_cuda_devices_only(monkeypatch, backend, device, expected):
    from minitransfer import model as model_mod

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(jax, "devices", lambda *a: [device])
    assert model_mod._gpu_compute_capability() == expected


def test_a_left_padded_mask_is_refused_where_the_fused_path_would_run():
    # the fused path takes each row's length: a left-padded row gave outputs off by up to 2 (a review, measured
    # on a tiny model), silently; the explicit path takes any mask
    left = MASK[:, ::-1].copy()  # the same rows, padding first
    model = set_attention(mt.GPT2.language_model(CFG, seed=1), "fused")
    with pytest.raises(ValueError, match="attention_mask row 1 is not right-padded"):
        model(IDS, left)
    model(IDS, MASK)  # right-padded: fine
    set_attention(model, "explicit")
    assert np.isfinite(np.asarray(model(IDS, left))).all()
