"""Reward models on the policy backbone + a value head: PPM (pairwise), PQM (Q regression), ORM (outcome).

All three train on the same packed prefix groups (``batching.pack_groups``):
each prefix is computed once per row with its candidates branching off it.
PPM uses every pair; PQM the candidates' Q values; ORM only the final-answer
groups (whole trajectories labelled by their outcome). Held-out groups (split
by problem) give the pairwise accuracy.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import numpy as np

from rstar_jax.models import ModelConfig, init_value_head
from rstar_jax.train.batching import RowStream, check_vocab, encode_groups, group_caps, pack_groups
from rstar_jax.train.config import RewardConfig
from rstar_jax.train.examples import PairGroup
from rstar_jax.train.losses import RewardLoss
from rstar_jax.train.trainer import Trainer, data_seed, fingerprint, write_summary

KINDS = ("ppm", "pqm", "orm")


def split_by_problem(
    groups: Sequence[PairGroup], fraction: float, seed: int
) -> tuple[list[PairGroup], list[PairGroup]]:
    """(train, held out): ``fraction`` of the problems (at least one when > 0 and there are two)."""
    ids = sorted({g.problem_id for g in groups})
    n = int(np.ceil(fraction * len(ids))) if fraction > 0 and len(ids) > 1 else 0
    held = set(np.random.default_rng(seed).permutation(ids)[:n].tolist())
    return [g for g in groups if g.problem_id not in held], [g for g in groups if g.problem_id in held]


def train_reward_model(
    groups: Sequence[PairGroup],
    init: tuple[ModelConfig, dict],
    tokenizer,
    out_dir: str,
    cfg: RewardConfig = RewardConfig(),
    kind: str = "ppm",
    ckpt_dir: str | None = None,
    callback=None,
) -> tuple[ModelConfig, dict]:
    """Train a reward model from a policy (a fresh value head) or a reward checkpoint.

    Checkpoints go to ``ckpt_dir`` (default ``out_dir/ckpt``; a rerun resumes);
    metrics and ``summary.json`` (with held-out ``eval.pair_acc``) to ``out_dir``.
    Returns (config with value_head, float32 params on the mesh).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    config, params = init
    check_vocab(tokenizer, config.vocab_size)
    if kind == "orm":
        groups = [g for g in groups if g.kind == "final"]
    if not groups:
        raise ValueError(f"no {'final-answer ' if kind == 'orm' else ''}pair groups to train a {kind} on")
    if not config.value_head:
        config, params = init_value_head(config, params, jax.random.key(cfg.seed))
    train, held = split_by_problem(groups, cfg.eval_fraction, cfg.seed)
    fits = lambda items: [g for g in items if g.length <= cfg.seq_len]  # noqa: E731
    encoded = encode_groups(train, tokenizer)
    items = fits(encoded)
    if not items:
        shortest = min(g.length for g in encoded) if encoded else 0
        raise ValueError(
            f"no prefix group fits seq_len={cfg.seq_len}: the shortest of the {len(encoded)} "
            f"training groups has {shortest} tokens (raise seq_len to at least that)"
        )
    caps = group_caps(items, cfg.seq_len)
    stream = RowStream(
        lambda order: pack_groups(items, order, cfg.seq_len, caps), len(items), cfg.batch_size, data_seed(cfg.seed)
    )
    meta = {
        "kind": kind,
        "groups": len(items),
        "data": fingerprint([g.prefix for g in items] + [c for g in items for c in g.cands]),
    }
    trainer = Trainer(
        RewardLoss(kind, cfg.squash_scale),
        config,
        cfg,
        stream,
        ckpt_dir or os.path.join(out_dir, "ckpt"),
        out_dir,
        meta,
    )
    eval_items = fits(encode_groups(held, tokenizer))
    eval_fn = None
    if eval_items:
        rows = pack_groups(eval_items, range(len(eval_items)), cfg.seq_len, group_caps(eval_items, cfg.seq_len))
        eval_fn = lambda p: trainer.evaluate(p, rows, "pairs")  # noqa: E731
    params, summary = trainer.fit(params, eval_fn, cfg.eval_every, callback, desc=kind)
    summary.update(
        kind=kind,
        train_groups=len(items),
        eval_groups=len(eval_items),
        train_pairs=int(sum(len(g.pairs) for g in items)),
        dropped_too_long=len(encoded) - len(items),
        rows_per_epoch=stream.rows_in_epoch(0),
    )
    write_summary(out_dir, summary)
    return config, params
