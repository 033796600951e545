"""The ``minitransfer`` command line: the parser (``minitransfer COMMAND
--help`` explains each option), the checks every command's arguments get,
and the entry point. How the command's process is set up (huge pages, the
compilation cache, deterministic GPU operations) is in ``process.py``; what
each subcommand does, in ``commands.py`` and ``training.py``; how what the
library says names the running command's options, in ``options.py``."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from minitransfer.assets import shipped_checkpoint
from minitransfer.cli.commands import (
    cmd_answer,
    cmd_chat,
    cmd_convert,
    cmd_data,
    cmd_evaluate,
    cmd_generate,
    cmd_lectures,
    cmd_next_word,
    cmd_playground,
    cmd_predict,
)
from minitransfer.cli.options import say
from minitransfer.cli.process import enable_compilation_cache, make_gpu_deterministic, restart_with_huge_pages
from minitransfer.cli.training import cmd_compare, cmd_finetune, cmd_pretrain


def _default_tokenizer() -> str:
    """The shipped checkpoint's tokenizer when present, else GPT-2's (packaged)."""
    p = shipped_checkpoint()
    return str(p) if p is not None else "gpt2"


DEFAULT_TOKENIZER = _default_tokenizer()


def _add_model_arg(p: argparse.ArgumentParser, required: bool = True):
    p.add_argument(
        "--model",
        required=required,
        metavar="SOURCE",
        help="a checkpoint directory (config.json + model.safetensors) or a Hugging Face hub id "
        "such as gpt2, distilgpt2 (hub ids need network)"
        + ("" if required else "; default: the shipped checkpoints/minigpt2-imdb"),
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow reading a pickled pytorch_model.bin (can run code: only for checkpoints you trust)",
    )


def _add_prompt_args(p: argparse.ArgumentParser, several: bool):
    from minitransfer.prompting import DEFAULT_PROMPTS

    if several:
        p.add_argument(
            "--prompt",
            action="append",
            metavar="TEXT",
            help="modes zero and prompt: the text after each example, after which the next-word head "
            "scores each label's word; give it several times for several prompts (zero's interval is "
            "over them; prompt fine-tunes with the first). Default: " + " | ".join(repr(x) for x in DEFAULT_PROMPTS),
        )
    else:
        p.add_argument(
            "--prompt",
            metavar="TEXT",
            help="mode prompt: the text after each example, after which the next-word head scores each "
            f"label's word (default {DEFAULT_PROMPTS[0]!r})",
        )
    p.add_argument(
        "--label-words",
        metavar="LABEL=WORD,...",
        help="modes zero and prompt: one word per label, each a single token of the model's tokenizer, "
        "e.g. negative=terrible,positive=great (default: terrible / okay / great for negative / "
        "neutral / positive, and for 0 / 1)",
    )


def _add_mode_option_args(p: argparse.ArgumentParser, D):
    p.add_argument(
        "--unfreeze",
        type=int,
        default=D.unfreeze,
        metavar="K",
        help="mode top: the last K blocks train, with the final layer norm and the head (default %(default)s)",
    )
    p.add_argument(
        "--lora-rank", type=int, default=D.lora_rank, help="mode lora: the adapters' rank (default %(default)s)"
    )
    p.add_argument(
        "--lora-alpha",
        type=float,
        default=D.lora_alpha,
        help="mode lora: the adapters' output is scaled by alpha / rank (default %(default)g)",
    )


def _add_device_args(p: argparse.ArgumentParser):
    p.add_argument(
        "--parallel",
        choices=["none", "data", "fsdp"],
        default="none",
        help="spread training over all local devices: data (batch split, weights replicated) or fsdp "
        "(weights and optimizer state split too); default none. Set MINITRANSFER_MULTIHOST=1 on every "
        "host of a TPU pod slice.",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="compute precision. bfloat16 is mixed precision for GPUs/TPUs: matmuls and activations in "
        "bfloat16, weights, optimizer state, softmax and loss in float32 (on most CPUs it is slower). "
        "Default float32.",
    )


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "tweets", default_help: str | None = None):
    p.add_argument(
        "--data" if default is not None else "spec",
        **({"default": default} if default is not None else {}),
        metavar="SPEC",
        help=(default_help or "")
        + (
            "tweets (the default: a labelled tweet corpus that ships with a dependency) | "
            if default and not default_help
            else "tweets (a labelled tweet corpus that ships with a dependency) | "
        )
        + "tfds:NAME[/CONFIG] | jsonl:PATH | csv:PATH | tsv:PATH; PATH is one file (split 80/10/10) or a "
        "directory with train.* and test.* (a path ending in .jsonl, .csv or .tsv needs no prefix)",
    )
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--label-field", default="label", help="field holding the label (default: label)")


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minitransfer",
        description="Transfer learning in NLP with a readable pure-JAX/Flax GPT-2: load pretrained "
        "GPT-2 weights, swap the next-word head for a task head, fine-tune, and compare with "
        "training from scratch.",
        epilog="Compiled programs are kept in JAX's compilation cache, ~/.cache/minitransfer/jax/<processor> "
        "(under $XDG_CACHE_HOME where set), so that a later command with the same shapes does not compile them "
        "again; MINITRANSFER_COMPILATION_CACHE=DIR keeps them elsewhere, =0 not at all.",
    )
    from minitransfer import __version__

    parser.add_argument("--version", action="version", version=f"minitransfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # name -> the command's own parser (main() reports with it)

    p = sub.add_parser(
        "convert",
        help="convert a Hugging Face GPT-2 checkpoint (dir or hub id) and save it back in HF format",
        description="Load a GPT-2 checkpoint into minitransfer's Flax model (checking every tensor's "
        "name and shape) and write it as config.json + model.safetensors (+ tokenizer) that "
        "transformers loads too. Use it to turn a pytorch_model.bin into safetensors, or to "
        "fetch a hub model once for offline use.",
    )
    p.add_argument("source", help="checkpoint directory or hub id (gpt2, distilgpt2, ...)")
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--tokenizer", help="take the tokenizer from this directory instead of SOURCE")
    p.add_argument("--allow-pickle", action="store_true", help="allow reading pytorch_model.bin (pickle)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "next-word",
        help="show the most likely next tokens after a prompt, with probabilities",
        description="Run the model on PROMPT and print the top-k candidates for the next token with "
        "the model's probability for each: what a language model actually predicts.",
    )
    _add_model_arg(p, required=False)
    p.add_argument("--prompt", required=True, help="text to continue")
    p.add_argument("--top-k", type=int, default=5, help="how many candidates to show (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_next_word)

    p = sub.add_parser(
        "data",
        help="describe a dataset: examples per split and label, token lengths, truncation",
        description="Load a data SPEC exactly as finetune would and print examples per split and per "
        "label, what was repaired or dropped, token-length percentiles, and how many examples "
        "--max-len would truncate.",
    )
    _add_data_args(p, default=None)
    p.add_argument(
        "--task",
        choices=["classify", "chat"],
        default="classify",
        help="classify (labelled texts; the default) or chat (conversations: SPEC is chatterbot[:LANGUAGE] "
        "or jsonl:PATH; counts conversations, messages, replies and words)",
    )
    p.add_argument("--max-len", type=int, default=128, help="sequence length to check (default 128)")
    p.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        help="checkpoint directory or hub id whose tokenizer to use, or a directory with OpenAI's "
        "encoder.json + vocab.bpe (default: the shipped checkpoint's, else gpt2)",
    )
    p.set_defaults(func=cmd_data)

    from minitransfer.adapt import AdaptConfig
    from minitransfer.compare import CompareConfig
    from minitransfer.model import NAMED_CONFIGS
    from minitransfer.modes import MODES, mode_help
    from minitransfer.tasks import TASKS
    from minitransfer.train import TrainConfig

    D = TrainConfig()  # the defaults below are the library's own
    p = sub.add_parser(
        "finetune",
        help="train a task head (classifier, question answering, chat): from scratch, as a probe, fully "
        "fine-tuned, or after next-word adaptation to the task's text (adapt)",
        description="Put a task head on a GPT-2 backbone and train it. Tasks: "
        + "; ".join(f"{t.name}: {t.help}" for t in TASKS.values())
        + ". Modes: "
        + mode_help()
        + ". scratch takes its architecture from --model's config or --config. Writes OUT/best "
        "(best validation accuracy, F1 for qa, lowest reply perplexity for chat), OUT/metrics.jsonl and "
        "OUT/result.json; re-running the same command resumes an interrupted run.",
    )
    _add_model_arg(p, required=False)
    p.add_argument("--task", choices=list(TASKS), default="classify", help="default classify")
    p.add_argument(
        "--mode",
        choices=list(MODES),
        help=mode_help() + f" (default {D.mode}; full for --task chat, "
        f"whose head reads every position, which a frozen backbone's cached features cannot give)",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        default=AdaptConfig.steps,
        help="mode adapt: next-word steps on the task's training texts, written to OUT/adapted (default %(default)s)",
    )
    _add_data_args(p)
    p.set_defaults(data=None)  # the task's own default (tweets; chatterbot for --task chat): cmd_finetune
    for a in p._actions:
        if a.dest == "data":
            a.help += (
                "; with --task chat: chatterbot[:LANGUAGE] (the default there: the conversations of the "
                'chatterbot-corpus package) or jsonl:PATH with {"messages": [...]} rows'
            )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="how a single data file is split into train/validation/test (default 0; the same value "
        "as compare --split-seed draws the same split; data with its own test split keeps it). "
        "Recorded with the model, so evaluate scores it on that draw's test set",
    )
    p.add_argument(
        "--out", required=True, help="run directory (best checkpoint, logs; the resumable state while it runs)"
    )
    p.add_argument(
        "--config", choices=sorted(NAMED_CONFIGS), help="scratch mode: a named architecture instead of --model's config"
    )
    p.add_argument("--tokenizer", help="tokenizer source, if not --model's")
    p.add_argument(
        "--labels",
        default=D.labels,
        help="label budget: a seeded subset of N training examples, stratified by class for classify (default: all)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="optimizer steps")
    g.add_argument("--epochs", type=float, help=f"epochs over the (budgeted) training set (default {D.epochs:g})")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="default %(default)s")
    p.add_argument(
        "--lr",
        type=float,
        help="peak learning rate (default: "
        + ", ".join(f"{m.name} {m.lr:g}" for m in MODES.values())
        + "; for small models, n_embd <= 256: "
        + ", ".join(f"{m.name} {m.lr_small:g}" for m in MODES.values())
        + ")",
    )
    p.add_argument(
        "--schedule", choices=["linear", "cosine"], default=D.schedule, help="decay after warmup (default %(default)s)"
    )
    p.add_argument("--warmup", type=float, default=D.warmup, help="warmup fraction of the steps (default %(default)s)")
    p.add_argument(
        "--weight-decay", type=float, default=D.weight_decay, help="AdamW weight decay (default %(default)s)"
    )
    p.add_argument(
        "--lr-decay-per-layer",
        type=float,
        default=D.lr_decay_per_layer,
        help="full and adapt modes (a pretrained backbone that trains): each lower layer's lr is multiplied "
        "by this (ULMFiT used 1/2.6; default %(default)s)",
    )
    _add_mode_option_args(p, D)
    p.add_argument("--max-len", type=int, default=D.max_len, help="tokens per example (default %(default)s)")
    p.add_argument(
        "--pooling",
        choices=["last", "mean"],
        default=D.pooling,
        help="how a classification head summarises a sequence (default: last real token)",
    )
    p.add_argument(
        "--no-head-bias",
        dest="head_bias",
        action="store_false",
        help="a classification head without bias: with --pooling last, the head transformers' "
        "GPT2ForSequenceClassification computes, so the saved model opens there as the same "
        "classifier (default: with bias, which transformers cannot load)",
    )
    p.add_argument("--eval-every", type=int, help="validate every N steps (default: 10 times per run)")
    p.add_argument(
        "--val-examples",
        type=int,
        default=D.val_examples,
        help="validate on a fixed subset of this many examples (0: all; default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=D.seed,
        help="seed for init, label budget, data order, dropout (default %(default)s)",
    )
    p.add_argument("--new-head", action="store_true", help="replace a fine-tuned checkpoint's head with a fresh one")
    _add_prompt_args(p, several=False)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "evaluate",
        help="the metrics of a fine-tuned model on a data split (accuracy; exact match and F1 for qa; reply "
        "perplexity and next-token accuracy for chat)",
        description="Evaluate a model saved by finetune (e.g. OUT/best) on SPEC's split; its head says the task.",
    )
    p.add_argument("--model", required=True, help="a fine-tuned model directory (e.g. RUN/best)")
    _add_data_args(
        p, default_help="default: the data the model was fine-tuned on, as its config.json records it (else tweets). "
    )
    p.set_defaults(data=None, text_field=None, label_field=None)  # as the model's config.json records them
    for a in p._actions:
        if a.dest in ("text_field", "label_field"):
            a.help = a.help.replace("(default: ", "(default: the field the model was fine-tuned on, else ")
    p.add_argument(
        "--split-seed",
        type=int,
        help="how a single data file is split into train/validation/test (default: as the model was "
        "fine-tuned, e.g. by compare --split-seed; else 0)",
    )
    p.add_argument(
        "--task",
        choices=list(TASKS),
        help="the task to score on (default: the one the model's head was fine-tuned for); with a language "
        "model (no fine-tuned head), --task chat scores its replies as they are, before any chat "
        "fine-tuning (--data default: chatterbot)",
    )
    p.add_argument("--split", choices=["train", "validation", "test"], default="test", help="default test")
    p.add_argument("--max-len", type=int, help="default: the max_len the model was trained with")
    p.add_argument(
        "--all-validation",
        action="store_true",
        help="with --split validation: use the whole split, not the subset training validated on",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="label new texts with a fine-tuned classifier: each text's label and per-label probabilities, as JSON "
        "lines on stdout (or --out FILE.jsonl / FILE.csv)",
        description="Label unlabelled texts with a classifier saved by `minitransfer finetune --task classify` "
        "(RUN/best). --data is a .jsonl file (the text in --text-field), a .csv/.tsv file with a header (the same "
        "field as a column) or a .txt file (one text per line), also gzipped. Each non-empty text gets one row: "
        "its line in the input, the text, the likeliest label, every label's probability and whether it was "
        "truncated (texts longer than the model's max_len are cut as evaluate cuts them, and counted). Empty texts "
        "are skipped and reported by line. The rows go to stdout as JSON lines unless --out names a .jsonl or "
        ".csv file; the summary goes to stderr. See docs/predict.md.",
    )
    p.add_argument("--model", required=True, help="a fine-tuned classifier (e.g. RUN/best)")
    p.add_argument("--data", required=True, metavar="FILE", help="texts to label: .jsonl, .csv, .tsv or .txt (.gz too)")
    p.add_argument(
        "--text-field",
        default="text",
        help="the field (jsonl) or column (csv) holding the text (default: text; a .txt file is one text per line)",
    )
    p.add_argument(
        "--out",
        dest="out_file",
        metavar="FILE",
        help="write the rows to FILE: .jsonl (JSON lines) or .csv (a prob_LABEL column per label); "
        "default: JSON lines on stdout",
    )
    p.add_argument("--max-len", type=int, help="tokens read per text (default: the max_len the model was trained with)")
    p.add_argument("--batch-size", type=int, help="texts per batch (default: 32 on a CPU, 64 on an accelerator)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "answer",
        help="answer a question from a context with a question-answering model (finetune --task qa)",
        description="Print the stretch of --context that a span model (finetune --task qa) picks as the answer.",
    )
    p.add_argument("--model", required=True, help="a model fine-tuned with --task qa (e.g. RUN/best)")
    p.add_argument("--question", required=True)
    p.add_argument("--context", required=True, help="the text that holds the answer")
    p.set_defaults(func=cmd_answer)

    from minitransfer.pretrain import PretrainConfig

    P = PretrainConfig()  # the defaults below are the library's own
    p = sub.add_parser(
        "pretrain",
        help="next-word pretraining of a GPT-2 on your text, from random weights or a checkpoint (--init-from)",
        description="Train a GPT-2-architecture model on the next-word objective, from random weights (a shape "
        "from --config or --n-layer/--n-head/--n-embd) or from a checkpoint (--init-from: ULMFiT's middle "
        "stage by hand), and write "
        "a Hugging Face-format checkpoint (config.json, model.safetensors, tokenizer, MODEL_CARD.md) "
        "that every other command and transformers load. Re-running the same command resumes.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="text to learn from: jsonl:/csv:/tsv:/txt:PATH, tweets or tfds:NAME (train split only)",
    )
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS), help="a named shape (or give --n-layer etc.)")
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-head", type=int)
    p.add_argument("--n-embd", type=int)
    p.add_argument("--n-positions", type=int, help="default: the config's, at least --block-size")
    p.add_argument(
        "--init-from",
        metavar="SOURCE",
        help="continue next-word training from this pretrained checkpoint (directory or hub id): its "
        "weights, shape and tokenizer (ULMFiT's second stage when --data is the task's text; a "
        "labelled spec contributes its training split's texts only)",
    )
    p.add_argument(
        "--tokenizer",
        default="train:8192",
        help="train:VOCAB_SIZE (learn a byte-level BPE on the text; default train:8192), or a "
        "checkpoint/tokenizer directory or hub id (gpt2) to reuse its vocabulary",
    )
    p.add_argument("--steps", type=int, default=P.steps, help="default %(default)s")
    p.add_argument(
        "--block-size", type=int, default=P.block_size, help="tokens per training sequence (default %(default)s)"
    )
    p.add_argument("--batch-size", type=int, default=P.batch_size, help="default %(default)s")
    p.add_argument(
        "--lr", type=float, default=P.lr, help=f"peak learning rate, {P.schedule} decay (default %(default)g)"
    )
    p.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout while pretraining (default 0: one pass over the data rarely overfits)",
    )
    p.add_argument("--eval-every", type=int, default=P.eval_every, help="default %(default)s")
    p.add_argument("--val-fraction", type=float, default=0.02, help="texts held out for validation (default 0.02)")
    p.add_argument(
        "--html-line-breaks",
        action="store_true",
        help="turn HTML line breaks (<br />, as in IMDB's reviews) into newlines before training, in "
        "--data and --report-text alike, so that the model does not learn to write markup; the model "
        "card records it",
    )
    p.add_argument(
        "--report-text",
        metavar="JSONL",
        help="also report perplexity on the first --report-n texts of this jsonl(.gz) file",
    )
    p.add_argument("--report-n", type=int, default=200, help="how many texts of --report-text (default 200)")
    p.add_argument(
        "--seed",
        type=int,
        default=P.seed,
        help="seed for the initial weights, the validation texts, the order of blocks and dropout (default "
        "%(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per evaluation instead)")
    p.add_argument("--command-line", help=argparse.SUPPRESS)
    _add_device_args(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser(
        "generate",
        help="continue a prompt, sampling one token at a time (with a key/value cache)",
        description="Generate text after PROMPT. Each new token is sampled from the model's next-word "
        "distribution (reshaped by --temperature, --top-k, --top-p), or the likeliest with --greedy.",
    )
    _add_model_arg(p, required=False)
    p.add_argument("--prompt", required=True, help="text to continue (at least one token)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="default 40")
    p.add_argument("--temperature", type=float, default=0.8, help="default 0.8")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens (default: no limit)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--num-samples", type=int, default=1, help="continuations to draw (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed + i (default 0)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "chat",
        help="talk with a model in the terminal (best one fine-tuned with finetune --task chat)",
        description="A conversation in the terminal: type a message, the reply streams token by token (sampled "
        "as generate samples, with a key/value cache) and ends at the model's end-of-text or a role marker. The "
        "conversation is kept within the model's context: the oldest messages are dropped when it is full, "
        "and that is said. An empty line, end of input (Ctrl-D) or Ctrl-C ends it.",
    )
    _add_model_arg(p, required=False)
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=40,
        help="the longest reply, in tokens (default 40); that many positions stay free for it",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="sampling temperature: below 1 sharper, above 1 more varied (default 0.8)",
    )
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens (default: no limit)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--seed", type=int, default=0, help="seed of the first reply; reply i uses seed + i (default 0)")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser(
        "compare",
        help="scratch vs transfer: fine-tune every budget x mode x seed and plot accuracy curves",
        description="The transfer-learning experiment in one command. For each label budget, mode ("
        + mode_help()
        + ") and seed, fine-tune and evaluate on the fixed test split; all modes see "
        "the same labelled examples at a given budget and seed, so each mode's gain over scratch (and "
        "adapt's over full: the middle stage on its own) is a paired difference, reported with its 95% "
        "confidence interval over seeds. Mode adapt's "
        "next-word stage runs once and is reused by every budget and seed. Writes results.csv, "
        "summary.json, summary.md, curves.png and budget.png into --out; re-running skips finished runs. "
        "The defaults run offline on a laptop CPU in about a quarter of an hour. "
        "With --task qa: budgets of questions, scored by F1 and exact match, each paired the same way. "
        "With --task chat: modes (default scratch,full) x seeds on the whole training set, scored by test reply "
        "perplexity (lower is better) beside the pretrained model's own (zero-shot), each mode's ratio to scratch "
        "paired by seed with its 95% interval; writes results.csv, summary.json and summary.md.",
    )
    _add_model_arg(p, required=False)
    p.add_argument(
        "--task",
        choices=["classify", "qa", "chat"],
        default="classify",
        help="classify (the default: label budgets, accuracy), qa (budgets of questions, F1 and exact "
        "match; --data jsonl:DIR or tfds:squad, needed) or chat (conversations, --data default "
        "chatterbot; --budgets, --pooling and the field options do not apply)",
    )
    _add_data_args(p)
    p.set_defaults(data=None)  # tweets; chatterbot for --task chat (cmd_compare)
    p.add_argument(
        "--budgets",
        help="comma-separated label budgets, 'all' for the whole train split "
        "(default " + ",".join(map(str, CompareConfig().budgets)) + "; --quick: 100,300)",
    )
    p.add_argument(
        "--modes",
        help="comma-separated, from "
        + ",".join(MODES)
        + " (default "
        + ",".join(CompareConfig().modes)
        + "; zero is scored once per --prompt, at 0 labels)",
    )
    p.add_argument("--seeds", type=int, help=f"seeds per budget and mode (default {CompareConfig.seeds}; --quick: 2)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the seeds are FIRST_SEED, FIRST_SEED+1, ... (default 0); other seeds replicate a compare "
        "with fresh labelled subsets, initialisations and dropout",
    )
    p.add_argument(
        "--split-seed",
        type=int,
        default=0,
        help="how a single data file is split into train/validation/test (default 0); another value "
        "draws a mostly new test set, e.g. to check a result on examples earlier choices did not "
        "look at (data with its own test split keeps it)",
    )
    p.add_argument(
        "--adapt-steps",
        type=int,
        help=f"mode adapt: next-word steps on the task's training texts (default {AdaptConfig.steps})",
    )
    p.add_argument(
        "--steps",
        type=int,
        help=f"steps per run (default: 3 epochs, between {CompareConfig.min_steps} and {CompareConfig.max_steps}; "
        f"frozen-backbone modes at least {CompareConfig.frozen_min_steps})",
    )
    p.add_argument("--max-len", type=int, help="tokens per example (default 64)")
    p.add_argument("--batch-size", type=int, help="default 32")
    p.add_argument("--pooling", choices=["last", "mean"], help="how every head summarises a text (default mean)")
    p.add_argument(
        "--out",
        help="output directory (default runs/compare; with --quick, runs/compare-quick, so that "
        "a smoke run and the full one keep their own results; with --task chat, "
        "runs/compare-chat and runs/compare-chat-quick)",
    )
    _add_mode_option_args(p, D)
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep each run's best model in OUT/runs/NAME/best (default: metrics only; a checkpoint per run "
        "adds up: with GPT-2 124M the default grid's take tens of GB)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few minutes on a laptop CPU (budgets 100,300, 2 seeds, 20 steps per run, 30 "
        "adaptation steps, 200 validation examples): it "
        "checks the pipeline, not transfer; with 2 seeds a 95%% interval is 12.7 standard errors wide "
        "on each side, so expect no difference to be a claim",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per evaluation instead)")
    _add_prompt_args(p, several=True)
    _add_device_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "playground",
        help="a local web page: watch the next-word head (and a classifier) work as you type",
        description="Serve a page at http://localhost:PORT/ with a text box: as you type, the next-word "
        "head's top 10 candidates appear as bars (Tab accepts one), Continue streams a sampled "
        "continuation, and with --classifier a fine-tuned classification head shows its class "
        "probabilities for the same text. JSON endpoints under /api/ (docs/playground.md). Works offline.",
    )
    _add_model_arg(p, required=False)
    p.add_argument(
        "--classifier",
        metavar="DIR",
        help="a fine-tuned classifier (e.g. runs/full/best from minitransfer finetune) for the second panel",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)",
    )
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.set_defaults(func=cmd_playground)

    p = sub.add_parser(
        "lectures",
        help="run every lecture and write the lectures as a static HTML site (the book)",
        description="Execute lectures/NN_*.py in order in a fresh Python kernel each and write one HTML "
        "page per lecture (source highlighted, output and figures embedded) plus index.html with the "
        "reading order, into --out (--out/_work/ keeps each executed notebook, NN_*.ipynb, and the files its "
        "lecture wrote). Opens offline. Needs the lectures extra: pip install -e '.[lectures]'.",
    )
    p.add_argument("--out", default="site", help="output folder (default site/)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="tiny settings (MINITRANSFER_FAST=1): minutes instead of a quarter of an hour",
    )
    p.add_argument("--only", nargs="+", metavar="NN", help="build only these lectures, e.g. --only 02 07")
    p.set_defaults(func=cmd_lectures)
    # Options are spelt out: an abbreviation that works today (--lab for --labels) would break, or change
    # meaning, when an option sharing its prefix is added; a cut-short option gets a "did you mean" instead
    for p in (parser, *sub.choices.values()):
        p.allow_abbrev = False
    for p in sub.choices.values():  # what the library says, the command says in its options (cli.options.say)
        p.set_defaults(command_parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's own parser, so that its usage (its options) is what is shown
        sub = parser.commands[args.command]
        sub.error(
            f"unrecognized arguments: {' '.join(unknown)}{option_guesses(sub, unknown)} (see minitransfer "
            f"{args.command} --help)"
        )
    if getattr(args, "parallel", "none") != "none":
        from minitransfer.parallel import maybe_initialize_distributed

        maybe_initialize_distributed()
    from minitransfer.errors import BookError, CheckpointError, DataError, TrainingError

    if args.command == "compare" and args.out is None:  # its default, here: before the checks of --out below
        args.out = ("runs/compare" if args.task == "classify" else f"runs/compare-{args.task}") + (
            "-quick" if args.quick else ""
        )
    bad = check_arguments(args)
    if bad:
        print(f"minitransfer {args.command}: error: {bad}", file=sys.stderr)
        return 2
    out = getattr(args, "out", None)
    if out and Path(out).exists() and not Path(out).is_dir():  # before minutes of work, not after
        print(
            f"minitransfer {args.command}: error: --out {out} is a file; --out names a directory to write "
            f"into (it is created if missing)",
            file=sys.stderr,
        )
        return 2
    if out:  # the folder to be created: under a directory this process may write in
        above = next((q for q in Path(out).absolute().parents if q.exists()), None)
        why = (
            "is a file"
            if above is not None and not above.is_dir()
            else "is not writable"
            if above is not None and not os.access(above, os.W_OK | os.X_OK)
            else None
        )
        if not Path(out).exists() and why:
            print(
                f"minitransfer {args.command}: error: --out {out}: {above} {why}, so the folder cannot be created",
                file=sys.stderr,
            )
            return 2
    try:
        return args.func(args)
    except OSError as e:  # FileNotFoundError, PermissionError, a full disk...: its message names the path
        print(f"minitransfer {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, DataError, TrainingError, BookError, ValueError) as e:
        say(args, sys.stderr)(f"minitransfer {args.command}: error: {e}")  # its settings as the command's options
        return 2
    except RuntimeError as e:  # the device's memory ran out: which options size it, not 25 lines of XLA
        said = out_of_memory_text(e, args)
        if said is None:
            raise
        print(f"minitransfer {args.command}: error: {said}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a line that says what survives, not a traceback
        from minitransfer import interrupt

        interrupt.clear()  # acted on
        print(f"\nminitransfer {args.command}: interrupted" + RESUMES.get(args.command, ""), file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it


def option_guesses(parser: argparse.ArgumentParser, unknown: list[str]) -> str:
    """'; did you mean --max-len?' for misspelt or cut-short options (--max_len, --lables,
    --max), or ''."""
    import difflib

    known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    guesses = []
    for word in unknown:
        if word.startswith("--"):
            name = word.split("=", 1)[0].replace("_", "-")
            started = [o for o in known if o.startswith(name)]  # cut short: every option it begins
            close = started if 0 < len(started) <= 3 else difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            guesses += [c for c in close if c not in guesses]
    return f"; did you mean {' / '.join(guesses)}?" if guesses else ""


# the options that size what a command holds in memory at once
MEMORY_OPTIONS = ("batch_size", "eval_batch_size", "max_len", "block_size", "num_samples", "max_new_tokens")


def out_of_memory_text(e: BaseException, args) -> str | None:
    """For JAX's out-of-memory error (RESOURCE_EXHAUSTED): a message naming
    the device, what was asked for, and the options that size it; None for
    any other error."""
    if type(e).__name__ not in ("JaxRuntimeError", "XlaRuntimeError") or "RESOURCE_EXHAUSTED" not in str(e):
        return None
    import jax

    d = jax.devices()[0]
    asked = re.search(r"allocating (\d+) bytes", str(e))
    options = [
        f"--{k.replace('_', '-')} {getattr(args, k)}" for k in MEMORY_OPTIONS if getattr(args, k, None) is not None
    ]
    return (
        f"out of memory on the {d.platform} device ({d.device_kind})"
        + (f": one buffer of {int(asked[1]) / 1e9:.1f} GB was asked for" if asked else "")
        + (f"; lower {' or '.join(options)}" if options else "; give it smaller inputs")
        + ("; --dtype bfloat16 halves the activations" if getattr(args, "dtype", None) == "float32" else "")
        + f" (XLA said: {str(e).splitlines()[0][:200]})"
    )


SEED_MAX = 2**31 - 1  # a seed becomes a JAX key (32 bits; larger ones collide) and numpy's generator


def check_arguments(args) -> str | None:
    """What every command's arguments must be, whatever the command: text
    that is valid UTF-8 (bytes that are not come from the shell as lone
    surrogates, which the tokenizer cannot take), and seeds in range. The
    first problem found, as a message naming the option; None if none."""
    for name, value in vars(args).items():
        shown = POSITIONAL_NAMES.get(name, f"--{name.replace('_', '-')}")
        for text in value if isinstance(value, list) else [value]:  # (--only takes several)
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                c = text[e.start]
                what = (
                    f"byte 0x{ord(c) - 0xDC00:02x}"
                    if 0xDC80 <= ord(c) <= 0xDCFF  # an undecodable byte
                    else f"a lone surrogate \\u{ord(c):04x}"
                )
                return (
                    f"{shown} is not valid UTF-8 ({what} at character {e.start}); the shell passed it in "
                    f"another encoding: use UTF-8 text"
                )
        if name in ("seed", "first_seed", "split_seed") and isinstance(value, int) and not 0 <= value <= SEED_MAX:
            return f"{shown} must be a whole number from 0 to {SEED_MAX:,}, got {value}"
    return None


# positional arguments, named in messages as --help shows them
POSITIONAL_NAMES = {"source": "source", "spec": "SPEC", "out_file": "--out"}


# what re-running a command after Ctrl-C does, for those that keep state on disk
RESUMES = {
    "finetune": "; re-run the same command to resume (from its last evaluation, if it reached one)",
    "pretrain": "; re-run the same command to resume (from its last evaluation, if it reached one)",
    "compare": "; re-run the same command to go on: finished runs are kept (with mode adapt, so is the "
    "adaptation, from its last evaluation); the interrupted run starts over",
}


# Commands whose speed does not come from big training steps: no restart, so
# they start sooner (the playground's first answer, --help, data counts).
NO_RESTART = {"playground", "chat", "data", "next-word", "answer", "--help", "-h"}


def entry() -> int:
    """The ``minitransfer`` console script: ``main()`` with huge pages, JAX's
    compilation cache and deterministic GPU operations on (``main()`` alone,
    as the tests call it, has none of them; the tests' conftest asks for
    deterministic operations itself)."""
    from minitransfer import interrupt

    interrupt.install()  # first: a Ctrl-C from here on stops the command (see interrupt.py)
    try:
        if not (len(sys.argv) > 1 and sys.argv[1] in NO_RESTART):
            restart_with_huge_pages()
        make_gpu_deterministic()
        enable_compilation_cache()
        return main()
    except KeyboardInterrupt:  # before a command's own handling starts (its imports): one line, not a traceback
        print("\nminitransfer: interrupted", file=sys.stderr)
        return 130
