"""Hugging Face GPT-2 checkpoints <-> minitransfer's Flax GPT-2.

Loading reads ``config.json`` and the weights (``model.safetensors``, sharded
safetensors with ``model.safetensors.index.json``, or, only when the user allows
it, a pickled ``pytorch_model.bin``), normalises the tensor names that the
different generations of hub files use, and copies every tensor into the Flax
model after checking its name and shape.

Why no transposes? GPT-2 was written with a ``Conv1D`` layer whose weight is
stored as (in_features, out_features), the same layout as a Flax ``Linear``
kernel. (nanoGPT transposes these tensors only because it rebuilds them as
``torch.nn.Linear``, which stores (out, in).) Embeddings (V, C) and LayerNorm
vectors are laid out identically in both frameworks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from minitransfer import tasks  # noqa: F401  (registers every task's head kind)
from minitransfer.errors import CheckpointError
from minitransfer.heads import HEAD_PREFIX, TaskHead, head_class
from minitransfer.hub import PICKLE, SAFETENSORS, SAFETENSORS_INDEX, load_config, resolve_source
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config, NextWordHead
from minitransfer.tokenizer import check_tokenizer_fits

# ----------------------------------------------------------------------------
# Names: Flax parameter paths <-> Hugging Face tensor names
# ----------------------------------------------------------------------------

_LEAF_TO_HF = {"embedding": "weight", "kernel": "weight", "scale": "weight", "bias": "bias"}


def hf_name(path: tuple) -> str:
    """('h', 0, 'attn', 'c_attn', 'kernel') -> 'h.0.attn.c_attn.weight'."""
    *mods, leaf = path
    return ".".join([str(p) for p in mods] + [_LEAF_TO_HF[leaf]])


# Non-parameter buffers that hub files carry: the causal mask ``h.N.attn.bias``
# (a 1x1x1024x1024 lower-triangular matrix) and ``h.N.attn.masked_bias`` (the
# fill value, in older files). The model rebuilds both, so they are skipped.
_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


def normalize_state_dict(tensors: dict[str, np.ndarray], source: str) -> tuple[dict, dict]:
    """Bring the naming variants of GPT-2 checkpoints to one form.

    * ``transformer.h.0...`` (what ``GPT2LMHeadModel.save_pretrained`` writes)
      and ``h.0...`` (the original hub files) both become ``h.0...``;
    * attention-mask buffers are dropped (counted in the returned report);
    * ``lm_head.weight`` is accepted when it equals ``wte.weight`` (GPT-2 ties
      them), or stands in for a missing ``wte.weight``.
    """
    out: dict[str, np.ndarray] = {}
    report = {"buffers_skipped": 0, "lm_head": "absent"}
    lm_head = None
    for name, t in tensors.items():
        key = name[len("transformer.") :] if name.startswith("transformer.") else name
        if _BUFFER.match(key):
            report["buffers_skipped"] += 1
            continue
        if key == "lm_head.weight":
            lm_head = t
            continue
        if key in out:
            raise CheckpointError(f"{source}: tensor {key!r} appears twice (with and without 'transformer.')")
        out[key] = t
    if lm_head is not None:
        if "wte.weight" not in out:
            out["wte.weight"] = lm_head
            report["lm_head"] = "used as wte.weight"
        elif lm_head.shape != out["wte.weight"].shape or not np.array_equal(lm_head, out["wte.weight"]):
            raise CheckpointError(
                f"{source}: lm_head.weight differs from wte.weight. GPT-2 ties the next-word "
                f"head to the token embedding, and minitransfer's NextWordHead relies on that; "
                f"an untied head is not supported."
            )
        else:
            report["lm_head"] = "tied (equal to wte.weight)"
    return out, report


# ----------------------------------------------------------------------------
# Reading checkpoint files
# ----------------------------------------------------------------------------


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():  # (a folder of that name read as "No such device (os error 19)")
        raise CheckpointError(f"{path}: not a file; expected the checkpoint's weights in safetensors format")
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(
            f"{path}: cannot read this safetensors file ({e}). It may be truncated or "
            f"corrupt (size on disk: {path.stat().st_size} bytes); download or save it again."
        ) from None
    except TypeError as e:
        # safetensors.numpy cannot represent bfloat16; tell the user what to do
        raise CheckpointError(
            f"{path}: unsupported tensor dtype ({e}); save the checkpoint in float32/float16"
        ) from None


def _read_pickle(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch  # optional (not a dependency): only a pickled checkpoint the user allows needs it
    except ImportError:
        raise CheckpointError(
            f"{path}: reading pytorch_model.bin needs PyTorch, which minitransfer does not "
            f"install. Either `pip install torch`, or convert the checkpoint to safetensors "
            f"(transformers: model.save_pretrained(dir, safe_serialization=True))."
        ) from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for bad/unsafe pickles
        raise CheckpointError(f"{path}: cannot load this pickle with weights_only=True ({e})") from None
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}


def read_weights(directory: Path, *, allow_pickle: bool = False) -> tuple[dict[str, np.ndarray], str]:
    """All tensors of a checkpoint directory, as float32 numpy arrays, and a
    description of where they came from."""
    single, index, pickle = directory / SAFETENSORS, directory / SAFETENSORS_INDEX, directory / PICKLE
    if single.exists():
        tensors, desc = _read_safetensors(single), str(single)
    elif index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: expected JSON with a 'weight_map' object ({e!r})") from None
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            shard_path = directory / shard
            if not shard_path.exists():
                raise CheckpointError(f"{index} names shard {shard!r}, but {shard_path} does not exist")
            tensors.update(_read_safetensors(shard_path))
        missing = sorted(set(weight_map) - set(tensors))
        if missing:
            raise CheckpointError(f"{index}: tensors listed in the index are in no shard: {missing[:5]}")
        desc = f"{index} ({len(set(weight_map.values()))} shards)"
    elif pickle.exists():
        if not allow_pickle:
            raise CheckpointError(
                f"{pickle}: this checkpoint has only a pickled pytorch_model.bin. Unpickling can "
                f"run arbitrary code, so minitransfer refuses it by default. If you trust its "
                f"source, pass `allow_pickle`; it is then read with "
                f"torch.load(weights_only=True). Safetensors files need no such permission."
            )
        tensors, desc = _read_pickle(pickle), str(pickle)
    else:
        present = sorted(p.name for p in directory.iterdir())
        raise CheckpointError(
            f"{directory}: no weights found. Expected {SAFETENSORS}, {SAFETENSORS_INDEX} (+ shards) "
            f"or {PICKLE}; the directory holds {present}."
        )
    # floating-point tensors as float32; any other kind (the causal-mask buffers old checkpoints carry,
    # or a weight saved as integers by mistake) as it is, for check_weight to refuse where it is used
    return {
        k: np.asarray(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v)
        for k, v in tensors.items()
    }, desc


def check_weight(name: str, t: np.ndarray, source: str) -> None:
    """A weight must be floating point and finite: an integer tensor would be
    silently cast, and one NaN makes every prediction NaN (ranked, generated
    and trained on as if nothing were wrong)."""
    if t.dtype.kind != "f":
        raise CheckpointError(f"{source}: tensor {name!r} holds {t.dtype} values; a GPT-2 weight is floating point")
    bad = int(t.size - np.count_nonzero(np.isfinite(t)))
    if bad:
        raise CheckpointError(
            f"{source}: tensor {name!r} holds {bad:,} NaN or infinite value(s) of {t.size:,}; "
            f"the checkpoint is damaged (or was saved after training diverged)"
        )


# ----------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------


def backbone_from_tensors(config: GPT2Config, tensors: dict[str, np.ndarray], source: str) -> GPT2Backbone:
    """Build a backbone whose every parameter is copied from ``tensors``.

    The model is first created *abstractly* (shapes only, no memory, no random
    init), then each parameter is filled after checking that the checkpoint has
    a tensor of that name and shape. Leftover tensors are an error too: silently
    ignoring weights would hide a wrong architecture.
    """
    abstract = nnx.eval_shape(lambda: GPT2Backbone(config, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    used = set()
    filled = []
    for path, var in flat:
        name = hf_name(path)
        if name not in tensors:
            raise CheckpointError(
                f"{source}: missing tensor {name!r} (expected shape {tuple(var.get_value().shape)}) "
                f"for a GPT-2 with n_layer={config.n_layer}, n_embd={config.n_embd}"
            )
        t = tensors[name]
        if tuple(t.shape) != tuple(var.get_value().shape):
            raise CheckpointError(
                f"{source}: tensor {name!r} has shape {tuple(t.shape)}, expected "
                f"{tuple(var.get_value().shape)} from config.json (n_embd={config.n_embd}, "
                f"vocab_size={config.vocab_size}, n_positions={config.n_positions})"
            )
        check_weight(name, t, source)
        used.add(name)
        filled.append((path, var.replace(jnp.asarray(t))))
    extra = sorted(set(tensors) - used)
    if extra:
        raise CheckpointError(
            f"{source}: {len(extra)} tensor(s) that a GPT-2 with this config.json does not have: "
            f"{extra[:5]}{' ...' if len(extra) > 5 else ''} (is n_layer right?)"
        )
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def load_pretrained(source: str | os.PathLike, *, allow_pickle: bool = False) -> GPT2:
    """A Hugging Face GPT-2 checkpoint (directory or hub id) as a Flax ``GPT2``.

    A plain GPT-2 checkpoint comes with its next-word head: ``model(input_ids)``
    -> logits (B, T, V). A classifier saved by minitransfer comes back with its
    ``ClassificationHead`` and label names: ``model(input_ids)`` -> (B, K).
    """
    directory = resolve_source(source, allow_pickle=allow_pickle)
    config = load_config(directory)
    raw, desc = read_weights(directory, allow_pickle=allow_pickle)
    head_tensors = {k[len(HEAD_PREFIX) :]: raw.pop(k) for k in [k for k in raw if k.startswith(HEAD_PREFIX)]}
    info = read_head_info(directory)
    try:
        cls = head_class(info["head"], f"{directory}/config.json") if info is not None else None
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    # a head saved under transformers' own names (score.weight of a GPT2ForSequenceClassification)
    hf_tensors = {k: raw.pop(k) for k in (cls.hf_tensor_names if cls is not None else ()) if k in raw}
    tensors, _ = normalize_state_dict(raw, desc)
    backbone = backbone_from_tensors(config, tensors, desc)
    if info is None:
        if head_tensors:
            raise CheckpointError(
                f"{desc}: tensors {sorted(HEAD_PREFIX + k for k in head_tensors)} belong to a task head, but "
                f"config.json has no 'minitransfer' section describing it"
            )
        return GPT2(backbone, NextWordHead())
    for name, t in head_tensors.items():
        check_weight(HEAD_PREFIX + name, t, desc)
    for name, t in hf_tensors.items():
        check_weight(name, t, desc)
    try:
        head = cls.restore(info, config.n_embd, head_tensors, desc, hf_tensors)
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    left = sorted([HEAD_PREFIX + k for k in head_tensors] + list(hf_tensors))
    if left:
        raise CheckpointError(f"{desc}: unexpected head tensors {left}")
    return GPT2(backbone, head)


def training_info(source: str | os.PathLike) -> dict:
    """The ``minitransfer`` section of a checkpoint's config.json: its head and
    what fine-tuning recorded (max_len, mode, step, val_examples, data); {}
    for a checkpoint minitransfer did not write."""
    path = resolve_source(source) / "config.json"
    info = _minitransfer_section(path) or {}
    for name in ("max_len", "val_examples"):  # read as lengths and counts by the commands
        v = info.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise CheckpointError(f"{path}: minitransfer.{name} must be a positive whole number, got {v!r}")
    return info


def _minitransfer_section(path: Path) -> dict | None:
    """config.json's ``minitransfer`` section (None where there is none)."""
    info = json.loads(path.read_text()).get("minitransfer")
    if info is not None and not isinstance(info, dict):
        raise CheckpointError(f"{path}: its 'minitransfer' section must be a JSON object, found {type(info).__name__}")
    return info


def read_head_info(directory: Path) -> dict | None:
    """The task-head description minitransfer stores in config.json, if any
    (None for a plain next-word checkpoint)."""
    info = _minitransfer_section(directory / "config.json")
    if not info or info.get("head") in (None, "next-word"):
        return None
    return info


def pad_token_id(tokenizer: Any, config: GPT2Config) -> int:
    """The id transformers should read as padding in a saved classifier: the
    tokenizer's pad token if it has one, else its end-of-text token (GPT-2's
    convention), else the config's eos_token_id, else 0."""
    for value in (
        getattr(tokenizer, "pad_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
        config.eos_token_id,
    ):
        if isinstance(value, int):
            return value
    return 0


# ----------------------------------------------------------------------------
# Saving: Flax -> Hugging Face format
# ----------------------------------------------------------------------------


def backbone_tensors(backbone: GPT2Backbone, prefix: str = "transformer.") -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(backbone, nnx.Param))
    return {prefix + hf_name(path): np.asarray(var.get_value(), dtype=np.float32) for path, var in flat}


def save_pretrained(
    model: GPT2,
    directory: str | os.PathLike,
    tokenizer: Any = None,
    extra: dict | None = None,
    files: list[str] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) in the
    layout ``transformers.GPT2LMHeadModel.from_pretrained`` reads.

    A classification head is described (labels, pooling, dropout, bias, and
    ``extra``) in the ``minitransfer`` section of config.json. One that
    transformers' ``GPT2ForSequenceClassification`` computes too (last-token
    pooling, no bias) is saved under that class's names (``score.weight``,
    ``id2label``, ``pad_token_id``), so it opens there as the same classifier;
    any other is stored beside the backbone as ``head.score.*`` tensors, which
    transformers skips (its backbone still loads there). ``files``, where
    given, gets the names of the files written appended to it.
    """
    directory = Path(directory)
    if tokenizer is not None:  # before anything is written
        check_tokenizer_fits(tokenizer, model.config, f"saving to {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_hf_dict()
    tensors = backbone_tensors(model.backbone)
    head = model.head
    if not isinstance(head, TaskHead) or not head.kind:
        raise TypeError(f"cannot save a model whose head is {type(head).__name__}: not a registered TaskHead")
    if head.kind != "next-word" or extra:
        config["minitransfer"] = {"head": head.kind, **head.describe(), **(extra or {})}
    config.update(head.hf_config())
    hf_tensors = head.hf_tensors()
    if hf_tensors and "pad_token_id" not in config:
        # transformers pools the last token that is not pad_token_id (and refuses a batch without one): GPT-2's
        # end-of-text token, by convention (minitransfer's own padding is masked, so its id never mattered)
        config["pad_token_id"] = pad_token_id(tokenizer, model.config)
    tensors.update({HEAD_PREFIX + k: v for k, v in head.tensors().items()})
    tensors.update(hf_tensors)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    card = head.model_card()
    if card is not None:  # the model card the hub shows (and a reader of the folder)
        (directory / "README.md").write_text(card)
    # "format": "pt" tells transformers these are PyTorch-layout tensors (they are:
    # Conv1D's (in, out) layout is Flax's).
    save_file(tensors, str(directory / SAFETENSORS), metadata={"format": "pt"})
    # safetensors writes its file readable by its owner alone (0600); a checkpoint is meant to be shared
    # like the config.json beside it, so it takes that file's permissions (what the umask gave)
    os.chmod(directory / SAFETENSORS, (directory / "config.json").stat().st_mode & 0o777)
    if tokenizer is not None:
        # the model's context length as the tokenizer's limit, so that transformers' truncation=True cuts to
        # what the model can read (the default, 1e9 or 1e30, lets an over-long input reach the model's
        # position table, an IndexError); the caller's tokenizer is left as it was
        before, pad_before = tokenizer.model_max_length, tokenizer.pad_token
        tokenizer.model_max_length = model.config.n_positions
        if hf_tensors and tokenizer.pad_token is None and tokenizer.eos_token is not None:
            # a classifier for transformers pads batches (tokenizer(texts, padding=True), pipelines): with the
            # token config.json names as pad_token_id, which transformers' pooling skips
            tokenizer.pad_token = tokenizer.eos_token
        try:
            tokenizer_files = tokenizer.save_pretrained(str(directory))
        finally:
            tokenizer.model_max_length = before
            tokenizer.pad_token = pad_before
    if files is not None:  # (transformers lists added_tokens.json among its files even where it wrote none)
        files += [
            "config.json",
            SAFETENSORS,
            *(["README.md"] if card is not None else []),
            *(Path(f).name for f in (tokenizer_files if tokenizer is not None else ()) if Path(f).is_file()),
        ]
    return directory
