"""The ways to build and train a classifier on a GPT-2 backbone: one table.

Each mode says where the backbone's weights start, which weights train, and
its default peak learning rate. Everything else (the loop, the loss, the
metrics) is the same for every mode, which is what makes the comparison fair.

What trains is a Flax NNX *filter* (the idiom of ``nnx.split(model, filter,
...)`` and ``nnx.Optimizer(..., wrt=filter)``): ``nnx.Param`` (every weight),
``HEAD`` (the task head's weights), ``nnx.LoRAParam`` (adapters), any
combination of them (``nnx.All``, ``nnx.Any``, ``nnx.Not``), or a function
``(path, variable) -> bool``. Training splits the model with it: gradients
and optimizer state exist only for what it selects; the rest is passed to
the step as it is. A mode whose filter depends on the run's settings (how
many blocks ``top`` unfreezes) gives a ``RunFilter``. A mode can also change
the model before training (``prepare``: ``lora`` adds adapters) and the model
it saves (``finish``: ``lora`` merges them back into plain weights). A new
mode is one more entry here, plus, where it needs them, a filter or a
transform of its own (``lora.py``).

``zero`` and ``prompt`` keep the next-word head instead of chopping it off
(``prompting.py``): ``zero`` is the classifier it already is before any
label, ``prompt`` fine-tunes from there.

ULMFiT (Howard & Ruder 2018) names three stages of transfer: general-domain
pretraining, next-word fine-tuning on the target task's own text, then
classifier fine-tuning. ``full`` skips the middle stage; ``adapt`` runs all
three (see ``adapt.py``). ``top`` is ULMFiT's gradual unfreezing held at
one stage (the top blocks train, the rest stays as pretrained); ``lora``
(Hu et al. 2021) trains low-rank adapters beside the frozen weights.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable
from typing import Any

from flax import nnx

from minitransfer.classify import ClassificationHead
from minitransfer.lora import add_adapters, merge_adapters
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config

# what trains in each mode, as nnx filters (see the module's docstring)
HEAD = nnx.All(nnx.Param, nnx.PathContains("head"))  # the task head's weights
EVERYTHING = nnx.Param
NOTHING = nnx.Nothing()


@dataclasses.dataclass(frozen=True)
class RunFilter:
    """A filter that depends on the run: ``build(cfg, n_layer)`` returns it
    for a run's settings (a ``TrainConfig``) and its model's depth."""

    build: Callable[[Any, int], Any]

    def __repr__(self):
        return f"{self.build.__name__}(cfg, n_layer)"


def top_blocks(cfg, n_layer: int):
    """ULMFiT-style partial unfreezing: the last ``cfg.unfreeze`` blocks, the
    final LayerNorm and the head train; the embeddings and the lower blocks
    stay as pretrained."""
    if not 1 <= cfg.unfreeze <= n_layer:
        raise ValueError(f"`unfreeze` must be between 1 and the model's {n_layer} blocks, got {cfg.unfreeze}")
    first = n_layer - cfg.unfreeze

    def in_top_blocks(path, variable) -> bool:
        return path[:2] == ("backbone", "h") and int(path[2]) >= first

    return nnx.All(nnx.Param, nnx.Any(nnx.PathContains("head"), nnx.PathContains("ln_f"), in_top_blocks))


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    start: str  # "random" (GPT-2's init) | "pretrained" (the checkpoint) | "adapted" (checkpoint + ULMFiT stage 2)
    trains: Any  # an nnx filter over the model (after ``prepare``): what gets gradients; or a RunFilter
    lr: float  # default peak learning rate
    lr_small: float  # default for small models (n_embd <= 256, such as the shipped checkpoint), which need larger steps
    help: str
    # the mode this one adds a stage to: compare reports the paired gain over it
    # as well as over scratch, so that the added stage's own worth is measured
    adds_to: str | None = None
    # other modes compare reports this one's paired gain over (where both ran)
    also_over: tuple[str, ...] = ()
    # the head it trains: "new" (a fresh task head: the next-word head chopped off) or
    # "prompt" (the next-word head kept, read through a prompt: prompting.py)
    head: str = "new"
    # prepare(model, cfg) -> the model to train (a copy where it changes it); finish(model) -> the model
    # to save (changed in place); None: the model as it is
    prepare: Callable | None = None
    finish: Callable | None = None
    # the TrainConfig fields only this mode reads (the others leave them out of a run's key)
    options: tuple[str, ...] = ()

    @property
    def pretrained(self) -> bool:
        return self.start != "random"

    def filter(self, cfg, n_layer: int):
        """What trains in a run with settings ``cfg`` on a model of ``n_layer`` blocks."""
        return self.trains.build(cfg, n_layer) if isinstance(self.trains, RunFilter) else self.trains

    def prepared(self, model, cfg):
        """The model this mode trains, made from ``model`` (``model`` itself where there is no ``prepare``)."""
        return self.prepare(model, cfg) if self.prepare else model

    def finished(self, model):
        """The model to save from a trained one (``model`` itself where there is no ``finish``)."""
        return self.finish(model) if self.finish else model

    # What the filter selects, read off a tiny model of the mode's own making:
    # the one place these are decided is the filter itself.
    @property
    def trains_nothing(self) -> bool:
        return not any(_selected(self).values())

    @property
    def trains_backbone(self) -> bool:
        return _selected(self)["backbone"]

    @property
    def frozen_backbone(self) -> bool:
        """Only the head trains: the backbone's outputs never change, so its
        features can be computed once and cached (probing's fast path)."""
        return _selected(self)["head"] and not _selected(self)["backbone"]

    @property
    def trains_text(self) -> str:
        """The filter as it reads in the table: ``All(Param, PathContains('head'))``."""
        return filter_text(self.trains)


def filter_text(f) -> str:
    """An nnx filter written as it is built (nnx's own reprs spell out classes and defaults)."""
    if isinstance(f, type):
        return f.__name__
    if isinstance(f, nnx.filterlib.OfType):
        return f.type.__name__
    if isinstance(f, (nnx.filterlib.Nothing, nnx.filterlib.Everything)):
        return type(f).__name__
    if isinstance(f, (nnx.All, nnx.Any)):
        return f"{type(f).__name__}({', '.join(map(filter_text, f.predicates))})"
    if isinstance(f, nnx.Not):
        return f"Not({filter_text(f.predicate)})"
    if isinstance(f, nnx.PathContains):
        return f"PathContains({f.key!r})"
    return repr(f)


# the settings a sample model is prepared and filtered with (the smallest that select something)
_SAMPLE_SETTINGS = types.SimpleNamespace(unfreeze=1, lora_rank=1, lora_alpha=1.0, seed=0)


@functools.cache
def _selected(mode: Mode) -> dict[str, bool]:
    """Does ``mode``'s filter select any weight of the backbone, of the head,
    on a two-block model (shapes only: nothing is computed)?"""
    config = GPT2Config(vocab_size=4, n_positions=4, n_embd=4, n_layer=2, n_head=1)

    def sample():
        model = GPT2(GPT2Backbone(config, rngs=nnx.Rngs(0)), ClassificationHead(config.n_embd, ["a", "b"]))
        return mode.prepared(model, _SAMPLE_SETTINGS)

    model = nnx.eval_shape(sample)
    _, trained, _ = nnx.split(model, mode.filter(_SAMPLE_SETTINGS, config.n_layer), ...)
    paths = [path for path, _ in nnx.to_flat_state(trained)]
    return {part: any(p[0] == part for p in paths) for part in ("backbone", "head")}


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("scratch", "random", EVERYTHING, 3e-4, 1e-3, "random weights, backbone and head train"),
        Mode("probe", "pretrained", HEAD, 3e-3, 1e-2, "pretrained backbone frozen, only a new head trains"),
        Mode(
            "top",
            "pretrained",
            RunFilter(top_blocks),
            1e-4,
            5e-4,  # full's rates (not tuned)
            "ULMFiT-style partial unfreezing: the last --unfreeze blocks (default 1), the final layer norm and a new "
            "head train; the rest stays as pretrained",
            options=("unfreeze",),
        ),
        # LoRA takes larger steps than full fine-tuning (its adapters start at zero, and only they move)
        Mode(
            "lora",
            "pretrained",
            nnx.Any(nnx.LoRAParam, HEAD),
            5e-4,
            2e-3,
            "low-rank adapters (rank --lora-rank, scale --lora-alpha / rank) beside every attention and MLP "
            "projection, and a new head, train; the pretrained weights stay frozen; saved merged into plain GPT-2 "
            "weights",
            prepare=add_adapters,
            finish=merge_adapters,
            options=("lora_rank", "lora_alpha"),
        ),
        Mode("full", "pretrained", EVERYTHING, 1e-4, 5e-4, "every pretrained weight and a new head train"),
        Mode(
            "adapt",
            "adapted",
            EVERYTHING,
            1e-4,
            5e-4,
            "ULMFiT: next-word training on the task's training texts first, then as full",
            adds_to="full",
        ),
        Mode(
            "zero",
            "pretrained",
            NOTHING,
            0.0,
            0.0,
            "the next-word head itself as the classifier, before any label (a prompt after each text, a word "
            "per label); nothing trains",
            head="prompt",
        ),
        Mode(
            "prompt",
            "pretrained",
            EVERYTHING,
            1e-4,
            5e-4,
            "the next-word head kept as the classifier (as zero), then every weight trains as in full",
            also_over=("probe", "full"),
            head="prompt",
        ),
    )
}


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise ValueError(f"unknown mode {name!r}; expected one of {list(MODES)}")
    return MODES[name]


def mode_help() -> str:
    """One line per mode, for --help texts."""
    return "; ".join(f"{m.name}: {m.help}" for m in MODES.values())
