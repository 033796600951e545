"""The ways to build and train a classifier on a GPT-2 backbone: one table.

Each mode says where the backbone's weights start, which weights train, and
its default peak learning rate. Everything else (the loop, the loss, the
metrics) is the same for every mode, which is what makes the comparison fair.
A new mode (say, "train only the top block") is one more entry here plus, if
it needs one, one more way to start or to select the trained weights.

``zero`` and ``prompt`` keep the next-word head instead of chopping it off
(``prompting.py``): ``zero`` is the classifier it already is before any
label, ``prompt`` fine-tunes from there.

ULMFiT (Howard & Ruder 2018) names three stages of transfer: general-domain
pretraining, next-word fine-tuning on the target task's own text, then
classifier fine-tuning. ``full`` skips the middle stage; ``adapt`` runs all
three (see ``adapt.py``).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    start: str  # "random" (GPT-2's init) | "pretrained" (the checkpoint) | "adapted" (checkpoint + ULMFiT stage 2)
    trains: str  # "all" weights, or only the "head" (frozen backbone: features computed once and cached)
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

    @property
    def pretrained(self) -> bool:
        return self.start != "random"

    @property
    def frozen_backbone(self) -> bool:
        return self.trains == "head"

    @property
    def trains_nothing(self) -> bool:
        return self.trains == "nothing"


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("scratch", "random", "all", 3e-4, 1e-3, "random weights, backbone and head train"),
    Mode("probe", "pretrained", "head", 3e-3, 1e-2, "pretrained backbone frozen, only a new head trains"),
    Mode("full", "pretrained", "all", 1e-4, 5e-4, "every pretrained weight and a new head train"),
    Mode("adapt", "adapted", "all", 1e-4, 5e-4,
         "ULMFiT: next-word training on the task's training texts first, then as full", adds_to="full"),
    Mode("zero", "pretrained", "nothing", 0.0, 0.0,
         "the next-word head itself as the classifier, before any label (a prompt after each text, a word "
         "per label); nothing trains", head="prompt"),
    Mode("prompt", "pretrained", "all", 1e-4, 5e-4,
         "the next-word head kept as the classifier (as zero), then every weight trains as in full",
         also_over=("probe", "full"), head="prompt"),
)}


def get_mode(name: str) -> Mode:
    if name not in MODES:
        raise ValueError(f"unknown mode {name!r}; expected one of {list(MODES)}")
    return MODES[name]


def mode_help() -> str:
    """One line per mode, for --help texts."""
    return "; ".join(f"{m.name}: {m.help}" for m in MODES.values())
