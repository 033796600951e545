# %% [markdown]
# # Lecture 7: fine-tuning vs training from scratch
#
# The claim of transfer learning: with few labelled examples, starting from
# pretrained weights beats starting from random ones. We test it with three
# ways of training the *same architecture*:
#
# * **scratch**: random backbone + new head, everything trains;
# * **probe**: pretrained backbone frozen + new head (lecture 6);
# * **full**: pretrained backbone + new head, everything trains.
#
# At each label budget and seed, all three see exactly the same examples, so
# differences come from the starting point alone. `minitransfer compare` runs
# the grid:

# %%
from minitransfer.compare import compare
from minitransfer.lecture import FAST, out_dir, pretrained_source, show

show(compare, start="    grid = ", stop="    bar.close()")

# %% [markdown]
# **What you see:** the summary table and the accuracy-vs-labels plot (saved
# as budget.png). Fast mode uses tiny budgets and few steps; run
# `minitransfer compare` for the real picture (README shows one).

# %%
import minitransfer as mt
from minitransfer.compare import CompareConfig
from minitransfer.data import load_dataset

source = pretrained_source()
base = mt.load_pretrained(source)
tok = mt.load_tokenizer(source)
data = load_dataset("tweets")
cc = CompareConfig(budgets=[50, 200] if FAST else [100, 300, 1000], seeds=1 if FAST else 2,
                   steps=10 if FAST else None, val_examples=100 if FAST else 500, evals_per_run=2 if FAST else 5)
out = out_dir() / "07_compare"
summary = compare(base, base.config, data, tok, cc, out, progress=False)
print((out / "summary.md").read_text())
