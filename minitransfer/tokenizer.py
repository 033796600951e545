"""Tokenizers: loaded from checkpoints, or trained on your text.

minitransfer does not hand-write byte-level BPE: Hugging Face ``tokenizers``
does it well. This module only finds the right files, and trains a small
vocabulary when a model should not carry GPT-2's 50,257 embeddings.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from minitransfer.assets import GPT2_BPE_DIR, GPT2_TOKENIZER_IDS
from minitransfer.errors import CheckpointError
from minitransfer.hub import load_config, resolve_source

EOT = "<|endoftext|>"  # GPT-2's one special token: end of text, also used as BOS and padding


# what to do about a checkpoint saved without its tokenizer
SAVE_WITH_TOKENIZER = (
    "Save the checkpoint with a tokenizer, e.g. `minitransfer convert SOURCE --out DIR --tokenizer TOKENIZER_DIR`."
)


def load_tokenizer(source: str | os.PathLike, setting: str | None = None):
    """The tokenizer of ``source`` (see ``_load_tokenizer``), without a
    length limit of its own (see ``_unlimited``). ``setting``: the setting
    that named ``source`` as a tokenizer of its own (``tokenizer``), which
    errors then name."""
    if setting is None:
        try:
            return _unlimited(_load_tokenizer(source))
        except CheckpointError:
            # a model's folder with no config.json either is no checkpoint at all (an empty folder, say): said as
            # every command that reads the model first says it, not as a tokenizer missing from a checkpoint
            folder = Path(source)
            if folder.is_dir() and not (folder / "config.json").exists():
                load_config(folder)  # raises: "no config.json (every Hugging Face checkpoint has one)"
            raise

    try:
        return _unlimited(_load_tokenizer(source))
    except (CheckpointError, OSError, ValueError) as e:
        said = str(e).removeprefix(f"{source}: ")  # the path is named once, after the setting
        # where the setting named the tokenizer, saving one with the checkpoint is no way out: what it takes is
        said = said.replace(
            SAVE_WITH_TOKENIZER,
            f"`{setting}` takes a folder holding them, 'gpt2' (the GPT-2 "
            f"vocabulary that ships with minitransfer) or a hub id.",
        )
        raise CheckpointError(f"`{setting}` {source}: {said}") from None


def _unlimited(tokenizer):
    """minitransfer cuts texts itself (to max_len or a block, counted and
    said), so the tokenizer's own length limit (the model's context, as
    ``save_pretrained`` writes it for transformers' truncation) would only
    print transformers' "longer than the specified maximum sequence length"
    warning for texts about to be cut anyway."""
    tokenizer.model_max_length = int(1e30)
    return tokenizer


def _load_tokenizer(source: str | os.PathLike):
    """The tokenizer saved with a checkpoint (a ``transformers`` fast tokenizer).

    Also accepts a directory holding OpenAI's original ``encoder.json`` +
    ``vocab.bpe`` (same content as ``vocab.json`` + ``merges.txt``). ``gpt2``
    (or ``openai-community/gpt2``) loads the copy of those two files that
    ships inside the package, offline; other hub ids go to the hub.
    """
    from transformers import GPT2TokenizerFast  # here: slow to import, and only a tokenizer needs it

    if str(source) in GPT2_TOKENIZER_IDS and not Path(source).exists():
        directory = GPT2_BPE_DIR  # the real GPT-2 vocabulary ships in the package: no hub, no network
    else:
        directory = resolve_source(source)
    if (directory / "encoder.json").exists() and (directory / "vocab.bpe").exists():
        # transformers wants the Hugging Face file names; passing vocab_file=
        # to the constructor silently yields an empty vocabulary in v5.
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(directory / "encoder.json", Path(tmp) / "vocab.json")
            shutil.copy(directory / "vocab.bpe", Path(tmp) / "merges.txt")
            return GPT2TokenizerFast.from_pretrained(tmp)
    if not any((directory / f).exists() for f in ("tokenizer.json", "vocab.json")):
        raise CheckpointError(
            f"{directory}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt). " + SAVE_WITH_TOKENIZER
        )
    try:
        if _tokenizer_class(directory) in ("GPT2Tokenizer", "GPT2TokenizerFast"):
            # the same class AutoTokenizer picks for these, without importing what AutoTokenizer imports
            # (transformers' model configurations, and with them PyTorch: about 1 s on a CPU, more where
            # torch loads CUDA libraries, at the start of every command)
            return GPT2TokenizerFast.from_pretrained(str(directory))
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(directory))
    except (CheckpointError, KeyboardInterrupt):
        raise
    except Exception as e:  # a damaged file: the parser's message alone named no file
        files = [
            f
            for f in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json")
            if (directory / f).exists()
        ]
        raise CheckpointError(
            f"{directory}: cannot load its tokenizer ({', '.join(files)}): {type(e).__name__}: {e}"
        ) from None


def check_tokenizer_fits(tokenizer, config, where: str) -> None:
    """Refuse a tokenizer with more tokens than the model has embedding rows:
    ids past the table's end come out of JAX's gather as NaN, silently (the
    model would predict NaN-probability tokens). ``where`` names the checkpoint
    or command for the message."""
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"{where}: the tokenizer has {len(tokenizer):,} tokens but the model's vocab_size is "
            f"{config.vocab_size:,}: ids from {config.vocab_size:,} up would fall outside the embedding table "
            f"(the model's output would be NaN). Use the tokenizer the model was trained with."
        )


def _tokenizer_class(directory: Path) -> str | None:
    """The ``tokenizer_class`` a checkpoint's tokenizer_config.json names
    (None without that file, or without the field)."""
    path = directory / "tokenizer_config.json"
    if not path.exists():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable JSON file ({e}); a tokenizer's settings are expected "
            f"there, as transformers' save_pretrained writes them"
        ) from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: expected a JSON object of tokenizer settings, found {type(config).__name__}")
    return config.get("tokenizer_class")


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 2):
    """A byte-level BPE (GPT-2's algorithm) with ``vocab_size`` tokens learned
    from ``texts``, as a transformers ``GPT2TokenizerFast`` that saves and
    loads like any other (``AutoTokenizer.from_pretrained`` reads it)."""
    from tokenizers import ByteLevelBPETokenizer  # (here, as in _load_tokenizer: slow imports)
    from transformers import GPT2TokenizerFast

    if vocab_size < 257:
        raise ValueError(f"vocab_size must be at least 257 (256 bytes + {EOT}), got {vocab_size}")
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(
        texts, vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOT], show_progress=False
    )
    return GPT2TokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=EOT, eos_token=EOT, unk_token=EOT, model_max_length=1_000_000_000
    )  # minitransfer truncates itself, and says so
