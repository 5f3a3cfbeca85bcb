"""The decode KV cache: per-row slots, optionally after a read-only prefix shared by groups of rows.

Shapes: B rows, Bp prompts (B = Bp x n), S own slots, P shared prefix slots, Hkv KV heads,
Dh head dim, L layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rstar_jax.models.config import ModelConfig


@struct.dataclass
class SharedPrefix:
    """Read-only KV of Bp prompts continued by the B = Bp x n rows of a cache: row r
    attends to prompt r // n first (n samples read their prompt's KV once, together).

    k: L x [Bp, Hkv, Dh, P], v: L x [Bp, Hkv, P, Dh], mask: [Bp, P] bool
    """

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]
    mask: jax.Array


@struct.dataclass
class KVCache:
    """Fixed-capacity KV cache shared by all rows of a batch.

    k:     L x [B, Hkv, Dh, S]  keys per layer, slots minor (a decode step's
                                scores then reduce along contiguous memory)
    v:     L x [B, Hkv, S, Dh]  values per layer
    mask:  [B, S] bool         slot holds a real (non-pad) token
    pos:   [B] int32           next RoPE position per row (= real tokens so far)
    index: [] int32            next slot to write (same for every row)
    shared: optional SharedPrefix every row sees before its own slots
    """

    k: tuple[jax.Array, ...]  # one array per layer: a stacked [L, ...] array carried
    v: tuple[jax.Array, ...]  # through a decode loop is copied whole by XLA:CPU each step
    mask: jax.Array
    pos: jax.Array
    index: jax.Array
    shared: SharedPrefix | None = None

    @property
    def capacity(self) -> int:
        return self.mask.shape[1]


def init_cache(config: ModelConfig, batch: int, capacity: int) -> KVCache:
    kh, dh, dt = config.num_kv_heads, config.head_dim, jnp.dtype(config.dtype)
    k = tuple(jnp.zeros((batch, kh, dh, capacity), dt) for _ in range(config.num_layers))
    v = tuple(jnp.zeros((batch, kh, capacity, dh), dt) for _ in range(config.num_layers))
    return KVCache(k, v, jnp.zeros((batch, capacity), bool), jnp.zeros((batch,), jnp.int32), jnp.zeros((), jnp.int32))


def branch_cache(config: ModelConfig, prompts: KVCache, rows: int, capacity: int) -> KVCache:
    """A cache of ``rows`` rows with ``capacity`` empty slots each, continuing the Bp prompts of
    ``prompts`` (row r continues prompt r // (rows / Bp)), whose KV they read as a SharedPrefix."""
    n = rows // prompts.mask.shape[0]
    return init_cache(config, rows, capacity).replace(
        pos=jnp.repeat(prompts.pos, n), shared=SharedPrefix(prompts.k, prompts.v, prompts.mask)
    )
