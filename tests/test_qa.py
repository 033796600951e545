"""Extractive question answering: the span head through the same loop, checkpoints and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minitransfer as mt
from minitransfer.cli import main
from minitransfer.data import DataError
from minitransfer.heads import HEADS
from minitransfer.qa import (
    QADataset,
    QASplit,
    SpanHead,
    answer,
    best_spans,
    encode_qa,
    load_qa_dataset,
    normalize_answer,
    squad_scores,
    toy_city_questions,
)
from minitransfer.train import TrainConfig, build_model, evaluate, finetune

TINY = dict(n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=50257)
synthetic_split = toy_city_questions  # "Which city?" over filler words: learnable, chance about 1 in 200


@pytest.fixture(scope="module")
def synthetic():
    return QADataset(synthetic_split(600, 0), synthetic_split(60, 1), synthetic_split(100, 2), "synthetic-cities")


def test_span_head_is_registered_and_saves_round_trip(tmp_path, gpt2_tokenizer):
    assert HEADS["span"] is SpanHead and {"next-word", "classification", "span"} <= set(HEADS)
    from flax import nnx

    model = mt.GPT2(mt.GPT2Backbone(mt.GPT2Config(**TINY), rngs=nnx.Rngs(0)), SpanHead(64, seed=3))
    mt.save_pretrained(model, tmp_path / "m", gpt2_tokenizer)
    info = json.loads((tmp_path / "m" / "config.json").read_text())["minitransfer"]
    assert info["head"] == "span"
    back = mt.load_pretrained(tmp_path / "m")
    assert isinstance(back.head, SpanHead)
    ids = np.arange(10, dtype=np.int32)[None]
    np.testing.assert_array_equal(np.asarray(back(ids)), np.asarray(model(ids)))


def test_encoding_maps_answers_to_tokens_and_back(gpt2_tokenizer):
    split = QASplit(
        ["Who?", "Where?", "What?"],
        ["It was Ada Lovelace who wrote it.", "In the old town of Tallinn.", "Nothing here."],
        [["Ada Lovelace"], ["Tallinn"], ["absent"]],
        [[7], [-1], [0]],
    )
    enc = encode_qa(split, gpt2_tokenizer, 32)
    assert len(enc) == 3 and any("not in its context" in n for n in enc.notes)
    for i, text in enumerate(["Ada Lovelace", "Tallinn"]):
        lo, hi = enc.offsets[i, enc.start[i], 0], enc.offsets[i, enc.end[i], 1]
        assert enc.contexts[i][lo:hi] == text
        assert enc.context_mask[i, enc.start[i]] == 1 and enc.context_mask[i].sum() < enc.attention_mask[i].sum()
    # outputs that point exactly at the gold tokens decode to the gold text
    outputs = np.zeros((3, 32, 2), np.float32)
    outputs[np.arange(3), enc.start, 0] = 10
    outputs[np.arange(3), enc.end, 1] = 10
    assert [t for t, _ in best_spans(outputs, enc)][:2] == ["Ada Lovelace", "Tallinn"]
    assert len(encode_qa(split, gpt2_tokenizer, 32, drop_unanswerable=True)) == 2


def test_a_wrong_answer_start_is_repaired_and_counted(gpt2_tokenizer):
    # answer_start 0 does not point at "Tallinn": the text's first occurrence is used, and the repair is said
    split = QASplit(
        ["Where?", "Where?"], ["In the old town of Tallinn.", "Tallinn is old."], [["Tallinn"], ["Tallinn"]], [[0], [0]]
    )
    enc = encode_qa(split, gpt2_tokenizer, 32)
    lo, hi = enc.offsets[0, enc.start[0], 0], enc.offsets[0, enc.end[0], 1]
    assert enc.contexts[0][lo:hi] == "Tallinn"
    assert any(n.startswith("1 example(s) whose answer_start did not point") for n in enc.notes), enc.notes
    # a start that is a little off, where the answer occurs twice: the occurrence nearest to it
    twice = QASplit(["When?"], ["In 1990 it began; in 1990 it ended."], [["1990"]], [[22]])
    enc = encode_qa(twice, gpt2_tokenizer, 32)
    assert enc.offsets[0, enc.start[0], 0] == 21  # the second "1990", not the first at 3


def test_truncation_is_counted_and_cut_answers_dropped_for_training(gpt2_tokenizer):
    long = " ".join(["word"] * 60) + " Zanzibar"
    split = QASplit(["Where?", "Where?"], [long, "Zanzibar is far."], [["Zanzibar"], ["Zanzibar"]], [[-1], [0]])
    enc = encode_qa(split, gpt2_tokenizer, 24, drop_unanswerable=True)
    assert len(enc) == 1
    assert any("1 of 2 contexts cut" in n for n in enc.notes)
    assert any("answer was cut off" in n and "dropped" in n for n in enc.notes)


def test_squad_metrics_follow_the_official_definitions():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    s = squad_scores(
        ["the Eiffel Tower", "Paris France", "nothing"], [["Eiffel Tower"], ["Paris", "in Paris"], ["Rome"]]
    )
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx((1 + 2 * 0.5 * 1 / 1.5 + 0) / 3)


def test_span_head_learns_the_synthetic_task_clearly_above_chance(synthetic, gpt2_tokenizer, tmp_path):
    # 150 steps: on a CPU the validation exact match was 1.0 from the first evaluation (step 50) on
    cfg = TrainConfig(
        mode="scratch",
        steps=150,
        batch_size=32,
        max_len=40,
        lr=3e-3,
        eval_every=50,
        val_examples=None,
        head_dropout=0.0,
        seed=0,
    )
    model = build_model("scratch", None, mt.GPT2Config(**TINY), synthetic, cfg, SpanHead)
    r = finetune(model, synthetic, gpt2_tokenizer, cfg, tmp_path / "run", progress=False)
    # chance: a random valid span of the ~25 context tokens is right well under 1% of the time
    assert r.test["exact_match"] > 0.6, r.test
    assert r.test["f1"] >= r.test["exact_match"]
    # the saved best checkpoint answers as text, through the library and the CLI
    best = mt.load_pretrained(tmp_path / "run" / "best")
    text, _ = answer(best, gpt2_tokenizer, "Which city?", "we went home after lunch Oslo because it rained")
    assert isinstance(text, str)
    again = evaluate(best, synthetic, gpt2_tokenizer, "test", max_len=40)
    assert again["exact_match"] == pytest.approx(r.test["exact_match"])


def test_probe_mode_refuses_the_span_head(synthetic, gpt2_tokenizer):
    cfg = TrainConfig(mode="probe", steps=1, max_len=40)
    base = mt.GPT2.language_model(mt.GPT2Config(**TINY))
    model = build_model("probe", base, base.config, synthetic, cfg, SpanHead)
    with pytest.raises(mt.loop.TrainingError, match="reads every position"):
        finetune(model, synthetic, gpt2_tokenizer, cfg, None, progress=False)


def test_tfds_squad_through_mock_data(gpt2_tokenizer):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        data = load_qa_dataset("tfds:squad")
    assert len(data.train) and len(data.validation) and len(data.test)
    assert all(
        isinstance(q, str) and isinstance(c, str) for q, c in zip(data.test.questions, data.test.contexts, strict=True)
    )
    # mock answers are random strings, mostly not in their (random) contexts: every one is accounted for
    enc = encode_qa(data.test, gpt2_tokenizer, 64)
    assert len(enc) == len(data.test)


def test_cli_finetune_qa_and_answer(tmp_path, gpt2_tokenizer, capsys):
    d = tmp_path / "qa"
    d.mkdir()
    for name, split in (("train", synthetic_split(40, 5)), ("test", synthetic_split(10, 6))):
        rows = [
            {"question": q, "context": c, "answers": {"text": a, "answer_start": s}}
            for q, c, a, s in zip(split.questions, split.contexts, split.answers, split.starts, strict=True)
        ]
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lm = tmp_path / "lm"
    mt.save_pretrained(mt.GPT2.language_model(mt.GPT2Config(**TINY)), lm, gpt2_tokenizer)
    assert (
        main(
            [
                "finetune",
                "--task",
                "qa",
                "--model",
                str(lm),
                "--mode",
                "full",
                "--data",
                f"jsonl:{d}",
                "--steps",
                "3",
                "--max-len",
                "40",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test exact match" in out and "test F1" in out
    assert (
        main(
            [
                "answer",
                "--model",
                str(tmp_path / "run" / "best"),
                "--question",
                "Which city?",
                "--context",
                "we walked to Rome and back",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "answer:" in out and "note:" not in out
    # a context longer than the model was trained to read is cut, and said so; an empty one is refused
    assert (
        main(
            [
                "answer",
                "--model",
                str(tmp_path / "run" / "best"),
                "--question",
                "Which city?",
                "--context",
                "we walked along the river " * 20 + "to Rome",
            ]
        )
        == 0
    )
    # (answer has no max_len option: the note names the length the model was fine-tuned with)
    assert (
        "note: 1 of 1 contexts cut to fit the 40 tokens the model reads (its fine-tuning max_len)"
        in capsys.readouterr().out
    )
    assert (
        main(["answer", "--model", str(tmp_path / "run" / "best"), "--question", "Which city?", "--context", " "]) == 2
    )
    assert "an empty context" in capsys.readouterr().err


def test_bad_qa_rows_name_the_field(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "train.jsonl").write_text(json.dumps({"question": "q", "answers": ["a"]}) + "\n")
    (d / "test.jsonl").write_text(json.dumps({"question": "q", "context": "a", "answers": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl, line 1: no field 'context'"):
        load_qa_dataset(f"jsonl:{d}")
    good = {"question": "q", "context": "a b", "answers": {"text": ["b"], "answer_start": [2]}}
    for change, message in [
        ({"context": 5}, r"train.jsonl, line 2: the 'context' is int '5'; expected a string"),
        ({"answers": {"answer_start": [2]}}, r"line 2: the answers have no 'text'"),
        (
            {"answers": {"text": ["b"], "answer_start": ["two"]}},
            r"line 2: the answer_start is \['two'\]; expected whole",
        ),
        ({"answers": [3]}, r"line 2: the answer 3 is int; expected strings"),
        ({"answers": {"text": ["b"], "answer_start": [2.7]}}, r"line 2: the answer_start is \[2.7\]; expected whole"),
        ({"answers": {"text": ["b"], "answer_start": [True]}}, r"line 2: the answer_start is \[True\]; expected"),
        ({"answers": {"text": ["b"], "answer_start": ["2"]}}, r"line 2: the answer_start is \['2'\]; expected"),
        ({"answers": {"text": ["b", "c"], "answer_start": [2]}}, r"line 2: 2 answer text\(s\) but 1 answer_start\(s\)"),
    ]:
        (d / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, **change}) + "\n")
        with pytest.raises(DataError, match=message):
            load_qa_dataset(f"jsonl:{d}")
    (d / "train.jsonl").write_text("[1, 2]\n")
    with pytest.raises(DataError, match=r"train.jsonl, line 1: expected a JSON object, got list"):
        load_qa_dataset(f"jsonl:{d}")


def test_qa_jsonl_keeps_a_context_with_a_unicode_line_separator(tmp_path):
    # str.splitlines() would cut this line in two at U+2028, inside the JSON string
    d = tmp_path / "ok"
    d.mkdir()
    row = {"question": "Where?", "context": "First line\u2028then Paris.", "answers": ["Paris"]}
    for name in ("train", "test"):
        (d / f"{name}.jsonl").write_text(json.dumps(row, ensure_ascii=False) + "\n", encoding="utf-8")
    data = load_qa_dataset(f"jsonl:{d}")
    assert data.test.contexts == ["First line\u2028then Paris."]


def test_qa_edge_cases_found_in_review(gpt2_tokenizer):
    # a label budget arrives from the command line as a string
    split = toy_city_questions(20, 0)
    assert len(split.subset("5", 0, "`labels`")) == 5 and len(split.subset("all", 0, "`labels`")) == 20
    with pytest.raises(DataError, match="`labels` must be a number of examples or 'all', got 'many'"):
        split.subset("many", 0, "`labels`")
    # an answer given with a trailing space still maps to its tokens
    ws = QASplit(["Who?"], ["The Denver Broncos won."], [["Denver Broncos "]], [[4]])
    enc = encode_qa(ws, gpt2_tokenizer, 32, drop_unanswerable=True)
    assert len(enc) == 1
    assert enc.contexts[0][enc.offsets[0, enc.start[0], 0] : enc.offsets[0, enc.end[0], 1]] == "Denver Broncos"
    # an empty context decodes to no answer instead of failing
    empty = encode_qa(QASplit(["Who?"], [""], [["x"]], [[-1]]), gpt2_tokenizer, 32)
    assert best_spans(np.zeros((1, 32, 2), np.float32), empty)[0][0] == ""
    # SQuAD v1.1: answers that normalise to nothing share nothing
    assert squad_scores(["the"], [["a"]])["f1"] == 0.0
    # adapt trains on each context once
    assert toy_city_questions(3, 0).texts == list(dict.fromkeys(toy_city_questions(3, 0).contexts))
