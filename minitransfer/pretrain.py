"""Next-word pretraining: the same loop as fine-tuning, another loss.

A GPT-2 with its next-word head learns to predict token t+1 from tokens <= t
on packed blocks of text (``encoding.pack_blocks``); the checkpoint with the
lowest validation loss is kept, and throughput (tokens/s, model FLOP/s, MFU)
is reported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minitransfer.convert import load_pretrained, save_pretrained
from minitransfer.encoding import batch_indices, fit_batch_size, pack_blocks
from minitransfer.errors import TrainingError
from minitransfer.flops import device_peak_tflops, mfu, train_flops_per_token
from minitransfer.loop import LoopResult, Schedule, Validation, train_loop
from minitransfer.model import GPT2, NextWordHead
from minitransfer.optim import check_optimizer_settings, lr_values
from minitransfer.runs import RunFolder, Stopwatch, array_hash, run_key
from minitransfer.steps import batched, cast_for_compute, check_dtype, setup_training
from minitransfer.tokenizer import load_tokenizer


@dataclasses.dataclass
class PretrainConfig:
    steps: int = 2000
    batch_size: int = 32
    block_size: int = 128
    lr: float = 1e-3
    schedule: str = "cosine"
    warmup: float = 0.05
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    eval_every: int = 100
    val_blocks: int = 128  # validation blocks scored at each evaluation
    seed: int = 0
    parallel: str = "none"
    dtype: str = "float32"

    def __post_init__(self):
        check_dtype(self.dtype)
        check_optimizer_settings(self)


def next_word_loss(net: GPT2, batch, key):
    """Mean cross-entropy of predicting token t+1 from tokens <= t."""
    tokens = batch["tokens"]  # (B, T+1)
    logits = net(tokens[:, :-1], dropout_key=key).astype(jnp.float32)  # (B, T, V)
    return net.head.loss(logits, {"targets": tokens[:, 1:]})  # NextWordHead.loss


def make_block_loss(graphdef, dtype: str = "float32"):
    @jax.jit
    def block_loss(params, tokens):  # (B, T+1) -> (B,) mean next-word loss per block
        logits = nnx.merge(graphdef, cast_for_compute(params, dtype))(tokens[:, :-1]).astype(jnp.float32)  # (B, T, V)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean(-1)

    return block_loss


def block_perplexity(block_loss, params, blocks: np.ndarray, batch_size: int = 32) -> tuple[float, float]:
    """(mean next-word loss, perplexity = exp(loss)) over token blocks (N, T+1)."""
    losses = []
    for batch, n in batched({"tokens": blocks}, batch_size):
        losses.append(np.asarray(block_loss(params, batch["tokens"]))[:n])
    loss = float(np.concatenate(losses).mean())
    return loss, math.exp(loss)


def text_perplexity(model: GPT2, tokenizer, texts: list[str], block_size: int = 128) -> float:
    """Perplexity of ``model`` on ``texts`` packed into blocks (all held out)."""
    return model_perplexity(model, pack_blocks(texts, tokenizer, block_size, val_fraction=0.0).train)


def model_perplexity(model: GPT2, blocks: np.ndarray, dtype: str = "float32") -> float:
    """Perplexity of ``model`` on token ``blocks`` (N, T+1), computed in ``dtype``."""
    graphdef, params = nnx.split(model)
    return block_perplexity(make_block_loss(graphdef, dtype), params, blocks)[1]


def language_model_from(source, dropout: float = 0.0):
    """(model, tokenizer) of a pretrained checkpoint, ready for more next-word
    training: its weights and shape, with ``dropout`` in every dropout slot."""
    loaded = load_pretrained(source)
    if not isinstance(loaded.head, NextWordHead):
        raise TrainingError(
            f"{source}: holds a {type(loaded.head).__name__}; next-word training needs a language "
            f"model (a checkpoint with its next-word head)"
        )
    config = dataclasses.replace(loaded.config, embd_pdrop=dropout, attn_pdrop=dropout, resid_pdrop=dropout)
    model = GPT2.language_model(config)
    nnx.update(model, nnx.state(loaded, nnx.Param))
    return model, load_tokenizer(source)


@dataclasses.dataclass
class PretrainResult:
    out: Path | None
    best_step: int
    val_loss: float
    val_perplexity: float
    steps: int
    tokens_seen: int
    steps_per_second: float
    wall_seconds: float
    history: list[dict]
    steps_run: int = 0
    val_blocks: int = 0
    train_seconds: float = 0.0
    tokens_per_second: float | None = None  # this call's training throughput, steps after the first (if > 1)
    model_tflops_per_second: float | None = None
    mfu: float | None = None  # against the device's spec-sheet bf16 peak, where known
    tokens_per_second_all_in: float | None = None  # with compiling, validation, checkpoints (None: one step)
    batch_size_used: int | None = None  # the batch trained with: the one asked, or the data's size if that is smaller

    @classmethod
    def of_loop(cls, out, loop: LoopResult, cfg: PretrainConfig, wall_seconds: float, val_blocks: int, speed: dict):
        """A run's result from its loop's (``speed``: ``throughput``'s, or nothing where no step ran)."""
        best = {k: loop.best_metrics.get(k, float("nan")) for k in ("val_loss", "val_perplexity")}
        return cls(
            out,
            loop.best_step,
            *best.values(),
            loop.step,
            loop.step * cfg.batch_size * cfg.block_size,  # tokens seen
            loop.steps_per_second,
            wall_seconds,
            loop.history,
            loop.steps_run,
            val_blocks,
            loop.train_seconds,
            **speed,
            batch_size_used=cfg.batch_size,
        )


def pretrain(
    model: GPT2,
    blocks,
    tokenizer,
    cfg: PretrainConfig,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    identity: dict | None = None,
    names: dict | None = None,
) -> PretrainResult:
    """Next-word training of ``model`` (a GPT2 with its NextWordHead) on packed
    token ``blocks`` (``encoding.pack_blocks``). With ``out``, the checkpoint
    with the lowest validation loss is written there in Hugging Face format,
    and re-running resumes an interrupted run (``runs.py``). ``identity``:
    what else makes this run the one it is (the data's name, the starting
    weights' hash); ``names``: how messages call the settings where not by
    their own names (the adaptation's, see ``RunFolder``)."""
    # ---- the run: its settings and blocks -------------------------------------------
    watch = Stopwatch()
    if cfg.block_size > model.config.n_positions:
        raise TrainingError(f"`block_size` {cfg.block_size} exceeds n_positions={model.config.n_positions}")
    train_blocks, val_blocks = blocks.train, blocks.validation[: cfg.val_blocks]  # (N, T+1) token ids each
    if len(val_blocks) == 0:
        raise TrainingError("no validation blocks: give more text or a larger validation fraction")
    # the tokens themselves are the run's: the same file, edited, is other text; and the validation
    # blocks choose the checkpoint kept
    settings = {
        **{k: v for k, v in dataclasses.asdict(cfg).items() if k != "parallel"},
        "text_tokens": array_hash(train_blocks),
        "validation_tokens": array_hash(val_blocks),
    }
    key = run_key({**settings, **(identity or {}), "model": dataclasses.asdict(model.config)})
    run = RunFolder(out, key, settings, names=names)
    what = f"training blocks of {cfg.block_size} tokens"
    batch_size = fit_batch_size(cfg.batch_size, len(train_blocks), what, log, name=run.name("batch_size"))
    cfg = dataclasses.replace(cfg, batch_size=batch_size)

    # ---- optimizer and steps ----------------------------------------------------------
    graphdef, params = nnx.split(model)
    opt_state, parallel, train_step = setup_training(
        cfg, graphdef, params, next_word_loss, cfg.steps, model.config.n_layer
    )
    block_loss = make_block_loss(graphdef, cfg.dtype)

    def validate(params):
        loss, ppl = block_perplexity(block_loss, params, val_blocks)
        return {"val_loss": loss, "val_perplexity": ppl}

    def save_best(params, step, metrics):
        if out is not None:
            extra = {"pretrain_step": step, "val_perplexity": metrics["val_perplexity"]}
            save_pretrained(nnx.merge(graphdef, params), out, tokenizer, extra=extra)

    def get_batch(step):
        return {"tokens": train_blocks[batch_indices(step, cfg.batch_size, len(train_blocks), cfg.seed)]}

    # ---- train ----------------------------------------------------------------------------
    schedule = Schedule(cfg.steps, cfg.eval_every, lr_values(cfg, cfg.steps), cfg.seed)
    validation = Validation(
        validate,
        lambda new, old: new["val_loss"] < old["val_loss"],
        save_best,
        lambda m: {"val_ppl": f"{m['val_perplexity']:.1f}"},
    )
    how = {"progress": progress, "log": log, "parallel": parallel}
    loop = train_loop(params, opt_state, train_step, get_batch, schedule, validation, run, desc="pretrain", **how)
    nnx.update(model, loop.best_params)

    # ---- throughput -------------------------------------------------------------------------
    speed = throughput(loop, model.config, cfg) if loop.steps_run else {}
    if speed:
        log(speed_line(speed))
    return PretrainResult.of_loop(run.out, loop, cfg, watch.elapsed(), len(val_blocks), speed)


def throughput(loop: LoopResult, config, cfg: PretrainConfig) -> dict:
    """Tokens/s, model TFLOP/s and MFU of the steps after the first (the first
    compiles; validation and checkpoints are not training, and on a GPU they
    can outweigh a short run's steps), and tokens/s all in."""
    block_tokens = cfg.batch_size * cfg.block_size
    steady = loop.steady_step_seconds
    all_in = loop.steps_run * block_tokens / max(1e-9, loop.seconds["loop"])
    # after one step there is no separate steady rate: tokens_per_second is then the all-in one
    tok_s = (loop.steps_run - 1) * block_tokens / steady if steady > 0 else all_in
    fps = tok_s * train_flops_per_token(
        config.n_layer, config.n_embd, cfg.block_size, config.vocab_size, config.n_inner
    )
    return {
        "tokens_per_second": tok_s,
        "model_tflops_per_second": fps / 1e12,
        "mfu": mfu(fps, device_peak_tflops()),
        "tokens_per_second_all_in": all_in if steady > 0 else None,
    }


def speed_line(speed: dict) -> str:
    u, all_in = speed["mfu"], speed["tokens_per_second_all_in"]
    return (
        f"next-word training: {speed['tokens_per_second']:,.0f} tokens/s, "
        f"{speed['model_tflops_per_second']:.3f} model TFLOP/s"
        + (
            f", MFU {100 * u:.1f}% of the device's bf16 peak"
            if u is not None
            else " (MFU: no spec-sheet peak known for this device)"
        )
        + (
            f", over the steps after the first (all in, with compiling, validation and checkpoints: "
            f"{all_in:,.0f} tokens/s)"
            if all_in
            else ""
        )
    )


# ----------------------------------------------------------------------------
# The model card of a pretraining run
# ----------------------------------------------------------------------------


def pretrain_card(
    *,
    data: str,
    documents: int,
    result: PretrainResult,
    config,
    cfg: PretrainConfig,
    n_params: int,
    report: dict,
    command: str,
    init_from: str | None = None,
    cleaning: str | None = None,
) -> dict:
    """What a pretraining run records about itself (OUT/pretrain.json), for the model card."""
    r = result
    return {
        "data": data,
        "documents": documents,
        "tokens_seen": r.tokens_seen,
        "parameters": n_params,
        **({"cleaning": cleaning} if cleaning else {}),
        "config": dataclasses.asdict(config),
        "best_step": r.best_step,
        # the settings as trained: a batch larger than the data was fitted to it (the one asked is kept beside)
        "pretrain": {
            **dataclasses.asdict(cfg),
            "batch_size": r.batch_size_used or cfg.batch_size,
            **(
                {"batch_size_asked": cfg.batch_size}
                if r.batch_size_used and r.batch_size_used != cfg.batch_size
                else {}
            ),
        },
        "val_loss": r.val_loss,
        "val_perplexity": r.val_perplexity,
        "wall_seconds": r.train_seconds,
        "steps_per_second": r.steps / r.train_seconds if r.train_seconds else float("nan"),
        "report": report,
        "command": command,
        "val_blocks": r.val_blocks,
        "tokens_per_second": r.tokens_per_second,
        "model_tflops_per_second": r.model_tflops_per_second,
        "mfu": r.mfu,
        "tokens_per_second_all_in": r.tokens_per_second_all_in,
        **({"init_from": init_from, "init_card": read_card(init_from)} if init_from else {}),
        "hardware": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}".replace("  ", " "),
    }


def write_model_card(out: Path, card: dict) -> None:
    """OUT/pretrain.json (the record) and OUT/MODEL_CARD.md (the same, for people)."""
    (out / "pretrain.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(card))


def read_card(source) -> dict | None:
    """The pretrain.json of a local checkpoint we continue from (None for hub ids)."""
    p = Path(source) / "pretrain.json"
    return json.loads(p.read_text()) if p.exists() else None


def lineage(c: dict) -> list[dict]:
    """The cards of every stage that led to this checkpoint, the first stage
    first (``init_card`` links each to the one it continued from)."""
    stages = []
    while c:
        stages.insert(0, c)
        c = c.get("init_card")
    return stages


def model_card(c: dict) -> str:
    cfg = c["config"]
    rep = c["report"]
    stages = lineage(c)
    origin = (
        "trained from random initialisation"
        if not c.get("init_from")
        else f"whose next-word training continued from `{c['init_from']}`"
    )
    lines = [
        f"# {Path(c.get('name', 'model')).name if c.get('name') else 'A small GPT-2 pretrained with minitransfer'}",
        "",
        f"A GPT-2-architecture language model {origin}, with minitransfer's "
        "next-word objective, saved in Hugging Face GPT-2 format (`transformers.GPT2LMHeadModel` and "
        "`AutoTokenizer` load it; so does `minitransfer.load_pretrained`).",
        "",
        "| | |",
        "| --- | --- |",
        f"| data | `{c['data']}` ({c['documents']:,} documents) |",
        *([f"| cleaning | {c['cleaning']} |"] if c.get("cleaning") else []),
        f"| tokens seen | {c['tokens_seen']:,} |",
        f"| parameters | {c['parameters']:,} |",
        f"| shape | n_layer={cfg['n_layer']}, n_head={cfg['n_head']}, n_embd={cfg['n_embd']}, "
        f"vocab_size={cfg['vocab_size']}, n_positions={cfg['n_positions']} |",
        f"| steps | {c['pretrain']['steps']} x batch {c['pretrain']['batch_size']}"
        + (
            f" (asked {c['pretrain']['batch_size_asked']}: more than the data's blocks)"
            if "batch_size_asked" in c["pretrain"]
            else ""
        )
        + " x block "
        f"{c['pretrain']['block_size']}, peak lr {c['pretrain']['lr']:g} ({c['pretrain']['schedule']}) |",
        f"| validation perplexity | {c['val_perplexity']:.2f} (held-out {c['val_blocks']} blocks, "
        f"best at step {c['best_step']}) |",
    ]
    if c.get("init_from"):
        lines.append(started_from_row(c, stages))
    if rep:
        lines.append(
            f"| perplexity on a fixed slice | {rep['perplexity']:.2f} on the first {rep['n_texts']} texts of "
            f"`{rep['text']}` (blocks of {rep['block_size']}) |"
        )
    lines += [
        f"| wall time | {c['wall_seconds'] / 60:.1f} min ({c['steps_per_second']:.2f} steps/s) |",
        *([throughput_row(c)] if c.get("tokens_per_second") else []),
        f"| hardware | {c['hardware']} |",
        "",
        "Reproduce with:",
        "",
        "```bash",
        *([f"# {stages[0]['init_from']}: see its own model card"] if stages[0].get("init_from") else []),
        *[st.get("command", "# (command not recorded)") for st in stages],
        "```",
        "",
    ]
    return "\n".join(lines)


def started_from_row(c: dict, stages: list[dict]) -> str:
    """The model card's row for the checkpoint a continued run started from: what it had seen, and all
    the stages' tokens together."""
    prev = c.get("init_card") or {}
    row = f"| started from | `{c['init_from']}`"
    if not prev:  # a hub checkpoint, say: what it was trained on is not ours to count
        row += " (a checkpoint without a minitransfer model card: its training is not counted)"
    else:
        row += (
            f" ({prev['tokens_seen']:,} tokens on `{prev['data']}` in {prev['wall_seconds'] / 60:.1f} min; "
            f"validation perplexity {prev['val_perplexity']:.2f}); tokens seen in all {len(stages)} stages: "
            f"{sum(st['tokens_seen'] for st in stages):,}"
        )
        if stages[0].get("init_from"):  # the first stage we know of continued a card-less checkpoint
            row += f" (and whatever `{stages[0]['init_from']}` had seen)"
    return row + " |"


def throughput_row(c: dict) -> str:
    """The model card's throughput row: tokens/s and model TFLOP/s (and MFU, where the device's peak is known)."""
    return (
        f"| throughput | {c['tokens_per_second']:,.0f} tokens/s, {c['model_tflops_per_second']:.3f} model "
        f"TFLOP/s"
        + (
            f", MFU {100 * c['mfu']:.1f}% of the device's bf16 peak"
            if c.get("mfu")
            else " (no spec-sheet peak for this device, so no MFU)"
        )
        + (
            f", over the steps after the first (all in, with compiling, validation and checkpoints: "
            f"{c['tokens_per_second_all_in']:,.0f} tokens/s)"
            if c.get("tokens_per_second_all_in")
            else ""
        )
        + " |"
    )
