"""The input pipeline: every source behind one spec, splits, budgets, bad input."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from minitransfer import encoding
from minitransfer.data import DataError, label_budget, load_dataset, load_texts
from minitransfer.encoding import encode, epoch_order, pack_blocks
from tests.conftest import IMDB, needs_imdb


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(n=100, labels=("neg", "pos", "neutral")):
    return [
        {"text": f"example number {i} says {labels[i % len(labels)]}", "label": labels[i % len(labels)]}
        for i in range(n)
    ]


def test_tweets_corpus():
    d = load_dataset("tweets")
    assert d.label_names == ["negative", "neutral", "positive"]
    n = len(d.train) + len(d.validation) + len(d.test)
    assert 36_000 < n < 38_200
    assert abs(len(d.test) / n - 0.1) < 0.002 and abs(len(d.validation) / n - 0.1) < 0.002
    assert not set(d.train.texts) & set(d.test.texts)  # duplicates never straddle the split
    assert not any("\ufffd" in t for t in d.train.texts + d.test.texts)
    notes = " ".join(d.notes)
    assert "invalid UTF-8" in notes and "encoding damage" in notes and "duplicate" in notes
    # stratified: each split keeps the label proportions
    p_train = np.bincount(d.train.labels) / len(d.train)
    p_test = np.bincount(d.test.labels) / len(d.test)
    assert np.abs(p_train - p_test).max() < 0.005
    again = load_dataset("tweets")
    assert again.test.texts == d.test.texts and (again.test.labels == d.test.labels).all()


@needs_imdb
def test_imdb_directory_with_real_train_test_split():
    d = load_dataset(f"jsonl:{IMDB}")
    assert d.label_names == ["0", "1"]
    assert len(d.test) == 25_000 and len(d.train) + len(d.validation) == 25_000
    assert len(d.validation) == 2_500 and any("validation = 10% of train" in n for n in d.notes)
    assert (np.bincount(d.test.labels) == 12_500).all()


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "jsonl.gz"])
def test_single_file_is_split_80_10_10_stratified(tmp_path, kind):
    rows = _rows(200, labels=("a", "b"))[:150] + _rows(50, labels=("c",))
    path = tmp_path / f"data.{kind}"
    if kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        path.write_text("text" + sep + "label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in rows))
    else:
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        path.write_bytes(gzip.compress(body) if kind.endswith(".gz") else body)
    d = load_dataset(f"{kind.split('.')[0]}:{path}")
    assert d.label_names == ["a", "b", "c"]
    assert (len(d.train), len(d.validation), len(d.test)) == (158, 21, 21)
    assert np.bincount(d.test.labels).tolist() == [8, 8, 5]  # 75/75/50 rows: 10% of each class, rounded
    assert load_dataset(f"{kind.split('.')[0]}:{path}").test.texts == d.test.texts  # deterministic


def test_integer_labels_keep_numeric_order(tmp_path):
    rows = [{"text": f"t{i}", "label": [2, 10, 1][i % 3]} for i in range(60)]
    d = load_dataset(f"jsonl:{_write_jsonl(tmp_path / 'd.jsonl', rows)}")
    assert d.label_names == ["1", "2", "10"]


def test_custom_fields_and_directory_with_validation(tmp_path):
    rows = [{"review": f"r{i}", "stars": "good" if i % 2 else "bad"} for i in range(40)]
    for s in ("train", "validation", "test"):
        _write_jsonl(tmp_path / f"{s}.jsonl", rows)
    d = load_dataset(f"jsonl:{tmp_path}", text_field="review", label_field="stars")
    assert (len(d.train), len(d.validation), len(d.test)) == (40, 40, 40)


def test_label_budget_is_stratified_nested_and_seeded():
    d = load_dataset("tweets")
    b100 = label_budget(d.train, 100, seed=0, num_classes=3)
    b300 = label_budget(d.train, 300, seed=0, num_classes=3)
    assert len(b100) == 100 and len(b300) == 300
    assert set(b100.texts) <= set(b300.texts)  # nested
    share = np.bincount(d.train.labels) / len(d.train)
    assert np.abs(np.bincount(b300.labels, minlength=3) - 300 * share).max() <= 1
    assert label_budget(d.train, 100, seed=0, num_classes=3).texts == b100.texts
    assert label_budget(d.train, 100, seed=1, num_classes=3).texts != b100.texts
    assert label_budget(d.train, "all", seed=0, num_classes=3) is d.train


def test_label_budgets_are_nested_and_proportional_with_rare_classes():
    from minitransfer.data import Split

    labels = np.array([0] * 970 + [1] * 20 + [2] * 10, np.int32)
    split = Split([f"t{i}" for i in range(1000)], labels)
    prev = set()
    for n in range(3, 400, 7):
        sub = label_budget(split, n, seed=0, num_classes=3)
        assert len(sub) == n and prev <= set(sub.texts), n  # nested
        counts = np.bincount(sub.labels, minlength=3)
        assert counts.min() >= 1
        if n >= 100:  # once the rarest class's share reaches one example
            assert np.abs(counts - n * np.array([0.97, 0.02, 0.01])).max() <= 1.0, (n, counts)
        prev = set(sub.texts)


def test_too_little_data_for_three_splits(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", _rows(8, labels=("a", "b")))
    with pytest.raises(DataError, match="the validation split is empty"):
        load_dataset(f"jsonl:{p}")


def test_label_budget_errors():
    d = load_dataset("tweets")
    with pytest.raises(DataError, match="larger than the split it is taken from"):
        label_budget(d.train, len(d.train) + 1, seed=0, num_classes=3)
    with pytest.raises(DataError, match="smaller than the number of classes"):
        label_budget(d.train, 2, seed=0, num_classes=3)


def test_encode_truncates_and_counts(gpt2_tokenizer):
    from minitransfer.data import Split

    split = Split(["short", "a much longer text that will not fit in eight tokens at all"], np.array([0, 1], np.int32))
    enc = encode(split, gpt2_tokenizer, max_len=8)
    assert enc.input_ids.shape == (2, 8) and enc.input_ids.dtype == np.int32
    assert enc.attention_mask[0].tolist() == [1] + [0] * 7
    assert enc.n_truncated == 1 and enc.lengths[1] > 8
    assert enc.input_ids[1].tolist() == gpt2_tokenizer.encode(split.texts[1])[:8]


def test_encode_reuses_the_same_texts_and_stays_exact(gpt2_tokenizer):
    from minitransfer.data import Split

    texts = ["one text", "another, a little longer", "third"]
    a = encode(Split(texts, np.array([0, 1, 0], np.int32)), gpt2_tokenizer, max_len=6)
    b = encode(Split(list(texts), np.array([1, 1, 1], np.int32)), gpt2_tokenizer, max_len=6)
    assert b.input_ids is a.input_ids  # reused, not tokenised again
    assert b.labels.tolist() == [1, 1, 1]  # labels come from the split, never from the reuse
    with pytest.raises(ValueError):  # shared arrays are read-only
        b.input_ids[0, 0] = 7
    c = encode(Split(texts, np.array([0, 1, 0], np.int32)), gpt2_tokenizer, max_len=4)
    assert c.input_ids.shape == (3, 4) and c.input_ids.tolist() == [r[:4] for r in a.input_ids.tolist()]
    d = encode(Split(texts[:2], np.array([0, 1], np.int32)), gpt2_tokenizer, max_len=6)
    assert d.input_ids.tolist() == a.input_ids[:2].tolist()
    import copy

    text = Split(["one <new-token> <other>"], np.array([0], np.int32))
    grown = copy.deepcopy(gpt2_tokenizer)
    grown.add_tokens(["<new-token>"])
    e = encode(text, grown, max_len=12)
    want = grown(text.texts[0], add_special_tokens=False)["input_ids"]
    assert e.input_ids[0, : len(want)].tolist() == want and len(gpt2_tokenizer) in want
    assert len(gpt2_tokenizer) not in encode(text, gpt2_tokenizer, max_len=12).input_ids[0].tolist()
    grown.add_tokens(["<other>"])  # the same tokenizer object, grown again: not served from the old result
    again = encode(text, grown, max_len=12)
    want = grown(text.texts[0], add_special_tokens=False)["input_ids"]
    assert again.input_ids[0, : len(want)].tolist() == want and len(gpt2_tokenizer) + 1 in want
    for i in range(encoding.ENCODED_KEPT + 2):  # the memory stays bounded
        encode(Split([f"text number {i}"], np.array([0], np.int32)), gpt2_tokenizer, max_len=6)
    assert len(encoding._ENCODED[gpt2_tokenizer]) == encoding.ENCODED_KEPT


def test_epoch_order_is_a_function_of_seed_and_epoch():
    assert (epoch_order(50, 0, 1) == epoch_order(50, 0, 1)).all()
    assert (epoch_order(50, 0, 1) != epoch_order(50, 0, 2)).any()
    assert sorted(epoch_order(50, 3, 0)) == list(range(50))


def test_pretraining_blocks(tmp_path, gpt2_tokenizer):
    texts = load_texts("tweets")[:400]  # training tweets: offline in every clone
    blocks = pack_blocks(texts, gpt2_tokenizer, block_size=64, val_fraction=0.1, seed=0)
    assert blocks.train.shape[1] == 65 and blocks.validation.shape[1] == 65
    assert len(blocks.train) > 5 * len(blocks.validation) > 0
    assert (blocks.train == gpt2_tokenizer.eos_token_id).sum() > 100  # documents are joined by <|endoftext|>
    assert blocks.n_tokens - blocks.n_dropped_tokens == 65 * (len(blocks.train) + len(blocks.validation))
    txt = tmp_path / "book.txt"
    txt.write_text("First paragraph here.\n\nSecond one.\n\n\nThird.")
    assert load_texts(f"txt:{txt}") == ["First paragraph here.", "Second one.", "Third."]


def test_validation_blocks_sample_the_held_out_texts_not_their_file_order(gpt2_tokenizer):
    # a corpus grouped by label (the tweets file is): the first validation blocks, which pretraining
    # scores, once all came from the first group's held-out texts
    texts = [f"one two three {i}" for i in range(200)] + [f"red green blue {i}" for i in range(200)]
    blocks = pack_blocks(texts, gpt2_tokenizer, block_size=8, val_fraction=0.2, seed=0)
    first = gpt2_tokenizer.decode(blocks.validation[:8].reshape(-1))
    assert "one two" in first and "red green" in first, first
    # the training blocks stay in file order: the same blocks as packing the kept texts as they come
    held = set(np.random.default_rng(0).permutation(len(texts))[:80].tolist())
    kept = pack_blocks([t for i, t in enumerate(texts) if i not in held], gpt2_tokenizer, 8, val_fraction=0)
    assert (blocks.train == kept.train).all()


def test_tfds_through_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=30):
        d = load_dataset("tfds:imdb_reviews")
    assert d.label_names == ["neg", "pos"]
    assert len(d.train) > 0 and len(d.test) > 0 and len(d.validation) > 0
    assert all(isinstance(t, str) for t in d.train.texts)


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope.jsonl: no such file or directory"):
        load_dataset(f"jsonl:{tmp_path / 'nope.jsonl'}")


def test_missing_text_field_names_fields_present(tmp_path):
    p = _write_jsonl(tmp_path / "d.jsonl", [{"review": "x", "label": 1}] * 10)
    with pytest.raises(DataError, match=r"no field 'text'; the rows have fields \['label', 'review'\]"):
        load_dataset(f"jsonl:{p}")


def test_missing_label_field(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,sentiment\nhello,pos\n")
    with pytest.raises(DataError, match=r"no field 'label'; the rows have fields \['sentiment', 'text'\]"):
        load_dataset(f"csv:{p}")


@pytest.mark.parametrize(
    "kind,body,message",
    [
        # an unquoted comma: the row's "label" would be a piece of its text
        (
            "csv",
            'text,label\n"fine, quoted",pos\nreview 7, with an unquoted comma,pos\n',
            r"d.csv, line 3: 3 values, the header has 2 columns \(text, label\); a field that holds a comma must be in "
            r"double quotes",
        ),
        ("tsv", "text\tlabel\nok\tpos\na\tstray tab\tneg\n", r"d.tsv, line 3: 3 values, the header has 2 columns"),
        (
            "csv",
            "text,label\nok,pos\nonly text\n",
            r"d.csv, line 3: the 'label' is empty \(the row has fewer values "
            r"than the header has columns\)",
        ),  # a short row
        ("csv", "text,label\nok,pos\n\n\nreview 9, unquoted,neg\n", r"d.csv, line 5: 3 values"),  # after blank lines
        ("csv", '"text,label\nhello,pos\n', r"d.csv, the row from line 1: not valid CSV"),  # a broken header
        # an unterminated quote would swallow every later row into one text
        (
            "csv",
            'text,label\nok,pos\n"unterminated,pos\nsecond,neg\nthird,pos\n',
            r"d.csv, the row from line 3: not valid CSV \(unexpected end of data\)",
        ),
        # TSV reads quotes leniently, so there the same swallowing shows as a short row whose text spans lines
        (
            "tsv",
            'text\tlabel\nok\tpos\n"unterminated\tpos\nsecond\tneg\nthird\tpos\n',
            r"d.tsv, line 3: a quoted field runs from here to line 5, and the row ends short of values",
        ),
        # line numbers count "\n" as the csv reader does: a form feed inside a text is not a line break
        ("csv", 'text,label\n"a\x0c\x0cb",pos\nreview 9, unquoted,neg\n', r"d.csv, line 3: 3 values"),
        # a repeated column name: only its last column would be read, silently
        ("csv", "text,label,text\nhello,pos,other\n", r"d.csv, line 1: the header names 'text' more than once"),
    ],
)
def test_csv_rows_that_do_not_line_up_with_the_header_are_errors(tmp_path, kind, body, message):
    p = tmp_path / f"d.{kind}"
    p.write_text(body)
    with pytest.raises(DataError, match=message):
        load_dataset(f"{kind}:{p}")


def test_csv_quoted_commas_quotes_and_line_breaks_are_read(tmp_path):
    from minitransfer.readers import read_rows

    p = tmp_path / "d.csv"
    p.write_text('text,label\n"a, b",pos\n"say ""hi""",neg\n"two\nlines",pos\n')
    assert [r["text"] for r in read_rows(p, "csv", [])] == ["a, b", 'say "hi"', "two\nlines"]
    # a trailing delimiter (an empty extra value) and a byte-order mark are fine
    p.write_bytes("\ufefftext,label\nbad film,neg,\n".encode("utf-8"))
    assert read_rows(p, "csv", []) == [{"text": "bad film", "label": "neg"}]
    # TSV texts often hold quote marks, unquoted: read leniently, as before
    t = tmp_path / "d.tsv"
    t.write_text('text\tlabel\nhe said "wow" twice\tpos\n"Great" movie\tpos\n')
    assert [r["text"] for r in read_rows(t, "tsv", [])] == ['he said "wow" twice', "Great movie"]


def test_empty_file(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("")
    with pytest.raises(DataError, match="the file is empty"):
        load_dataset(f"jsonl:{p}")


def test_rows_with_empty_text_are_dropped_and_counted(tmp_path):
    rows = _rows(60) + [{"text": "  ", "label": "pos"}, {"text": "", "label": "neg"}, {"text": None, "label": "neg"}]
    d = load_dataset(f"jsonl:{_write_jsonl(tmp_path / 'd.jsonl', rows)}")
    assert len(d.train) + len(d.validation) + len(d.test) == 60
    assert any("3 row(s) with empty 'text' dropped" in n for n in d.notes)


def test_texts_repeated_within_train_or_across_splits_are_counted(tmp_path):
    rows = _rows(90)
    train = rows[:40] + [
        {"text": "same old text", "label": "pos"},
        {"text": "same old text", "label": "neg"},
        {"text": "said twice", "label": "pos"},
        {"text": "said twice", "label": "pos"},
    ]
    _write_jsonl(tmp_path / "train.jsonl", train)
    _write_jsonl(tmp_path / "validation.jsonl", rows[40:60])
    _write_jsonl(tmp_path / "test.jsonl", rows[60:90] + [{"text": "said twice", "label": "pos"}, rows[0]])
    d = load_dataset(f"jsonl:{tmp_path}")
    assert len(d.train) == 44 and len(d.test) == 32  # counted, not dropped
    notes = " | ".join(d.notes)
    assert (
        "train: 2 text(s) repeat an earlier training text word for word (kept); 1 of the repeated texts carry "
        "more than one label" in notes
    ), notes
    assert "test: 2 of 32 text(s) also appear in train word for word" in notes and "validation:" not in notes
    clean = tmp_path / "clean"
    clean.mkdir()
    _write_jsonl(clean / "train.jsonl", rows[:60])
    _write_jsonl(clean / "test.jsonl", rows[60:])
    assert not [n for n in load_dataset(f"jsonl:{clean}").notes if "word for word" in n]


def test_question_answering_rows_given_as_classification_data_point_to_task_qa(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"question": "q", "context": "a b", "answers": ["b"]}] * 3)
    _write_jsonl(tmp_path / "test.jsonl", [{"question": "q", "context": "a b", "answers": ["b"]}])
    with pytest.raises(DataError, match=r"look like question answering data .*finetune --task qa"):
        load_dataset(f"jsonl:{tmp_path}")


def test_labels_that_mix_numbers_and_names_are_noted(tmp_path):
    rows = [{"text": f"text {i}", "label": i % 2} for i in range(40)] + [{"text": "odd one", "label": "positive"}]
    d = load_dataset(f"jsonl:{_write_jsonl(tmp_path / 'd.jsonl', rows)}")
    assert d.label_names == ["0", "1", "positive"]
    assert "labels mix whole numbers (0, 1) and names (positive)" in " ".join(d.notes)
    assert not [n for n in load_dataset(f"jsonl:{_write_jsonl(tmp_path / 'e.jsonl', rows[:40])}").notes if "mix" in n]


def test_label_in_test_never_in_train(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", _rows(30, labels=("a", "b")))
    _write_jsonl(tmp_path / "test.jsonl", _rows(30, labels=("a", "b", "zebra")))
    with pytest.raises(DataError, match=r"labels \['zebra'\] occur in test but never in train"):
        load_dataset(f"jsonl:{tmp_path}")


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    p = tmp_path / "d.jsonl"
    good = "".join(json.dumps(r) + "\n" for r in _rows(30)).encode()
    p.write_bytes(good + b'{"text": "caf\xe9 \xff\xfe ok", "label": "pos"}\n')
    d = load_dataset(f"jsonl:{p}")
    assert any("d.jsonl: 3 invalid UTF-8 byte sequence(s) replaced" in n for n in d.notes)
    assert len(d.train) + len(d.validation) + len(d.test) == 31


def test_bad_json_line_is_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "a", "label": 1}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"d.jsonl, line 2: not valid JSON"):
        load_dataset(f"jsonl:{p}")


def test_unknown_spec():
    with pytest.raises(DataError, match="not understood; expected 'tweets', 'tfds:NAME"):
        load_dataset("parquet:foo")


def test_tfds_unknown_name():
    with pytest.raises(DataError, match=r"tfds:no_such_dataset_xyz: tensorflow-datasets has no dataset"):
        load_dataset("tfds:no_such_dataset_xyz")


def test_tfds_without_network(tmp_path, monkeypatch, caplog):
    # This machine has no network, so the real check fails; make that
    # explicit so the test means the same on a machine that has one.
    monkeypatch.setattr("minitransfer.sources._network_available", lambda *a, **k: False)
    with (
        caplog.at_level("WARNING"),
        pytest.raises(DataError, match=r"tfds:imdb_reviews is not downloaded yet.*no network.*jsonl:PATH"),
    ):
        load_dataset("tfds:imdb_reviews", tfds_data_dir=str(tmp_path))
    # the error is the one line said: not after tfds' own "Variant folder ... has no dataset_info.json"
    assert not [r.getMessage() for r in caplog.records if "dataset_info.json" in r.getMessage()]


@pytest.mark.parametrize(
    "row,message",
    [
        (
            {"text": "fine", "label": ["a"]},
            r"line 1: the 'label' is \['a'\]; a label is a name \(a string\) or a whole number",
        ),
        ({"text": "fine", "label": 1.5}, r"line 1: the 'label' is 1.5; a label is a name"),
        ({"text": "fine", "label": True}, r"line 1: the 'label' is True; a label is a name"),
        ({"text": "fine", "label": None}, r"line 1: the 'label' is null$"),
        (
            {"text": 5, "label": "pos"},
            r"line 1: the 'text' is '5' \(int\), not text; choose the text field with `text_field`",
        ),
    ],
)
def test_jsonl_values_of_the_wrong_kind_are_errors_not_strings(tmp_path, row, message):
    """Found by a new-user run: a list or 1.5 became the class "['a']" or
    '1.5', a number became text, silently. Whole numbers and names stay labels."""
    p = tmp_path / "d.jsonl"
    p.write_text((json.dumps(row) + "\n") * 20)
    with pytest.raises(DataError, match=message):
        load_dataset(f"jsonl:{p}")
    p.write_text("".join(json.dumps({"text": f"t{i}", "label": i % 2}) + "\n" for i in range(40)))
    assert load_dataset(f"jsonl:{p}").label_names == ["0", "1"]


def test_files_that_would_be_misread_are_refused_with_the_cause(tmp_path):
    rows = [{"text": f"text {i}", "label": "pos" if i % 2 else "neg"} for i in range(20)]
    # a path given without its kind: that it is not there, not that the spec is not understood
    with pytest.raises(DataError, match=r"nothere.csv: no such file \(a data spec may be a path to a .csv file"):
        load_dataset(str(tmp_path / "nothere.csv"))
    # UTF-16 (Excel's "Unicode text"): the encoding, not CSV quoting
    u16 = tmp_path / "u16.csv"
    u16.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows), encoding="utf-16")
    with pytest.raises(DataError, match="looks like UTF-16 text .* save the file as UTF-8"):
        load_dataset(f"csv:{u16}")
    # a directory with train.csv and train.csv.gz: which is meant is not guessed
    d = tmp_path / "both"
    d.mkdir()
    for name in ("train.csv", "test.csv"):
        (d / name).write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    import gzip

    (d / "train.csv.gz").write_bytes(gzip.compress((d / "train.csv").read_bytes()))
    with pytest.raises(DataError, match=r"both: holds both train.csv and train.csv.gz; keep one of them"):
        load_dataset(f"csv:{d}")
    # one field as both text and label: the label would be learned from itself
    with pytest.raises(DataError, match="`text_field` and `label_field` are both 'label'"):
        load_dataset(f"csv:{d / 'test.csv'}", text_field="label")


def test_a_field_longer_than_the_csv_modules_default_limit_is_read(tmp_path):
    p = tmp_path / "long.csv"
    long = "word " * 40_000  # 200,000 characters: over the csv module's 131,072
    p.write_text(
        "text,label\n" + "".join(f"{long if i == 0 else f'short {i}'},{'pos' if i % 2 else 'neg'}\n" for i in range(20))
    )
    d = load_dataset(f"csv:{p}")
    assert max(len(t) for s in (d.train, d.validation, d.test) for t in s.texts) == len(long)


def test_a_label_field_that_holds_text_is_suspected(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f"review number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(120)))
    with pytest.raises(DataError, match=r"its 120 labels for 120 rows look like text: is `label_field` 'text' the "):
        load_dataset(f"csv:{p}", text_field="label", label_field="text")


def test_whole_number_labels_are_one_class_however_spelt_and_said(tmp_path):
    # a CSV's "1.0" was a class of its own beside "1" (a JSON 1.0 was not), and "01" merged without a word
    p = tmp_path / "d.csv"
    spellings = ["0", "1", "01", "1.0", "0.0"]
    p.write_text("text,label\n" + "".join(f"text {i},{spellings[i % 5]}\n" for i in range(100)))
    d = load_dataset(f"csv:{p}")
    assert d.label_names == ["0", "1"]
    assert any("read as those numbers: '0.0' as 0, '01' as 1, '1.0' as 1" in n for n in d.notes), d.notes
    # beside real decimals (ratings), "1.0" is a rating as written, not the whole number 1
    p.write_text("text,label\n" + "".join(f"text {i},{['1.0', '1.5', '2.0'][i % 3]}\n" for i in range(90)))
    d = load_dataset(f"csv:{p}")
    assert d.label_names == ["1.0", "1.5", "2.0"] and not any("mix" in n or "spelling" in n for n in d.notes)


def test_a_classifier_whose_labels_an_older_minitransfer_spelt_as_written_still_fits(tmp_path):
    from minitransfer.classify import ClassificationHead

    p = tmp_path / "d.csv"
    p.write_text("text,label\n" + "".join(f"text {i},{['0.0', '1.0'][i % 2]}\n" for i in range(40)))
    data = load_dataset(f"csv:{p}")
    ClassificationHead(8, ["0.0", "1.0"]).check_data(data)  # read as 0 and 1 now: the same classes, same order
    with pytest.raises(ValueError, match="labels"):
        ClassificationHead(8, ["1.0", "0.0"]).check_data(data)


def test_split_seed_notes_say_what_a_split_seed_did_not_draw(tmp_path):
    """finetune and compare share these notes: data with all three splits
    ignores --split-seed; data with train and test has only its validation
    set drawn; one file is split whole (no note)."""
    from minitransfer.cli.training import split_seed_notes
    from minitransfer.qa import load_qa_dataset

    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(40)]
    for name in ("three", "two"):
        (tmp_path / name).mkdir()
        for split in ("train", "validation", "test") if name == "three" else ("train", "test"):
            (tmp_path / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    said = {
        name: split_seed_notes(1, load_dataset(f"jsonl:{tmp_path / name}", split_seed=1), name)
        for name in ("three", "two", "one.jsonl")
    }
    assert said == {
        "three": ["--split-seed 1 has no effect: three comes with its own splits"],
        "two": [
            "--split-seed 1 draws only the validation set: two comes with its own test split, which stays as it is"
        ],
        "one.jsonl": [],
    }
    assert split_seed_notes(0, load_dataset(f"jsonl:{tmp_path / 'three'}"), "three") == []
    # question answering draws its validation questions from train the same way, and records the seed
    qa_rows = [
        {"question": "q?", "context": f"c {i}", "answers": {"text": ["c"], "answer_start": [0]}} for i in range(20)
    ]
    (tmp_path / "qa").mkdir()
    for split in ("train", "test"):
        (tmp_path / "qa" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa_rows))
    qa = load_qa_dataset(f"jsonl:{tmp_path / 'qa'}", split_seed=1)
    assert qa.fields == {"split_seed": 1}
    assert split_seed_notes(1, qa, "qa") == [
        "--split-seed 1 draws only the validation set: qa comes with its own test split, which stays as it is"
    ]
