# %% [markdown]
# # Lecture 3: loading GPT-2's weights
#
# OpenAI trained GPT-2 once, at great cost (lecture 5). Transfer learning
# starts by *loading* those weights into our own code. A Hugging Face
# checkpoint is a `config.json` (the shape) plus `model.safetensors` (named
# tensors). Conversion means: build a model of that shape, then copy each
# tensor into the parameter of the same name, checking every name and shape.

# %%
import tempfile

import numpy as np
import torch
from transformers import GPT2Config as HFConfig
from transformers import GPT2LMHeadModel

import minitransfer as mt
from minitransfer.convert import backbone_from_tensors, hf_name, normalize_state_dict
from minitransfer.lecture import FAST, show

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
