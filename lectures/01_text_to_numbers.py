# %% [markdown]
# # Lecture 1: text to numbers
#
# A neural network computes with numbers, so the first step of every language
# model is to turn text into a sequence of integers, *token ids*. GPT-2 uses
# **byte-level byte-pair encoding (BPE)**:
#
# 1. the text is taken as UTF-8 *bytes*, so any string can be encoded: there
#    is no "unknown word";
# 2. frequent pairs of symbols were merged, 50,000 times, into bigger symbols
#    while GPT-2's vocabulary was built, so common words become one token and
#    rare words a few pieces.
#
# minitransfer does not re-implement BPE (the Hugging Face `tokenizers`
# library does it well). Here is how it has the library learn a vocabulary
# from texts, as `minitransfer pretrain --tokenizer train:N` does:

# %% [markdown]
# **The idea in one picture:** one word, from its bytes to its token ids, by
# GPT-2's own merge table. Each row applies the next merge, lowest rank
# (earliest learnt) first; the numbers are the merges' ranks among GPT-2's
# 50,000. **What to see:** the frequent pieces (`·t`, `on`, `at`) are
# merged first, the whole word never is: it ends as two tokens, two ids.

# %%
import matplotlib.pyplot as plt

from minitransfer.apps.diagrams import draw_bpe
from minitransfer.apps.lecture import gpt2_tokenizer, out_dir

fig = draw_bpe(gpt2_tokenizer(), " tokenization", out_dir() / "01_diagram_bpe.png")
plt.show()

# %%
from minitransfer.apps.lecture import gpt2_tokenizer, show
from minitransfer.tokenizer import load_tokenizer, train_tokenizer

show(train_tokenizer)

# %% [markdown]
# The real GPT-2 vocabulary: 50,257 tokens (256 bytes + 50,000 merges + one
# special `<|endoftext|>` token).

# %%
tok = gpt2_tokenizer()
print("vocabulary size:", len(tok))
print('"Hello world" ->', tok.encode("Hello world"))

# %% [markdown]
# Below, each token is shown as the text it decodes to, with `·` for a
# space: the space belongs to the word that follows it, so `" world"` (with
# its space) is one token, 995. A token can also be *part of a character*:
# "ü" is two UTF-8 bytes, and a token holding one of them decodes to `�` on
# its own. (Inside the vocabulary file, GPT-2 writes bytes as printable
# stand-ins, e.g. `Ġ` for a space; `convert_ids_to_tokens` shows those.)

# %%
sentences = [
    "The cat was swimming in the ocean.",
    "Transfer learning is surprisingly effective!",
    "antidisestablishmentarianism",
    "Ünïcödé and emoji 🙂 still work",
]
for s in sentences:
    ids = tok.encode(s)
    pieces = [tok.decode([i]).replace(" ", "·") for i in ids]
    print(f"{len(ids):>3} tokens  {s!r}")
    print("           ", " | ".join(pieces))

# %% [markdown]
# Rare words and non-English text cost more tokens. That matters: a model's
# context length and its compute are counted in tokens, not words.
#
# **What you see:** a table of characters per token for a few kinds of text.

# %%
samples = {
    "English prose": "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "Python code": "def f(x):\n    return [i * i for i in range(x) if i % 2 == 0]",
    "German": "Die Würde des Menschen ist unantastbar.",
    "numbers": "3.14159265358979 2.71828182845904 1.41421356237309",
}
print(f"{'text':<14} {'chars':>6} {'tokens':>7} {'chars/token':>12}")
for name, text in samples.items():
    n = len(tok.encode(text))
    print(f"{name:<14} {len(text):>6} {n:>7} {len(text) / n:>12.2f}")

# %% [markdown]
# ## A picture: one vocabulary fits its text
#
# The shipped stand-in model learnt its own 8,192-token vocabulary from movie
# reviews; GPT-2's was learnt from web text. Tokenise the same tweets with
# both. **What you see:** how many tokens each tweet costs under each
# vocabulary; the smaller vocabulary, learnt on another domain, spends more.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minitransfer.apps.lecture import FAST, out_dir, pretrained_source
from minitransfer.data import load_dataset

tweets = load_dataset("tweets").train.texts[: 300 if FAST else 3000]
small = load_tokenizer(pretrained_source())
n_gpt2 = np.array([len(tok.encode(t)) for t in tweets])
n_small = np.array([len(small.encode(t)) for t in tweets])
fig, ax = plt.subplots(figsize=(7, 3.8))
bins = np.arange(0, max(n_gpt2.max(), n_small.max()) + 4, 4)
ax.hist(n_gpt2, bins=bins, alpha=0.6, label=f"GPT-2, 50,257 tokens (median {np.median(n_gpt2):.0f})")
ax.hist(n_small, bins=bins, alpha=0.6, label=f"stand-in, {len(small):,} tokens (median {np.median(n_small):.0f})")
ax.set_xlabel("tokens per tweet")
ax.set_ylabel("tweets")
ax.set_title("The same tweets under two vocabularies")
ax.legend()
fig.tight_layout()
fig.savefig(out_dir() / "01_tokens_per_tweet.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** Predict, then check: how many tokens is `" the"` (with its
# space) in GPT-2's vocabulary, and how many is `"the"` at the start of a
# text? Are they the same token?

# %% tags=["answer"]
print('" the" ->', tok.encode(" the"), ' "the" ->', tok.encode("the"))
# One token each, but two different tokens: the space is part of the token, so
# GPT-2 has a separate id for a word at the start of a text and after a space.

# %% [markdown]
# **Exercise 2.** Encode a sentence in a language you know that is not
# English and compare its characters per token with the English line above.
# Why does it matter for a model's cost?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Usually fewer characters per token (the German line above already shows
# it): GPT-2's merges were learnt mostly on English, so other languages,
# above all those in other scripts, split into more, shorter pieces. Context
# length and compute are counted in tokens, so the same text costs more and
# less of it fits into the model's context.
#
# </details>

# %% [markdown]
# **Exercise 3.** `train_tokenizer(texts, 512)`, shown at the top, learns a
# tiny vocabulary. Train one on 1,000 tweets and tokenise a tweet with it:
# which words stay whole?

# %% tags=["answer"]
tiny = train_tokenizer(load_dataset("tweets").train.texts[:1000], 512)
tweet = tweets[0]
print(repr(tweet))
print(" | ".join(tiny.decode([i]).replace(" ", "·") for i in tiny.encode(tweet)))
# 512 tokens leave room for 512 - 257 = 255 merges, and only the commonest
# words earn one: short, frequent words (" just", " my", " in", " you") stay
# whole; rarer ones fall apart into pieces of a letter or two.
