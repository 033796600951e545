"""Task heads: small explicit modules over the backbone's hidden states (B, T, C).

Every head has the same call signature::

    head(hidden, attention_mask, backbone, dropout_key=None)

so a model is "a backbone plus one head" and heads swap freely. The
``backbone`` argument is there for heads that share weights with it (the
next-word head reuses the token embedding); other heads ignore it.

A head also owns its task (``TaskHead``): its loss, its metrics and which one
picks the best checkpoint, how it is saved into a checkpoint and restored
from one, and what a batch for it holds (``prepare`` turns a dataset into
arrays). ``HEADS`` maps each head's ``kind`` (as written in a checkpoint's
config.json) to its class; ``convert.py`` and ``train.py`` go through these
and nothing else, so a new head is one class here plus its data adapter.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minitransfer.dropout import dropout


class TaskHead(nnx.Module):
    """What every task head tells the rest of minitransfer.

    Subclasses set ``kind`` and ``best_metric`` and implement the methods
    below; ``register_head`` makes checkpoints of the new kind loadable.
    """

    kind: str = ""  # its name in config.json's "minitransfer" section
    best_metric: str | None = None  # validation metric that picks the best checkpoint
    best_is_lower: bool = False  # True where a lower best_metric is better (a perplexity)
    batch_fields: tuple[str, ...] = ()  # what a training batch holds besides input_ids and attention_mask
    metric_names: dict[str, str] = {}  # metric key -> its name in sentences, in the order to print

    def loss(self, outputs: jax.Array, batch: dict) -> jax.Array:
        """Mean training loss of this head's outputs (float32) on ``batch``. Traced inside jit."""
        raise NotImplementedError

    def metrics(self, outputs: np.ndarray, examples: Any) -> dict:
        """Metrics of outputs (N, ...) against the encoded examples ``prepare`` made."""
        raise NotImplementedError

    def better(self, new: dict, old: dict, prefix: str = "val_") -> bool:
        """Is ``new`` (metrics) better than ``old`` by ``best_metric``?"""
        a, b = new[prefix + self.best_metric], old[prefix + self.best_metric]
        return a < b if self.best_is_lower else a > b

    def describe(self) -> dict:
        """What config.json records about this head (besides its kind)."""
        return {}

    def tensors(self) -> dict[str, np.ndarray]:
        """Its weights by name; saved as ``head.<name>`` beside the backbone."""
        return {}

    def hf_config(self) -> dict:
        """Top-level config.json keys that transformers itself reads (e.g. id2label)."""
        return {}

    # Tensors a head saves under transformers' own top-level names (``score.weight``), where one of
    # transformers' classes computes exactly what the head does: the checkpoint then opens there as the
    # same model. ``hf_tensor_names`` lists the names such a head may have; ``restore`` gets them in
    # ``hf_tensors`` (named as saved), apart from the ``head.``-prefixed ones in ``tensors``.
    hf_tensor_names: tuple[str, ...] = ()

    def hf_tensors(self) -> dict[str, np.ndarray]:
        """Its weights saved under transformers' names (instead of ``tensors``); {} where none."""
        return {}

    def model_card(self) -> str | None:
        """A README.md for the checkpoint folder (what the head predicts, how to use it); None: none."""
        return None

    def transformers_note(self) -> str | None:
        """Where transformers has a class for this kind of head but cannot represent this one: a
        sentence saying why and which options give one it can (None otherwise)."""
        return None

    @classmethod
    def restore(cls, info: dict, n_embd: int, tensors: dict[str, np.ndarray], source: str,
                hf_tensors: dict[str, np.ndarray] | None = None) -> "TaskHead":
        """The inverse of ``describe`` + ``tensors`` (+ ``hf_tensors``): pop every tensor used."""
        raise NotImplementedError

    # -- data: what a batch for this head looks like ---------------------------
    @classmethod
    def for_data(cls, n_embd: int, data: Any, *, dropout: float = 0.1, seed: int = 0, **options) -> "TaskHead":
        """A fresh head for ``data``."""
        raise NotImplementedError

    def check_data(self, data: Any) -> None:
        """Raise ValueError if this head cannot train on ``data`` (e.g. other labels)."""

    def prepare(self, data: Any, tokenizer, *, max_len: int, budget, seed: int, val_examples: int | None,
                log: Callable[[str], None], splits=("train", "validation", "test"), training: bool = True,
                ) -> dict[str, tuple[dict[str, np.ndarray], Any]]:
        """Each of ``splits`` -> (arrays for batches, encoded examples for
        ``metrics``). ``budget`` limits the training examples (None: all);
        ``val_examples`` picks a fixed validation subset. ``training``: the
        train split feeds training steps (False: it is only evaluated)."""
        raise NotImplementedError


HEADS: dict[str, type[TaskHead]] = {}


def register_head(cls: type[TaskHead]) -> type[TaskHead]:
    """Make checkpoints with ``"head": cls.kind`` loadable (a class decorator)."""
    HEADS[cls.kind] = cls
    return cls


def head_class(kind: str, source: str = "config.json") -> type[TaskHead]:
    if kind not in HEADS:
        raise ValueError(f"{source}: unknown head type {kind!r}; expected one of {sorted(HEADS)}")
    return HEADS[kind]


def budgeted_splits(data, splits, budget, seed: int, val_examples: int | None, log, what: str) -> dict:
    """The splits a head encodes: ``budget`` seeded training items, a fixed subset of ``val_examples``
    validation items (said in ``log``), the whole test split. For data whose splits have ``subset``."""
    parts = {"train": data.train.subset(budget, seed, "--labels"), "validation": data.validation, "test": data.test}
    if "validation" in splits and val_examples is not None and len(data.validation) > val_examples:
        parts["validation"] = data.validation.subset(val_examples, 0, "--val-examples")
        log(f"validating on a fixed subset of {val_examples} of {len(data.validation)} validation {what}")
    return parts


def _take_tensor(tensors: dict, name: str, shape: tuple, source: str, why: str = "") -> np.ndarray:
    if name not in tensors:
        raise ValueError(f"{source}: missing tensor 'head.{name}' (expected shape {shape})")
    t = tensors.pop(name)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{source}: tensor 'head.{name}' has shape {tuple(t.shape)}, expected {shape}{why}")
    return t


def _set_linear(linear: nnx.Linear, tensors: dict, prefix: str, source: str, why: str = ""):
    kernel = _take_tensor(tensors, f"{prefix}.weight", linear.kernel.shape, source, why)
    linear.kernel.set_value(jnp.asarray(kernel))
    if linear.bias is not None:  # (a linear layer without bias: use_bias=False)
        bias = _take_tensor(tensors, f"{prefix}.bias", linear.bias.shape, source, why)
        linear.bias.set_value(jnp.asarray(bias))


def _linear_tensors(linear: nnx.Linear, prefix: str) -> dict[str, np.ndarray]:
    out = {f"{prefix}.weight": np.asarray(linear.kernel[...], np.float32)}
    if linear.bias is not None:
        out[f"{prefix}.bias"] = np.asarray(linear.bias[...], np.float32)
    return out


@register_head
class NextWordHead(TaskHead):
    """Hidden states (B, T, C) -> next-word logits (B, T, V).

    GPT-2 *ties* this head to the token embedding ``wte``: the score of word v
    is the dot product of the hidden state with v's own embedding. So the head
    owns no weights; it reads ``backbone.wte``. That is also why chopping it
    off loses nothing: every weight stays in the backbone.
    """

    kind = "next-word"

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return backbone.wte.attend(hidden)  # (B, T, C) @ (C, V) -> (B, T, V)

    def loss(self, outputs, batch):
        """Cross-entropy of token t+1 given tokens <= t: outputs (B, T, V), batch["targets"] (B, T)."""
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"]).mean()

    @classmethod
    def restore(cls, info, n_embd, tensors, source, hf_tensors=None):
        return cls()


@register_head
class ChatHead(NextWordHead):
    """The next-word head, trained on conversations (``chat.py``): (B, T, C) -> (B, T, V).

    Nothing is chopped off and nothing is added: the head is still the token
    embedding read backwards (tied weights, no weights of its own). What
    differs from a language model is the task around it: the loss counts
    only the replies' tokens (``batch["loss_mask"]``), and the metrics are
    the replies' perplexity and next-token accuracy. Its ``kind`` in
    config.json ("chat") says which role markers the model was trained with,
    so that ``minitransfer chat`` writes its prompts the same way.
    """

    kind = "chat"
    best_metric = "perplexity"
    best_is_lower = True
    metric_names = {"perplexity": "reply perplexity", "accuracy": "reply next-token accuracy", "loss": "reply loss"}
    batch_fields = ("targets", "loss_mask")

    def loss(self, outputs, batch):
        """Cross-entropy of token t+1 given tokens <= t, averaged over the reply
        tokens of the whole batch: outputs (B, T, V), targets and loss_mask (B, T).
        The prompt's positions are multiplied by 0, so their targets cannot matter."""
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])  # (B, T)
        m = batch["loss_mask"].astype(jnp.float32)  # (B, T)
        return (ce * m).sum() / jnp.maximum(m.sum(), 1.0)

    def scores(self, outputs, batch):
        """What evaluation keeps of the logits (B, T, V): per position, the
        log-probability of the target and whether it was the likeliest token,
        (B, T, 2). The full logits of a validation set would be N x T x V
        floats (a gigabyte for 100 conversations of 128 tokens with GPT-2's
        50,257-token vocabulary)."""
        logp = jax.nn.log_softmax(outputs, axis=-1)  # (B, T, V)
        target = jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]  # (B, T)
        hit = (jnp.argmax(outputs, axis=-1) == batch["targets"]).astype(jnp.float32)  # (B, T)
        return jnp.stack([target, hit], axis=-1)  # (B, T, 2)

    def metrics(self, outputs, examples):
        from minitransfer.chat import reply_metrics

        return reply_metrics(outputs, examples.loss_mask)

    def describe(self):
        from minitransfer.chat import ASSISTANT, USER

        return {"format": "role markers as text, end-of-text after each reply (minitransfer/chat.py)",
                "user_marker": USER, "assistant_marker": ASSISTANT}

    @classmethod
    def restore(cls, info, n_embd, tensors, source, hf_tensors=None):
        from minitransfer.chat import ASSISTANT, USER

        said = (info.get("user_marker", USER), info.get("assistant_marker", ASSISTANT))
        if said != (USER, ASSISTANT):
            raise ValueError(f"{source}: this chat model was trained with role markers {said}; this minitransfer "
                             f"writes {(USER, ASSISTANT)}")
        return cls()

    @classmethod
    def for_data(cls, n_embd, data, *, dropout=0.1, seed=0, **options):
        return cls()

    def check_data(self, data):
        from minitransfer.chat import ChatDataset

        if not isinstance(data, ChatDataset):
            raise ValueError("the chat head learns replies: it needs conversation data (--task chat)")

    def prepare(self, data, tokenizer, *, max_len, budget, seed, val_examples, log,
                splits=("train", "validation", "test"), training=True):
        from minitransfer.chat import encode_chat

        parts = budgeted_splits(data, splits, budget, seed, val_examples, log, "conversations")
        out = {}
        for name in splits:
            e = encode_chat(parts[name], tokenizer, max_len)
            for note in e.notes:
                log(f"{name}: {note}")
            out[name] = ({"input_ids": e.input_ids, "attention_mask": e.attention_mask, "targets": e.targets,
                          "loss_mask": e.loss_mask}, e)
        return out


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


@register_head
class ClassificationHead(TaskHead):
    """Hidden states (B, T, C) -> class logits (B, K): pool -> dropout -> linear.

    ``labels`` are the class names in logit order; they travel with the head
    so that a saved classifier knows what its outputs mean. ``bias``: whether
    the linear layer adds a bias (the default). transformers'
    ``GPT2ForSequenceClassification`` is this head with last-token pooling and
    no bias; a head of that kind is saved as one (``hf_tensors``).
    """

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
        self.pooling = pooling
        self.dropout = dropout
        self.bias = bool(bias)
        self.score = nnx.Linear(
            n_embd, len(self.labels), use_bias=self.bias, kernel_init=nnx.initializers.normal(0.02),
            rngs=nnx.Rngs(seed)
        )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def features(self, hidden, attention_mask):
        return pool(hidden, attention_mask, self.pooling)  # (B, C)

    def classify(self, features, dropout_key=None):
        """Pooled features (B, C) -> logits (B, K). Split out so that a frozen
        backbone's features can be computed once and cached (linear probing)."""
        return self.score(dropout(features, self.dropout, dropout_key))  # (B, K)

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return self.classify(self.features(hidden, attention_mask), dropout_key)

    # -- its task ----------------------------------------------------------
    kind = "classification"
    best_metric = "accuracy"
    metric_names = {"accuracy": "accuracy", "macro_f1": "macro-F1", "loss": "loss"}
    batch_fields = ("labels",)

    def loss(self, outputs, batch):
        return optax.softmax_cross_entropy_with_integer_labels(outputs, batch["labels"]).mean()  # outputs (B, K)

    def metrics(self, outputs, examples):
        return classification_metrics(outputs, examples.labels, self.num_classes)

    def describe(self):
        return {"labels": list(self.labels), "pooling": self.pooling, "dropout": self.dropout, "bias": self.bias}

    # -- transformers' GPT2ForSequenceClassification ------------------------
    # It reads the hidden state of each row's last token that is not its pad_token_id (the rightmost one),
    # and applies ``score = nn.Linear(n_embd, num_labels, bias=False)``: last-token pooling, no bias.
    # (Its head has no dropout; neither does ours outside training.) A head of that kind saves its weight as
    # ``score.weight`` (torch's (out, in) layout: the kernel transposed), which transformers then loads instead
    # of drawing it at random; any other head keeps minitransfer's ``head.score.*``, which transformers skips.
    hf_tensor_names = ("score.weight",)

    @property
    def transformers_compatible(self) -> bool:
        return self.pooling == "last" and not self.bias

    def transformers_note(self):
        if self.transformers_compatible:
            return None
        why = " and ".join(w for w in (f"{self.pooling} pooling" if self.pooling != "last" else "",
                                       "a bias in its linear layer" if self.bias else "") if w)
        return (f"transformers' GPT2ForSequenceClassification cannot represent this classifier's head ({why}; it "
                f"reads the last real token through a linear layer without bias): there the backbone loads, but the "
                f"head does not (transformers draws a random score.weight). For a classifier that opens there as "
                f"the same model, fine-tune with --pooling last --no-head-bias")

    def model_card(self):
        transformers = (
            "It opens in transformers as the same classifier (same logits): "
            "`GPT2ForSequenceClassification.from_pretrained(THIS_FOLDER)` (its tokenizer pads with "
            "`<|endoftext|>`, the config's `pad_token_id`; a text that itself ends in that token is pooled "
            "elsewhere there)." if self.transformers_compatible else self.transformers_note() + ".")
        return (f"# A minitransfer classifier\n\n"
                f"A GPT-2 backbone with a classification head: {self.pooling} pooling -> a linear layer "
                f"{'with' if self.bias else 'without'} bias -> {len(self.labels)} labels: "
                f"{', '.join(self.labels)}.\n\n"
                f"Label texts with it: `minitransfer predict --model THIS_FOLDER --data texts.txt` (see "
                f"docs/predict.md); score it: `minitransfer evaluate --model THIS_FOLDER`.\n\n"
                f"## In transformers\n\n{transformers}\n")

    def tensors(self):
        return {} if self.transformers_compatible else _linear_tensors(self.score, "score")

    def hf_tensors(self):
        if not self.transformers_compatible:
            return {}
        return {"score.weight": np.ascontiguousarray(np.asarray(self.score.kernel[...], np.float32).T)}  # (K, C)

    def hf_config(self):
        out = {"id2label": {str(i): n for i, n in enumerate(self.labels)},
               "label2id": {n: i for i, n in enumerate(self.labels)}}
        if self.transformers_compatible:  # (save_pretrained adds pad_token_id, which the pooling needs)
            out["architectures"] = ["GPT2ForSequenceClassification"]
        return out

    @classmethod
    def restore(cls, info, n_embd, tensors, source, hf_tensors=None):
        labels = info.get("labels")
        if not labels:
            raise ValueError(f"{source}: config.json's 'minitransfer' section has no 'labels'")
        bias = info.get("bias", True)  # (checkpoints from before the option all have one)
        if not isinstance(bias, bool):
            raise ValueError(f"{source}: config.json's minitransfer.bias must be true or false, got {bias!r}")
        head = cls(n_embd, labels, pooling=info.get("pooling", "last"), dropout=info.get("dropout", 0.1), bias=bias)
        why = f" for {len(labels)} labels {labels}"
        hf_tensors = hf_tensors if hf_tensors is not None else {}
        if head.transformers_compatible and "score.weight" in hf_tensors and "score.weight" not in tensors:
            t = hf_tensors.pop("score.weight")
            if tuple(t.shape) != (len(labels), n_embd):
                raise ValueError(f"{source}: tensor 'score.weight' has shape {tuple(t.shape)}, expected "
                                 f"{(len(labels), n_embd)}{why}")
            head.score.kernel.set_value(jnp.asarray(t.T))
        else:
            _set_linear(head.score, tensors, "score", source, why)
        return head

    @classmethod
    def for_data(cls, n_embd, data, *, dropout=0.1, seed=0, pooling="last", bias=True, **options):
        return cls(n_embd, data.label_names, pooling=pooling, dropout=dropout, bias=bias, seed=seed)

    def text_suffix(self, tokenizer) -> tuple[int, ...]:
        """Token ids that end every text this head reads: none (a prompt head's are its prompt)."""
        return ()

    def check_data(self, data):
        from minitransfer.readers import canonical_label

        # (a model trained before whole-number labels were read as numbers has "1.0" where the data now says "1":
        # the same classes in the same order, so it still fits)
        if [canonical_label(x) for x in self.labels] != list(data.label_names):
            raise ValueError(
                f"the classification head has {self.num_classes} labels {list(self.labels)}, but the data has "
                f"{len(data.label_names)} labels {list(data.label_names)}"
            )

    def prepare(self, data, tokenizer, *, max_len, budget, seed, val_examples, log,
                splits=("train", "validation", "test"), training=True):
        from minitransfer.data import label_budget
        from minitransfer.encoding import encode

        parts = {"train": label_budget(data.train, budget, seed, data.num_classes), "validation": data.validation,
                 "test": data.test}
        if "validation" in splits and val_examples is not None and len(data.validation) > val_examples:
            parts["validation"] = label_budget(data.validation, val_examples, 0, data.num_classes)
            log(f"validating on a fixed stratified subset of {val_examples} of {len(data.validation)} "
                f"validation examples")
        out = {}
        for name in splits:
            part = parts[name]
            e = encode(part, tokenizer, max_len, self.text_suffix(tokenizer))
            if e.n_truncated:
                log(f"{name}: {e.n_truncated} of {len(e)} examples truncated to --max-len {max_len} tokens")
            out[name] = ({"input_ids": e.input_ids, "attention_mask": e.attention_mask, "labels": e.labels}, e)
        return out


@register_head
class SpanHead(TaskHead):
    """Hidden states (B, T, C) -> start and end scores of an answer span (B, T, 2).

    Extractive question answering: the input is the question followed by a
    context, and the answer is a stretch of the context. One linear layer
    scores every position as the answer's first token (``[..., 0]``) and as
    its last (``[..., 1]``). Which positions may be chosen (context tokens,
    not the question or padding) is the batch's ``context_mask``: the loss and
    the decoding (``qa.best_spans``) mask the rest, so the head itself stays a
    plain per-token projection like the next-word head.
    """

    kind = "span"
    best_metric = "f1"
    metric_names = {"exact_match": "exact match", "f1": "F1"}
    batch_fields = ("context_mask", "start", "end")

    def __init__(self, n_embd: int, *, dropout: float = 0.1, seed: int = 0):
        self.dropout = dropout
        self.qa_outputs = nnx.Linear(n_embd, 2, kernel_init=nnx.initializers.normal(0.02), rngs=nnx.Rngs(seed))

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return self.qa_outputs(dropout(hidden, self.dropout, dropout_key))  # (B, T, 2)

    def loss(self, outputs, batch):
        """Cross-entropy of the true start and end positions, each over the context's positions."""
        allowed = batch["context_mask"].astype(bool)[:, :, None]  # (B, T, 1)
        scores = jnp.where(allowed, outputs, jnp.finfo(outputs.dtype).min)  # (B, T, 2)
        start = optax.softmax_cross_entropy_with_integer_labels(scores[:, :, 0], batch["start"])  # (B,)
        end = optax.softmax_cross_entropy_with_integer_labels(scores[:, :, 1], batch["end"])  # (B,)
        return (start + end).mean() / 2

    def metrics(self, outputs, examples):
        from minitransfer.qa import best_spans, squad_scores

        return squad_scores([text for text, _ in best_spans(outputs, examples)], examples.answers)

    def describe(self):
        return {"dropout": self.dropout}

    def tensors(self):
        return _linear_tensors(self.qa_outputs, "qa_outputs")

    @classmethod
    def restore(cls, info, n_embd, tensors, source, hf_tensors=None):
        head = cls(n_embd, dropout=info.get("dropout", 0.1))
        _set_linear(head.qa_outputs, tensors, "qa_outputs", source)
        return head

    @classmethod
    def for_data(cls, n_embd, data, *, dropout=0.1, seed=0, **options):
        return cls(n_embd, dropout=dropout, seed=seed)

    def check_data(self, data):
        from minitransfer.qa import QADataset

        if not isinstance(data, QADataset):
            raise ValueError("the span head answers questions: it needs question-answering data (--task qa)")

    def prepare(self, data, tokenizer, *, max_len, budget, seed, val_examples, log,
                splits=("train", "validation", "test"), training=True):
        from minitransfer.qa import encode_qa

        parts = budgeted_splits(data, splits, budget, seed, val_examples, log, "examples")
        out = {}
        for name in splits:
            # training cannot learn from an answer it cannot see; evaluation counts it as a miss
            e = encode_qa(parts[name], tokenizer, max_len, drop_unanswerable=training and name == "train")
            for note in e.notes:
                log(f"{name}: {note}")
            out[name] = ({"input_ids": e.input_ids, "attention_mask": e.attention_mask,
                          "context_mask": e.context_mask, "start": e.start, "end": e.end}, e)
        return out
