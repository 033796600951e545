"""The commands that train: ``finetune`` (a task head on a backbone),
``pretrain`` (next-word training, and its model card) and ``compare`` (the
grid of modes x budgets x seeds). ``commands.py`` holds the others
(convert, next-word, data, evaluate, answer, generate, playground,
lectures); ``cli.py`` routes to both."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from minitransfer.assets import shipped_checkpoint
from minitransfer.cli.commands import model_or_default
from minitransfer.cli.options import say

# ----------------------------------------------------------------------------
# finetune
# ----------------------------------------------------------------------------


def split_seed_notes(split_seed: int, data, spec: str) -> list[str]:
    """What a --split-seed other than 0 did not do: data that comes with its
    own splits is not split at all, or keeps its test split (only its
    validation set is drawn)."""
    if not split_seed:
        return []
    if "split_seed" not in data.fields:  # (recorded only where a split drew)
        return [f"--split-seed {split_seed} has no effect: {spec} comes with its own splits"]
    if not any(n.startswith("split 80/10/10") for n in data.notes):
        return [
            f"--split-seed {split_seed} draws only the validation set: {spec} comes with its own test split, "
            f"which stays as it is"
        ]
    return []


def cmd_finetune(args) -> int:
    from minitransfer.convert import load_config, load_pretrained, resolve_source
    from minitransfer.model import named_config
    from minitransfer.modes import get_mode
    from minitransfer.runs import check_out_folder
    from minitransfer.tasks import get_task, metrics_text
    from minitransfer.tokenizer import load_tokenizer
    from minitransfer.train import TrainConfig, build_model, finetune

    task = get_task(args.task)
    if args.mode is None:  # not given: the task's default
        args.mode = task.default_mode
    cfg = TrainConfig(
        **{k: getattr(args, k) for k in FINETUNE_OPTIONS},
        epochs=args.epochs if args.epochs is not None else TrainConfig.epochs,
        val_examples=None if args.val_examples == 0 else args.val_examples,  # (0: the whole validation split)
    )
    check_out_folder(args.out, "finetune")  # before the data, and before mode adapt writes OUT/adapted
    if args.data is None:
        args.data = task.default_data
    for n in ignored_finetune_options(args, cfg):
        print(f"note: {n}")
    if args.mode == "scratch" and args.config and not (args.tokenizer or args.model or shipped_checkpoint()):
        raise ValueError("--config needs a tokenizer: pass --tokenizer or --model")
    # the tokenizer before the data, which can take a while to load: a wrong path is said at once
    tokenizer = (
        load_tokenizer(args.tokenizer, setting="tokenizer")
        if args.tokenizer
        else load_tokenizer(model_or_default(args))
    )
    if not (args.mode == "scratch" and args.config):  # the model's folder, or its download, before the data too
        resolve_source(model_or_default(args), allow_pickle=args.allow_pickle)
    data = task.load(args.data, text_field=args.text_field, label_field=args.label_field, split_seed=args.split_seed)
    for n in data.notes:
        say(args)(f"data: {n}")
    for n in split_seed_notes(args.split_seed, data, args.data):
        print(f"note: {n}")
    if args.label_words and get_mode(args.mode).head == "prompt":
        from minitransfer.prompting import parse_label_words

        cfg = dataclasses.replace(cfg, label_words=tuple(parse_label_words(args.label_words, data.label_names)))
    if args.mode == "scratch" and args.config:
        n_pos = max(args.max_len, 64)
        config = named_config(args.config, vocab_size=len(tokenizer), n_positions=n_pos)
        base = None
    else:
        source = model_or_default(args)
        if args.mode == "scratch":
            config, base = load_config(resolve_source(source)), None
        else:
            base = load_pretrained(source, allow_pickle=args.allow_pickle)
            config = base.config
    if get_mode(args.mode).start == "adapted":
        base = adapted_base(args, base, tokenizer, data)
    model = build_model(args.mode, base, config, data, cfg, task.head, new_head=args.new_head, tokenizer=tokenizer)
    for n in own_head_notes(args, base, model):
        print(f"note: {n}")
    r = finetune(model, data, tokenizer, cfg, args.out, progress=not args.no_progress, log=say(args))
    best = model.head.best_metric
    print(
        f"{args.mode}: best validation {model.head.metric_names[best]} {r.best_val[best]:.4f} at step "
        f"{r.best_step}; {metrics_text(r.test, model.head, 'test ')}; {r.steps_per_second:.2f} steps/s; "
        f"best model in {Path(args.out) / 'best'}"
    )
    said = model.head.transformers_note()
    if said:
        say(args)(f"note: {said}")
    return 0


# TrainConfig's fields that finetune's options of the same names set as they are
FINETUNE_OPTIONS = (
    "mode",
    "steps",
    "batch_size",
    "lr",
    "schedule",
    "warmup",
    "weight_decay",
    "lr_decay_per_layer",
    "eval_every",
    "max_len",
    "labels",
    "seed",
    "pooling",
    "head_bias",
    "parallel",
    "dtype",
    "prompt",
    "unfreeze",
    "lora_rank",
    "lora_alpha",
)


def adapted_base(args, base, tokenizer, data):
    """Mode adapt's start: ``base`` after --adapt-steps next-word steps on the task's training text."""
    from minitransfer.adapt import AdaptConfig, adapt_language_model

    acfg = AdaptConfig(
        steps=args.adapt_steps,
        eval_every=max(1, min(50, args.adapt_steps)),
        seed=args.seed,
        parallel=args.parallel,
        dtype=args.dtype,
    )
    out = Path(args.out) / "adapted"
    return adapt_language_model(base, tokenizer, data, acfg, out, progress=not args.no_progress, log=say(args)).model


def own_head_notes(args, base, model) -> list[str]:
    """The head options that have no effect because the checkpoint's own head goes on training."""
    from minitransfer.train import TrainConfig

    kept = getattr(model.head, "pooling", args.pooling)  # a checkpoint's own classifier keeps its pooling
    own_head = base is not None and not args.new_head and type(base.head) is type(model.head)
    notes = []
    if own_head and args.pooling != TrainConfig.pooling and kept != args.pooling:
        notes.append(
            f"--pooling {args.pooling} has no effect: the model's own classification head (pooling "
            f"{kept}) goes on training; --new-head puts on a fresh one that pools as asked"
        )
    if own_head and not args.head_bias and getattr(model.head, "bias", False):
        notes.append(
            "--no-head-bias has no effect: the model's own classification head (with a bias) goes on "
            "training; --new-head puts on a fresh one without"
        )
    return notes


def ignored_finetune_options(args, cfg) -> list[str]:
    """Options given on the command line that this task and mode do not read:
    one line each, so that a setting the user believes in is not silently
    without effect."""
    from minitransfer.adapt import AdaptConfig
    from minitransfer.modes import MODES, get_mode
    from minitransfer.optim import layer_decay

    mode, notes = get_mode(args.mode), []
    if args.config and args.mode != "scratch":
        notes.append(
            f"--config {args.config} has no effect in mode {args.mode}: only scratch builds a new "
            f"architecture; {args.mode} keeps --model's"
        )
    if args.adapt_steps != AdaptConfig.steps and mode.start != "adapted":
        notes.append(
            f"--adapt-steps {args.adapt_steps} has no effect in mode {args.mode}: only adapt runs next-word steps first"
        )
    if cfg.lr_decay_per_layer != 1.0 and layer_decay(cfg) == 1.0:
        why = "its backbone is frozen" if mode.frozen_backbone else "its backbone starts from random weights"
        notes.append(
            f"--lr-decay-per-layer {cfg.lr_decay_per_layer:g} has no effect in mode {args.mode} "
            f"({why}): it scales the learning rate of a pretrained backbone's layers as they train"
        )
    for name, option in (("unfreeze", "--unfreeze"), ("lora_rank", "--lora-rank"), ("lora_alpha", "--lora-alpha")):
        if getattr(cfg, name) != getattr(type(cfg), name) and name not in mode.options:
            reader = next(m.name for m in MODES.values() if name in m.options)
            notes.append(f"{option} {getattr(cfg, name):g} has no effect in mode {args.mode}: only {reader} reads it")
    if mode.head != "prompt":
        for opt, given in (("--prompt", args.prompt), ("--label-words", args.label_words)):
            if given is not None:
                notes.append(
                    f"{opt} has no effect in mode {args.mode}: only a mode that keeps the next-word head "
                    f"(prompt) reads it"
                )
    elif args.pooling != "last":
        notes.append(
            f"--pooling {args.pooling} has no effect in mode {args.mode}: the prompt head reads the "
            f"prompt's last token, where the next word is predicted"
        )
    if args.task != "classify":
        for opt, given, default in (
            ("--pooling", args.pooling, "last"),
            ("--text-field", args.text_field, "text"),
            ("--label-field", args.label_field, "label"),
        ):
            if given != default:
                notes.append(f"{opt} {given} has no effect with --task {args.task}: only classification reads it")
        if not args.head_bias:
            notes.append(f"--no-head-bias has no effect with --task {args.task}: only classification reads it")
    return notes


# ----------------------------------------------------------------------------
# pretrain
# ----------------------------------------------------------------------------


def cmd_pretrain(args) -> int:
    import shlex

    from minitransfer.encoding import pack_blocks
    from minitransfer.model import GPT2, num_params
    from minitransfer.pretrain import (
        PretrainConfig,
        model_perplexity,
        pretrain,
        pretrain_card,
        write_model_card,
    )
    from minitransfer.runs import check_out_folder
    from minitransfer.steps import weights_fingerprint

    # ---- settings and text
    command = (
        "minitransfer " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        if args.command_line is None
        else args.command_line
    )
    out = Path(args.out)
    check_out_folder(out, "pretrain")  # before the minutes of tokenizer training and pretraining
    report_texts = check_pretrain_args(args)
    options = ("steps", "batch_size", "block_size", "lr", "eval_every", "seed", "parallel", "dtype")
    cfg = PretrainConfig(**{k: getattr(args, k) for k in options})  # the options of the same names
    texts, report_texts, cleaning = pretraining_text(args, report_texts)

    # ---- tokenizer, shape and blocks
    init, tokenizer, save_tokenizer = pretrain_tokenizer(args, texts, out)
    config = pretrain_shape(args, init, tokenizer)
    blocks = pack_blocks(texts, tokenizer, args.block_size, val_fraction=args.val_fraction, seed=args.seed)
    if report_texts is not None:
        check_report_texts(args, report_texts, tokenizer)
    save_tokenizer()  # once the text is known to fill a block (not before)
    print(packing_line(blocks, cfg))
    model = GPT2.language_model(config, seed=args.seed) if init is None else init
    n_params = num_params(model)
    print(
        f"model: n_layer={config.n_layer} n_head={config.n_head} n_embd={config.n_embd} "
        f"vocab={config.vocab_size} positions={config.n_positions}: {n_params:,} parameters"
    )
    if init is not None:  # where the continued training starts from, on the blocks it will be scored on
        start = model_perplexity(init, blocks.validation[: cfg.val_blocks], cfg.dtype)
        print(f"validation perplexity of {args.init_from} before this training: {start:.1f}")

    # ---- train, then the model card
    identity = {  # what else makes this run the one it is (part of its run key: runs.py)
        "data": args.data,
        "tokenizer": args.tokenizer,
        **({"init_from": weights_fingerprint(init)} if init is not None else {}),
        **({"html_line_breaks": True} if args.html_line_breaks else {}),
    }
    r = pretrain(model, blocks, tokenizer, cfg, out, progress=not args.no_progress, log=say(args), identity=identity)
    if r.steps_run == 0 and (out / "pretrain.json").exists():
        print(f"{out}: this pretraining run had already finished; its MODEL_CARD.md is unchanged")
        return 0
    report = report_perplexity(args, model, tokenizer, report_texts) if report_texts is not None else {}
    write_model_card(
        out,
        pretrain_card(
            data=args.data,
            documents=len(texts),
            result=r,
            config=config,
            cfg=cfg,
            n_params=n_params,
            report=report,
            command=command,
            init_from=args.init_from if init is not None else None,
            cleaning=cleaning,
        ),
    )
    print(
        f"pretrained {n_params:,} parameters on {r.tokens_seen:,} tokens in {r.train_seconds / 60:.1f} min: "
        f"validation perplexity {r.val_perplexity:.2f} (step {r.best_step}); checkpoint in {out}"
    )
    return 0


def pretraining_text(args, report_texts: list[str] | None) -> tuple[list[str], list[str] | None, str | None]:
    """--data's texts (and --report-text's) as pretraining reads them: with --html-line-breaks, their HTML
    line breaks turned into newlines, said in a line that the model card repeats (the third value)."""
    from minitransfer.data import html_line_breaks, load_texts

    texts = load_texts(args.data, text_field=args.text_field)
    print(
        f"pretraining text: {len(texts)} documents from {args.data}"
        + (
            " (the training split's texts only: no validation or test text is read)"
            if not args.data.startswith(("txt:", "jsonl:", "csv:", "tsv:"))
            else ""
        )
    )
    if not args.html_line_breaks:
        return texts, report_texts, None
    texts, changed, breaks = html_line_breaks(texts)
    cleaning = (
        f"HTML line breaks turned into newlines: {breaks:,} in {changed:,} of the {len(texts):,} "
        f"documents; nothing else changed"
    )
    print(f"cleaning: {cleaning}")
    if report_texts is not None:
        report_texts = html_line_breaks(report_texts)[0]
    return texts, report_texts, cleaning


def report_perplexity(args, model, tokenizer, report_texts: list[str]) -> dict:
    """The trained model's perplexity on --report-text's texts, said and recorded for the model card."""
    from minitransfer.pretrain import text_perplexity

    ppl = text_perplexity(model, tokenizer, report_texts, args.block_size)
    print(f"perplexity on the first {len(report_texts)} texts of {args.report_text}: {ppl:.2f}")
    return {"text": args.report_text, "n_texts": len(report_texts), "block_size": args.block_size, "perplexity": ppl}


def check_report_texts(args, report_texts: list[str], tokenizer) -> None:
    """Refuse, before training, --report-text's texts that do not fill one block (packed as
    text_perplexity will pack them after training)."""
    from minitransfer.data import DataError
    from minitransfer.encoding import pack_blocks

    try:
        pack_blocks(report_texts, tokenizer, args.block_size, val_fraction=0.0)
    except DataError:
        raise ValueError(
            f"--report-text {args.report_text}: its first {len(report_texts)} text(s) hold fewer "
            f"than the {args.block_size + 1} tokens of one block, too few to measure perplexity "
            f"on"
        ) from None


def packing_line(blocks, cfg) -> str:
    """What packing made of the text: blocks, tokens dropped, and how many passes over it the run makes."""
    return (
        f"packed {blocks.n_tokens:,} tokens into {len(blocks.train):,} training and {len(blocks.validation):,} "
        f"validation blocks of {cfg.block_size + 1}"
        + (
            f" (the first {cfg.val_blocks:,}, from held-out texts in a seeded random order, are scored at each "
            f"evaluation)"
            if len(blocks.validation) > cfg.val_blocks
            else ""
        )
        + f"; {blocks.n_dropped_tokens:,} tail tokens dropped; "
        f"{cfg.steps * cfg.batch_size * cfg.block_size / max(1, len(blocks.train) * cfg.block_size):.2f} epochs"
    )


def check_pretrain_args(args) -> list[str] | None:
    """The settings that can be checked before minutes of tokenizer training
    and pretraining; returns the texts of --report-text (read now, so that a
    bad row is said before the training, not after it)."""
    from minitransfer.model import NAMED_CONFIGS
    from minitransfer.readers import read_rows, texts_and_raw_labels

    if args.init_from and (
        args.tokenizer != "train:8192"
        or args.config
        or any(getattr(args, k) is not None for k in ("n_layer", "n_head", "n_embd", "n_positions"))
    ):
        raise ValueError(
            "--init-from takes the shape and tokenizer of its checkpoint; drop --tokenizer, "
            "--config, --n-layer, --n-head, --n-embd and --n-positions"
        )
    # settings that can be checked now, not after minutes of tokenizer training or pretraining
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1 (a share of the texts), got {args.val_fraction}")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    report_texts = None
    if args.report_text:
        if not Path(args.report_text).is_file():
            raise ValueError(f"--report-text {args.report_text}: no such file (a JSONL file with a 'text' field)")
        if args.report_n < 1:
            raise ValueError(f"--report-n must be at least 1, got {args.report_n}")
        rows = read_rows(Path(args.report_text), "jsonl", [])
        report_texts, _ = texts_and_raw_labels(
            type(rows)(rows[: args.report_n], rows.lines[: args.report_n]),
            Path(args.report_text),
            "text",
            None,
            [],
            need_labels=False,
        )
    if not args.init_from:  # the model's shape: known before a tokenizer is trained for it
        named = dict(NAMED_CONFIGS[args.config]) if args.config else {}
        missing = [k for k in ("n_layer", "n_head", "n_embd") if k not in named and getattr(args, k) is None]
        if missing:
            raise ValueError(
                f"give --config NAME or all of --n-layer --n-head --n-embd (missing "
                f"{', '.join('--' + k.replace('_', '-') for k in missing)})"
            )
        for k in ("n_layer", "n_head", "n_embd", "n_positions"):
            if getattr(args, k) is not None and getattr(args, k) < 1:
                raise ValueError(f"--{k.replace('_', '-')} must be at least 1, got {getattr(args, k)}")
        n_embd, n_head = args.n_embd or named.get("n_embd"), args.n_head or named.get("n_head")
        if n_embd % n_head:  # (--config's values where the options do not override them)
            raise ValueError(
                f"n_embd {n_embd} must be a multiple of n_head {n_head} (each head gets n_embd / "
                f"n_head dimensions); set --n-embd or --n-head"
            )
        if args.n_positions is not None and args.block_size > args.n_positions:
            raise ValueError(
                f"--block-size {args.block_size} exceeds --n-positions {args.n_positions}: a block "
                f"must fit the positions the model has"
            )
    return report_texts


def cleaned(trained_for: dict) -> str:
    """' with HTML line breaks as newlines (...)' where a tokenizer was trained on text so cleaned, else ''."""
    return " with HTML line breaks as newlines (--html-line-breaks)" if trained_for.get("html_line_breaks") else ""


def pretrain_tokenizer(args, texts: list[str], out: Path):
    """(the checkpoint continued from or None, the tokenizer, a function that
    saves a newly trained tokenizer in OUT): --init-from's own tokenizer, one
    trained on the text (reused on a re-run for the same text and size), or
    the one --tokenizer names."""
    from minitransfer.tokenizer import load_tokenizer, train_tokenizer

    init = new_tokenizer = None
    if args.init_from:
        from minitransfer.pretrain import language_model_from

        init, tokenizer = language_model_from(args.init_from, dropout=args.dropout)
        print(f"continuing from {args.init_from}: its weights, shape and {len(tokenizer)}-token tokenizer")
        out.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(out))
    elif args.tokenizer.startswith("train:"):
        try:
            vocab = int(args.tokenizer.split(":", 1)[1])
        except ValueError:
            raise ValueError(
                f"--tokenizer {args.tokenizer}: train:N needs a whole number of tokens, e.g. train:8192"
            ) from None
        # what the tokenizer in OUT was trained for: a rerun reuses it only for the same text and size
        # (a run that failed later, or another run's folder, must not lend its vocabulary silently)
        trained_for = {
            "tokenizer": args.tokenizer,
            "data": args.data,
            "text_field": args.text_field,
            **({"html_line_breaks": True} if args.html_line_breaks else {}),  # cleaned text, another vocabulary
        }
        record = out / "tokenizer_trained_for.json"
        if (out / "tokenizer.json").exists():
            try:
                before = json.loads(record.read_text()) if record.exists() else None
            except (OSError, ValueError):  # unreadable: then it cannot say this run trained it
                before = None
            if before != trained_for:
                known = isinstance(before, dict) and {"tokenizer", "data"} <= set(before)
                raise ValueError(
                    f"{out}/tokenizer.json was "
                    + (
                        f"trained for another run ({before['tokenizer']} on {before['data']}{cleaned(before)})"
                        if known
                        else f"not trained by this command (no {record.name} beside it)"
                    )
                    + f", not for --tokenizer {args.tokenizer} on {args.data}{cleaned(trained_for)}; "
                    "choose another --out or delete it"
                )
            tokenizer = load_tokenizer(out)  # resuming: the vocabulary must not change
            print(
                f"tokenizer: reusing {out}/tokenizer.json ({len(tokenizer)} tokens), trained for this run's "
                f"text and size"
            )
        else:
            print(f"tokenizer: training a {vocab}-token byte-level BPE on the pretraining text")
            tokenizer = train_tokenizer(texts, vocab)
            if len(tokenizer) < vocab:  # BPE merges only pairs the text repeats: a small text runs out of them
                print(
                    f"note: the text yields {len(tokenizer):,} tokens, fewer than the {vocab:,} asked: it repeats "
                    f"too few character pairs for more merges (the model's vocabulary is {len(tokenizer):,})"
                )
            new_tokenizer = tokenizer
    else:
        tokenizer = load_tokenizer(args.tokenizer, setting="tokenizer")

    def save():
        if new_tokenizer is not None:
            out.mkdir(parents=True, exist_ok=True)
            new_tokenizer.save_pretrained(str(out))
            (out / "tokenizer_trained_for.json").write_text(json.dumps(trained_for, indent=2) + "\n")

    return init, tokenizer, save


def pretrain_shape(args, init, tokenizer):
    """The model's GPT2Config: --init-from's shape, or --config's with the
    --n-* options over it, sized to the tokenizer."""
    from minitransfer.model import NAMED_CONFIGS, GPT2Config

    if init is not None:
        shape = {k: getattr(init.config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions")}
    else:
        shape = dict(NAMED_CONFIGS[args.config]) if args.config else {}
    for k in ("n_layer", "n_head", "n_embd"):
        if getattr(args, k) is not None:
            shape[k] = getattr(args, k)
    if init is None:
        shape["n_positions"] = (
            max(args.block_size, shape.get("n_positions", 0)) if args.n_positions is None else args.n_positions
        )
    config = GPT2Config(
        **shape,
        vocab_size=len(tokenizer),
        embd_pdrop=args.dropout,
        attn_pdrop=args.dropout,
        resid_pdrop=args.dropout,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return config


# ----------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------


def cmd_compare(args) -> int:
    from minitransfer.compare import compare, seeds_text
    from minitransfer.convert import load_pretrained
    from minitransfer.modes import get_mode
    from minitransfer.runs import check_out_folder
    from minitransfer.tasks import get_task
    from minitransfer.tokenizer import check_tokenizer_fits, load_tokenizer

    source = model_or_default(args)
    check_out_folder(args.out, "compare")  # before the model, the data and the adaptation load
    if args.task == "chat":
        return cmd_compare_chat(args, source)
    task = get_task(args.task)
    if args.data is None:
        if args.task != "classify":
            raise ValueError(f"--task {args.task} needs --data (e.g. jsonl:DIR with train.jsonl and test.jsonl)")
        args.data = task.default_data
    ignored = [
        o
        for o, given in (("--prompt", args.prompt), ("--label-words", args.label_words), ("--pooling", args.pooling))
        if given
    ]
    if args.task != "classify" and ignored:  # said before any work, not silently without effect
        raise ValueError(
            f"{', '.join(ignored)}: not read by compare --task {args.task} (its head reads every "
            f"position, and it has no labels to put words to)"
        )
    cc = compare_config(args, task)
    # the model first: a wrong --model is said at once, not after the data has loaded
    t_model = time.perf_counter()
    started = process_age()  # Python and the imports so far
    tokenizer = load_tokenizer(source)
    base = load_pretrained(source, allow_pickle=args.allow_pickle)
    check_tokenizer_fits(tokenizer, base.config, source)
    if cc.max_len > base.config.n_positions:
        raise ValueError(f"--max-len {cc.max_len} exceeds the model's n_positions={base.config.n_positions}")
    t_data = time.perf_counter()
    data = task.load(args.data, text_field=args.text_field, label_field=args.label_field, split_seed=cc.split_seed)
    for n in data.notes:
        say(args)(f"data: {n}")
    for n in split_seed_notes(cc.split_seed, data, args.data):
        print(f"note: {n}")
    if args.prompt:
        cc.prompts = list(args.prompt)
    if args.label_words:
        from minitransfer.prompting import parse_label_words

        cc.label_words = parse_label_words(args.label_words, data.label_names)
    n_runs = len(cc.budgets) * len([m for m in cc.modes if not get_mode(m).trains_nothing]) * cc.seeds
    print(
        f"compare: {source} on {args.data}: budgets {cc.budgets} x modes {cc.modes} x {cc.seeds} seed(s) "
        f"({seeds_text(cc.first_seed, cc.seeds)}) = {n_runs} runs -> {args.out}"
    )
    t_compare = time.perf_counter()
    s = compare(base, base.config, data, tokenizer, cc, args.out, progress=not args.no_progress, log=say(args))
    t_end = time.perf_counter()
    print()
    say(args)((Path(args.out) / "summary.md").read_text())  # the library's summary: its settings as options
    print(
        f"wrote {args.out}/results.csv, summary.json, summary.md, curves.png, budget.png "
        f"({s['wall_seconds'] / 60:.1f} min)"
    )
    # where the command's time outside the runs goes: on a GPU it is a large part of a short compare
    start = f"starting Python and its imports {started:.1f} s, " if started is not None else ""
    whole = f"; {started + t_end - t_model:.0f} s for the whole command" if started is not None else ""
    print(
        f"Outside the runs: {start}loading the model (JAX starts its device here) {t_data - t_model:.1f} s, the data "
        f"{t_compare - t_data:.1f} s, writing the results and figures {t_end - t_compare - s['wall_seconds']:.1f} s"
        f"{whole}."
    )
    return 0


def compare_config(args, task):
    """compare's settings from the command line (--quick's defaults under
    the options given), each checked before minutes of data loading."""
    import dataclasses

    from minitransfer.adapt import AdaptConfig
    from minitransfer.compare import CompareConfig, check_settings

    if args.quick:
        cc = CompareConfig(
            budgets=[100, 300],
            seeds=2,
            steps=20,
            val_examples=200,
            evals_per_run=4,
            adapt=AdaptConfig(steps=30, eval_every=15),
        )
    else:
        cc = CompareConfig()
    if args.adapt_steps is not None:
        cc.adapt = dataclasses.replace(
            cc.adapt, steps=args.adapt_steps, eval_every=max(1, min(cc.adapt.eval_every, args.adapt_steps))
        )
    if args.budgets is not None:
        if not args.budgets.replace(",", "").strip():
            raise ValueError("--budgets is empty; give label counts, e.g. --budgets 100,300,1000 (or all)")
        cc.budgets = parse_budgets(args.budgets)
    if args.modes:
        cc.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.modes is not None and not args.modes.replace(",", "").strip():
        raise ValueError("--modes is empty; name one or more of the modes, e.g. --modes scratch,full")
    cc.task = args.task
    cc.parallel, cc.dtype, cc.keep_checkpoints = args.parallel, args.dtype, args.keep_checkpoints
    cc.first_seed, cc.split_seed = args.first_seed, args.split_seed
    cc.unfreeze, cc.lora_rank, cc.lora_alpha = args.unfreeze, args.lora_rank, args.lora_alpha
    for name in ("seeds", "steps", "max_len", "batch_size", "pooling"):
        if getattr(args, name) is not None:
            setattr(cc, name, getattr(args, name))
    check_settings(cc)  # before minutes of data loading and adaptation (compare checks them again)
    return cc


def parse_budgets(text: str) -> list:
    """--budgets's text as compare's budgets: label counts, or 'all'."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            out.append("all")
        elif part.isdigit() and int(part) > 0:
            out.append(int(part))
        else:
            raise ValueError(f"--budgets: {part!r} is neither a positive number nor 'all'")
    repeated = sorted({str(b) for b in out if out.count(b) > 1})
    if repeated:  # each budget is a column of the tables and a point of the curves
        raise ValueError(f"--budgets: {', '.join(repeated)} given more than once")
    return out


def cmd_compare_chat(args, source: str) -> int:
    from minitransfer.chat import load_chat_dataset
    from minitransfer.chat_compare import ChatCompareConfig, check_settings, compare_chat
    from minitransfer.compare import seeds_text
    from minitransfer.convert import load_pretrained
    from minitransfer.tokenizer import check_tokenizer_fits, load_tokenizer

    ignored = [
        o
        for o, given in (
            ("--budgets", args.budgets),
            ("--pooling", args.pooling),
            ("--keep-checkpoints", args.keep_checkpoints),
            ("--text-field", args.text_field != "text"),
            ("--label-field", args.label_field != "label"),
        )
        if given
    ]
    if ignored:  # said before any work, not silently without effect
        raise ValueError(
            f"{', '.join(ignored)}: not read by compare --task chat (it trains on every training "
            f"conversation; its head reads every position)"
        )
    cc = ChatCompareConfig(steps=20, seeds=2, val_examples=200) if args.quick else ChatCompareConfig()
    if args.modes is not None:
        cc.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        if not cc.modes:
            raise ValueError("--modes is empty; name one or more of scratch, full, adapt")
    for name in ("seeds", "steps", "max_len", "batch_size"):
        if getattr(args, name) is not None:
            setattr(cc, name, getattr(args, name))
    cc.first_seed, cc.split_seed, cc.parallel, cc.dtype = args.first_seed, args.split_seed, args.parallel, args.dtype
    check_settings(cc)  # before the model and the data load (compare_chat checks them again)
    if args.adapt_steps is not None:
        if "adapt" not in cc.modes:
            raise ValueError(
                f"--adapt-steps {args.adapt_steps} has no effect: only mode adapt runs next-word steps "
                f"first (--modes {','.join(cc.modes)})"
            )
        cc.adapt_steps = args.adapt_steps
    tokenizer = load_tokenizer(source)
    base = load_pretrained(source, allow_pickle=args.allow_pickle)
    check_tokenizer_fits(tokenizer, base.config, source)
    data = load_chat_dataset(args.data or "chatterbot", split_seed=cc.split_seed)
    for n in data.notes:
        say(args)(f"data: {n}")
    print(
        f"compare --task chat: {source} on {data.spec}: modes {cc.modes} x {cc.seeds} seed(s) "
        f"({seeds_text(cc.first_seed, cc.seeds)}) = {len(cc.modes) * cc.seeds} runs -> {args.out}"
    )
    s = compare_chat(base, data, tokenizer, cc, args.out, progress=not args.no_progress, log=say(args))
    print()
    say(args)((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/results.csv, summary.json, summary.md ({s['wall_seconds'] / 60:.1f} min)")
    return 0


def process_age() -> float | None:
    """Seconds since this process started (Linux: from /proc), or None where
    that cannot be read."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        age = uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in ticks
    except (OSError, ValueError, IndexError, KeyError):
        return None
    return age if age > 0 else None  # a container's virtualised uptime can make it nonsense
