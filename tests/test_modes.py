"""The mode table: what trains is an nnx filter; top (partial unfreezing) and lora (low-rank adapters)."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import nnx

import minitransfer as mt
from minitransfer.cli import main
from minitransfer.lora import ADAPTERS_FILE, ScaledLoRALinear, add_adapters, merge_adapters
from minitransfer.modes import MODES, get_mode, mode_help
from minitransfer.steps import split_trained
from minitransfer.train import TrainConfig, build_classifier, finetune
from tests.conftest import TINY, ctrl_c_after


def _cfg(**kw):
    return TrainConfig(**{**dict(steps=12, batch_size=16, max_len=12, eval_every=3, lr=3e-3), **kw})


def _model(pretrained_dir, data, cfg):
    return build_classifier(cfg.mode, mt.load_pretrained(pretrained_dir), mt.GPT2Config(**TINY), data.label_names, cfg)


def _flat(module) -> dict:
    return {".".join(map(str, p)): np.array(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(module, nnx.Param))}


def test_each_mode_says_what_trains_as_a_filter():
    # the derived properties the rest of the code reads, as the old free-text field had them
    assert [m for m in MODES if MODES[m].frozen_backbone] == ["probe"]
    assert [m for m in MODES if MODES[m].trains_nothing] == ["zero"]
    assert not MODES["scratch"].pretrained and all(MODES[m].trains_backbone for m in ("top", "lora", "full"))
    assert MODES["probe"].trains_text == "All(Param, PathContains('head'))"
    assert MODES["lora"].trains_text == "Any(LoRAParam, All(Param, PathContains('head')))"
    assert "top: ULMFiT-style partial unfreezing" in mode_help() and "lora: low-rank adapters" in mode_help()
    with pytest.raises(ValueError, match="`unfreeze` must be at least 1"):
        TrainConfig(mode="top", unfreeze=0)
    with pytest.raises(ValueError, match="`lora_rank` must be at least 1"):
        TrainConfig(mode="lora", lora_rank=0)


@pytest.mark.parametrize("k", [1, 2])
def test_top_trains_only_the_last_blocks_the_final_layer_norm_and_the_head(
    k, pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path
):
    cfg = _cfg(mode="top", unfreeze=k, steps=4, eval_every=2)
    model = _model(pretrained_dir, keyword_data, cfg)
    before = _flat(model)
    finetune(model, keyword_data, gpt2_tokenizer, cfg, tmp_path / "run", progress=False)
    for weights in (_flat(model), _flat(mt.load_pretrained(tmp_path / "run" / "best"))):
        assert weights.keys() == before.keys()
        for name, w in weights.items():
            trains = name.startswith(("head.", "backbone.ln_f.", *(f"backbone.h.{i}." for i in range(2 - k, 2))))
            assert np.array_equal(w, before[name]) != trains, name  # frozen: bit-identical; trained: moved


def test_unfreeze_beyond_the_model_depth_is_refused(pretrained_dir, keyword_data, gpt2_tokenizer):
    cfg = _cfg(mode="top", unfreeze=3)
    with pytest.raises(ValueError, match="`unfreeze` must be between 1 and the model's 2 blocks, got 3"):
        finetune(_model(pretrained_dir, keyword_data, cfg), keyword_data, gpt2_tokenizer, cfg, None, progress=False)


def test_lora_trains_only_the_adapters_and_the_head(pretrained_dir, keyword_data, gpt2_tokenizer):
    cfg = _cfg(mode="lora", lora_rank=4, lora_alpha=8)
    model = _model(pretrained_dir, keyword_data, cfg)
    prepared = get_mode("lora").prepared(model, cfg)
    assert prepared is not model and not any(
        isinstance(getattr(o, n), ScaledLoRALinear) for o, n in [(b.attn, "c_attn") for b in model.backbone.h]
    )
    _, trained, _ = split_trained(prepared, get_mode("lora").filter(cfg, 2))
    names = [".".join(map(str, p)) for p, _ in nnx.to_flat_state(trained)]
    assert names and all(n.startswith("head.") or ".lora.lora_" in n for n in names), names
    assert len([n for n in names if "lora" in n]) == 2 * 4 * 2  # (A, B) x 4 projections x 2 blocks
    # B starts at zero: the adapted model computes exactly what the pretrained one does
    ids = np.array([[5, 6, 7, 8]], np.int32)
    np.testing.assert_array_equal(np.asarray(prepared(ids)), np.asarray(model(ids)))

    # after training, the model's plain weights are the pretrained ones plus scale * A @ B on each projection
    # (the adapters file says A and B), everything else of the backbone bit-identical
    before = _flat(model)
    r = finetune(model, keyword_data, gpt2_tokenizer, cfg, None, progress=False)
    assert r.steps == cfg.steps
    after = _flat(model)
    assert after.keys() == before.keys()  # the caller's model stays a plain GPT-2: the adapters merged in
    moved = sorted(n for n in after if not np.array_equal(after[n], before[n]))
    projection_kernels = {
        f"backbone.h.{i}.{p}.kernel" for i in range(2) for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert set(moved) == projection_kernels | {"head.score.kernel", "head.score.bias"}, moved


def test_lora_checkpoint_merges_the_adapters_and_opens_in_transformers(
    pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path
):
    import torch
    from safetensors import safe_open
    from transformers import GPT2ForSequenceClassification

    cfg = _cfg(mode="lora", lora_rank=4, lora_alpha=8, head_bias=False, pooling="last")
    model = _model(pretrained_dir, keyword_data, cfg)
    base = _flat(model)
    finetune(model, keyword_data, gpt2_tokenizer, cfg, tmp_path / "run", progress=False)
    best = tmp_path / "run" / "best"
    # the adapters alone, beside the merged checkpoint: W + (alpha / r) A @ B is what was saved
    with safe_open(str(best / ADAPTERS_FILE), "np") as f:
        assert f.metadata() == {"rank": "4", "scale": "2.0"}
        a, b = f.get_tensor("h.1.mlp.c_fc.lora_a"), f.get_tensor("h.1.mlp.c_fc.lora_b")
        assert len(f.keys()) == 16 and a.shape == (32, 4) and b.shape == (4, 128) and np.abs(b).max() > 0
    saved = mt.load_pretrained(best)
    np.testing.assert_allclose(
        _flat(saved)["backbone.h.1.mlp.c_fc.kernel"], base["backbone.h.1.mlp.c_fc.kernel"] + 2.0 * a @ b, atol=1e-6
    )
    hf, loading = GPT2ForSequenceClassification.from_pretrained(best, output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"], loading
    ids = np.array([[11, 12, 13, 14, 15], [21, 22, 23, 50256, 50256]], np.int32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.int32)
    with torch.no_grad():
        theirs = hf.eval()(
            input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long)
        ).logits.numpy()
    ours = np.asarray(saved(ids, mask))
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model(ids, mask)), ours, atol=1e-6)  # the caller's model: the same


def test_merging_adapters_keeps_what_the_model_computes(pretrained_dir):
    model = mt.load_pretrained(pretrained_dir)
    cfg = TrainConfig(mode="lora", lora_rank=3, lora_alpha=5.0)
    adapted = add_adapters(model, cfg)
    for p, v in nnx.to_flat_state(nnx.state(adapted, nnx.LoRAParam)):  # B away from its zero start
        v.set_value(jax.random.normal(jax.random.key(len(p)), v.get_value().shape) * 0.1)
    ids = np.array([[1, 2, 3, 4, 5, 6]], np.int32)
    unmerged = np.asarray(adapted(ids))
    assert not np.allclose(unmerged, np.asarray(model(ids)), atol=1e-3)
    merged = merge_adapters(nnx.clone(adapted))
    assert not nnx.state(merged, nnx.LoRAParam) and nnx.state(merged).keys() == nnx.state(model).keys()
    np.testing.assert_allclose(np.asarray(merged(ids)), unmerged, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("mode", ["top", "lora"])
def test_an_interrupted_run_resumes_exactly(mode, pretrained_dir, keyword_data, gpt2_tokenizer, tmp_path):
    cfg = _cfg(mode=mode, unfreeze=2, lora_rank=4, lora_alpha=8)  # the settings (so the programs) of the tests above
    a = finetune(
        _model(pretrained_dir, keyword_data, cfg), keyword_data, gpt2_tokenizer, cfg, tmp_path / "a", progress=False
    )
    with pytest.raises(KeyboardInterrupt):
        finetune(
            _model(pretrained_dir, keyword_data, cfg),
            keyword_data,
            gpt2_tokenizer,
            cfg,
            tmp_path / "b",
            progress=False,
            log=ctrl_c_after(6),
        )
    assert json.loads((tmp_path / "b" / "state" / "state.json").read_text())["step"] == 6
    b = finetune(
        _model(pretrained_dir, keyword_data, cfg), keyword_data, gpt2_tokenizer, cfg, tmp_path / "b", progress=False
    )
    assert a.test == b.test and a.best_step == b.best_step and a.best_val == b.best_val
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    wa, wb = mt.load_pretrained(tmp_path / "a" / "best"), mt.load_pretrained(tmp_path / "b" / "best")
    jax.tree.map(np.testing.assert_array_equal, nnx.state(wa), nnx.state(wb))
    files = sorted(p.name for p in (tmp_path / "a" / "best").iterdir())
    assert (ADAPTERS_FILE in files) == (mode == "lora")
    if mode == "lora":
        from safetensors.numpy import load_file

        ta, tb = (load_file(str(tmp_path / run / "best" / ADAPTERS_FILE)) for run in ("a", "b"))
        assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_mode_options_key_only_their_own_mode(pretrained_dir, keyword_data, gpt2_tokenizer):
    from minitransfer.train import ignored_settings

    def key(**kw):  # the settings a run of this mode is keyed by
        cfg = _cfg(**kw)
        return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ignored_settings(cfg.mode)}

    assert key(mode="full") == key(mode="full", unfreeze=2, lora_rank=4)  # full reads neither
    assert key(mode="top") != key(mode="top", unfreeze=2) and key(mode="lora") != key(mode="lora", lora_alpha=4)


def test_finetune_command_runs_top_and_lora(pretrained_dir, keyword_data, tmp_path, capsys):
    data = tmp_path / "kw.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t, "label": keyword_data.label_names[y]}) + "\n"
            for split in (keyword_data.train, keyword_data.validation, keyword_data.test)
            for t, y in zip(split.texts, split.labels, strict=True)
        )
    )
    common = [
        "--model",
        str(pretrained_dir),
        "--data",
        f"jsonl:{data}",
        "--steps",
        "2",
        "--eval-every",
        "2",
        "--max-len",
        "12",
        "--batch-size",
        "16",  # with --lora-rank 4 --lora-alpha 8 and --unfreeze 2: the programs the tests above compiled
        "--no-progress",
    ]
    assert main(["finetune", "--mode", "top", "--unfreeze", "2", *common, "--out", str(tmp_path / "top")]) == 0
    assert (
        main(
            [
                "finetune",
                "--mode",
                "lora",
                "--lora-rank",
                "4",
                *common,
                "--lora-alpha",
                "8",
                "--out",
                str(tmp_path / "lora"),
            ]
        )
        == 0
    )
    assert (tmp_path / "lora" / "best" / ADAPTERS_FILE).exists()
    assert json.loads((tmp_path / "lora" / "result.json").read_text())["config"]["lora_rank"] == 4
    assert main(["finetune", "--mode", "full", "--unfreeze", "2", *common, "--out", str(tmp_path / "full")]) == 0
    assert "note: --unfreeze 2 has no effect in mode full: only top reads it" in capsys.readouterr().out
