"""The ``minitransfer`` command line. Each subcommand is a thin layer over the
package's functions; ``minitransfer COMMAND --help`` explains each one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


# The tokenizer used when a command needs one and none is named. Hub id: needs
# network the first time.
DEFAULT_TOKENIZER = "gpt2"


def _add_model_arg(p: argparse.ArgumentParser, required: bool = True):
    p.add_argument(
        "--model",
        required=required,
        metavar="SOURCE",
        help="a checkpoint directory (config.json + model.safetensors) or a Hugging Face hub id "
        "such as gpt2, distilgpt2 (hub ids need network)",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow reading a pickled pytorch_model.bin (can run code: only for checkpoints you trust)",
    )


# ----------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------


def cmd_convert(args) -> int:
    from minitransfer.convert import load_pretrained, load_tokenizer, save_pretrained
    from minitransfer.model import num_params

    t0 = time.perf_counter()
    model = load_pretrained(args.source, allow_pickle=args.allow_pickle)
    tokenizer = None
    tok_source = args.tokenizer or args.source
    try:
        tokenizer = load_tokenizer(tok_source)
    except Exception as e:  # a checkpoint without tokenizer still converts
        if args.tokenizer:
            raise
        print(f"note: no tokenizer saved ({e})", file=sys.stderr)
    out = save_pretrained(model, args.out, tokenizer=tokenizer)
    c = model.config
    print(
        f"converted {args.source} -> {out}\n"
        f"  GPT-2 n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} "
        f"vocab={c.vocab_size} positions={c.n_positions}, {num_params(model.backbone):,} parameters\n"
        f"  files: {', '.join(sorted(p.name for p in out.iterdir()))}\n"
        f"  took {time.perf_counter() - t0:.1f} s"
    )
    return 0


# ----------------------------------------------------------------------------
# next-word
# ----------------------------------------------------------------------------


def next_word_candidates(model, tokenizer, prompt: str, top_k: int = 5) -> list[dict]:
    """The ``top_k`` most likely next tokens after ``prompt`` with their probabilities."""
    import jax
    import numpy as np

    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty after tokenisation; give at least one word")
    n_pos = model.config.n_positions
    if len(ids) > n_pos:
        raise ValueError(f"the prompt is {len(ids)} tokens; this model reads at most {n_pos}")
    logits = model(np.asarray([ids], dtype=np.int32))[0, -1]  # (V,): scores for the next token
    probs = np.asarray(jax.nn.softmax(logits))  # (V,), sums to 1
    top = np.argsort(-probs, kind="stable")[:top_k]
    return [
        {"rank": r + 1, "id": int(i), "token": tokenizer.decode([int(i)]), "prob": float(probs[i])}
        for r, i in enumerate(top)
    ]


def cmd_next_word(args) -> int:
    from minitransfer.convert import load_pretrained, load_tokenizer

    model = load_pretrained(args.model, allow_pickle=args.allow_pickle)
    tokenizer = load_tokenizer(args.model)
    cands = next_word_candidates(model, tokenizer, args.prompt, args.top_k)
    if args.json:
        print(json.dumps({"prompt": args.prompt, "candidates": cands}, indent=2))
        return 0
    print(f"{args.prompt!r} ... what comes next? ({args.model})")
    width = max(len(repr(c["token"])) for c in cands)
    for c in cands:
        bar = "█" * max(1, round(c["prob"] * 40)) if c["prob"] >= 0.0125 else "▏"
        print(f"  {c['rank']:>2}. {repr(c['token']):<{width}}  {100 * c['prob']:6.2f}%  {bar}")
    return 0


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------


def _add_data_args(p: argparse.ArgumentParser, default: str | None = "tweets"):
    p.add_argument(
        "--data" if default is not None else "spec",
        **({"default": default} if default is not None else {}),
        metavar="SPEC",
        help="tweets (offline default) | tfds:NAME[/CONFIG] | jsonl:PATH | csv:PATH | tsv:PATH; "
        "PATH is one file (split 80/10/10) or a directory with train.* and test.*",
    )
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--label-field", default="label", help="field holding the label (default: label)")


def _percentiles(x):
    import numpy as np

    q = np.percentile(x, [50, 90, 95, 99, 100]).round().astype(int)
    return "median {} | p90 {} | p95 {} | p99 {} | max {}".format(*q)


def cmd_data(args) -> int:
    import numpy as np

    from minitransfer.data import load_dataset, token_lengths

    d = load_dataset(args.spec, text_field=args.text_field, label_field=args.label_field)
    print(f"{args.spec}: {d.num_classes} classes {d.label_names}")
    for name in ("train", "validation", "test"):
        s = d.split(name)
        counts = np.bincount(s.labels, minlength=d.num_classes)
        per = ", ".join(f"{n}: {c} ({100 * c / max(len(s), 1):.0f}%)" for n, c in zip(d.label_names, counts))
        print(f"  {name:<10} {len(s):>7} examples   {per}")
    for n in d.notes:
        print(f"  note: {n}")
    tokenizer = _tokenizer_or_none(args.tokenizer)
    if tokenizer is None:
        return 0
    print(f"token lengths ({args.tokenizer} tokenizer):")
    for name in ("train", "validation", "test"):
        lengths = token_lengths(d.split(name).texts, tokenizer)
        over = int((lengths > args.max_len).sum())
        print(
            f"  {name:<10} {_percentiles(lengths)}   --max-len {args.max_len} would truncate "
            f"{over} ({100 * over / len(lengths):.1f}%)"
        )
    return 0


def _tokenizer_or_none(source):
    from minitransfer.convert import load_tokenizer

    try:
        return load_tokenizer(source)
    except Exception as e:
        print(f"(no token statistics: cannot load tokenizer {source!r}: {e})")
        return None


# ----------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minitransfer",
        description="Transfer learning in NLP with a readable pure-JAX/Flax GPT-2: load pretrained "
        "GPT-2 weights, swap the next-word head for a task head, fine-tune, and compare with "
        "training from scratch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    _add_model_arg(p)
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
    p.add_argument("--max-len", type=int, default=128, help="sequence length to check (default 128)")
    p.add_argument(
        "--tokenizer",
        default=DEFAULT_TOKENIZER,
        help="checkpoint directory or hub id whose tokenizer to use, or a directory with OpenAI's "
        f"encoder.json + vocab.bpe (default: {DEFAULT_TOKENIZER})",
    )
    p.set_defaults(func=cmd_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from minitransfer.convert import CheckpointError
    from minitransfer.data import DataError

    try:
        return args.func(args)
    except (CheckpointError, DataError, ValueError, FileNotFoundError) as e:
        print(f"minitransfer {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
