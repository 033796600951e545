"""From texts to the arrays a training step takes: token ids and masks for
a classifier (``encode``), packed blocks for next-word training
(``pack_blocks``), and the seeded order of training batches
(``batch_indices``). Reading the texts themselves is ``data.py``'s job."""

from __future__ import annotations

import dataclasses
import weakref
from collections import OrderedDict

import numpy as np

from minitransfer.data import DataError, Split

# ----------------------------------------------------------------------------
# Tokenising for a classifier, and the order of batches
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Encoded:
    input_ids: np.ndarray  # (N, T) int32, right-padded
    attention_mask: np.ndarray  # (N, T) int32, 1 = real token
    labels: np.ndarray  # (N,) int32
    lengths: np.ndarray  # (N,) token count before truncation
    n_truncated: int
    texts: list[str] | None = None  # the texts encoded (keys of the frozen-feature cache)

    def __len__(self) -> int:
        return len(self.labels)


def token_lengths(texts: list[str], tokenizer) -> np.ndarray:
    enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.asarray([len(x) for x in enc], dtype=np.int64)


# Tokenising the same texts with the same tokenizer gives the same ids, and
# ``compare`` encodes the same test and validation texts (and each budget's
# training texts, once per mode) in every one of its dozens of runs: with a
# small model that was a third of a run's time. So ``encode`` keeps its last
# few results per tokenizer object (dropped with the tokenizer). The key holds
# the tokenizer's size, so added tokens start afresh; other changes to a
# tokenizer object after use (a new normalizer, say) are not detected: load a
# new tokenizer instead.
_ENCODED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
ENCODED_KEPT = 8


def encode(split: Split, tokenizer, max_len: int, suffix: tuple[int, ...] = ()) -> Encoded:
    """Tokenise, keep the first ``max_len`` tokens, right-pad, build the mask.

    Texts longer than ``max_len`` are truncated, and counted in
    ``n_truncated`` for the caller to report. ``suffix`` (token ids, such as
    a prompt's) ends every text, after the text's first ``max_len -
    len(suffix)`` tokens: truncation cuts the text, never the suffix. The
    arrays are read-only: they may be shared with an earlier call on the
    same texts.
    """
    if max_len < 1:
        raise DataError(f"`max_len` must be at least 1, got {max_len}")
    if len(suffix) >= max_len:
        raise DataError(f"a suffix of {len(suffix)} tokens leaves no room for the text in `max_len` {max_len}")
    try:
        kept = _ENCODED.setdefault(tokenizer, OrderedDict())
    except TypeError:  # a tokenizer that cannot be weakly referenced or hashed: no reuse
        kept = OrderedDict()
    suffix = tuple(int(i) for i in suffix)
    key = (tuple(split.texts), max_len, len(tokenizer), suffix)
    if key in kept:
        kept.move_to_end(key)
        out, mask, lengths = kept[key]
    else:
        out, mask, lengths = _tokenise(split.texts, tokenizer, max_len, suffix)
        kept[key] = (out, mask, lengths)
        while len(kept) > ENCODED_KEPT:
            kept.popitem(last=False)
    room = max_len - len(suffix)
    return Encoded(out, mask, split.labels.astype(np.int32), lengths, int((lengths > room).sum()), list(split.texts))


def _tokenise(texts, tokenizer, max_len: int, suffix: tuple[int, ...] = ()) -> tuple[np.ndarray, ...]:
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    N = len(ids)
    out = np.zeros((N, max_len), np.int32)  # (N, T)
    mask = np.zeros((N, max_len), np.int32)  # (N, T)
    lengths = np.asarray([len(x) for x in ids], dtype=np.int64)  # (N,)
    empty = int((lengths == 0).sum())
    if empty:
        raise DataError(f"{empty} text(s) tokenise to no tokens at all")
    for i, x in enumerate(ids):
        x = x[: max_len - len(suffix)] + list(suffix)
        out[i, : len(x)] = x
        mask[i, : len(x)] = 1
    for a in (out, mask, lengths):
        a.flags.writeable = False
    return out, mask, lengths


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of examples in one epoch: a pure function of (seed, epoch), so
    every mode sees the same data order and a resumed run picks up exactly."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def fit_batch_size(batch_size: int, n: int, what: str, log, name: str = "`batch_size`") -> int:
    """The batch size a run can use on ``n`` examples: at most ``n``. A
    larger batch would only repeat examples within a step (and a huge one,
    ``batch_size=1_000_000_000``, would exhaust memory before the first step),
    so it becomes ``n``, said in one line naming the setting as ``name`` does
    (a run's own name for it where it has one: the adaptation's). Callers keep the
    fitted size in the key of a run's resumable state (a state written with
    another batch size is not resumed)."""
    if batch_size <= n:
        return batch_size
    log(f"note: {name} {batch_size} is more than the {n:,} {what}: each step takes all {n:,} (batch {n:,})")
    return n


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """The example indices of training batch ``step``.

    Batches are consecutive slices of an endless stream of seeded epoch
    permutations, so every batch is full (one compilation of the train step),
    and batch ``step`` is a function of (step, batch_size, n, seed) alone: a
    resumed run sees exactly the batches an uninterrupted one would.
    """
    pos = np.arange(step * batch_size, (step + 1) * batch_size)  # positions in the stream
    epochs = pos // n
    orders = {int(e): epoch_order(n, seed, int(e)) for e in np.unique(epochs)}
    return np.array([orders[int(e)][p] for e, p in zip(epochs, pos % n, strict=True)], dtype=np.int64)


# ----------------------------------------------------------------------------
# Pretraining text: packed token blocks
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Blocks:
    train: np.ndarray  # (N, block_size + 1) int32: inputs are [:, :-1], targets [:, 1:]
    validation: np.ndarray  # (M, block_size + 1) int32
    n_texts: int
    n_tokens: int
    n_dropped_tokens: int  # the tail shorter than one block


def pack_blocks(texts: list[str], tokenizer, block_size: int, val_fraction: float = 0.05, seed: int = 0) -> Blocks:
    """Tokenise every text, join them with the end-of-text token, and cut the
    stream into blocks of ``block_size + 1`` tokens (the +1 is the target of
    the last position). A seeded ``val_fraction`` of the *texts* is held out
    for validation before packing, so no text is on both sides. The training
    texts are packed in file order; the held-out ones in the seeded random
    order, so that any first part of the validation blocks (pretraining scores
    the first ``val_blocks``) is a fair sample of them: in file order, a corpus
    grouped by label would be scored on one class."""
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    order = np.random.default_rng(seed).permutation(len(texts))
    n_val = 0 if val_fraction <= 0 or len(texts) < 2 else max(1, int(round(val_fraction * len(texts))))
    val_idx, train_idx = order[:n_val], np.sort(order[n_val:])
    dropped = 0

    def pack(idx):
        nonlocal dropped
        if len(idx) == 0:
            return np.zeros((0, block_size + 1), np.int32), 0
        ids = tokenizer([texts[i] for i in idx], add_special_tokens=False)["input_ids"]
        stream = np.fromiter((t for x in ids for t in (*x, eos)), dtype=np.int32)
        n = len(stream) // (block_size + 1)
        dropped += len(stream) - n * (block_size + 1)
        return stream[: n * (block_size + 1)].reshape(n, block_size + 1), len(stream)

    train, n_tok_train = pack(train_idx)
    val, n_tok_val = pack(val_idx)
    if len(train) == 0:
        raise DataError(
            f"not enough text for one training block of {block_size + 1} tokens: the training texts "
            f"hold {n_tok_train:,} tokens (end-of-text markers included); give more text or a smaller "
            f"block size (`block_size`)"
        )
    return Blocks(train, val, len(texts), n_tok_train + n_tok_val, dropped)
