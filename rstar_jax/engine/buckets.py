"""Fixed shape buckets, so calls of similar size reuse one compiled program.

Every jitted engine function sees padded shapes: the batch, the prompt (or
suffix) length, the cached-prefix length and the new-token budget are each
rounded up to the next bucket. The default ladder is powers of two with the
1.5x steps in between (1, 2, 3, 4, 6, 8, 12, 16, 24, ...): at most a third of
any padded dimension is waste, and a dimension up to 4096 has ~20 buckets.
``rows_that_fit`` bounds the row dimension by device memory.
``Buckets.coarse()`` (powers of two only) halves the buckets per dimension for
workloads whose shapes change every call, like tree search, where compiling a
new combination costs more than the padding it saves.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from rstar_jax.models import ModelConfig


def ladder(lo: int, hi: int, midpoints: bool = True) -> tuple[int, ...]:
    """Powers of two (and their 1.5x midpoints) in [lo, hi], plus ``hi`` itself."""
    sizes, p = set(), 1
    while p <= hi:
        sizes.update(s for s in ((p, p + p // 2) if midpoints else (p,)) if lo <= s <= hi)
        p *= 2
    sizes.add(hi)
    return tuple(sorted(sizes))


def pick(n: int, sizes: tuple[int, ...], what: str) -> int:
    """The smallest bucket >= n (n = 0 gives 0: an absent dimension stays absent)."""
    if n == 0:
        return 0
    for s in sizes:
        if s >= n:
            return s
    raise ValueError(f"{what} {n} exceeds the largest bucket {sizes[-1]}")


@dataclasses.dataclass(frozen=True)
class Buckets:
    """Bucket sizes per dimension. ``length`` serves prompt, prefix and new-token lengths."""

    batch: tuple[int, ...] = ladder(1, 1024)
    length: tuple[int, ...] = ladder(8, 32768)

    @classmethod
    def coarse(cls, min_rows: int = 1, min_length: int = 16) -> "Buckets":
        """Powers of two only, from ``min_rows`` rows and ``min_length`` tokens."""
        return cls(ladder(min_rows, 1024, midpoints=False), ladder(min_length, 32768, midpoints=False))

    def up_to(self, n: int) -> "Buckets":
        """These buckets with no length past ``n`` (``n`` the last): where no sequence is longer,
        a larger bucket (1024 for a 768-token model) would only add padding."""
        return dataclasses.replace(self, length=tuple(s for s in self.length if s < n) + (n,))

    def rows(self, n: int) -> int:
        return pick(n, self.batch, "batch size")

    def tokens(self, n: int, what: str = "length") -> int:
        return pick(n, self.length, what)


def row_bytes(config: ModelConfig, max_len: int) -> int:
    """Device bytes one decode row can hold: its KV for ``max_len`` tokens of own slots plus as many
    of a shared prefix (an upper bound: a prefix is shared by its prompt's rows), and float32 logits
    with the sampler's working copies."""
    kv_per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim * jnp.dtype(config.dtype).itemsize
    return 2 * kv_per_token * max_len + 3 * 4 * config.vocab_size


def rows_that_fit(config: ModelConfig, max_len: int, budget: int) -> int:
    """Decode rows whose ``row_bytes`` fit ``budget`` beside the parameters (0 if none)."""
    room = budget - config.num_params() * jnp.dtype(config.dtype).itemsize
    return max(room // row_bytes(config, max_len), 0)
