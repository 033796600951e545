"""Where a checkpoint comes from: a local directory, or a Hugging Face hub id
downloaded into the hub's cache; and its ``config.json``. Reading and
converting the weights is ``convert.py``'s; the tokenizer's is
``tokenizer.py``'s: both start here.
"""

from __future__ import annotations

import os
from pathlib import Path

from minitransfer.assets import shipped_checkpoint
from minitransfer.errors import CheckpointError
from minitransfer.model import GPT2Config

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
# the files that make a directory a usable checkpoint besides the weights
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)


# ----------------------------------------------------------------------------
# Resolving a source: local directory or hub id
# ----------------------------------------------------------------------------


def resolve_source(source: str | os.PathLike, allow_pickle: bool = False) -> Path:
    """A local checkpoint directory, or a hub id (``gpt2``, ``distilgpt2``,
    ``openai-community/gpt2-medium``) downloaded into the Hugging Face cache."""
    path = Path(os.path.expanduser(str(source)))
    if path.is_dir():
        if not (path / "config.json").exists() and (path / "best" / "config.json").exists():
            raise CheckpointError(f"{path} is a training run's folder; its model is {path / 'best'}")
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; expected a checkpoint directory (config.json + weights) or a hub id")
    s = str(source)
    if s.startswith((".", "/", "~")) or s.count("/") > 1 or s.endswith("/"):
        raise CheckpointError(f"{s}: no such checkpoint directory")
    return _download_from_hub(s, allow_pickle)


def _download_from_hub(repo_id: str, allow_pickle: bool = False) -> Path:
    try:  # here: only a download needs it, and its import takes a while
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise CheckpointError(f"{repo_id}: not a local directory, and huggingface_hub is not installed") from None
    patterns = ["config.json", "*.safetensors", SAFETENSORS_INDEX, *TOKENIZER_FILES]
    if allow_pickle:
        patterns.append(PICKLE)  # used only if the repository has no safetensors
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except RepositoryNotFoundError:
        raise CheckpointError(f"{repo_id!r} is neither a local directory nor a model on the Hugging Face hub") from None
    except Exception as e:
        shipped = shipped_checkpoint()  # by its absolute path: a relative one is what just failed
        raise CheckpointError(
            f"{repo_id!r} is not a local directory, so minitransfer tried to download it from "
            f"the Hugging Face hub, which is unreachable ({type(e).__name__}). Without network, "
            f"pass a local checkpoint directory instead (config.json + model.safetensors; a relative path is "
            f"read from the current folder, {Path.cwd()}), e.g. "
            + (f"the shipped {shipped} or " if shipped else "")
            + "one written by `minitransfer convert`."
        ) from None


def load_config(directory: Path) -> GPT2Config:
    cfg = directory / "config.json"
    if not cfg.exists():
        raise CheckpointError(f"{directory}: no config.json (every Hugging Face checkpoint has one)")
    try:
        return GPT2Config.from_json_file(cfg)
    except ValueError as e:
        said = str(e)
        raise CheckpointError(said if said.startswith(str(cfg)) else f"{cfg}: {said}") from None
