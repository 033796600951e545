"""Text classification: the classification head and its task, in one file.

``ClassificationHead`` is the idea: pool the hidden states of a text into one
vector, then a linear layer to one score per class. ``ClassificationTask``
(which the head inherits) is everything around it: the loss and metrics, the
budgeted and stratified batches it trains on, the data it accepts, the
majority-class baseline ``compare`` draws, and how the head is recorded in a
checkpoint (including transformers' ``GPT2ForSequenceClassification`` layout).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minitransfer.data import canonical_label, label_budget
from minitransfer.dropout import dropout
from minitransfer.encoding import encode
from minitransfer.heads import TaskHead, register_head


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last real (mask == 1) token of each row: (B, T) -> (B,).

    Works for right padding ``[a, b, pad]`` (-> 1) and left padding
    ``[pad, a, b]`` (-> 2) alike.
    """
    T = attention_mask.shape[-1]
    return (T - 1 - jnp.argmax(attention_mask[:, ::-1], axis=-1)).astype(jnp.int32)


def pool(hidden: jax.Array, attention_mask: jax.Array | None, how: str = "last") -> jax.Array:
    """Summarise a sequence (B, T, C) as one vector (B, C).

    ``last``: the hidden state of the last real token. In a causal model it is
    the only position that has seen the whole text, which is why GPT-style
    classifiers read it. ``mean``: the average over real tokens.
    """
    B, T, C = hidden.shape
    if attention_mask is None:
        attention_mask = jnp.ones((B, T), jnp.int32)
    if how == "last":
        idx = last_token_index(attention_mask)  # (B,)
        return hidden[jnp.arange(B), idx]  # (B, C)
    if how == "mean":
        m = attention_mask.astype(hidden.dtype)[:, :, None]  # (B, T, 1)
        # summed in float32: a bfloat16 running sum over T tokens loses digits
        total = (hidden * m).sum(1, dtype=jnp.float32)  # (B, C)
        return (total / jnp.maximum(m.sum(1, dtype=jnp.float32), 1.0)).astype(hidden.dtype)  # (B, C)
    raise ValueError(f"unknown pooling {how!r}; expected 'last' or 'mean'")


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """accuracy, macro-F1 (over classes that occur in labels or predictions) and
    mean cross-entropy loss, from logits (N, K) and labels (N,)."""
    logits = np.asarray(logits, dtype=np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    loss = float(-logp[np.arange(len(labels)), labels].mean())
    pred = logits.argmax(-1)
    f1s = []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {
        "accuracy": float((pred == labels).mean()),
        "macro_f1": float(np.mean(f1s)),
        "loss": loss,
        "n": int(len(labels)),
    }


class ClassificationTask(TaskHead):
    """What a classifier does around its forward pass (``ClassificationHead`` below): the task.

    A classifier has ``labels`` (class names in logit order), ``pooling``,
    ``dropout`` and ``bias``, as ``ClassificationHead`` sets them.
    """

    best_metric = "accuracy"
    metric_names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "loss": "loss"}
    batch_fields = ("labels",)
    pooled_features = True
    compare_metrics = ("accuracy",)
    compare_means = ("macro_f1",)
    budget_unit = "labels"
    baseline_names = {"majority_baseline": "majority class"}

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def loss(self, outputs, batch):
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"]).mean()  # outputs (B, K)

    def metrics(self, outputs, examples):
        return classification_metrics(outputs, examples.labels, self.num_classes)

    @classmethod
    def baselines(cls, data):
        return {"majority_baseline": float(np.bincount(data.test.labels).max() / len(data.test))}

    @classmethod
    def check_budget(cls, budget, data):
        if budget < data.num_classes:
            raise ValueError(
                f"{budget} is fewer labels than classes ({data.num_classes}); a stratified "
                f"budget needs at least one example per class"
            )

    # -- data --------------------------------------------------------------
    @classmethod
    def for_data(cls, n_embd, data, *, dropout=0.1, seed=0, pooling="last", bias=True, **options):
        return cls(n_embd, data.label_names, pooling=pooling, dropout=dropout, bias=bias, seed=seed)

    def text_suffix(self, tokenizer) -> tuple[int, ...]:
        """Token ids that end every text this head reads: none (a prompt head's are its prompt)."""
        return ()

    def check_data(self, data):
        # (a model trained before whole-number labels were read as numbers has "1.0" where the data now says "1":
        # the same classes in the same order, so it still fits)
        if [canonical_label(x) for x in self.labels] != list(data.label_names):
            raise ValueError(
                f"the classification head has {self.num_classes} labels {list(self.labels)}, but the data has "
                f"{len(data.label_names)} labels {list(data.label_names)}"
            )

    def prepare(
        self,
        data,
        tokenizer,
        *,
        max_len,
        budget,
        seed,
        val_examples,
        log,
        splits=("train", "validation", "test"),
        training=True,
    ):
        parts = {
            "train": label_budget(data.train, budget, seed, data.num_classes),
            "validation": data.validation,
            "test": data.test,
        }
        if "validation" in splits and val_examples is not None and len(data.validation) > val_examples:
            parts["validation"] = label_budget(data.validation, val_examples, 0, data.num_classes, "`val_examples`")
            log(
                f"validating on a fixed stratified subset of {val_examples} of {len(data.validation)} "
                f"validation examples"
            )
        out = {}
        for name in splits:
            part = parts[name]
            e = encode(part, tokenizer, max_len, self.text_suffix(tokenizer))
            if e.n_truncated:
                log(f"{name}: {e.n_truncated} of {len(e)} examples truncated to `max_len` {max_len} tokens")
            out[name] = ({"input_ids": e.input_ids, "attention_mask": e.attention_mask, "labels": e.labels}, e)
        return out

    # -- checkpoints -------------------------------------------------------
    def describe(self):
        return {"labels": list(self.labels), "pooling": self.pooling, "dropout": self.dropout, "bias": self.bias}

    @classmethod
    def from_info(cls, info, n_embd, source):
        labels = info.get("labels")
        if not labels:
            raise ValueError(f"{source}: config.json's 'minitransfer' section has no 'labels'")
        bias = info.get("bias", True)  # (checkpoints from before the option all have one)
        if not isinstance(bias, bool):
            raise ValueError(f"{source}: config.json's minitransfer.bias must be true or false, got {bias!r}")
        return cls(n_embd, labels, pooling=info.get("pooling", "last"), dropout=info.get("dropout", 0.1), bias=bias)

    def shape_note(self):
        return f" for {len(self.labels)} labels {list(self.labels)}"

    # transformers' GPT2ForSequenceClassification reads the hidden state of each row's last token that is not
    # its pad_token_id (the rightmost one), and applies ``score = nn.Linear(n_embd, num_labels, bias=False)``:
    # last-token pooling, no bias. (Its head has no dropout; neither does ours outside training.) A head of
    # that kind saves its weight as ``score.weight``, which transformers then loads instead of drawing it at
    # random; any other head keeps minitransfer's ``head.score.*``, which transformers skips.
    hf_tensor_names = ("score.weight",)

    @property
    def transformers_compatible(self) -> bool:
        return self.pooling == "last" and not self.bias

    def hf_layout(self):
        return {"score.weight": "score.weight"} if self.transformers_compatible else {}

    def hf_config(self):
        out = {
            "id2label": {str(i): n for i, n in enumerate(self.labels)},
            "label2id": {n: i for i, n in enumerate(self.labels)},
        }
        if self.transformers_compatible:  # (save_pretrained adds pad_token_id, which the pooling needs)
            out["architectures"] = ["GPT2ForSequenceClassification"]
        return out

    def transformers_note(self):
        return None if self.transformers_compatible else transformers_note(self)

    def model_card(self):
        return model_card(self)


@register_head
class ClassificationHead(ClassificationTask):
    """Hidden states (B, T, C) -> class logits (B, K): pool -> dropout -> linear.

    ``labels``: the class names in logit order, saved with the head. Last-token pooling without a
    bias is transformers' ``GPT2ForSequenceClassification``. Its task around it: ``ClassificationTask``.
    """

    kind = "classification"

    def __init__(
        self,
        n_embd: int,
        labels: list[str] | tuple[str, ...],
        *,
        pooling: str = "last",
        dropout: float = 0.1,
        bias: bool = True,
        seed: int = 0,
    ):
        if pooling not in ("last", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}; expected 'last' or 'mean'")
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least 2 labels, got {list(labels)}")
        self.labels = tuple(str(x) for x in labels)
        self.pooling, self.dropout, self.bias = pooling, dropout, bool(bias)
        self.score = nnx.Linear(
            n_embd, len(self.labels), use_bias=self.bias, kernel_init=nnx.initializers.normal(0.02), rngs=nnx.Rngs(seed)
        )

    def features(self, hidden, attention_mask):
        return pool(hidden, attention_mask, self.pooling)  # (B, C)

    def classify(self, features, dropout_key=None):
        """Pooled features (B, C) -> logits (B, K). Split out so that a frozen
        backbone's features can be computed once and cached (linear probing)."""
        return self.score(dropout(features, self.dropout, dropout_key))  # (B, K)

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return self.classify(self.features(hidden, attention_mask), dropout_key)


def transformers_note(head: ClassificationTask) -> str:
    """Why transformers' GPT2ForSequenceClassification cannot represent ``head``, and which options give one it can."""
    why = " and ".join(
        w
        for w in (
            f"{head.pooling} pooling" if head.pooling != "last" else "",
            "a bias in its linear layer" if head.bias else "",
        )
        if w
    )
    return (
        f"transformers' GPT2ForSequenceClassification cannot represent this classifier's head ({why}; it "
        f"reads the last real token through a linear layer without bias): there the backbone loads, but the "
        f"head does not (transformers draws a random score.weight). For a classifier that opens there as "
        f"the same model, fine-tune with `minitransfer finetune --pooling last --no-head-bias` (in Python: "
        f'`TrainConfig(pooling="last", head_bias=False)`)'
    )


def model_card(head: ClassificationTask) -> str:
    """The checkpoint folder's README.md: what the classifier predicts, and how to use it here and in transformers."""
    transformers = (
        "It opens in transformers as the same classifier (same logits): "
        "`GPT2ForSequenceClassification.from_pretrained(THIS_FOLDER)` (its tokenizer pads with "
        "`<|endoftext|>`, the config's `pad_token_id`; a text that itself ends in that token is pooled "
        "elsewhere there)."
        if head.transformers_compatible
        else head.transformers_note() + "."
    )
    return (
        f"# A minitransfer classifier\n\n"
        f"A GPT-2 backbone with a classification head: {head.pooling} pooling -> a linear layer "
        f"{'with' if head.bias else 'without'} bias -> {len(head.labels)} labels: "
        f"{', '.join(head.labels)}.\n\n"
        f"Label texts with it: `minitransfer predict --model THIS_FOLDER --data texts.txt` (see "
        f"docs/predict.md); score it: `minitransfer evaluate --model THIS_FOLDER`.\n\n"
        f"## In transformers\n\n{transformers}\n"
    )
