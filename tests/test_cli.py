"""The command line, run in-process through ``minitransfer.cli.main``."""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest

from minitransfer.cli import main
from tests.conftest import REPO, hf_logits, make_hf_gpt2


def _gpt2_vocab_checkpoint(tmp_path, gpt2_tokenizer):
    hf = make_hf_gpt2(seed=5, vocab_size=50257, n_positions=64)
    d = tmp_path / "ckpt"
    hf.save_pretrained(d)
    gpt2_tokenizer.save_pretrained(d)
    return hf, d


def test_convert_then_next_word_json(tmp_path, gpt2_tokenizer, capsys):
    hf, d = _gpt2_vocab_checkpoint(tmp_path, gpt2_tokenizer)
    out = tmp_path / "converted"
    assert main(["convert", str(d), "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert "parameters" in capsys.readouterr().out

    prompt = "The cat was swimming in the"
    assert main(["next-word", "--model", str(out), "--prompt", prompt, "--top-k", "3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    cands = got["candidates"]
    assert [c["rank"] for c in cands] == [1, 2, 3]
    # the same top-3 and probabilities as transformers' model on the same ids
    ids = np.asarray([gpt2_tokenizer.encode(prompt)])
    logits = hf_logits(hf, ids)[0, -1]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p)[:3]
    assert [c["id"] for c in cands] == top.tolist()
    np.testing.assert_allclose([c["prob"] for c in cands], p[top], rtol=1e-4)
    assert cands[0]["token"] == gpt2_tokenizer.decode([int(top[0])])


def test_next_word_table(tmp_path, gpt2_tokenizer, capsys):
    _, d = _gpt2_vocab_checkpoint(tmp_path, gpt2_tokenizer)
    assert main(["next-word", "--model", str(d), "--prompt", "Hello"]) == 0
    out = capsys.readouterr().out
    assert "what comes next" in out and out.count("%") == 5
    # greedy has no randomness: several samples would be one continuation printed under several seeds
    assert (
        main(
            [
                "generate",
                "--model",
                str(d),
                "--prompt",
                "Hello",
                "--greedy",
                "--num-samples",
                "3",
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "note: --greedy gives the same continuation every time: --num-samples 3 prints it once" in err
    assert "--- sample" not in out


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["next-word", "--model", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no such checkpoint directory" in err


def test_running_out_of_device_memory_is_one_line_naming_the_options(tmp_path, capsys, monkeypatch):
    # `finetune --batch-size 20000` printed 25 lines of XLA ending in RESOURCE_EXHAUSTED
    import jax

    import minitransfer.cli as cli

    def oom(args):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 88180902400 bytes.\nmore")

    monkeypatch.setattr(cli, "cmd_finetune", oom)
    assert main(["finetune", "--batch-size", "20000", "--max-len", "64", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("minitransfer finetune: error: out of memory on the cpu device")
    assert "one buffer of 88.2 GB was asked for; lower --batch-size 20000 or " in err and "--max-len 64" in err
    assert "--dtype bfloat16 halves the activations" in err

    def other(args):
        raise RuntimeError("not about memory")

    monkeypatch.setattr(cli, "cmd_finetune", other)
    with pytest.raises(RuntimeError, match="not about memory"):  # any other error keeps its traceback
        main(["finetune", "--out", str(tmp_path / "o")])


def test_sampling_and_run_counts_out_of_range_are_one_clear_line(tmp_path, gpt2_tokenizer, capsys):
    _, d = _gpt2_vocab_checkpoint(tmp_path, gpt2_tokenizer)
    for argv, message in (
        (["next-word", "--model", str(d), "--prompt", "hi", "--top-k", "0"], "--top-k must be at least 1, got 0"),
        (
            ["generate", "--model", str(d), "--prompt", "hi", "--top-k", "0"],
            "--top-k must be between 1 and the vocabulary's 50257 tokens, got 0",
        ),
        (["generate", "--model", str(d), "--prompt", "hi", "--top-k", "60000"], "got 60000"),
        (["generate", "--model", str(d), "--prompt", "hi", "--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
        (["generate", "--model", str(d), "--prompt", "hi", "--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
        # before any data loads or any adaptation runs (this spec would fail to load)
        (
            ["compare", "--seeds", "0", "--data", f"jsonl:{tmp_path / 'missing.jsonl'}", "--out", str(tmp_path / "c")],
            "--seeds must be at least 1, got 0",
        ),
        (
            ["compare", "--steps", "0", "--data", f"jsonl:{tmp_path / 'missing.jsonl'}", "--out", str(tmp_path / "c")],
            "--steps must be at least 1, got 0",
        ),
        # a wrong --model before the data (this spec would fail to load too)
        (
            [
                "compare",
                "--model",
                str(tmp_path / "no-model"),
                "--data",
                f"jsonl:{tmp_path / 'missing.jsonl'}",
                "--out",
                str(tmp_path / "c"),
            ],
            "no such checkpoint directory",
        ),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_an_unknown_option_is_reported_with_its_commands_usage(capsys):
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["compare", "--labels", "100"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: minitransfer compare" in err and "--budgets" in err  # compare's options, not the top level's
    # (compare has no --labels; its nearest option is named as a guess)
    assert "unrecognized arguments: --labels 100; did you mean --label-words? (see minitransfer compare --help)" in err
    # a misspelt option: the one meant
    for argv, meant in (
        (["finetune", "--out", "o", "--lables", "300"], "--labels"),
        (["finetune", "--out", "o", "--max_len", "64"], "--max-len"),
        (["compare", "--bugdets=100"], "--budgets"),
        # cut short: refused (an abbreviation could change meaning as options are added)
        (["finetune", "--out", "o", "--lab", "300"], "--label-field / --labels / --label-words"),
        (["finetune", "--out", "o", "--epoch", "2"], "--epochs"),
        (["compare", "--adapt", "5"], "--adapt-steps"),
        (["generate", "--prompt", "x", "--max", "64"], "--max-new-tokens"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert f"; did you mean {meant}? (see minitransfer" in capsys.readouterr().err, argv


def test_data_command_reports_counts_and_truncation(tmp_path, capsys):
    import json as _json

    from tests.conftest import GPT2_TOKENIZER_FILES

    p = tmp_path / "d.jsonl"
    rows = [{"text": ("word " * (5 + 40 * (i % 2))).strip(), "label": "pos" if i % 2 else "neg"} for i in range(50)]
    rows.append({"text": "", "label": "neg"})
    p.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    assert main(["data", f"jsonl:{p}", "--max-len", "16", "--tokenizer", str(GPT2_TOKENIZER_FILES)]) == 0
    out = capsys.readouterr().out
    assert "2 classes ['neg', 'pos']" in out
    assert "1 row(s) with empty 'text' dropped" in out
    assert "train" in out and "median" in out
    assert "would truncate 21 (50.0%)" in out
    # a tokenizer that is not there: the data's counts still print, and the message names the option
    assert main(["data", f"jsonl:{p}", "--tokenizer", str(tmp_path / "nope")]) == 0
    assert (
        f"(no token statistics: --tokenizer {tmp_path / 'nope'}: no such checkpoint directory)"
        in capsys.readouterr().out
    )


def test_a_tokenizer_option_that_cannot_load_is_named_before_the_data_loads(tmp_path, capsys):
    from tests.conftest import REPO

    (tmp_path / "empty").mkdir()
    for command in (
        ["finetune", "--data", "jsonl:/not/read.jsonl", "--out", str(tmp_path / "o")],
        ["convert", str(REPO / "checkpoints" / "minigpt2-imdb"), "--out", str(tmp_path / "c")],
    ):
        assert main([*command, "--tokenizer", str(tmp_path / "empty")]) == 2
        err = capsys.readouterr().err
        assert f"error: --tokenizer {tmp_path / 'empty'}: no tokenizer files" in err, err
        assert "--tokenizer takes a folder holding them, 'gpt2'" in err and "convert SOURCE" not in err


def test_an_empty_model_folder_is_said_to_be_no_checkpoint(tmp_path, capsys):
    """finetune and compare read the model's tokenizer first: an empty --model folder was said to lack
    tokenizer files, as if it were a checkpoint saved without them; next-word, evaluate and convert said
    "no config.json". Now every command says the same, before the data loads."""
    (tmp_path / "empty").mkdir()
    empty = str(tmp_path / "empty")
    for command in (
        ["finetune", "--mode", "probe", "--data", "jsonl:/not/read.jsonl", "--out", str(tmp_path / "o")],
        ["compare", "--quick", "--data", "jsonl:/not/read.jsonl", "--out", str(tmp_path / "c")],
        ["next-word", "--prompt", "Hi"],
    ):
        assert main([*command, "--model", empty]) == 2, command
        err = capsys.readouterr().err
        assert f"{empty}: no config.json (every Hugging Face checkpoint has one)" in err, (command, err)
        assert "tokenizer" not in err and len(err.strip().splitlines()) == 1, (command, err)
    # a hub id that cannot be downloaded (tests run offline): said before the data loads, not after it
    assert (
        main(
            [
                "finetune",
                "--mode",
                "probe",
                "--model",
                "gpt2",
                "--data",
                "jsonl:/not/read.jsonl",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "'gpt2' is not a local directory" in err and "/not/read.jsonl" not in err, err
    # a checkpoint folder that has its config but no tokenizer still says what is missing, and how to save it
    (tmp_path / "notok").mkdir()
    (tmp_path / "notok" / "config.json").write_text("{}")
    assert main(["finetune", "--mode", "probe", "--model", str(tmp_path / "notok"), "--out", str(tmp_path / "o")]) == 2
    assert (
        "no tokenizer files (tokenizer.json, or vocab.json + merges.txt). Save the checkpoint with a tokenizer"
        in capsys.readouterr().err
    )


def test_data_command_bad_spec(capsys, tmp_path):
    assert main(["data", "nonsense:spec"]) == 2
    assert "not understood" in capsys.readouterr().err
    # the likely meaning, where there is one
    (tmp_path / "train.csv").write_text("text,label\nhi,a\n")
    for spec, guess in (
        (str(tmp_path), f"csv:{tmp_path}"),
        ("json:x.json", "jsonl:x.json"),
        ("imdb", "tfds:imdb_reviews"),
    ):
        assert main(["data", spec]) == 2
        assert f"did you mean {guess!r}?" in capsys.readouterr().err, spec
    # a file separated by tabs or semicolons, read as CSV: one field named by the whole header row
    (tmp_path / "tabs.csv").write_text("text\tlabel\ngreat movie\tpos\n")
    (tmp_path / "semi.csv").write_text("text;label\ngreat movie;pos\n")
    (tmp_path / "nohead.csv").write_text("great movie,1\nbad,0\n")
    for name, says in (
        (
            "tabs.csv",
            "The header row holds tabs: the file is not separated the way its spec reads it "
            "(tab-separated: give it as tsv:PATH).",
        ),
        ("semi.csv", "The header row holds semicolons"),
        ("nohead.csv", "the first row is read as the header"),
    ):
        assert main(["data", f"csv:{tmp_path / name}"]) == 2
        assert says in capsys.readouterr().err, name


def test_huge_pages_restart_env(monkeypatch):
    """The console script restarts once with glibc huge pages (see process.huge_pages_env)."""
    import platform
    import sys

    from minitransfer.cli.process import HUGE_PAGES_TUNABLE, huge_pages_env

    monkeypatch.setenv("MINITRANSFER_NO_HUGEPAGES", "1")
    assert huge_pages_env() is None
    monkeypatch.delenv("MINITRANSFER_NO_HUGEPAGES")
    monkeypatch.setenv("GLIBC_TUNABLES", f"glibc.malloc.check=0:{HUGE_PAGES_TUNABLE}")
    assert huge_pages_env() is None  # already on: no second restart
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.check=0")
    env = huge_pages_env()
    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc" and env is not None:
        assert env["GLIBC_TUNABLES"] == f"glibc.malloc.check=0:{HUGE_PAGES_TUNABLE}"  # others kept


def test_compilation_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    from minitransfer.cli.process import compilation_cache_dir, host_processor

    monkeypatch.delenv("MINITRANSFER_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache_dir() == tmp_path / "xdg" / "minitransfer" / "jax" / host_processor()
    assert host_processor() == host_processor() and "-" in host_processor()
    monkeypatch.setenv("MINITRANSFER_COMPILATION_CACHE", str(tmp_path / "mine"))
    assert compilation_cache_dir() == tmp_path / "mine"
    for off in ("0", "off"):
        monkeypatch.setenv("MINITRANSFER_COMPILATION_CACHE", off)
        assert compilation_cache_dir() is None


def test_the_command_asks_for_deterministic_gpu_operations_unless_told(monkeypatch):
    """The console script adds XLA's determinism flag before JAX starts (a
    GPU otherwise sums the embedding's gradient in a different order every
    run); a choice already in XLA_FLAGS, on or off, is kept as it is."""
    from minitransfer import cli
    from minitransfer.cli import process

    seen = {}
    monkeypatch.setattr(cli, "restart_with_huge_pages", lambda: None)
    monkeypatch.setattr(cli, "enable_compilation_cache", lambda: seen.setdefault("at_cache", os.environ["XLA_FLAGS"]))
    monkeypatch.setattr(cli, "main", lambda: seen.setdefault("at_main", os.environ["XLA_FLAGS"]) and 0)
    monkeypatch.setattr(sys, "argv", ["minitransfer", "compare"])
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # entry() installs its own: put back after
    before = signal.getsignal(signal.SIGINT)
    try:
        assert cli.entry() == 0
    finally:
        signal.signal(signal.SIGINT, before)
    # before the compilation cache (whose keys include the flags) and the command
    assert (
        seen["at_cache"]
        == seen["at_main"]
        == "--xla_force_host_platform_device_count=2 " + process.GPU_DETERMINISM_FLAG
    )
    monkeypatch.delenv("XLA_FLAGS")
    assert process.make_gpu_deterministic() and os.environ["XLA_FLAGS"] == "--xla_gpu_deterministic_ops=true"
    for chosen in ("--xla_gpu_deterministic_ops=false", "--xla_gpu_deterministic_ops=true --xla_dump_to=/tmp/x"):
        monkeypatch.setenv("XLA_FLAGS", chosen)
        assert not process.make_gpu_deterministic() and os.environ["XLA_FLAGS"] == chosen


def test_the_command_reads_compiled_programs_back_from_its_cache(tmp_path):
    """What ``minitransfer`` (the console script) turns on: a second process
    compiling the same program reads it from the disk cache, the meter counts
    that, and the result is the same. Separate processes, because JAX reads
    its cache settings once per process."""
    import os
    import subprocess
    import sys

    script = (
        "import json, jax, jax.numpy as jnp\n"
        "from minitransfer.cli.process import enable_compilation_cache\n"
        "from minitransfer.steps import compile_meter\n"
        "where = enable_compilation_cache()\n"
        "with compile_meter() as found:\n"
        "    y = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.arange(12.0).reshape(3, 4))\n"
        "print(json.dumps({'dir': str(where), 'y': float(y), **found}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["MINITRANSFER_COMPILATION_CACHE"] = str(tmp_path / "cache")
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
            ).stdout.splitlines()[-1]
        )
        for _ in range(2)
    ]
    assert runs[0]["dir"] == str(tmp_path / "cache") and any((tmp_path / "cache").iterdir())
    assert runs[0]["from_disk_cache"] == 0 and runs[1]["from_disk_cache"] == runs[1]["programs"] >= 1
    assert runs[0]["y"] == runs[1]["y"]
    env["MINITRANSFER_COMPILATION_CACHE"] = "0"
    off = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]
    )
    assert off["dir"] == "None" and off["from_disk_cache"] == 0


def test_option_values_out_of_range_are_refused_before_any_work(tmp_path, capsys):
    """Found by a new-user run: each of these ran (or trained to nonsense)
    without a word. Each must be one clear line naming the option."""
    out = str(tmp_path / "o")
    cases = [
        (["data", "tweets", "--max-len", "0"], "--max-len must be at least 1"),
        (
            [
                "convert",
                str(REPO / "checkpoints" / "minigpt2-imdb"),
                "--out",
                str(REPO / "checkpoints" / "minigpt2-imdb"),
            ],
            "is the checkpoint being converted",
        ),
        (["generate", "--prompt", "hi", "--num-samples", "0"], "--num-samples must be at least 1"),
        (["playground", "--port", "99999"], "--port must be between 1 and 65535"),
        (["compare", "--modes", ",", "--out", out], "--modes is empty"),
        (["lectures", "--only", "1", "--out", out], "--only 1: no lecture's name starts with that"),
        (["finetune", "--mode", "full", "--lr", "-1", "--out", out], "--lr must be a positive, finite number"),
        (
            ["finetune", "--mode", "full", "--lr", "inf", "--out", out],
            "--lr must be a positive, finite number, got inf",
        ),
        (["finetune", "--mode", "full", "--weight-decay", "nan", "--out", out], "--weight-decay must be at least 0"),
        (["finetune", "--mode", "full", "--epochs", "inf", "--out", out], "--epochs must be a positive, finite"),
        (
            ["finetune", "--mode", "full", "--labels", "abc", "--out", out],
            "--labels must be a number of examples (at least 1) or 'all', got 'abc'",
        ),
        (["finetune", "--mode", "full", "--labels", "1.5", "--out", out], "--labels must be a number of examples"),
        (["finetune", "--mode", "full", "--warmup", "2", "--out", out], "--warmup is a fraction of the steps"),
        (["finetune", "--mode", "full", "--weight-decay", "-0.1", "--out", out], "--weight-decay must be at least 0"),
        (["finetune", "--mode", "full", "--lr-decay-per-layer", "0", "--out", out], "--lr-decay-per-layer must be in"),
        (
            [
                "pretrain",
                "--data",
                "tweets",
                "--n-layer",
                "1",
                "--n-head",
                "1",
                "--n-embd",
                "8",
                "--steps",
                "0",
                "--out",
                out,
            ],
            "--steps must be at least 1",
        ),
        (
            [
                "pretrain",
                "--data",
                "tweets",
                "--n-layer",
                "1",
                "--n-head",
                "1",
                "--n-embd",
                "8",
                "--lr",
                "0",
                "--out",
                out,
            ],
            "--lr must be a positive, finite number",
        ),
        # the shape is checked before a tokenizer is trained for it (which left tokenizer.json in OUT)
        (
            ["pretrain", "--data", "tweets", "--n-layer", "2", "--out", out],
            "give --config NAME or all of --n-layer --n-head --n-embd (missing --n-head, --n-embd)",
        ),
        (
            ["pretrain", "--data", "tweets", "--config", "tiny", "--n-head", "3", "--out", out],
            "n_embd 64 must be a multiple of n_head 3",
        ),  # --config's n_embd with the option's n_head
        (
            ["pretrain", "--data", "tweets", "--config", "tiny", "--n-positions", "0", "--out", out],
            "--n-positions must be at least 1, got 0",
        ),
        (
            ["pretrain", "--data", "tweets", "--config", "tiny", "--n-positions", "64", "--out", out],
            "--block-size 128 exceeds --n-positions 64",
        ),
        # seeds become 32-bit JAX keys (a 20-digit one was a traceback; -1 an error naming no option)
        (
            ["finetune", "--mode", "full", "--seed", "99999999999999999999", "--out", out],
            "--seed must be a whole number from 0 to 2,147,483,647, got 99999999999999999999",
        ),
        (["generate", "--prompt", "hi", "--seed", "-1"], "--seed must be a whole number from 0 to 2,147,483,647"),
        # bytes that are not UTF-8 reach Python as lone surrogates, which the tokenizer refused with a traceback
        (
            ["next-word", "--prompt", b"caf\xe9 is".decode("utf-8", "surrogateescape")],
            "--prompt is not valid UTF-8 (byte 0xe9 at character 3)",
        ),
        (["next-word", "--prompt", "a\ud800"], "--prompt is not valid UTF-8 (a lone surrogate \\ud800 at character 1)"),
        (["convert", "caf\udce9", "--out", out], "source is not valid UTF-8 (byte 0xe9 at character 3)"),
    ]
    for args, says in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not (tmp_path / "o").exists()
    # --out under a file: said before any work (was "[Errno 20] Not a directory" after loading the data)
    (tmp_path / "f").write_text("x")
    assert main(["finetune", "--out", str(tmp_path / "f" / "run")]) == 2
    assert (
        f"--out {tmp_path / 'f' / 'run'}: {tmp_path / 'f'} is a file, so the folder cannot be created"
        in capsys.readouterr().err
    )
    # a folder of other files: refused before the data loads (and before mode adapt writes OUT/adapted in it)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert (
        main(["finetune", "--mode", "adapt", "--data", "jsonl:/not/read.jsonl", "--out", str(tmp_path / "mine")]) == 2
    )
    assert "holds files that are not a training run's (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    # pretrain, compare and convert refuse another command's run, or a checkpoint they did not write,
    # before any work (they once wrote among a finetune's files, or over a converted model)
    ft = tmp_path / "ft"
    (ft / "best").mkdir(parents=True)
    (ft / "result.json").write_text("{}")
    (ft / "metrics.jsonl").write_text("")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_text("")
    pre = tmp_path / "pre"
    (pre / "state").mkdir(parents=True)
    (pre / "pretrain.json").write_text("{}")
    cmp = tmp_path / "cmp"
    (cmp / "runs").mkdir(parents=True)
    (cmp / "compare.json").write_text("{}")
    for argv, says in (
        (
            ["pretrain", "--data", "tweets", "--config", "tiny", "--out", str(ft)],
            "holds a `minitransfer finetune` run (result.json, best); `minitransfer pretrain` would write among",
        ),
        (
            ["pretrain", "--data", "tweets", "--config", "tiny", "--out", str(ckpt)],
            "holds a saved model (config.json, model.safetensors) that no `minitransfer pretrain` run wrote; "
            "pretraining would write over it",
        ),
        (["compare", "--quick", "--out", str(pre)], "holds a `minitransfer pretrain` run (pretrain.json)"),
        (
            ["pretrain", "--data", "tweets", "--config", "tiny", "--out", str(REPO / "checkpoints" / "minigpt2-imdb")],
            "holds a finished pretraining run without its resumable state",
        ),
        (["compare", "--quick", "--out", str(ckpt)], "compare would write among its files"),
        (["convert", str(ckpt), "--out", str(pre)], "holds a `minitransfer pretrain` run (pretrain.json)"),
        (["convert", str(ckpt), "--out", str(ft)], "holds a `minitransfer finetune` run"),
        # finetune names the other command too (it said only "files that are not a training run's")
        (
            ["finetune", "--mode", "probe", "--out", str(pre)],
            "holds a `minitransfer pretrain` run's files (pretrain.json)",
        ),
        (
            ["finetune", "--mode", "probe", "--out", str(cmp)],
            "holds a `minitransfer compare` run's files (compare.json, runs)",
        ),
    ):
        before = {p: sorted(q.name for q in p.iterdir()) for p in (ft, ckpt, pre, cmp)}
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert says in err and "choose an empty or new folder" in err, (argv, err)
        assert before == {p: sorted(q.name for q in p.iterdir()) for p in (ft, ckpt, pre, cmp)}
    # compare's default --out (runs/compare-quick with --quick) is checked the same way
    import os as _os

    cwd = _os.getcwd()
    (tmp_path / "runs").write_text("x")
    try:
        _os.chdir(tmp_path)
        assert main(["compare", "--quick"]) == 2
    finally:
        _os.chdir(cwd)
    assert "--out runs/compare-quick: " in capsys.readouterr().err
    # --out naming a file: said before any work, not as a traceback after it
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    for command in (["finetune", "--mode", "probe"], ["compare"], ["pretrain", "--data", "tweets"], ["lectures"]):
        assert main([*command, "--out", str(a_file)]) == 2
        err = capsys.readouterr().err
        assert f"--out {a_file} is a file; --out names a directory" in err and "Traceback" not in err, err
    # an OSError on the way (here: a directory where --out's parent should be a folder) is one line too
    assert main(["lectures", "--only", "01", "--fast", "--out", str(a_file / "sub")]) == 2
    err = capsys.readouterr().err
    assert "minitransfer lectures: error: " in err and "notes.txt" in err and "Traceback" not in err, err


def test_the_command_takes_ctrl_c_from_its_first_moment():
    """``import minitransfer.cli`` (what the console script runs first) no
    longer imports JAX, so entry() installs its Ctrl-C handler before the
    seconds of imports; a Ctrl-C that Python could only report as "Exception
    ignored" (it landed in a callback) is kept off the screen once the flag
    has it; other unraisable errors are printed as before."""
    import subprocess
    import types

    from minitransfer import interrupt

    r = subprocess.run(
        [sys.executable, "-c", "import sys, minitransfer.cli; print('jax' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.stdout.strip() == "False", r.stdout + r.stderr
    saved = (sys.unraisablehook, signal.getsignal(signal.SIGINT), interrupt._quiet_unraisable.__defaults__)
    seen = []
    try:
        interrupt._quiet_unraisable.__defaults__ = (lambda u: seen.append(type(u.exc_value).__name__),)
        assert interrupt.install()

        def fake(e):
            return types.SimpleNamespace(exc_value=e, exc_type=type(e), exc_traceback=None, err_msg=None, object=None)

        interrupt._flag[0] = True
        sys.unraisablehook(fake(KeyboardInterrupt()))
        sys.unraisablehook(fake(ValueError("a real one")))
        assert seen == ["ValueError"]
    finally:
        interrupt.clear()
        interrupt._quiet_unraisable.__defaults__ = saved[2]
        sys.unraisablehook = saved[0]
        signal.signal(signal.SIGINT, saved[1])


def test_convert_lists_the_files_it_wrote_not_what_was_there(tmp_path, capsys):
    from tests.conftest import REPO

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    assert main(["convert", str(REPO / "checkpoints" / "minigpt2-imdb"), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    files = next(line for line in out.splitlines() if line.strip().startswith("files:"))
    assert files.strip().startswith("files: config.json, model.safetensors, tokenizer.json")
    assert files.endswith("(also in that folder, not written now: notes.txt)")
    # converted again into the same folder: the same files are named as written (by save_pretrained's own
    # list, not by timestamps, which a coarse filesystem leaves unchanged)
    assert main(["convert", str(REPO / "checkpoints" / "minigpt2-imdb"), "--out", str(tmp_path / "c")]) == 0
    again = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("files:"))
    assert again == files
    import minitransfer as mt
    from minitransfer.convert import save_pretrained

    written = []
    save_pretrained(
        mt.load_pretrained(REPO / "checkpoints" / "minigpt2-imdb"),
        tmp_path / "d",
        mt.load_tokenizer(REPO / "checkpoints" / "minigpt2-imdb"),
        files=written,
    )
    assert sorted(written) == sorted(p.name for p in (tmp_path / "d").iterdir())


def test_version_and_python_dash_m(capsys):
    import subprocess

    import minitransfer

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"minitransfer {minitransfer.__version__}"
    r = subprocess.run(
        [sys.executable, "-m", "minitransfer", "--version"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert r.returncode == 0 and r.stdout.strip() == f"minitransfer {minitransfer.__version__}", r.stderr


# ----------------------------------------------------------------------------
# The library speaks Python; the command line, in its options
# ----------------------------------------------------------------------------


def test_the_library_names_settings_as_python_does_and_the_command_line_as_its_options(tmp_path, capsys):
    from minitransfer.cli import build_parser
    from minitransfer.cli.options import in_options

    commands = build_parser().commands
    # each backticked setting as the option of the running command that sets it (its own spelling, an alias,
    # a flag that says the opposite); a name no option of that command sets stays as the library wrote it
    said = "`max_len` 70; `head_bias`; `AdaptConfig.steps` 0; `clip_norm`; `minitransfer compare --modes zero`"
    assert in_options(said, commands["finetune"]) == (
        "--max-len 70; --no-head-bias; --adapt-steps 0; `clip_norm`; `minitransfer compare --modes zero`"
    )
    assert in_options("`adapt.steps`: 4 there, 6 now; `prompts`; `val_examples`", commands["compare"]) == (
        "--adapt-steps: 4 there, 6 now; --prompt; `val_examples`"
    )
    assert in_options("`out` p.csv; `max_len` 9", commands["predict"]) == "--out p.csv; --max-len 9"  # dest out_file
    assert in_options("`max_len` 9", commands["answer"]) == "`max_len` 9"  # answer has no such option
    # a library error, raised naming the parameters (predict.check_out_file: `out`, `data`), said in options
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a text"}\n')
    argv = ["predict", "--model", str(tmp_path / "never-read"), "--data", str(texts), "--out", str(texts)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"minitransfer predict: error: --out {texts} is the --data file; writing there would replace" in err
    assert "`" not in err


def test_what_the_library_logs_the_command_line_says_in_its_options(tmp_path, capsys, monkeypatch):
    import minitransfer.predict
    from minitransfer.cli import build_parser
    from minitransfer.cli.options import say

    # the lines a command's library calls log: through the command's own options, as its errors are
    def run(args, log):
        log("1 of 2 texts truncated to the first 9 tokens (`max_len`); `batch_size` 64; `clip_norm`")
        return 0

    monkeypatch.setattr(minitransfer.predict, "run", run)
    assert main(["predict", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "t.txt")]) == 0
    said = capsys.readouterr()
    assert said.err == "1 of 2 texts truncated to the first 9 tokens (--max-len); --batch-size 64; `clip_norm`\n"
    assert said.out == ""
    # say() prints for a parsed command: stdout unless told, each line as that command names it
    args = build_parser().parse_args(["pretrain", "--data", "tweets", "--out", str(tmp_path / "p")])
    say(args)("note: `batch_size` 64 is more than the 10 training blocks; `block_size` 32")
    say(args, sys.stderr)("`lr` 0.1")
    said = capsys.readouterr()
    assert said.out == "note: --batch-size 64 is more than the 10 training blocks; --block-size 32\n"
    assert said.err == "--lr 0.1\n"


def _flag_texts(node):
    """The text of every string a node holds, an f-string whole (its values as {}), not inside one."""
    import ast

    if isinstance(node, ast.JoinedStr):
        yield node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        return
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.lineno, node.value
        return
    for child in ast.iter_child_nodes(node):
        yield from _flag_texts(child)


def test_the_library_raises_and_logs_in_python_names_not_flags():
    """What a core module (minitransfer/*.py: not the command line, not the apps) raises or logs names
    settings as Python does (`max_len`); a flag (--max-len) is the command line's to write (cli.options).
    A whole command the user may type, `minitransfer ... --flag ...`, is a command, not a setting."""
    import ast
    import re

    flag = re.compile(r"(?<![\w-])--(?:[a-z]|\{\})")  # --max-len, or an f-string's --{name}
    command = re.compile(r"`minitransfer [^`]*`")
    found = []
    for path in sorted((REPO / "minitransfer").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                said = [node.exc]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("log", "say"):
                said = node.args
            else:
                continue
            for part in said:
                for line, text in _flag_texts(part):
                    if flag.search(command.sub("", text)):
                        found.append(f"minitransfer/{path.name}:{line}: {text!r}")
    assert not found, "flags where the library should name settings as Python does:\n" + "\n".join(found)
