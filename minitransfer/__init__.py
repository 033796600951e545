"""minitransfer: transfer learning in NLP with a readable pure-JAX/Flax GPT-2.

The names below load on first use (PEP 562), so that ``import
minitransfer.cli`` (what the ``minitransfer`` command runs first) does not
import JAX: the command can then take Ctrl-C as one line from its first
moment, and ``--help`` answers sooner."""

import importlib

_WHERE = {
    "CheckpointError": "minitransfer.errors",
    "load_pretrained": "minitransfer.convert",
    "save_pretrained": "minitransfer.convert",
    "load_tokenizer": "minitransfer.tokenizer",
    "ClassificationHead": "minitransfer.classify",
    "NextWordHead": "minitransfer.model",
    "ChatHead": "minitransfer.chat",
    "GPT2": "minitransfer.model",
    "GPT2Backbone": "minitransfer.model",
    "GPT2Config": "minitransfer.model",
    "named_config": "minitransfer.model",
    "shipped_checkpoint": "minitransfer.assets",
}
__all__ = sorted(_WHERE)
__version__ = "0.1.0"  # the only place it is written (pyproject.toml reads it)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # once: later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module 'minitransfer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
