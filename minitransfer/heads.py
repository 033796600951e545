"""What every task head is: the protocol, the registry, and saving a head's weights.

A head is a small module over the backbone's hidden states (B, T, C), and
every head has the same call signature::

    head(hidden, attention_mask, backbone, dropout_key=None)

so a model is "a backbone plus one head" and heads swap freely. The
``backbone`` argument is there for heads that share weights with it (the
next-word head reuses the token embedding); other heads ignore it.

A head also owns its task (``TaskHead``): its loss, its metrics and which one
picks the best checkpoint, what a batch for it holds (``prepare`` turns a
dataset into arrays), and what ``compare`` reports of it. Each task is one
module holding its head and that logic: ``classify.py`` (``ClassificationHead``),
``qa.py`` (``SpanHead``), ``chat.py`` (``ChatHead``), ``prompting.py``
(``PromptHead``); the next-word head is the model's own (``model.py``).

This module holds what no task needs to write for itself: ``HEADS`` maps
each head's ``kind`` (as written in a checkpoint's config.json) to its class,
and a head's weights are saved and restored from ``nnx.state(head)``, each
named by its path (``score.kernel`` -> ``head.score.weight``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


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
    # A head that reads one pooled vector per text (``features`` then ``classify``): a frozen backbone's
    # features can then be computed once and cached (mode probe). A head that reads every position cannot.
    pooled_features: bool = False

    # -- what `compare` reports (a task with label budgets) ----------------------
    compare_metrics: tuple[str, ...] = ()  # each with its interval and paired gains; the first is the headline
    compare_means: tuple[str, ...] = ()  # reported as means only
    budget_unit: str = "examples"  # what a budget counts ("labels", "questions")
    baseline_names: dict[str, str] = {}  # summary key -> name of a predictor that reads no text

    @classmethod
    def baselines(cls, data: Any) -> dict[str, float]:
        """The headline metric of each ``baseline_names`` predictor on ``data``'s test split."""
        return {}

    @classmethod
    def check_budget(cls, budget: int, data: Any) -> None:
        """Raise ValueError where ``budget`` training examples cannot make a training set for this task."""

    # -- training --------------------------------------------------------------
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

    # -- data: what a batch for this head looks like ---------------------------
    @classmethod
    def for_data(cls, n_embd: int, data: Any, *, dropout: float = 0.1, seed: int = 0, **options) -> TaskHead:
        """A fresh head for ``data``."""
        raise NotImplementedError

    def check_data(self, data: Any) -> None:
        """Raise ValueError if this head cannot train on ``data`` (e.g. other labels)."""

    def prepare(
        self,
        data: Any,
        tokenizer,
        *,
        max_len: int,
        budget,
        seed: int,
        val_examples: int | None,
        log: Callable[[str], None],
        splits=("train", "validation", "test"),
        training: bool = True,
    ) -> dict[str, tuple[dict[str, np.ndarray], Any]]:
        """Each of ``splits`` -> (arrays for batches, encoded examples for
        ``metrics``). ``budget`` limits the training examples (None: all);
        ``val_examples`` picks a fixed validation subset. ``training``: the
        train split feeds training steps (False: it is only evaluated)."""
        raise NotImplementedError

    # -- checkpoints -----------------------------------------------------------
    def describe(self) -> dict:
        """What config.json records about this head (besides its kind): what ``from_info`` reads back."""
        return {}

    @classmethod
    def from_info(cls, info: dict, n_embd: int, source: str) -> TaskHead:
        """A head as ``describe`` recorded it, its weights still fresh (``restore`` fills them)."""
        return cls()

    def hf_config(self) -> dict:
        """Top-level config.json keys that transformers itself reads (e.g. id2label)."""
        return {}

    # Weights a head saves under transformers' own top-level names (``score.weight``), where one of
    # transformers' classes computes exactly what the head does: the checkpoint then opens there as the
    # same model. ``hf_tensor_names`` lists the names such a head may have, so that loading sets them apart
    # from the backbone's; ``hf_layout`` says which of this head's weights go there.
    hf_tensor_names: tuple[str, ...] = ()

    def hf_layout(self) -> dict[str, str]:
        """This head's weight name -> transformers' name for it, saved as torch's ``nn.Linear`` weight
        (out, in): the kernel transposed. {} where transformers has no class for the head."""
        return {}

    def shape_note(self) -> str:
        """What a wrong-shaped tensor's error adds after the expected shape (" for 3 labels [...]")."""
        return ""

    def model_card(self) -> str | None:
        """A README.md for the checkpoint folder (what the head predicts, how to use it); None: none."""
        return None

    def transformers_note(self) -> str | None:
        """Where transformers has a class for this kind of head but cannot represent this one: a
        sentence saying why and which options give one it can (None otherwise)."""
        return None

    # The weights themselves: generic, from nnx.state(head) (no head writes its own)
    def tensors(self) -> dict[str, np.ndarray]:
        """Its weights by name (``score.weight``); saved as ``head.<name>`` beside the backbone."""
        hf = self.hf_layout()
        return {name: np.asarray(var.get_value(), np.float32) for name, var in weights(self) if name not in hf}

    def hf_tensors(self) -> dict[str, np.ndarray]:
        """Its weights saved under transformers' names (instead of ``tensors``); {} where none."""
        named = dict(weights(self))
        return {
            theirs: np.ascontiguousarray(np.asarray(named[ours].get_value(), np.float32).T)
            for ours, theirs in self.hf_layout().items()
        }

    @classmethod
    def restore(
        cls,
        info: dict,
        n_embd: int,
        tensors: dict[str, np.ndarray],
        source: str,
        hf_tensors: dict[str, np.ndarray] | None = None,
    ) -> TaskHead:
        """The inverse of ``describe`` + ``tensors`` (+ ``hf_tensors``): pops every tensor it uses."""
        head = cls.from_info(info, n_embd, source)
        hf, hf_tensors = head.hf_layout(), hf_tensors if hf_tensors is not None else {}
        for name, var in weights(head):
            shape = tuple(var.get_value().shape)
            if name in hf and hf[name] in hf_tensors and name not in tensors:
                t = _take(hf_tensors, hf[name], shape[::-1], source, head.shape_note()).T
            else:
                t = _take(tensors, name, shape, source, head.shape_note(), HEAD_PREFIX)
            var.set_value(jnp.asarray(t))
        return head


HEAD_PREFIX = "head."  # a head's own tensors in a checkpoint, beside the backbone's

# a weight's last name in transformers' convention, as convert.py names the backbone's
_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


def weights(head: nnx.Module) -> list[tuple[str, nnx.Variable]]:
    """Each of the head's parameters with its checkpoint name: ('score', 'kernel') -> 'score.weight'."""
    return [
        (".".join([str(p) for p in path[:-1]] + [_LEAF.get(path[-1], str(path[-1]))]), var)
        for path, var in nnx.to_flat_state(nnx.state(head, nnx.Param))
    ]


def _take(tensors: dict, name: str, shape: tuple, source: str, note: str, prefix: str = "") -> np.ndarray:
    if name not in tensors:
        raise ValueError(f"{source}: missing tensor '{prefix}{name}' (expected shape {shape})")
    t = tensors.pop(name)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{source}: tensor '{prefix}{name}' has shape {tuple(t.shape)}, expected {shape}{note}")
    return t


HEADS: dict[str, type[TaskHead]] = {}


def register_head(cls: type[TaskHead]) -> type[TaskHead]:
    """Make checkpoints with ``"head": cls.kind`` loadable (a class decorator)."""
    HEADS[cls.kind] = cls
    return cls


def head_class(kind: str, source: str = "config.json") -> type[TaskHead]:
    """The registered head of ``kind`` (``tasks.py`` imports every task module, which registers them)."""
    if kind not in HEADS:
        raise ValueError(f"{source}: unknown head type {kind!r}; expected one of {sorted(HEADS)}")
    return HEADS[kind]


def budgeted_splits(data, splits, budget, seed: int, val_examples: int | None, log, what: str) -> dict:
    """The splits a head encodes: ``budget`` seeded training items, a fixed subset of ``val_examples``
    validation items (said in ``log``), the whole test split. For data whose splits have ``subset``."""
    parts = {"train": data.train.subset(budget, seed, "`labels`"), "validation": data.validation, "test": data.test}
    if "validation" in splits and val_examples is not None and len(data.validation) > val_examples:
        parts["validation"] = data.validation.subset(val_examples, 0, "`val_examples`")
        log(f"validating on a fixed subset of {val_examples} of {len(data.validation)} validation {what}")
    return parts


def encode_splits(parts: dict, splits, encode: Callable, fields: tuple[str, ...], log) -> dict:
    """Each of ``splits`` of ``parts`` encoded (``encode(name, items)``; what it noticed said in ``log``),
    as (arrays, encoded): the arrays a batch holds, ``input_ids``, ``attention_mask`` and ``fields`` (the
    head's ``batch_fields``)."""
    out = {}
    for name in splits:
        e = encode(name, parts[name])
        for note in e.notes:
            log(f"{name}: {note}")
        out[name] = ({k: getattr(e, k) for k in ("input_ids", "attention_mask", *fields)}, e)
    return out
