# %% [markdown]
# # Lecture 9 (appendix): scaling out: jit, pytrees, sharding, mixed precision, fused attention, TPUs
#
# Everything so far ran on one CPU. The same code runs on a GPU, a TPU, or
# many of them, because of five JAX ideas, one section each (jit, pytrees,
# sharding, mixed precision, fused attention), and a closing note on TPUs.
#
# *This lecture simulates 8 devices on the CPU.* XLA reads that setting when
# JAX starts, so it must come before `import jax`. It also keeps JAX on the
# CPU: on a machine with one GPU, JAX's default devices would be that one GPU,
# and the 8 simulated CPU devices would sit unused.

# %%
import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):  # a count you set wins
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minitransfer.apps.lecture import out_dir

print(jax.devices())

# %% [markdown]
# **The idea in one picture** (after the cell above, which must run before
# anything imports JAX): where `--parallel data` and `--parallel fsdp` put a
# batch and a few of the shipped stand-in's weights on this mesh of devices,
# one colour per device, as `minitransfer/parallel.py`'s rules lay them out.
# **What to see:** the batch is split along its first axis in both; `data`
# keeps a whole copy of every weight on every device, `fsdp` splits each
# weight along its largest axis that divides evenly, so a device holds
# a fraction of it.

# %%
import matplotlib.pyplot as plt

import minitransfer as mt
from minitransfer.apps.diagrams import draw_sharding
from minitransfer.apps.lecture import pretrained_source

standin = mt.load_pretrained(pretrained_source()).backbone
weights = {
    "wte.embedding": standin.wte.embedding[...],
    "h[0].attn.c_attn.kernel": standin.h[0].attn.c_attn.kernel[...],
    "h[0].mlp.c_fc.kernel": standin.h[0].mlp.c_fc.kernel[...],
    "h[0].ln_1.scale": standin.h[0].ln_1.scale[...],
}
fig = draw_sharding(
    weights, (16, standin.config.n_positions), len(jax.devices()), out_dir() / "09_diagram_sharding.png"
)
plt.show()

# %% [markdown]
# ## 1. `jax.jit`: compile once, run many times
# `jit` traces a Python function once per input *shape*, hands the whole
# computation to the XLA compiler, and reuses the compiled program. So
# minitransfer keeps the shapes few. Every training batch has one shape:
# `--batch-size` rows, each right-padded to `--max-len` tokens
# (`encoding.encode`, `encoding.batch_indices`). Evaluation batches are sorted
# by length and cut to their longest row rounded up to a multiple of 16
# tokens (`steps.batched`, `LENGTH_BUCKET`): a few shapes, one per multiple.


# %%
def gelu_mlp(w1, w2, x):
    return jax.nn.gelu(x @ w1) @ w2


w1, w2 = jnp.ones((256, 1024)) * 0.01, jnp.ones((1024, 256)) * 0.01
x = jnp.ones((512, 256))
jitted = jax.jit(gelu_mlp)
jitted(w1, w2, x).block_until_ready()  # compile
for name, f in (("eager", gelu_mlp), ("jit", jitted)):
    t = time.perf_counter()
    for _ in range(20):
        f(w1, w2, x).block_until_ready()
    print(f"{name:>5}: {(time.perf_counter() - t) / 20 * 1e3:.2f} ms per call")

# %% [markdown]
# **What you see:** the price of compiling, and when it is paid. A fresh
# jitted function is compiled on its first call and for every *new* input
# shape; calls with a shape it has seen reuse the program. That is the reason
# for the two rules above (one training shape, a few evaluation lengths), and
# why `compare` keeps one compiled train step for all its runs.

# %%
import matplotlib.pyplot as plt

fresh = jax.jit(lambda w1, w2, x: jax.nn.gelu(x @ w1) @ w2)
calls, times = [], []
for i, rows in enumerate([512, 512, 512, 256, 256, 512]):
    xi = jnp.ones((rows, 256))
    t = time.perf_counter()
    fresh(w1, w2, xi).block_until_ready()
    times.append(1e3 * (time.perf_counter() - t))
    calls.append(f"call {i + 1}\n{rows} rows")
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.bar(calls, times, color=["#d62728" if t > 5 * min(times) else "#3d7bd9" for t in times])
ax.set_yscale("log")
ax.set_ylabel("ms (log scale)")
ax.set_title("jit: compile on a new shape (red), reuse after (blue)")
fig.tight_layout()
fig.savefig(out_dir() / "08_jit_compile.png", dpi=100)
plt.show()

# %% [markdown]
# ## 2. Pytrees: nested containers of arrays
# Parameters, gradients and optimizer state are *pytrees* (nested dicts and
# lists of arrays). `jax.tree.map` applies a function to every leaf; that is
# how one line updates, copies or shards a whole model. `nnx.split` turns a
# Flax module into a static description plus a pytree of its parameters.

# %%
import minitransfer as mt
from minitransfer.classify import ClassificationHead

cfg = mt.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=512, n_positions=32)
model = mt.GPT2(mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0)), ClassificationHead(64, ["a", "b"]))
graphdef, params = nnx.split(model)
shapes = jax.tree.map(lambda p: p.shape, params)
print("c_attn kernel:", shapes["backbone"]["h"][0]["attn"]["c_attn"]["kernel"])
print("leaves:", len(jax.tree.leaves(params)), " parameters:", sum(p.size for p in jax.tree.leaves(params)))

# %% [markdown]
# ## 3. Sharding: the same step over a mesh of devices
# A `Mesh` names the devices' axes; a `NamedSharding` says how an array is
# split over them. minitransfer's `--parallel data` splits each batch over the
# `data` axis and replicates weights; `--parallel fsdp` splits the weights
# too. The jitted train step does not change: jit compiles it for the
# shardings its inputs carry and inserts the communication.

# %%
from minitransfer.apps.lecture import show
from minitransfer.parallel import Parallel, fsdp_spec

show(fsdp_spec)
show(Parallel.place_batch)

# %% [markdown]
# **What you see:** one training step on 1 device and on 8 (data parallel and
# FSDP): the same loss, and where one FSDP weight matrix lives.

# %%
from minitransfer.optim import make_optimizer
from minitransfer.steps import classification_loss, forward_tokens, make_train_step
from minitransfer.train import TrainConfig

rng = np.random.default_rng(0)
batch = {
    "input_ids": rng.integers(0, 512, (16, 32)).astype(np.int32),
    "attention_mask": np.ones((16, 32), np.int32),
    "labels": rng.integers(0, 2, 16).astype(np.int32),
}
for strategy in ("none", "data", "fsdp"):
    tc = TrainConfig(mode="full", steps=10, warmup=0.0, lr=1e-3)
    tx = make_optimizer(tc, params, 10, cfg.n_layer)
    par = Parallel(strategy)
    p0 = par.place(jax.tree.map(jnp.array, params))
    o0 = par.place(tx.init(p0))
    sh = (par.param_sharding(p0), par.param_sharding(o0)) if par.mesh else None
    step = make_train_step(graphdef, classification_loss(forward_tokens), tx, sh)
    p1, o1, m = step(p0, o0, par.place_batch(batch), jax.random.key(0), tc.lr)  # last: this step's learning rate
    print(f"{strategy:>5}: loss {float(m['loss']):.6f} on {par.n_devices} device(s)")
kernel = p1["backbone"]["h"][0]["mlp"]["c_fc"]["kernel"][...]
print(
    "FSDP c_fc kernel",
    kernel.shape,
    "->",
    kernel.addressable_shards[0].data.shape,
    f"on each of {len(kernel.addressable_shards)} devices",
)
jax.debug.visualize_array_sharding(kernel)

# %% [markdown]
# ## 4. Mixed precision: `--dtype bfloat16`
# GPUs and TPUs multiply bfloat16 numbers several times faster than float32.
# bfloat16 keeps float32's exponent (so no overflow, no loss scaling) but
# only ~3 significant digits. Mixed precision keeps a float32 *master copy*
# of the weights and the optimizer state, and casts a bfloat16 copy for the
# forward pass inside the jitted step; gradients flow back through the cast
# in float32. Softmax and the loss stay float32, where rounding hurts most.

# %%
from minitransfer.steps import cast_for_compute, matmul_dtypes

show(cast_for_compute)
for dtype in ("float32", "bfloat16"):
    tc = TrainConfig(mode="full", steps=10, warmup=0.0, lr=1e-3, dtype=dtype)
    tx = make_optimizer(tc, params, 10, cfg.n_layer)
    p0 = jax.tree.map(jnp.array, params)
    o0 = tx.init(p0)
    step = make_train_step(graphdef, classification_loss(forward_tokens), tx, dtype=dtype)
    found = matmul_dtypes(step, p0, o0, batch, jax.random.key(0), tc.lr)  # reads the program; runs nothing
    p1, o1, m = step(p0, o0, batch, jax.random.key(0), tc.lr)
    kernel = p1["backbone"]["h"][0]["mlp"]["c_fc"]["kernel"][...]
    print(
        f"{dtype:>8}: loss {float(m['loss']):.5f}; the updated weights are still {kernel.dtype}; "
        f"the step's matmuls by operand dtype: {dict(found)}"
    )

# %% [markdown]
# **What you see:** the two losses agree to about three digits, the weights
# stay float32, and every matrix product of the bfloat16 step (forward and
# backward) takes bfloat16 operands. That last line is worth checking in any
# mixed-precision code, because nothing else tells you when it is wrong: JAX
# promotes `bfloat16 @ float32` to float32 without a word, so a single
# float32 activation early in the network turns every later matmul back into
# float32, and the only symptom is speed. minitransfer had exactly that bug
# until 2026-11-27: `nnx.Embed` fixes the dtype of its output to its weights'
# dtype *when it is built* (float32), so the embeddings came out float32 and
# "bfloat16" training only rounded the weights. On an H100 it ran no faster
# than float32 (measured when the GPU issue was filed), which is how it
# showed. After the fix, on the same kind of GPU, the 124M step at batch
# 32 x 512 took 31.6 ms in bfloat16 against 83.3 ms in float32: 2.6 times
# faster (16-bit compute also let it take section 5's fused attention), and
# 2.55 times transformers' step. The fix is one line in
# `GPT2Backbone.__init__`, and `matmul_dtypes` (which counts the
# `dot_general` operations in the program `jit` hands to XLA) is now in the
# tests.

# %% [markdown]
# ## 5. Fused attention: the same attention in one kernel
# Lecture 2's attention is written out step by step: scores `q @ k.T`, the
# causal mask, softmax, dropout, `weights @ v`. Each step is a separate
# tensor of shape (B, H, T, T) that goes out to memory and comes back. At the
# 124M shape with batch 32 x 512 that is 32 x 12 x 512 x 512 numbers: about
# 400 MB per tensor per layer for the float32 scores (the code prints it
# below), and the work on it is not matmuls: it is memory traffic that grows
# with the *square* of the sequence length.
#
# A *fused* (flash) attention computes the same result in one GPU kernel: it
# walks over keys in tiles that fit in on-chip memory, keeps a running
# maximum and sum for the softmax, and never writes the T x T matrix at all.
# JAX exposes it as `jax.nn.dot_product_attention`; with
# `implementation="cudnn"` it runs NVIDIA's cuDNN kernel (bfloat16/float16
# only), with `"xla"` the plain computation XLA compiles, on any device.
#
# minitransfer keeps the explicit attention (it is the one the lectures
# read) and puts the fused call beside it. Which one runs is decided per
# layer by `CausalSelfAttention.fused`:

# %%
from minitransfer.model import CausalSelfAttention, cudnn_attention_fits, fused_attention, set_attention

show(CausalSelfAttention.fused)
show(cudnn_attention_fits)
show(fused_attention)

# %% [markdown]
# Three things the fused call cannot do, and how the code handles them:
#
# * **No dropout on the attention weights.** cuDNN's kernel has none that
#   JAX exposes, so `auto` (the default) takes the fused path only on a GPU,
#   in 16-bit compute, and when `attn_pdrop` is 0 or the model is not
#   training; `fused` refuses an active attention dropout with an error
#   instead of silently skipping it.
# * **Not every GPU, not every head size.** cuDNN's kernel needs an NVIDIA
#   GPU of the Ampere generation or later and heads whose size is a multiple
#   of 8, at most 128 (GPT-2's are 64). Nothing falls back by itself (JAX
#   raises for such a head size; cuDNN has no such kernel before Ampere),
#   so `auto` asks `cudnn_attention_fits` first, and a forced `fused` falls
#   back to XLA's version itself.
# * **Padding as lengths.** The fused call is told each row's number of real
#   tokens (`key_value_seq_lengths`), so it assumes *right* padding
#   (`[a, b, pad, pad]`), which is what minitransfer's data pipeline builds.
#   A mask the backbone can see (a call outside `jit`) that is padded
#   otherwise is refused with an error; inside `jit` its values are not
#   known, so there it cannot be checked.
#
# **What you see:** on a CPU `fused` uses XLA's implementation, which is the
# same arithmetic as the explicit path, so the hidden states of the real
# (non-padding) tokens agree exactly or to float32 rounding; `auto` stays
# explicit. This lecture stays on the CPU; on a GPU the cuDNN kernel sums in
# a different order, so its results differ by rounding, which
# `tests/test_attention.py` checks there: hidden states
# (float32 and bfloat16) and gradients (float32, and bfloat16, which on a GPU
# is cuDNN's backward pass) against the explicit path within stated
# tolerances.

# %%
cfg_a = mt.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=512, n_positions=32, attn_pdrop=0.0)
bb = mt.GPT2Backbone(cfg_a, rngs=nnx.Rngs(0))
ids = jnp.asarray(rng.integers(0, 512, (3, 16)), jnp.int32)
mask = jnp.asarray([[1] * 16, [1] * 10 + [0] * 6, [1] * 4 + [0] * 12], jnp.int32)  # right padding
hidden = {}
for kind in ("explicit", "fused"):
    set_attention(bb, kind)
    hidden[kind] = bb(ids, mask)  # (B, T, C)
real = mask.astype(bool)[:, :, None]  # (B, T, 1)
diff = jnp.abs(hidden["explicit"] - hidden["fused"]) * real
print(f"max |explicit - fused| over real tokens: {float(diff.max()):.2e}")
set_attention(bb, "auto")
print(
    "in bfloat16 without attention dropout, 'auto' picks here:",
    bb.h[0].attn.fused(jnp.bfloat16, dropout_active=False) or "explicit",
)
B_, H_, T_ = 32, 12, 512
print(
    f"explicit attention at the 124M shape, batch {B_} x {T_}: each (B, H, T, T) float32 tensor is "
    f"{B_ * H_ * T_ * T_ * 4 / 1e6:.0f} MB per layer"
)

# %% [markdown]
# On an H100, after section 4's fix, the bfloat16 step at batch 32 x 512
# took 31.6 ms with cuDNN's kernel, and a profile put the kernel at 4.0 ms
# of it (forward and backward) and the matmuls at 11.8 ms. What the fused
# kernel saves against the explicit attention in bfloat16 is still to be
# measured on its own: the explicit one ran there only in float32 (83.3 ms,
# where every other matmul is slower too). The larger lesson of that
# profile is that the 13 ms left are neither: layer norms, GELU, dropout
# masks, residual adds and their gradients, each a pass over memory. On a
# CPU the explicit path is kept: there is no fused kernel to gain from.

# %% [markdown]
# ## TPUs
# On a Cloud TPU VM the same commands run unchanged: `jax.devices()` lists
# the TPU cores, and `--parallel data` or `fsdp` spreads training over them.
# On a pod slice (several hosts) every host runs the same command with
# `MINITRANSFER_MULTIHOST=1`, which calls `jax.distributed.initialize()`;
# each host then feeds only its own rows of every global batch.
# `scripts/tpu/` holds scripts that do all of this.

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** Call `jitted` with `x` of 300 rows, then 301. How many
# compilations?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Two: every distinct shape is a new program. Padding to a few lengths (as
# evaluation batches are, section 1, and the playground's requests,
# `generate.bucket_length`) keeps the count small.
#
# </details>

# %% [markdown]
# **Exercise 2.** Run this lecture with
# `XLA_FLAGS=--xla_force_host_platform_device_count=4` instead of 8. Which strategy's printed shard shape changes, and how?

# %% [markdown]
# <details><summary>Answer</summary>
#
# FSDP's: the c_fc kernel is split over 4 devices instead of 8, so each
# device's shard is twice as large along the split axis. Data parallelism
# replicates the weights (nothing of theirs changes); only each device's
# share of the batch doubles.
#
# </details>

# %% [markdown]
# **Exercise 3.** Why does mixed precision keep a float32 *master copy* of the weights?

# %% [markdown]
# <details><summary>Answer</summary>
#
# An Adam update is often 1e-5 of the weight or smaller, below bfloat16's
# precision (about 3 significant digits): added to a bfloat16 weight it
# would round away, and training would stall. The float32 copy accumulates
# the small updates; bfloat16 is only what the matmuls read.
#
# </details>

# %% [markdown]
# **Exercise 4.** In section 5, pad the second row on the *left* instead
# (`[0] * 6 + [1] * 10`) and compare again. Which path is now wrong, and
# why?

# %% [markdown]
# <details><summary>Answer</summary>
#
# The fused one: it is told only that the row has 10 real keys and takes
# them to be the first 10 positions, so it would attend to padding and
# ignore real tokens. Called as here, outside `jit`, the backbone sees the
# mask and refuses it with an error naming the row; to watch the wrong
# numbers, call it inside `nnx.jit(lambda m, i, k: m(i, k))`, where the
# mask's values are not known. The explicit path reads the mask position by
# position and stays right either way.
#
# </details>
