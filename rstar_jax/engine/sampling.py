"""Token sampling: per-row PRNG keys, temperature, top-k, top-p (all jit-friendly).

Randomness of a row depends only on its own key and the index of the token
being drawn, never on the other rows of the batch: a row's key is derived from
(seed, prompt index, sample index) and its t-th token uses one uniform number
from ``fold_in(row_key, t)``. The uniforms of all a row's tokens are drawn at
once before decoding (``row_uniforms``, a program of its own in ``decode.py``):
the threefry hash is compiled once per (rows, tokens) pair instead of into every
prefill and decode shape (~0.4 s of XLA compiling each on a CPU).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingMode:
    """The static (compile-time) part of sampling; the values themselves are traced.

    greedy:   temperature == 0, argmax (deterministic, no randomness drawn).
    truncate: top_k > 0 or top_p < 1; needs a sort of the vocabulary, so it is
              compiled in only when asked for.
    """

    greedy: bool = False
    truncate: bool = False

    @classmethod
    def of(cls, temperature: float, top_p: float, top_k: int) -> "SamplingMode":
        return cls(greedy=temperature == 0.0, truncate=temperature > 0.0 and (top_k > 0 or top_p < 1.0))


def row_keys(seeds: jax.Array, prompt_index: jax.Array, sample_index: jax.Array) -> jax.Array:
    """Typed PRNG keys [R] from uint32 seeds, prompt and sample indices [R]."""

    def one(s, i, j):
        return jax.random.fold_in(jax.random.fold_in(jax.random.key(s), i), j)

    return jax.vmap(one)(seeds, prompt_index, sample_index)


def row_uniforms(seeds: jax.Array, prompt_index: jax.Array, sample_index: jax.Array, n: int) -> jax.Array:
    """[R, n] float32 in (0, 1): column t is the uniform number that draws a row's t-th token."""
    tiny = jnp.finfo(jnp.float32).tiny
    keys = row_keys(seeds, prompt_index, sample_index)
    steps = jnp.arange(n, dtype=jnp.int32)

    def draws(k):
        return jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(k, t), minval=tiny))(steps)

    return jax.vmap(draws)(keys)


def truncate_logits(logits: jax.Array, top_p: jax.Array, top_k: jax.Array) -> jax.Array:
    """Mask (to -inf) tokens outside top-k and outside the top-p nucleus. logits [R, V].

    top_k <= 0 keeps all; the nucleus is the smallest prefix of tokens sorted by
    probability whose mass reaches top_p (the most likely token always stays).
    Tokens tied with the last kept logit are kept too.
    """
    v = logits.shape[-1]
    desc = -jnp.sort(-logits, axis=-1)  # [R, V] descending
    probs = jax.nn.softmax(desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    rank = jnp.arange(v)
    k = jnp.where(top_k > 0, top_k, v)
    keep = (rank < k) & ((mass_before < top_p) | (rank == 0))
    threshold = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def inverse_cdf(weights: jax.Array, u: jax.Array, block: int = 128) -> jax.Array:
    """Per row, the first index whose running sum of ``weights`` [R, V] (>= 0, unnormalised)
    reaches ``u`` [R] in (0, 1) times the total: a draw from weights / total.

    Two levels (sums of ``block``-token blocks, then one block) keep the prefix sums
    short: XLA:CPU's cumsum over a long axis is a log-depth scan. A zero-weight token
    is never drawn.
    """
    r, v = weights.shape
    blocks = jnp.pad(weights, ((0, 0), (0, -v % block))).reshape(r, -1, block)  # [R, NB, block]
    sums = blocks.sum(-1)
    ends = jnp.cumsum(sums, axis=-1)
    target = u * ends[:, -1]
    b = jnp.minimum(jnp.sum(ends < target[:, None], axis=-1), sums.shape[1] - 1)
    inner = jnp.take_along_axis(blocks, b[:, None, None], axis=1)[:, 0]  # [R, block]
    rest = target - (jnp.take_along_axis(ends, b[:, None], -1) - jnp.take_along_axis(sums, b[:, None], -1))[:, 0]
    j = jnp.sum(jnp.cumsum(inner, axis=-1) < rest[:, None], axis=-1)
    last = block - 1 - jnp.argmax(inner[:, ::-1] > 0, axis=-1)  # rounding may overshoot the block
    return (b * block + jnp.minimum(j, last)).astype(jnp.int32)


def sample(
    logits: jax.Array, u: jax.Array, temperature: jax.Array, top_p: jax.Array, top_k: jax.Array, mode: SamplingMode
) -> jax.Array:
    """Draw one token per row. logits [R, V] float32, u [R] uniforms in (0, 1) -> [R] int32."""
    if mode.greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    x = logits / temperature
    if mode.truncate:
        x = truncate_logits(x, top_p, top_k)
    # inverse-CDF sampling: one uniform per row (Gumbel-max needs V and cost 10x more here)
    return inverse_cdf(jnp.exp(x - jnp.max(x, axis=-1, keepdims=True)), u)
