"""Transfer pieces added for the label-budget experiment: the packaged GPT-2
tokenizer, the optimizer with the learning rate as an argument, length-sorted
evaluation, paired confidence intervals, `pretrain --init-from` and mode adapt."""

from __future__ import annotations

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import minitransfer as mt
from minitransfer.classify import ClassificationHead
from minitransfer.cli import main
from minitransfer.compare import gain_text, paired_difference
from minitransfer.data import load_dataset
from minitransfer.optim import make_optimizer
from minitransfer.steps import CLASSIFY_TOKENS, forward_tokens, make_eval_step, make_train_step, predict
from minitransfer.train import TrainConfig

TINY = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, n_positions=32)


def test_packaged_gpt2_tokenizer_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = mt.load_tokenizer("gpt2")
    assert tok.encode("Hello world") == [15496, 995]
    assert len(tok) == 50257 and tok.eos_token_id == 50256
    assert tok.decode([15496, 995]) == "Hello world"


def test_step_with_lr_argument_equals_optax_adamw():
    """make_optimizer + the step's lr argument is AdamW with that learning rate."""
    model = mt.GPT2(mt.GPT2Backbone(mt.GPT2Config(**TINY), rngs=nnx.Rngs(0)), ClassificationHead(32, ["a", "b"]))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    batch = {
        "input_ids": rng.integers(0, 50257, (4, 8)).astype(np.int32),
        "attention_mask": np.ones((4, 8), np.int32),
        "labels": np.array([0, 1, 0, 1], np.int32),
    }
    cfg = TrainConfig(mode="full", lr=1e-2, weight_decay=0.1, steps=3)
    tx = make_optimizer(cfg, params, 3, 2)
    step = make_train_step(graphdef, CLASSIFY_TOKENS, tx)
    ref_tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)),
    )
    p, o = jax.tree.map(jnp.copy, params), tx.init(params)
    rp, ro = jax.tree.map(jnp.copy, params), ref_tx.init(params)

    @jax.jit  # compiled like ours: Adam amplifies eager-vs-compiled rounding in tiny gradients
    def ref_step(rp, ro):
        g = jax.grad(lambda q: CLASSIFY_TOKENS(nnx.merge(graphdef, q), batch, None))(rp)
        u, ro = ref_tx.update(g, ro, rp)
        return optax.apply_updates(rp, u), ro

    for _ in range(3):
        p, o, _ = step(p, o, batch, None, np.float32(1e-2))
        rp, ro = ref_step(rp, ro)
    diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), p, rp)))
    assert diff < 1e-6, diff


def test_length_sorted_evaluation_gives_the_same_outputs():
    model = mt.GPT2(
        mt.GPT2Backbone(mt.GPT2Config(**TINY), rngs=nnx.Rngs(1)),
        ClassificationHead(32, ["a", "b", "c"], pooling="mean"),
    )
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 33, 50)
    ids = rng.integers(0, 50257, (50, 32)).astype(np.int32)
    mask = (np.arange(32)[None] < lengths[:, None]).astype(np.int32)
    ids = ids * mask
    arrays = {"input_ids": ids, "attention_mask": mask}
    ev = make_eval_step(graphdef, forward_tokens)
    sorted_out = predict(ev, params, arrays, 8)
    plain = np.concatenate([np.asarray(ev(params, {k: v[i : i + 1] for k, v in arrays.items()})) for i in range(50)])
    np.testing.assert_allclose(sorted_out, plain, atol=2e-5)


def test_paired_difference_interval():
    a, b = np.array([0.5, 0.6, 0.7]), np.array([0.4, 0.45, 0.5])
    d = paired_difference(a, b)
    # differences 0.10, 0.15, 0.20: mean 0.15, standard error 0.05 / sqrt(3), t(0.975, df=2) = 4.3027
    half = 4.302653 * 0.05 / np.sqrt(3)
    assert d["mean"] == pytest.approx(0.15)
    assert d["low"] == pytest.approx(0.15 - half, abs=1e-6) and d["high"] == pytest.approx(0.15 + half, abs=1e-6)
    assert d["significant"] and d["n"] == 3
    crossing = paired_difference(np.array([0.5, 0.52, 0.49]), np.array([0.5, 0.5, 0.5]))
    assert crossing["low"] < 0 < crossing["high"] and not crossing["significant"]
    assert paired_difference(np.array([0.6]), np.array([0.5]))["low"] is None  # one seed: no interval
    # differences that do not vary (exactly, or but for float rounding): no interval, and so no claim; a
    # t-interval would be the point itself, [+1.0, +1.0]*, from seeds that happened to agree
    for a, b in (([0.5, 0.6, 0.7], [0.49, 0.59, 0.69]), ([100 / 3719 + 0.5, 100 / 3719 + 0.3], [0.5, 0.3])):
        flat = paired_difference(np.array(a), np.array(b))
        assert flat["low"] is None and flat["p"] is None and not flat["significant"], flat
    assert paired_difference(np.array([0.5, np.nan]), np.array([0.4, 0.4]))["low"] is None
    assert gain_text({"mean": 0.01, "ci95": None, "significant": False, "seeds": 3}) == "+1.0 (no spread: no interval)"
    assert (
        gain_text({"mean": float("nan"), "ci95": None, "significant": False, "seeds": 3})
        == "+nan (not finite: no interval)"
    )
    cell = {"gain_over_scratch": d["mean"], "gain_ci95": [d["low"], d["high"]], "gain_significant": True}
    assert gain_text(cell) == "+15.0 [+2.6, +27.4]*"


def test_the_summary_pairs_each_mode_with_scratch_and_adapt_with_full_too(tmp_path):
    from minitransfer.compare import gain_pairs, paired_gains, summary_markdown
    from minitransfer.figures import plot_budget

    assert gain_pairs(["scratch", "probe", "full", "adapt"]) == [
        ("probe", "scratch"),
        ("full", "scratch"),
        ("adapt", "scratch"),
        ("adapt", "full"),
    ]
    assert gain_pairs(["full", "adapt"]) == [("adapt", "full")]  # no scratch: the first mode named is the reference
    assert gain_pairs(["adapt", "full"]) == [("full", "adapt")]  # not the same pair twice, mirrored
    assert gain_pairs(["scratch"]) == []
    acc = {"scratch": [0.50, 0.52, 0.51], "full": [0.53, 0.53, 0.55], "adapt": [0.56, 0.57, 0.58]}
    table = {
        m: {
            "100": {
                "accuracy_per_seed": a,
                "accuracy_mean": float(np.mean(a)),
                "accuracy_std": 0.01,
                "seeds": 3,
                "n_train": 100,
            }
        }
        for m, a in acc.items()
    }
    gains = paired_gains(table, ["scratch", "full", "adapt"], ["100"])
    over_full = gains[-1]
    assert (over_full["mode"], over_full["over"]) == ("adapt", "full")
    d = paired_difference(np.array(acc["adapt"]), np.array(acc["full"]))  # differences 0.03, 0.04, 0.03
    assert over_full["budgets"]["100"] == {
        "mean": d["mean"],
        "ci95": [d["low"], d["high"]],
        "p": d["p"],
        "significant": d["significant"],
        "seeds": 3,
    }
    s = {
        "task": "classify",
        "data": "toy",
        "test_n": 10,
        "majority_baseline": 0.5,
        "budgets": ["100"],
        "seeds": 3,
        "modes": ["scratch", "full", "adapt"],
        "table": table,
        "gains": gains,
        "run_seconds_total": 1.0,
    }
    md = summary_markdown(s)
    assert "Gain over scratch in accuracy points" in md
    assert "Gain over full, paired the same way: the stage that adapt adds to full" in md
    assert md.count("| adapt |") == 3  # accuracy, gain over scratch, gain over full
    plot_budget(s, tmp_path / "budget.png", "toy")
    assert (tmp_path / "budget.png").stat().st_size > 0
    table["full"]["100"]["seed_ids"] = [0, 1, 3]  # as many seeds, but not the same ones: pairs by position lie
    with pytest.raises(ValueError, match=r"full has seeds \[0, 1, 3\] at 100 labels but scratch has 3; a paired"):
        paired_gains(table, ["scratch", "full", "adapt"], ["100"])
    table["full"]["100"]["seeds"] = 2
    with pytest.raises(ValueError, match="a paired difference needs the same seeds"):
        paired_gains(table, ["scratch", "full", "adapt"], ["100"])


def test_the_false_discovery_sentence_says_which_claims_survive_the_table_as_a_family():
    from minitransfer.compare import false_discovery, fdr_text

    def gain(mode, ps):  # cells with p-values, significant where p < 0.05 (as a 95% interval is)
        return {
            "mode": mode,
            "over": "scratch",
            "budgets": {str(b): {"p": p, "significant": p < 0.05} for b, p in zip((100, 300, 1000), ps, strict=True)},
        }

    gains = [gain("probe", [0.04, 0.5, 0.9]), gain("adapt", [0.001, 0.002, 0.01])]
    fdr = false_discovery(gains)
    # Benjamini-Hochberg over 6 p-values (sorted 0.001 0.002 0.01 0.04 0.5 0.9): p * 6 / rank, then the
    # running minimum from the largest: 0.006 0.006 0.02 0.06 0.6 0.9
    assert fdr["tests"] == 6 and fdr["kept"] == [
        "adapt over scratch at 100",
        "adapt over scratch at 300",
        "adapt over scratch at 1000",
    ]
    assert gains[1]["budgets"]["100"]["q"] == pytest.approx(0.006)
    assert gains[0]["budgets"]["100"]["q"] == pytest.approx(0.06)
    assert fdr_text(fdr, 4).endswith(
        "3 of the 4 `*` claims still hold: adapt over scratch at 100, adapt over "
        "scratch at 300, adapt over scratch at 1000."
    )
    gains = [gain("probe", [0.001, 0.002, 0.01]), gain("adapt", [0.001, 0.002, 0.01])]
    assert fdr_text(false_discovery(gains), 6).endswith("all 6 `*` claims still hold.")
    fdr = false_discovery([gain("probe", [0.04, 0.5, 0.9]), gain("adapt", [0.03, 0.6, 0.7])])
    assert fdr["kept"] == [] and fdr_text(fdr, 2).endswith("none of the 2 `*` claims holds.")  # 0.03 -> 0.12
    assert fdr_text(false_discovery([gain("probe", [0.5, 0.6, 0.7])]), 0).endswith("no `*` claim to test.")


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, gpt2_tokenizer):
    d = tmp_path_factory.mktemp("lm")
    mt.save_pretrained(
        mt.GPT2.language_model(mt.GPT2Config(**{**TINY, "n_positions": 64}), seed=3), d, tokenizer=gpt2_tokenizer
    )
    return d


def test_pretrain_init_from_continues_the_checkpoint(lm_dir, tmp_path, capsys):
    out = tmp_path / "more"
    args = [
        "pretrain",
        "--init-from",
        str(lm_dir),
        "--data",
        "tweets",
        "--out",
        str(out),
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--batch-size",
        "4",
        "--block-size",
        "32",
        "--lr",
        "1e-3",
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "training split's texts only" in printed and f"continuing from {lm_dir}" in printed
    # where it starts, as the adaptation says it: the same blocks as the run's own validation scores
    start = re.search(rf"validation perplexity of {re.escape(str(lm_dir))} before this training: ([\d.]+)", printed)
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start and float(start[1]) > first["val_perplexity"] > 1, printed
    cont = mt.load_pretrained(out)
    assert cont.config.n_embd == 32 and cont.config.vocab_size == 50257  # the checkpoint's shape and tokenizer
    assert mt.load_tokenizer(out).encode("Hello world") == [15496, 995]
    card = json.loads((out / "pretrain.json").read_text())
    assert card["init_from"] == str(lm_dir)
    capsys.readouterr()
    assert main(args + ["--n-layer", "3"]) == 2
    assert "--init-from takes the shape and tokenizer of its checkpoint" in capsys.readouterr().err


def test_html_line_breaks_become_newlines_and_the_model_card_says_so(lm_dir, tmp_path, capsys):
    from minitransfer.data import html_line_breaks

    assert html_line_breaks(["a<br />b<BR/>c<br>d", "plain", "x <br /><br /> y"]) == (
        ["a\nb\nc\nd", "plain", "x \n\n y"],
        2,
        5,
    )
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(
            json.dumps(
                {"text": f"review {i} was long.<br /><br />The end {i}, and more words to fill a block of tokens."}
            )
            + "\n"
            for i in range(40)
        )
    )
    out = tmp_path / "clean"
    args = [
        "pretrain",
        "--init-from",
        str(lm_dir),
        "--data",
        f"jsonl:{docs}",
        "--out",
        str(out),
        "--steps",
        "2",
        "--eval-every",
        "2",
        "--batch-size",
        "4",
        "--block-size",
        "16",
        "--html-line-breaks",
        "--no-progress",
    ]
    assert main(args) == 0
    said = "HTML line breaks turned into newlines: 80 in 40 of the 40 documents; nothing else changed"
    assert f"cleaning: {said}" in capsys.readouterr().out
    card = (out / "MODEL_CARD.md").read_text()
    assert f"| cleaning | {said} |" in card
    # the same folder without the cleaning is another run, not a resumed one
    assert main(args[:-2] + ["--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_compare_with_adapt_runs_the_adaptation_once(lm_dir, tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [
        {
            "text": f"item {i} was delivered on a rainy tuesday to the house at the end of the long road, "
            f"and it is {rng.choice(['good', 'fine', 'great'] if i % 2 else ['bad', 'poor'])}",
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(200)
    ]
    (tmp_path / "kw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--model",
        str(lm_dir),
        "--data",
        f"jsonl:{tmp_path / 'kw.jsonl'}",
        "--budgets",
        "20",
        "--seeds",
        "2",
        "--steps",
        "3",
        "--max-len",
        "32",
        "--modes",
        "scratch,adapt",
        "--adapt-steps",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["adapt"]["steps"] == 4 and summary["adapt"]["texts"] == len(
        load_dataset(f"jsonl:{tmp_path / 'kw.jsonl'}").train
    )
    assert (out / "adapted" / "model.safetensors").exists()
    cell = summary["table"]["adapt"]["20"]
    assert len(cell["gain_ci95"]) == 2 and cell["seeds"] == 2
    md = (out / "summary.md").read_text()
    assert "95% confidence interval" in md and "Adaptation (mode adapt" in md
    stamp = (out / "adapted" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0  # the adapted model is reused, not recomputed
    assert (out / "adapted" / "model.safetensors").stat().st_mtime_ns == stamp
    # another adaptation length: refused, named by the option that sets it (eval_every follows it: not named)
    capsys.readouterr()
    assert main([*args, "--adapt-steps", "6"]) == 2  # (the last --adapt-steps counts)
    err = capsys.readouterr().err
    assert f"{out} holds a compare with other settings (--adapt-steps: 4 there, 6 now)" in err, err
    (out / "compare.json").unlink()  # without compare's own record, the adaptation's state says the same
    assert main([*args, "--adapt-steps", "6"]) == 2
    err = capsys.readouterr().err
    assert "adapted holds a run with other settings (--adapt-steps: 4 there, 6 now)" in err, err
