# %% [markdown]
# # Lecture 6: chop off the head, put on a new one
#
# The pretrained backbone turns a text into hidden states that, after reading
# a lot of text, encode a lot about it. The next-word head reads the *last*
# position's hidden state to predict the next token. For classification we
# keep the backbone and replace the head: read the same last hidden state
# (the only position that has seen the whole text in a causal model), and map
# it to class scores.

# %%
import numpy as np

import minitransfer as mt
from minitransfer.heads import ClassificationHead, pool
from minitransfer.lecture import FAST, pretrained_source, show
from minitransfer.train import backbone_features

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
cfg = TrainConfig(mode="probe", labels=200 if FAST else 1000, steps=30 if FAST else 200, max_len=64,
                  val_examples=200 if FAST else 1000)
model = build_classifier("probe", lm, lm.config, data.label_names, cfg)
r = finetune(model, data, tok, cfg, progress=False, log=print)
print(f"probe on {cfg.labels} labels: test accuracy {r.test['accuracy']:.3f} "
      f"(majority class {np.bincount(data.test.labels).max() / len(data.test):.3f}), "
      f"{r.steps_per_second:.0f} head steps/s")
