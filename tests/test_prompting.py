"""Reusing the head: the next-word head as a zero-label classifier (mode zero),
fine-tuned from there (mode prompt), and the prompt at the end of every text."""

from __future__ import annotations

import csv
import json

import jax.numpy as jnp
import numpy as np
import pytest

import minitransfer as mt
from minitransfer.cli import main
from minitransfer.data import DataError, Split
from minitransfer.encoding import encode
from minitransfer.prompting import PromptHead, default_label_words, parse_label_words, word_ids


@pytest.fixture(scope="module")
def setup(tmp_path_factory, gpt2_tokenizer):
    d = tmp_path_factory.mktemp("prompting")
    cfg = mt.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50257, n_positions=32)
    mt.save_pretrained(mt.GPT2.language_model(cfg, seed=3), d / "pre", tokenizer=gpt2_tokenizer)
    rng = np.random.default_rng(0)
    rows = [
        {
            "text": f"item {i} is {rng.choice(['good', 'fine'] if i % 2 else ['bad', 'poor'])}",
            "label": "positive" if i % 2 else "negative",
        }
        for i in range(120)
    ]
    (d / "kw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_a_suffix_ends_every_text_and_truncation_cuts_the_text_not_the_suffix(gpt2_tokenizer):
    split = Split(["one two three four five six seven", "hi"], np.array([0, 1]))
    suffix = tuple(gpt2_tokenizer.encode(" Overall, it was"))
    e = encode(split, gpt2_tokenizer, 8, suffix)
    long_ids = gpt2_tokenizer.encode(split.texts[0])
    assert list(e.input_ids[0]) == long_ids[: 8 - len(suffix)] + list(suffix)
    n_short = len(gpt2_tokenizer.encode("hi"))
    assert list(e.input_ids[1][: n_short + len(suffix)]) == gpt2_tokenizer.encode("hi") + list(suffix)
    assert e.attention_mask[1].sum() == n_short + len(suffix)
    assert e.n_truncated == 1  # the long text lost tokens to make room for the prompt; the short one did not
    assert encode(split, gpt2_tokenizer, 8).n_truncated == 0  # without the suffix both fit
    with pytest.raises(DataError, match="no room for the text"):
        encode(split, gpt2_tokenizer, len(suffix), suffix)


def test_at_step_zero_the_prompt_head_is_the_next_word_head_read_at_the_label_words(setup, gpt2_tokenizer):
    lm = mt.load_pretrained(setup / "pre")
    head = PromptHead.for_tokenizer(gpt2_tokenizer, ["negative", "positive"], lm.backbone, dropout=0.0)
    clf = mt.GPT2(lm.backbone, head)
    ids = gpt2_tokenizer.encode("The film was a joy.") + list(head.prompt_ids)
    x = jnp.asarray([ids], jnp.int32)
    next_word = np.asarray(lm(x))[0, -1]  # (V,): the next-word logits after the prompt's last token
    want = next_word[list(head.label_ids)] + np.asarray(head.calibration[...])
    np.testing.assert_allclose(np.asarray(clf(x))[0], want, rtol=1e-5, atol=1e-5)
    assert head.words == (" terrible", " great")
    # calibrated: the prompt with no text before it scores both labels alike
    alone = np.asarray(clf(jnp.asarray([list(head.prompt_ids)], jnp.int32)))[0]
    assert abs(alone[0] - alone[1]) < 1e-5
    # and the offsets are not zero: without them the prompt alone would prefer one label
    assert np.ptp(np.asarray(head.calibration[...])) > 1e-6


def test_label_words_defaults_parsing_and_refusals(gpt2_tokenizer):
    assert default_label_words(["negative", "neutral", "positive"]) == [" terrible", " okay", " great"]
    assert default_label_words(["0", "1"]) == [" terrible", " great"]
    with pytest.raises(
        ValueError, match=r"no default label word for label\(s\) \['spam'\].*`label_words` \(spam=WORD,negative=WORD\)"
    ):
        default_label_words(["ham", "spam", "negative"][1:])
    assert parse_label_words("positive=good, negative=bad", ["negative", "positive"]) == [" bad", " good"]
    with pytest.raises(ValueError, match="not LABEL=WORD"):
        parse_label_words("negative:bad", ["negative", "positive"])
    with pytest.raises(ValueError, match=r"no word for: \['positive'\]"):
        parse_label_words("negative=bad", ["negative", "positive"])
    with pytest.raises(ValueError, match=r"not labels: \['neutral'\]"):
        parse_label_words("negative=bad,positive=good,neutral=meh", ["negative", "positive"])
    with pytest.raises(ValueError, match="must be one token"):
        word_ids(gpt2_tokenizer, [" antidisestablishmentarianism", " good"])
    with pytest.raises(ValueError, match="not all different"):
        word_ids(gpt2_tokenizer, [" good", " good"])


def test_finetune_mode_prompt_saves_a_classifier_that_loads_back(setup, tmp_path, gpt2_tokenizer, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "finetune",
                "--mode",
                "prompt",
                "--model",
                str(setup / "pre"),
                "--data",
                f"jsonl:{setup / 'kw.jsonl'}",
                "--steps",
                "3",
                "--max-len",
                "16",
                "--out",
                str(out),
                "--label-words",
                "negative=bad,positive=good",
                "--no-progress",
            ]
        )
        == 0
    )
    best = mt.load_pretrained(out / "best")
    assert isinstance(best.head, PromptHead) and best.head.words == (" bad", " good")
    info = json.loads((out / "best" / "config.json").read_text())["minitransfer"]
    assert info["head"] == "prompt" and info["prompt"] == " Overall, it was"
    assert main(["evaluate", "--model", str(out / "best"), "--json"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :])["accuracy"] >= 0
    # predict labels new texts with it, the prompt appended as in training
    texts = tmp_path / "new.txt"
    texts.write_text("item 7 is good\nitem 8 is bad\n")
    assert (
        main(
            [
                "predict",
                "--model",
                str(out / "best"),
                "--data",
                str(texts),
                "--out",
                str(tmp_path / "p.jsonl"),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["label"] in ("negative", "positive") for r in rows] == [True, True]
    # the mode trains nothing at zero: finetune says where it is scored instead
    assert (
        main(
            [
                "finetune",
                "--mode",
                "zero",
                "--model",
                str(setup / "pre"),
                "--data",
                f"jsonl:{setup / 'kw.jsonl'}",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "z"),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr()
    assert "trains nothing" in err.err and "data:" not in err.out  # said before the data loads


def test_compare_scores_zero_labels_once_per_prompt_and_draws_it(setup, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--model",
        str(setup / "pre"),
        "--data",
        f"jsonl:{setup / 'kw.jsonl'}",
        "--budgets",
        "20",
        "--seeds",
        "2",
        "--steps",
        "3",
        "--max-len",
        "16",
        "--modes",
        "zero,probe,prompt",
        "--out",
        str(out),
        "--prompt",
        " Overall, it was",
        "--prompt",
        " In short, it was",
        "--prompt",
        " It was",
        "--no-progress",
    ]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    zero = [r for r in rows if r["mode"] == "zero"]
    assert [(r["budget"], r["n_train"], r["seed"], r["split"]) for r in zero] == [
        ("0", "0", str(i), "test") for i in range(3)
    ]
    s = json.loads((out / "summary.json").read_text())
    assert s["modes"] == ["probe", "prompt"]  # the table's modes: zero is its own line
    z = s["zero_label"]
    assert z["prompts"] == [" Overall, it was", " In short, it was", " It was"]
    assert z["accuracy_per_prompt"] == [float(r["accuracy"]) for r in zero]
    assert z["accuracy_mean"] == pytest.approx(np.mean(z["accuracy_per_prompt"]))
    assert [(g["mode"], g["over"]) for g in s["gains"]] == [("prompt", "probe")]  # full did not run
    md = (out / "summary.md").read_text()
    assert "Zero labels (mode zero" in md and "Per prompt: 'Overall, it was'" in md
    assert "Gain over probe" in md
    assert (out / "budget.png").stat().st_size > 0
    only_zero = [
        "compare",
        "--model",
        str(setup / "pre"),
        "--data",
        f"jsonl:{setup / 'kw.jsonl'}",
        "--modes",
        "zero",
        "--out",
        str(tmp_path / "z"),
        "--no-progress",
    ]
    capsys.readouterr()
    assert main(only_zero) == 2
    assert "trains nothing: name a mode that trains beside it" in capsys.readouterr().err
