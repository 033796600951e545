"""Labelling new texts with a fine-tuned classifier: ``minitransfer predict``.

A classifier that ``finetune --task classify`` saved (``RUN/best``) reads
texts nobody has labelled yet (new tweets to triage, say) and gives each its
likeliest label and the probability of every label. Nothing here computes
the model a second way: the texts are encoded by ``encoding.encode`` (cut to
the model's ``max_len`` as ``evaluate`` cuts them, and counted) and run
through the same jitted, length-sorted evaluation step as validation
(``steps.make_eval_step`` + ``steps.predict``), so a label here is the label
``evaluate`` scores.

Input: a ``.jsonl`` file (one JSON object per line, the text in
``text_field``), a ``.csv``/``.tsv`` file with a header (the same field as a
column), or a ``.txt`` file with one text per line (any of them gzipped as
``.gz``). An empty text (an empty line, a field that is empty or only
spaces) has no label to give: it is skipped, and counted and named by its
line in the report; every output row carries the line its text came from,
so predictions join back to the input.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flax import nnx

from minitransfer.classify import ClassificationHead
from minitransfer.convert import load_pretrained, read_head_info, resolve_source, training_info
from minitransfer.data import DataError, Split
from minitransfer.encoding import encode
from minitransfer.readers import read_rows, read_text
from minitransfer.steps import COMPUTE_DTYPES, check_dtype, eval_batch_default, forward_tokens, make_eval_step, predict
from minitransfer.tokenizer import check_tokenizer_fits, load_tokenizer

INPUT_KINDS = ("jsonl", "csv", "tsv", "txt")
OUTPUT_KINDS = (".jsonl", ".csv")


@dataclasses.dataclass
class Texts:
    """The texts of an input file, with the line each starts on."""

    texts: list[str]
    lines: list[int]
    empty_lines: list[int]  # lines whose text is empty: skipped, reported
    notes: list[str]  # what reading repaired (invalid UTF-8 replaced), to report


@dataclasses.dataclass
class Predictions:
    texts: Texts
    labels: tuple[str, ...]  # the model's labels, in logit order
    logits: np.ndarray  # (N, K) float32, as the evaluation step computed them
    probabilities: np.ndarray  # (N, K) float64 softmax of the logits; rows sum to 1
    truncated: np.ndarray  # (N,) bool: the text was longer than max_len tokens and cut
    max_len: int

    @property
    def predicted(self) -> list[str]:
        return [self.labels[i] for i in self.logits.argmax(-1)]


def input_kind(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in INPUT_KINDS:
        raise DataError(
            f"{path}: unknown kind of file ({'.' + ext if ext else 'no extension'}); predict reads "
            f".jsonl (a JSON object per line), .csv or .tsv (a header row, then one text per row) or "
            f".txt (one text per line), each also gzipped (.gz)"
        )
    return ext


def read_texts(path: str | os.PathLike, text_field: str = "text") -> Texts:
    """The texts to label, from a jsonl/csv/tsv/txt file (see the module's
    docstring). Refused with the file, line and field named: a missing file,
    an unknown extension, a row without ``text_field`` or with a value there
    that is not text, and a file without one non-empty text."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected one file of texts (.jsonl, .csv, .tsv or .txt)")
    kind = input_kind(path)
    notes: list[str] = []
    if kind == "txt":
        raw = read_text(path, notes).split("\n")  # "\n" only: see data.read_rows
        if raw and raw[-1] == "":
            raw.pop()  # the file's final newline ends the last line; it starts no text
        values, lines = [line.rstrip("\r") for line in raw], list(range(1, len(raw) + 1))
        if not raw:
            raise DataError(f"{path}: the file is empty; expected one text per line")
    else:
        rows = read_rows(path, kind, notes)
        values, lines = [], []
        for i, row in enumerate(rows):
            if text_field not in row:
                raise DataError(
                    f"{path}, {rows.where(i)}: no field {text_field!r} (the row has "
                    f"{sorted(row) or 'no fields'}); choose the field holding the text with `text_field`"
                )
            value = row[text_field]
            if value is not None and not isinstance(value, str):
                raise DataError(
                    f"{path}, {rows.where(i)}: the {text_field!r} is {str(value)[:40]!r} "
                    f"({type(value).__name__}), not text; choose the text field with `text_field`"
                )
            values.append(value or "")  # (None: a csv row shorter than its header)
            lines.append(rows.lines[i] if rows.lines is not None else i + 1)
    texts, kept, empty = [], [], []
    for value, line in zip(values, lines, strict=True):
        if value.strip():
            texts.append(value)
            kept.append(line)
        else:
            empty.append(line)
    if not texts:
        raise DataError(
            f"{path}: every text is empty ({len(empty)} "
            + ("line(s)" if kind == "txt" else f"row(s), field {text_field!r}")
            + "); nothing to label"
        )
    return Texts(texts, kept, empty, notes)


def predict_texts(
    model,
    tokenizer,
    texts: Texts,
    *,
    max_len: int,
    batch_size: int | None = None,
    dtype: str = "float32",
    progress: bool = True,
) -> Predictions:
    """Every text's logits and label probabilities under a classifier: the
    texts encoded as ``evaluate`` encodes them (right-padded, cut to
    ``max_len`` tokens), in batches through the evaluation step."""
    if not isinstance(model.head, ClassificationHead):
        raise ValueError(f"predict needs a classifier; this model has a {model.head.kind} head")
    check_dtype(dtype)
    e = encode(
        Split(texts.texts, np.zeros(len(texts.texts), np.int32)), tokenizer, max_len, model.head.text_suffix(tokenizer)
    )  # (a prompt head's prompt ends every text, as in training)
    graphdef, params = nnx.split(model)
    eval_step = make_eval_step(graphdef, forward_tokens, dtype)
    logits = predict(
        eval_step,
        params,
        {"input_ids": e.input_ids, "attention_mask": e.attention_mask},
        batch_size or eval_batch_default(),
        "predict" if progress else None,
    )
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return Predictions(texts, model.head.labels, logits, z / z.sum(-1, keepdims=True), e.lengths > max_len, max_len)


def rows_of(p: Predictions, digits: int = 6) -> list[dict]:
    """One dict per text: line, text, label, probabilities (rounded to
    ``digits`` decimals) and whether the text was truncated."""
    out = []
    for i, (text, line, label) in enumerate(zip(p.texts.texts, p.texts.lines, p.predicted, strict=True)):
        out.append(
            {
                "line": line,
                "text": text,
                "label": label,
                "probabilities": {
                    name: round(float(q), digits) for name, q in zip(p.labels, p.probabilities[i], strict=True)
                },
                "truncated": bool(p.truncated[i]),
            }
        )
    return out


def write_predictions(p: Predictions, out: str | os.PathLike | None, stdout=None) -> None:
    """JSON lines to ``out`` (or to ``stdout`` where ``out`` is None), or CSV
    where ``out`` ends in .csv (one ``prob_LABEL`` column per label). A file
    is written whole or not at all (written beside, then renamed)."""
    rows = rows_of(p)
    buf = io.StringIO(newline="")
    if out is not None and str(out).lower().endswith(".csv"):
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["line", "text", "label", *(f"prob_{name}" for name in p.labels), "truncated"])
        for r in rows:
            w.writerow([r["line"], r["text"], r["label"], *r["probabilities"].values(), r["truncated"]])
    else:
        for r in rows:
            buf.write(json.dumps(r, ensure_ascii=False) + "\n")
    if out is None:
        (stdout or sys.stdout).write(buf.getvalue())
        return
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, out)


def check_out_file(out: str | None, data: str) -> None:
    """``out`` must name a .jsonl or .csv file that is not the input (``data``)."""
    if out is None:
        return
    path = Path(out)
    if not path.name.lower().endswith(OUTPUT_KINDS):
        raise ValueError(
            f"`out` {out}: expected a file name ending in .jsonl (JSON lines) or .csv; leave `out` out "
            f"to print JSON lines"
        )
    if path.is_dir():
        raise ValueError(f"`out` {out} is a folder; `out` names the file to write (.jsonl or .csv)")
    if path.exists() and Path(data).exists() and path.resolve() == Path(data).resolve():
        raise ValueError(f"`out` {out} is the `data` file; writing there would replace the texts being labelled")


def summary(p: Predictions, source: str, out: str | None, max_len_from: str = "`max_len`") -> list[str]:
    """What a run did, in lines for people: counts per label, empty texts
    skipped, texts truncated (``max_len_from``: where the length came from),
    where the rows went."""
    counts = dict.fromkeys(p.labels, 0)
    for label in p.predicted:
        counts[label] += 1
    n = len(p.texts.texts)
    lines = [
        f"labelled {n:,} text{'s' if n != 1 else ''} with {source}: "
        + ", ".join(f"{name} {c:,}" for name, c in counts.items())
    ]
    empty = p.texts.empty_lines
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        lines.append(
            f"skipped {len(empty):,} empty text{'s' if len(empty) != 1 else ''} (line{'s' if len(empty) != 1 else ''} "
            f"{shown}): no label for them"
        )
    cut = int(p.truncated.sum())
    if cut:
        lines.append(f"{cut:,} of {n:,} texts truncated to the first {p.max_len} tokens ({max_len_from})")
    lines.append(f"wrote {out}" if out is not None else "rows written to stdout as JSON lines")
    return lines


def check_classifier(source: str) -> None:
    """Refuse, from its config.json alone (before the weights load), a model
    that is not a classifier, in one line saying what was expected."""
    info = read_head_info(resolve_source(source))
    kind = info.get("head") if info else "next-word"
    if kind in ("classification", "prompt"):  # (a prompt head is a classifier that reads the next-word head)
        return
    what = {
        "next-word": "a language model (a next-word head)",
        "span": "a question-answering model (a span head, finetune --task qa)",
    }.get(kind, f"a {kind!r} head")
    raise ValueError(
        f"{source} is {what}; predict expects a classifier fine-tuned with `minitransfer finetune "
        f"--task classify` (its RUN/best folder)"
    )


def load_fine_tuned(source: str, max_len: int | None, model=None):
    """A fine-tuned model to score texts with: the model (unless given), its tokenizer, what its training
    recorded, and the tokens per text (``max_len``, else the max_len it was trained with, else n_positions)."""
    model = model if model is not None else load_pretrained(source)
    tokenizer = load_tokenizer(source)
    check_tokenizer_fits(tokenizer, model.config, source)
    info = training_info(source)
    if max_len is not None and not 1 <= max_len <= model.config.n_positions:
        raise ValueError(f"`max_len` {max_len} is outside 1..{model.config.n_positions} (the model's n_positions)")
    return model, tokenizer, info, max_len or info.get("max_len") or model.config.n_positions


def run(args, log: Callable[[str], None]) -> int:
    """``minitransfer predict`` (see cli.py)."""
    check_out_file(args.out_file, args.data)
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"`batch_size` must be at least 1, got {args.batch_size}")
    check_classifier(args.model)
    texts = read_texts(args.data, args.text_field)
    for n in texts.notes:
        log(f"data: {n}")
    model, tokenizer, info, max_len = load_fine_tuned(args.model, args.max_len)
    max_len_from = (
        "`max_len`"
        if args.max_len
        else "the max_len the model was trained with"
        if info.get("max_len")
        else "the model's n_positions"
    )
    dtype = info.get("dtype") if info.get("dtype") in COMPUTE_DTYPES else "float32"  # as it was validated
    p = predict_texts(
        model, tokenizer, texts, max_len=max_len, batch_size=args.batch_size, dtype=dtype, progress=not args.no_progress
    )
    write_predictions(p, args.out_file)
    for line in summary(p, args.model, args.out_file, max_len_from):
        log(line)
    return 0
