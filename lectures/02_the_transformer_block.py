# %% [markdown]
# # Lecture 2: the Transformer block, line by line
#
# A GPT-2 is a stack of identical *blocks*. Each block reads a sequence of
# vectors (one per token, C numbers each) and writes a sequence of the same
# shape. Shapes are written as `(B, T, C)`: batch, time (tokens), channels.
#
# ## JAX in two sentences
# JAX is NumPy (`jax.numpy as jnp`) plus three powers: `jax.grad`
# differentiates a function, `jax.jit` compiles it with XLA, and both work on
# *pure functions* (the output depends only on the inputs). Flax NNX adds
# `nnx.Module`: Python objects holding parameters, like PyTorch modules.
#
# ## The block
# GPT-2 uses *pre-LayerNorm* residual blocks: normalise, transform, and *add*
# the result back to the running "residual stream".

# %% [markdown]
# **The idea in one picture:** block 0 of the shipped stand-in, its sublayers
# labelled with their live weight shapes. **What to see:** the blue residual
# stream runs straight from bottom to top; attention and the MLP each read a
# normalised copy of it and *add* their output back (the two `+`). Nothing in
# a block replaces the stream, so a block can learn to do almost nothing.

# %%
import matplotlib.pyplot as plt

import minitransfer as mt
from minitransfer.apps.diagrams import draw_block
from minitransfer.apps.lecture import out_dir, pretrained_source

fig = draw_block(mt.load_pretrained(pretrained_source()).backbone, 0, out_dir() / "02_diagram_block.png")
plt.show()

# %%
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from minitransfer.apps.lecture import out_dir, show
from minitransfer.model import MLP, Block, CausalSelfAttention, GPT2Backbone, GPT2Config, explicit_attention

show(Block)

# %% [markdown]
# ## Attention: each token looks at the tokens before it
# Every token emits a *query* ("what am I looking for?"), a *key* ("what do I
# contain?") and a *value* ("what do I pass on?"). Token t's output is a
# weighted average of the values of tokens s <= t, weighted by how well its
# query matches their keys. Several *heads* do this in parallel on slices of
# the channels.

# %%
show(CausalSelfAttention.__call__)
# (the fused branch: the same attention as one call, a kernel for GPUs, lecture 9's subject)
show(explicit_attention)

# %% [markdown]
# ## The MLP: think about each token on its own
# After attention has mixed information *between* positions, the MLP
# transforms each position independently: widen to 4C, apply GELU, project
# back.

# %%
show(MLP.__call__)

# %% [markdown]
# ## Follow the shapes
# Build a small model (random weights) and push a batch through, printing the
# shape after each stage. `nnx.Rngs(0)` is a *PRNG key* source: JAX has no
# hidden global random state, so every random number comes from an explicit
# key, which makes runs reproducible.

# %%
config = GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, n_positions=32)
backbone = GPT2Backbone(config, rngs=nnx.Rngs(0))
ids = jnp.array([[11, 42, 7, 99, 3, 5]])  # (B=1, T=6)
x = backbone.wte(ids) + backbone.wpe(jnp.arange(6)[None])
print("embeddings     ", x.shape, "(B, T, C)")
qkv = backbone.h[0].attn.c_attn(backbone.h[0].ln_1(x))
print("q, k, v stacked", qkv.shape, "(B, T, 3C)")
for i, block in enumerate(backbone.h):
    x = block(x, None)
    print(f"after block {i}  ", x.shape)
print("final hidden   ", backbone(ids).shape)

# %% [markdown]
# **What you see:** the attention weights of head 0 in block 0, for a
# sentence of 6 tokens. The upper triangle is empty: the causal mask stops
# token t from looking at the future. Each row sums to 1. With random weights
# every query matches every key about equally, so each row is nearly uniform;
# a trained model's rows are peaked on the tokens that matter.

# %%
import matplotlib.pyplot as plt

attn = backbone.h[0].attn
h = backbone.h[0].ln_1(backbone.wte(ids) + backbone.wpe(jnp.arange(6)[None]))
q, k, v = jnp.split(attn.c_attn(h), 3, axis=-1)
D = config.n_embd // config.n_head
q0, k0 = q[0, :, :D], k[0, :, :D]  # head 0: (T, D)
scores = (q0 @ k0.T) * attn.scale
scores = jnp.where(jnp.tril(jnp.ones((6, 6), bool)), scores, -jnp.inf)
weights = np.asarray(jax.nn.softmax(scores, axis=-1))
print(np.round(weights, 2))
fig, ax = plt.subplots(figsize=(4, 4))
ax.imshow(weights, cmap="Blues")
ax.set_xlabel("key position s")
ax.set_ylabel("query position t")
ax.set_title("attention weights, block 0 head 0")
fig.savefig(out_dir() / "02_attention.png", dpi=100)
plt.show()

# %% [markdown]
# ## Attention of a *trained* model
#
# Now the same computation inside the pretrained stand-in, on a real
# sentence, for a few heads of its first and last block, next to the same
# heads with random weights. **What you see:** random heads spread each row
# thinly over the past; trained heads have learnt *where to look*: some
# attend to the previous token, some to the start of the text (a "no-op"
# sink), some to specific earlier words.

# %%
import minitransfer as mt
from minitransfer.apps.lecture import pretrained_source


def attention_maps(backbone, ids):
    """Attention weights (L, H, T, T) of every block for one sequence ids (1, T)."""
    x = backbone.wte(ids) + backbone.wpe(jnp.arange(ids.shape[1])[None])  # (1, T, C)
    maps = []
    for block in backbone.h:
        a = block.attn
        q, k, _ = jnp.split(a.c_attn(block.ln_1(x)), 3, axis=-1)  # 3 x (1, T, C)
        H, D = a.n_head, x.shape[-1] // a.n_head
        q = q.reshape(1, -1, H, D).transpose(0, 2, 1, 3)  # (1, H, T, D)
        k = k.reshape(1, -1, H, D).transpose(0, 2, 1, 3)  # (1, H, T, D)
        s = jnp.einsum("bhtd,bhsd->bhts", q, k) * a.scale  # (1, H, T, T)
        T = ids.shape[1]
        s = jnp.where(jnp.tril(jnp.ones((T, T), bool)), s, -jnp.inf)
        maps.append(np.asarray(jax.nn.softmax(s, axis=-1))[0])  # (H, T, T)
        x = block(x, None)
    return np.stack(maps)


source = pretrained_source()
trained = mt.load_pretrained(source).backbone
tok = mt.load_tokenizer(source)
sentence = "The acting was terrible, but the music in this film was wonderful."
ids = jnp.asarray([tok.encode(sentence)])
words = [tok.decode([int(i)]).replace(" ", "·") for i in ids[0]]
untrained = GPT2Backbone(trained.config, rngs=nnx.Rngs(1))
panels = [(0, 0), (0, 1), (trained.config.n_layer - 1, 0), (trained.config.n_layer - 1, 2)]
fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 8.4))
for row, (name, bb) in enumerate([("pretrained", trained), ("random", untrained)]):
    maps = attention_maps(bb, ids)
    for col, (layer, head) in enumerate(panels):
        ax = axes[row, col]
        ax.imshow(maps[layer, head], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{name}: block {layer}, head {head}", fontsize=10)
        ax.set_xticks(range(len(words)), words, rotation=90, fontsize=7, fontfamily="monospace")
        ax.set_yticks(range(len(words)), words, fontsize=7, fontfamily="monospace")
fig.tight_layout()
fig.savefig(out_dir() / "02_attention_trained_vs_random.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** Remove the causal mask (`jnp.where(...)`) in
# `attention_maps` and redraw. What would a model trained with the mask make
# of the future it never learnt to use?

# %% [markdown]
# <details><summary>Answer</summary>
#
# The maps fill in above the diagonal: each position now also attends to
# later ones. A model trained with the mask never had a later token in its
# sum, so its weights were never shaped for them: the outputs change in ways
# training never corrected, and next-word prediction would be cheating anyway
# (the answer is in the input).
#
# </details>

# %% [markdown]
# **Exercise 2.** In `CausalSelfAttention`, the scores are multiplied by
# `self.scale` (1/sqrt(D)). Predict what happens to a random model's
# attention rows if you drop the scale, then try it.

# %% [markdown]
# <details><summary>Answer</summary>
#
# The scores' spread grows with sqrt(D), so the softmax sharpens. In this
# lecture's small random model the rows barely change; on `GPT2Config()`'s
# 768-wide shape they sharpen on arbitrary tokens: some rows put nearly all
# their weight on one token, others stay spread over a few. Sharper, not
# one-hot.
#
# </details>

# %% [markdown]
# **Exercise 3.** Find a head in the pretrained model that looks at the
# previous token (a bright line just below the diagonal). Which block is it
# in? Rather than eyeballing every map, score each head by its mean weight on
# that line.

# %% tags=["answer"]
maps = attention_maps(trained, ids)  # (L, H, T, T)
previous = np.array([[np.diagonal(m, offset=-1).mean() for m in layer] for layer in maps])  # (L, H)
layer, head = np.unravel_index(previous.argmax(), previous.shape)
print(np.round(previous, 2), "\n(rows: blocks, columns: heads; 1.0 = all weight on the previous token)")
print(f"block {layer}, head {head} puts {previous[layer, head]:.0%} of its weight on the previous token")
# That is on one sentence: a head that looks one token back by position scores
# high on any sentence, one that follows particular words does not. Try another.
