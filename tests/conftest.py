"""Shared fixtures: tiny random HF checkpoints made with transformers + torch."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = dict(
    vocab_size=101,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def make_hf_checkpoint(path, family="qwen2", tie=False, seed=0, **overrides):
    """Save a tiny random Qwen2/Llama checkpoint to ``path``; return the torch model."""
    import torch
    import transformers

    torch.manual_seed(seed)
    kw = {**TINY, "tie_word_embeddings": tie, "rope_theta": 10000.0, **overrides}
    if family == "qwen2":
        cfg = transformers.Qwen2Config(**kw)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(**kw, attention_bias=False)
        model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # random biases/norms so a swapped or dropped tensor shows up in logits
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(str(path))
    return model


@pytest.fixture(scope="session")
def qwen_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2")
    return path, make_hf_checkpoint(path, "qwen2", tie=False)


def run_with_devices(code: str, n: int = 8, timeout: int = 300) -> str:
    """Run python code in a subprocess that sees ``n`` fake CPU devices; return stdout."""
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(config, params, torch model, tokenizer); the model knows no eos (runs to the limit)."""
    from rstar_jax import models
    from tests.engine_helpers import make_tokenizer

    tokenizer = make_tokenizer()
    path = tmp_path_factory.mktemp("engine_ckpt")
    model = make_hf_checkpoint(path, "qwen2", vocab_size=len(tokenizer), max_position_embeddings=128)
    config, params = models.load_hf(str(path))
    return config, params, model, tokenizer


@pytest.fixture(scope="session")
def search_trees(tmp_path_factory):
    """Real trees: `rstar-jax search` with the scripted bootstrap proposer on synthetic problems."""
    from rstar_jax import cli
    from rstar_jax.data import save_problems
    from rstar_jax.domain import generate_problems

    d = tmp_path_factory.mktemp("view_search")
    save_problems(generate_problems(8, 2, seed=0), d / "p.jsonl")
    argv = ["search", "--policy", "bootstrap", "--data", str(d / "p.jsonl"), "--out", str(d / "out")]
    assert cli.main([*argv, "--rollouts", "4", "--candidates", "3", "--seed", "0"]) == 0
    return d / "out" / "trees.jsonl"
