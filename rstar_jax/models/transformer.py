"""The decoder-only transformer (Qwen2/Llama family) as Flax modules used functionally.

Public functions are pure in ``(config, params, ...)``; Flax only structures the
parameters. Shapes: B batch, T new tokens, S cache slots, D hidden, H query
heads, G = H // Hkv query heads per KV head, Dh head dim, V vocab, L layers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from rstar_jax.models.attention import cached_attend, causal_attend
from rstar_jax.models.config import ModelConfig
from rstar_jax.models.kv_cache import KVCache

Params = dict[str, Any]


def rope_tables(positions: jax.Array, dh: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """HF rotate-half RoPE as ``x * cos + swap_halves(x) * sin``: cos, sin [B, T, 1, Dh].

    Built once per forward and materialised: left to fusion, XLA:CPU recomputes the
    cos/sin of every element inside each layer's q/k fusions."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, dh, 2, dtype=jnp.float32) / dh))
    ang = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, Dh/2]
    cos, sin = jnp.cos(ang), jnp.sin(ang)
    tables = (jnp.concatenate([cos, cos], -1)[:, :, None], jnp.concatenate([-sin, sin], -1)[:, :, None])
    return jax.lax.optimization_barrier(tables)


def rope(x: jax.Array, tables: tuple[jax.Array, jax.Array]) -> jax.Array:
    """x [B, T, N, Dh] rotated by ``rope_tables``."""
    cos, sin = tables
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    return (xf * cos + jnp.concatenate([x2, x1], axis=-1) * sin).astype(x.dtype)


class RMSNorm(nn.Module):
    eps: float
    dtype: Any

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.dtype)
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return scale * xf.astype(self.dtype)


class _Dense(nn.Dense):
    """nn.Dense applied to the input flattened to 2-D. With a [B, T, D] input the kernel
    gradient contracts two dims and XLA:CPU transposes the output gradient (fused into
    its producer, slowly) before the matmul: about 1.4x slower backward."""

    def __call__(self, x):
        y = super().__call__(x.reshape(-1, x.shape[-1]))
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _dense(features, use_bias, dtype, name):
    return _Dense(
        features, use_bias=use_bias, dtype=dtype, param_dtype=dtype, name=name, kernel_init=nn.initializers.normal(0.02)
    )


class Attention(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, rope_cs, kv_mask, cache_kv, write_index):
        """x [B,T,D]; rope_cs from ``rope_tables``; kv_mask [B,T,S] bool (which slots each query sees); cache_kv None
        (no cache: S == T) or this layer's (k [B,Hkv,Dh,S], v [B,Hkv,S,Dh], shared prefix (k, v, mask) or
        None), the new keys/values written at ``write_index``."""
        c, dt = self.config, jnp.dtype(self.config.dtype)
        b, t, _ = x.shape
        q = _dense(c.num_heads * c.head_dim, c.attention_bias, dt, "q_proj")(x)
        k = _dense(c.num_kv_heads * c.head_dim, c.attention_bias, dt, "k_proj")(x)
        v = _dense(c.num_kv_heads * c.head_dim, c.attention_bias, dt, "v_proj")(x)
        q = rope(q.reshape(b, t, c.num_heads, c.head_dim), rope_cs)
        k = rope(k.reshape(b, t, c.num_kv_heads, c.head_dim), rope_cs)
        v = v.reshape(b, t, c.num_kv_heads, c.head_dim)
        g = c.num_heads // c.num_kv_heads
        q = q.reshape(b, t, c.num_kv_heads, g, c.head_dim)
        scale = c.head_dim**-0.5
        if cache_kv is None:
            return _dense(c.hidden_size, False, dt, "o_proj")(
                causal_attend(q, k, v, kv_mask, scale, dt).reshape(b, t, c.num_heads * c.head_dim)
            ), None
        # write this block into the cache, then attend over the shared prefix and every slot
        new_kv = (
            jax.lax.dynamic_update_slice(
                cache_kv[0], k.transpose(0, 2, 3, 1).astype(cache_kv[0].dtype), (0, 0, 0, write_index)
            ),
            jax.lax.dynamic_update_slice(
                cache_kv[1], v.transpose(0, 2, 1, 3).astype(cache_kv[1].dtype), (0, 0, write_index, 0)
            ),
        )
        # the T queries of a KV head as one axis: with a separate T=1 axis XLA:CPU's decode
        # step ran 2x slower (the batched dots of a [B,Hkv] grid got strided operands)
        q = q.transpose(0, 2, 1, 3, 4).reshape(b, c.num_kv_heads, t * g, c.head_dim)
        o = cached_attend(q, new_kv, cache_kv[2], kv_mask, scale, dt)
        o = o.reshape(b, c.num_kv_heads, t, g, c.head_dim).transpose(0, 2, 1, 3, 4).reshape(b, t, -1)
        return _dense(c.hidden_size, False, dt, "o_proj")(o), new_kv


class MLP(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x):
        c, dt = self.config, jnp.dtype(self.config.dtype)
        gate = _dense(c.intermediate_size, False, dt, "gate_proj")(x)
        up = _dense(c.intermediate_size, False, dt, "up_proj")(x)
        return _dense(c.hidden_size, False, dt, "down_proj")(nn.silu(gate) * up)


class Block(nn.Module):
    config: ModelConfig

    @nn.compact
    def __call__(self, x, rope_cs, kv_mask, cache_kv, write_index):
        c, dt = self.config, jnp.dtype(self.config.dtype)
        h, new_kv = Attention(c, name="attn")(
            RMSNorm(c.rms_norm_eps, dt, name="input_norm")(x), rope_cs, kv_mask, cache_kv, write_index
        )
        x = x + h
        return x + MLP(c, name="mlp")(RMSNorm(c.rms_norm_eps, dt, name="post_norm")(x)), new_kv


class Transformer(nn.Module):
    """Returns final-normed hidden states [B,T,D] and the updated per-layer cache (k, v) or None."""

    config: ModelConfig

    def setup(self):
        c, dt = self.config, jnp.dtype(self.config.dtype)
        self.embed = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=dt, param_dtype=dt, embedding_init=nn.initializers.normal(0.02)
        )
        self.layers = [Block(c, name=f"layers_{i}") for i in range(c.num_layers)]
        self.final_norm = RMSNorm(c.rms_norm_eps, dt)
        if not c.tie_word_embeddings:
            self.lm_head = _dense(c.vocab_size, False, dt, "lm_head")
        if c.value_head:
            self.value_head = nn.Dense(
                1,
                dtype=jnp.float32,
                param_dtype=jnp.float32,
                kernel_init=nn.initializers.normal(0.02),
                name="value_head",
            )

    def __call__(self, input_ids, positions, kv_mask, cache_kv, write_index):
        x = self.embed(input_ids)
        rope_cs = rope_tables(positions, self.config.head_dim, self.config.rope_theta)
        new_kv = []
        for i, layer in enumerate(self.layers):
            layer_kv = None
            if cache_kv is not None:
                shared = cache_kv[2]
                layer_kv = (
                    cache_kv[0][i],
                    cache_kv[1][i],
                    None if shared is None else (shared.k[i], shared.v[i], shared.mask),
                )
            x, kv = layer(x, rope_cs, kv_mask, layer_kv, write_index)
            new_kv.append(kv)
        if cache_kv is not None:
            cache_kv = (tuple(k for k, _ in new_kv), tuple(v for _, v in new_kv))
        return self.final_norm(x), cache_kv

    def project(self, h):
        if self.config.tie_word_embeddings:
            return self.embed.attend(h)
        return self.lm_head(h)

    def score(self, h):
        return self.value_head(h.astype(jnp.float32))[..., 0]


def init_params(config: ModelConfig, rng: jax.Array) -> Params:
    """Random parameters (normal(0.02) weights, unit norms), float32 value head if enabled."""
    model = Transformer(config)
    ids = jnp.zeros((1, 1), jnp.int32)
    variables = model.init(rng, ids, ids, jnp.ones((1, 1, 1), bool), None, 0)
    params = dict(variables["params"])
    # init() only traces __call__, so heads used by other methods are created here.
    d = config.hidden_size
    keys = jax.random.split(jax.random.fold_in(rng, 1), 2)
    dt = jnp.dtype(config.dtype)
    if not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": (0.02 * jax.random.normal(keys[0], (d, config.vocab_size))).astype(dt)}
    if config.value_head:
        params["value_head"] = {
            "kernel": 0.02 * jax.random.normal(keys[1], (d, 1), jnp.float32),
            "bias": jnp.zeros((1,), jnp.float32),
        }
    return params


def default_positions(attention_mask: jax.Array) -> jax.Array:
    """Position ids that skip left padding: cumsum(mask) - 1, clipped at 0. [B,T] int32."""
    return jnp.maximum(jnp.cumsum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)


def _full_mask(attention_mask: jax.Array) -> jax.Array:
    t = attention_mask.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))
    return causal[None] & attention_mask.astype(bool)[:, None, :]


def hidden_states(
    config: ModelConfig,
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array | None = None,
    positions: jax.Array | None = None,
    attn_mask: jax.Array | None = None,
) -> jax.Array:
    """Full (no-cache) forward: final-normed hidden states [B, T, D].

    ``attn_mask`` [B, T, T] bool (query, key) replaces the causal + padding mask, e.g. a
    block-diagonal mask for packed sequences; it must be causal (no key after its query).
    """
    if attention_mask is None:
        attention_mask = jnp.ones(input_ids.shape, jnp.int32)
    if positions is None:
        positions = default_positions(attention_mask)
    if attn_mask is None:
        attn_mask = _full_mask(attention_mask)
    h, _ = Transformer(config).apply({"params": params}, input_ids, positions, attn_mask, None, 0)
    return h


def project(config: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
    """LM head: hidden [..., D] -> logits [..., V] (float32)."""
    return Transformer(config).apply({"params": params}, h, method=Transformer.project).astype(jnp.float32)


def logits(
    config: ModelConfig,
    params: Params,
    input_ids: jax.Array,
    attention_mask: jax.Array | None = None,
    positions: jax.Array | None = None,
) -> jax.Array:
    """Full forward: logits [B, T, V] float32. Left padding is handled by the mask."""
    return project(config, params, hidden_states(config, params, input_ids, attention_mask, positions))


def last_token_index(attention_mask: jax.Array) -> jax.Array:
    """Index of the last non-pad token per row [B] (works for left and right padding)."""
    t = attention_mask.shape[1]
    return jnp.max(jnp.where(attention_mask.astype(bool), jnp.arange(t), 0), axis=1)


def ppm_scores(
    config: ModelConfig, params: Params, input_ids: jax.Array, attention_mask: jax.Array | None = None
) -> jax.Array:
    """PPM raw scores [B] float32: the value head on the last non-pad token's hidden state."""
    if "value_head" not in params:
        raise ValueError("params have no value_head: build a PPM with rstar_jax.models.init_value_head")
    if attention_mask is None:
        attention_mask = jnp.ones(input_ids.shape, jnp.int32)
    h = hidden_states(config.replace(value_head=True), params, input_ids, attention_mask)
    return value_head(
        config, params, jnp.take_along_axis(h, last_token_index(attention_mask)[:, None, None], axis=1)[:, 0]
    )


def value_head(config: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
    """The PPM's scalar head on hidden states [..., D] -> [...] float32."""
    return Transformer(config.replace(value_head=True)).apply({"params": params}, h, method=Transformer.score)


def init_value_head(config: ModelConfig, params: Params, rng: jax.Array) -> tuple[ModelConfig, Params]:
    """Turn a policy into a PPM: same backbone, a fresh float32 linear value head."""
    new = dict(params)
    new["value_head"] = {
        "kernel": 0.02 * jax.random.normal(rng, (config.hidden_size, 1), jnp.float32),
        "bias": jnp.zeros((1,), jnp.float32),
    }
    return config.replace(value_head=True), new


def forward_cached(
    config: ModelConfig, params: Params, input_ids: jax.Array, cache: KVCache, attention_mask: jax.Array | None = None
) -> tuple[jax.Array, KVCache]:
    """Append T tokens to the cache and return their hidden states [B, T, D].

    Prefill is this with the whole (left-padded) prompt; decode is this with T=1.
    A query at slot ``index + i`` sees slots ``<= index + i`` that hold real tokens
    (after the real slots of its shared prefix, if the cache has one).
    """
    b, t = input_ids.shape
    if attention_mask is None:
        attention_mask = jnp.ones((b, t), bool)
    attention_mask = attention_mask.astype(bool)
    positions = cache.pos[:, None] + default_positions(attention_mask)
    slots = cache.index + jnp.arange(t)
    new_mask = jax.lax.dynamic_update_slice_in_dim(cache.mask, attention_mask, cache.index, axis=1)
    causal = jnp.arange(cache.capacity)[None, :] <= slots[:, None]  # [T, S]
    kv_mask = causal[None] & new_mask[:, None, :]
    h, (k, v) = Transformer(config).apply(
        {"params": params}, input_ids, positions, kv_mask, (cache.k, cache.v, cache.shared), cache.index
    )
    return h, KVCache(
        k, v, new_mask, cache.pos + attention_mask.sum(1).astype(jnp.int32), cache.index + t, cache.shared
    )
