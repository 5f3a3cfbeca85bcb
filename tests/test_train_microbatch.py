"""Bounded memory: a global batch run as micro-batches gives the whole batch's update; the memory
estimate against XLA's account of the compiled step; a setting that cannot fit fails before
anything compiles; settings are checked against their bounds; the paper's default PPM batch
(512 rows x 1,024 tokens) trains under an address-space limit."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.errors import UserError
from rstar_jax.memory import memory_budget
from rstar_jax.models import init_value_head
from rstar_jax.models.sharding import make_mesh, shard_params
from rstar_jax.train.batching import EncodedSFT, encode_groups, group_caps, pack_groups, pack_sft
from rstar_jax.train.config import RewardConfig, SFTConfig
from rstar_jax.train.losses import RewardLoss, sft_loss
from rstar_jax.train.memory import plan_memory
from rstar_jax.train.reward import train_reward_model
from rstar_jax.train.trainer import StepSpec, _init, _put, _train_step
from tests.test_train_loop import _flat, ppm_groups, tiny, tokenizer

os.environ["RSTAR_NO_PROGRESS"] = "1"


def _sft_batch():
    """4 rows of 64 tokens: row 0 has 60 target tokens, rows 1-3 have 3 each."""
    rng = np.random.RandomState(0)
    items = [EncodedSFT(rng.randint(3, 300, 62).astype(np.int32), 2)]
    items += [EncodedSFT(rng.randint(3, 300, 40).astype(np.int32), 37) for _ in range(3)]
    rows = pack_sft(items, range(4), 64)
    assert rows["weights"].sum(1).tolist() == [60, 3, 3, 3]
    return rows


def _ppm_batch():
    """4 rows of 320 tokens: two rows of 3 prefix groups each, then two rows of one whose pairs
    prefer the other way (so the rows pull the gradient apart)."""
    items = encode_groups(ppm_groups(8), tokenizer())
    items = items[:6] + [dataclasses.replace(g, pairs=g.pairs[:, ::-1].copy()) for g in items[6:]]
    caps = group_caps(items, 320)
    parts = [pack_groups(items[:6], range(6), 320, caps)] + [pack_groups([g], [0], 320, caps) for g in items[6:]]
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert rows["pair_w"].sum(1).round(4).tolist() == [3, 3, 1, 1]  # prefixes per row
    return rows


def _models():
    config, params = tiny()
    ppm_config, ppm_params = init_value_head(config, params, jax.random.key(1))
    head = ppm_params["value_head"]
    ppm_params = {**ppm_params, "value_head": {**head, "kernel": head["kernel"] * 50}}  # per-prefix losses differ
    return {
        "sft": (sft_loss, config, params, _sft_batch()),
        "ppm": (RewardLoss("ppm"), ppm_config, ppm_params, _ppm_batch()),
    }


def _step(kind: str, micro: int):
    loss, config, params, rows = _models()[kind]
    cls = SFTConfig if kind == "sft" else RewardConfig
    # eps 1e-3: Adam's first step is lr * g / (|g| + eps), so with the default 1e-8 the float32 rounding
    # noise of a zero gradient (the value head's bias under Bradley-Terry) would move a weight by ~lr
    cfg = cls(lr=1e-3, eps=1e-3, batch_size=4, seq_len=rows["tokens"].shape[1], steps=1, micro_batch=micro)
    mesh = make_mesh()
    spec = StepSpec(loss, config, cfg, 1, mesh)
    assert spec.micro_steps() == (4 // micro if micro else 1)
    state, metrics = _train_step(spec, _init(spec, shard_params(params, mesh), 0), _put(rows, mesh))
    return _flat(state.params), {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize("kind", ["sft", "ppm"])
def test_micro_batches_give_the_whole_batch_update(kind):
    """Micro-batches of 4, 2 and 1 rows (target tokens 63 + 6 or 60 + 3 + 3 + 3; prefixes 6 + 2 or
    3 + 3 + 1 + 1) train the same parameters; a mean of the micro-batches' mean gradients would not."""
    loss, config, params, rows = _models()[kind]
    spec = StepSpec(loss, config, SFTConfig(steps=1, batch_size=4), 1, make_mesh())
    grad = jax.jit(jax.grad(lambda p, b: spec.loss(p, b)[0]))
    whole = grad(params, rows)
    naive = jax.tree.map(
        lambda *g: sum(g) / 4, *(grad(params, {k: v[i : i + 1] for k, v in rows.items()}) for i in range(4))
    )
    num = sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(naive)))
    assert num**0.5 > 0.1 * float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(whole))))

    ref, ref_metrics = _step(kind, 0)
    for micro in (2, 1):
        got, metrics = _step(kind, micro)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-7, err_msg=f"micro_batch={micro} {k}")
        assert metrics.keys() == ref_metrics.keys()
        for k in ref_metrics:
            assert metrics[k] == pytest.approx(ref_metrics[k], rel=1e-5), k
    assert max(abs(ref[k] - _flat(params)[k]).max() for k in ref) > 1e-4  # the step did move the params


def _xla_bytes(spec: StepSpec, params, rows) -> int:
    """What XLA allocates for the compiled step (compiled from shapes only: nothing is run)."""
    state = jax.eval_shape(lambda p: _init(spec, p, 0), params)
    batch = {k: jax.ShapeDtypeStruct((spec.cfg.batch_size, *v.shape[1:]), v.dtype) for k, v in rows.items()}
    m = _train_step.lower(spec, state, batch).compile().memory_analysis()
    return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


@pytest.mark.parametrize(
    "kind, seq_len, batch, micro",
    [("sft", 256, 32, 16), ("ppm", 512, 16, 8)],
)
def test_memory_estimate_is_within_2x_of_xla(kind, seq_len, batch, micro):
    loss, config, params, rows = _models()[kind]
    rows = {
        k: np.zeros((1, seq_len) if v.shape[1] == rows["tokens"].shape[1] else v[:1].shape, v.dtype)
        for k, v in rows.items()
    }
    cls = SFTConfig if kind == "sft" else RewardConfig
    cfg = cls(batch_size=batch, seq_len=seq_len, steps=1, micro_batch=micro, memory_gb=100.0)
    mesh = make_mesh()
    plan = plan_memory(config, cfg, mesh, rows)
    assert (plan.micro_batch, plan.micro_steps) == (micro, batch // micro)
    xla = _xla_bytes(StepSpec(loss, config, cfg, 1, mesh), params, rows)
    assert 0.5 < plan.estimate_bytes / xla < 2.0, (plan, xla)


def test_micro_batch_is_the_largest_that_fits_and_a_setting_that_cannot_fit_fails_before_compiling(tmp_path):
    config, params = tiny()
    rows = _ppm_batch()
    mesh = make_mesh()
    plan = plan_memory(config, RewardConfig(memory_gb=1.0), mesh, rows)  # 512 rows x 1,024 tokens
    assert plan.estimate_bytes <= 1e9 < plan.fixed_bytes + 2 * plan.micro_batch * plan.row_bytes
    assert plan.micro_batch * plan.micro_steps == 512 and plan.micro_batch & (plan.micro_batch - 1) == 0
    with pytest.raises(UserError, match="micro_batch=3 must divide the 512 rows per device"):
        plan_memory(config, RewardConfig(micro_batch=3), mesh, rows)
    with pytest.raises(UserError, match=r"micro_batch=512 needs about .* GB per device .* budget of 1\.00 GB"):
        plan_memory(config, RewardConfig(micro_batch=512, memory_gb=1.0), mesh, rows)

    compiled = (_train_step._cache_size(), _init._cache_size())
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=r"even one row .* needs about 0\.0[0-9] GB per device .* \(memory_gb=0\.01\)"):
        train_reward_model(ppm_groups(8), (config, params), tokenizer(), str(tmp_path), RewardConfig(memory_gb=0.01))
    assert time.perf_counter() - t0 < 20
    assert (_train_step._cache_size(), _init._cache_size()) == compiled  # nothing was compiled
    assert not (tmp_path / "ckpt").exists()


def test_memory_budget_sources():
    assert memory_budget(2.5) == (2_500_000_000, "memory_gb=2.5")
    budget, source = memory_budget(None)
    assert budget > 0 and ("host" in source or "free memory" in source), source


@pytest.mark.parametrize(
    "override, message",
    [
        ("lr=-0.001", "lr must be > 0 and finite, got -0.001"),
        ("lr=0", "lr must be > 0 and finite, got 0.0"),
        ("steps=-5", "steps must be >= 0, got -5"),
        ("epochs=-1", "epochs must be >= 0 and finite, got -1.0"),
        ("batch_size=0", "batch_size must be >= 1, got 0"),
        ("seq_len=-8", "seq_len must be >= 1, got -8"),
        ("warmup_steps=-1", "warmup_steps must be >= 0, got -1"),
        ("weight_decay=-0.1", "weight_decay must be >= 0 and finite, got -0.1"),
        ("clip_norm=0", "clip_norm must be > 0 and finite, got 0.0"),
        ("b2=1.0", r"b2 must be in \[0, 1\), got 1.0"),
        ("micro_batch=-2", "micro_batch must be >= 0, got -2"),
        ("memory_gb=0", r"memory_gb must be > 0 and finite \(or unset: the device's memory\), got 0.0"),
        ("mesh_data=0", r"mesh_data must be >= 1 \(or -1: every device left\), got 0"),
        ("checkpoint_every=-1", "checkpoint_every must be >= 0, got -1"),
    ],
)
def test_settings_out_of_bounds_are_user_errors(override, message):
    from rstar_jax.config import load_config
    from rstar_jax.evolve.config import EvolveConfig

    with pytest.raises(UserError, match=f"^SFTConfig: {message}$"):
        load_config(SFTConfig, None, [override])
    with pytest.raises(UserError, match=f"sft: {message}$"):  # a nested section names itself
        load_config(EvolveConfig, None, [f"sft.{override}"])


def test_settings_bounds_in_python():
    with pytest.raises(UserError, match="epochs must be > 0 when steps is 0"):
        SFTConfig(epochs=0)
    assert SFTConfig(epochs=0, steps=3).steps == 3  # steps alone is enough
    with pytest.raises(UserError, match="batch_size must be int, got True"):
        SFTConfig(batch_size=True)
    with pytest.raises(UserError, match="lr must be > 0 and finite, got nan"):
        SFTConfig(lr=float("nan"))
    with pytest.raises(UserError, match=r"eval_fraction must be in \[0, 1\), got 1.0"):
        RewardConfig(eval_fraction=1.0)
    with pytest.raises(UserError, match="squash_scale must be > 0"):
        RewardConfig(squash_scale=0.0)


# `rstar-jax train-ppm` with every setting at its default (the paper's 512 x 1,024 batch) on the
# trees of a quick-demo-style bootstrap search, from a 2-layer hidden-64 model (the quick demo's
# size), in a process whose address space is capped at 8 GiB: unsplit, the step asks XLA for
# ~22 GB (the old trainer was killed); the budget comes from the limit.
LIMITED_CLI = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
from rstar_jax.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_default_train_ppm_on_demo_trees_under_an_address_space_limit(tmp_path):
    from rstar_jax.cli import main
    from rstar_jax.data import save_problems
    from rstar_jax.domain import generate_problems
    from rstar_jax.evolve.base_model import build_base_model
    from rstar_jax.evolve.config import BaseModelSpec
    from rstar_jax.train.config import CopyWarmupConfig

    problems = [p for tier in (1, 2, 3) for p in generate_problems(4, tier, seed=tier)]
    save_problems(problems, tmp_path / "p.jsonl")
    search = ["search", "--policy", "bootstrap", "--data", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "s")]
    assert main([*search, "--rollouts", "4", "--candidates", "4"]) == 0  # configs/demo_quick.yaml's round 1
    spec = BaseModelSpec(
        vocab_size=400,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=1024,
        copy_warmup=CopyWarmupConfig(steps=0),
    )
    build_base_model(spec, problems, str(tmp_path / "base"))
    env = {
        **os.environ,
        "RSTAR_NO_PROGRESS": "1",
        "JAX_PLATFORMS": "cpu",
        "MALLOC_ARENA_MAX": "2",
        "RSTAR_JAX_COMPILE_CACHE": "off",
    }
    argv = [
        "train-ppm",
        "--trees",
        str(tmp_path / "s" / "trees.jsonl"),
        "--init",
        str(tmp_path / "base"),
        "--out",
        str(tmp_path / "ppm"),
        "--steps",
        "1",
    ]
    out = subprocess.run(
        [sys.executable, "-c", LIMITED_CLI, *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = json.loads((tmp_path / "ppm" / "summary.json").read_text())
    assert summary["steps"] == 1 and np.isfinite(summary["loss"])
    assert summary["micro_batch"] * summary["micro_steps"] == 512 and summary["micro_batch"] < 512
    mem = summary["memory"]
    assert "RLIMIT_AS" in mem["budget"] and mem["estimate_gb"] <= mem["budget_gb"]
    assert 512 * mem["per_row_gb"] > 8 * 2**30 / 1e9  # the whole batch at once could not fit
