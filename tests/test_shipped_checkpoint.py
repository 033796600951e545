"""The small GPT-2 that ships in checkpoints/minigpt2-imdb."""

from __future__ import annotations

import re

import numpy as np
import pytest

import minitransfer as mt
from tests.conftest import IMDB, REPO, needs_imdb

CKPT = REPO / "checkpoints" / "minigpt2-imdb"
TOLERANCE = 0.01  # relative; the same machine reproduces the card's figure exactly


@pytest.fixture(scope="module")
def card():
    return (CKPT / "MODEL_CARD.md").read_text()


def test_size_budget():
    size = sum(p.stat().st_size for p in CKPT.iterdir() if p.is_file())
    assert size <= 25 * 2**20, f"{size / 2**20:.1f} MiB"


@needs_imdb
def test_perplexity_on_fixed_imdb_test_slice_matches_model_card(card):
    from minitransfer.data import html_line_breaks
    from minitransfer.pretrain import text_perplexity
    from minitransfer.readers import read_rows

    m = re.search(
        r"perplexity on a fixed slice \| ([\d.]+) on the first (\d+) texts of `[^`]*` \(blocks of (\d+)\)", card
    )
    assert m, "MODEL_CARD.md has no fixed-slice perplexity line"
    expected, n, block = float(m.group(1)), int(m.group(2)), int(m.group(3))
    texts = [r["text"] for r in read_rows(IMDB / "test.jsonl.gz", "jsonl", [])[:n]]
    if "| cleaning | HTML line breaks" in card:  # pretrain --html-line-breaks scores the slice cleaned too
        texts = html_line_breaks(texts)[0]
    ppl = text_perplexity(mt.load_pretrained(CKPT), mt.load_tokenizer(CKPT), texts, block)
    print(f"perplexity {ppl:.2f}, card says {expected:.2f}")
    assert abs(ppl - expected) <= TOLERANCE * expected


def test_transformers_loads_it_with_the_same_logits():
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from tests.conftest import hf_logits

    hf = GPT2LMHeadModel.from_pretrained(CKPT).eval()
    tok = AutoTokenizer.from_pretrained(CKPT)
    ids = np.asarray([tok.encode("This movie was one of the best I have seen")], np.int32)
    assert np.abs(np.asarray(mt.load_pretrained(CKPT)(ids)) - hf_logits(hf, ids)).max() < 1e-4


def test_next_word_after_this_movie_was(capsys):
    from minitransfer.cli import main

    assert main(["next-word", "--prompt", "This movie was", "--top-k", "10", "--json"]) == 0
    import json

    words = [c["token"].strip().lower() for c in json.loads(capsys.readouterr().out)["candidates"]]
    print(words)
    # a model of movie reviews should expect an evaluative word here
    assert {"a", "the", "so", "very", "not", "great", "good", "bad", "terrible", "awful", "really"} & set(words)


def test_model_card_is_written_from_its_record_and_counts_every_stage(card):
    """MODEL_CARD.md begins with pretrain.json in words (the shipped stand-in: one stage from random
    weights, with its cleaning); a model continued from it counts both stages' tokens and lists both
    commands, and one continued from that, all three, the first stage's first."""
    import json

    from minitransfer.pretrain import model_card

    record = json.loads((CKPT / "pretrain.json").read_text())
    assert card.startswith(model_card(record))  # then notes written by hand
    assert "trained from random initialisation" in card and "started from" not in card
    assert "| cleaning | " in card and "--html-line-breaks" in record["command"]
    child = dict(
        record,
        init_from=str(CKPT),
        init_card=record,
        tokens_seen=81_920,
        command="minitransfer pretrain --init-from checkpoints/minigpt2-imdb --data tweets --out runs/lm",
    )
    text = model_card(child)
    assert f"tokens seen in all 2 stages: {record['tokens_seen'] + 81_920:,}" in text
    grandchild = dict(
        child,
        init_from="runs/lm",
        init_card=child,
        tokens_seen=40_960,
        command="minitransfer pretrain --init-from runs/lm --data tweets --out runs/lm2",
    )
    text = model_card(grandchild)
    assert f"tokens seen in all 3 stages: {record['tokens_seen'] + 81_920 + 40_960:,}" in text
    commands = [line for line in text.splitlines() if line.startswith("minitransfer pretrain")]
    assert commands == [record["command"], child["command"], grandchild["command"]]


def test_its_tokenizer_loads_as_autotokenizer_would_and_without_pytorch():
    """load_tokenizer takes GPT2TokenizerFast directly for a GPT-2 tokenizer:
    what AutoTokenizer gives, without AutoTokenizer's imports (PyTorch among
    them, a second or more at the start of every command). In a fresh process,
    since this one has torch loaded by other tests."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    ckpt = REPO / "checkpoints" / "minigpt2-imdb"
    ours, theirs = mt.load_tokenizer(ckpt), AutoTokenizer.from_pretrained(str(ckpt))
    assert type(ours) is type(theirs) and len(ours) == len(theirs)
    assert ours.special_tokens_map == theirs.special_tokens_map and ours.pad_token == theirs.pad_token
    for text in ("This movie was great!", " héllo wörld <|endoftext|> x", "\n\n  tabs\tand  spaces 123"):
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
    script = (
        "import sys; import minitransfer as mt; "
        f"mt.load_tokenizer({str(ckpt)!r}); mt.load_pretrained({str(ckpt)!r}); print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "False", "loading the shipped checkpoint imported PyTorch"


def test_a_broken_tokenizer_config_is_named(tmp_path):
    import shutil

    from minitransfer.convert import CheckpointError

    ckpt = tmp_path / "ckpt"
    shutil.copytree(REPO / "checkpoints" / "minigpt2-imdb", ckpt)
    for text, says in (("{not json", "not a readable JSON file"), ('["x"]', "expected a JSON object")):
        (ckpt / "tokenizer_config.json").write_text(text)
        with pytest.raises(CheckpointError, match=re.escape(str(ckpt / "tokenizer_config.json")) + ".*" + says):
            mt.load_tokenizer(ckpt)


def test_a_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path, capsys):
    """GPT-2's 50,257-token tokenizer beside the shipped 8,192-row model: ids
    past the table's end would make the model output NaN, silently. Saving
    such a pair, and every command that reads one, must say so instead."""
    import shutil

    from minitransfer.cli import main
    from minitransfer.convert import CheckpointError

    ckpt = REPO / "checkpoints" / "minigpt2-imdb"
    big = mt.load_tokenizer("gpt2")
    with pytest.raises(CheckpointError, match="50,257 tokens but the model's vocab_size is 8,192"):
        mt.save_pretrained(mt.load_pretrained(ckpt), tmp_path / "saved", tokenizer=big)
    assert not (tmp_path / "saved").exists()
    mixed = tmp_path / "mixed"
    shutil.copytree(ckpt, mixed)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (mixed / f).unlink()
    big.save_pretrained(mixed)
    for cmd in (
        ["next-word", "--prompt", "Hello world"],
        ["generate", "--prompt", "Hello", "--max-new-tokens", "2"],
        ["convert", str(mixed), "--out", str(tmp_path / "again")],
    ):
        args = cmd if cmd[0] == "convert" else [*cmd, "--model", str(mixed)]
        assert main(args) == 2, cmd
        err = capsys.readouterr().err
        assert "50,257 tokens but the model's vocab_size is 8,192" in err and "NaN" in err, (cmd, err)


def test_the_readme_python_example_runs_as_printed(tmp_path, monkeypatch):
    """README's Python API example, run as a reader would paste it (from the
    repository's root; its runs/api/ goes to a temporary folder instead)."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    example = next(b for b in blocks if "mt.load_pretrained(src)" in b)
    assert '"runs/api/"' in example
    monkeypatch.chdir(REPO)
    scope: dict = {}
    exec(compile(example.replace('"runs/api/"', repr(str(tmp_path / "out"))), "README.md", "exec"), scope)
    assert scope["logits"].shape == (1, len(scope["ids"][0]), scope["model"].config.vocab_size)
    assert (tmp_path / "out" / "model.safetensors").exists()
    assert scope["clf"].head.labels == ("negative", "positive")
    assert scope["class_logits"].shape == (1, 2)
    assert scope["mt"].shipped_checkpoint() == CKPT  # the comment's way to it from any folder
