"""The jitted device side of generation: prefill, decode loop, prefix extraction.

Shapes: Bp unique prompts (prefilled once), R decode rows (Bp prompts x n
samples, padded), P cached-prefix slots, T suffix slots, N new-token slots,
S = P + T + N cache slots, L layers, V vocab. Every dimension is a bucket
(``buckets.py``), so a shape seen before never recompiles.

A row's cache holds its prompt and every generated token except the last (a
token is fed only when the next one is drawn). A finished row feeds nothing:
its slots stay masked, so its cache is exactly prompt + completion[:-1].
"""
from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
from flax import struct

from rstar_jax.engine.sampling import SamplingMode, row_keys, sample
from rstar_jax.models import KVCache, ModelConfig, forward_cached, project

# Python-side trace counts per function: a retrace means a new compilation.
TRACES: collections.Counter = collections.Counter()


@struct.dataclass
class DecodeState:
    """Carried through the decode loop (donated between calls).

    tokens/logprobs: [R, N] ids drawn and their log-probabilities under the model's
                     unmodified distribution (log_softmax of the logits); 0 after a row ends.
    num:     [R] int32 tokens drawn per row.     max_new: [R] int32 per-row budget.
    done:    [R] bool.                          keys:    [R] PRNG keys.
    step:    [] int32 tokens drawn so far by the batch (the column written next).
    stop_ids: [E] int32 ids that end a row (eos, single-token stop strings; -1 padding).
    """

    cache: KVCache
    tokens: jax.Array
    logprobs: jax.Array
    num: jax.Array
    max_new: jax.Array
    done: jax.Array
    keys: jax.Array
    step: jax.Array
    stop_ids: jax.Array
    temperature: jax.Array
    top_p: jax.Array
    top_k: jax.Array


def _emit(state: DecodeState, logits: jax.Array, mode: SamplingMode) -> DecodeState:
    """Draw the next token of every active row from logits [R, V] and record it."""
    active = ~state.done
    tok = sample(logits, state.keys, jnp.broadcast_to(state.step, state.num.shape), state.temperature,
                 state.top_p, state.top_k, mode)
    lp = jnp.take_along_axis(logits, tok[:, None], axis=-1)[:, 0] - jax.nn.logsumexp(logits, axis=-1)
    tokens = jax.lax.dynamic_update_slice_in_dim(state.tokens, jnp.where(active, tok, 0)[:, None], state.step, 1)
    logprobs = jax.lax.dynamic_update_slice_in_dim(state.logprobs, jnp.where(active, lp, 0.0)[:, None],
                                                   state.step, 1)
    num = state.num + active
    hit = jnp.any(tok[:, None] == state.stop_ids[None, :], axis=-1)
    done = state.done | (active & hit) | (num >= state.max_new)
    return state.replace(tokens=tokens, logprobs=logprobs, num=num, done=done, step=state.step + 1)


def _prefix_cache(config: ModelConfig, prefix_k, prefix_v, prefix_len, b: int, t: int) -> KVCache:
    """A Bp-row cache of P prefix slots (first ``prefix_len`` real) + T empty slots.

    prefix_k [Bp, L, Hkv, Dh, P] and prefix_v [Bp, L, Hkv, P, Dh], or None (P = 0).
    """
    kh, dh, dt = config.num_kv_heads, config.head_dim, jnp.dtype(config.dtype)
    p = 0 if prefix_k is None else prefix_k.shape[-1]
    zk, zv = jnp.zeros((b, kh, dh, t), dt), jnp.zeros((b, kh, t, dh), dt)
    if prefix_k is None:
        ks, vs = (zk,) * config.num_layers, (zv,) * config.num_layers
        mask = jnp.zeros((b, t), bool)
    else:
        ks = tuple(jnp.concatenate([prefix_k[:, i], zk], axis=-1) for i in range(config.num_layers))
        vs = tuple(jnp.concatenate([prefix_v[:, i], zv], axis=-2) for i in range(config.num_layers))
        mask = jnp.concatenate([jnp.arange(p)[None] < prefix_len[:, None], jnp.zeros((b, t), bool)], axis=1)
    return KVCache(ks, vs, mask, prefix_len.astype(jnp.int32), jnp.asarray(p, jnp.int32))


@functools.partial(jax.jit, static_argnames=("config", "mode", "new_cap"))
def prefill(config: ModelConfig, params, prefix_k, prefix_v, prefix_len, tokens, mask, src, max_new,
            seeds, prompt_index, sample_index, stop_ids, temperature, top_p, top_k, *,
            mode: SamplingMode, new_cap: int) -> DecodeState:
    """Prefill Bp left-padded suffixes [Bp, T] after their cached prefixes, broadcast each
    prompt's KV and last logits to its rows (``src`` [R] -> prompt), draw the first tokens.

    Rows with ``max_new`` 0 (batch padding) start finished.
    """
    TRACES["prefill"] += 1
    b, t = tokens.shape
    cache = _prefix_cache(config, prefix_k, prefix_v, prefix_len, b, t)
    h, cache = forward_cached(config, params, tokens, cache, mask)
    logits = project(config, params, h[:, -1])[src]  # left padding: the last column is real

    def grow(a, axis):  # take the rows, add N empty slots
        pad = [(0, 0)] * a.ndim
        pad[axis] = (0, new_cap)
        return jnp.pad(a[src], pad)

    cache = KVCache(tuple(grow(k, 3) for k in cache.k), tuple(grow(v, 2) for v in cache.v),
                    grow(cache.mask, 1), cache.pos[src], cache.index)
    r = src.shape[0]
    state = DecodeState(
        cache=cache, tokens=jnp.zeros((r, new_cap), jnp.int32), logprobs=jnp.zeros((r, new_cap), jnp.float32),
        num=jnp.zeros((r,), jnp.int32), max_new=max_new, done=max_new <= 0,
        keys=row_keys(seeds, prompt_index, sample_index), step=jnp.zeros((), jnp.int32), stop_ids=stop_ids,
        temperature=jnp.asarray(temperature, jnp.float32), top_p=jnp.asarray(top_p, jnp.float32),
        top_k=jnp.asarray(top_k, jnp.int32))
    return _emit(state, logits, mode)


@functools.partial(jax.jit, static_argnames=("config", "mode"), donate_argnames=("state",))
def decode(config: ModelConfig, params, state: DecodeState, limit, *, mode: SamplingMode) -> DecodeState:
    """Draw tokens until ``step == limit`` or every row is done (one ``lax.while_loop``).

    A host loop calls this with limit = step + chunk (early exit and host-side stop
    checks between calls); one call with limit = N runs the whole generation.
    """
    TRACES["decode"] += 1

    def body(s: DecodeState) -> DecodeState:
        last = jax.lax.dynamic_slice_in_dim(s.tokens, s.step - 1, 1, axis=1)  # [R, 1]
        h, cache = forward_cached(config, params, last, s.cache, attention_mask=~s.done[:, None])
        return _emit(s.replace(cache=cache), project(config, params, h[:, 0]), mode)

    return jax.lax.while_loop(lambda s: (s.step < limit) & ~jnp.all(s.done), body, state)


@functools.partial(jax.jit, static_argnames=("length",))
def extract_prefixes(cache: KVCache, rows, length: int) -> tuple[jax.Array, jax.Array]:
    """The real slots of ``rows`` [M], in order, compacted to the front of ``length`` slots.

    Returns k [M, L, Hkv, Dh, length] and v [M, L, Hkv, length, Dh]; slots past a
    row's real tokens hold junk (a Prefix records its own length).
    """
    TRACES["extract"] += 1
    mask = cache.mask[rows]
    order = jnp.argsort(~mask, axis=1, stable=True)[:, :length]  # real slots first, in slot order
    k = jnp.stack([jnp.take_along_axis(k[rows], order[:, None, None, :], axis=3) for k in cache.k], axis=1)
    v = jnp.stack([jnp.take_along_axis(v[rows], order[:, None, :, None], axis=2) for v in cache.v], axis=1)
    short = length - order.shape[1]  # the cache may hold fewer slots than the bucket
    return jnp.pad(k, [(0, 0)] * 4 + [(0, short)]), jnp.pad(v, [(0, 0)] * 3 + [(0, short), (0, 0)])
