"""`minitransfer compare`: the whole grid, every output file, and skipping finished runs."""

from __future__ import annotations

import csv
import json
import re
import sys

import numpy as np
import pytest

import minitransfer as mt
from minitransfer.cli import main
from minitransfer.cli.training import parse_budgets
from minitransfer.compare import RESULT_COLUMNS


@pytest.fixture(scope="module")
def setup(tmp_path_factory, gpt2_tokenizer):
    d = tmp_path_factory.mktemp("cmp")
    cfg = mt.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=50257, n_positions=32)
    mt.save_pretrained(mt.GPT2.language_model(cfg, seed=5), d / "pre", tokenizer=gpt2_tokenizer)
    rng = np.random.default_rng(0)
    rows = [
        {
            "text": f"item {i} is {rng.choice(['good', 'fine', 'great'] if i % 2 else ['bad', 'poor'])}",
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(200)
    ]
    (d / "kw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_compare_writes_every_file_and_skips_finished_runs(setup, tmp_path, capsys, monkeypatch):
    import minitransfer.convert
    import minitransfer.runs
    import minitransfer.train

    def no_state(*args, **kwargs):
        raise AssertionError("compare's runs write no resumable training state")

    saves = []
    save = minitransfer.convert.save_pretrained
    monkeypatch.setattr(minitransfer.runs, "_save_tree", no_state)  # what a run's resumable state is written with
    monkeypatch.setattr(  # the name finetune saves its best checkpoint with
        minitransfer.train, "save_pretrained", lambda m, d, *a, **k: saves.append(d) or save(m, d, *a, **k)
    )
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--model",
        str(setup / "pre"),
        "--data",
        f"jsonl:{setup / 'kw.jsonl'}",
        "--budgets",
        "20,60",
        "--seeds",
        "2",
        "--steps",
        "4",
        "--max-len",
        "12",
        "--out",
        str(out),
        "--modes",
        "scratch,probe,full",  # mode adapt: tests/test_transfer.py
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    # the time outside the runs, in parts (a GPU's compare spent a third of its 55 s there)
    outside = re.search(
        r"Outside the runs: (?:starting Python and its imports ([\d.]+) s, )?loading the model "
        r"\(JAX starts its device here\) ([\d.]+) s, the data ([\d.]+) s, writing the results "
        r"and figures ([\d.]+) s(?:; (\d+) s for the whole command)?\.",
        printed,
    )
    assert outside, "no 'Outside the runs' line"
    assert float(outside[2]) > 0 and float(outside[4]) > 0
    if sys.platform == "linux":  # the process's age comes from /proc: this test's process started minutes ago at most
        assert 0 < float(outside[1]) < 3600 and float(outside[1]) <= int(outside[5]) + 1
    for f in ("results.csv", "summary.json", "summary.md", "curves.png", "budget.png"):
        assert (out / f).exists() and (out / f).stat().st_size > 0, f
    # any truncation is said once: in the summary the command prints (it was also logged before it)
    assert printed.count("tokens were cut to it") == (out / "summary.md").read_text().count("tokens were cut to it")
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0].keys()) == RESULT_COLUMNS
    test_rows = {(r["budget"], r["mode"], r["seed"]) for r in rows if r["split"] == "test"}
    assert test_rows == {(b, m, s) for b in ("20", "60") for m in ("scratch", "probe", "full") for s in ("0", "1")}
    assert any(r["split"] == "validation" for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["table"]) == {"scratch", "probe", "full"}
    assert "gain_over_scratch" in summary["table"]["probe"]["20"]
    md = (out / "summary.md").read_text()
    assert "| probe |" in md and "20 labels" in md
    # paired: at a budget and seed, every mode trained on the same examples
    n = {
        json.loads((out / "runs" / f"{m}-b20-s1" / "result.json").read_text())["n_train"]
        for m in ("scratch", "probe", "full")
    }
    assert n == {20}
    # where the time went: every phase, adding up to each run's wall time, summed in the summary
    for m in ("scratch", "probe", "full"):
        res = json.loads((out / "runs" / f"{m}-b20-s1" / "result.json").read_text())
        assert set(res["seconds"]) == {"prepare", "train", "validate", "test", "other"}
        assert min(res["seconds"].values()) >= 0 and res["seconds"]["train"] > 0
        assert sum(res["seconds"].values()) == pytest.approx(res["wall_seconds"], abs=0.02)
    phases = summary["run_seconds_by_phase"]
    assert sum(phases.values()) == pytest.approx(summary["run_seconds_total"], rel=0.01, abs=0.1)
    assert "Of that: " in md and "optimizer steps" in md
    assert summary["compile"]["programs"] >= 1 and summary["compile"]["seconds"] > 0
    assert f"{summary['compile']['programs']} programs" in md

    # by default no run keeps a checkpoint (the summary needs only the metrics)
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 12 and saves == [] and not list((out / "runs").glob("*/best"))

    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}
    capsys.readouterr()
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")} == stamps
    assert list(csv.DictReader(open(out / "results.csv"))) == rows
    assert json.loads((out / "summary.json").read_text())["run_seconds_by_phase"] == phases  # read back, not zeroed
    assert (
        "[5/12] probe-b20-s1: probe on 20 labels, seed 1, 4 steps (finished earlier: its result is read back)"
        in capsys.readouterr().out
    )
    assert (
        "in all (12 of the 12 runs finished in an earlier call, and their times are from then)."
        in (out / "summary.md").read_text()
    )
    assert " programs in this call (the runs read back compiled in theirs)" in (out / "summary.md").read_text()
    # other settings in the same --out: refused before any run, each difference named (a bigger grid is not
    # another setting: its new runs run, its old ones are read back)
    assert main([*args, "--steps", "5", "--max-len", "10"]) == 2
    assert (
        f"{out} holds a compare with other settings (--steps: 4 there, 5 now; --max-len: 12 there, 10 now); its "
        f"finished runs are not this compare's"
    ) in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")} == stamps
    from minitransfer.compare import check_same_compare

    record = json.loads((out / "compare.json").read_text())
    changed = {**record, "config": {**record["config"], "lr": {"full": 1e-4}}}  # an override added (or removed)
    with pytest.raises(ValueError, match=r"`lr.full`: None there, 0.0001 now"):
        check_same_compare(out, changed)
    newer = {**record, "config": {**record["config"], "a_setting_added_later": 1}}  # the record predates it: fine
    check_same_compare(out, newer)
    # a setting no option sets is named by its field, as every setting is (the command line leaves it so)
    with pytest.raises(ValueError, match=r"\(`val_examples`: \d+ there, 123 now\)"):
        check_same_compare(out, {**record, "config": {**record["config"], "val_examples": 123}})
    # the adaptation's settings matter only to a call that runs mode adapt
    other_adapt = {**record["config"]["adapt"], "steps": 999}
    check_same_compare(out, {**record, "config": {**record["config"], "modes": ["scratch"], "adapt": other_adapt}})
    with pytest.raises(ValueError, match=r"`adapt.steps`: \d+ there, 999 now"):
        check_same_compare(out, {**record, "config": {**record["config"], "modes": ["adapt"], "adapt": other_adapt}})

    # --keep-checkpoints: each run keeps its best checkpoint, written once, at its end
    kept = tmp_path / "kept"
    assert (
        main(
            [
                *[str(kept) if a == str(out) else a for a in args],
                "--budgets",
                "20",
                "--seeds",
                "1",
                "--modes",
                "scratch,full",
                "--keep-checkpoints",
            ]
        )
        == 0
    )
    runs = sorted((kept / "runs").iterdir())
    assert len(runs) == 2 and sorted(saves) == [run / "best" for run in runs]
    for run in runs:
        saved = json.loads((run / "best" / "config.json").read_text())["minitransfer"]
        assert saved["step"] == json.loads((run / "result.json").read_text())["best_step"], run


def test_a_probe_run_redone_alone_repeats_itself_bit_for_bit(setup, tmp_path):
    """As after an interruption: the frozen-backbone features a probe run reads
    come from one fixed computation, not from batches whose make-up (and so
    padded length) depends on which runs came before it in this call."""
    import shutil

    rng = np.random.default_rng(1)
    words = ["good", "fine", "great", "bad", "poor", "awful", "the", "film", "was", "quite", "and", "so"]
    rows = [
        {
            "text": " ".join(rng.choice(words, size=int(rng.integers(2, 28)))) + f" {i}",
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(600)
    ]  # lengths spread over two length buckets
    (tmp_path / "varied.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--model",
        str(setup / "pre"),
        "--data",
        f"jsonl:{tmp_path / 'varied.jsonl'}",
        "--budgets",
        "50,300",
        "--seeds",
        "1",
        "--steps",
        "3",
        "--max-len",
        "32",
        "--modes",
        "probe",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    first = (out / "results.csv").read_text()
    shutil.rmtree(out / "runs" / "probe-b300-s0")
    assert main(args) == 0
    drop_time = lambda text: [line.rsplit(",", 1)[0] for line in text.splitlines()]  # noqa: E731  (wall_seconds last)
    assert drop_time((out / "results.csv").read_text()) == drop_time(first)


def test_budgets_and_modes_are_checked_before_the_adaptation_runs(setup, tmp_path, capsys, monkeypatch):
    import minitransfer.compare

    def no_adaptation(*a, **k):
        raise AssertionError("the settings should have been refused before the adaptation")

    monkeypatch.setattr(minitransfer.compare, "adapt_language_model", no_adaptation)
    common = [
        "compare",
        "--model",
        str(setup / "pre"),
        "--data",
        f"jsonl:{setup / 'kw.jsonl'}",
        "--seeds",
        "1",
        "--max-len",
        "12",
        "--out",
        str(tmp_path / "c"),
        "--no-progress",
    ]
    assert main([*common, "--budgets", "1", "--modes", "scratch,adapt"]) == 2
    assert "--budgets: 1 is fewer labels than classes (2)" in capsys.readouterr().err
    assert main([*common, "--budgets", "10", "--modes", "probe,adapt,probe"]) == 2
    assert "--modes names probe more than once (probe,adapt,probe)" in capsys.readouterr().err
    assert main([*common, "--budgets", ""]) == 2
    assert "--budgets is empty" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused settings leave no folder behind


def test_a_command_refused_before_any_run_finished_can_be_corrected(setup, tmp_path, capsys):
    """The adaptation's own checks come after compare.json is written: the corrected command must not be
    refused as 'another compare' when nothing of the refused one finished."""
    few = tmp_path / "few.jsonl"  # too little text to hold out a block for measuring the adaptation
    few.write_text("".join(json.dumps({"text": "ok", "label": ["neg", "pos"][i % 2]}) + "\n" for i in range(40)))
    out = tmp_path / "c"
    common = [
        "compare",
        "--model",
        str(setup / "pre"),
        "--seeds",
        "1",
        "--budgets",
        "20",  # the first test's budget: the classifier's steps are the programs it compiled
        "--modes",
        "adapt",
        "--steps",
        "2",
        "--adapt-steps",
        "2",
        "--max-len",
        "12",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main([*common, "--data", f"jsonl:{few}"]) == 2
    assert "too little to measure the adaptation" in capsys.readouterr().err
    assert main([*common, "--data", f"jsonl:{setup / 'kw.jsonl'}"]) == 0
    # the model holds 32 positions, fewer than the adaptation's 64-token blocks: it adapts on 32, and says so
    assert (
        "adapt: blocks of 32 tokens, the model's n_positions (the adaptation asked for 64)" in capsys.readouterr().out
    )
    assert json.loads((out / "compare.json").read_text())["data"] == f"jsonl:{setup / 'kw.jsonl'}"
    # once a run has finished there, other settings are refused as before
    assert main([*common, "--data", f"jsonl:{setup / 'kw.jsonl'}", "--max-len", "10"]) == 2
    assert "holds a compare with other settings (--max-len: 12 there, 10 now)" in capsys.readouterr().err


def test_a_replication_runs_other_seeds_on_another_split_and_says_so(setup, tmp_path, capsys):
    common = [
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
        "2",
        "--max-len",
        "12",
        "--modes",
        "scratch,probe",
        "--no-progress",
    ]
    out = tmp_path / "rep"
    assert main([*common, "--first-seed", "4", "--split-seed", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "x 2 seed(s) (seeds 4-5) = 4 runs" in printed
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "probe-b20-s4",
        "probe-b20-s5",
        "scratch-b20-s4",
        "scratch-b20-s5",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["first_seed"] == 4 and summary["split_seed"] == 1
    assert summary["table"]["scratch"]["20"]["seed_ids"] == [4, 5]
    # the summary names the setting as Python does; the command prints it as its option
    assert "over 2 seeds (seeds 4-5); the data split with `split_seed` 1." in (out / "summary.md").read_text()
    assert "over 2 seeds (seeds 4-5); the data split with --split-seed 1." in printed
    # another split is other data: the same --out refuses it, by option
    assert main([*common, "--out", str(out)]) == 2
    assert "(--split-seed: 1 there, 0 now" in capsys.readouterr().err
    # data that comes with its own splits: the option is said to do nothing
    d = tmp_path / "splits"
    d.mkdir()
    lines = (setup / "kw.jsonl").read_text().splitlines(keepends=True)
    (d / "train.jsonl").write_text("".join(lines[:150]))
    (d / "test.jsonl").write_text("".join(lines[150:]))
    (d / "validation.jsonl").write_text("".join(lines[150:]))
    assert (
        main([*common, "--data", f"jsonl:{d}", "--split-seed", "3", "--seeds", "1", "--out", str(tmp_path / "own")])
        == 0
    )
    assert f"note: --split-seed 3 has no effect: jsonl:{d} comes with its own splits" in capsys.readouterr().out
    # texts cut to --max-len: said once (in the summary the command prints), not twice
    assert main([*common, "--max-len", "2", "--seeds", "1", "--out", str(tmp_path / "short")]) == 0
    assert capsys.readouterr().out.count("Texts longer than --max-len 2 tokens were cut to it") == 1
    assert "Texts longer than `max_len` 2 tokens were cut to it" in (tmp_path / "short" / "summary.md").read_text()
    assert main([*common, "--first-seed", "-1", "--out", str(tmp_path / "neg")]) == 2
    assert "--first-seed must be a whole number from 0" in capsys.readouterr().err


def test_the_quick_smoke_run_has_its_own_default_folder(setup, monkeypatch, tmp_path):
    import minitransfer.compare

    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(minitransfer.compare, "compare", lambda *a, **k: seen.append(a[5]) or 1 / 0)
    for quick, folder in ((["--quick"], "runs/compare-quick"), ([], "runs/compare")):
        with pytest.raises(ZeroDivisionError):
            main(
                [
                    "compare",
                    "--model",
                    str(setup / "pre"),
                    "--data",
                    f"jsonl:{setup / 'kw.jsonl'}",
                    "--max-len",
                    "12",
                    *quick,
                ]
            )
        assert seen.pop() == folder


def test_budget_parsing():
    assert parse_budgets("100, 300,all") == [100, 300, "all"]
    with pytest.raises(ValueError, match="'ten' is neither"):
        parse_budgets("100,ten")
    with pytest.raises(ValueError, match="--budgets: 100, all given more than once"):
        parse_budgets("100,300,100,all,all")


def test_compare_starts_every_run_from_the_same_pretrained_weights(setup, tmp_path, gpt2_tokenizer):
    from minitransfer.compare import CompareConfig, compare
    from minitransfer.data import load_dataset
    from minitransfer.steps import weights_fingerprint

    base = mt.load_pretrained(setup / "pre")
    before = weights_fingerprint(base)
    data = load_dataset(f"jsonl:{setup / 'kw.jsonl'}")
    cc = CompareConfig(
        budgets=[20], modes=["full", "probe"], seeds=1, steps=3, max_len=12, val_examples=10, evals_per_run=1
    )
    compare(base, base.config, data, gpt2_tokenizer, cc, tmp_path / "c", progress=False)
    assert weights_fingerprint(base) == before


def test_committed_summary_is_its_record_in_words_and_one_seed_shows_no_spread():
    """docs/compare/summary.md is summary_markdown(summary.json); with one seed
    there is no standard deviation, so none is printed (it once read "± 0.0")."""
    import json

    from minitransfer.compare import summary_markdown
    from tests.conftest import REPO

    # docs/results.md's experiment, its replication, the contrasts beside it, and SQuAD's (docs/squad.md)
    for folder in (
        "compare",
        "compare-replication",
        "compare-prompt",
        "compare-imdb",
        "compare-imdb-prompt",
        "compare-squad",
    ):
        record = json.loads((REPO / "docs" / folder / "summary.json").read_text())
        assert summary_markdown(record) == (REPO / "docs" / folder / "summary.md").read_text(), folder
    record = json.loads((REPO / "docs" / "compare" / "summary.json").read_text())
    assert "53.2 ± 1.9" in summary_markdown(record)
    one = summary_markdown(dict(record, seeds=1)).split("\n\nGain over scratch")[0]
    assert "one seed, so no spread to show" in one and "±" not in one and "| 53.2 |" in one


def test_bands_too_wide_for_the_accuracy_axis_are_not_drawn():
    # --quick's 2 seeds: t-intervals of +-40 points filled the whole panel (and ran off it, unmarked)
    from minitransfer.figures import accuracy_axis

    means, baseline = [49.0, 55.0, 53.0], 42.9
    (lo, hi), drawn = accuracy_axis(means, baseline, [(np.array([47.0, 52.0]), np.array([51.0, 58.0]))])
    assert drawn and lo == baseline - 8 and hi == 55 + 8  # narrow bands: the axis as the means set it
    (lo, hi), drawn = accuracy_axis(means, baseline, [(np.array([30.0]), np.array([60.0]))])
    assert drawn and lo == 29.0 and hi == 63.0  # a band past the means' span: the axis grows to hold it whole
    (lo, hi), drawn = accuracy_axis(means, baseline, [(np.array([-5.0]), np.array([95.0]))])
    assert not drawn and (lo, hi) == (baseline - 8, 55 + 8)
    assert accuracy_axis(means, baseline, []) == ((baseline - 8, 63.0), False)


def test_compare_runs_question_answering_on_budgets_of_questions(tmp_path, gpt2_tokenizer, capsys):
    """--task qa: the same grid, paired the same way, on exact match and F1 (the task's compare metrics)."""
    from minitransfer.qa import toy_city_questions

    cfg = mt.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, n_positions=48)
    mt.save_pretrained(mt.GPT2.language_model(cfg, seed=3), tmp_path / "pre", tokenizer=gpt2_tokenizer)
    d = tmp_path / "qa"
    d.mkdir()
    for name, n, seed in (("train", 80, 0), ("test", 30, 1)):
        q = toy_city_questions(n, seed)
        rows = [
            {"question": a, "context": c, "answers": {"text": t, "answer_start": st}}
            for a, c, t, st in zip(q.questions, q.contexts, q.answers, q.starts, strict=True)
        ]
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "cmp"
    common = [
        "compare",
        "--task",
        "qa",
        "--model",
        str(tmp_path / "pre"),
        "--data",
        f"jsonl:{d}",
        "--seeds",
        "2",
        "--steps",
        "3",
        "--max-len",
        "40",
        "--no-progress",
    ]
    assert main([*common, "--budgets", "20,40", "--modes", "scratch,full", "--out", str(out)]) == 0
    assert "[8/8] full-b40-s1: full on 40 questions, seed 1, 3 steps" in capsys.readouterr().out
    for f in ("results.csv", "summary.json", "summary.md", "curves.png", "budget.png"):
        assert (out / f).exists() and (out / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0]) == [
        "mode",
        "budget",
        "n_train",
        "seed",
        "split",
        "step",
        "exact_match",
        "f1",
        "train_loss",
        "wall_seconds",
    ]
    assert {(r["budget"], r["mode"], r["seed"]) for r in rows if r["split"] == "test"} == {
        (b, m, s) for b in ("20", "40") for m in ("scratch", "full") for s in ("0", "1")
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "qa" and "majority_baseline" not in summary and "labels" not in summary
    test = {(r["mode"], r["budget"], r["seed"]): r for r in rows if r["split"] == "test"}
    for metric in ("f1", "exact_match"):  # each with its per-seed values, interval and paired gains
        cell = summary["table"]["full"]["20"]
        assert cell[f"{metric}_per_seed"] == [float(test["full", "20", s][metric]) for s in ("0", "1")]
        assert f"{metric}_ci95" in cell and f"{metric}_std" in cell
    gains = {"f1": summary["gains"], "exact_match": summary["other_gains"]["exact_match"]}
    for metric, gs in gains.items():
        assert [(g["mode"], g["over"]) for g in gs] == [("full", "scratch")]
        f, s = (np.array(summary["table"][m]["20"][f"{metric}_per_seed"]) for m in ("full", "scratch"))
        assert gs[0]["budgets"]["20"]["mean"] == pytest.approx(float(np.mean(f - s)))
        assert set(gs[0]["budgets"]["20"]) == {
            "mean",
            "ci95",
            "p",
            "significant",
            "seeds",
            *(("q", "fdr_claim") if gs[0]["budgets"]["20"]["p"] is not None else ()),
        }
    assert gains["exact_match"][0]["metric"] == "exact_match" and "metric" not in gains["f1"][0]
    assert summary["table"]["full"]["20"]["gain_over_scratch"] == gains["f1"][0]["budgets"]["20"]["mean"]
    md = (out / "summary.md").read_text()
    assert md.startswith(f"Test F1 (%) on `jsonl:{d}` (30 test examples), mean ± standard deviation over 2 seeds.")
    assert "| mode | 20 questions | 40 questions |" in md and "Gain over scratch in F1 points: the mean" in md
    assert "Test exact match (%) of the same runs:" in md and "Gain over scratch in exact match points" in md
    # a frozen backbone's cached features hold one pooled vector per text: the span head reads every position
    assert main([*common, "--budgets", "20", "--modes", "scratch,probe", "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert (
        "mode probe trains on a frozen backbone's cached features" in err
        and "the span head reads every position" in err
    )
    assert main([*common, "--budgets", "20", "--modes", "zero,full", "--out", str(tmp_path / "z")]) == 2
    assert "mode zero reads the next-word head as a classifier" in capsys.readouterr().err
    assert main([*common, "--budgets", "20", "--pooling", "last", "--out", str(tmp_path / "z")]) == 2
    assert "--pooling: not read by compare --task qa" in capsys.readouterr().err


def test_a_summary_without_its_task_is_refused_in_one_line():
    from minitransfer.compare import summary_markdown
    from tests.conftest import REPO

    record = json.loads((REPO / "docs" / "compare" / "summary.json").read_text())
    del record["task"]
    with pytest.raises(ValueError, match="^this compare summary names no task: it was written by an earlier "):
        summary_markdown(record)
