"""Sharded training on 8 simulated CPU devices (select with -k "shard or parallel").

XLA reads --xla_force_host_platform_device_count when JAX starts, so the checks
run in a fresh Python process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np, optax
    from flax import nnx
    assert len(jax.devices()) == 8, jax.devices()
    import minitransfer as mt
    from minitransfer.classify import ClassificationHead
    from minitransfer.parallel import Parallel
    from minitransfer.optim import make_optimizer
    from minitransfer.steps import classification_loss, forward_tokens, make_train_step
    from minitransfer.train import TrainConfig

    cfg = mt.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=128, n_positions=16)
    model = mt.GPT2(mt.GPT2Backbone(cfg, rngs=nnx.Rngs(0)), ClassificationHead(32, ["a", "b", "c"]))
    graphdef, params = nnx.split(model)
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(0, 128, (16, 16)).astype(np.int32),
             "attention_mask": np.ones((16, 16), np.int32), "labels": rng.integers(0, 3, 16).astype(np.int32)}
    key = jax.random.key(0)
    results = {}
    for strategy in ("none", "data", "fsdp"):
        tc = TrainConfig(mode="full", lr=1e-3, warmup=0.0, steps=10)
        tx = make_optimizer(tc, params, 10, cfg.n_layer)
        par = Parallel(strategy)
        p0 = par.place(jax.tree.map(np.array, params))
        o0 = par.place(tx.init(p0))
        sh = (par.param_sharding(p0), par.param_sharding(o0)) if par.mesh else None
        step = make_train_step(graphdef, classification_loss(forward_tokens), tx, sh)
        p1, o1, m = step(p0, o0, par.place_batch(batch), key, np.float32(tc.lr))
        p2, o2, m2 = step(p1, o1, par.place_batch(batch), key, np.float32(tc.lr))
        results[strategy] = (float(m["loss"]), float(m2["loss"]), jax.tree.map(np.asarray, p2))
        if strategy == "fsdp":
            k = p2["backbone"]["h"][0]["mlp"]["c_fc"]["kernel"][...]
            assert len(k.sharding.device_set) == 8 and k.addressable_shards[0].data.shape[1] == 128 // 8, k.sharding
    ref = results["none"]
    for strategy in ("data", "fsdp"):
        l1, l2, p = results[strategy]
        assert abs(l1 - ref[0]) < 1e-5 and abs(l2 - ref[1]) < 1e-5, (strategy, l1, l2, ref[:2])
        diff = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), p, ref[2])))
        assert diff < 1e-5, (strategy, diff)
        print(strategy, "loss", l1, l2, "max param diff", diff)
    try:
        Parallel("data").place_batch({"input_ids": np.zeros((12, 4), np.int32)})
        raise SystemExit("a batch of 12 on 8 devices should be refused")
    except ValueError as e:
        assert "does not divide evenly over 8 devices" in str(e), e
    print("OK")
    """
)


def test_data_parallel_and_fsdp_shard_match_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    print(r.stdout)


def test_parallel_cli_flag_and_bad_strategy(capsys):
    import pytest

    from minitransfer.cli import build_parser
    from minitransfer.parallel import Parallel

    for cmd in (["finetune", "--out", "x"], ["pretrain", "--data", "tweets", "--out", "x"], ["compare"]):
        assert build_parser().parse_args([*cmd, "--parallel", "fsdp"]).parallel == "fsdp"
        with pytest.raises(SystemExit):
            build_parser().parse_args([*cmd, "--parallel", "model"])
        assert "invalid choice: 'model'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown `parallel` 'model'"):
        Parallel("model")
