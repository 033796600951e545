"""What each ``minitransfer`` subcommand does, one ``cmd_*`` function each.
``cli.py`` builds the parser that routes to them (and explains every option
in ``--help``); each function is a thin layer over the package's own
functions and returns the process's exit status."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from minitransfer.assets import shipped_checkpoint
from minitransfer.cli.options import say

# ----------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------


def cmd_convert(args) -> int:
    from minitransfer.convert import load_pretrained, save_pretrained
    from minitransfer.model import num_params
    from minitransfer.runs import check_out_folder
    from minitransfer.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    if Path(args.source).exists() and Path(args.out).resolve() == Path(args.source).resolve():
        raise ValueError(
            f"--out {args.out} is the checkpoint being converted; writing there would replace its "
            f"files (and drop what minitransfer does not carry over); choose another folder"
        )
    check_out_folder(args.out, "convert")
    model = load_pretrained(args.source, allow_pickle=args.allow_pickle)
    tokenizer = None
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer, setting="tokenizer")
    else:
        try:
            tokenizer = load_tokenizer(args.source)
        except Exception as e:  # a checkpoint without tokenizer still converts
            print(f"note: no tokenizer saved ({e})", file=sys.stderr)
    files: list[str] = []
    out = save_pretrained(model, args.out, tokenizer=tokenizer, files=files)
    written = sorted(set(files))
    others = sorted(p.name for p in out.iterdir() if p.name not in written)  # there before: not the checkpoint's
    c = model.config
    print(
        f"converted {args.source} -> {out}\n"
        f"  GPT-2 n_layer={c.n_layer} n_head={c.n_head} n_embd={c.n_embd} "
        f"vocab={c.vocab_size} positions={c.n_positions}, {num_params(model.backbone):,} parameters"
        + (f" (and its {model.head.kind} head's {num_params(model.head):,})" if num_params(model.head) else "")
        + "\n"
        f"  files: {', '.join(written)}"
        + (
            f" (also in that folder, not written now: {', '.join(others[:5])}{' ...' if len(others) > 5 else ''})"
            if others
            else ""
        )
        + "\n"
        f"  took {time.perf_counter() - t0:.1f} s"
    )
    said = model.head.transformers_note()
    if said:
        say(args)(f"note: {said}")
    return 0


# ----------------------------------------------------------------------------
# next-word
# ----------------------------------------------------------------------------


def language_model(args, needs: str):
    """(--model's source, its language model, its tokenizer); refused where the model has a fine-tuned head
    (``needs``: what the command needs instead)."""
    from minitransfer.convert import load_pretrained
    from minitransfer.model import NextWordHead
    from minitransfer.tokenizer import check_tokenizer_fits, load_tokenizer

    source = model_or_default(args)
    model = load_pretrained(source, allow_pickle=args.allow_pickle)
    if not isinstance(model.head, NextWordHead):
        raise ValueError(f"{source} has a fine-tuned {model.head.kind} head; {needs}")
    tokenizer = load_tokenizer(source)
    check_tokenizer_fits(tokenizer, model.config, source)
    return source, model, tokenizer


def cmd_next_word(args) -> int:
    from minitransfer.generate import next_word_candidates

    source, model, tokenizer = language_model(args, "next-word needs a language model checkpoint")
    if args.top_k > model.config.vocab_size:  # (generate refuses such a --top-k: there it would sample nonsense)
        print(
            f"note: --top-k {args.top_k} is more than the model's {model.config.vocab_size:,} tokens: all are listed",
            file=sys.stderr,
        )
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


def _percentiles(x):
    import numpy as np

    q = np.percentile(x, [50, 90, 95, 99, 100]).round().astype(int)
    return "median {} | p90 {} | p95 {} | p99 {} | max {}".format(*q)


def cmd_data(args) -> int:
    import numpy as np

    from minitransfer.data import load_dataset
    from minitransfer.encoding import token_lengths

    if args.max_len < 1:  # before the data loads
        raise ValueError(f"--max-len must be at least 1, got {args.max_len}")
    if args.task == "chat":
        return _chat_data(args)
    d = load_dataset(args.spec, text_field=args.text_field, label_field=args.label_field)
    print(f"{args.spec}: {d.num_classes} class{'es' if d.num_classes != 1 else ''} {d.label_names}")
    for name in ("train", "validation", "test"):
        s = d.split(name)
        counts = np.bincount(s.labels, minlength=d.num_classes)
        per = ", ".join(
            f"{n}: {c} ({100 * c / max(len(s), 1):.0f}%)" for n, c in zip(d.label_names, counts, strict=True)
        )
        print(f"  {name:<10} {len(s):>7} examples   {per}")
    for n in d.notes:
        say(args)(f"  note: {n}")
    tokenizer = _tokenizer_or_none(args)
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


def _chat_data(args) -> int:
    """data --task chat: conversations, messages, replies and words per split, and token lengths in the chat format."""
    import numpy as np

    from minitransfer.chat import encode_conversation, load_chat_dataset

    d = load_chat_dataset(args.spec)
    total = {"conversations": 0, "messages": 0, "replies": 0, "words": 0}
    print(f"{args.spec}: conversations (user and assistant messages), split by conversation")
    for name in ("train", "validation", "test"):
        convs = d.split(name).conversations
        row = {
            "conversations": len(convs),
            "messages": sum(len(c) for c in convs),
            "replies": sum(m["role"] == "assistant" for c in convs for m in c),
            "words": sum(len(m["content"].split()) for c in convs for m in c),
        }
        total = {k: total[k] + v for k, v in row.items()}
        print(f"  {name:<10} " + ", ".join(f"{v:>6,} {k}" for k, v in row.items()))
    print(f"  {'all':<10} " + ", ".join(f"{v:>6,} {k}" for k, v in total.items()))
    for n in d.notes:
        say(args)(f"  note: {n}")
    tokenizer = _tokenizer_or_none(args)
    if tokenizer is None:
        return 0
    print(f"tokens per conversation in the chat format ({args.tokenizer} tokenizer):")
    for name in ("train", "validation", "test"):
        lengths = np.asarray([len(encode_conversation(c, tokenizer)[0]) for c in d.split(name).conversations])
        over = int((lengths > args.max_len).sum())
        print(
            f"  {name:<10} {_percentiles(lengths)}   --max-len {args.max_len} would skip {over} "
            f"({100 * over / len(lengths):.1f}%)"
        )
    return 0


def _tokenizer_or_none(args):
    from minitransfer.tokenizer import load_tokenizer

    try:
        return load_tokenizer(args.tokenizer, setting="tokenizer")
    except Exception as e:
        say(args)(f"(no token statistics: {e})")
        return None


# ----------------------------------------------------------------------------
# the model a run wrote: its source, evaluate, answer
# ----------------------------------------------------------------------------


def model_or_default(args) -> str:
    if args.model:
        return args.model
    p = shipped_checkpoint()
    if p is None:
        raise ValueError(
            "--model is required (a checkpoint directory, or a hub id such as gpt2 when online): "
            "no shipped checkpoint found in checkpoints/"
        )
    return str(p)


def cmd_answer(args) -> int:
    from minitransfer.convert import load_pretrained, training_info
    from minitransfer.qa import SpanHead, answer
    from minitransfer.tokenizer import check_tokenizer_fits, load_tokenizer

    model = load_pretrained(args.model)
    if not isinstance(model.head, SpanHead):
        raise ValueError(
            f"{args.model} has a {model.head.kind} head, not a question-answering (span) head; "
            f"train one with: minitransfer finetune --task qa ..."
        )
    max_len = training_info(args.model).get("max_len")  # the length it was fine-tuned at
    tokenizer = load_tokenizer(args.model)
    check_tokenizer_fits(tokenizer, model.config, args.model)
    notes: list[str] = []
    text, score = answer(model, tokenizer, args.question, args.context, max_len, notes=notes)
    for n in notes:
        say(args)(f"note: {n} (the answer can only come from what was kept)")
    print(f"answer: {text}  (score {score:.2f})")
    return 0


def cmd_evaluate(args) -> int:
    import json as _json

    from minitransfer.chat import ChatHead
    from minitransfer.convert import load_pretrained
    from minitransfer.predict import load_fine_tuned
    from minitransfer.tasks import metrics_text, task_of
    from minitransfer.train import evaluate

    if args.all_validation and args.split != "validation":
        raise ValueError(
            f"--all-validation chooses which validation examples to score; it needs "
            f"--split validation (this is --split {args.split})"
        )
    model = load_pretrained(args.model)
    model = scoring_model(args, model)  # before the data loads
    model, tokenizer, info, max_len = load_fine_tuned(args.model, args.max_len, model)
    if args.data is None and type(model.head) is ChatHead and "data" not in info:  # a language model, zero-shot
        args.data, said = "chatterbot", "the default of --task chat"
        print(f"(--data: {args.data}, {said})", file=sys.stderr)
    if args.data is None:  # what it was fine-tuned on, where recorded (a file may have moved since: then said)
        args.data, said = recorded_data(info)
        print(f"(--data: {args.data}, {said})", file=sys.stderr)
    recorded = []  # the fields and split seed the model was fine-tuned with, for those not given
    for option, default in (("text_field", "text"), ("label_field", "label"), ("split_seed", 0)):
        if getattr(args, option) is None:
            value = info.get(option)
            if isinstance(value, type(default)) and value != default:
                recorded.append(f"--{option.replace('_', '-')} {value}")
            setattr(args, option, value if isinstance(value, type(default)) else default)
    if recorded:
        print(f"({', '.join(recorded)}: as the model's config.json records its fine-tuning)", file=sys.stderr)
    data = task_of(model.head).load(
        args.data, text_field=args.text_field, label_field=args.label_field, split_seed=args.split_seed
    )
    for n in data.notes:  # rows dropped, merged or repaired: said here as finetune says them (stderr: --json)
        say(args, sys.stderr)(f"data: {n}")
    val_examples = None
    if args.split == "validation" and not args.all_validation and info.get("val_examples"):
        val_examples = info["val_examples"]
        if val_examples < len(data.validation):
            print(
                f"(validation: the fixed subset of {val_examples} examples the model was validated on "
                f"during training; --all-validation for all {len(data.validation)})",
                file=sys.stderr,
            )
    from minitransfer.steps import COMPUTE_DTYPES

    dtype = info.get("dtype") if info.get("dtype") in COMPUTE_DTYPES else "float32"  # as it was validated
    m = evaluate(
        model,
        data,
        tokenizer,
        split=args.split,
        max_len=max_len,
        val_examples=val_examples,
        log=lambda message: say(args, sys.stderr)(f"data: {message}"),
        dtype=dtype,
    )
    if args.json:
        print(_json.dumps({"split": args.split, **m}))
    else:
        print(
            f"{args.model} on {args.data} [{args.split}]: {metrics_text(m, model.head)}"
            + (f" ({m['n_truncated']} truncated to {max_len} tokens)" if m["n_truncated"] else "")
        )
    return 0


def scoring_model(args, model):
    """The model evaluate scores: as loaded, or a language model with the chat head for --task chat
    (its replies before any chat fine-tuning); refused where its head is not one for --task, or is a
    language model's otherwise."""
    from minitransfer.chat import ChatHead
    from minitransfer.model import GPT2, NextWordHead

    if args.task is not None:
        from minitransfer.tasks import get_task

        task = get_task(args.task)
        if type(model.head) is NextWordHead and task.head is ChatHead:
            # a language model's replies before any chat fine-tuning (zero-shot): the same head, the chat task's
            # data and metrics
            model = GPT2(model.backbone, ChatHead())
        elif not isinstance(model.head, task.head):
            raise ValueError(
                f"{args.model} has a {model.head.kind} head, not one for --task {args.task}"
                + (
                    " (of a language model, only --task chat scores its replies)"
                    if type(model.head) is NextWordHead
                    else ""
                )
            )
    if type(model.head) is NextWordHead:
        raise ValueError(
            f"{args.model} is a language model (a next-word head): evaluate scores a model "
            f"fine-tuned by `minitransfer finetune` on labelled data, or a language model's replies "
            f"with --task chat; for this one, try `minitransfer next-word` or `minitransfer generate`"
        )
    return model


def cmd_predict(args) -> int:
    from minitransfer.predict import run

    return run(args, log=say(args, sys.stderr))


def recorded_data(info: dict) -> tuple[str, str]:
    """evaluate's default data: the spec the model was fine-tuned on, as its
    config.json records it (by its absolute path, where recorded and still
    there); and how to say so."""
    recorded = info.get("data") if isinstance(info.get("data"), str) else None
    if recorded is None:
        return "tweets", "the default: the model does not record its data"
    spec, said = recorded, "the data the model was fine-tuned on"
    path = info.get("data_path")  # a relative spec may name another file from here: the absolute one first
    if isinstance(path, str) and recorded != path:
        from minitransfer.data import DataError, parse_spec

        try:
            there = Path(parse_spec(path)[1]).exists()
        except DataError:
            there = False
        if there:  # else moved since: the spec as given, from here (if not found there, the loader says so)
            spec, said = path, f"the data the model was fine-tuned on, given as {recorded}"
    return spec, said


# ----------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------


def cmd_generate(args) -> int:
    from minitransfer.generate import generate

    if args.num_samples < 1:  # before the model loads
        raise ValueError(f"--num-samples must be at least 1, got {args.num_samples}")
    if args.greedy and args.num_samples > 1:  # greedy takes the likeliest token: no seed changes it
        print(
            f"note: --greedy gives the same continuation every time: --num-samples {args.num_samples} prints it "
            f"once (sampling, without --greedy, gives a different one per seed)",
            file=sys.stderr,
        )
        args.num_samples = 1
    _, model, tokenizer = language_model(args, "generate needs a language model")
    ids = tokenizer.encode(args.prompt)
    for i in range(args.num_samples):
        new = generate(
            model,
            ids,
            args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed + i,
            greedy=args.greedy,
            eos_id=tokenizer.eos_token_id,
        )
        if args.num_samples > 1:
            print(f"--- sample {i + 1} (seed {args.seed + i})")
        print(args.prompt + tokenizer.decode(new))
    return 0


def cmd_chat(args) -> int:
    from minitransfer.chat import ChatHead, chat_loop, end_of_text

    source, model, tokenizer = language_model(
        args, "chat needs a language model, best one fine-tuned with `minitransfer finetune --task chat`"
    )
    end_of_text(tokenizer)  # the format needs one: said before the first message, not after it
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    what = (
        "a chat model (finetune --task chat)"
        if isinstance(model.head, ChatHead)
        else "a language model not fine-tuned for chat: expect continuations more than replies"
    )
    print(
        f"chatting with {source}, {what}; it reads {model.config.n_positions} tokens of conversation. "
        f"An empty line, end of input (Ctrl-D) or Ctrl-C ends the chat."
    )
    sys.stdout.flush()
    return chat_loop(
        model,
        tokenizer,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        echo=not sys.stdin.isatty(),
        say=say(args),
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        greedy=args.greedy,
    )


def cmd_playground(args) -> int:
    from minitransfer.apps.playground import serve

    if not 0 < args.port < 65536:  # before the models load
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    return serve(model_or_default(args), args.classifier, host=args.host, port=args.port)


def cmd_lectures(args) -> int:
    from minitransfer.apps.book import build_site, lecture_paths

    if args.only:
        stems = [p.stem for p in lecture_paths()]
        unknown = [o for o in args.only if not any(s.startswith(o) for s in stems)]
        if unknown:
            raise ValueError(
                f"--only {' '.join(unknown)}: no lecture's name starts with that; the lectures are "
                f"{', '.join(stems)} (e.g. --only 01 04)"
            )
    build_site(args.out, fast=args.fast or os.environ.get("MINITRANSFER_FAST") == "1", only=args.only)
    return 0
