"""The lectures' schematics (minitransfer/apps/diagrams.py) read their labels off the live
tokenizer, model, config, mode table and sharding rule: each is drawn from something tiny, and
changing that something changes the drawn text."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from minitransfer.apps import diagrams  # noqa: E402
from minitransfer.chat import ChatHead  # noqa: E402
from minitransfer.classify import ClassificationHead  # noqa: E402
from minitransfer.convert import backbone_tensors  # noqa: E402
from minitransfer.model import GPT2, GPT2Backbone, GPT2Config, num_params  # noqa: E402
from minitransfer.modes import MODES, Mode  # noqa: E402
from minitransfer.qa import SpanHead  # noqa: E402
from minitransfer.train import TrainConfig  # noqa: E402


def tiny(**overrides) -> GPT2Config:
    return GPT2Config(**{**dict(vocab_size=97, n_positions=24, n_embd=16, n_layer=2, n_head=2), **overrides})


def drawn(fig) -> str:
    """Every string of the figure, one per line (the figure is closed)."""
    out = "\n".join(diagrams.texts(fig))
    plt.close(fig)
    return out


@pytest.fixture(scope="module")
def small_tokenizer():
    from minitransfer.tokenizer import train_tokenizer

    texts = ["the cat was swimming in the ocean", "a tokenizer learns merges", "swimming is fun"] * 30
    return train_tokenizer(texts, 300)


def test_bpe_replays_the_tokenizers_own_merges_and_draws_its_ids(small_tokenizer, gpt2_tokenizer):
    for tok in (small_tokenizer, gpt2_tokenizer):
        for word in (" swimming", " tokenization", "ocean", " xyzzy"):
            steps, pieces, ids = diagrams.bpe_steps(tok, word)
            assert ids == tok.encode(word, add_special_tokens=False)
            assert pieces == tok.convert_ids_to_tokens(ids)
    # the same word, two tokenizers: the drawn ids are each tokenizer's own
    for tok in (small_tokenizer, gpt2_tokenizer):
        text = drawn(diagrams.draw_bpe(tok, " swimming"))
        assert all(f"id {i}" in text for i in tok.encode(" swimming", add_special_tokens=False))
        assert f"of the tokenizer's {len(diagrams._bpe_model(tok)['merges']):,} merges" in text
    assert "id 14899" in drawn(diagrams.draw_bpe(gpt2_tokenizer, " swimming"))  # GPT-2's one token for it
    with pytest.raises(ValueError, match="give one word"):
        diagrams.bpe_steps(gpt2_tokenizer, "two words")


def test_bpe_steps_apply_merges_in_rank_order(gpt2_tokenizer):
    # each step applies the lowest-ranked pair present, and a pair a merge creates was learnt after
    # that merge, so the ranks never fall; GPT-2's replay of " tokenization" is known
    steps, pieces, _ = diagrams.bpe_steps(gpt2_tokenizer, " tokenization")
    assert pieces == ["Ġtoken", "ization"]
    assert steps[0][:3] == (0, "Ġ", "t")  # GPT-2's first merge of all
    assert [r for r, *_ in steps] == sorted(r for r, *_ in steps)


@pytest.mark.parametrize("n_embd, n_head", [(16, 2), (32, 4)])
def test_block_labels_follow_the_weights(n_embd, n_head):
    backbone = GPT2Backbone(tiny(n_embd=n_embd, n_head=n_head, n_layer=3), rngs=nnx.Rngs(0))
    text = drawn(diagrams.draw_block(backbone, 1))
    assert f"kernel ({n_embd}, {3 * n_embd})" in text and f"kernel ({4 * n_embd}, {n_embd})" in text
    assert f"LayerNorm({n_embd})" in text and f"{n_head} heads x {n_embd // n_head}" in text
    assert "block h[1] of 3" in text
    block_weights = sum(x.size for x in jax.tree.leaves(nnx.state(backbone.h[1], nnx.Param)))
    assert f"({block_weights:,} weights)" in text


@pytest.mark.parametrize("n_layer, n_positions", [(2, 24), (3, 40)])
def test_next_word_and_cache_labels_follow_the_model(small_tokenizer, n_layer, n_positions):
    config = tiny(vocab_size=len(small_tokenizer), n_layer=n_layer, n_positions=n_positions)
    model = GPT2.language_model(config)
    prompt = "the cat was"
    text = drawn(diagrams.draw_next_word_and_cache(model, small_tokenizer, prompt))
    T, V = len(small_tokenizer.encode(prompt)), len(small_tokenizer)
    assert f"wte.T (16, {V:,})" in text and f"prompt: {T} token ids" in text
    assert f"(B, H, S, D) = (1, 2, {n_positions}, 8)" in text
    assert f"h[{n_layer - 1}].v" in text and f"h[{n_layer}].k" not in text
    assert f"2 x {n_layer} x 2 x 8 = {2 * n_layer * 2 * 8:,} numbers" in text


def test_parameter_count_is_the_built_models():
    for config in (tiny(), tiny(n_layer=5, n_embd=32, n_head=4, n_inner=48)):
        assert diagrams.parameter_count(config) == num_params(GPT2Backbone(config, rngs=nnx.Rngs(0)))


def test_pretraining_cost_is_six_n_d_with_counted_parameters():
    runs = [
        dict(name="tiny", config=tiny(), tokens=1000, tokens_note="measured"),
        dict(name="deeper", config=tiny(n_layer=4), tokens=1000, tokens_note="an assumption"),
    ]
    text = drawn(diagrams.draw_pretraining_cost(runs, device=dict(name="a toy", flops_per_second=1e6, note="n")))
    for r in runs:
        n = diagrams.parameter_count(r["config"])
        assert f"6 x {n:,} parameters x 1,000 tokens = {6 * n * 1000:.2g} FLOPs" in text
    assert "measured" in text and "an assumption" in text and "of a toy" in text


def test_checkpoint_mapping_draws_the_converters_names():
    for n_layer in (2, 4):
        backbone = GPT2Backbone(tiny(n_layer=n_layer), rngs=nnx.Rngs(0))
        text = drawn(diagrams.draw_checkpoint_mapping(backbone))
        names = set(backbone_tensors(backbone, prefix=""))  # what save_pretrained writes, unprefixed
        drawn_names = {line for line in text.splitlines() if line in names}
        assert drawn_names == {n for n in names if not n.startswith("h.") or n.startswith("h.0.")}
        assert "(16, 48)" in text and f"h.1 ... h.{n_layer - 1}.*" in text
        assert f"{len(names)} tensors" in text


def test_head_labels_follow_each_kind_of_head():
    backbone = GPT2Backbone(tiny(), rngs=nnx.Rngs(0))
    heads = [ClassificationHead(16, ["spam", "ham"]), SpanHead(16), ChatHead()]
    text = drawn(diagrams.draw_heads(backbone, heads))
    assert "Linear(16, 2)" in text and "spam / ham" in text
    assert "qa_outputs: Linear(16, 2)" in text and "(B, T, 16) -> (B, T, 2): answer start / end" in text
    assert "ChatHead" in text and "(B, T, 16) -> (B, T, 97)" in text and "replies' tokens only" in text
    assert "h[0..1]: 2 x Block" in text


def test_ulmfit_draws_every_mode_and_its_stages():
    assert diagrams.mode_stages(MODES["scratch"]) == (False, False, True)
    assert diagrams.mode_stages(MODES["adapt"]) == (True, True, True)
    assert diagrams.mode_stages(MODES["zero"]) == (True, False, False)
    text = drawn(diagrams.draw_ulmfit())
    assert all(name in text.splitlines() for name in MODES)
    assert "adapt.adapt_language_model" in text and "pretrain.pretrain" in text and "train.finetune" in text
    extra = Mode("headonly", "adapted", MODES["probe"].trains, 1e-3, 1e-3, "a test mode")
    text = drawn(diagrams.draw_ulmfit({**MODES, "headonly": extra}))
    assert "headonly" in text.splitlines() and "trains All(Param, PathContains('head'))" in text


@pytest.mark.parametrize("rank", [2, 4])
def test_lora_labels_and_share_follow_the_rank(rank):
    config = tiny()
    model = GPT2(GPT2Backbone(config, rngs=nnx.Rngs(0)), ClassificationHead(16, ["a", "b"]))
    cfg = TrainConfig(mode="lora", lora_rank=rank, lora_alpha=8.0)
    lora = MODES["lora"].prepared(model, cfg)
    trains = MODES["lora"].filter(cfg, config.n_layer)
    n, total = diagrams.trainable_share(lora, trains)
    # per block: adapters on c_attn (16->48), attn.c_proj (16->16), c_fc (16->64), mlp.c_proj (64->16)
    adapters = config.n_layer * rank * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
    head = 16 * 2 + 2
    assert n == adapters + head and total == num_params(model) + adapters
    text = drawn(diagrams.draw_lora(lora, trains))
    assert f"lora_a {(16, rank)}" in text and f"lora_b {(rank, 48)}" in text and "(16, 48)" in text
    assert f"alpha / r = {8.0 / rank:g}" in text and f"{n:,} of {total:,} weights train" in text
    with pytest.raises(ValueError, match="mode lora"):
        diagrams.draw_lora(model, trains)


@pytest.mark.parametrize("n_devices", [4, 8])
def test_sharding_follows_the_rule_and_the_mesh(n_devices):
    text = drawn(diagrams.draw_sharding({"w": (16, 64), "b": (6,)}, (16, 32), n_devices))
    assert f"one device holds ({16 // n_devices}, 32)" in text  # the batch, split along its first axis
    assert f"one device holds (16, {64 // n_devices})" in text  # fsdp: the largest axis that divides
    assert "one device holds (16, 64)" in text  # data: every weight whole on every device
    assert "P(None, 'data')" in text and "one device holds (6,)" in text  # 6 divides by neither: replicated
    assert f"a mesh of {n_devices} devices" in text
