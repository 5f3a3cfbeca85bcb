"""Shared-prefix (cascade) decode attention: jnp reference.

The K sibling candidates of a node share the node's path. Instead of attending to a
copy of that path per row (R small matrix-vector products), the rows of a group read
the shared prefix once, as one [R x P] product, and their own suffixes separately; the
two partial softmaxes are merged exactly through their log-sum-exp:

    o = (exp(lse_p - m) * o_p + exp(lse_s - m) * o_s) / (exp(lse_p - m) + exp(lse_s - m)),
    m = max(lse_p, lse_s).

Shapes (one decode token per row, grouped-query attention with H = Hkv * Gq):
    q         [G, R, H, D]       R rows in each of G groups
    prefix_kv [G, P, Hkv, D] x2, prefix_len [G] int32: valid prefix slots of each group
    suffix_kv [G, R, S, Hkv, D] x2, suffix_len [G, R] int32: valid suffix slots of each row
A row with no valid slot at all (a padding row) gets zeros. Scores and the merge are
float32 whatever the input dtype; the output has q's dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rstar_jax.kernels.checks import check_cascade


def partial_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float
) -> tuple[jax.Array, jax.Array]:
    """Softmax attention over one part of the keys, normalised within that part.

    q [..., Hkv, Gq, D]; k, v [..., S, Hkv, D]; mask [..., S] bool.
    Returns (o [..., Hkv, Gq, D] float32, lse [..., Hkv, Gq] float32); lse is -inf and o
    is 0 where the mask holds no key.
    """
    s = jnp.einsum("...kgd,...skd->...kgs", q, k, preferred_element_type=jnp.float32) * scale
    s = jnp.where(mask[..., None, None, :], s, -jnp.inf)
    m = jnp.max(s, axis=-1, keepdims=True, initial=-jnp.inf)  # no keys at all (S = 0) too
    m = jnp.where(jnp.isfinite(m), m, 0.0)  # an empty part: keep exp() finite
    p = jnp.exp(s - m)
    denom = jnp.sum(p, axis=-1)
    o = jnp.einsum("...kgs,...skd->...kgd", p, v.astype(jnp.float32))
    o = o / jnp.where(denom > 0, denom, 1.0)[..., None]
    return o, jnp.log(denom) + m[..., 0]


def merge_partials(o1: jax.Array, lse1: jax.Array, o2: jax.Array, lse2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exact merge of two partial attentions over disjoint key sets (shapes as returned
    by ``partial_attention``); two empty parts give o = 0, lse = -inf."""
    m = jnp.maximum(lse1, lse2)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    w1, w2 = jnp.exp(lse1 - m), jnp.exp(lse2 - m)
    total = w1 + w2
    o = (w1[..., None] * o1 + w2[..., None] * o2) / jnp.where(total > 0, total, 1.0)[..., None]
    return o, jnp.log(total) + m


def cascade_attention(
    q: jax.Array,
    prefix_k: jax.Array,
    prefix_v: jax.Array,
    prefix_len: jax.Array,
    suffix_k: jax.Array,
    suffix_v: jax.Array,
    suffix_len: jax.Array,
) -> jax.Array:
    """Decode attention of grouped rows over a shared prefix plus per-row suffixes (module
    docstring for shapes). Returns [G, R, H, D] in q's dtype."""
    check_cascade(q, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, suffix_len)
    g, r, h, d = q.shape
    hkv = prefix_k.shape[2]
    scale = d**-0.5
    qg = q.reshape(g, r, hkv, h // hkv, d)
    # prefix: the rows of a group are one query block against the group's keys
    pmask = jnp.arange(prefix_k.shape[1])[None, :] < prefix_len[:, None]  # [G, P]
    qp = qg.transpose(0, 2, 1, 3, 4).reshape(g, hkv, r * (h // hkv), d)
    op, lp = partial_attention(qp, prefix_k, prefix_v, pmask, scale)  # [G, Hkv, R*Gq, D]
    op = op.reshape(g, hkv, r, h // hkv, d).transpose(0, 2, 1, 3, 4)
    lp = lp.reshape(g, hkv, r, h // hkv).transpose(0, 2, 1, 3)
    smask = jnp.arange(suffix_k.shape[2])[None, None, :] < suffix_len[..., None]  # [G, R, S]
    os_, ls = partial_attention(qg, suffix_k, suffix_v, smask, scale)
    o, _ = merge_partials(op, lp, os_, ls)
    return o.reshape(g, r, h, d).astype(q.dtype)
