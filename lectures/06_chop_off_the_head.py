# %% [markdown]
# # Lecture 6: chop off the head, put on a new one
#
# The pretrained backbone turns a text into hidden states that, after reading
# a lot of text, encode a lot about it. The next-word head scores *every*
# position: the hidden state at position t predicts token t + 1 (in
# generation only the last position's prediction is used). For
# classification we keep the backbone and replace the head: this lecture's
# classifier reads the last real position's hidden state (the only one that
# has seen the whole text in a causal model) and maps it to class scores.
# `compare` pools the mean over all positions instead (`--pooling`).
#
# The head is the few lines of that idea: pool, dropout, one linear layer.
# Everything around it (its loss, its metrics, the batches it trains on, how
# it is saved) is its *task*, which it inherits from `ClassificationTask` in
# the same file, `minitransfer/classify.py`: a task is one file.

# %% [markdown]
# **The idea in one picture:** the shipped stand-in with its next-word head,
# the head chopped off, and a three-class tweet classifier's head put on the
# same backbone; every label is read off the two live models. **What to
# see:** the blue backbone is the same in all three columns; only the top
# box changes.

# %%
import matplotlib.pyplot as plt

import minitransfer as mt
from minitransfer.apps.diagrams import draw_head_swap
from minitransfer.apps.lecture import out_dir, pretrained_source
from minitransfer.classify import ClassificationHead

lm = mt.load_pretrained(pretrained_source())
classifier = mt.GPT2(lm.backbone, ClassificationHead(lm.config.n_embd, ["negative", "neutral", "positive"]))
fig = draw_head_swap(lm, classifier, out_dir() / "06_diagram_head_swap.png")
plt.show()

# %%
import numpy as np

import minitransfer as mt
from minitransfer.apps.lecture import FAST, pretrained_source, show
from minitransfer.classify import ClassificationHead, pool
from minitransfer.steps import backbone_features

show(ClassificationHead)
show(pool)

# %% [markdown]
# A model is a backbone plus one head. Swapping the head leaves every
# backbone weight where it was:

# %%
source = pretrained_source()
lm = mt.load_pretrained(source)
tok = mt.load_tokenizer(source)
classifier = mt.GPT2(lm.backbone, ClassificationHead(lm.config.n_embd, ["negative", "neutral", "positive"]))
print("same backbone object:", classifier.backbone is lm.backbone)
print("class logits for one tweet:", np.asarray(classifier(np.asarray([tok.encode("I love this airline")], np.int32))))

# %% [markdown]
# ## Linear probing: train only the head
# *Freezing* the backbone means its weights do not change. Then its output for
# a given text never changes either, so we compute each text's pooled feature
# vector once and train the head on those vectors. That is why probing is so
# fast: the expensive network runs once per example, not once per epoch.

# %%
show(backbone_features)

# %% [markdown]
# Train a probe on the tweet sentiment corpus with a budget of labelled
# examples. **What you see:** test accuracy, and how fast the head trains.

# %%
from minitransfer.data import load_dataset
from minitransfer.train import TrainConfig, build_classifier, finetune

data = load_dataset("tweets")
if FAST:  # a small test split: in fast mode the mechanics matter, not the numbers
    import dataclasses

    from minitransfer.data import label_budget

    data = dataclasses.replace(data, test=label_budget(data.test, 400, 0, data.num_classes, "test subset"))
cfg = TrainConfig(
    mode="probe",
    labels=200 if FAST else 1000,
    steps=30 if FAST else 200,
    max_len=64,
    val_examples=200 if FAST else 1000,
)
model = build_classifier("probe", lm, lm.config, data.label_names, cfg)
r = finetune(model, data, tok, cfg, progress=False, log=print)
print(
    f"probe on {cfg.labels} labels: test accuracy {r.test['accuracy']:.3f} "
    f"(majority class {np.bincount(data.test.labels).max() / len(data.test):.3f}), "
    f"{r.steps_per_second:.0f} head steps/s"
)

# %% [markdown]
# ## Why a probe works, or does not: the features, in 2-D
#
# A linear head can only separate classes that the backbone's features
# already separate. Project the features of some test tweets, pooled as
# `compare` pools them (the mean over positions; the probe above read the
# last one), onto their two principal components (PCA: the two directions
# of largest variance), colour each dot by its true label, and compare the
# pretrained backbone with a randomly initialised one of the same shape.
#
# **What you see:** how far each cloud splits by colour. Where the pretrained
# one barely splits better than the random one, remember where its features
# come from: movie reviews, not tweets. Lecture 7 measures what a pretrained
# backbone buys on tweets against on reviews, and what next-word training on
# tweets (ULMFiT's middle stage) adds.

# %%
import matplotlib.pyplot as plt
from flax import nnx

from minitransfer.apps.lecture import out_dir
from minitransfer.data import label_budget
from minitransfer.encoding import encode

sample = label_budget(data.test, 300 if FAST else 1500, 0, data.num_classes, "sample")
enc = encode(sample, tok, 64)
random_backbone = mt.GPT2Backbone(lm.config, rngs=nnx.Rngs(0))
fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
for ax, (name, backbone) in zip(
    axes, [("pretrained stand-in", lm.backbone), ("random weights", random_backbone)], strict=True
):
    net = mt.GPT2(backbone, ClassificationHead(lm.config.n_embd, data.label_names, pooling="mean"))
    f = backbone_features(net, enc, 64)  # (N, C)
    f = (f - f.mean(0)) / (f.std(0) + 1e-6)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    xy = f @ vt[:2].T  # (N, 2): the two principal components
    for k, lab in enumerate(data.label_names):
        m = sample.labels == k
        ax.scatter(xy[m, 0], xy[m, 1], s=6, alpha=0.5, label=lab)
    ax.set_title(f"{name}: pooled features, PCA")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3)
fig.tight_layout()
fig.savefig(out_dir() / "06_features_pca.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** The probe above pools the last position (`TrainConfig`'s
# default, `pooling="last"`, which `build_classifier` passes to the head).
# Give it `TrainConfig(..., pooling="mean")` instead. Predict first: better or
# worse for tweets? Why might the mean of all positions carry more than the
# last one for a small model?

# %% tags=["answer"]
import dataclasses

mean_cfg = dataclasses.replace(cfg, pooling="mean")
mean_probe = build_classifier("probe", lm, lm.config, data.label_names, mean_cfg)
r_mean = finetune(mean_probe, data, tok, mean_cfg, progress=False, log=lambda m: None)
print(
    f"probe, {cfg.labels} labels: test accuracy {r.test['accuracy']:.3f} (last), {r_mean.test['accuracy']:.3f} (mean)"
)
# One run each, and in fast mode a tiny one: a hint, not a claim, until seeds
# give the difference an interval (lecture 7). The last position of a 4-layer
# model has seen the whole text, but through few layers; the mean keeps
# something of every token. compare pools the mean by default, a choice made
# on one run each (the comment above CompareConfig.pooling records it).

# %% [markdown]
# **Exercise 2.** Probe with 100, 300 and 1,000 labels. How does the gap to the
# majority class change?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Expect it to widen with more labels: the head has more examples to find the
# direction that separates the classes, while the majority class stays where
# it is. How much, and whether the difference between two budgets is more
# than seed-to-seed noise, only several seeds can say: lecture 7 reads the
# probe's row of a compare with intervals.
#
# </details>

# %% [markdown]
# **Exercise 3.** Train the probe on the features of `random_backbone`. A
# random network is a (bad) feature extractor too: how far above the majority
# class does it get?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Build the model as `mt.GPT2(random_backbone, ClassificationHead(...))` and
# train it with `mode="probe"`. Expect it above the majority class: random
# layers still pass on *which* tokens a text holds (the mean of mixed token
# embeddings is a bag of words of sorts), and a linear head can pick out the
# words that carry sentiment. What it lacks is everything a trained backbone
# adds about how words combine; the gap between the two probes is what
# pretraining bought for this task.
#
# </details>
