"""The copy warm-up of from-scratch base models: its data and its wiring into build_base_model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rstar_jax.domain.synthetic import generate_problems
from rstar_jax.evolve.base_model import BaseModelSpec, build_base_model
from rstar_jax.models import load_hf
from rstar_jax.train.batching import pack_sft
from rstar_jax.train.config import CopyWarmupConfig
from rstar_jax.train.copy_warmup import copy_items


def test_copy_items_repeat_ordinary_tokens_and_weight_only_the_copy():
    cfg = CopyWarmupConfig(steps=1, items=200, min_len=3, max_len=9, seq_len=32)
    ids = np.arange(7, 40)
    items = copy_items(cfg, ids)
    lengths = {len(x.ids) // 2 for x in items}
    assert lengths <= set(range(3, 10)) and len(lengths) > 3  # random lengths: no fixed copy offset
    for x in items:
        n = len(x.ids) // 2
        assert np.array_equal(x.ids[:n], x.ids[n:]) and set(x.ids) <= set(ids) and x.n_prompt == n + 1
    rows = pack_sft(items[:1], [0], cfg.seq_len)
    n = len(items[0].ids) // 2
    # targets at weighted positions are exactly the repeat after its first token
    w = rows["weights"][0].astype(bool)
    assert np.array_equal(rows["targets"][0][w], items[0].ids[n + 1 :])
    assert copy_items(cfg, ids)[5].ids.tolist() == items[5].ids.tolist()  # seeded
    with pytest.raises(ValueError):
        copy_items(cfg, np.arange(1))
    with pytest.raises(ValueError):
        CopyWarmupConfig(max_len=80, seq_len=128)


def test_base_model_copy_warmup_trains_and_logs(tmp_path):
    spec = BaseModelSpec(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        copy_warmup=CopyWarmupConfig(steps=4, batch_size=2, seq_len=64, max_len=32),
    )
    problems = generate_problems(20, 1, seed=0)
    build_base_model(spec, problems, str(tmp_path / "warm"))
    info = build_base_model(
        BaseModelSpec(**{**spec.__dict__, "copy_warmup": CopyWarmupConfig()}), problems, str(tmp_path / "cold")
    )
    assert info["copy_warmup_steps"] == 0
    summary = json.loads((tmp_path / "warm" / "copy_warmup" / "summary.json").read_text())
    assert summary["steps"] == 4 and np.isfinite(summary["loss"])
    _, warm = load_hf(str(tmp_path / "warm"))
    _, cold = load_hf(str(tmp_path / "cold"))  # same seed: the same initial weights
    assert not np.allclose(warm["embed"]["embedding"], cold["embed"]["embedding"])
