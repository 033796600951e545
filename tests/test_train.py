"""Heads and the fine-tuning loop: scratch, probe, full."""

from __future__ import annotations

import json
import re
import time

import jax
import numpy as np
import pytest
from flax import nnx

import minitransfer as mt
from minitransfer.classify import ClassificationHead, last_token_index, pool
from minitransfer.cli import main
from minitransfer.data import load_dataset
from minitransfer.errors import TrainingError
from minitransfer.optim import layer_lr_factors
from minitransfer.train import TrainConfig, build_classifier, finetune
from tests.conftest import TINY, ctrl_c_after


def _cfg(**kw):
    base = dict(steps=30, batch_size=16, max_len=12, eval_every=10, lr=3e-3)
    return TrainConfig(**{**base, **kw})


def _model(mode, pretrained_dir, data, cfg):
    base = None if mode == "scratch" else mt.load_pretrained(pretrained_dir)
    return build_classifier(mode, base, mt.GPT2Config(**TINY), data.label_names, cfg)


# ----------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------


def test_pooling_last_and_mean():
    hidden = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    right = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [1, 3] and last_token_index(left).tolist() == [3, 3]
    np.testing.assert_array_equal(pool(hidden, right, "last"), hidden[[0, 1], [1, 3]])
    np.testing.assert_allclose(pool(hidden, right, "mean")[0], hidden[0, :2].mean(0))


def test_swapping_the_head_keeps_the_backbone(pretrained_dir):
    lm = mt.load_pretrained(pretrained_dir)
    before = jax.tree.map(np.asarray, nnx.state(lm.backbone))
    clf = mt.GPT2(lm.backbone, ClassificationHead(32, ["a", "b", "c"]))
    ids = np.array([[1, 2, 3, 4]], np.int32)
    assert clf(ids).shape == (1, 3) and lm(ids).shape == (1, 4, 50257)
    assert clf.backbone is lm.backbone
    after = jax.tree.map(np.asarray, nnx.state(clf.backbone))
    jax.tree.map(np.testing.assert_array_equal, before, after)


def test_discriminative_lr_factors(pretrained_dir):
    model = mt.GPT2(mt.load_pretrained(pretrained_dir).backbone, ClassificationHead(32, ["a", "b"]))
    f = layer_lr_factors(nnx.state(model), n_layer=2, decay=0.5)
    assert float(f["head"]["score"]["kernel"].get_value()) == 1.0
    assert float(f["backbone"]["h"][1]["attn"]["c_attn"]["kernel"].get_value()) == 0.5
    assert float(f["backbone"]["h"][0]["attn"]["c_attn"]["kernel"].get_value()) == 0.25
    assert float(f["backbone"]["wte"]["embedding"].get_value()) == 0.125


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


def test_probe_step_leaves_backbone_bit_identical(pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path):
    cfg = _cfg(mode="probe", steps=1, eval_every=1)
    model = _model("probe", pretrained_dir, keyword_data, cfg)
    before = jax.tree.map(np.array, nnx.state(model.backbone))
    head_before = np.array(model.head.score.kernel[...])
    finetune(model, keyword_data, gpt2_tokenizer, cfg, tmp_path / "run", progress=False)
    after = jax.tree.map(np.array, nnx.state(model.backbone))
    jax.tree.map(np.testing.assert_array_equal, before, after)
    assert not np.array_equal(head_before, np.asarray(model.head.score.kernel[...]))  # the head did learn
    saved = mt.load_pretrained(tmp_path / "run" / "best")
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, nnx.state(saved.backbone)))


@pytest.mark.parametrize("mode", ["scratch", "probe", "full"])
def test_loss_falls_in_every_mode(mode, pretrained_dir, keyword_data, gpt2_tokenizer):
    lr = {"scratch": 3e-3, "probe": 3e-2, "full": 3e-3}[mode]
    cfg = _cfg(mode=mode, lr=lr, steps=40)
    model = _model(mode, pretrained_dir, keyword_data, cfg)
    r = finetune(model, keyword_data, gpt2_tokenizer, cfg, None, progress=False)
    first, last = r.history[0]["val_loss"], min(h["val_loss"] for h in r.history)
    initial = mt.train.evaluate(
        _model(mode, pretrained_dir, keyword_data, cfg), keyword_data, gpt2_tokenizer, "validation", max_len=12
    )
    print(f"{mode}: val loss {initial['loss']:.3f} -> {first:.3f} -> {last:.3f}, test acc {r.test['accuracy']:.3f}")
    assert last < initial["loss"] - 0.05
    assert r.test["accuracy"] > 0.7


def test_interrupted_and_resumed_run_matches_uninterrupted(pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path):
    cfg = _cfg(mode="full", steps=12, eval_every=3)
    a = finetune(
        _model("full", pretrained_dir, keyword_data, cfg),
        keyword_data,
        gpt2_tokenizer,
        cfg,
        tmp_path / "a",
        progress=False,
    )
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        finetune(
            _model("full", pretrained_dir, keyword_data, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "b",
            progress=False,
            log=ctrl_c_after(6),
        )
    partial_seconds = time.perf_counter() - t0
    state = json.loads((tmp_path / "b" / "state" / "state.json").read_text())
    assert state["step"] == 6 and not (tmp_path / "b" / "result.json").exists()
    b = finetune(
        _model("full", pretrained_dir, keyword_data, cfg),
        keyword_data,
        gpt2_tokenizer,
        cfg,
        tmp_path / "b",
        progress=False,
    )
    assert a.test == b.test and a.best_step == b.best_step and a.best_val == b.best_val
    # the resumed run's wall time counts the first call's training too, as a phase of its own
    res_b = json.loads((tmp_path / "b" / "result.json").read_text())
    assert 0 < res_b["seconds"]["earlier_calls"] <= partial_seconds
    assert sum(res_b["seconds"].values()) == pytest.approx(res_b["wall_seconds"], abs=0.02)
    assert "earlier_calls" not in json.loads((tmp_path / "a" / "result.json").read_text())["seconds"]
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    wa = mt.load_pretrained(tmp_path / "a" / "best")
    wb = mt.load_pretrained(tmp_path / "b" / "best")
    jax.tree.map(np.testing.assert_array_equal, nnx.state(wa), nnx.state(wb))
    assert not (tmp_path / "a" / "state").exists() and not (tmp_path / "b" / "state").exists()  # finished: gone
    # The same run as compare runs it (keep_state=False): nothing saved along the way, so an interrupted
    # run leaves neither state nor best/, and re-running starts over; it ends as the others did, its
    # best/ written at the end from the best weights (not the last: the best step comes earlier here)
    assert a.best_step < cfg.steps
    d_dir = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        finetune(
            _model("full", pretrained_dir, keyword_data, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            d_dir,
            progress=False,
            log=ctrl_c_after(6),
            keep_state=False,
        )
    assert not (d_dir / "state").exists() and not (d_dir / "best").exists()
    said = []
    d = finetune(
        _model("full", pretrained_dir, keyword_data, cfg),
        keyword_data,
        gpt2_tokenizer,
        cfg,
        d_dir,
        progress=False,
        keep_state=False,
        log=said.append,
    )
    assert not any("resuming" in m for m in said), said
    assert d.test == a.test and d.best_step == a.best_step and d.history == a.history
    jax.tree.map(np.testing.assert_array_equal, nnx.state(wa), nnx.state(mt.load_pretrained(d_dir / "best")))
    assert json.loads((d_dir / "best" / "config.json").read_text())["minitransfer"]["step"] == a.best_step
    # a third run with the same directory is recognised as finished
    c = finetune(
        _model("full", pretrained_dir, keyword_data, cfg),
        keyword_data,
        gpt2_tokenizer,
        cfg,
        tmp_path / "b",
        progress=False,
    )
    assert c.test == a.test


def test_save_load_identical_predictions_and_evaluate_reproduces_val(
    pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path, capsys
):
    cfg = _cfg(mode="full", steps=10, eval_every=5, val_examples=10)
    model = _model("full", pretrained_dir, keyword_data, cfg)
    r = finetune(model, keyword_data, gpt2_tokenizer, cfg, tmp_path / "run", progress=False)
    loaded = mt.load_pretrained(tmp_path / "run" / "best")
    assert loaded.head.labels == ("neg", "pos")
    ids = np.array([gpt2_tokenizer.encode("the film was great")], np.int32)
    np.testing.assert_array_equal(np.asarray(model(ids)), np.asarray(loaded(ids)))
    spec = keyword_data.spec
    capsys.readouterr()
    assert (
        main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--data", spec, "--split", "validation", "--json"])
        == 0
    )
    got = json.loads(capsys.readouterr().out)
    assert got["n"] == 10 and got["accuracy"] == r.best_val["accuracy"]
    assert abs(got["loss"] - r.best_val["loss"]) < 1e-6
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--data", spec, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == r.test["accuracy"]
    # a bfloat16 run's validation is reproduced in bfloat16 (in float32 its loss differs)
    cfg16 = _cfg(mode="full", steps=4, eval_every=4, val_examples=10, dtype="bfloat16")
    r16 = finetune(
        _model("full", pretrained_dir, keyword_data, cfg16),
        keyword_data,
        gpt2_tokenizer,
        cfg16,
        tmp_path / "run16",
        progress=False,
    )
    capsys.readouterr()
    assert (
        main(
            ["evaluate", "--model", str(tmp_path / "run16" / "best"), "--data", spec, "--split", "validation", "--json"]
        )
        == 0
    )
    assert abs(json.loads(capsys.readouterr().out)["loss"] - r16.best_val["loss"]) < 1e-6
    # what the data's loading dropped or repaired is said, as finetune says it (on stderr, beside --json)
    from pathlib import Path

    edited = tmp_path / "kw-edited.jsonl"
    edited.write_text(Path(spec.split(":", 1)[1]).read_text() + json.dumps({"text": "", "label": "pos"}) + "\n")
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--data", f"jsonl:{edited}", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "data: kw-edited.jsonl: 1 row(s) with empty 'text' dropped" in err and json.loads(out)["n"] > 0


def test_one_real_step_on_tfds_mock_data(pretrained_dir, gpt2_tokenizer):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=16):
        data = load_dataset("tfds:imdb_reviews")
    cfg = _cfg(mode="full", steps=1, eval_every=1, batch_size=4)
    r = finetune(_model("full", pretrained_dir, data, cfg), data, gpt2_tokenizer, cfg, None, progress=False)
    assert r.steps == 1 and np.isfinite(r.test["loss"])


def test_ctrl_c_says_how_to_resume_instead_of_a_traceback(pretrained_dir, keyword_data, tmp_path, capsys, monkeypatch):
    import minitransfer.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minitransfer.train, "train_loop", interrupted)
    assert (
        main(
            [
                "finetune",
                "--model",
                str(pretrained_dir),
                "--mode",
                "full",
                "--data",
                keyword_data.spec,
                "--steps",
                "4",
                "--max-len",
                "12",
                "--no-progress",
                "--out",
                str(tmp_path / "f"),
            ]
        )
        == 130
    )
    err = capsys.readouterr().err
    assert "minitransfer finetune: interrupted; re-run the same command to resume" in err
    assert "Traceback" not in err


def test_cli_finetune_all_modes_and_skip(pretrained_dir, keyword_data, tmp_path, capsys):
    spec = keyword_data.spec
    # batch 16 and --max-len 12, as _cfg: the probe and full steps are the programs the runs above compiled
    common = ["--data", spec, "--steps", "4", "--batch-size", "16", "--max-len", "12", "--no-progress"]
    assert (
        main(["finetune", "--model", str(pretrained_dir), "--mode", "probe", "--out", str(tmp_path / "p"), *common])
        == 0
    )
    out = capsys.readouterr().out
    assert "test accuracy" in out
    # --no-progress: no bar, so a line per evaluation
    assert "probe step 4/4: train loss " in out and ", val_accuracy " in out and re.search(r"val_n \d+(,|\n)", out)
    # continuing from a classifier keeps its head, and so its pooling: an asked-for other pooling is said to do nothing
    assert (
        main(
            [
                "finetune",
                "--model",
                str(tmp_path / "p" / "best"),
                "--mode",
                "full",
                "--pooling",
                "mean",
                "--out",
                str(tmp_path / "p2"),
                *common,
            ]
        )
        == 0
    )
    assert (
        "note: --pooling mean has no effect: the model's own classification head (pooling last) goes on training"
    ) in capsys.readouterr().out
    # evaluate without --data: the data the model was fine-tuned on, as its config.json records it
    assert main(["evaluate", "--model", str(tmp_path / "p" / "best"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert f"(--data: {spec}, the data the model was fine-tuned on)" in err and json.loads(out)["n"] > 0
    assert (
        main(
            [
                "finetune",
                "--model",
                str(pretrained_dir),
                "--mode",
                "scratch",
                "--config",
                "tiny",
                "--out",
                str(tmp_path / "s"),
                *common,
            ]
        )
        == 0
    )
    assert mt.load_pretrained(tmp_path / "s" / "best").config.n_embd == 64  # 'tiny', not --model's 32
    assert (
        main(
            [
                "finetune",
                "--model",
                str(pretrained_dir),
                "--mode",
                "full",
                "--labels",
                "20",
                "--lr-decay-per-layer",
                "0.5",
                "--out",
                str(tmp_path / "f"),
                *common,
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "f" / "result.json").read_text())["n_train"] == 20
    capsys.readouterr()
    assert (
        main(["finetune", "--model", str(pretrained_dir), "--mode", "probe", "--out", str(tmp_path / "p"), *common])
        == 0
    )
    assert "already finished" in capsys.readouterr().out


def test_a_batch_larger_than_the_training_set_becomes_the_training_set(pretrained_dir, keyword_data, tmp_path):
    # --batch-size 1000000000 once exhausted 22 GB before the first step; now each step takes every example
    from minitransfer.encoding import pack_blocks
    from minitransfer.pretrain import PretrainConfig, model_card, pretrain, pretrain_card

    tok = mt.load_tokenizer(pretrained_dir)
    said = []
    cfg = TrainConfig(mode="full", steps=2, batch_size=10**9, max_len=12, labels=20, eval_every=2, val_examples=8)
    r = finetune(
        _model("full", pretrained_dir, keyword_data, cfg),
        keyword_data,
        tok,
        cfg,
        tmp_path / "f",
        progress=False,
        log=said.append,
    )
    assert (
        "note: `batch_size` 1000000000 is more than the 20 training examples: each step takes all 20 (batch 20)" in said
    )
    result = json.loads((tmp_path / "f" / "result.json").read_text())
    assert result["batch_size_used"] == 20 and result["config"]["batch_size"] == 10**9 and r.steps == 2
    assert result["epochs_trained"] == 2.0  # 2 steps of all 20 examples, whatever config's epochs says
    # no evaluation batch asked for: the device's (steps.eval_batch_default), recorded as used
    import jax

    assert cfg.eval_batch_size is None and result["config"]["eval_batch_size"] == (
        32 if jax.default_backend() == "cpu" else 64
    )
    blocks = pack_blocks(keyword_data.train.texts, tok, block_size=16, val_fraction=0.1, seed=0)
    said.clear()
    lm = mt.GPT2.language_model(mt.load_pretrained(pretrained_dir).config, seed=0)
    pcfg = PretrainConfig(steps=1, batch_size=10**9, block_size=16, eval_every=1)
    pr = pretrain(lm, blocks, tok, pcfg, progress=False, log=said.append)
    n = len(blocks.train)
    assert (
        f"note: `batch_size` 1000000000 is more than the {n:,} training blocks of 16 tokens: each step takes all "
        f"{n:,} (batch {n:,})" in said
    )
    # the model card records the batch trained with, and the one asked beside it
    card = pretrain_card(
        data="keywords",
        documents=20,
        result=pr,
        config=lm.config,
        cfg=pcfg,
        n_params=1,
        report={},
        command="minitransfer pretrain ...",
    )
    assert pr.batch_size_used == n and card["pretrain"]["batch_size"] == n
    assert card["pretrain"]["batch_size_asked"] == 10**9
    assert f"x batch {n} (asked 1000000000: more than the data's blocks) x block 16" in model_card(card)
    said.clear()  # the adaptation calls pretrain with settings that are not command-line options: named as such
    pretrain(
        lm,
        blocks,
        tok,
        PretrainConfig(steps=1, batch_size=10**9, block_size=16, eval_every=1),
        progress=False,
        log=said.append,
        names={"batch_size": "the adaptation's batch size"},
    )
    assert any(m.startswith("note: the adaptation's batch size 1000000000 is more than") for m in said), said


def test_pretraining_resumes_only_with_the_same_validation_blocks(pretrained_dir, keyword_data, tmp_path):
    # the validation blocks choose the checkpoint kept: a state scored on other blocks is another run
    import dataclasses

    from minitransfer.encoding import pack_blocks
    from minitransfer.pretrain import PretrainConfig, pretrain

    tok = mt.load_tokenizer(pretrained_dir)
    blocks = pack_blocks(keyword_data.train.texts, tok, block_size=16, val_fraction=0.2, seed=0)
    assert len(blocks.validation) > 1
    lm = mt.GPT2.language_model(mt.load_pretrained(pretrained_dir).config, seed=0)
    cfg = PretrainConfig(steps=4, batch_size=4, block_size=16, eval_every=2)
    with pytest.raises(KeyboardInterrupt):
        pretrain(lm, blocks, tok, cfg, tmp_path / "p", progress=False, log=ctrl_c_after(2))
    other = dataclasses.replace(blocks, validation=blocks.validation[::-1].copy())
    with pytest.raises(TrainingError, match=r"other settings \(the validation blocks \(a hash of their tokens\)"):
        pretrain(lm, other, tok, cfg, tmp_path / "p", progress=False, log=lambda m: None)
    said = []
    r = pretrain(lm, blocks, tok, cfg, tmp_path / "p", progress=False, log=said.append)
    assert any("resuming at step 2 of 4" in m for m in said) and r.steps == 4
    # a state another version of minitransfer saved is refused in one line, not read
    state = tmp_path / "p" / "state" / "state.json"
    st = json.loads(state.read_text())
    st.pop("format")
    state.write_text(json.dumps(st))
    with pytest.raises(TrainingError, match=r"state.json was written by another version of minitransfer"):
        pretrain(lm, blocks, tok, cfg, tmp_path / "p", progress=False, log=lambda m: None)


def test_finetune_names_the_options_its_task_and_mode_do_not_read():
    from minitransfer.cli import build_parser
    from minitransfer.cli.training import ignored_finetune_options

    def notes(*argv):
        args = build_parser().parse_args(["finetune", "--out", "x", *argv])
        cfg = TrainConfig(mode=args.mode, lr_decay_per_layer=args.lr_decay_per_layer)
        return ignored_finetune_options(args, cfg)

    assert notes("--mode", "full", "--lr-decay-per-layer", "0.5") == []
    assert notes("--mode", "scratch", "--config", "tiny") == []
    got = notes("--mode", "probe", "--lr-decay-per-layer", "0.5", "--config", "tiny", "--adapt-steps", "7")
    assert len(got) == 3, got
    assert got[0].startswith("--config tiny has no effect in mode probe")
    assert got[1].startswith("--adapt-steps 7 has no effect in mode probe")
    assert "--lr-decay-per-layer 0.5 has no effect in mode probe (its backbone is frozen)" in got[2]
    assert "starts from random weights" in notes("--mode", "scratch", "--lr-decay-per-layer", "0.5")[0]
    got = notes("--task", "qa", "--mode", "full", "--pooling", "mean", "--text-field", "body")
    assert got == [
        "--pooling mean has no effect with --task qa: only classification reads it",
        "--text-field body has no effect with --task qa: only classification reads it",
    ]


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_head_label_mismatch_suggests_new_head(pretrained_dir, keyword_data, tmp_path, capsys):
    cfg = _cfg(mode="probe", steps=2, eval_every=2)
    clf = mt.GPT2(mt.load_pretrained(pretrained_dir).backbone, ClassificationHead(32, ["x", "y", "z"]))
    mt.save_pretrained(clf, tmp_path / "clf", tokenizer=mt.load_tokenizer(pretrained_dir))
    with pytest.raises(TrainingError, match=r"3 labels \['x', 'y', 'z'\].*2 labels \['neg', 'pos'\].*Pass `new_head`"):
        build_classifier("probe", mt.load_pretrained(tmp_path / "clf"), clf.config, keyword_data.label_names, cfg)
    common = ["--data", keyword_data.spec, "--steps", "2", "--batch-size", "16", "--max-len", "12", "--no-progress"]
    assert main(["finetune", "--model", str(tmp_path / "clf"), "--out", str(tmp_path / "o1"), *common]) == 2
    assert "--new-head" in capsys.readouterr().err
    assert (
        main(["finetune", "--model", str(tmp_path / "clf"), "--new-head", "--out", str(tmp_path / "o2"), *common]) == 0
    )


def test_evaluate_says_what_it_needs_without_finetune_only_hints(pretrained_dir, keyword_data, tmp_path, capsys):
    clf = mt.GPT2(mt.load_pretrained(pretrained_dir).backbone, ClassificationHead(32, ["x", "y", "z"]))
    mt.save_pretrained(clf, tmp_path / "clf", tokenizer=mt.load_tokenizer(pretrained_dir))
    assert main(["evaluate", "--model", str(tmp_path / "clf"), "--data", keyword_data.spec]) == 2
    err = capsys.readouterr().err
    assert "3 labels ['x', 'y', 'z']" in err and "evaluate needs data labelled as" in err
    assert "--new-head" not in err  # a finetune option: evaluate has none
    # a language model: said before the data loads (this spec would fail to load)
    assert main(["evaluate", "--model", str(pretrained_dir), "--data", f"jsonl:{tmp_path / 'missing.jsonl'}"]) == 2
    err = capsys.readouterr().err
    assert "is a language model (a next-word head)" in err and "missing.jsonl" not in err
    assert main(["evaluate", "--model", str(tmp_path / "clf"), "--data", keyword_data.spec, "--all-validation"]) == 2
    assert (
        "--all-validation chooses which validation examples to score; it needs --split validation"
        in capsys.readouterr().err
    )
    # a --max-len the model cannot take: named, before the data loads
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "clf"),
                "--data",
                f"jsonl:{tmp_path / 'missing.jsonl'}",
                "--max-len",
                "1000",
            ]
        )
        == 2
    )
    assert "--max-len 1000 is outside 1..32 (the model's n_positions)" in capsys.readouterr().err


def test_a_scratch_backbone_and_its_head_draw_different_numbers():
    # both drew from nnx.Rngs(seed): the head's kernel was a copy of the first embedding values, for every seed
    from minitransfer.train import build_classifier

    for seed in (0, 3):
        m = build_classifier(
            "scratch",
            None,
            mt.named_config("tiny", vocab_size=100),
            ["a", "b", "c"],
            TrainConfig(mode="scratch", seed=seed),
        )
        head = np.asarray(m.head.score.kernel[...]).ravel()
        assert not np.allclose(head, np.asarray(m.backbone.wte.embedding[...]).ravel()[: head.size])


def test_evaluate_finds_a_relative_data_path_and_its_fields_from_another_folder(
    pretrained_dir, keyword_data, tmp_path, capsys, monkeypatch
):
    import csv

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with open(tmp_path / "a" / "reviews.csv", "w", newline="") as f:  # fields other than text/label
        w = csv.writer(f)
        w.writerow(["review", "stars"])
        w.writerows(zip(keyword_data.train.texts, keyword_data.train.labels.tolist(), strict=True))
    (tmp_path / "b" / "reviews.csv").write_text("review,stars\nnot,this\n")  # the same name elsewhere
    monkeypatch.chdir(tmp_path / "a")
    assert (
        main(
            [
                "finetune",
                "--model",
                str(pretrained_dir),
                "--mode",
                "probe",
                "--data",
                "reviews.csv",
                "--text-field",
                "review",
                "--label-field",
                "stars",
                "--steps",
                "2",
                "--batch-size",
                "16",
                "--max-len",
                "12",
                "--no-progress",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "b")
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert (
        f"(--data: csv:{tmp_path / 'a' / 'reviews.csv'}, the data the model was fine-tuned on, given as reviews.csv)"
    ) in err
    assert "(--text-field review, --label-field stars: as the model's config.json records its fine-tuning)" in err
    assert json.loads(out)["n"] > 0
    # a field given on the command line wins over the recorded one; with --data given, the others still apply
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best"), "--text-field", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "run" / "best"),
                "--data",
                f"csv:{tmp_path / 'a' / 'reviews.csv'}",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n"] > 0
    # a model fine-tuned on another draw of the split (finetune --split-seed, as compare --split-seed draws
    # it): evaluated on that draw's test set
    from minitransfer.data import load_dataset

    other = load_dataset(
        f"csv:{tmp_path / 'a' / 'reviews.csv'}", text_field="review", label_field="stars", split_seed=1
    )
    assert (
        other.test.texts
        != load_dataset(f"csv:{tmp_path / 'a' / 'reviews.csv'}", text_field="review", label_field="stars").test.texts
    )  # another draw indeed
    monkeypatch.chdir(tmp_path / "a")
    assert (
        main(
            [
                "finetune",
                "--model",
                str(pretrained_dir),
                "--mode",
                "probe",
                "--data",
                "reviews.csv",
                "--text-field",
                "review",
                "--label-field",
                "stars",
                "--split-seed",
                "1",
                "--steps",
                "2",
                "--batch-size",
                "16",
                "--max-len",
                "12",
                "--no-progress",
                "--out",
                str(tmp_path / "run1"),
            ]
        )
        == 0
    )
    assert "data: split 80/10/10, stratified by label, split_seed=1" in capsys.readouterr().out
    r = json.loads((tmp_path / "run1" / "result.json").read_text())
    monkeypatch.chdir(tmp_path / "b")
    assert main(["evaluate", "--model", str(tmp_path / "run1" / "best"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "(--text-field review, --label-field stars, --split-seed 1: as the model's config.json records" in err
    assert json.loads(out)["accuracy"] == r["test"]["accuracy"] and json.loads(out)["n"] == len(other.test)
    # moved since: the spec as given, from here (this folder's own reviews.csv, whose one label is new)
    (tmp_path / "a" / "reviews.csv").rename(tmp_path / "a" / "moved.csv")
    assert main(["evaluate", "--model", str(tmp_path / "run" / "best")]) == 2
    assert "(--data: reviews.csv, the data the model was fine-tuned on)" in capsys.readouterr().err


def test_a_ctrl_c_that_python_swallows_still_stops_training(
    pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path, monkeypatch
):
    # Ctrl-C raised inside a callback whose exceptions Python ignores (JAX's garbage-collection hook) was
    # dropped, and training ran to its end; the loop now also checks a flag the signal sets
    import os
    import signal

    import minitransfer.train as train_mod

    real, seen = train_mod.batch_indices, []

    def interrupting(step, *args, **kwargs):
        seen.append(step)
        if step == 2:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs at the next bytecode boundary: here
                    pass
            except KeyboardInterrupt:
                pass  # dropped, as an "Exception ignored in" callback drops it
        return real(step, *args, **kwargs)

    monkeypatch.setattr(train_mod, "batch_indices", interrupting)
    cfg = _cfg(mode="full", steps=10, eval_every=10)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        finetune(
            _model("full", pretrained_dir, keyword_data, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "run",
            progress=False,
        )
    assert max(seen) == 2  # stopped before step 3's batch
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # no evaluation yet: no empty log left behind


def test_nan_loss_stops_and_names_the_step(pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path):
    cfg = _cfg(mode="full", lr=1e30, steps=20, warmup=0.0, clip_norm=1e30)
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step \d+.*lower `lr`"):
        finetune(
            _model("full", pretrained_dir, keyword_data, cfg), keyword_data, gpt2_tokenizer, cfg, None, progress=False
        )
    # with --out: the state it would resume from (and diverge again) goes, so a lower lr can use the same --out
    cfg = _cfg(mode="full", lr=1e4, steps=20, eval_every=1, warmup=0.0, clip_norm=1e30)
    with pytest.raises(TrainingError, match=r"lower `lr`\. Its resumable state in .* was removed"):
        finetune(
            _model("full", pretrained_dir, keyword_data, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "o",
            progress=False,
        )
    assert not (tmp_path / "o" / "state").exists()
    from minitransfer.runs import RunFolder  # a diverged model's validation loss is NaN: written as null

    RunFolder(tmp_path, "key", {}).write_log(
        [{"step": 1, "val_loss": float("nan"), "train_loss": float("inf"), "val_accuracy": 0.5}]
    )
    assert (
        tmp_path / "metrics.jsonl"
    ).read_text() == '{"step": 1, "val_loss": null, "train_loss": null, "val_accuracy": 0.5}\n'
    lower = _cfg(mode="full", lr=1e-3, steps=2, eval_every=1)
    finetune(
        _model("full", pretrained_dir, keyword_data, lower),
        keyword_data,
        gpt2_tokenizer,
        lower,
        tmp_path / "o",
        progress=False,
    )


def test_max_len_beyond_positions(pretrained_dir, keyword_data, gpt2_tokenizer):
    cfg = _cfg(mode="probe", max_len=64)
    with pytest.raises(TrainingError, match=r"`max_len` 64 exceeds the model's n_positions=32"):
        finetune(
            _model("probe", pretrained_dir, keyword_data, cfg), keyword_data, gpt2_tokenizer, cfg, None, progress=False
        )


def test_unknown_mode_and_config(capsys):
    with pytest.raises(ValueError, match="unknown mode 'linear'"):
        TrainConfig(mode="linear")
    with pytest.raises(SystemExit):
        main(["finetune", "--mode", "sideways", "--out", "x"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown config name 'huge'"):
        mt.named_config("huge")


def test_training_leaves_the_pretrained_model_untouched_and_runs_know_their_weights(
    pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path
):
    from minitransfer.steps import weights_fingerprint

    base = mt.load_pretrained(pretrained_dir)
    before = weights_fingerprint(base)
    cfg = _cfg(mode="full", steps=3, eval_every=3)
    finetune(
        build_classifier("full", base, base.config, keyword_data.label_names, cfg),
        keyword_data,
        gpt2_tokenizer,
        cfg,
        tmp_path / "run",
        progress=False,
    )
    assert weights_fingerprint(base) == before  # the next run starts from the same weights
    other = mt.GPT2.language_model(mt.GPT2Config(**TINY), seed=99)
    model = build_classifier("full", other, other.config, keyword_data.label_names, cfg)
    with pytest.raises(
        TrainingError, match="holds a finished run with other data, tokenizer, model shape or starting weights"
    ):
        finetune(model, keyword_data, gpt2_tokenizer, cfg, tmp_path / "run", progress=False)
    # other settings: the message names each one that differs
    cfg4 = _cfg(mode="full", steps=4, eval_every=3)
    with pytest.raises(TrainingError, match=r"holds a finished run with other settings \(`steps`: 3 there, 4 now\)"):
        finetune(
            build_classifier("full", base, base.config, keyword_data.label_names, cfg4),
            keyword_data,
            gpt2_tokenizer,
            cfg4,
            tmp_path / "run",
            progress=False,
        )
    # an interrupted run's directory is refused to a different run too (by its resumable state)
    cfg = _cfg(mode="full", steps=6, eval_every=3)
    with pytest.raises(KeyboardInterrupt):
        finetune(
            build_classifier("full", base, base.config, keyword_data.label_names, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "cut",
            progress=False,
            log=ctrl_c_after(3),
        )
    with pytest.raises(TrainingError, match="holds a run with other data, tokenizer, model shape or starting weights"):
        finetune(
            build_classifier("full", other, other.config, keyword_data.label_names, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "cut",
            progress=False,
        )
    cfg7 = _cfg(mode="full", steps=7, eval_every=3)  # and names the settings that differ, as a finished run's does
    with pytest.raises(TrainingError, match=r"holds a run with other settings \(`steps`: 6 there, 7 now\)"):
        finetune(
            build_classifier("full", base, base.config, keyword_data.label_names, cfg7),
            keyword_data,
            gpt2_tokenizer,
            cfg7,
            tmp_path / "cut",
            progress=False,
        )
    # a folder written by another version of minitransfer is refused in one line, finished or not, not read
    import shutil

    shutil.copytree(tmp_path / "run", tmp_path / "old")
    c3 = _cfg(mode="full", steps=3, eval_every=3)
    res = json.loads((tmp_path / "old" / "result.json").read_text())
    del res["format"]
    (tmp_path / "old" / "result.json").write_text(json.dumps(res))
    model3 = build_classifier("full", base, base.config, keyword_data.label_names, c3)
    with pytest.raises(
        TrainingError,
        match=r"old/result.json was written by another version of minitransfer "
        r"\(format unrecorded, this one reads \d+\); choose another `out` or "
        r"delete .*old",
    ):
        finetune(model3, keyword_data, gpt2_tokenizer, c3, tmp_path / "old", progress=False)
    state = json.loads((tmp_path / "cut" / "state" / "state.json").read_text())
    (tmp_path / "cut" / "state" / "state.json").write_text(json.dumps({**state, "format": 1}))
    with pytest.raises(TrainingError, match=r"state.json was written by another version of minitransfer \(format 1"):
        finetune(
            build_classifier("full", base, base.config, keyword_data.label_names, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "cut",
            progress=False,
        )
    (tmp_path / "cut" / "state" / "state.json").write_text(json.dumps(state))
    # a folder with other files in it is not a run's: a run would overwrite its metrics.jsonl, delete its state/
    (tmp_path / "mine" / "state").mkdir(parents=True)
    (tmp_path / "mine" / "state" / "important.txt").write_text("x")
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(TrainingError, match=r"`out` .*mine holds files that are not a training run's \(notes.txt\)"):
        finetune(
            build_classifier("full", base, base.config, keyword_data.label_names, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "mine",
            progress=False,
        )
    # the same file edited (one label flipped: same spec, same sizes, same labels) is other data,
    # finished or not: said as the data's rows
    import copy

    edited = copy.deepcopy(keyword_data)
    edited.train.labels[0] = 1 - edited.train.labels[0]
    for run, c in (("run", _cfg(mode="full", steps=3, eval_every=3)), ("cut", cfg)):
        with pytest.raises(
            TrainingError,
            match=r"holds a (finished )?run with other settings \(the data's rows "
            r"\(a hash of every text and label\): '?[0-9a-f]{16}'? there, ",
        ):
            finetune(
                build_classifier("full", base, base.config, keyword_data.label_names, c),
                edited,
                gpt2_tokenizer,
                c,
                tmp_path / run,
                progress=False,
            )


def test_tokenizer_larger_than_vocab_is_refused(keyword_data, gpt2_tokenizer):
    cfg = _cfg(mode="scratch")
    small = mt.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=1000, n_positions=32)
    model = build_classifier("scratch", None, small, keyword_data.label_names, cfg)
    with pytest.raises(TrainingError, match="50257 tokens but the model's vocab_size is 1000"):
        finetune(model, keyword_data, gpt2_tokenizer, cfg, None, progress=False)


def test_bad_numbers_are_refused():
    for kw, msg in (
        (dict(steps=0), "`steps` must be at least 1"),
        (dict(eval_every=0), "`eval_every` must be at least 1"),
        (dict(epochs=0), "`epochs` must be a positive, finite number"),
    ):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)


def test_bad_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown `dtype` 'float16'"):
        TrainConfig(dtype="float16")


def test_train_step_derives_the_step_dropout_key_inside():
    """``step(..., key, lr, s)`` is ``step(..., fold_in(key, s), lr)`` exactly
    (the loop passes the run's key and the step number), and the key matters:
    step 6's dropout differs from step 5's. (One small block: the two
    signatures are two programs to compile, whatever the model's size.)"""
    from minitransfer.optim import make_optimizer
    from minitransfer.steps import classification_loss, forward_tokens, make_train_step

    cfg = mt.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=97, n_positions=32)
    model = mt.GPT2(mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0)), ClassificationHead(32, ["a", "b"], dropout=0.5))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(0, 97, (4, 16)).astype(np.int32),
        "attention_mask": np.ones((4, 16), np.int32),
        "labels": rng.integers(0, 2, 4).astype(np.int32),
    }
    cfg = TrainConfig(mode="full", lr=1e-3, steps=10)
    tx = make_optimizer(cfg, params, 10, 2)
    step = make_train_step(graphdef, classification_loss(forward_tokens), tx)
    key, lr = jax.random.key(7), np.float32(1e-3)

    def run(*args):  # the step donates its weights and optimizer state: give it fresh copies
        p = jax.tree.map(jax.numpy.array, params)
        return step(p, tx.init(p), batch, *args)

    outside, inside, other = run(jax.random.fold_in(key, 5), lr), run(key, lr, 5), run(key, lr, 6)
    jax.tree.map(np.testing.assert_array_equal, outside, inside)
    assert float(other[2]["loss"]) != float(inside[2]["loss"])


def test_bfloat16_mixed_precision_step_tracks_float32(pretrained_dir):
    """One full fine-tuning step in bfloat16 mixed precision vs float32 from the
    same weights: the loss agrees to bfloat16's ~3 significant digits, and the
    weights and Adam moments stay float32 (the master copy)."""
    from minitransfer.optim import make_optimizer
    from minitransfer.steps import classification_loss, forward_tokens, make_train_step

    model = mt.GPT2(mt.load_pretrained(pretrained_dir).backbone, ClassificationHead(32, ["a", "b"]))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(0, 50257, (4, 16)).astype(np.int32),
        "attention_mask": np.ones((4, 16), np.int32),
        "labels": rng.integers(0, 2, 4).astype(np.int32),
    }
    out = {}
    for dtype in ("float32", "bfloat16"):
        cfg = TrainConfig(mode="full", lr=1e-3, warmup=0.0, steps=10, dtype=dtype)
        tx = make_optimizer(cfg, params, 10, 2)
        p0 = jax.tree.map(jax.numpy.array, params)
        step = make_train_step(graphdef, classification_loss(forward_tokens), tx, dtype=dtype)
        p1, o1, m = step(p0, tx.init(p0), batch, jax.random.key(0), np.float32(cfg.lr))
        out[dtype] = (float(m["loss"]), float(m["grad_norm"]), p1, o1)
    (l32, g32, p32, _), (l16, g16, p16, o16) = out["float32"], out["bfloat16"]
    print(f"loss float32 {l32:.5f} bfloat16 {l16:.5f}; grad norm {g32:.4f} vs {g16:.4f}")
    assert np.isfinite(l16) and abs(l16 - l32) < 0.02 * abs(l32)
    assert abs(g16 - g32) < 0.05 * g32
    for leaf in jax.tree.leaves(p16) + [x for x in jax.tree.leaves(o16) if getattr(x, "ndim", 0) >= 1]:
        assert leaf.dtype == np.float32, leaf.dtype
    # Adam's first step moves each weight by at most lr (|m / sqrt(v)| <= 1), so
    # the two steps differ by at most 2 lr per weight; as a whole they agree
    flat = lambda t: np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(t)])  # noqa: E731
    d32, d16 = flat(p32) - flat(params), flat(p16) - flat(params)
    assert np.abs(d16 - d32).max() <= 2e-3 * 1.001
    cosine = d16 @ d32 / np.linalg.norm(d16) / np.linalg.norm(d32)
    print(f"cosine(bfloat16 update, float32 update) = {cosine:.4f}")
    assert cosine > 0.9


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_matmul_of_a_step_runs_in_the_compute_dtype(dtype):
    """Mixed precision is real: in the program jit hands to XLA, every matrix
    product of a training step (classification, next-word, and the probe's
    head on cached features; forward and backward) takes operands in the
    compute dtype. Until 2026-11-27 nnx.Embed
    pinned the embeddings' output to float32, which pulled every later matmul
    back to float32: "bfloat16" only rounded the weights."""
    from minitransfer.model import NextWordHead
    from minitransfer.optim import make_optimizer
    from minitransfer.steps import (
        CLASSIFY_FEATURES,
        classification_loss,
        forward_tokens,
        head_loss_tokens,
        make_train_step,
        matmul_dtypes,
    )

    cfg = mt.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=97, n_positions=32)
    B, T = 2, 8
    batch = {
        "input_ids": np.zeros((B, T), np.int32),
        "attention_mask": np.ones((B, T), np.int32),
        "labels": np.zeros(B, np.int32),
        "targets": np.zeros((B, T), np.int32),
        "features": np.zeros((B, 32), np.float32),
    }  # a frozen backbone's cached features (probe)
    want = {"float32": "f32", "bfloat16": "bf16"}[dtype]
    backbone = lambda: mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0))  # noqa: E731
    # per layer, forward: qkv, q k, weights v, proj, 2 MLP; the backward has twice as many
    for what, net, loss, at_least in (
        (
            "classification",
            mt.GPT2(backbone(), ClassificationHead(32, ["a", "b"])),
            classification_loss(forward_tokens),
            18 * cfg.n_layer,
        ),
        ("next word", mt.GPT2(backbone(), NextWordHead()), head_loss_tokens, 18 * cfg.n_layer),
        ("probe head on cached features", ClassificationHead(32, ["a", "b"]), CLASSIFY_FEATURES, 2),
    ):
        graphdef, params = nnx.split(net)
        tx = make_optimizer(TrainConfig(mode="full", steps=2, lr=1e-3, dtype=dtype), params, 2, 2)
        step = make_train_step(graphdef, loss, tx, dtype=dtype)
        found = matmul_dtypes(step, params, tx.init(params), batch, jax.random.key(0), np.float32(1e-3))
        assert set(found) == {want} and found[want] >= at_least, f"{what}: {found}"


def test_bfloat16_embedding_gradient_sums_in_float32():
    """Under mixed precision the embedding's gradient adds one row per token;
    a token that fills most of a batch must not have that sum rounded to
    bfloat16 at each addition. Here token 7 appears 1,363 times: its row of
    the gradient is 3.1% from float32's; it was 68% before model.lookup read
    a float32 copy of the table. The gradient is jitted, as a training
    step's is (computed op by op, the same rows were 3.3% and 76% apart)."""
    from minitransfer.steps import cast_for_compute, classification_loss, forward_tokens

    cfg = mt.GPT2Config(
        n_layer=1, n_head=2, n_embd=64, vocab_size=512, n_positions=256, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0
    )
    graphdef, params = nnx.split(mt.GPT2(mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0)), ClassificationHead(64, ["a", "b"])))
    rng = np.random.default_rng(0)
    ids = np.full((8, 256), 7, np.int32)
    ids[:, ::3] = rng.integers(0, 512, ids[:, ::3].shape)  # token 7 fills two thirds of the batch
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "labels": rng.integers(0, 2, 8).astype(np.int32)}

    def row7(dtype):
        def loss(p):
            return classification_loss(forward_tokens)(nnx.merge(graphdef, cast_for_compute(p, dtype)), batch, None)

        return np.asarray(jax.jit(jax.grad(loss))(params)["backbone"]["wte"]["embedding"][...][7], np.float64)

    g32, g16 = row7("float32"), row7("bfloat16")
    err = np.linalg.norm(g16 - g32) / np.linalg.norm(g32)
    print(f"token 7 ({(ids == 7).sum()} times): bfloat16 gradient row {err:.4f} from float32's")
    assert err < 0.1


def test_cli_finetune_bfloat16(pretrained_dir, keyword_data, tmp_path, capsys):
    rc = main(
        [
            "finetune",
            "--model",
            str(pretrained_dir),
            "--data",
            keyword_data.spec,
            "--mode",
            "full",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--max-len",
            "12",
            "--dtype",
            "bfloat16",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr()
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["config"]["dtype"] == "bfloat16" and 0 <= result["test"]["accuracy"] <= 1
    saved = mt.load_pretrained(tmp_path / "run" / "best")
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(nnx.state(saved)))


def test_dropout_rate_and_scale():
    from minitransfer.dropout import dropout as _dropout

    x = jax.numpy.ones((300, 1001))
    for rate in (0.1, 0.5):
        y = np.asarray(_dropout(x, rate, jax.random.key(0)))
        dropped = (y == 0).mean()
        assert abs(dropped - rate) < 0.005, (rate, dropped)  # 300k draws: sd ~0.0006
        assert abs(y.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation
        assert np.array_equal(y, np.asarray(_dropout(x, rate, jax.random.key(0))))  # same key, same mask
    assert not np.array_equal(np.asarray(_dropout(x, 0.1, jax.random.key(1))), y)
    assert _dropout(x, 0.1, None) is x


def test_a_swallowed_ctrl_c_stops_the_next_batch_once():
    """interrupt.check acts on a Ctrl-C that Python swallowed, then forgets it:
    in a notebook, the next cell's evaluation must not stop again."""
    from minitransfer import interrupt
    from minitransfer.steps import batched

    arrays = {"x": np.zeros((4, 2))}
    interrupt._flag[0] = True
    with pytest.raises(KeyboardInterrupt):
        list(batched(arrays, 2))
    assert not interrupt.requested() and len(list(batched(arrays, 2))) == 2
