# %% [markdown]
# # Lecture 4: next-word prediction and generation
#
# A language model's whole output is one thing: for every position, a score
# (*logit*) for every token in the vocabulary, saying how likely that token is
# to come next. The next-word head computes those scores from the last hidden
# state. In GPT-2 it is *tied* to the input embedding: a token's score is the
# dot product of the hidden state with that token's own embedding vector.

# %%
import time

import jax
import numpy as np

import minitransfer as mt
from minitransfer.generate import next_word_candidates
from minitransfer.generate import filter_logits, generate
from minitransfer.heads import NextWordHead
from minitransfer.lecture import FAST, pretrained_source, show

show(NextWordHead)

# %% [markdown]
# We use the small GPT-2 that minitransfer pretrained on movie reviews
# (`checkpoints/minigpt2-imdb`, lecture 5), or OpenAI's `gpt2` if you have
# network. **What you see:** the model's top candidates after a prompt, with
# its probability for each: softmax turns logits into probabilities that sum
# to 1.

# %%
source = pretrained_source()
model = mt.load_pretrained(source)
tok = mt.load_tokenizer(source)
for prompt in ["This movie was", "The acting was terrible and the plot"]:
    print(repr(prompt))
    for c in next_word_candidates(model, tok, prompt, top_k=5):
        print(f"   {c['token']!r:>14}  {100 * c['prob']:5.1f}%")

# %% [markdown]
# ## Sampling: temperature, top-k, top-p
# To *generate*, pick a token from that distribution, append it, repeat.
# Dividing logits by a temperature below 1 sharpens the distribution (safer,
# duller text); above 1 flattens it (more surprising, more errors). Top-k and
# top-p (nucleus) cut off the unlikely tail.

# %%
show(filter_logits)
logits = np.asarray(model(np.asarray([tok.encode("This movie was")], np.int32))[0, -1:])
for t in (0.5, 1.0, 1.5):
    p = np.asarray(jax.nn.softmax(filter_logits(logits, t, None, None)))[0]
    print(f"temperature {t}: top token gets {100 * p.max():.1f}%, "
          f"{int((np.cumsum(np.sort(p)[::-1]) < 0.9).sum()) + 1} tokens cover 90%")

# %% [markdown]
# ## The key/value cache
# Without a cache, producing token n re-runs the model over all n previous
# tokens. But the keys and values of earlier positions never change, so we
# keep them and feed only the newest token: each step costs one position.

# %%
show(mt.GPT2Backbone.decode)

# %% [markdown]
# **What you see:** the same greedy continuation with and without the cache,
# and how long each took (the first call of each includes compiling).

# %%
prompt = tok.encode("I watched this film last night and")
n_new = 8 if FAST else 40
t0 = time.perf_counter()
fast = generate(model, prompt, n_new, greedy=True)
t1 = time.perf_counter()
slow = generate(model, prompt, n_new, greedy=True, use_cache=False)
t2 = time.perf_counter()
print("same tokens:", fast == slow)
print(f"with cache {t1 - t0:.2f} s, without {t2 - t1:.2f} s for {n_new} tokens")
print(repr(tok.decode(prompt + fast)))
for seed in range(3):
    out = generate(model, prompt, n_new, temperature=0.8, top_p=0.95, seed=seed)
    print(f"sample {seed}:", repr(tok.decode(prompt + out)))
