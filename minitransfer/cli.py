"""The ``minitransfer`` command line. Each subcommand is a thin layer over the
package's functions; ``minitransfer COMMAND --help`` explains each one."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from minitransfer.assets import shipped_checkpoint


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


def _add_device_args(p: argparse.ArgumentParser):
    p.add_argument(
        "--parallel", choices=["none", "data", "fsdp"], default="none",
        help="spread training over all local devices: data (batch split, weights replicated) or fsdp "
        "(weights and optimizer state split too); default none. Set MINITRANSFER_MULTIHOST=1 on every "
        "host of a TPU pod slice.",
    )
    p.add_argument(
        "--dtype", choices=["float32", "bfloat16"], default="float32",
        help="compute precision. bfloat16 is mixed precision for GPUs/TPUs: matmuls and activations in "
        "bfloat16, weights, optimizer state, softmax and loss in float32 (on most CPUs it is slower). "
        "Default float32.",
    )


# ----------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------


def cmd_convert(args) -> int:
    from minitransfer.convert import load_pretrained, save_pretrained
    from minitransfer.tokenizer import load_tokenizer
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


def cmd_next_word(args) -> int:
    from minitransfer.convert import load_pretrained
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.generate import next_word_candidates

    from minitransfer.heads import NextWordHead

    source = _model_or_default(args)
    model = load_pretrained(source, allow_pickle=args.allow_pickle)
    if not isinstance(model.head, NextWordHead):
        raise ValueError(f"{source} has a fine-tuned {model.head.kind} head; next-word needs a language model checkpoint")
    tokenizer = load_tokenizer(source)
    cands = next_word_candidates(model, tokenizer, args.prompt, args.top_k)
    if args.json:
        print(json.dumps({"prompt": args.prompt, "candidates": cands}, indent=2))
        return 0
    print(f"{args.prompt!r} ... what comes next? ({source})")
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
    from minitransfer.tokenizer import load_tokenizer

    try:
        return load_tokenizer(source)
    except Exception as e:
        print(f"(no token statistics: cannot load tokenizer {source!r}: {e})")
        return None


# ----------------------------------------------------------------------------
# finetune / evaluate
# ----------------------------------------------------------------------------


def _model_or_default(args) -> str:
    if args.model:
        return args.model
    p = shipped_checkpoint()
    if p is None:
        raise ValueError(
            "--model is required (a checkpoint directory, or a hub id such as gpt2 when online): "
            "no shipped checkpoint found in checkpoints/"
        )
    return str(p)


def cmd_finetune(args) -> int:
    from minitransfer.convert import load_config, load_pretrained, resolve_source
    from minitransfer.model import named_config
    from minitransfer.modes import get_mode
    from minitransfer.tasks import get_task, metrics_text
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.train import TrainConfig, build_model, finetune

    cfg = TrainConfig(
        mode=args.mode, steps=args.steps, epochs=args.epochs if args.epochs is not None else TrainConfig.epochs,
        batch_size=args.batch_size, lr=args.lr, schedule=args.schedule, warmup=args.warmup,
        weight_decay=args.weight_decay, lr_decay_per_layer=args.lr_decay_per_layer,
        eval_every=args.eval_every, val_examples=None if args.val_examples == 0 else args.val_examples,
        max_len=args.max_len, labels=args.labels, seed=args.seed, pooling=args.pooling,
        parallel=args.parallel, dtype=args.dtype,
    )
    task = get_task(args.task)
    data = task.load(args.data, text_field=args.text_field, label_field=args.label_field)
    for n in data.notes:
        print(f"data: {n}")
    if args.mode == "scratch" and args.config:
        if not (args.tokenizer or args.model or shipped_checkpoint()):
            raise ValueError("--config needs a tokenizer: pass --tokenizer or --model")
        tokenizer = load_tokenizer(args.tokenizer or _model_or_default(args))
        n_pos = max(args.max_len, 64)
        config = named_config(args.config, vocab_size=len(tokenizer), n_positions=n_pos)
        base = None
    else:
        source = _model_or_default(args)
        tokenizer = load_tokenizer(args.tokenizer or source)
        if args.mode == "scratch":
            config, base = load_config(resolve_source(source)), None
        else:
            base = load_pretrained(source, allow_pickle=args.allow_pickle)
            config = base.config
    if get_mode(args.mode).start == "adapted":
        from minitransfer.adapt import AdaptConfig, adapt_language_model

        acfg = AdaptConfig(steps=args.adapt_steps, eval_every=max(1, min(50, args.adapt_steps)), seed=args.seed,
                           parallel=args.parallel, dtype=args.dtype)
        base = adapt_language_model(base, tokenizer, data, acfg, Path(args.out) / "adapted",
                                    progress=not args.no_progress).model
    model = build_model(args.mode, base, config, data, cfg, task.head, new_head=args.new_head)
    r = finetune(model, data, tokenizer, cfg, args.out, progress=not args.no_progress)
    best = model.head.best_metric
    print(
        f"{args.mode}: best validation {model.head.metric_names[best]} {r.best_val[best]:.4f} at step "
        f"{r.best_step}; {metrics_text(r.test, model.head, 'test ')}; {r.steps_per_second:.2f} steps/s; "
        f"best model in {Path(args.out) / 'best'}"
    )
    return 0


def cmd_answer(args) -> int:
    from minitransfer.convert import load_pretrained, training_info
    from minitransfer.heads import SpanHead
    from minitransfer.qa import answer
    from minitransfer.tokenizer import load_tokenizer

    model = load_pretrained(args.model)
    if not isinstance(model.head, SpanHead):
        raise ValueError(f"{args.model} has a {model.head.kind} head, not a question-answering (span) head; "
                         f"train one with: minitransfer finetune --task qa ...")
    max_len = training_info(args.model).get("max_len")  # the length it was fine-tuned at
    text, score = answer(model, load_tokenizer(args.model), args.question, args.context, max_len)
    print(f"answer: {text}  (score {score:.2f})")
    return 0


def cmd_evaluate(args) -> int:
    import json as _json

    from minitransfer.convert import load_pretrained, training_info
    from minitransfer.tasks import metrics_text, task_of
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.train import evaluate

    model = load_pretrained(args.model)
    tokenizer = load_tokenizer(args.model)
    info = training_info(args.model)
    max_len = args.max_len or info.get("max_len") or model.config.n_positions
    data = task_of(model.head).load(args.data, text_field=args.text_field, label_field=args.label_field)
    val_examples = None
    if args.split == "validation" and not args.all_validation and info.get("val_examples"):
        val_examples = info["val_examples"]
        if val_examples < len(data.validation):
            print(f"(validation: the fixed subset of {val_examples} examples the model was validated on "
                  f"during training; --all-validation for all {len(data.validation)})", file=sys.stderr)
    m = evaluate(model, data, tokenizer, split=args.split, max_len=max_len, val_examples=val_examples)
    if args.json:
        print(_json.dumps({"split": args.split, **m}))
    else:
        print(f"{args.model} on {args.data} [{args.split}]: {metrics_text(m, model.head)}"
              + (f" ({m['n_truncated']} truncated to {max_len} tokens)" if m["n_truncated"] else ""))
    return 0


# ----------------------------------------------------------------------------
# pretrain
# ----------------------------------------------------------------------------


def cmd_pretrain(args) -> int:
    import shlex

    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.data import load_texts, pack_blocks, read_rows
    from minitransfer.model import GPT2, GPT2Config, NAMED_CONFIGS, num_params
    from minitransfer.tokenizer import train_tokenizer
    from minitransfer.pretrain import PretrainConfig, pretrain, pretrain_card, text_perplexity, write_model_card
    from minitransfer.steps import weights_fingerprint

    command = "minitransfer " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if args.command_line is None \
        else args.command_line
    out = Path(args.out)
    if args.init_from and (args.tokenizer != "train:8192" or args.config or any(
            getattr(args, k) is not None for k in ("n_layer", "n_head", "n_embd", "n_positions"))):
        raise ValueError("--init-from takes the shape and tokenizer of its checkpoint; drop --tokenizer, "
                         "--config, --n-layer, --n-head, --n-embd and --n-positions")
    texts = load_texts(args.data, text_field=args.text_field)
    print(f"pretraining text: {len(texts)} documents from {args.data}"
          + (" (the training split's texts only: no validation or test text is read)"
             if not args.data.startswith(("txt:", "jsonl:", "csv:", "tsv:")) else ""))
    init = None
    if args.init_from:
        from minitransfer.pretrain import language_model_from

        init, tokenizer = language_model_from(args.init_from, dropout=args.dropout)
        print(f"continuing from {args.init_from}: its weights, shape and {len(tokenizer)}-token tokenizer")
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out))
    elif args.tokenizer.startswith("train:"):
        if (out / "tokenizer.json").exists():
            tokenizer = load_tokenizer(out)  # resuming: the vocabulary must not change
            print(f"tokenizer: reusing {out}/tokenizer.json ({len(tokenizer)} tokens)")
        else:
            vocab = int(args.tokenizer.split(":", 1)[1])
            print(f"tokenizer: training a {vocab}-token byte-level BPE on the pretraining text")
            tokenizer = train_tokenizer(texts, vocab)
            out.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(str(out))
    else:
        tokenizer = load_tokenizer(args.tokenizer)
    if init is not None:
        shape = {k: getattr(init.config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions")}
    else:
        shape = dict(NAMED_CONFIGS[args.config]) if args.config else {}
    for k in ("n_layer", "n_head", "n_embd"):
        if getattr(args, k) is not None:
            shape[k] = getattr(args, k)
    missing = [k for k in ("n_layer", "n_head", "n_embd") if k not in shape]
    if missing:
        raise ValueError(f"give --config NAME or all of --n-layer --n-head --n-embd (missing {missing})")
    if init is None:
        shape["n_positions"] = max(args.block_size, shape.get("n_positions", 0)) if args.n_positions is None \
            else args.n_positions
    config = GPT2Config(**shape, vocab_size=len(tokenizer), embd_pdrop=args.dropout, attn_pdrop=args.dropout,
                        resid_pdrop=args.dropout, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
                         eval_every=args.eval_every, seed=args.seed, parallel=args.parallel,
                         dtype=args.dtype)
    blocks = pack_blocks(texts, tokenizer, args.block_size, val_fraction=args.val_fraction, seed=args.seed)
    print(f"packed {blocks.n_tokens:,} tokens into {len(blocks.train):,} training and {len(blocks.validation):,} "
          f"validation blocks of {args.block_size + 1} ({blocks.n_dropped_tokens:,} tail tokens dropped); "
          f"{cfg.steps * cfg.batch_size * cfg.block_size / max(1, len(blocks.train) * args.block_size):.2f} epochs")
    model = GPT2.language_model(config, seed=args.seed) if init is None else init
    n_params = num_params(model)
    print(f"model: n_layer={config.n_layer} n_head={config.n_head} n_embd={config.n_embd} "
          f"vocab={config.vocab_size} positions={config.n_positions}: {n_params:,} parameters")
    r = pretrain(model, blocks, tokenizer, cfg, out, progress=not args.no_progress,
                 run_key_extra={"data": args.data, "tokenizer": args.tokenizer,
                                **({"init_from": weights_fingerprint(init)} if init is not None else {})})
    if r.steps_run == 0 and (out / "pretrain.json").exists():
        print(f"{out}: this pretraining run had already finished; its MODEL_CARD.md is unchanged")
        return 0
    report = {}
    if args.report_text:
        rows = read_rows(Path(args.report_text), "jsonl", [])[: args.report_n]
        ppl = text_perplexity(model, tokenizer, [r_["text"] for r_ in rows], args.block_size)
        report = {"text": args.report_text, "n_texts": len(rows), "block_size": args.block_size, "perplexity": ppl}
        print(f"perplexity on the first {len(rows)} texts of {args.report_text}: {ppl:.2f}")
    write_model_card(out, pretrain_card(
        data=args.data, documents=len(texts), result=r, config=config, cfg=cfg, n_params=n_params, report=report,
        command=command, init_from=args.init_from if init is not None else None))
    print(f"pretrained {n_params:,} parameters on {r.tokens_seen:,} tokens in {r.train_seconds / 60:.1f} min: "
          f"validation perplexity {r.val_perplexity:.2f} (step {r.best_step}); checkpoint in {out}")
    return 0


# ----------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------


def cmd_generate(args) -> int:
    from minitransfer.convert import load_pretrained
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.generate import generate

    from minitransfer.heads import NextWordHead

    model = load_pretrained(_model_or_default(args), allow_pickle=args.allow_pickle)
    if not isinstance(model.head, NextWordHead):
        raise ValueError(f"{_model_or_default(args)} has a fine-tuned {model.head.kind} head; generate needs a "
                         f"language model")
    tokenizer = load_tokenizer(_model_or_default(args))
    ids = tokenizer.encode(args.prompt)
    for i in range(args.num_samples):
        new = generate(model, ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                       top_p=args.top_p, seed=args.seed + i, greedy=args.greedy, eos_id=tokenizer.eos_token_id)
        if args.num_samples > 1:
            print(f"--- sample {i + 1} (seed {args.seed + i})")
        print(args.prompt + tokenizer.decode(new))
    return 0


# ----------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------


def cmd_compare(args) -> int:
    import dataclasses

    from minitransfer.adapt import AdaptConfig
    from minitransfer.compare import CompareConfig, compare, parse_budgets
    from minitransfer.convert import load_pretrained
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.data import load_dataset

    source = _model_or_default(args)
    if args.quick:
        cc = CompareConfig(budgets=[100, 300], seeds=2, steps=20, val_examples=200, evals_per_run=4,
                           adapt=AdaptConfig(steps=30, eval_every=15))
    else:
        cc = CompareConfig()
    if args.adapt_steps is not None:
        cc.adapt = dataclasses.replace(cc.adapt, steps=args.adapt_steps, eval_every=max(1, min(cc.adapt.eval_every, args.adapt_steps)))
    if args.budgets:
        cc.budgets = parse_budgets(args.budgets)
    if args.modes:
        cc.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    from minitransfer.modes import get_mode

    for m in cc.modes:  # before minutes of data loading
        get_mode(m)
    cc.parallel, cc.dtype = args.parallel, args.dtype
    for name in ("seeds", "steps", "max_len", "batch_size", "pooling"):
        if getattr(args, name) is not None:
            setattr(cc, name, getattr(args, name))
    data = load_dataset(args.data, text_field=args.text_field, label_field=args.label_field)
    for n in data.notes:
        print(f"data: {n}")
    tokenizer = load_tokenizer(source)
    base = load_pretrained(source, allow_pickle=args.allow_pickle)
    if cc.max_len > base.config.n_positions:
        raise ValueError(f"--max-len {cc.max_len} exceeds the model's n_positions={base.config.n_positions}")
    n_runs = len(cc.budgets) * len(cc.modes) * cc.seeds
    print(f"compare: {source} on {args.data}: budgets {cc.budgets} x modes {cc.modes} x {cc.seeds} seed(s) "
          f"= {n_runs} runs -> {args.out}")
    s = compare(base, base.config, data, tokenizer, cc, args.out, progress=not args.no_progress)
    print()
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.csv, summary.json, summary.md, curves.png, budget.png "
          f"({s['wall_seconds'] / 60:.1f} min)")
    return 0


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
        help="train a task head (classifier, question answering): from scratch, as a probe, or fully fine-tuned",
        description="Put a task head on a GPT-2 backbone and train it. Tasks: "
        + "; ".join(f"{t.name}: {t.help}" for t in TASKS.values()) + ". Modes: "
        + mode_help() + ". scratch takes its architecture from --model's config or --config. Writes OUT/best "
        "(best validation accuracy, or F1 for qa), OUT/metrics.jsonl and OUT/result.json; "
        "re-running the same command resumes an interrupted run.",
    )
    _add_model_arg(p, required=False)
    p.add_argument("--task", choices=list(TASKS), default="classify", help="default classify")
    p.add_argument("--mode", choices=list(MODES), default=D.mode, help=mode_help() + f" (default {D.mode})")
    p.add_argument("--adapt-steps", type=int, default=AdaptConfig.steps,
                   help="mode adapt: next-word steps on the task's training texts, written to OUT/adapted "
                   "(default %(default)s)")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="run directory (checkpoint, logs, resumable state)")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS),
                   help="scratch mode: a named architecture instead of --model's config")
    p.add_argument("--tokenizer", help="tokenizer source, if not --model's")
    p.add_argument("--labels", default=D.labels,
                   help="label budget: a seeded subset of N training examples, stratified by class for "
                   "classify (default: all)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="optimizer steps")
    g.add_argument("--epochs", type=float, help=f"epochs over the (budgeted) training set (default {D.epochs:g})")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, help="peak learning rate (default: "
                   + ", ".join(f"{m.name} {m.lr:g}" for m in MODES.values()) + "; for small models, n_embd <= 256: "
                   + ", ".join(f"{m.name} {m.lr_small:g}" for m in MODES.values()) + ")")
    p.add_argument("--schedule", choices=["linear", "cosine"], default=D.schedule,
                   help="decay after warmup (default %(default)s)")
    p.add_argument("--warmup", type=float, default=D.warmup, help="warmup fraction of the steps (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=D.weight_decay, help="AdamW weight decay (default %(default)s)")
    p.add_argument("--lr-decay-per-layer", type=float, default=D.lr_decay_per_layer,
                   help="full mode: each lower layer's lr is multiplied by this (ULMFiT used 1/2.6; default %(default)s)")
    p.add_argument("--max-len", type=int, default=D.max_len, help="tokens per example (default %(default)s)")
    p.add_argument("--pooling", choices=["last", "mean"], default=D.pooling,
                   help="how a classification head summarises a sequence (default: last real token)")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default: 10 times per run)")
    p.add_argument("--val-examples", type=int, default=D.val_examples,
                   help="validate on a fixed subset of this many examples (0: all; default %(default)s)")
    p.add_argument("--seed", type=int, default=D.seed, help="seed for init, label budget, data order, dropout")
    p.add_argument("--new-head", action="store_true",
                   help="replace a fine-tuned checkpoint's head with a fresh one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_device_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "evaluate",
        help="the metrics of a fine-tuned model on a data split (accuracy, or exact match and F1 for qa)",
        description="Evaluate a model saved by finetune (e.g. OUT/best) on SPEC's split; its head says the task.",
    )
    p.add_argument("--model", required=True, help="a fine-tuned model directory (e.g. RUN/best)")
    _add_data_args(p)
    p.add_argument("--split", choices=["train", "validation", "test"], default="test", help="default test")
    p.add_argument("--max-len", type=int, help="default: the max_len the model was trained with")
    p.add_argument("--all-validation", action="store_true",
                   help="with --split validation: use the whole split, not the subset training validated on")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_evaluate)

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
        help="next-word pretraining of a GPT-2 from random weights on your text",
        description="Train a GPT-2-architecture model from scratch on the next-word objective and write "
        "a Hugging Face-format checkpoint (config.json, model.safetensors, tokenizer, MODEL_CARD.md) "
        "that every other command and transformers load. Re-running the same command resumes.",
    )
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="text to learn from: jsonl:/csv:/tsv:/txt:PATH, tweets or tfds:NAME (train split only)")
    p.add_argument("--text-field", default="text", help="field holding the text (default: text)")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--config", choices=sorted(NAMED_CONFIGS), help="a named shape (or give --n-layer etc.)")
    p.add_argument("--n-layer", type=int)
    p.add_argument("--n-head", type=int)
    p.add_argument("--n-embd", type=int)
    p.add_argument("--n-positions", type=int, help="default: the config's, at least --block-size")
    p.add_argument("--init-from", metavar="SOURCE",
                   help="continue next-word training from this pretrained checkpoint (directory or hub id): its "
                   "weights, shape and tokenizer (ULMFiT's second stage when --data is the task's text; a "
                   "labelled spec contributes its training split's texts only)")
    p.add_argument("--tokenizer", default="train:8192",
                   help="train:VOCAB_SIZE (learn a byte-level BPE on the text; default train:8192), or a "
                   "checkpoint/tokenizer directory or hub id (gpt2) to reuse its vocabulary")
    p.add_argument("--steps", type=int, default=P.steps, help="default %(default)s")
    p.add_argument("--block-size", type=int, default=P.block_size, help="tokens per training sequence (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=P.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, default=P.lr, help=f"peak learning rate, {P.schedule} decay (default %(default)g)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout while pretraining (default 0: one pass over the data rarely overfits)")
    p.add_argument("--eval-every", type=int, default=P.eval_every, help="default %(default)s")
    p.add_argument("--val-fraction", type=float, default=0.02, help="texts held out for validation (default 0.02)")
    p.add_argument("--report-text", metavar="JSONL",
                   help="also report perplexity on the first --report-n texts of this jsonl(.gz) file")
    p.add_argument("--report-n", type=int, default=200)
    p.add_argument("--seed", type=int, default=P.seed)
    p.add_argument("--no-progress", action="store_true")
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
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=40, help="default 40")
    p.add_argument("--temperature", type=float, default=0.8, help="default 0.8")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "compare",
        help="scratch vs transfer: fine-tune every budget x mode x seed and plot accuracy curves",
        description="The transfer-learning experiment in one command. For each label budget, mode ("
        + mode_help() + ") and seed, fine-tune and evaluate on the fixed test split; all modes see "
        "the same labelled examples at a given budget and seed, so each mode's gain over scratch is a "
        "paired difference, reported with its 95% confidence interval over seeds. Mode adapt's "
        "next-word stage runs once and is reused by every budget and seed. Writes results.csv, "
        "summary.json, summary.md, curves.png and budget.png into --out; re-running skips finished runs. "
        "The defaults run offline on a laptop CPU in about 10 minutes.",
    )
    _add_model_arg(p, required=False)
    _add_data_args(p)
    p.add_argument("--budgets", help="comma-separated label budgets, 'all' for the whole train split "
                   "(default " + ",".join(map(str, CompareConfig().budgets)) + "; --quick: 100,300)")
    p.add_argument("--modes", help="comma-separated, from " + ",".join(MODES) + " (default: all)")
    p.add_argument("--seeds", type=int, help="seeds per budget and mode (default %d; --quick: 2)" % CompareConfig.seeds)
    p.add_argument("--adapt-steps", type=int,
                   help="mode adapt: next-word steps on the task's training texts (default %d)" % AdaptConfig.steps)
    p.add_argument("--steps", type=int, help="steps per run (default: 3 epochs, between %d and %d; frozen-backbone modes at least %d)"
                   % (CompareConfig.min_steps, CompareConfig.max_steps, CompareConfig.frozen_min_steps))
    p.add_argument("--max-len", type=int, help="tokens per example (default 64)")
    p.add_argument("--batch-size", type=int, help="default 32")
    p.add_argument("--pooling", choices=["last", "mean"], help="how every head summarises a text (default mean)")
    p.add_argument("--out", default="runs/compare", help="output directory (default runs/compare)")
    p.add_argument("--quick", action="store_true", help="a smoke run of at most about 2 minutes")
    p.add_argument("--no-progress", action="store_true")
    _add_device_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "playground",
        help="a local web page: watch the next-word head (and a classifier) work as you type",
        description="Serve a page at http://localhost:PORT/ with a text box: as you type, the next-word "
        "head's top 10 candidates appear as bars (Tab accepts one), Continue streams a sampled "
        "continuation, and with --classifier a fine-tuned classification head shows its class "
        "probabilities for the same text. JSON endpoints under /api/ (see README). Works offline.",
    )
    _add_model_arg(p, required=False)
    p.add_argument("--classifier", metavar="DIR",
                   help="a fine-tuned classifier (e.g. runs/full/best from minitransfer finetune) for the second panel")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.set_defaults(func=cmd_playground)

    p = sub.add_parser(
        "lectures",
        help="run every lecture and write the lectures as a static HTML site (the book)",
        description="Execute lectures/NN_*.py in order in a fresh Python kernel each and write one HTML "
        "page per lecture (source highlighted, output and figures embedded) plus index.html with the "
        "reading order, into --out. Opens offline. Needs the lectures extra: pip install -e '.[lectures]'.",
    )
    p.add_argument("--out", default="site", help="output folder (default site/)")
    p.add_argument("--fast", action="store_true",
                   help="tiny settings (MINITRANSFER_FAST=1): minutes instead of a quarter of an hour")
    p.add_argument("--only", nargs="*", metavar="NN", help="build only these lectures, e.g. --only 02 07")
    p.set_defaults(func=cmd_lectures)
    return parser


def cmd_playground(args) -> int:
    from minitransfer.playground import serve

    return serve(_model_or_default(args), args.classifier, host=args.host, port=args.port)


def cmd_lectures(args) -> int:
    from minitransfer.book import build_site

    build_site(args.out, fast=args.fast or os.environ.get("MINITRANSFER_FAST") == "1", only=args.only)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "parallel", "none") != "none":
        from minitransfer.parallel import maybe_initialize_distributed

        maybe_initialize_distributed()
    from minitransfer.convert import CheckpointError
    from minitransfer.data import DataError
    from minitransfer.loop import TrainingError
    from minitransfer.book import BookError

    try:
        return args.func(args)
    except (CheckpointError, DataError, TrainingError, BookError, ValueError, FileNotFoundError) as e:
        print(f"minitransfer {args.command}: error: {e}", file=sys.stderr)
        return 2


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_env() -> dict[str, str] | None:
    """The environment to restart this process with so that glibc's malloc
    backs large blocks with transparent huge pages; None where that does not
    apply (not Linux/glibc, transparent huge pages off, already set, or
    ``MINITRANSFER_NO_HUGEPAGES=1``).

    Why: a training step at the 124M shape needs about a gigabyte of
    temporaries (activations, gradients). glibc takes blocks that large
    straight from the kernel (mmap) and returns them on free, so every step
    the kernel faults in and zeroes some 250,000 fresh 4 KiB pages: about
    0.3 s of a 3.7 s step on a 2-core CPU (measured with
    benchmarks/train_step.py). With huge pages that is 2 MiB per fault.
    glibc reads its tunables only at start-up, hence a restart.
    """
    import platform

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (sys.platform != "linux" or os.environ.get("MINITRANSFER_NO_HUGEPAGES", "") not in ("", "0")
            or "glibc.malloc.hugetlb" in tunables or platform.libc_ver()[0] != "glibc"):
        return None
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    if "[never]" in thp:
        return None
    return {**os.environ, "GLIBC_TUNABLES": ":".join(t for t in (tunables, HUGE_PAGES_TUNABLE) if t)}


def restart_with_huge_pages() -> None:
    """Re-run this very command with ``huge_pages_env()`` (once; a no-op where
    it does not apply or the restart fails)."""
    env = huge_pages_env()
    if env is None:
        return
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return


# Commands whose speed does not come from big training steps: no restart, so
# they start sooner (the playground's first answer, --help, data counts).
NO_RESTART = {"playground", "data", "next-word", "answer", "--help", "-h"}


def entry() -> int:
    """The ``minitransfer`` console script: ``main()`` with huge pages on."""
    if not (len(sys.argv) > 1 and sys.argv[1] in NO_RESTART):
        restart_with_huge_pages()
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
