"""What every head shares (heads.py): weights saved by their names in nnx.state, and a task per module."""

from __future__ import annotations

import ast
import inspect

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import minitransfer as mt
from minitransfer.chat import ChatHead
from minitransfer.classify import ClassificationHead
from minitransfer.heads import HEADS, weights
from minitransfer.qa import SpanHead
from tests.conftest import REPO

TINY = dict(n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=50257)


def test_a_heads_weights_are_named_by_their_path_as_the_checkpoints_name_them():
    assert [n for n, _ in weights(ClassificationHead(32, ["a", "b"]))] == ["score.bias", "score.weight"]
    assert [n for n, _ in weights(ClassificationHead(32, ["a", "b"], bias=False))] == ["score.weight"]
    assert [n for n, _ in weights(SpanHead(32))] == ["qa_outputs.bias", "qa_outputs.weight"]
    assert weights(ChatHead()) == [] and ChatHead().tensors() == {}
    t = ClassificationHead(32, ["a", "b", "c"]).tensors()
    assert {k: v.shape for k, v in t.items()} == {"score.weight": (32, 3), "score.bias": (3,)}  # the kernel as is


@pytest.mark.parametrize(
    "head",
    [
        lambda: ClassificationHead(32, ["neg", "pos"], pooling="mean", seed=1),
        lambda: ClassificationHead(32, ["neg", "pos", "mid"], bias=False, seed=2),  # transformers' score.weight
        lambda: SpanHead(32, seed=3),
    ],
    ids=["classification", "transformers-classification", "span"],
)
def test_every_head_saves_and_restores_its_weights_through_one_generic_path(head, tmp_path, gpt2_tokenizer):
    model = mt.GPT2(mt.GPT2Backbone(mt.GPT2Config(**TINY), rngs=nnx.Rngs(0)), head())
    mt.save_pretrained(model, tmp_path / "m", tokenizer=gpt2_tokenizer)
    names = set(load_file(str(tmp_path / "m" / "model.safetensors")))
    if model.head.hf_layout():  # last pooling, no bias: transformers' own name and layout (K, C)
        assert "score.weight" in names and not any(n.startswith("head.") for n in names)
    else:
        assert {"head." + n for n, _ in weights(model.head)} <= names
    back = mt.load_pretrained(tmp_path / "m")
    assert type(back.head) is type(model.head)
    for (n, a), (m, b) in zip(weights(model.head), weights(back.head), strict=True):
        assert n == m and np.array_equal(np.asarray(a.get_value()), np.asarray(b.get_value())), n
    ids = jnp.asarray([gpt2_tokenizer.encode("Question: Which city?\nContext: we flew to Oslo")], jnp.int32)
    assert np.array_equal(np.asarray(model(ids)), np.asarray(back(ids)))


def test_a_wrong_shaped_head_tensor_is_named_with_what_it_should_be(tmp_path, gpt2_tokenizer):
    from safetensors.numpy import save_file

    model = mt.GPT2(mt.GPT2Backbone(mt.GPT2Config(**TINY), rngs=nnx.Rngs(0)), ClassificationHead(32, ["neg", "pos"]))
    mt.save_pretrained(model, tmp_path, tokenizer=gpt2_tokenizer)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["head.score.weight"] = np.zeros((32, 3), np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(
        mt.CheckpointError,
        match=r"tensor 'head\.score\.weight' has shape \(32, 3\), expected "
        r"\(32, 2\) for 2 labels \['neg', 'pos'\]",
    ):
        mt.load_pretrained(tmp_path)


def test_the_shipped_checkpoint_still_loads_with_the_next_word_head_the_model_module_holds():
    from minitransfer.model import NextWordHead

    model = mt.load_pretrained(REPO / "checkpoints" / "minigpt2-imdb")
    assert type(model.head) is NextWordHead and HEADS["next-word"] is NextWordHead


def test_a_slim_head_is_the_few_lines_of_its_idea():
    """The lecture shows each head whole: its class carries the forward pass, its task is what it inherits."""
    for cls in (ClassificationHead, SpanHead, ChatHead):
        assert len(inspect.getsourcelines(cls)[0]) <= 40, cls.__name__


def _imports(module: str) -> set[str]:
    tree = ast.parse((REPO / "minitransfer" / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def test_the_generic_modules_import_no_task_and_no_module_imports_back():
    assert not {m for m in _imports("heads") if m.startswith("minitransfer")}  # generic: every task imports it
    assert "minitransfer.compare" not in _imports("figures")
    assert "minitransfer.cli.commands" not in _imports("predict")
