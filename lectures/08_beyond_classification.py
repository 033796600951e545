# %% [markdown]
# # Lecture 8: beyond classification: answers, conversation, cheap fine-tuning
#
# Lecture 6 chopped the next-word head off and put a classifier on. The
# same move makes other tasks: a head that points at the answer inside a
# text, or the next-word head itself kept and trained on conversations.
# And the backbone need not train whole: lecture 7's modes `top` and `lora`
# train a small share of it. This lecture takes the three in turn, on the
# shipped stand-in.

# %% [markdown]
# **The idea in one picture:** the stand-in's backbone with three heads on
# it, each label read off a live head: the tweet classifier of lecture 6,
# the span head of question answering, and the chat head. **What to see:**
# the backbone is the same; the heads differ in what they output, one
# answer per text `(B, K)`, two scores per position `(B, T, 2)`, or a
# next-word distribution per position `(B, T, V)`. The chat head owns no
# weights: it is the next-word head, read through a different loss.

# %%
import matplotlib.pyplot as plt
import numpy as np

import minitransfer as mt
from minitransfer.apps.diagrams import draw_heads
from minitransfer.apps.lecture import FAST, out_dir, pretrained_source, show
from minitransfer.chat import ChatHead
from minitransfer.classify import ClassificationHead
from minitransfer.qa import SpanHead
from minitransfer.train import TrainConfig, finetune

source = pretrained_source()
lm = mt.load_pretrained(source)
tok = mt.load_tokenizer(source)
classifier = mt.GPT2(lm.backbone, ClassificationHead(lm.config.n_embd, ["negative", "neutral", "positive"]))
fig = draw_heads(
    lm.backbone, [classifier.head, SpanHead(lm.config.n_embd), ChatHead()], out_dir() / "08_diagram_heads.png"
)
plt.show()

# %% [markdown]
# ## Answers: a head that points into the text
#
# A classification head reads one position and answers "which class?". A
# *span* head reads every position and answers "where in the text?": one
# linear layer scores each token as the answer's first token and as its last.
# The input is the question, then the context (the model is causal, so the
# context must come after the question to be read in its light), and the
# answer is the stretch of context between the best start and end. Its task
# (`SpanTask`, beside it in `minitransfer/qa.py`) masks every position that is
# not the context out of the loss and the decoding.

# %%
from minitransfer.qa import SpanHead

show(SpanHead)
answerer = mt.GPT2(lm.backbone, SpanHead(lm.config.n_embd))
ids = np.asarray([tok.encode("Question: Which city?\nContext: we flew to Oslo")], np.int32)
print("one backbone object for both heads:", answerer.backbone is classifier.backbone)
print("classification head output:", np.asarray(classifier(ids)).shape, "(batch, classes)")
print("span head output:          ", np.asarray(answerer(ids)).shape, "(batch, positions, start/end)")

# %% [markdown]
# Fine-tune it on a toy task (`qa.toy_city_questions`: "Which city?" over a
# sentence of filler words with one city in it) through the very same loop.
# Each head owns its loss and metrics (`SpanTask.loss`, exact match and F1),
# so `finetune` did not change. **What you see:** exact match far above
# chance (a random span is right about 1 time in 200) after a few seconds.

# %%
from minitransfer.qa import QADataset, answer, toy_city_questions
from minitransfer.train import build_model

qa_data = QADataset(toy_city_questions(400, 0), toy_city_questions(50, 1), toy_city_questions(100, 2), "toy")
qa_cfg = TrainConfig(
    mode="full",
    steps=60 if FAST else 300,
    batch_size=16 if FAST else 32,
    max_len=40,
    lr=1e-3,
    val_examples=None,
    head_dropout=0.0,
)
qa_model = build_model("full", lm, lm.config, qa_data, qa_cfg, SpanHead)
qa = finetune(qa_model, qa_data, tok, qa_cfg, progress=False, log=lambda m: None)
print(f"test exact match {qa.test['exact_match']:.2f}, F1 {qa.test['f1']:.2f} after {qa.steps} steps")
print("answer:", answer(qa_model, tok, "Which city?", "after lunch we talked about Buenos Aires for a while")[0])

# %% [markdown]
# The toy task shows the mechanics; it says nothing about reading real
# text. The measurement on SQuAD v1.1 (Wikipedia paragraphs; scratch vs
# pretrained vs adapted, scored on 2,000 of its 10,570 dev questions) is in
# `docs/squad.md`.

# %% [markdown]
# ## Conversation: the next-word head, kept
#
# A chat model is a language model fine-tuned on conversations. Nothing is
# chopped off: `ChatHead` *is* the next-word head (it subclasses
# `NextWordHead`); what is new is its task around it, `ChatTask`, whose loss
# counts only the assistant's reply tokens. The conversation is written as
# plain text with role markers, and each reply ends with the end-of-text
# token, which is how a reply is known to be over:

# %%
from minitransfer.chat import ChatDataset, ChatSplit, encode_conversation, format_text

show(ChatHead)
hello = [{"role": "user", "content": "Hi, I am Ada."}, {"role": "assistant", "content": "Nice to meet you, Ada!"}]
print(repr(format_text(hello)))
ids, in_loss = encode_conversation(hello, tok)
print("in the loss:", repr(tok.decode([i for i, f in zip(ids, in_loss, strict=True) if f])))

# %% [markdown]
# A toy conversation to learn: the user says their name, the assistant
# greets them by it. The "names" are capitalised words of the model's own
# vocabulary, 300 in training; those in the test conversations never occur in
# training, so a model that gets them right has learnt to *copy* from the
# user's turn, not to recall a name. **What you see:** the reply perplexity
# (lower is better; 1 is perfect) and next-token accuracy on the held-out
# conversations, before and after fine-tuning, then a greedy reply to a name
# it never saw. Read the name in that reply: the user's own name means the
# model copies; a name from the training conversations means it has learnt
# the reply's form but recalls a name instead of copying one.
# `docs/chat.md` has the real corpus (`chatterbot`) and the `chat` command.

# %%
from minitransfer.chat import end_of_text, prompt_ids
from minitransfer.generate import generate
from minitransfer.train import build_model, evaluate

# the "names": capitalised whole words of the model's own vocabulary (one token each), in a seeded order;
# hundreds of them, so that recalling one from training rarely pays and copying the user's does
NAMES = sorted(
    t[1:]
    for t in tok.get_vocab()
    if t[:1] == "Ġ" and len(t) >= 5 and t[1].isupper() and t[2:].isalpha() and t[2:].islower()
)
NAMES = [NAMES[i] for i in np.random.default_rng(0).permutation(len(NAMES))][:400]


def greetings(names):
    return ChatSplit(
        [
            [{"role": "user", "content": f"Hi, I am {n}."}, {"role": "assistant", "content": f"Nice to meet you, {n}!"}]
            for n in names
        ]
    )


chat_data = ChatDataset(greetings(NAMES[:300]), greetings(NAMES[300:320]), greetings(NAMES[320:]), "toy greetings")
chat_steps = 30 if FAST else 200
chat_cfg = TrainConfig(
    mode="full", steps=chat_steps, batch_size=16, max_len=32, lr=1e-3, val_examples=None, eval_every=chat_steps // 2
)
chat_model = build_model("full", lm, lm.config, chat_data, chat_cfg, ChatHead)
before = evaluate(chat_model, chat_data, tok, max_len=chat_cfg.max_len)
chat = finetune(chat_model, chat_data, tok, chat_cfg, progress=False, log=lambda m: None)
print(f"before: reply perplexity {before['perplexity']:.1f}, next-token accuracy {before['accuracy']:.2f}")
print(f"after {chat.steps} steps: reply perplexity {chat.test['perplexity']:.2f}, accuracy {chat.test['accuracy']:.2f}")
ask = prompt_ids([{"role": "user", "content": "Hi, I am Zelda."}], tok)
reply = generate(chat_model, ask, 12, greedy=True, eos_id=end_of_text(tok))
print("User: Hi, I am Zelda.\nAssistant:" + tok.decode([t for t in reply if t != end_of_text(tok)]))

# %% [markdown]
# ## Cheap fine-tuning: train a small share of the backbone
#
# Full fine-tuning updates every weight; with a large model that means a
# gradient and two optimizer moments for each, and a whole new copy of the
# model per task. Two modes of `minitransfer/modes.py` train far less:
# `top` (ULMFiT's gradual unfreezing held at one stage: the last blocks, the
# final LayerNorm and the head) and `lora` (Hu et al. 2021: every pretrained
# weight frozen, a small low-rank update learnt beside each projection).
# Their entries in the table, and `top`'s filter:

# %%
from minitransfer.modes import MODES, top_blocks

for name in ("top", "lora"):
    m = MODES[name]
    print(f"{m.name}: starts {m.start}, trains {m.trains_text}, lr {m.lr:g} (small models {m.lr_small:g})")
    print(
        f"    prepare={getattr(m.prepare, '__name__', None)} finish={getattr(m.finish, '__name__', None)} options={m.options}"
    )
    print(f"    {m.help}")
show(top_blocks)

# %% [markdown]
# **LoRA in one picture:** block 0's `attn.c_attn` in a model that mode
# `lora` prepared from the stand-in (rank 8, `TrainConfig`'s default),
# drawn to its live shapes: the frozen kernel W, and beside it the two thin
# matrices A and B whose product, scaled, is added to W's output. **What to
# see:** A and B together are a small fraction of W; B starts at zero, so
# training starts from exactly the pretrained model.

# %%
from minitransfer.apps.diagrams import draw_lora, trainable_share
from minitransfer.train import build_classifier

lora_cfg = TrainConfig(mode="lora")
lora_model = MODES["lora"].prepared(build_classifier("lora", lm, lm.config, classifier.head.labels, lora_cfg), lora_cfg)
fig = draw_lora(lora_model, MODES["lora"].filter(lora_cfg, lm.config.n_layer), out_dir() / "08_diagram_lora.png")
plt.show()

# %% [markdown]
# **What trains, counted:** for each mode, the share of the classifier's
# weights that its filter selects on the stand-in (the same count
# `finetune` trains; `lora`'s total includes its adapters). **What you see:**
# `probe` trains the head alone; `top` a block's worth; `lora` the adapters
# and the head; `full` everything. Whether the cheap modes also *score* as
# well is lecture 7's kind of question: `minitransfer compare --modes
# probe,top,lora,full` measures it, with intervals.

# %%
shares = {}
for label, name, options in (
    ("probe", "probe", {}),
    ("top, 1 block", "top", {"unfreeze": 1}),
    ("lora, r = 8", "lora", {"lora_rank": 8}),
    ("lora, r = 1", "lora", {"lora_rank": 1}),
    ("full", "full", {}),
):
    cfg = TrainConfig(mode=name, **options)
    m = MODES[name].prepared(build_classifier(name, lm, lm.config, classifier.head.labels, cfg), cfg)
    shares[label] = trainable_share(m, MODES[name].filter(cfg, lm.config.n_layer))
for label, (n, total) in shares.items():
    print(f"{label:>14}: {n:>10,} of {total:>10,} weights train ({100 * n / total:5.2f}%)")
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.barh(range(len(shares))[::-1], [100 * n / t for n, t in shares.values()], color="#3d7bd9")
ax.set_yticks(range(len(shares))[::-1], list(shares), fontfamily="monospace")
ax.set_xscale("log")
ax.set_xlabel("weights that train (% of the model, log scale)")
ax.set_title("What each mode trains, on the shipped stand-in")
fig.tight_layout()
fig.savefig(out_dir() / "08_trainable_share.png", dpi=100)
plt.show()

# %% [markdown]
# ## Try it

# %% [markdown]
# **Exercise 1.** `SpanHead` returns `(B, T, 2)` and pools nothing, while
# `ClassificationHead` pools the positions into one vector. Why can the
# span head not pool?

# %% [markdown]
# <details><summary>Answer</summary>
# Its answer is a *position*: which token starts the answer and which ends
# it. Pooling would merge the positions into one vector and lose exactly
# what it must point at. So it scores every position, and the task
# (`SpanTask`) masks out the positions that are not the context.
# </details>

# %% [markdown]
# **Exercise 2.** The chat loss counts only the assistant's tokens. What would a model
# fine-tuned with the loss on *every* token (the user's turns too) do
# when `minitransfer chat` asks it for a reply?

# %% [markdown]
# <details><summary>Answer</summary>
# It would also have learnt to write the user's side: after its reply it
# tends to carry on with a new `User:` line and invent the next question.
# (`minitransfer chat` cuts a reply at a role marker for that reason, but
# the training should not teach it in the first place.) The masked loss
# spends all of training on what the assistant says.
# </details>

# %% [markdown]
# **Exercise 3.** Predict, then compute: how does `lora`'s trainable share grow with the
# rank r? Count it on the stand-in for r = 1, 4 and 16.

# %% tags=["answer"]
for r in (1, 4, 16):
    cfg = TrainConfig(mode="lora", lora_rank=r)
    m = MODES["lora"].prepared(build_classifier("lora", lm, lm.config, classifier.head.labels, cfg), cfg)
    n, total = trainable_share(m, MODES["lora"].filter(cfg, lm.config.n_layer))
    print(f"r = {r:>2}: {n:>9,} trainable weights ({100 * n / total:.1f}% of {total:,})")
# Linearly: each adapter holds r * (C_in + C_out) weights, so the adapters'
# count is proportional to r (the head's few weights are added on top).
# The total grows too, because the adapters are part of the model.

# %% [markdown]
# **Exercise 4.** `top` with `unfreeze` equal to the model's depth trains every block, the
# final LayerNorm and the head. Which weights does it still leave frozen,
# compared with `full`?

# %% [markdown]
# <details><summary>Answer</summary>
# The embeddings: `wte` (the token table, which the tied next-word head also
# reads) and `wpe` (positions). `top_blocks` selects `backbone.h[i]` for the
# top blocks, `ln_f` and the head, and nothing else.
# </details>
