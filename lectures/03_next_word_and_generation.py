# %% [markdown]
# # Lecture 3: next-word prediction and generation
#
# A language model's whole output is one thing: for every position, a score
# (*logit*) for every token in the vocabulary, saying how likely that token is
# to come next. The next-word head computes those scores from the hidden
# state the last block writes at that position. In GPT-2 it is *tied* to the input embedding: a token's score is the
# dot product of the hidden state with that token's own embedding vector.

# %% [markdown]
# **The idea in one picture.** Left: the next-word head of the shipped
# stand-in turns the last position's hidden state into one logit per
# vocabulary entry (the hidden state times the embedding table, transposed),
# and softmax into a distribution: its live top five after the prompt.
# Right: the key/value cache generation keeps, one `k` and one `v` array per
# layer, with their shapes. **What to see:** the prompt fills its positions
# once (blue); each new token adds one position to every layer's arrays
# (orange) instead of recomputing the prefix.

# %%
import matplotlib.pyplot as plt

import minitransfer as mt
from minitransfer.apps.diagrams import draw_next_word_and_cache
from minitransfer.apps.lecture import out_dir, pretrained_source

fig = draw_next_word_and_cache(
    mt.load_pretrained(pretrained_source()),
    mt.load_tokenizer(pretrained_source()),
    "The cat was swimming in the",
    out_dir() / "03_diagram_next_word_and_cache.png",
)
plt.show()

# %%
import time

import jax
import numpy as np

import minitransfer as mt
from minitransfer.apps.lecture import FAST, out_dir, pretrained_source, show
from minitransfer.generate import filter_logits, generate, next_word_candidates
from minitransfer.model import NextWordHead

show(NextWordHead)

# %% [markdown]
# We use the small GPT-2 that minitransfer pretrained on movie reviews
# (`checkpoints/minigpt2-imdb`, lecture 4); where that folder is absent (a
# wheel install), OpenAI's `gpt2` from the hub, which needs network once. **What you see:** the model's top candidates after a prompt, with
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
    print(
        f"temperature {t}: top token gets {100 * p.max():.1f}%, "
        f"{int((np.cumsum(np.sort(p)[::-1]) < 0.9).sum()) + 1} tokens cover 90%"
    )

# %% [markdown]
# **The picture every explanation of GPT-2 draws:** the next-word head's
# candidates after a prompt, as bars, and what temperature and top-k do to
# them. Same ten tokens in every panel; the probabilities are recomputed
# after reshaping (a token cut by top-k gets 0).

# %%
import matplotlib.pyplot as plt

top10 = np.argsort(-logits[0])[:10]
labels = [tok.decode([int(i)]).replace(" ", "·") for i in top10]
settings = [
    ("temperature 1", 1.0, None),
    ("temperature 0.5", 0.5, None),
    ("temperature 1.5", 1.5, None),
    ("top-k 3", 1.0, 3),
]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), sharey=True)
for ax, (name, t, k) in zip(axes, settings, strict=True):
    p = np.asarray(jax.nn.softmax(filter_logits(logits, t, k, None)))[0][top10]
    ax.barh(range(10)[::-1], 100 * p, color="#3d7bd9")
    ax.set_yticks(range(10)[::-1], labels, fontfamily="monospace")
    ax.set_title(name)
    ax.set_xlabel("probability (%)")
fig.suptitle(repr("This movie was") + " ... what comes next?")
fig.tight_layout()
fig.savefig(out_dir() / "04_next_word.png", dpi=100)
plt.show()

# %% [markdown]
# ## What a model of movie reviews says a cat swims in
#
# Introductions to language models show one picture again and again: a
# sentence about swimming, and the model's confidence in each candidate next
# word, with the water on top. Here is that picture from the shipped
# stand-in, which has read nothing but IMDB movie reviews. **What to see:**
# which of its ten candidates are places one can swim in, and which come
# from the world of film reviews; the line under the bars adds up what it
# gives a few water words. A model knows the text it was trained on and
# nothing else. With network, OpenAI's GPT-2 loads the same way
# (`mt.load_pretrained("gpt2")` and `mt.load_tokenizer("gpt2")`) and draws
# the same bars for comparison.

# %%
import matplotlib.pyplot as plt

from minitransfer.generate import next_word_probs

swim = "The cat was swimming in the"
swim_top = next_word_candidates(model, tok, swim, top_k=10)
fig, ax = plt.subplots(figsize=(7.5, 3.8))
ax.barh(range(10)[::-1], [100 * c["prob"] for c in swim_top], color="#3d7bd9")
ax.set_yticks(range(10)[::-1], [repr(c["token"]) for c in swim_top], fontfamily="monospace")
ax.set_xlabel("probability (%)")
ax.set_title(f"{swim!r} ... the shipped stand-in's next word")
fig.tight_layout()
fig.savefig(out_dir() / "03_swimming.png", dpi=100)
plt.show()
swim_probs = next_word_probs(model, tok.encode(swim))
water = [w for w in (" water", " pool", " ocean", " sea", " lake", " river") if len(tok.encode(w)) == 1]
print(
    f"water words that are one token here ({', '.join(repr(w) for w in water)}): "
    f"{100 * sum(swim_probs[tok.encode(w)[0]] for w in water):.1f}% together"
)

# %% [markdown]
# ## The key/value cache
# Without a cache, producing token n re-runs the model over all n previous
# tokens. But the keys and values of earlier positions never change, so we
# keep them and feed only the newest token: each step costs one position.

# %%
show(mt.GPT2Backbone.decode)

# %% [markdown]
# **What you see:** the same greedy continuation with and without the cache,
# and how long each took: first calls, then the same calls again. First
# calls include compiling, and there the two differ in kind: the cached
# generation is one program, compiled once, while without the cache every
# new token makes the input one position longer, a new shape, compiled anew.
# The second calls are the work alone.

# %%
prompt = tok.encode("I watched this film last night and")
n_new = 8 if FAST else 40


def timed(**kwargs) -> tuple[list[int], float]:
    t = time.perf_counter()
    out = generate(model, prompt, n_new, greedy=True, **kwargs)
    return out, time.perf_counter() - t


(fast, cold_cache), (slow, cold_full) = timed(), timed(use_cache=False)
(_, warm_cache), (_, warm_full) = timed(), timed(use_cache=False)
print("same tokens:", fast == slow)
print(f"{n_new} tokens, first calls (compiling included): with cache {cold_cache:.2f} s, without {cold_full:.2f} s")
print(f"{n_new} tokens, again (compiled): with cache {warm_cache:.3f} s, without {warm_full:.3f} s")
print(repr(tok.decode(prompt + fast)))
for seed in range(3):
    out = generate(model, prompt, n_new, temperature=0.8, top_p=0.95, seed=seed)
    print(f"sample {seed}:", repr(tok.decode(prompt + out)))

# %% [markdown]
# **What the cache saves, as a picture:** time per generated token with and
# without the cache, for growing prompt lengths. Without it, every new token
# re-reads the whole prefix, so its cost grows with the length; with it, the
# cost stays flat. (Each point is the best of a few calls, after compiling.)


# %%
def per_token(n_prompt: int, use_cache: bool, n_new: int = 8) -> float:
    ids = (tok.encode("I watched this film last night and it was") * 40)[:n_prompt]
    generate(model, ids, n_new, greedy=True, use_cache=use_cache)  # compile for this shape
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        generate(model, ids, n_new, greedy=True, use_cache=use_cache)
        best = min(best, time.perf_counter() - t)
    return 1000 * best / n_new


lengths = [8, 32] if FAST else [8, 32, 64, 96, 112]
with_cache = [per_token(n, True) for n in lengths]
without = [per_token(n, False) for n in lengths]
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.plot(lengths, without, marker="o", label="no cache: the whole prefix every token")
ax.plot(lengths, with_cache, marker="o", label="key/value cache: one position per token")
ax.set_xlabel("prompt length (tokens)")
ax.set_ylabel("ms per new token")
ax.set_title("What the key/value cache saves")
ax.legend()
fig.tight_layout()
fig.savefig(out_dir() / "04_kv_cache.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** Predict the top candidate after `"The acting was terrible
# and the plot"` before reading the first cell's output. Then try `"I loved"`
# and `"Worst"`.

# %% tags=["answer"]
for prompt in ["The acting was terrible and the plot", "I loved", "Worst"]:
    top = next_word_candidates(model, tok, prompt, top_k=3)
    print(f"{prompt!r:>40} -> " + ", ".join(f"{c['token']!r} {100 * c['prob']:.0f}%" for c in top))
# The model ranks what is likely to come next, not what is said about the film:
# after "the plot", a verb that continues the sentence can outrank any verdict.

# %% [markdown]
# **Exercise 2.** Set `top_p=0.5` in the sampling loop above: are the three
# samples more or less alike? Why?

# %% [markdown]
# <details><summary>Answer</summary>
#
# More alike: at every step only the few tokens that make up half the
# probability mass can be picked, so the seeds have fewer ways to diverge.
#
# </details>

# %% [markdown]
# **Exercise 3.** In `generate.filter_logits`, what happens with
# `temperature` close to 0? Why does minitransfer ask for `greedy=True`
# instead of accepting 0?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Logits are divided by the temperature: near 0 they grow without bound and
# the softmax overflows (at 0 it is a division by zero). The limit of
# temperature -> 0 is the argmax, which `greedy=True` computes directly and
# exactly.
#
# </details>
