"""minitransfer: transfer learning in NLP with a readable pure-JAX/Flax GPT-2."""

from minitransfer.convert import CheckpointError, load_pretrained, save_pretrained
from minitransfer.tokenizer import load_tokenizer
from minitransfer.heads import ClassificationHead, NextWordHead
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config, named_config

__all__ = [
    "CheckpointError",
    "ClassificationHead",
    "GPT2",
    "GPT2Backbone",
    "GPT2Config",
    "NextWordHead",
    "load_pretrained",
    "load_tokenizer",
    "named_config",
    "save_pretrained",
]
__version__ = "0.1.0"
