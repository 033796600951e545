# %% [markdown]
# # Lecture 7: what transfer buys, measured
#
# The claim of transfer learning: with few labelled examples, starting from
# pretrained weights beats starting from random ones. We test it on the
# *same architecture*, started and trained four ways (one table in
# `minitransfer/modes.py`):

# %% [markdown]
# **The idea in one picture:** ULMFiT's three stages (Howard & Ruder 2018),
# each with the function and command that runs it here, and below, for
# every mode of `minitransfer/modes.py`'s table, the stages it runs (blue)
# and what its last stage trains. **What to see:** `scratch` skips both
# next-word stages, `adapt` is the only mode that runs all three, and the
# modes differ in stage 3 only by what they let train.

# %%
import matplotlib.pyplot as plt

from minitransfer.apps.diagrams import draw_ulmfit
from minitransfer.apps.lecture import out_dir

fig = draw_ulmfit(path=out_dir() / "07_diagram_ulmfit.png")
plt.show()

# %%
from minitransfer.apps.lecture import FAST, REPO, out_dir, pretrained_source, show
from minitransfer.modes import MODES, Mode

show(Mode)
for m in MODES.values():
    print(f"{m.name:>8}: starts {m.start:<10} trains {m.trains_text}\n{'':>10}{m.help}")

# %% [markdown]
# ## ULMFiT's three stages, on this code
#
# Howard & Ruder (2018) split transfer into three stages. Here is where each
# one lives in minitransfer:
#
# | stage | what it learns | data | here |
# | --- | --- | --- | --- |
# | 1. general pretraining | language in general | lots of unlabelled text (the stand-in: IMDB's 25,000 training reviews) | `minitransfer pretrain`, `pretrain.pretrain` |
# | 2. target-task LM fine-tuning | the *task's* language (tweets: @names, slang, short lines) | the task's own training texts, labels unused | `minitransfer pretrain --init-from`, `adapt.adapt_language_model`, mode `adapt` |
# | 3. classifier fine-tuning | the labels | the labelled budget | `minitransfer finetune`, `train.finetune` |
#
# `full` runs stages 1 and 3; `adapt` runs all three. Stage 2 uses every
# training text, because a label budget limits *labels*, not text: unlabelled
# tweets are cheap. It never reads validation or test texts. It runs once per
# (model, data, settings) and `compare` reuses it for every budget and seed:

# %%
from minitransfer.adapt import adapt_language_model

show(adapt_language_model, start="    texts = data.train.texts", stop="    return AdaptResult")

# %% [markdown]
# ## Differences you can trust
#
# At a given budget and seed every mode sees exactly the same labelled
# examples, so we compare *paired* differences: for each seed, accuracy of a
# mode minus accuracy of scratch, then a Student-t 95% confidence interval
# over seeds (scipy does the statistics). A difference whose interval
# contains zero is not a finding, however large its mean looks: with 2 seeds,
# an earlier version of this project reported "full fine-tuning beats
# scratch at every budget", and a change in dropout's random draws reversed it.

# %%
from minitransfer.compare import paired_difference

show(paired_difference)

# %% [markdown]
# ## The real numbers
#
# Fast mode cannot produce meaningful accuracies, so here is the committed
# result of the default `minitransfer compare` (shipped stand-in, tweets,
# every default), read from `docs/compare/summary.json`:

# %%
import json

from minitransfer.compare import gain_text


def print_summary(summary: dict) -> None:
    budgets = summary["budgets"]
    print(
        f"test accuracy (%), mean over {summary['seeds']} seeds; majority class "
        f"{100 * summary['majority_baseline']:.1f}%"
    )
    print(f"{'mode':>8} " + " ".join(f"{b + ' labels':>24}" for b in budgets))
    for mode in summary["modes"]:
        print(f"{mode:>8} " + " ".join(f"{100 * summary['table'][mode][b]['accuracy_mean']:>24.1f}" for b in budgets))
    print("\npaired gain, points [95% interval]; * = the interval excludes zero")
    for g in summary["gains"]:  # compare.gain_pairs: each mode over scratch, and adapt over full
        print(
            f"{g['mode'] + ' over ' + g['over']:>20} " + " ".join(f"{gain_text(g['budgets'][b]):>24}" for b in budgets)
        )
    kept = summary.get("false_discovery", {}).get("kept")
    if kept is not None:
        print(f"\nstill claims with the false discovery rate across the table held at 5%: {', '.join(kept) or 'none'}")


summary = json.loads((REPO / "docs" / "compare" / "summary.json").read_text())
print_summary(summary)
if "adapt" in summary:
    a = summary["adapt"]
    print(
        f"\nstage 2: {a['steps']} steps in {a['train_seconds']:.0f} s; tweet perplexity "
        f"{a['perplexity_before']:.0f} -> {a['perplexity_after']:.0f}"
    )

# %%
import matplotlib.image as mpimg
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(12.5, 4.6))
ax.imshow(mpimg.imread(REPO / "docs" / "compare" / "budget.png"))
ax.axis("off")
fig.tight_layout()
fig.savefig(out_dir() / "07_budget.png", dpi=100)
plt.show()

# %% [markdown]
# **What you see.** Left: accuracy against the number of labels (log scale),
# each mode's mean with its 95% band. Overlapping bands are not the test:
# the paired gains on the right are (a pair removes what the seed's labelled
# subset does to both modes). Right: each transfer mode's paired gain over
# scratch with its interval, and (dashed) adapt's gain over full: the middle
# stage on its own. Read it the ULMFiT way, gain by gain, and only where an
# interval says so: adapt's gain over scratch is above zero at every budget;
# full's intervals all contain zero, so full fine-tuning of this stand-in is
# not shown to help on tweets, nor to hurt; the probe's contain zero at 100
# and 300 labels and lie below it at 1,000. Does the probe's gain *fall* as
# labels grow? That is a difference between two gains, which needs its own
# interval: the gains at two budgets, paired by seed (each seed's 300 labels
# are among its 1,000), computed in the next cell. The middle stage alone
# (adapt over full) is a claim at 300 and 1,000 labels, not at 100, where
# full varies most from seed to seed.

# %%
import numpy as np


def gain_change(summary: dict, mode: str, frm: str, to: str) -> str:
    """How much ``mode``'s gain over scratch changes from budget ``frm`` to ``to``, paired by seed."""
    t = summary["table"]
    gain = {b: np.subtract(t[mode][b]["accuracy_per_seed"], t["scratch"][b]["accuracy_per_seed"]) for b in (frm, to)}
    d = paired_difference(gain[to], gain[frm])
    return gain_text({"mean": d["mean"], "ci95": [d["low"], d["high"]], "significant": d["significant"]})


for frm, to in (("100", "300"), ("300", "1000")):
    print(f"probe's gain over scratch, from {frm} to {to} labels: {gain_change(summary, 'probe', frm, to)} points")

# %% [markdown]
# From 300 to 1,000 labels the probe's gain falls, and the interval excludes
# zero, just; from 100 to 300 it cannot be told. Weigh the first: it is a
# thirteenth comparison, chosen after looking at the picture, outside the
# family that the false-discovery control below covers. A replication is
# better evidence, and there is one below.
#
# **Twelve intervals at once.** Each is 95% on its own: among twelve, one
# may exclude zero by chance. The summary's last sentence holds the false
# discovery rate across all twelve at 5% (Benjamini-Hochberg, via scipy) and
# says which `*` claims survive that; the probe's deficit at 1,000 labels,
# for one, is weaker evidence than adapt's gains.
#
# **Why a frozen backbone can lose to scratch.** The probe trains only a
# linear head on features the backbone learnt for *movie reviews*. Tweets
# tokenise differently (the stand-in's 8,192-token vocabulary was learnt on
# reviews), and the features that separate "great film" from "boring plot"
# are not the ones that separate a complaint about a flight from a neutral
# announcement. Scratch, meanwhile, learns word-label associations directly.
# Stage 2 lowers the tweet perplexity by an order of magnitude before any
# label is used, and `adapt`'s gains over scratch are claims where `full`'s
# are not: these runs show the two together; none tests the first as the
# cause of the second (that would take, say, adaptation on other text of
# equal length, compared the same way). On IMDB itself, the
# stand-in's own domain, plain `full` already transfers (docs/results.md shows that run).
#
# **What `--model gpt2` changes.** OpenAI's 124M GPT-2 read about 40 GB of
# web text (WebText: pages linked from Reddit posts, Radford et al. 2019),
# informal writing included; lecture 4 estimates what pretraining costs at
# that scale. Its features should be far more general, so one would expect the
# probe and `full` to gain much more, and stage 2 to matter less. Expect, not
# know: nothing here has measured it (a compare with it needs a GPU to run in
# reasonable time), and that is the experiment that would say.
#
# ## How far to trust the defaults
#
# `compare`'s defaults (600 adaptation steps, at least 60 steps per run and
# 200 for a frozen backbone, mean pooling) were chosen in earlier rounds by
# looking at test accuracies of this very experiment: seeds 0-3, the default
# split. That flatters the table above. It is the best of a few tries, scored
# on the data that chose it, and its intervals cannot know that. The remedy
# is a replication on what the choices did not look at: seeds 4-7 (fresh
# labelled subsets, initialisations and dropout) and a mostly new test set
# (`--split-seed 1` deals the tweets into other train, validation and test
# splits; 351 of its 3,719 test tweets were in the first one), every other
# setting the same. `minitransfer compare --first-seed 4 --split-seed 1`:

# %%
replication = json.loads((REPO / "docs" / "compare-replication" / "summary.json").read_text())
print_summary(replication)
for frm, to in (("100", "300"), ("300", "1000")):
    print(f"probe's gain over scratch, from {frm} to {to} labels: {gain_change(replication, 'probe', frm, to)} points")

# %% [markdown]
# **What held.** Adapt's gain over scratch replicates at every budget, each
# interval above zero in both runs and each still a claim with the false
# discovery rate held at 5%. The probe trailing scratch at 1,000 labels
# replicates too (a claim in both runs, though the first run's does not
# survive the false-discovery control), and so does its gain falling from
# 300 to 1,000 (each time outside that control).
#
# **What did not.** The middle stage's own gain (adapt over full) is a claim
# at 300 and 1,000 labels in the first run, at 100 and 1,000 in the
# replication: at 1,000 twice, but small there (about 1 to 2 points), and
# the replication's does not survive the false-discovery control. Full over
# scratch is a claim once, at 1,000 labels in the replication only. That is
# what a single run's `*` is worth: a finding to repeat, not yet a result.
#
# ## A live run, small
#
# The same function, on tiny settings (in fast mode under a minute; the
# numbers mean nothing at this size, the mechanics are the point):

# %%
import dataclasses
import shutil

import minitransfer as mt
from minitransfer.adapt import AdaptConfig
from minitransfer.compare import CompareConfig, compare
from minitransfer.data import label_budget, load_dataset

source = pretrained_source()
base = mt.load_pretrained(source)
tok = mt.load_tokenizer(source)
data = load_dataset("tweets")
if FAST:  # small splits and batches: in fast mode the mechanics matter, not the numbers
    data = dataclasses.replace(
        data,
        train=label_budget(data.train, 2000, 0, data.num_classes, "train subset"),
        test=label_budget(data.test, 200, 0, data.num_classes, "test subset"),
    )
cc = CompareConfig(
    budgets=[50, 200] if FAST else [100, 300],
    seeds=2 if FAST else 3,
    steps=10 if FAST else None,
    val_examples=100 if FAST else 500,
    evals_per_run=2 if FAST else 5,
    **(dict(batch_size=16, max_len=32) if FAST else {}),
    adapt=AdaptConfig(steps=20, eval_every=10, batch_size=16, block_size=32) if FAST else AdaptConfig(),
)
out = out_dir() / "07_compare"
shutil.rmtree(out, ignore_errors=True)  # a fresh run every time: here the point is to watch it run
summary = compare(base, base.config, data, tok, cc, out, progress=False)
print((out / "summary.md").read_text())

# %% [markdown]
# ## Exercises
#
# 1. Run `minitransfer compare --modes scratch,adapt --adapt-steps 30 --out
#    runs/adapt30`, then with the default 600 (and another `--out`: a
#    directory holds one experiment's runs). Predict first: how does the gain at 100 labels change?
#    <details><summary>Hint</summary>30 steps already cut the tweet perplexity
#    by several times (the summary prints it). Whether the gain follows the
#    perplexity is for the two runs' intervals to say: both use seeds 0-3, so
#    pair them by seed.</details>
# 2. Run `minitransfer compare --seeds 2` and compare its intervals with the
#    default's. Why are they far more than twice as wide?
#    <details><summary>Answer</summary>With n seeds the interval is
#    t(0.975, n-1) · s / sqrt(n); t is 12.7 for n = 2 but 3.18 for the
#    default n = 4, and 1/sqrt(n) is 1.41 times larger: about 5.6 times as
#    wide for the same spread s.</details>
# 3. Change `Mode("probe", ...)` in `minitransfer/modes.py` to start from
#    `"adapted"` (a probe of the adapted model). Does the frozen backbone
#    still lose to scratch?
