"""Attention cores of the transformer: blocked causal self-attention (training, scoring) and
cached attention over a KV cache with an optional shared prefix (generation).

Shapes: B rows, T queries, S key slots, Hkv KV heads, G query heads per KV head, Dh head dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ATTN_BLOCK = 64  # query rows per block of the no-cache (training/scoring) attention


def softmax_attend(q, k, v, kv_mask, scale, dt):
    """q [B,T,Hkv,G,Dh], k/v [B,S,Hkv,Dh], kv_mask [B,T,S] -> [B,T,Hkv,G,Dh]."""
    s = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    s = jnp.where(kv_mask[:, None, None], s, jnp.finfo(jnp.float32).min)
    return jnp.einsum("bkgts,bskd->btkgd", jax.nn.softmax(s, axis=-1).astype(dt), v)


def causal_attend(q, k, v, kv_mask, scale, dt):
    """Self-attention under a causal mask (every no-cache mask is one): query block
    [i, i + ATTN_BLOCK) only reads keys [0, i + ATTN_BLOCK), skipping the masked upper
    triangle: about 0.6x the attention FLOPs at T=256."""
    t = q.shape[1]
    if t <= ATTN_BLOCK:
        return softmax_attend(q, k, v, kv_mask, scale, dt)
    outs = []
    for i in range(0, t, ATTN_BLOCK):
        j = min(i + ATTN_BLOCK, t)
        outs.append(softmax_attend(q[:, i:j], k[:, :j], v[:, :j], kv_mask[:, i:j, :j], scale, dt))
    return jnp.concatenate(outs, axis=1)


def cached_attend(q, kv, shared, kv_mask, scale, dt):
    """q [B,Hkv,T*G,Dh]; kv = (k [B,Hkv,Dh,S], v [B,Hkv,S,Dh]); shared None or
    (k [Bp,Hkv,Dh,P], v [Bp,Hkv,P,Dh], mask [Bp,P]); kv_mask [B,T,S] -> [B,Hkv,T*G,Dh]."""
    b, kh, tg, dh = q.shape
    neg = jnp.finfo(jnp.float32).min
    s = jnp.einsum("bkqd,bkds->bkqs", q, kv[0], preferred_element_type=jnp.float32) * scale
    t = kv_mask.shape[1]
    s = jnp.where(kv_mask[:, None, :, None], s.reshape(b, kh, t, tg // t, -1), neg).reshape(b, kh, tg, -1)
    if shared is None:
        return jnp.einsum("bkqs,bksd->bkqd", jax.nn.softmax(s, axis=-1).astype(dt), kv[1])
    sk, sv, smask = shared
    bp, p = sk.shape[0], sk.shape[-1]
    n = b // bp

    def group(x):  # [B,Hkv,TG,X] <-> [Bp,Hkv,n*TG,X]: the n rows of a prompt as one query block
        return x.reshape(bp, n, kh, tg, -1).transpose(0, 2, 1, 3, 4).reshape(bp, kh, n * tg, -1)

    def ungroup(x):
        return x.reshape(bp, kh, n, tg, -1).transpose(0, 2, 1, 3, 4).reshape(b, kh, tg, -1)

    ss = jnp.einsum("bkqd,bkds->bkqs", group(q), sk, preferred_element_type=jnp.float32) * scale
    ss = ungroup(jnp.where(smask[:, None, None, :], ss, neg))
    pr = jax.nn.softmax(jnp.concatenate([ss, s], axis=-1), axis=-1).astype(dt)
    shared_o = jnp.einsum("bkqs,bksd->bkqd", group(pr[..., :p]), sv)
    return ungroup(shared_o) + jnp.einsum("bkqs,bksd->bkqd", pr[..., p:], kv[1])
