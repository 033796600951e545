"""Extractive question answering: the span head (``SpanHead``) and its task, in one file.

A question-answering example is a question, a context, and the answer as one
or more stretches of the context (SQuAD gives several reference answers per
validation question). The model reads

    "Question: <question>\nContext:" <context tokens>

left to right; the span head scores every context token as the answer's
first and last token, and the answer comes back as the context's own
characters between them: the tokenizer's offsets map tokens to characters.

Question first, because GPT-2 is causal: a context token can only see what
comes before it, so it must come after the question it is read for.

Metrics are SQuAD's: exact match and token F1 after normalising case,
punctuation, articles and whitespace, each the best over the reference
answers (the definitions of the official SQuAD v1.1 evaluation script).
"""

from __future__ import annotations

import collections
import dataclasses
import re
import string
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minitransfer.data import DataError, parse_spec
from minitransfer.dropout import dropout
from minitransfer.heads import TaskHead, budgeted_splits, encode_splits, register_head
from minitransfer.readers import Rows, read_rows
from minitransfer.sources import _network_available

PROMPT = "Question: {question}\nContext:"
MAX_ANSWER_TOKENS = 30  # the longest span decoding considers, as in SQuAD baselines


@dataclasses.dataclass
class QASplit:
    questions: list[str]
    contexts: list[str]
    answers: list[list[str]]  # reference answers, each a stretch of its context
    starts: list[list[int]]  # character offset of each reference answer in its context

    def __len__(self) -> int:
        return len(self.questions)

    def take(self, idx) -> QASplit:
        return QASplit(
            *([field[i] for i in idx] for field in (self.questions, self.contexts, self.answers, self.starts))
        )

    @property
    def texts(self) -> list[str]:
        """The task's own text, once each (SQuAD repeats a paragraph for each of
        its questions): what ULMFiT's middle stage (``adapt``) trains on."""
        return list(dict.fromkeys(self.contexts))

    def subset(self, n: int | str | None, seed: int, what: str) -> QASplit:
        """``n`` examples (a number, or "all"/None for every one) in a fixed seeded order; ``what``: how a
        refusal names ``n``: the setting it comes from, in backticks (``labels``, ``val_examples``)."""
        if n is None or n == "all":
            return self
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be a number of examples or 'all', got {n!r}") from None
        if n < 1:
            raise DataError(f"{what} must be a positive number of examples, got {n!r}")
        if n > len(self):
            raise DataError(f"{what} {n} exceeds the {len(self)} examples available")
        return self.take(np.random.default_rng(seed).permutation(len(self))[:n])


@dataclasses.dataclass
class QADataset:
    train: QASplit
    validation: QASplit
    test: QASplit
    spec: str
    notes: list[str] = dataclasses.field(default_factory=list)
    # as data.Dataset's: split_seed where a split drew (the validation questions), recorded with a model
    fields: dict = dataclasses.field(default_factory=dict)

    def split(self, name: str) -> QASplit:
        if name not in ("train", "validation", "test"):
            raise DataError(f"unknown split {name!r}; expected 'train', 'validation' or 'test'")
        return getattr(self, name)


def _text(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def qa_split_from_rows(rows: list[dict], source: str) -> QASplit:
    """Rows with ``question``, ``context`` and ``answers`` (SQuAD's
    ``{"text": [...], "answer_start": [...]}``, or a list of strings) or a
    single ``answer`` string. A bad row is named by its line where the rows
    know their lines (``data.Rows``), else by its number from 1."""
    out = QASplit([], [], [], [])
    for n, row in enumerate(rows):
        i = rows.where(n) if isinstance(rows, Rows) else f"row {n + 1}"
        missing = [k for k in ("question", "context") if k not in row]
        if missing or ("answers" not in row and "answer" not in row):
            raise DataError(
                f"{source}, {i}: no field {(missing or ['answers'])[0]!r}; "
                f"it has {sorted(row)} (expected question, context and answers or answer)"
            )
        for k in ("question", "context"):
            if not isinstance(row[k], (str, bytes)):
                raise DataError(
                    f"{source}, {i}: the {k!r} is {type(row[k]).__name__} {str(row[k])[:40]!r}; expected a string"
                )
        context = _text(row["context"])
        answers = row.get("answers", row.get("answer"))
        if isinstance(answers, dict):
            if "text" not in answers:
                raise DataError(
                    f"{source}, {i}: the answers have no 'text' (it has {sorted(answers)}); expected "
                    f'SQuAD\'s {{"text": [...], "answer_start": [...]}}'
                )
            texts = list(np.atleast_1d(answers["text"]))
            starts = list(np.atleast_1d(answers.get("answer_start", [-1] * len(texts))))
            if not all(
                isinstance(s, (int, np.integer))
                and not isinstance(s, (bool, np.bool_))
                or isinstance(s, (float, np.floating))
                and float(s).is_integer()
                for s in starts
            ):
                raise DataError(
                    f"{source}, {i}: the answer_start is {answers['answer_start']!r}; expected "
                    f"whole numbers (character offsets into the context)"
                )
            starts = [int(s) for s in starts]
            if len(starts) != len(texts):  # which start goes with which answer? (was read as not in the context)
                if isinstance(rows, Rows):  # a file: the user's to fix
                    raise DataError(
                        f"{source}, {i}: {len(texts)} answer text(s) but {len(starts)} "
                        f"answer_start(s); SQuAD's answers pair them one to one"
                    )
                # a catalogue's rows (tfds: its test mocks draw the two lists at random): the texts are looked
                # for in the context, as for answers given without offsets (a moved start is counted there)
                starts = [-1] * len(texts)
        else:
            texts = list(answers) if isinstance(answers, (list, tuple)) else [answers]
            starts = [-1] * len(texts)
        bad = [t for t in texts if not isinstance(t, (str, bytes))]  # numpy's str_ and bytes_ are subclasses
        if bad:
            raise DataError(f"{source}, {i}: the answer {bad[0]!r} is {type(bad[0]).__name__}; expected strings")
        texts = [_text(t) for t in texts]
        out.questions.append(_text(row["question"]))
        out.contexts.append(context)
        out.answers.append(texts)
        out.starts.append(starts)
    return out


def load_qa_dataset(
    spec: str, *, split_seed: int = 0, val_fraction: float = 0.1, data_dir: str | None = None
) -> QADataset:
    """``tfds:squad`` (or another tfds dataset with SQuAD's features) or
    ``jsonl:PATH`` (a directory with train/test .jsonl files). SQuAD's
    validation split becomes the test split, and a seeded ``val_fraction`` of
    the training questions the validation split."""
    kind, rest = parse_spec(spec)
    notes: list[str] = []
    if kind == "tfds":
        splits = _load_tfds_qa(rest, data_dir)
    elif kind == "jsonl":
        splits = _load_jsonl_qa(rest, notes)
    else:
        raise DataError(f"question answering reads tfds:NAME (e.g. tfds:squad) or jsonl:PATH, not {spec!r}")
    if "train" not in splits or "test" not in splits:
        raise DataError(f"{spec}: needs a train and a test (or validation) split; found {sorted(splits)}")
    train, test = splits["train"], splits["test"]
    if "validation" in splits:
        validation = splits["validation"]
    else:
        order = np.random.default_rng(split_seed).permutation(len(train))
        n_val = max(1, int(round(val_fraction * len(train))))
        validation, train = train.take(order[:n_val]), train.take(order[n_val:])
        notes.append(f"validation: {n_val} of the training questions, split_seed={split_seed}")
        return QADataset(train, validation, test, spec, notes, {"split_seed": split_seed})
    return QADataset(train, validation, test, spec, notes)


def _load_tfds_qa(name: str, data_dir: str | None) -> dict[str, QASplit]:
    try:  # here: slow to import, and only tfds: specs need it
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("tfds: specs need tensorflow-datasets: pip install tensorflow-datasets") from None
    out = {}
    for split, ours in (("train", "train"), ("validation", "test")):
        try:
            src = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception:
            if not _network_available():
                raise DataError(
                    f"tfds:{name} is not downloaded yet, and there is no network to download it; "
                    f"use a jsonl:PATH spec with question/context/answers rows"
                ) from None
            src = tfds.data_source(name, split=split, data_dir=data_dir, download=True)
        out[ours] = qa_split_from_rows([dict(ex) for ex in src], f"tfds:{name} {split}")
    return out


def _load_jsonl_qa(path: str, notes: list[str]) -> dict[str, QASplit]:
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{p}: expected a directory with train.jsonl and test.jsonl (validation.jsonl optional)")
    out = {}
    for name in ("train", "validation", "test"):
        f = p / f"{name}.jsonl"
        if f.exists():  # read as data.py reads any jsonl: invalid UTF-8 counted, lines split on "\n" only
            out[name] = qa_split_from_rows(read_rows(f, "jsonl", notes), str(f))
    return out


# ----------------------------------------------------------------------------
# Encoding: question + context -> tokens, answer characters -> token positions
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class EncodedQA:
    input_ids: np.ndarray  # (N, T) int32: prompt tokens, then context tokens, right-padded
    attention_mask: np.ndarray  # (N, T) int32
    context_mask: np.ndarray  # (N, T) int32, 1 = a context token (where an answer may start or end)
    start: np.ndarray  # (N,) int32 position of the answer's first token (0 where it was cut off)
    end: np.ndarray  # (N,) int32 position of its last token
    offsets: np.ndarray  # (N, T, 2) int32 character span of each context token in its context; -1 elsewhere
    contexts: list[str]
    answers: list[list[str]]
    n_truncated: int  # contexts cut to fit max_len
    notes: list[str]

    def __len__(self) -> int:
        return len(self.contexts)


def _answer_chars(context: str, text: str, start: int) -> tuple[int, int, bool] | None:
    """The answer's character span without surrounding whitespace, trusting
    ``start`` only where the text is there, and whether ``start`` was given
    but wrong (the span is then the text's occurrence nearest to it, or its
    first where no start was given: counted by the caller, since a repair the
    user is not told about hides a data bug)."""
    moved = False
    if 0 <= start and context[start : start + len(text)] == text:
        a, b = start, start + len(text)
    else:
        found = [m.start() for m in re.finditer(re.escape(text), context)] if text.strip() else []
        if not found:
            return None
        at = min(found, key=lambda k: abs(k - start)) if start >= 0 else found[0]
        a, b, moved = at, at + len(text), start >= 0
    while a < b and context[a].isspace():
        a += 1
    while b > a and context[b - 1].isspace():
        b -= 1
    return (a, b, moved) if a < b else None


def _trim(context: str, offsets) -> list[tuple[int, int]]:
    """Token character spans without the leading space byte-level BPE folds into a word's token."""
    out = []
    for s, e in offsets:
        while s < e and context[s].isspace():
            s += 1
        out.append((s, e))
    return out


def encode_qa(split: QASplit, tokenizer, max_len: int, drop_unanswerable: bool = False) -> EncodedQA:
    """Tokenise every (question, context); find the first reference answer's
    tokens. Contexts longer than what ``max_len`` leaves are cut (counted).
    Where the answer is cut off or is not in its context: training drops the
    example (``drop_unanswerable``, counted), evaluation keeps it (it then
    cannot be answered, and counts against the scores)."""
    if max_len < 8:
        raise DataError(f"`max_len` must be at least 8 for question answering, got {max_len}")
    N = len(split)
    ids = np.zeros((N, max_len), np.int32)
    mask = np.zeros((N, max_len), np.int32)
    ctx_mask = np.zeros((N, max_len), np.int32)
    offsets = np.full((N, max_len, 2), -1, np.int32)
    start = np.zeros(N, np.int32)
    end = np.zeros(N, np.int32)
    prompts = tokenizer([PROMPT.format(question=q) for q in split.questions], add_special_tokens=False)["input_ids"]
    ctx = tokenizer(split.contexts, add_special_tokens=False, return_offsets_mapping=True)
    keep, n = [], collections.Counter()  # n: how many examples had what done to them (encoding_notes)
    for i in range(N):
        p = prompts[i]
        if len(p) > max_len // 2:  # keep room for the context: the question's end matters most
            p, n["long_question"] = p[-(max_len // 2) :], n["long_question"] + 1
        room = max_len - len(p)
        c_ids, c_off = ctx["input_ids"][i], _trim(split.contexts[i], ctx["offset_mapping"][i])
        if len(c_ids) > room:
            c_ids, c_off, n["truncated"] = c_ids[:room], c_off[:room], n["truncated"] + 1
        row = p + c_ids
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
        ctx_mask[i, len(p) : len(row)] = 1
        if c_off:
            offsets[i, len(p) : len(row)] = np.asarray(c_off, np.int32)
        span = _answer_chars(
            split.contexts[i],
            split.answers[i][0] if split.answers[i] else "",
            split.starts[i][0] if split.starts[i] else -1,
        )
        if span is None:
            n["missing"] += 1
            ok = False
        else:
            a, b, moved = span
            n["moved"] += moved
            toks = [len(p) + k for k, (s, e) in enumerate(c_off) if e > a and s < b]  # tokens overlapping it
            ok = bool(toks) and c_off[toks[-1] - len(p)][1] >= b  # the whole answer survived truncation
            if ok:
                start[i], end[i] = toks[0], toks[-1]
            else:
                n["cut_answer"] += 1
        keep.append(ok or not drop_unanswerable)
    k = np.flatnonzero(keep)
    if not len(k):
        raise DataError(
            f"no example of {N} has its answer inside the first {max_len} tokens; raise `max_len` or check the answers"
        )
    return EncodedQA(
        ids[k],
        mask[k],
        ctx_mask[k],
        start[k],
        end[k],
        offsets[k],
        [split.contexts[j] for j in k],
        [split.answers[j] for j in k],
        n["truncated"],
        encoding_notes(n, N, max_len, drop_unanswerable),
    )


def encoding_notes(n: collections.Counter, total: int, max_len: int, drop_unanswerable: bool) -> list[str]:
    """What ``encode_qa`` says it did to some of the ``total`` examples (``n``: how many of each)."""
    notes = []
    if n["truncated"]:
        notes.append(f"{n['truncated']} of {total} contexts cut to fit `max_len` {max_len} tokens")
    if n["long_question"]:
        notes.append(f"{n['long_question']} question(s) longer than half of `max_len` kept their last tokens only")
    what = "dropped" if drop_unanswerable else "kept (unanswerable: they count as misses)"
    if n["missing"]:
        notes.append(f"{n['missing']} example(s) whose answer is not in its context {what}")
    if n["cut_answer"]:
        notes.append(f"{n['cut_answer']} example(s) whose answer was cut off with the context {what}")
    if n["moved"]:
        notes.append(
            f"{n['moved']} example(s) whose answer_start did not point at the answer's text: the text's "
            f"first occurrence in the context was used instead"
        )
    return notes


# ----------------------------------------------------------------------------
# Decoding and SQuAD's metrics
# ----------------------------------------------------------------------------


def best_spans(
    outputs: np.ndarray,
    enc: EncodedQA,
    max_answer_tokens: int = MAX_ANSWER_TOKENS,
) -> list[tuple[str, float]]:
    """For each example: the context span with the highest start + end score
    (start <= end < start + max_answer_tokens, both in the context), as the
    context's own text, with that score."""
    out = []
    for i in range(len(enc)):
        pos = np.flatnonzero(enc.context_mask[i])  # (P,) context positions
        if not len(pos):  # an empty context holds no answer
            out.append(("", float("-inf")))
            continue
        s, e = outputs[i, pos, 0].astype(np.float64), outputs[i, pos, 1].astype(np.float64)  # (P,), (P,)
        total = s[:, None] + e[None, :]  # (P, P): start a, end b
        gap = np.arange(len(pos))[None, :] - np.arange(len(pos))[:, None]  # b - a
        total = np.where((gap >= 0) & (gap < max_answer_tokens), total, -np.inf)
        a, b = np.unravel_index(np.argmax(total), total.shape)
        lo, hi = enc.offsets[i, pos[a], 0], enc.offsets[i, pos[b], 1]
        out.append((enc.contexts[i][lo:hi].strip(), float(total[a, b])))
    return out


def normalize_answer(s: str) -> str:
    """Lower case, no punctuation, no articles (a, an, the), single spaces: SQuAD's normalisation."""
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _f1(prediction: str, truth: str) -> float:
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((collections.Counter(p) & collections.Counter(t)).values())
    if common == 0:  # v1.1's script: also when both normalise to nothing
        return 0.0
    precision, recall = common / len(p), common / len(t)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], answers: list[list[str]]) -> dict:
    """exact_match and f1 (fractions in [0, 1]), each the best over an example's reference answers."""
    em = [
        max(float(normalize_answer(p) == normalize_answer(a)) for a in refs) if refs else 0.0
        for p, refs in zip(predictions, answers, strict=True)
    ]
    f1 = [max(_f1(p, a) for a in refs) if refs else 0.0 for p, refs in zip(predictions, answers, strict=True)]
    return {"exact_match": float(np.mean(em)), "f1": float(np.mean(f1)), "n": len(predictions)}


# ----------------------------------------------------------------------------
# The span head and its task
# ----------------------------------------------------------------------------


class SpanTask(TaskHead):
    """What a span head does around its forward pass (``SpanHead`` below): the task."""

    best_metric = "f1"
    metric_names = {"exact_match": "exact match", "f1": "F1"}
    batch_fields = ("context_mask", "start", "end")
    compare_metrics = ("f1", "exact_match")
    budget_unit = "questions"

    def loss(self, outputs, batch):
        """Cross-entropy of the true start and end positions, each over the context's positions."""
        allowed = batch["context_mask"].astype(bool)[:, :, None]  # (B, T, 1)
        scores = jnp.where(allowed, outputs, jnp.finfo(outputs.dtype).min)  # (B, T, 2)
        start = optax.softmax_cross_entropy_with_integer_labels(scores[:, :, 0], batch["start"])  # (B,)
        end = optax.softmax_cross_entropy_with_integer_labels(scores[:, :, 1], batch["end"])  # (B,)
        return (start + end).mean() / 2

    def metrics(self, outputs, examples):
        return squad_scores([text for text, _ in best_spans(outputs, examples)], examples.answers)

    @classmethod
    def for_data(cls, n_embd, data, *, dropout=0.1, seed=0, **options):
        return cls(n_embd, dropout=dropout, seed=seed)

    def check_data(self, data):
        if not isinstance(data, QADataset):
            raise ValueError("the span head answers questions: it needs question-answering data (`task` qa)")

    def prepare(
        self,
        data,
        tokenizer,
        *,
        max_len,
        budget,
        seed,
        val_examples,
        log,
        splits=("train", "validation", "test"),
        training=True,
    ):
        parts = budgeted_splits(data, splits, budget, seed, val_examples, log, "examples")

        def encode(name, examples):  # training cannot learn from an answer it cannot see; evaluation counts a miss
            return encode_qa(examples, tokenizer, max_len, drop_unanswerable=training and name == "train")

        return encode_splits(parts, splits, encode, self.batch_fields, log)

    def describe(self):
        return {"dropout": self.dropout}

    @classmethod
    def from_info(cls, info, n_embd, source):
        return cls(n_embd, dropout=info.get("dropout", 0.1))


@register_head
class SpanHead(SpanTask):
    """Hidden states (B, T, C) -> start and end scores of an answer span (B, T, 2).

    Extractive question answering: the input is the question followed by a
    context, and the answer is a stretch of the context. One linear layer
    scores every position as the answer's first token (``[..., 0]``) and as
    its last (``[..., 1]``). Which positions may be chosen (context tokens,
    not the question or padding) is the batch's ``context_mask``: the loss and
    the decoding (``best_spans``) mask the rest, so the head itself stays a
    plain per-token projection like the next-word head.
    """

    kind = "span"

    def __init__(self, n_embd: int, *, dropout: float = 0.1, seed: int = 0):
        self.dropout = dropout
        self.qa_outputs = nnx.Linear(n_embd, 2, kernel_init=nnx.initializers.normal(0.02), rngs=nnx.Rngs(seed))

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        return self.qa_outputs(dropout(hidden, self.dropout, dropout_key))  # (B, T, 2)


def answer(
    model, tokenizer, question: str, context: str, max_len: int | None = None, notes: list[str] | None = None
) -> tuple[str, float]:
    """The answer a span model finds in ``context``, and its score. What the
    encoding had to cut (a context longer than ``max_len`` leaves room for)
    is appended to ``notes``: the answer can only come from what is left."""
    if not question.strip() or not context.strip():
        raise ValueError(
            f"an empty {'question' if not question.strip() else 'context'}: a span model answers "
            f"a question from a context, so both need text"
        )
    max_len = min(max_len or model.config.n_positions, model.config.n_positions)
    enc = encode_qa(QASplit([question], [context], [[""]], [[-1]]), tokenizer, max_len)
    if notes is not None:  # (`minitransfer answer` sets no max_len: its length is the model's fine-tuning one)
        notes.extend(
            n.replace(
                f"`max_len` {max_len} tokens", f"the {max_len} tokens the model reads (its fine-tuning max_len)"
            ).replace("half of `max_len`", f"half of those {max_len}")
            for n in enc.notes
            if "contexts cut to fit" in n or "longer than half" in n
        )
    outputs = np.asarray(model(jnp.asarray(enc.input_ids), jnp.asarray(enc.attention_mask)), np.float32)
    return best_spans(outputs, enc)[0]


# ----------------------------------------------------------------------------
# A toy task, to watch a span head learn in seconds (the tests and lecture 8)
# ----------------------------------------------------------------------------

_FILLER = (
    "we walked along the river and talked about the weather for a while then went home "
    "after lunch because it started to rain quite hard over the hills"
).split()
_CITIES = ["Paris", "New York", "Tokyo", "Buenos Aires", "Cairo", "Oslo", "Hong Kong", "Lima", "Sydney", "Rome"]


def toy_city_questions(n: int, seed: int) -> QASplit:
    """ "Which city?" over a sentence of filler words with one city (one or
    two words) somewhere in it. Learnable from the tokens alone, and far from
    chance: a random span of the ~20 context tokens is right about 1 time in 200."""
    rng = np.random.default_rng(seed)
    out = QASplit([], [], [], [])
    for _ in range(n):
        words = list(rng.choice(_FILLER, size=int(rng.integers(8, 16))))
        city = str(rng.choice(_CITIES))
        k = int(rng.integers(0, len(words) + 1))
        before = " ".join(words[:k])
        out.questions.append("Which city?")
        out.contexts.append(" ".join(x for x in (before, city, " ".join(words[k:])) if x))
        out.answers.append([city])
        out.starts.append([len(before) + 1 if before else 0])
    return out
