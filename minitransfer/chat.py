"""Conversation as a fine-tuning target: the chat head (``ChatHead``) and its task, in one file.

A chat model is a language model fine-tuned on dialogues. Nothing new is
added to the network: the head is GPT-2's own next-word head (tied to the
token embedding). What makes it a *chat* model is the text it is trained on
and which of its tokens count in the loss.

The format
----------
A conversation (alternating ``user`` and ``assistant`` messages) becomes one
token sequence, built segment by segment::

    <|endoftext|>User: Hello\\nAssistant: Hi there!<|endoftext|>User: How are you?\\nAssistant: Fine.<|endoftext|>
    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    prompt (masked)                      reply (in the loss)        prompt (masked)                  reply

* The roles are plain text markers, ``User:`` and ``Assistant:``. Words a
  pretrained model has read before (in scripts, interviews, forums), so it
  starts from some idea of a dialogue; no new token has to be added to the
  vocabulary (which would need a new, untrained row in the embedding).
* Each reply ends with the end-of-text token. The model learns to emit it,
  which is how ``minitransfer chat`` knows that a reply is over; and a
  conversation starts with it, as GPT-2 starts a document.
* The loss is on the replies only: the reply's tokens and the end-of-text
  that closes it. The user's words and the role markers are context the
  model reads but is not asked to predict; training on them too would teach
  it to write the user's side of the conversation as well.

TransferTransfo (Wolf et al. 2019, arXiv 1901.08149), the reference for
fine-tuning GPT for dialogue, uses new special tokens for the speakers and
adds *dialogue-state embeddings* (a learned vector per speaker, added to
every token's input like the position embedding), and trains a next-utterance
classifier beside the language model. Here the speaker is said in words
instead, which needs no change to the model and keeps its loss the plain
next-word loss, masked: the smallest step from a language model to a chat
model.

Data
----
``jsonl:PATH``: rows ``{"messages": [{"role": "user"|"assistant",
"content": "..."}, ...]}``, a single file (split 80/10/10 by conversation) or
a folder with ``train.jsonl`` and ``test.jsonl`` (``validation.jsonl``
optional; else 10% of train). A bad row (no messages, an unknown role, an
empty content, no assistant turn) is an error that names its file and line.

``chatterbot[:LANGUAGE]`` (default English): the conversations that ship
with the PyPI package ``chatterbot-corpus`` (BSD), read from its YAML files;
each conversation is a list of utterances, taken as user, assistant, user,
... A conversation that does not fit this (a single utterance: no reply) is
skipped and counted, since the files are not the user's to fix.

Held-out data is split by conversation, never by turn: a test reply's own
conversation is never in training. A conversation longer than ``max_len``
tokens is skipped and counted (it would otherwise lose its last replies, or
its first turns, without a word).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from minitransfer import generate
from minitransfer.data import DataError, _find_split_file, parse_spec
from minitransfer.heads import TaskHead, budgeted_splits, encode_splits, register_head
from minitransfer.model import NextWordHead
from minitransfer.readers import read_rows

USER = "User:"
ASSISTANT = "Assistant:"
ROLES = ("user", "assistant")
MARKERS = {"user": USER, "assistant": ASSISTANT}


# ----------------------------------------------------------------------------
# Conversations and their splits
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class ChatSplit:
    conversations: list[list[dict]]  # each a list of {"role": "user"|"assistant", "content": str}

    def __len__(self) -> int:
        return len(self.conversations)

    def take(self, idx) -> ChatSplit:
        return ChatSplit([self.conversations[i] for i in idx])

    @property
    def texts(self) -> list[str]:
        """Each conversation as the text the model reads (``format_text``): what
        ULMFiT's middle stage (``adapt``) trains on."""
        return [format_text(c) for c in self.conversations]

    def subset(self, n, seed: int, what: str) -> ChatSplit:
        """``n`` conversations (a number, or "all"/None for every one) in a fixed seeded order; ``what``: how
        a refusal names ``n``: the setting it comes from, in backticks (``labels``, ``val_examples``)."""
        if n is None or n == "all":
            return self
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be a number of conversations or 'all', got {n!r}") from None
        if n < 1:
            raise DataError(f"{what} must be a positive number of conversations, got {n!r}")
        if n > len(self):
            raise DataError(f"{what} {n} exceeds the {len(self)} training conversations available")
        return self.take(np.random.default_rng(seed).permutation(len(self))[:n])


@dataclasses.dataclass
class ChatDataset:
    train: ChatSplit
    validation: ChatSplit
    test: ChatSplit
    spec: str
    notes: list[str] = dataclasses.field(default_factory=list)
    fields: dict = dataclasses.field(default_factory=dict)  # split_seed where a split drew, recorded with a model

    def split(self, name: str) -> ChatSplit:
        if name not in ("train", "validation", "test"):
            raise DataError(f"unknown split {name!r}; expected 'train', 'validation' or 'test'")
        return getattr(self, name)


def format_text(conversation: list[dict]) -> str:
    """A conversation as readable text (the model's tokens are ``encode_conversation``'s)."""
    return "".join(
        f"{MARKERS[m['role']]} {m['content']}" + ("\n" if m["role"] == "user" else "<|endoftext|>")
        for m in conversation
    )


def messages_from_row(row: dict, where: str) -> list[dict]:
    """A jsonl row's ``messages``, checked: every problem is an error naming ``where`` (file and line)."""
    if "messages" not in row:
        raise DataError(
            f"{where}: no field 'messages'; it has {sorted(row)} (expected {{\"messages\": "
            f'[{{"role": "user", "content": "..."}}, {{"role": "assistant", ...}}]}})'
        )
    out = check_messages(row["messages"], where)
    if not any(m["role"] == "assistant" for m in out):
        raise DataError(
            f"{where}: no assistant message; a chat model learns from the replies, so each "
            f"conversation needs at least one message with role 'assistant'"
        )
    return out


def check_messages(msgs, where: str) -> list[dict]:
    """A list of ``{"role", "content"}`` messages, checked (their content stripped)."""
    if not isinstance(msgs, list) or not msgs:
        raise DataError(
            f"{where}: 'messages' is {type(msgs).__name__} {str(msgs)[:40]!r}; expected a non-empty "
            f'list of {{"role", "content"}} objects'
        )
    out = []
    for k, m in enumerate(msgs):
        at = f"{where}, messages[{k}]"
        if not isinstance(m, dict):
            raise DataError(f"{at}: expected an object with 'role' and 'content', got {type(m).__name__}")
        for field in ("role", "content"):
            if field not in m:
                raise DataError(f"{at}: no field {field!r}; it has {sorted(m)}")
        if m["role"] not in ROLES:
            raise DataError(f"{at}: unknown role {m['role']!r}; expected 'user' or 'assistant'")
        if not isinstance(m["content"], str):
            raise DataError(
                f"{at}: the 'content' is {type(m['content']).__name__} {str(m['content'])[:40]!r}; expected a string"
            )
        if not m["content"].strip():
            raise DataError(f"{at}: the 'content' is empty; every message needs text")
        out.append({"role": m["role"], "content": m["content"].strip()})
    return out


def _jsonl_conversations(path: Path, notes: list[str]) -> list[list[dict]]:
    rows = read_rows(path, "jsonl", notes)
    return [messages_from_row(row, f"{path}, {rows.where(i)}") for i, row in enumerate(rows)]


def chatterbot_dir(language: str = "english") -> Path:
    """The folder of ``chatterbot-corpus``'s YAML files for ``language``, found
    without importing the package (its code is not needed, only its data)."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the 'chatterbot' conversations come from the PyPI package chatterbot-corpus: pip install chatterbot-corpus"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "data"
    d = root / language
    if not d.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise DataError(f"chatterbot:{language}: no such language in {root}; it has {', '.join(have) or 'none'}")
    return d


def chatterbot_conversations(language: str, notes: list[str]) -> list[list[dict]]:
    """Every conversation of the corpus's ``language`` files (sorted by name),
    utterances alternating user, assistant, user, ... The YAML is read with
    PyYAML's BaseLoader, which keeps every value a string (the default loader
    would read a reply "yes" as the boolean True, and "no" as False)."""
    out, n_short, n_bad, n_files = [], 0, 0, 0
    for f in sorted(chatterbot_dir(language).glob("*.yml")):
        n_files += 1
        try:
            doc = yaml.load(f.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
        except yaml.YAMLError as e:
            raise DataError(f"{f}: not valid YAML ({str(e).splitlines()[0]})") from None
        convs = doc.get("conversations", []) if isinstance(doc, dict) else []
        for conv in convs:
            if not isinstance(conv, list) or not all(isinstance(u, str) and u.strip() for u in conv):
                n_bad += 1
                continue
            if len(conv) < 2:
                n_short += 1
                continue
            out.append([{"role": ROLES[k % 2], "content": u.strip()} for k, u in enumerate(conv)])
    if n_files == 0:
        raise DataError(f"chatterbot:{language}: no .yml files in {chatterbot_dir(language)}")
    notes.append(
        f"chatterbot:{language}: {len(out)} conversations from {n_files} files"
        + (f"; {n_short} single-utterance conversation(s) skipped (no reply to learn)" if n_short else "")
        + (f"; {n_bad} conversation(s) with an empty or non-text utterance skipped" if n_bad else "")
    )
    return out


def parse_chat_spec(spec: str) -> tuple[str, str]:
    if spec == "chatterbot" or spec.startswith("chatterbot:"):
        return "chatterbot", spec.split(":", 1)[1] if ":" in spec else "english"
    try:
        kind, rest = parse_spec(spec)
    except DataError as e:
        raise DataError(f"{e}; for `task` chat: 'chatterbot[:LANGUAGE]' or 'jsonl:PATH'") from None
    if kind != "jsonl":
        raise DataError(
            f"`task` chat reads 'chatterbot[:LANGUAGE]' (the offline default) or 'jsonl:PATH' with "
            f'{{"messages": [...]}} rows, not {spec!r}'
        )
    return kind, rest


def _dedupe(convs: list[list[dict]], notes: list[str], what: str) -> list[list[dict]]:
    """Each conversation once: a copy on both sides of the train/test line would be scored from memory."""
    seen, out = set(), []
    for c in convs:
        key = tuple((m["role"], m["content"]) for m in c)
        if key not in seen:
            seen.add(key)
            out.append(c)
    if len(out) < len(convs):
        notes.append(f"{what}: {len(convs) - len(out)} repeated conversation(s) kept once")
    return out


def load_chat_dataset(spec: str, *, split_seed: int = 0) -> ChatDataset:
    """``chatterbot[:LANGUAGE]`` or ``jsonl:PATH`` as train/validation/test, split by conversation."""
    kind, rest = parse_chat_spec(spec)
    notes: list[str] = []
    fields: dict = {}
    rng = np.random.default_rng(split_seed)
    if kind == "chatterbot" or not Path(rest).is_dir():
        if kind == "chatterbot":
            convs = chatterbot_conversations(rest, notes)
        elif Path(rest).exists():
            convs = _jsonl_conversations(Path(rest), notes)
        else:
            raise DataError(f"{rest}: no such file or directory")
        convs = _dedupe(convs, notes, spec)
        order = rng.permutation(len(convs))
        n_val = n_test = max(1, int(round(0.1 * len(convs))))
        if len(convs) - n_val - n_test < 1:
            raise DataError(
                f"{spec}: {len(convs)} conversation(s) are too few to split into train, validation "
                f"and test (at least 3)"
            )
        split = ChatSplit(convs)
        test, validation, train = (
            split.take(order[:n_test]),
            split.take(order[n_test : n_test + n_val]),
            split.take(order[n_test + n_val :]),
        )
        notes.append(f"split 80/10/10 by conversation, split_seed={split_seed}")
        fields["split_seed"] = split_seed
    else:
        d = Path(rest)
        files = {s: _find_split_file(d, s, "jsonl") for s in ("train", "validation", "test")}
        if files["train"] is None or files["test"] is None:
            raise DataError(
                f"{d}: a chat data directory needs train.jsonl and test.jsonl (validation.jsonl "
                f"optional); it holds {sorted(p.name for p in d.iterdir())}"
            )
        parts = {s: ChatSplit(_jsonl_conversations(f, notes)) for s, f in files.items() if f is not None}
        train, test = parts["train"], parts["test"]
        if "validation" in parts:
            validation = parts["validation"]
        else:
            order = rng.permutation(len(train))
            n_val = max(1, int(round(0.1 * len(train))))
            if len(train) - n_val < 1:
                raise DataError(
                    f"{files['train']}: {len(train)} conversation(s); at least 2 are needed to set "
                    f"one aside for validation (or give validation.jsonl)"
                )
            validation, train = train.take(order[:n_val]), train.take(order[n_val:])
            notes.append(f"validation: {n_val} of the training conversations, split_seed={split_seed}")
            fields["split_seed"] = split_seed
    return ChatDataset(train, validation, test, spec, notes, fields)


# ----------------------------------------------------------------------------
# Encoding: conversations -> token ids, next-token targets and the reply mask
# ----------------------------------------------------------------------------


def end_of_text(tokenizer) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no end-of-text token; the chat format ends each reply with one")
    return int(eos)


def encode_conversation(conversation: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    """(token ids, reply flags): ``flags[t]`` is 1 where token t belongs to a
    reply (its words and the end-of-text that closes it), 0 for the prompt
    (the opening end-of-text, the user's turns, the role markers). Each
    segment is encoded on its own, exactly as ``minitransfer chat`` builds its
    prompt, so training and chatting see the same tokens."""
    eos = end_of_text(tokenizer)
    ids, flags = [eos], [0]
    for m in conversation:
        if m["role"] == "user":
            seg = tokenizer.encode(f"{USER} {m['content']}\n", add_special_tokens=False)
            ids += seg
            flags += [0] * len(seg)
        else:
            marker = tokenizer.encode(ASSISTANT, add_special_tokens=False)
            reply = tokenizer.encode(f" {m['content']}", add_special_tokens=False) + [eos]
            ids += marker + reply
            flags += [0] * len(marker) + [1] * len(reply)
    return ids, flags


def prompt_ids(history: list[dict], tokenizer) -> list[int]:
    """The tokens a chat model reads before its next reply: the history, then ``Assistant:``."""
    ids, _ = encode_conversation(history, tokenizer)
    return ids + tokenizer.encode(ASSISTANT, add_special_tokens=False)


@dataclasses.dataclass
class EncodedChat:
    input_ids: np.ndarray  # (N, T) int32: the conversation's tokens, right-padded
    attention_mask: np.ndarray  # (N, T) int32
    targets: np.ndarray  # (N, T) int32: the token after each position (0 where there is none)
    loss_mask: np.ndarray  # (N, T) int32: 1 where the target is a reply token (what the loss and metrics count)
    n_truncated: int  # always 0: an over-long conversation is skipped (n_skipped), not cut
    n_skipped: int
    notes: list[str]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_chat(split: ChatSplit, tokenizer, max_len: int) -> EncodedChat:
    """Every conversation that fits ``max_len`` tokens; the others are skipped and counted."""
    rows = []
    for conv in split.conversations:
        ids, flags = encode_conversation(conv, tokenizer)
        if len(ids) <= max_len:
            rows.append((ids, flags))
    n_skipped = len(split) - len(rows)
    notes = (
        [f"{n_skipped} of {len(split)} conversation(s) longer than `max_len` {max_len} tokens skipped"]
        if n_skipped
        else []
    )
    if not rows:
        raise DataError(
            f"no conversation of {len(split)} fits `max_len` {max_len} tokens; raise `max_len` (up to "
            f"the model's n_positions) or give shorter conversations"
        )
    N = len(rows)
    ids = np.zeros((N, max_len), np.int32)
    mask = np.zeros((N, max_len), np.int32)
    targets = np.zeros((N, max_len), np.int32)
    loss_mask = np.zeros((N, max_len), np.int32)
    for i, (row, flags) in enumerate(rows):
        L = len(row)
        ids[i, :L] = row
        mask[i, :L] = 1
        targets[i, : L - 1] = row[1:]  # position t predicts token t + 1
        loss_mask[i, : L - 1] = flags[1:]  # ... and counts where token t + 1 is a reply's
    return EncodedChat(ids, mask, targets, loss_mask, 0, n_skipped, notes)


def reply_metrics(scores: np.ndarray, loss_mask: np.ndarray) -> dict:
    """From per-token (log-probability of the target, 1 if it was the likeliest
    token) (N, T, 2) and the reply mask (N, T): the mean loss on reply tokens,
    its perplexity (exp of the loss) and the next-token accuracy on them."""
    m = loss_mask.astype(np.float64)
    n = m.sum()
    loss = float(-(scores[..., 0].astype(np.float64) * m).sum() / n)
    return {
        "perplexity": float(np.exp(loss)),
        "accuracy": float((scores[..., 1] * m).sum() / n),
        "loss": loss,
        "n": int(len(loss_mask)),
        "n_tokens": int(n),
    }


# ----------------------------------------------------------------------------
# The chat head and its task
# ----------------------------------------------------------------------------


class ChatTask(TaskHead):
    """What a chat head does around the next-word head's forward pass (``ChatHead`` below): the task."""

    best_metric = "perplexity"
    best_is_lower = True
    metric_names = {"perplexity": "reply perplexity", "accuracy": "reply next-token accuracy", "loss": "reply loss"}
    batch_fields = ("targets", "loss_mask")

    def loss(self, outputs, batch):
        """Cross-entropy of token t+1 given tokens <= t, averaged over the reply
        tokens of the whole batch: outputs (B, T, V), targets and loss_mask (B, T).
        The prompt's positions are multiplied by 0, so their targets cannot matter."""
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs, batch["targets"])  # (B, T)
        m = batch["loss_mask"].astype(jnp.float32)  # (B, T)
        return (ce * m).sum() / jnp.maximum(m.sum(), 1.0)

    def scores(self, outputs, batch):
        """What evaluation keeps of the logits (B, T, V): per position, the
        log-probability of the target and whether it was the likeliest token,
        (B, T, 2). The full logits of a validation set would be N x T x V
        floats (a gigabyte for 100 conversations of 128 tokens with GPT-2's
        50,257-token vocabulary)."""
        logp = jax.nn.log_softmax(outputs, axis=-1)  # (B, T, V)
        target = jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]  # (B, T)
        hit = (jnp.argmax(outputs, axis=-1) == batch["targets"]).astype(jnp.float32)  # (B, T)
        return jnp.stack([target, hit], axis=-1)  # (B, T, 2)

    def metrics(self, outputs, examples):
        return reply_metrics(outputs, examples.loss_mask)

    @classmethod
    def for_data(cls, n_embd, data, *, dropout=0.1, seed=0, **options):
        return cls()

    def check_data(self, data):
        if not isinstance(data, ChatDataset):
            raise ValueError("the chat head learns replies: it needs conversation data (`task` chat)")

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
        parts = budgeted_splits(data, splits, budget, seed, val_examples, log, "conversations")

        def encode(name, conversations):
            return encode_chat(conversations, tokenizer, max_len)

        return encode_splits(parts, splits, encode, self.batch_fields, log)

    def describe(self):
        return {
            "format": "role markers as text, end-of-text after each reply (minitransfer/chat.py)",
            "user_marker": USER,
            "assistant_marker": ASSISTANT,
        }

    @classmethod
    def from_info(cls, info, n_embd, source):
        said = (info.get("user_marker", USER), info.get("assistant_marker", ASSISTANT))
        if said != (USER, ASSISTANT):
            raise ValueError(
                f"{source}: this chat model was trained with role markers {said}; this minitransfer "
                f"writes {(USER, ASSISTANT)}"
            )
        return cls()


@register_head
class ChatHead(ChatTask, NextWordHead):
    """The next-word head, trained on conversations: (B, T, C) -> (B, T, V).

    Nothing is chopped off and nothing is added: the head is still the token
    embedding read backwards (tied weights, no weights of its own). What
    differs from a language model is the task around it (``ChatTask``): the
    loss counts only the replies' tokens (``batch["loss_mask"]``), and the
    metrics are the replies' perplexity and next-token accuracy. Its ``kind``
    in config.json ("chat") says which role markers the model was trained
    with, so that ``minitransfer chat`` writes its prompts the same way.
    """

    kind = "chat"


# ----------------------------------------------------------------------------
# minitransfer chat: a conversation in the terminal
# ----------------------------------------------------------------------------


def fit_history(history: list[dict], tokenizer, room: int) -> tuple[list[dict], int]:
    """The newest turns of ``history`` whose prompt fits ``room`` tokens, and
    how many of the oldest were dropped. Turns are dropped from the start, so
    the model keeps the latest exchange, and what is kept starts with a user
    message, as conversations do (a reply is not kept without
    its question). The newest user message is never dropped (if it alone does
    not fit, the caller says so)."""
    dropped = 0
    while dropped < len(history) - 1 and (
        len(prompt_ids(history[dropped:], tokenizer)) > room or history[dropped]["role"] == "assistant"
    ):
        dropped += 1
    return history[dropped:], dropped


def _marker_cut(text: str) -> int | None:
    """Where a role marker starts a new line in ``text`` (the reply ends there), else None."""
    cuts = [text.find(f"\n{mk}") for mk in (USER, ASSISTANT)] + [0 if text.lstrip().startswith(USER) else -1]
    cuts = [c for c in cuts if c >= 0]
    return min(cuts) if cuts else None


def _held_back(text: str) -> int:
    """How much of ``text``'s end to hold back: a last line that may still grow into a role marker."""
    last = text.rfind("\n")
    if last < 0:  # the reply's first line: it may be starting to write the user's turn
        return len(text) if USER.startswith(text) else 0
    tail = text[last + 1 :]
    return len(text) - last if any(mk.startswith(tail) for mk in (USER, ASSISTANT)) else 0


def reply_stream(model, tokenizer, ids: list[int], max_new_tokens: int, **sampling):
    """Yield the reply's text piece by piece as its tokens arrive (``generate.stream``,
    with the key/value cache), then one final ``(text, why)``: the whole reply and
    why it ended ("end-of-text", "role marker" or "max-new-tokens")."""
    eos = end_of_text(tokenizer)
    new: list[int] = []
    shown = 0
    why = "max-new-tokens"
    full = ""
    for t in generate.stream(model, ids, max_new_tokens, eos_id=eos, **sampling):
        if t == eos:
            why = "end-of-text"
            break
        new.append(t)
        # the whole reply decoded each time: a token may end inside a UTF-8 character that the next completes
        full = tokenizer.decode(new).lstrip()  # (the space after "Assistant:" is the format's, not the reply's)
        cut = _marker_cut(full)
        if cut is not None:
            full, why = full[:cut], "role marker"
            break
        ready = len(full) - _held_back(full)
        if ready > shown:
            yield full[shown:ready]
            shown = ready
    if len(full) > shown:
        yield full[shown:]
    yield (full, why)


def chat_loop(
    model,
    tokenizer,
    *,
    max_new_tokens: int,
    seed: int,
    read=input,
    write=print,
    say=None,
    echo: bool = False,
    **sampling,
) -> int:
    """Talk until an empty line, end of input or Ctrl-C. Each reply streams token
    by token; reply i samples with seed + i. ``echo`` repeats what was read
    (input that is not typed, e.g. piped, so the transcript shows both sides).
    ``write`` writes the conversation; ``say`` (``write`` where not given) the
    loop's own lines about it, which name settings as Python spells them."""
    say = say or write
    n_pos = model.config.n_positions
    room = n_pos - max_new_tokens
    if room < 8:
        raise ValueError(
            f"`max_new_tokens` {max_new_tokens} leaves {room} of the model's {n_pos} positions for the "
            f"conversation; lower it"
        )
    history: list[dict] = []
    turn = 0
    try:
        while True:
            try:
                line = read(f"{USER} ")
            except EOFError:
                say("\n(end of input: chat ended)")
                return 0
            if echo:
                write(line)
            if not line.strip():
                say("(empty line: chat ended)")
                return 0
            history.append({"role": "user", "content": line.strip()})
            kept, dropped = fit_history(history, tokenizer, room)
            ids = prompt_ids(kept, tokenizer)
            if len(ids) > room:
                say(
                    f"(that message is {len(ids)} tokens with its markers; this model reads {n_pos} positions, "
                    f"{max_new_tokens} of them kept for the reply (`max_new_tokens`): say it shorter)"
                )
                history.pop()
                continue
            if dropped:
                say(f"(history: the oldest {dropped} message(s) dropped to fit the model's {n_pos} positions)")
                history = kept
            write(f"{ASSISTANT} ", end="", flush=True)
            for piece in reply_stream(model, tokenizer, ids, max_new_tokens, seed=seed + turn, **sampling):
                if isinstance(piece, tuple):
                    text, why = piece
                    break
                write(piece, end="", flush=True)
            if why == "max-new-tokens":
                say(f" [cut at `max_new_tokens` {max_new_tokens}]")
            else:
                write("")
            if text.strip():  # (an empty reply is left out: the next user message follows the last one)
                history.append({"role": "assistant", "content": text.strip()})
            turn += 1
    except KeyboardInterrupt:
        say("\n(Ctrl-C: chat ended)")
        return 0
