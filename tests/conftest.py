"""Shared test fixtures: random-weight Hugging Face GPT-2 checkpoints built on
the spot (real GPT-2 weights cannot be downloaded here), and the real GPT-2
tokenizer that ships inside the package.

Everything here works from a fresh clone with no network. The few tests that
need IMDB (``MINITRANSFER_SHARED_DATA``, default ../shared/data) carry the
``imdb`` marker and ``needs_imdb``: without the data they are skipped, with
the reason."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MINITRANSFER_SHARED_DATA", REPO.parent / "shared" / "data"))
IMDB = SHARED_DATA / "imdb"
# OpenAI's encoder.json + vocab.bpe, as they ship inside the package
from minitransfer.assets import GPT2_BPE_DIR as GPT2_TOKENIZER_FILES  # noqa: E402


def needs_imdb(test):
    """Mark a test that reads the IMDB reviews: skipped, with the reason, where they are absent."""
    reason = (
        f"needs the IMDB reviews at {IMDB} (train.jsonl.gz, test.jsonl.gz); set "
        f"MINITRANSFER_SHARED_DATA to the folder holding imdb/"
    )
    return pytest.mark.imdb(pytest.mark.skipif(not (IMDB / "test.jsonl.gz").exists(), reason=reason)(test))


# keep tests off the network whatever the machine: hub look-ups fail fast
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests that start the console script (the playground's server) would keep its compiled programs in the
# user's ~/.cache (process.enable_compilation_cache): in a folder of the test run's own instead.
if "MINITRANSFER_COMPILATION_CACHE" not in os.environ:
    import atexit
    import tempfile

    _cache = tempfile.mkdtemp(prefix="minitransfer-test-jax-cache-")
    os.environ["MINITRANSFER_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

# The same folder serves as JAX's persistent compilation cache for every process of the run: this one,
# the lectures' kernels and scripts, the subprocesses. Many tests build the same small programs again
# (a jitted function made anew per call, the same lecture in the book and as a script, a fresh process per
# command); each is compiled once and read back after. Every program is kept, whatever its compile time, as
# the command keeps them (process.enable_compilation_cache). Same program, same results: the cache only
# skips XLA's compiler. MINITRANSFER_COMPILATION_CACHE=0 runs the tests without it.
_chosen = os.environ["MINITRANSFER_COMPILATION_CACHE"]
if _chosen.lower() not in ("0", "off", "false", "no") and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _chosen
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# Same seed, same result is tested; on a GPU, XLA's scatter-add (the
# embedding's gradient) sums with atomics in whatever order threads arrive
# unless asked to be deterministic. Read when the backend starts, which is
# after this file runs. On a CPU this changes nothing.
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()

# The parity tests claim float32. On GPUs (TF32) and TPUs (bfloat16 passes)
# JAX's default matmul precision is lower than that, so the tests ask for
# true float32 everywhere; on a CPU this changes nothing.
import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def make_hf_gpt2(seed: int = 0, **config):
    """A randomly initialised ``transformers.GPT2LMHeadModel`` in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    defaults = dict(n_layer=2, n_head=4, n_embd=32, vocab_size=101, n_positions=64, bos_token_id=0, eos_token_id=0)
    hf = GPT2LMHeadModel(GPT2Config(**{**defaults, **config})).eval()
    # GPT-2 initialises LayerNorm to (1, 0) and biases to 0; randomise them so
    # that parity also proves every LayerNorm and bias tensor lands where it should.
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.05 * torch.randn_like(p))
    return hf


def hf_logits(hf, ids, attention_mask=None, position_ids=None):
    import torch

    kw = {}
    if attention_mask is not None:
        kw["attention_mask"] = torch.tensor(np.asarray(attention_mask), dtype=torch.long)
    if position_ids is not None:
        kw["position_ids"] = torch.tensor(np.asarray(position_ids), dtype=torch.long)
    with torch.no_grad():
        return hf(torch.tensor(np.asarray(ids), dtype=torch.long), **kw).logits.numpy()


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory) -> Path:
    """The real GPT-2 BPE (the copy in the package) under the names transformers expects."""
    d = tmp_path_factory.mktemp("gpt2-tokenizer")
    shutil.copy(GPT2_TOKENIZER_FILES / "encoder.json", d / "vocab.json")
    shutil.copy(GPT2_TOKENIZER_FILES / "vocab.bpe", d / "merges.txt")
    return d


@pytest.fixture(scope="session")
def gpt2_tokenizer(gpt2_tokenizer_dir):
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(gpt2_tokenizer_dir))


# The shape of the tiny classifiers' backbone in test_train, test_modes and test_predict. One shape for all:
# their training steps compile once for the whole run (the compilation cache keys programs by shape).
TINY = dict(n_layer=2, n_head=2, n_embd=32, vocab_size=50257, n_positions=32)


@pytest.fixture(scope="session")
def keyword_data(tmp_path_factory):
    """A tiny learnable task: the last word says the class."""
    from minitransfer.data import load_dataset

    d = tmp_path_factory.mktemp("kw")
    rng = np.random.default_rng(0)
    fillers = ["the film", "my day", "this phone", "our trip", "that song", "the food"]
    words = {"neg": ["awful", "terrible", "bad"], "pos": ["great", "lovely", "good"]}
    rows = []
    for i in range(240):
        lab = "pos" if i % 2 else "neg"
        rows.append({"text": f"{rng.choice(fillers)} was {rng.choice(words[lab])}", "label": lab})
    (d / "kw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_dataset(f"jsonl:{d / 'kw.jsonl'}")


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory, gpt2_tokenizer):
    """A random-weight 'pretrained' checkpoint of shape TINY with the GPT-2 tokenizer (read, never written)."""
    import minitransfer as mt

    d = tmp_path_factory.mktemp("pre")
    mt.save_pretrained(mt.GPT2.language_model(mt.GPT2Config(**TINY), seed=123), d, tokenizer=gpt2_tokenizer)
    return d


@pytest.fixture(scope="session")
def random_124m_dir(tmp_path_factory, gpt2_tokenizer) -> Path:
    """GPT-2 small's shape (12 layers, 768 wide, 12 heads, 1,024 positions, the
    50,257-token vocabulary) with random weights (make_hf_gpt2's), as
    transformers saves it, with the GPT-2 tokenizer: written once for the
    tests of that shape (the converter's parity, the chat command)."""
    hf = make_hf_gpt2(
        seed=2,
        n_layer=12,
        n_head=12,
        n_embd=768,
        vocab_size=50257,
        n_positions=1024,
        bos_token_id=50256,
        eos_token_id=50256,
    )
    d = tmp_path_factory.mktemp("gpt2-124m-shape")
    hf.save_pretrained(d)
    gpt2_tokenizer.save_pretrained(d)
    return d


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A tiny random GPT-2 saved by transformers, and the torch model itself."""
    hf = make_hf_gpt2()
    d = tmp_path / "tiny"
    hf.save_pretrained(d)
    return hf, d


def ctrl_c_after(step: int, also=lambda message: None):
    """A log for a run without progress bar (which logs a line per validation)
    that presses Ctrl-C once step ``step``'s validation has been logged: the
    loop saves it, then stops before the next step, as at a real Ctrl-C."""

    def log(message):
        also(message)
        if f" step {step}/" in message:
            from minitransfer import interrupt

            interrupt.request()

    return log
