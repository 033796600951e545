"""`minitransfer predict` (labelling new texts with a fine-tuned classifier),
and a classifier that opens in transformers as the same model."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest

import minitransfer as mt
from minitransfer.classify import ClassificationHead
from minitransfer.cli import main
from minitransfer.qa import SpanHead

MAX_LEN = 12  # the classifier's max_len: the long text below is cut to it

TEXTS = [
    "the film was great",
    "my day was awful",
    "this phone was lovely",
    "our trip was terrible and the hotel was worse, the food was cold, the staff were rude, we left early",
    "that song was good",
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, pretrained_dir):
    """A random 'pretrained' GPT-2, and a classifier fine-tuned from it for a few steps with the head
    transformers can represent (--pooling last --no-head-bias)."""
    d = tmp_path_factory.mktemp("predict")
    shutil.copytree(pretrained_dir, d / "pre")  # conftest's, whose steps the other files compiled
    rng = np.random.default_rng(0)
    words = {"neg": ["awful", "terrible", "bad"], "pos": ["great", "lovely", "good"]}
    rows = [
        {"text": f"{rng.choice(['the film', 'my day', 'this phone'])} was {rng.choice(words[lab])}", "label": lab}
        for lab in ("neg", "pos") * 40
    ]
    (d / "kw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert (
        main(
            [
                "finetune",
                "--model",
                str(d / "pre"),
                "--mode",
                "full",
                "--data",
                f"jsonl:{d / 'kw.jsonl'}",
                "--out",
                str(d / "run"),
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--max-len",
                str(MAX_LEN),
                "--pooling",
                "last",
                "--no-head-bias",
                "--no-progress",
            ]
        )
        == 0
    )
    return d


def solo_logits(model, tokenizer, texts, max_len):
    """Each text alone through the model (no padding, no batching): the classifier's logits."""
    out = []
    for t in texts:
        ids = np.asarray(tokenizer(t, add_special_tokens=False)["input_ids"][:max_len], np.int32)[None]
        out.append(np.asarray(model(ids))[0])
    return np.stack(out)


def _write_inputs(d):
    """The same texts as JSONL, CSV and TXT; each with one empty text (line 3 of the txt)."""
    (d / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS[:2] + [" "] + TEXTS[2:]))
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "text"])
    w.writerows([[i, t] for i, t in enumerate(TEXTS[:2] + [""] + TEXTS[2:])])
    (d / "in.csv").write_text(buf.getvalue())
    (d / "in.txt").write_text("\n".join(TEXTS[:2] + [""] + TEXTS[2:]) + "\n")


@pytest.mark.parametrize("kind,out", [("jsonl", "out.jsonl"), ("csv", "out.csv"), ("txt", None)])
def test_predict_labels_every_text_as_evaluate_would(dirs, tmp_path, capsys, kind, out):
    _write_inputs(tmp_path)
    best = dirs / "run" / "best"
    argv = ["predict", "--model", str(best), "--data", str(tmp_path / f"in.{kind}"), "--no-progress"]
    if out:
        argv += ["--out", str(tmp_path / out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    if out is None:  # the rows on stdout, the summary on stderr
        rows = [json.loads(line) for line in captured.out.splitlines()]
    elif out.endswith(".csv"):
        assert captured.out == ""
        rows = []
        for r in csv.DictReader(io.StringIO((tmp_path / out).read_text())):
            rows.append(
                {
                    "line": int(r["line"]),
                    "text": r["text"],
                    "label": r["label"],
                    "probabilities": {k[5:]: float(v) for k, v in r.items() if k.startswith("prob_")},
                    "truncated": r["truncated"] == "True",
                }
            )
    else:
        rows = [json.loads(line) for line in (tmp_path / out).read_text().splitlines()]
    model = mt.load_pretrained(best)
    labels = list(model.head.labels)
    assert labels == ["neg", "pos"]
    assert [r["text"] for r in rows] == TEXTS  # one row per non-empty text, in input order
    assert [r["line"] for r in rows] == (
        [1, 2, 4, 5, 6] if kind == "txt" else [1, 2, 4, 5, 6] if kind == "jsonl" else [2, 3, 5, 6, 7]
    )  # (the csv's header is line 1)
    for r in rows:
        assert list(r["probabilities"]) == labels and r["label"] in labels
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-5
    tokenizer = mt.load_tokenizer(best)
    logits = solo_logits(model, tokenizer, TEXTS, MAX_LEN)
    assert [r["label"] for r in rows] == [labels[i] for i in logits.argmax(-1)]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose([list(r["probabilities"].values()) for r in rows], probs, atol=2e-6)
    assert [r["truncated"] for r in rows] == [False, False, False, True, False]
    err = captured.err
    assert f"labelled 5 texts with {best}: neg " in err
    assert f"1 of 5 texts truncated to the first {MAX_LEN} tokens (the max_len the model was trained with)" in err
    assert "skipped 1 empty text (line " + ("4" if kind == "csv" else "3") + "): no label for them" in err


def test_bad_input_is_refused_naming_file_row_and_field(dirs, tmp_path, capsys):
    best = str(dirs / "run" / "best")
    (tmp_path / "texts.xlsx").write_text("x")
    (tmp_path / "nofield.jsonl").write_text('{"text": "fine"}\n{"body": "no text here"}\n')
    (tmp_path / "nofield.csv").write_text("id,body\n1,hello\n")
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "ok.txt").write_text("hello\n")
    qa = mt.GPT2(mt.load_pretrained(dirs / "pre").backbone, SpanHead(32, seed=1))
    mt.save_pretrained(qa, tmp_path / "qa", tokenizer=mt.load_tokenizer(dirs / "pre"))
    cases = [
        (["--model", best, "--data", str(tmp_path / "missing.jsonl")], f"{tmp_path / 'missing.jsonl'}: no such file"),
        (["--model", best, "--data", str(tmp_path)], f"{tmp_path} is a folder; expected one file of texts"),
        (
            ["--model", best, "--data", str(tmp_path / "texts.xlsx")],
            "texts.xlsx: unknown kind of file (.xlsx); predict reads .jsonl",
        ),
        (
            ["--model", best, "--data", str(tmp_path / "nofield.jsonl")],
            f"{tmp_path / 'nofield.jsonl'}, line 2: no field 'text' (the row has ['body'])",
        ),
        (
            ["--model", best, "--data", str(tmp_path / "nofield.csv"), "--text-field", "tweet"],
            f"{tmp_path / 'nofield.csv'}, line 2: no field 'tweet' (the row has ['body', 'id'])",
        ),
        (["--model", best, "--data", str(tmp_path / "empty.txt")], "every text is empty (2 line(s)); nothing to label"),
        (
            ["--model", str(dirs / "pre"), "--data", str(tmp_path / "ok.txt")],
            "is a language model (a next-word head); predict expects a classifier fine-tuned with `minitransfer "
            "finetune --task classify`",
        ),
        (
            ["--model", str(tmp_path / "qa"), "--data", str(tmp_path / "ok.txt")],
            "is a question-answering model (a span head, finetune --task qa); predict expects a classifier",
        ),
        (
            ["--model", best, "--data", str(tmp_path / "ok.txt"), "--out", str(tmp_path / "p.txt")],
            "expected a file name ending in .jsonl (JSON lines) or .csv",
        ),
        (["--model", best, "--data", str(tmp_path / "ok.txt"), "--max-len", "0"], "--max-len 0 is outside 1..32"),
    ]
    for argv, said in cases:
        assert main(["predict", *argv, "--no-progress"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("minitransfer predict: error: ") and said in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.txt").exists()


def test_a_classifier_without_bias_opens_in_transformers_with_the_same_logits(dirs):
    import torch
    from transformers import AutoTokenizer, GPT2ForSequenceClassification

    best = dirs / "run" / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["pad_token_id"] == 50256
    hf, loading = GPT2ForSequenceClassification.from_pretrained(best, output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"], loading  # score.weight was random before
    assert hf.config.num_labels == 2 and hf.config.id2label == {0: "neg", 1: "pos"}
    tokenizer = AutoTokenizer.from_pretrained(best)  # pads with <|endoftext|>, as config.json says
    batch = tokenizer(TEXTS[:3] + ["ok"], padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # rows of different lengths: padding in the batch
    with torch.no_grad():
        theirs = hf.eval()(**batch).logits.numpy()
    model = mt.load_pretrained(best)
    ours = np.asarray(model(batch["input_ids"].numpy(), batch["attention_mask"].numpy()))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours, solo_logits(model, mt.load_tokenizer(best), TEXTS[:3] + ["ok"], 32), atol=1e-5)
    assert "opens in transformers as the same classifier" in (best / "README.md").read_text()


@pytest.mark.parametrize(
    "pooling,bias,why", [("last", True, "a bias in its linear layer"), ("mean", False, "mean pooling")]
)
def test_a_head_transformers_cannot_represent_is_said_plainly(dirs, tmp_path, capsys, pooling, bias, why):
    pre = mt.load_pretrained(dirs / "pre")
    head = ClassificationHead(32, ["a", "b", "c"], pooling=pooling, bias=bias, seed=2)
    mt.save_pretrained(mt.GPT2(pre.backbone, head), tmp_path / "m", tokenizer=mt.load_tokenizer(dirs / "pre"))
    card = (tmp_path / "m" / "README.md").read_text()
    assert f"cannot represent this classifier's head ({why}" in card and "--pooling last --no-head-bias" in card
    # it still saves and loads in minitransfer as before: head.score.* beside the backbone
    from safetensors.numpy import load_file

    names = set(load_file(str(tmp_path / "m" / "model.safetensors")))
    assert "head.score.weight" in names and ("head.score.bias" in names) == bias and "score.weight" not in names
    back = mt.load_pretrained(tmp_path / "m")
    ids = np.arange(5, dtype=np.int32)[None]
    np.testing.assert_array_equal(np.asarray(back(ids)), np.asarray(mt.GPT2(pre.backbone, head)(ids)))
    assert main(["convert", str(tmp_path / "m"), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert f"note: transformers' GPT2ForSequenceClassification cannot represent this classifier's head ({why}" in out


def test_finetune_says_when_its_classifier_is_not_one_transformers_loads(dirs, tmp_path, capsys):
    assert (
        main(
            [
                "finetune",
                "--model",
                str(dirs / "pre"),
                "--mode",
                "probe",
                "--data",
                f"jsonl:{dirs / 'kw.jsonl'}",
                "--out",
                str(tmp_path / "run"),
                "--steps",
                "1",
                "--batch-size",
                "8",
                "--max-len",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "note: transformers' GPT2ForSequenceClassification cannot represent this classifier's head (a bias in "
        "its linear layer;"
    ) in out and "fine-tune with `minitransfer finetune --pooling last --no-head-bias`" in out
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["minitransfer"]["bias"] is True and "pad_token_id" not in config
