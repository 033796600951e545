"""Reuse the head: the next-word head as a classifier, before any label.

A model trained only to predict the next word has already learnt which words
follow which texts. After "The plot was dull and the acting wooden. Overall,
it was" it should rank " terrible" above " great". So append a *prompt* to
each text and score each label by the next-word logit of a word for it (its
*label word*): that is a classifier with zero labels, the next-word head
itself, read at the prompt's last token and at the label words' rows only.

    class logits (B, K) = h_last (B, C) @ wte[label word ids].T (C, K) + calibration (K,)

A word's next-word logit also says how common the word is: " great" follows
"it was" in many more reviews than " okay", whatever the text. The
``calibration`` offsets take that prior out (contextual calibration, Zhao et
al. 2021, "Calibrate Before Use"): they are set so that the prompt with no
text before it scores every label alike (``calibrate``).

The classifier's weights *are* the label words' rows of the tied token
embedding ``wte``, not a copy. Fine-tuning (mode ``prompt``) trains them with
the backbone, starting from that zero-label classifier instead of from a
random head: pattern-exploiting training (Schick & Schütze 2021) and LM-BFF
(Gao et al. 2021) do this with masked language models. It is the counterpart
of "chop off the head": keep the head, and read only the rows that name the
labels.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from minitransfer.classify import ClassificationHead, pool
from minitransfer.dropout import dropout
from minitransfer.heads import register_head

# Several wordings of one question, so that the zero-label accuracy is a mean
# over prompts with an interval, not the luck of one phrasing.
DEFAULT_PROMPTS = (" Overall, it was", " In short, it was", " All in all, it was", " To sum up, it was")

# The usual spellings of sentiment labels, and a word for each. Labels spelt
# otherwise need label_words.
DEFAULT_LABEL_WORDS = {
    "negative": " terrible",
    "neg": " terrible",
    "neutral": " okay",
    "positive": " great",
    "pos": " great",
}
# 0 and 1 as the two classes of a binary sentiment set (IMDB, SST-2, Yelp polarity: 1 is positive)
BINARY_LABEL_WORDS = {"0": " terrible", "1": " great"}


def default_label_words(labels: list[str]) -> list[str]:
    """The label word for each label, or a ValueError naming the labels that have none."""
    table = {**DEFAULT_LABEL_WORDS, **(BINARY_LABEL_WORDS if sorted(labels) == ["0", "1"] else {})}
    missing = [x for x in labels if str(x).lower() not in table]
    if missing:
        raise ValueError(
            f"no default label word for label(s) {missing} of {list(labels)}: give one per label, "
            f"as `label_words` ({','.join(f'{x}=WORD' for x in labels)})"
        )
    return [table[str(x).lower()] for x in labels]


def parse_label_words(text: str, labels: list[str]) -> list[str]:
    """'negative=terrible,positive=great' -> [' terrible', ' great'] in the labels' order (a word follows a space)."""
    pairs = {}
    for part in text.split(","):
        label, sep, word = part.partition("=")
        if not sep or not label.strip() or not word.strip():
            raise ValueError(
                f"label words: {part!r} is not LABEL=WORD (expected e.g. {','.join(f'{x}=WORD' for x in labels)})"
            )
        pairs[label.strip()] = " " + word.strip()
    unknown = sorted(set(pairs) - set(labels))
    missing = [x for x in labels if x not in pairs]
    if unknown or missing:
        raise ValueError(
            f"label words name {sorted(pairs)}, the data's labels are {list(labels)}"
            + (f"; not labels: {unknown}" if unknown else "")
            + (f"; no word for: {missing}" if missing else "")
        )
    return [pairs[x] for x in labels]


def token_ids(tokenizer, text: str, what: str) -> tuple[int, ...]:
    ids = tuple(tokenizer.encode(text, add_special_tokens=False))
    if not ids:
        raise ValueError(f"{what} {text!r} has no tokens")
    return ids


def word_ids(tokenizer, words: list[str]) -> tuple[int, ...]:
    """One token id per label word; a word the tokenizer splits is refused (its logit would be only its first piece)."""
    out = []
    for w in words:
        ids = token_ids(tokenizer, w, "label word")
        if len(ids) != 1:
            pieces = [tokenizer.decode([i]) for i in ids]
            raise ValueError(
                f"label word {w!r} is {len(ids)} tokens {pieces} in this model's tokenizer; a label "
                f"word must be one token: choose another"
            )
        out.append(ids[0])
    if len(set(out)) != len(out):
        raise ValueError(f"label words {words} are not all different tokens")
    return tuple(out)


@register_head
class PromptHead(ClassificationHead):
    """Hidden states (B, T, C) -> class logits (B, K), read by the next-word head itself.

    Every text ends with ``prompt`` (``text_suffix``); the logit of class k is
    the next-word logit of its label word after the prompt's last token. The
    head owns no weights: it reads rows of ``backbone.wte``.
    """

    kind = "prompt"
    pooled_features = False  # it reads wte's rows, which a frozen backbone's cached features do not hold

    def __init__(
        self,
        labels,
        *,
        prompt: str,
        words: list[str],
        prompt_ids: tuple[int, ...],
        label_ids: tuple[int, ...],
        dropout: float = 0.1,
    ):
        if len(label_ids) != len(labels) or len(words) != len(labels):
            raise ValueError(f"{len(labels)} labels {list(labels)} need as many label words, got {list(words)}")
        self.labels = tuple(str(x) for x in labels)
        self.pooling = "last"  # the prompt's last token: where the next word is predicted
        self.dropout = dropout
        self.prompt, self.words = prompt, tuple(words)
        self.prompt_ids, self.label_ids = tuple(prompt_ids), tuple(label_ids)
        self.calibration = nnx.Param(jnp.zeros((len(labels),), jnp.float32))  # (K,): see calibrate

    @classmethod
    def for_tokenizer(
        cls,
        tokenizer,
        labels,
        backbone,
        *,
        prompt: str = DEFAULT_PROMPTS[0],
        words: list[str] | None = None,
        dropout: float = 0.1,
    ) -> PromptHead:
        """The head for ``labels``, its words as the tokenizer's ids, calibrated on ``backbone``."""
        words = list(words) if words is not None else default_label_words(list(labels))
        head = cls(
            labels,
            prompt=prompt,
            words=words,
            prompt_ids=token_ids(tokenizer, prompt, "prompt"),
            label_ids=word_ids(tokenizer, words),
            dropout=dropout,
        )
        head.calibrate(backbone)
        return head

    def __call__(self, hidden, attention_mask, backbone, dropout_key=None):
        h = dropout(pool(hidden, attention_mask, "last"), self.dropout, dropout_key)  # (B, C)
        rows = backbone.wte.embedding[...][jnp.asarray(self.label_ids)]  # (K, C): the label words' embeddings
        return h @ rows.T.astype(h.dtype) + self.calibration[...].astype(h.dtype)  # (B, C) @ (C, K) + (K,) -> (B, K)

    def calibrate(self, backbone) -> np.ndarray:
        """Set ``calibration`` so that the prompt alone, with no text, gives every label the same score."""
        ids = jnp.asarray([self.prompt_ids], jnp.int32)  # (1, P): a content-free input
        self.calibration.set_value(jnp.zeros_like(self.calibration[...]))
        scores = np.asarray(self(backbone(ids), None, backbone)[0], np.float64)  # (K,)
        self.calibration.set_value(jnp.asarray(-(scores - scores.mean()), jnp.float32))
        return scores

    @property
    def transformers_compatible(self) -> bool:
        return False  # its weights are wte's rows, read after a prompt: no transformers class computes that

    def transformers_note(self):
        return (
            f"transformers has no class for a prompt head (it scores the label words' next-word logits after "
            f"the prompt {self.prompt!r}): there the backbone loads, and GPT2LMHeadModel's next-word logits "
            f"at the words {list(self.words)} after that prompt, plus the saved calibration, are its scores"
        )

    def model_card(self):
        return None

    def text_suffix(self, tokenizer) -> tuple[int, ...]:
        if token_ids(tokenizer, self.prompt, "prompt") != self.prompt_ids:
            raise ValueError(
                f"the prompt {self.prompt!r} tokenises differently with this tokenizer than with the model's own"
            )
        return self.prompt_ids

    def features(self, hidden, attention_mask):  # a frozen backbone's cached features cannot hold wte's rows
        raise ValueError("the prompt head reads the token embedding, which a frozen-feature cache does not hold")

    def describe(self):
        return {
            "labels": list(self.labels),
            "prompt": self.prompt,
            "words": list(self.words),
            "prompt_ids": list(self.prompt_ids),
            "label_ids": list(self.label_ids),
            "dropout": self.dropout,
        }

    @classmethod
    def from_info(cls, info, n_embd, source):
        missing = [k for k in ("labels", "prompt", "words", "prompt_ids", "label_ids") if k not in info]
        if missing:
            raise ValueError(f"{source}: config.json's 'minitransfer' section for a prompt head lacks {missing}")
        return cls(
            info["labels"],
            prompt=info["prompt"],
            words=info["words"],
            prompt_ids=tuple(info["prompt_ids"]),
            label_ids=tuple(info["label_ids"]),
            dropout=info.get("dropout", 0.1),
        )

    @classmethod
    def for_data(cls, n_embd, data, **options):
        raise ValueError("a prompt head is built from the model's tokenizer and backbone: PromptHead.for_tokenizer")
