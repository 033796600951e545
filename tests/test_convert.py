"""The converter: exact logit parity with transformers' PyTorch GPT-2 on random
checkpoints, every hub file variant, the round trip back, and bad input."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import minitransfer as mt
from minitransfer.convert import CheckpointError
from tests.conftest import hf_logits, make_hf_gpt2

TOL = 1e-4


def _ids(vocab, shape, seed=0):
    return np.random.RandomState(seed).randint(0, vocab, shape).astype(np.int32)


@pytest.mark.parametrize(
    "config",
    [
        dict(n_layer=2, n_head=4, n_embd=32),
        dict(n_layer=3, n_head=2, n_embd=48, n_inner=80),  # non-default MLP width
        dict(n_layer=1, n_head=8, n_embd=64, activation_function="gelu"),  # exact GELU
        dict(n_layer=2, n_head=4, n_embd=32, scale_attn_by_inverse_layer_idx=True, layer_norm_epsilon=1e-6),
        dict(n_layer=4, n_head=3, n_embd=96, vocab_size=257, n_positions=40),
    ],
    ids=["2L-32", "3L-48-ninner", "1L-64-gelu-exact", "2L-32-invlayer", "4L-96-v257"],
)
def test_logit_parity_small_configs(tmp_path, config):
    hf = make_hf_gpt2(seed=1, **config)
    hf.save_pretrained(tmp_path)
    model = mt.load_pretrained(tmp_path)
    ids = _ids(hf.config.vocab_size, (3, min(17, hf.config.n_positions)))
    ours = np.asarray(model(ids))
    ref = hf_logits(hf, ids)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    diff = np.abs(ours - ref).max()
    print(f"parity {config}: max abs diff {diff:.2e}")
    assert diff <= TOL


@pytest.mark.slow
def test_logit_parity_124m_shape_real_vocab(random_124m_dir, gpt2_tokenizer):
    """The full GPT-2 small shape (12 layers, 768 wide, 1024 positions, the real
    50,257-token vocabulary), random weights, on real GPT-2 token ids."""
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(random_124m_dir).eval()
    assert sum(p.numel() for p in hf.parameters()) == 124_439_808
    model = mt.load_pretrained(random_124m_dir)
    texts = ["The quick brown fox jumps over the lazy dog.", "Transfer learning in NLP is"]
    enc = gpt2_tokenizer(texts, padding=False)["input_ids"]
    for ids in enc:
        ids = np.asarray([ids], dtype=np.int32)
        diff = np.abs(np.asarray(model(ids)) - hf_logits(hf, ids)).max()
        print(f"124M parity ({ids.shape[1]} tokens): max abs diff {diff:.2e}")
        assert diff <= TOL


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batch_matches_each_sequence_alone(tiny_checkpoint, side):
    hf, d = tiny_checkpoint
    model = mt.load_pretrained(d)
    lengths = [12, 7, 3]
    T = max(lengths)
    seqs = [_ids(hf.config.vocab_size, (n,), seed=i) for i, n in enumerate(lengths)]
    ids = np.zeros((len(seqs), T), np.int32)
    mask = np.zeros((len(seqs), T), np.int32)
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(T - len(s), T)
        ids[i, sl], mask[i, sl] = s, 1
    batched = np.asarray(model(ids, mask))
    pos = np.maximum(np.cumsum(mask, -1) - 1, 0)
    ref_batched = hf_logits(hf, ids, attention_mask=mask, position_ids=pos)
    for i, s in enumerate(seqs):
        real = mask[i].astype(bool)
        alone = np.asarray(model(s[None]))[0]
        ref_alone = hf_logits(hf, s[None])[0]
        assert np.abs(batched[i][real] - alone).max() <= TOL
        assert np.abs(batched[i][real] - ref_alone).max() <= TOL
        assert np.abs(batched[i][real] - ref_batched[i][real]).max() <= TOL
    assert np.isfinite(batched).all()  # padding rows too: no NaN from fully masked rows


# ----------------------------------------------------------------------------
# Hub file variants
# ----------------------------------------------------------------------------


def _hub_style(tensors, n_layer, n_positions, *, buffers, masked_bias, lm_head):
    """Rewrite what save_pretrained wrote into the form of the hub's gpt2 files."""
    out = {k[len("transformer.") :] if k.startswith("transformer.") else k: v for k, v in tensors.items()}
    if buffers:
        causal = np.tril(np.ones((n_positions, n_positions), np.float32))[None, None]
        for i in range(n_layer):
            out[f"h.{i}.attn.bias"] = causal
            if masked_bias:
                out[f"h.{i}.attn.masked_bias"] = np.asarray(-1e4, np.float32)
    if lm_head:
        out["lm_head.weight"] = out["wte.weight"].copy()
    return out


@pytest.mark.parametrize(
    "variant",
    [
        dict(buffers=False, masked_bias=False, lm_head=False),
        dict(buffers=True, masked_bias=False, lm_head=False),
        dict(buffers=True, masked_bias=True, lm_head=True),
        dict(buffers=False, masked_bias=False, lm_head=True),
    ],
    ids=["no-prefix", "with-causal-buffers", "old-file-masked-bias-lm-head", "lm-head-stored"],
)
def test_hub_style_safetensors(tiny_checkpoint, tmp_path, variant):
    hf, d = tiny_checkpoint
    tensors = load_file(str(d / "model.safetensors"))
    out = tmp_path / "hub"
    out.mkdir()
    shutil.copy(d / "config.json", out)
    save_file(_hub_style(tensors, hf.config.n_layer, hf.config.n_positions, **variant), str(out / "model.safetensors"))
    ids = _ids(hf.config.vocab_size, (2, 9))
    assert np.abs(np.asarray(mt.load_pretrained(out)(ids)) - hf_logits(hf, ids)).max() <= TOL


def test_lm_head_only_stands_in_for_wte(tiny_checkpoint, tmp_path):
    hf, d = tiny_checkpoint
    tensors = load_file(str(d / "model.safetensors"))
    tensors["lm_head.weight"] = tensors.pop("transformer.wte.weight")
    shutil.copy(d / "config.json", tmp_path)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    ids = _ids(hf.config.vocab_size, (1, 5))
    assert np.abs(np.asarray(mt.load_pretrained(tmp_path)(ids)) - hf_logits(hf, ids)).max() <= TOL


def test_untied_lm_head_is_refused(tiny_checkpoint, tmp_path):
    hf, d = tiny_checkpoint
    tensors = load_file(str(d / "model.safetensors"))
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1.0
    shutil.copy(d / "config.json", tmp_path)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lm_head.weight differs from wte.weight"):
        mt.load_pretrained(tmp_path)


def test_sharded_safetensors(tiny_checkpoint, tmp_path):
    hf, d = tiny_checkpoint
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    ids = _ids(hf.config.vocab_size, (2, 9))
    assert np.abs(np.asarray(mt.load_pretrained(tmp_path)(ids)) - hf_logits(hf, ids)).max() <= TOL


@pytest.mark.parametrize("hub_style", [False, True], ids=["transformer-prefix", "hub-style-with-buffers"])
def test_pytorch_model_bin_needs_allow_pickle(tiny_checkpoint, tmp_path, hub_style):
    hf, d = tiny_checkpoint
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    if hub_style:
        tensors = _hub_style(
            {k: v.numpy() for k, v in sd.items()},
            hf.config.n_layer,
            hf.config.n_positions,
            buffers=True,
            masked_bias=True,
            lm_head=True,
        )
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    shutil.copy(d / "config.json", tmp_path)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pass `allow_pickle`"):
        mt.load_pretrained(tmp_path)
    ids = _ids(hf.config.vocab_size, (2, 9))
    model = mt.load_pretrained(tmp_path, allow_pickle=True)
    assert np.abs(np.asarray(model(ids)) - hf_logits(hf, ids)).max() <= TOL


# ----------------------------------------------------------------------------
# Round trip: minitransfer -> save_pretrained -> transformers
# ----------------------------------------------------------------------------


def test_round_trip_to_transformers(tmp_path, gpt2_tokenizer):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    cfg = mt.GPT2Config(n_layer=2, n_head=2, n_embd=64, vocab_size=50257, n_positions=128)
    model = mt.GPT2.language_model(cfg, seed=3)
    mt.save_pretrained(model, tmp_path, tokenizer=gpt2_tokenizer)
    # the weights are as readable as the config beside them (safetensors alone writes 0600)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == (tmp_path / "config.json").stat().st_mode & 0o777
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = np.asarray([gpt2_tokenizer.encode("Hello world, this is a round trip.")], np.int32)
    assert np.abs(np.asarray(model(ids)) - hf_logits(hf, ids)).max() <= TOL
    saved_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert saved_tok.encode("Hello world") == [15496, 995]
    # its limit is the model's context, so transformers' truncation cuts to what the model can read
    assert saved_tok.model_max_length == 128 and gpt2_tokenizer.model_max_length != 128  # the caller's is untouched
    assert len(saved_tok("great movie " * 200, truncation=True)["input_ids"]) == 128
    # and back again into minitransfer, bit for bit
    again = mt.load_pretrained(tmp_path)
    np.testing.assert_array_equal(np.asarray(again(ids)), np.asarray(model(ids)))


def test_tokenizer_hello_world(gpt2_tokenizer, gpt2_tokenizer_dir):
    from tests.conftest import GPT2_TOKENIZER_FILES

    assert gpt2_tokenizer.encode("Hello world") == [15496, 995]
    assert len(gpt2_tokenizer) == 50257
    # the OpenAI file names (encoder.json + vocab.bpe) load directly too
    assert mt.load_tokenizer(GPT2_TOKENIZER_FILES).encode("Hello world") == [15496, 995]


# ----------------------------------------------------------------------------
# Bad input: each a clear error naming the file/tensor and what was expected
# ----------------------------------------------------------------------------


def _copy_ckpt(d, tmp_path, mutate=None):
    out = tmp_path / "bad"
    shutil.copytree(d, out)
    if mutate:
        tensors = load_file(str(out / "model.safetensors"))
        mutate(tensors)
        save_file(tensors, str(out / "model.safetensors"))
    return out


def test_missing_tensor(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint
    out = _copy_ckpt(d, tmp_path, lambda t: t.pop("transformer.h.1.mlp.c_fc.weight"))
    with pytest.raises(
        CheckpointError, match=r"missing tensor 'h\.1\.mlp\.c_fc\.weight' \(expected shape \(32, 128\)\)"
    ):
        mt.load_pretrained(out)


def test_wrong_shape(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint

    def mutate(t):
        t["transformer.wpe.weight"] = t["transformer.wpe.weight"][:10]

    out = _copy_ckpt(d, tmp_path, mutate)
    with pytest.raises(CheckpointError, match=r"'wpe\.weight' has shape \(10, 32\), expected \(64, 32\)"):
        mt.load_pretrained(out)


@pytest.mark.parametrize(
    "damage,says",
    [
        (
            lambda t: t["transformer.h.0.attn.c_attn.weight"].__setitem__((0, 0), np.nan),
            r"tensor 'h\.0\.attn\.c_attn\.weight' holds 1 NaN or infinite value\(s\) of 3,072; "
            r"the checkpoint is damaged",
        ),
        (
            lambda t: t.__setitem__("transformer.ln_f.bias", t["transformer.ln_f.bias"].astype(np.int32)),
            r"tensor 'ln_f\.bias' holds int32 values; a GPT-2 weight is floating point",
        ),
    ],
)
def test_weights_that_are_not_finite_floats_are_refused_by_name(tiny_checkpoint, tmp_path, damage, says):
    # a NaN weight once ranked next words by "nan%" and generated end-of-text; an integer one was cast
    _, d = tiny_checkpoint
    with pytest.raises(CheckpointError, match=says):
        mt.load_pretrained(_copy_ckpt(d, tmp_path, damage))


def test_folders_where_files_are_expected_and_run_folders_are_named(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint
    out = _copy_ckpt(d, tmp_path)
    (out / "model.safetensors").unlink()
    (out / "model.safetensors").mkdir()
    with pytest.raises(CheckpointError, match=r"model.safetensors: not a file; expected the checkpoint's weights"):
        mt.load_pretrained(out)
    run = tmp_path / "run"  # a finetune --out: the model is in its best/
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"run is a training run's folder; its model is .*run/best"):
        mt.load_pretrained(run)


def test_unexpected_tensor(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint

    def mutate(t):
        t["transformer.h.2.ln_1.weight"] = t["transformer.h.1.ln_1.weight"]

    with pytest.raises(CheckpointError, match=r"h\.2\.ln_1\.weight.*is n_layer right"):
        mt.load_pretrained(_copy_ckpt(d, tmp_path, mutate))


def test_not_gpt2_model_type(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint
    out = _copy_ckpt(d, tmp_path)
    cfg = json.loads((out / "config.json").read_text())
    cfg["model_type"] = "llama"
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: model_type is 'llama'.*GPT-2"):
        mt.load_pretrained(out)


def test_truncated_safetensors(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint
    out = _copy_ckpt(d, tmp_path)
    f = out / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors: cannot read.*truncated"):
        mt.load_pretrained(out)


def test_no_weights(tiny_checkpoint, tmp_path):
    _, d = tiny_checkpoint
    out = _copy_ckpt(d, tmp_path)
    (out / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"no weights found.*model.safetensors.*holds \['config.json'"):
        mt.load_pretrained(out)


def test_no_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        mt.load_pretrained(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        mt.load_pretrained(tmp_path / "nope")


def test_hub_id_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"'distilgpt2'.*hub.*unreachable.*local checkpoint directory"):
        mt.load_pretrained("distilgpt2")
    # a relative path from another folder: the example is the shipped checkpoint's absolute path, not the
    # relative one that just failed
    from minitransfer.assets import shipped_checkpoint

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as e:
        mt.load_pretrained("checkpoints/minigpt2-imdb")
    assert f"read from the current folder, {tmp_path}), e.g. the shipped {shipped_checkpoint()} or" in str(e.value)


def test_config_json_without_the_optional_numbers_takes_the_defaults():
    d = {"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 2}
    assert mt.GPT2Config.from_hf_dict(d).layer_norm_epsilon == 1e-5  # (was refused as "got 0.0")


@pytest.mark.parametrize(
    "change,says",
    [
        (lambda d: [1, 2], "expected a JSON object of model settings, found list"),
        (lambda d: {**d, "n_layer": "four"}, "n_layer must be a positive whole number, got 'four'"),
        (lambda d: {**d, "n_head": True}, "n_head must be a positive whole number, got True"),
        (lambda d: {**d, "n_embd": 0}, "n_embd must be a positive whole number, got 0"),
        (lambda d: {**d, "resid_pdrop": "0.1"}, "resid_pdrop must be a number, got '0.1'"),
        (lambda d: {**d, "minitransfer": {"max_len": "long"}}, "minitransfer.max_len must be a positive whole number"),
        (lambda d: {**d, "minitransfer": ["x"]}, "'minitransfer' section must be a JSON object"),
        # values of the right type that would train or predict NaN without a word
        (lambda d: {**d, "attn_pdrop": 5.0}, "attn_pdrop is a dropout rate, from 0 up to (not including) 1; got 5.0"),
        (lambda d: {**d, "layer_norm_epsilon": -1}, "layer_norm_epsilon must be a small positive number, got -1"),
        (lambda d: {**d, "n_head": 3}, "n_embd=128 must be divisible by n_head=3"),  # with the file named too
    ],
)
def test_config_json_of_the_wrong_types_is_one_clear_error(tmp_path, change, says):
    import shutil

    from minitransfer.convert import training_info
    from tests.conftest import REPO

    ckpt = tmp_path / "ckpt"
    shutil.copytree(REPO / "checkpoints" / "minigpt2-imdb", ckpt)
    d = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(change(d)))
    with pytest.raises(ValueError, match=re.escape(str(ckpt / "config.json")) + ": .*" + re.escape(says)):
        mt.load_pretrained(ckpt)
        training_info(ckpt)


def test_a_damaged_tokenizer_file_is_named(tmp_path):
    from minitransfer.tokenizer import load_tokenizer
    from tests.conftest import REPO

    ckpt = tmp_path / "ckpt"
    shutil.copytree(REPO / "checkpoints" / "minigpt2-imdb", ckpt)
    (ckpt / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=re.escape(f"{ckpt}: cannot load its tokenizer (tokenizer.json")):
        load_tokenizer(ckpt)
