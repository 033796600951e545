"""Generation with the key/value cache, and next-word pretraining."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import minitransfer as mt
from minitransfer.cli import main
from minitransfer.generate import filter_logits, generate
from tests.conftest import REPO


@pytest.fixture(scope="module")
def lm():
    return mt.GPT2.language_model(mt.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=300, n_positions=48), seed=1)


def test_cached_decode_matches_full_forward(lm):
    import jax.numpy as jnp

    ids = np.random.RandomState(0).randint(0, 300, (2, 9)).astype(np.int32)
    full = np.asarray(lm.backbone(ids))  # (2, 9, C)
    cache = lm.backbone.init_cache(2, 16)
    h1, cache = lm.backbone.decode(ids[:, :5], cache, jnp.int32(0))  # prompt in one go
    steps = [np.asarray(h1)]
    for t in range(5, 9):  # then one position at a time
        h, cache = lm.backbone.decode(ids[:, t : t + 1], cache, jnp.int32(t))
        steps.append(np.asarray(h))
    assert np.abs(np.concatenate(steps, axis=1) - full).max() < 1e-5


def test_greedy_with_and_without_cache_agree(lm):
    prompt = [3, 14, 15, 92, 65]
    with_cache = generate(lm, prompt, 12, greedy=True)
    without = generate(lm, prompt, 12, greedy=True, use_cache=False)
    assert with_cache == without and len(with_cache) == 12


def test_sampling_is_seeded_and_top_k_1_is_greedy(lm):
    prompt = [1, 2, 3]
    a = generate(lm, prompt, 10, temperature=0.9, top_p=0.9, seed=7)
    assert a == generate(lm, prompt, 10, temperature=0.9, top_p=0.9, seed=7)
    assert generate(lm, prompt, 10, top_k=1, seed=3) == generate(lm, prompt, 10, greedy=True)


def test_filter_logits_top_k_and_top_p():
    import jax

    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], np.float32))
    kept = lambda x: (np.asarray(x) > -1e30).sum()  # noqa: E731
    assert kept(filter_logits(logits, 1.0, 2, None)) == 2
    flat = np.zeros((1, 4), np.float32)  # ties at the cutoff: still k tokens (and p's share), the lower ids first
    assert (np.asarray(filter_logits(flat, 1.0, 2, None)) > -1e30).tolist() == [[True, True, False, False]]
    assert (np.asarray(filter_logits(flat, 1.0, None, 0.5)) > -1e30).tolist() == [[True, True, False, False]]
    assert kept(filter_logits(logits, 1.0, None, 0.7)) == 2  # 0.5 + 0.3 reaches 0.7
    assert kept(filter_logits(logits, 1.0, None, 0.5)) == 1
    p = np.asarray(jax.nn.softmax(filter_logits(logits, 0.5, None, None)))
    assert p[0, 0] > 0.5  # a temperature below 1 sharpens


def test_generation_longer_than_positions_is_refused(lm):
    with pytest.raises(ValueError, match="exceeds the model's n_positions=48"):
        generate(lm, [1] * 40, 20)
    with pytest.raises(ValueError, match="`max_new_tokens` must be at least 1"):
        generate(lm, [1, 2], 0)


def test_token_ids_outside_the_vocabulary_are_refused_not_nan(lm):
    # a gather past the embedding table gives NaN rows: another model's token ids gave all-NaN logits, silently
    for bad in (300, -1):
        with pytest.raises(ValueError, match=rf"token id {bad}, outside the model's vocabulary \(ids 0..299\)"):
            lm(np.array([[1, bad]], np.int32))
    assert np.isfinite(np.asarray(lm(np.array([[1, 299]], np.int32)))).all()
    import jax.numpy as jnp

    with pytest.raises(ValueError, match="token id 300, outside"):  # a JAX array outside jit: checked too
        lm(jnp.asarray([[1, 300]], jnp.int32))
    for make in (generate, mt.generate.stream):  # generation compiles the model: the prompt is checked before
        with pytest.raises(ValueError, match=r"the prompt holds token id 300, outside the model's vocabulary"):
            list(make(lm, [1, 300], 3)) if make is mt.generate.stream else make(lm, [1, 300], 3)


def test_pretrain_lowers_val_loss_and_transformers_loads_it(tmp_path, capsys):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from minitransfer.data import load_dataset
    from tests.conftest import hf_logits

    out = tmp_path / "lm"
    report = tmp_path / "report.jsonl"  # held-out text: test tweets, never pretrained on
    report.write_text("".join(json.dumps({"text": t}) + "\n" for t in load_dataset("tweets").test.texts[:40]))
    args = [
        "pretrain",
        "--data",
        "tweets",
        "--out",
        str(out),
        "--n-layer",
        "2",
        "--n-head",
        "2",
        "--n-embd",
        "32",
        "--tokenizer",
        "train:400",
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--batch-size",
        "8",
        "--block-size",
        "32",
        "--lr",
        "3e-3",
        "--no-progress",
        "--report-text",
        str(report),
        "--report-n",
        "20",
    ]
    assert main(args) == 0
    log = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30]
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.3
    card = (out / "MODEL_CARD.md").read_text()
    assert "tokens seen | 7,680" in card and "Reproduce with" in card
    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = np.asarray([tok.encode("This movie was")], np.int32)
    ours = mt.load_pretrained(out)
    assert np.abs(np.asarray(ours(ids)) - hf_logits(hf, ids)).max() < 1e-4
    assert len(tok) == 400
    # throughput: the steps after the first (no compiling, validation, checkpoints), and all in
    printed = capsys.readouterr().out
    rate = re.search(
        r"next-word training: ([\d,]+) tokens/s.*over the steps after the first \(all in, with "
        r"compiling, validation and checkpoints: ([\d,]+) tokens/s\)",
        printed,
    )
    assert rate, printed
    steady, all_in = (float(x.replace(",", "")) for x in rate.groups())
    assert steady > all_in > 0
    record = json.loads((out / "pretrain.json").read_text())
    # (printed to the unit: within half a token/s of the record, however slow the machine)
    assert record["tokens_per_second"] == pytest.approx(steady, abs=0.5)
    assert record["tokens_per_second_all_in"] == pytest.approx(all_in, abs=0.5)
    assert (
        f"{steady:,.0f} tokens/s" in card
        and f"all in, with compiling, validation and checkpoints: {all_in:,.0f}" in card
    )
    assert (
        main(["generate", "--model", str(out), "--prompt", "This movie was", "--max-new-tokens", "5", "--greedy"]) == 0
    )
    assert capsys.readouterr().out.startswith("This movie was")


def test_pretrain_checks_settings_first_and_reuses_only_its_own_tokenizer(tmp_path, capsys):
    """Settings that can be wrong are refused before the tokenizer trains; a
    tokenizer.json left in --out by another run (or a failed one with other
    settings) is not reused silently; a rerun of the same run reuses its own."""
    import shutil

    base = [
        "pretrain",
        "--data",
        "tweets",
        "--n-layer",
        "1",
        "--n-head",
        "2",
        "--n-embd",
        "16",
        "--steps",
        "2",
        "--eval-every",
        "2",
        "--batch-size",
        "4",
        "--block-size",
        "16",
        "--no-progress",
    ]
    (tmp_path / "rep.jsonl").write_text('{"text": "great movie"}\n{"txt": "x"}\n')  # a bad second row
    for extra, says in (
        (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
        (["--dropout", "2"], "--dropout must be in [0, 1)"),
        (["--n-head", "3"], "n_embd 16 must be a multiple of n_head 3"),
        (["--report-text", str(tmp_path / "none.jsonl")], "no such file"),
        (["--report-text", str(tmp_path / "rep.jsonl")], "rep.jsonl, line 2: no field 'text'"),
        (["--report-text", str(tmp_path / "rep.jsonl"), "--report-n", "0"], "--report-n must be at"),
        (["--tokenizer", "train:abc"], "train:N needs a whole number"),
    ):
        assert main([*base, "--out", str(tmp_path / "bad"), *extra]) == 2, extra
        assert says in capsys.readouterr().err, extra
    assert not (tmp_path / "bad").exists()  # refused before anything was trained or written

    stale = tmp_path / "stale"
    stale.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(REPO / "checkpoints" / "minigpt2-imdb" / f, stale / f)
    assert main([*base, "--out", str(stale), "--tokenizer", "train:300"]) == 2
    assert "tokenizer.json was not trained by this command" in capsys.readouterr().err

    own = tmp_path / "own"
    assert main([*base, "--out", str(own), "--tokenizer", "train:300"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(own), "--tokenizer", "train:300"]) == 0  # the same run again: its own
    assert "tokenizer: reusing" in capsys.readouterr().out
    assert main([*base, "--out", str(own), "--tokenizer", "train:400"]) == 2
    assert "trained for another run (train:300 on tweets), not for --tokenizer train:400" in capsys.readouterr().err
    # text cleaned of its HTML line breaks is other text: its vocabulary is not this run's, either way round
    assert main([*base, "--out", str(own), "--tokenizer", "train:300", "--html-line-breaks"]) == 2
    assert (
        "trained for another run (train:300 on tweets), not for --tokenizer train:300 on tweets with HTML line "
        "breaks as newlines (--html-line-breaks)" in capsys.readouterr().err
    )
    cleaned = tmp_path / "cleaned"
    assert main([*base, "--out", str(cleaned), "--tokenizer", "train:300", "--html-line-breaks"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(cleaned), "--tokenizer", "train:300"]) == 2
    assert (
        "trained for another run (train:300 on tweets with HTML line breaks as newlines (--html-line-breaks)), "
        "not for --tokenizer train:300 on tweets; " in capsys.readouterr().err
    )

    # too little text for one block: the count and the way out are said, and no tokenizer is left behind to block
    # the next try (a smaller vocabulary than asked is said too)
    (tmp_path / "t.txt").write_text("a few words of text\nand a few more\n")
    small = [*base[:2], f"txt:{tmp_path / 't.txt'}", *base[3:]]
    assert main([*small, "--out", str(tmp_path / "small"), "--tokenizer", "train:300", "--block-size", "64"]) == 2
    out, err = capsys.readouterr()
    assert "fewer than the 300 asked" in out
    assert "not enough text for one training block of 65 tokens: the training texts hold " in err
    assert "a smaller block size (--block-size)" in err and not (tmp_path / "small" / "tokenizer.json").exists()
