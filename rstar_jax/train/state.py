"""Train state and optimizer: AdamW (optax) with warmup + linear/cosine decay and clipping."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from rstar_jax.train.config import TrainConfig


@struct.dataclass
class TrainState:
    """step: [] int32 optimizer steps taken (= batches consumed: the data cursor);
    params: float32 master weights; opt_state: optax state; rng: [2] uint32 key data
    (seeds the data order, so a restored run reads the same batches)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    warm = min(cfg.warmup_steps, max(total_steps - 1, 0))
    decay = max(total_steps - warm, 1)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "linear":
        main = optax.linear_schedule(cfg.lr, 0.0, decay)
    else:
        main = optax.cosine_decay_schedule(cfg.lr, decay)
    if not warm:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warm), main], [warm])


def _decay_mask(params):
    """Weight decay on matrices only (kernels, embeddings), not on norms and biases."""
    return jax.tree.map(lambda x: x.ndim >= 2, params)


def optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(
            schedule(cfg, total_steps),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            mask=_decay_mask,
        ),
    )


def init_state(params, tx: optax.GradientTransformation, seed: int) -> TrainState:
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), jax.random.key_data(jax.random.key(seed)))


def cast_floats(tree, dtype):
    """Floating leaves to ``dtype`` (the value head stays float32: the model computes it so)."""

    def cast(path, x):
        keep = any(getattr(k, "key", None) == "value_head" for k in path)
        return x if keep or not jnp.issubdtype(x.dtype, jnp.floating) else x.astype(dtype)

    return jax.tree_util.tree_map_with_path(cast, tree)
