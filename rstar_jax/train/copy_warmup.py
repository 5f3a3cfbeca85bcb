"""Copy warm-up of a from-scratch model: random token sequences, each followed by itself.

Stands in for pretraining: it forms the copying (induction) circuit a pretrained base
model already has, so SFT starts from a model that can copy (why: docs/DEMO_LOG.md,
"Why the code is as it is"). The sequences are uniform random tokens of random
length (no fixed offset to exploit), drawn from the non-special vocabulary; nothing
about the domain's problems or solutions is in them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np

from rstar_jax.models import ModelConfig
from rstar_jax.train.batching import EncodedSFT
from rstar_jax.train.config import CopyWarmupConfig
from rstar_jax.train.sft import fit_packed
from rstar_jax.train.trainer import write_summary


def copy_items(cfg: CopyWarmupConfig, token_ids: np.ndarray) -> list[EncodedSFT]:
    """``cfg.items`` sequences ``a + a`` of tokens drawn from ``token_ids``; the loss covers the
    repeat from its second token (its first follows an unmarked boundary and cannot be known)."""
    if len(token_ids) < 2:
        raise ValueError(f"need at least 2 ordinary token ids to copy, got {len(token_ids)}")
    rng, ids = np.random.default_rng(cfg.seed), np.asarray(token_ids, np.int32)
    out = []
    for n in rng.integers(cfg.min_len, cfg.max_len + 1, cfg.items):
        a = rng.choice(ids, n)
        out.append(EncodedSFT(np.concatenate([a, a]), int(n) + 1))
    return out


def copy_warmup(
    init: tuple[ModelConfig, dict], token_ids: np.ndarray, log_dir: str, cfg: CopyWarmupConfig
) -> tuple[ModelConfig, dict]:
    """Train ``init`` on the copy task over ``token_ids`` (the non-special ids); metrics (TensorBoard,
    ``metrics.jsonl``, ``summary.json``) to ``log_dir``; returns (config, float32 params)."""
    meta = {"kind": "copy_warmup", "config": dataclasses.asdict(cfg)}
    # checkpoints inside log_dir (the base unit's partial folder, removed with it after a crash: the
    # base stage is redone whole), not in /tmp where a killed run would leave them
    ckpt = os.path.join(log_dir, "ckpt")
    params, summary = fit_packed(copy_items(cfg, token_ids), init, cfg, ckpt, log_dir, meta, "copy warm-up")
    shutil.rmtree(ckpt, ignore_errors=True)
    write_summary(log_dir, summary)
    return init[0], params
