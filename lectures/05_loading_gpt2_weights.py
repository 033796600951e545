# %% [markdown]
# # Lecture 5: loading GPT-2's weights
#
# OpenAI trained GPT-2 once, at a cost lecture 4 put in the tens of
# thousands of dollars or more. Transfer learning starts by *loading* those
# weights into our own code. A Hugging Face
# checkpoint is a `config.json` (the shape) plus `model.safetensors` (named
# tensors). Conversion means: build a model of that shape, then copy each
# tensor into the parameter of the same name, checking every name and shape.

# %% [markdown]
# **The idea in one picture:** every tensor name of a Hugging Face GPT-2 file
# beside the parameter of minitransfer's module tree it is copied into, for
# the shipped stand-in's shape. The names on the left are made by the
# converter's own `convert.hf_name` from the paths on the right. **What to
# see:** one name per parameter, the same shape on both sides, and block
# 0's twelve names repeated for every other block.

# %%
import matplotlib.pyplot as plt

import minitransfer as mt
from minitransfer.apps.diagrams import draw_checkpoint_mapping
from minitransfer.apps.lecture import out_dir, pretrained_source

fig = draw_checkpoint_mapping(mt.load_pretrained(pretrained_source()).backbone, out_dir() / "05_diagram_mapping.png")
plt.show()

# %%
import tempfile

import numpy as np
import torch
from transformers import GPT2Config as HFConfig
from transformers import GPT2LMHeadModel

import minitransfer as mt
from minitransfer.apps.lecture import FAST, out_dir, show
from minitransfer.convert import backbone_from_tensors, hf_name, normalize_state_dict

show(hf_name)

# %% [markdown]
# ## Why no transposes?
# GPT-2's code used a `Conv1D` layer whose weight is stored `(in, out)`: the
# same layout as a Flax `Linear` kernel. (nanoGPT must transpose these
# tensors because it rebuilds them as `torch.nn.Linear`, stored `(out, in)`.)
# Hub files also come in several naming variants; they are normalised first:

# %%
show(normalize_state_dict)

# %% [markdown]
# The copy itself. The model is created *abstractly* with `nnx.eval_shape`
# (shapes only, no memory, no random numbers), and each parameter is filled
# from the checkpoint after its name and shape are checked. A tensor left over
# is an error too: silently ignoring weights would hide a wrong architecture.

# %%
show(backbone_from_tensors)

# %% [markdown]
# ## The parity check
# Real GPT-2 weights may not be downloadable where you run this, so we make a
# GPT-2 with *random* weights in PyTorch (transformers' reference
# implementation), save it, load it into minitransfer, and compare the
# logits on the same tokens. Every weight must land in the right place for
# the numbers to agree.

# %%
shape = dict(n_layer=2, n_head=4, n_embd=64) if FAST else dict(n_layer=12, n_head=12, n_embd=768)
torch.manual_seed(0)
reference = GPT2LMHeadModel(HFConfig(**shape, vocab_size=50257, n_positions=1024)).eval()
with tempfile.TemporaryDirectory() as d:
    reference.save_pretrained(d)
    ours = mt.load_pretrained(d)
ids = np.random.RandomState(0).randint(0, 50257, (2, 16))
with torch.no_grad():
    ref_logits = reference(torch.tensor(ids)).logits.numpy()
our_logits = np.asarray(ours(ids.astype(np.int32)))

# %% [markdown]
# **What you see:** the largest difference between the two implementations'
# logits, over 2 x 16 positions x 50,257 vocabulary entries.

# %%
print(f"parameters: {sum(p.numel() for p in reference.parameters()):,}")
print(f"logits shape: {our_logits.shape}")
print(f"max |minitransfer - transformers| = {np.abs(our_logits - ref_logits).max():.2e}")

# %% [markdown]
# **A picture of the same check.** Each dot is one logit: transformers' value
# on the x axis, minitransfer's on the y axis. Parity means every dot sits on
# the diagonal.

# %%
import matplotlib.pyplot as plt

pick = np.random.RandomState(1).choice(ref_logits.size, 5000, replace=False)
fig, ax = plt.subplots(figsize=(4.6, 4.4))
ax.scatter(ref_logits.ravel()[pick], our_logits.ravel()[pick], s=3, alpha=0.4)
lo, hi = ref_logits.min(), ref_logits.max()
ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
ax.set_xlabel("transformers (PyTorch) logit")
ax.set_ylabel("minitransfer (JAX) logit")
ax.set_title("5,000 logits, two implementations")
fig.tight_layout()
fig.savefig(out_dir() / "03_parity.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** Swap the query and key thirds of `c_attn` (a classic
# porting bug) and re-run the parity check. Which number tells you? (The
# converter copies tensors by name, whole: write the swap yourself, splitting
# the weight and bias of each `attn.c_attn` into thirds with
# `np.split(w, 3, axis=-1)` and putting them back in the order key, query,
# value.)

# %% tags=["answer"]
for block in ours.backbone.h:
    for param in (block.attn.c_attn.kernel, block.attn.c_attn.bias):
        q, k, v = np.split(np.asarray(param[...]), 3, axis=-1)
        param.set_value(np.concatenate([k, q, v], axis=-1))
swapped = np.asarray(ours(ids.astype(np.int32)))
print(f"max |minitransfer - transformers|: {np.abs(our_logits - ref_logits).max():.2e} loaded as it is")
print(f"max |minitransfer - transformers|: {np.abs(swapped - ref_logits).max():.2e} with q and k swapped")
# The max difference tells: it grows by orders of magnitude, far beyond float32
# rounding. Swapping q and k gives query i the score that query j had for key i:
# the score matrix is transposed, and the causal mask keeps the wrong half of
# it. (Random weights make every query match every key about equally, lecture
# 2, so here the swap moves the logits less than it would where attention is
# peaked, as in a trained model.)


# %% [markdown]
# **Exercise 2.** Why does GPT-2 store `Conv1D` weights as (in, out), and why
# does that mean *no* transpose for Flax's `Linear`, which also stores
# (in, out)?

# %% [markdown]
# <details><summary>Answer</summary>
#
# `Conv1D` computes `x @ W + b`, so W is (in, out), as Flax's `Linear` kernel
# is: the tensors copy over as they are. PyTorch's `nn.Linear` computes
# `x @ W.T + b` and stores (out, in), which is why ports of *other* models
# transpose.
#
# </details>

# %% [markdown]
# **Exercise 3.** Load a checkpoint saved by `minitransfer.save_pretrained`
# with `transformers.GPT2LMHeadModel.from_pretrained`: which file tells
# transformers the shape?

# %% [markdown]
# <details><summary>Answer</summary>
#
# `config.json` (`n_layer`, `n_head`, `n_embd`, `vocab_size`, `n_positions`):
# transformers builds the model from it, then fills it from
# `model.safetensors`.
#
# </details>
