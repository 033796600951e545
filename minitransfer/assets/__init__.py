"""Files that ship with minitransfer, and the one place that knows where they are.

* ``gpt2/``: OpenAI's GPT-2 BPE (``encoder.json``, ``vocab.bpe``, MIT licence),
  so the real GPT-2 vocabulary loads offline;
* the small pretrained GPT-2 in the repository's ``checkpoints/`` folder,
  the default model of every command.
"""

from __future__ import annotations

from pathlib import Path

GPT2_BPE_DIR = Path(__file__).resolve().parent / "gpt2"
REPO = Path(__file__).resolve().parents[2]
SHIPPED_CHECKPOINT_NAME = "minigpt2-imdb"

# Names that mean "OpenAI's GPT-2 vocabulary": loaded from GPT2_BPE_DIR, not the hub.
GPT2_TOKENIZER_IDS = ("gpt2", "openai-community/gpt2")


def shipped_checkpoint() -> Path | None:
    """checkpoints/minigpt2-imdb of this checkout, or None (e.g. a wheel install)."""
    p = REPO / "checkpoints" / SHIPPED_CHECKPOINT_NAME
    return p if (p / "config.json").exists() else None
