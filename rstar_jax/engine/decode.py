"""The jitted device side of generation: prefill, decode loop, prefix extraction.

Shapes: Bp prompts (prefilled once each), R = Bp x n decode rows, P cached-prefix
slots, T suffix slots, N new-token slots, L layers, V vocab. Every dimension is
a bucket (``buckets.py``), so a shape seen before never recompiles.

The prompts' KV [Bp, P + T] is the decode cache's shared prefix; each row owns
slots for its completion (up to N, grown as needed). They hold every generated
token except the last (a token is fed only when the next one is drawn). A
finished row feeds nothing: its slots stay masked, so its KV is exactly
prompt + completion[:-1].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from rstar_jax.engine.sampling import SamplingMode, row_uniforms, sample
from rstar_jax.models import KVCache, ModelConfig, branch_cache, forward_cached, project
from rstar_jax.shapes import check_shapes


@struct.dataclass
class DecodeState:
    """Carried through the decode loop (donated between calls).

    tokens/logprobs: [R, N] ids drawn and their log-probabilities under the model's
                     unmodified distribution (log_softmax of the logits); 0 after a row ends.
    num:     [R] int32 tokens drawn per row.     max_new: [R] int32 per-row budget.
    done:    [R] bool.
    uniforms: [R, N] the uniform number that draws each token ([R, 0] when greedy).
    step:    [] int32 tokens drawn so far by the batch (the column written next).
    stop_ids: [E] int32 ids that end a row (eos, single-token stop strings; -1 padding).
    """

    cache: KVCache
    tokens: jax.Array
    logprobs: jax.Array
    num: jax.Array
    max_new: jax.Array
    done: jax.Array
    uniforms: jax.Array
    step: jax.Array
    stop_ids: jax.Array
    temperature: jax.Array
    top_p: jax.Array
    top_k: jax.Array


def _emit(state: DecodeState, logits: jax.Array, mode: SamplingMode) -> DecodeState:
    """Draw the next token of every active row from logits [R, V] and record it."""
    active = ~state.done
    u = None if mode.greedy else jax.lax.dynamic_index_in_dim(state.uniforms, state.step, axis=1, keepdims=False)
    tok = sample(logits, u, state.temperature, state.top_p, state.top_k, mode)
    lp = jnp.take_along_axis(logits, tok[:, None], axis=-1)[:, 0] - jax.nn.logsumexp(logits, axis=-1)
    tokens = jax.lax.dynamic_update_slice_in_dim(state.tokens, jnp.where(active, tok, 0)[:, None], state.step, 1)
    logprobs = jax.lax.dynamic_update_slice_in_dim(state.logprobs, jnp.where(active, lp, 0.0)[:, None], state.step, 1)
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


@functools.partial(jax.jit, static_argnames=("n",))
def draw_uniforms(seeds, prompt_index, sample_index, n: int) -> jax.Array:
    """``sampling.row_uniforms`` [R, n] as a program of its own, keyed by (R, n) alone: the
    threefry hash is compiled once per such pair, not into every prefill and decode shape."""
    return row_uniforms(seeds, prompt_index, sample_index, n)


@functools.partial(jax.jit, static_argnames=("config", "mode", "new_cap", "own_cap"))
def prefill(
    config: ModelConfig,
    params,
    prefix_k,
    prefix_v,
    prefix_len,
    tokens,
    mask,
    max_new,
    uniforms,
    stop_ids,
    temperature,
    top_p,
    top_k,
    *,
    mode: SamplingMode,
    new_cap: int,
    own_cap: int,
) -> DecodeState:
    """Prefill Bp left-padded suffixes [Bp, T] after their cached prefixes and draw the first
    token of the R = Bp x n rows (row r continues prompt r // n).

    The prompts' KV becomes the cache's SharedPrefix, read once per prompt by its n rows;
    each row owns ``own_cap`` empty slots (``grow`` adds more as they fill) and room for
    ``new_cap`` tokens. Rows with ``max_new`` 0 (batch padding) start finished.
    uniforms: [R, new_cap] from ``draw_uniforms`` ([R, 0] when greedy).
    """
    dims = check_shapes(
        "prefill",
        tokens=(tokens, "Bp T"),
        mask=(mask, "Bp T"),
        max_new=(max_new, "R"),
        uniforms=(uniforms, "R *"),
        prefix_len=(prefix_len, "Bp"),
        stop_ids=(stop_ids, "S"),
    )
    b, t, r = dims["Bp"], dims["T"], dims["R"]
    if r % b:
        raise ValueError(f"prefill: {r} rows is not a multiple of {b} prompts")
    cache = _prefix_cache(config, prefix_k, prefix_v, prefix_len, b, t)
    h, cache = forward_cached(config, params, tokens, cache, mask)
    logits = jnp.repeat(project(config, params, h[:, -1]), r // b, axis=0)  # left padding: last column real
    cache = branch_cache(config, cache, r, own_cap)
    state = DecodeState(
        cache=cache,
        tokens=jnp.zeros((r, new_cap), jnp.int32),
        logprobs=jnp.zeros((r, new_cap), jnp.float32),
        num=jnp.zeros((r,), jnp.int32),
        max_new=max_new,
        done=max_new <= 0,
        uniforms=uniforms,
        step=jnp.zeros((), jnp.int32),
        stop_ids=stop_ids,
        temperature=jnp.asarray(temperature, jnp.float32),
        top_p=jnp.asarray(top_p, jnp.float32),
        top_k=jnp.asarray(top_k, jnp.int32),
    )
    return _emit(state, logits, mode)


@functools.partial(jax.jit, static_argnames=("capacity",))
def grow(state: DecodeState, capacity: int) -> DecodeState:
    """Give every row ``capacity`` own slots (the new ones empty).

    Decode reads all own slots every step, so they grow with the tokens generated
    instead of being sized for ``max_new_tokens`` up front.
    """
    c = state.cache
    extra = capacity - c.capacity

    def pad(a, axis):
        return jnp.pad(a, [(0, extra if i == axis else 0) for i in range(a.ndim)])

    return state.replace(
        cache=c.replace(k=tuple(pad(k, 3) for k in c.k), v=tuple(pad(v, 2) for v in c.v), mask=pad(c.mask, 1))
    )


@functools.partial(jax.jit, static_argnames=("config", "mode"), donate_argnames=("state",))
def decode(config: ModelConfig, params, state: DecodeState, limit, *, mode: SamplingMode) -> DecodeState:
    """Draw tokens until ``step == limit`` or every row is done (one ``lax.while_loop``);
    the rows need ``limit - 1`` own slots.

    A host loop calls this with limit = step + chunk (early exit and host-side stop
    checks between calls); one call with limit = N runs the whole generation.
    """

    def body(s: DecodeState) -> DecodeState:
        last = jax.lax.dynamic_slice_in_dim(s.tokens, s.step - 1, 1, axis=1)  # [R, 1]
        h, cache = forward_cached(config, params, last, s.cache, attention_mask=~s.done[:, None])
        return _emit(s.replace(cache=cache), project(config, params, h[:, 0]), mode)

    return jax.lax.while_loop(lambda s: (s.step < limit) & ~jnp.all(s.done), body, state)


@jax.jit
def compact(state: DecodeState, prompts, rows) -> DecodeState:
    """The batch cut to prompt slots ``prompts`` [Bp'] and decode rows ``rows`` [R'] (R' = Bp' x n',
    row rows[i] continuing prompt prompts[i // n']).

    Between decode calls the engine drops finished rows and prompts, so the long tail of a
    call decodes a smaller batch instead of waiting in it.
    """
    c, sh = state.cache, state.cache.shared
    shared = sh.replace(k=tuple(k[prompts] for k in sh.k), v=tuple(v[prompts] for v in sh.v), mask=sh.mask[prompts])
    cache = c.replace(
        k=tuple(k[rows] for k in c.k), v=tuple(v[rows] for v in c.v), mask=c.mask[rows], pos=c.pos[rows], shared=shared
    )
    return state.replace(
        cache=cache,
        tokens=state.tokens[rows],
        logprobs=state.logprobs[rows],
        num=state.num[rows],
        max_new=state.max_new[rows],
        done=state.done[rows],
        uniforms=state.uniforms[rows],
    )


@jax.jit
def take_row(a: jax.Array, i) -> jax.Array:
    """a[i] with a traced index: one program per shape (``jnp.unstack`` of M rows compiles an
    M-output program for every M, seconds each on a CPU)."""
    return jax.lax.dynamic_index_in_dim(a, i, keepdims=False)


@functools.partial(jax.jit, static_argnames=("length",))
def extract_prefixes(cache: KVCache, rows, length: int) -> tuple[jax.Array, jax.Array]:
    """The real slots of ``rows`` [M] (their shared prefix, then their own), in order,
    compacted to the front of ``length`` slots.

    Returns k [M, L, Hkv, Dh, length] and v [M, L, Hkv, length, Dh]; slots past a
    row's real tokens hold junk (a Prefix records its own length).
    """
    src = rows // (cache.mask.shape[0] // cache.shared.mask.shape[0])
    mask = jnp.concatenate([cache.shared.mask[src], cache.mask[rows]], axis=1)
    order = jnp.argsort(~mask, axis=1, stable=True)[:, :length]  # real slots first, in slot order

    def gather(shared, own, axis):
        both = jnp.concatenate([shared[src], own[rows]], axis=axis)
        idx = jnp.expand_dims(order, [a for a in (1, 2, 3) if a != axis])
        return jnp.take_along_axis(both, idx, axis=axis)

    k = jnp.stack([gather(sk, ok, 3) for sk, ok in zip(cache.shared.k, cache.k)], axis=1)
    v = jnp.stack([gather(sv, ov, 2) for sv, ov in zip(cache.shared.v, cache.v)], axis=1)
    short = length - order.shape[1]  # the cache may hold fewer slots than the bucket
    return jnp.pad(k, [(0, 0)] * 4 + [(0, short)]), jnp.pad(v, [(0, 0)] * 3 + [(0, short), (0, 0)])
