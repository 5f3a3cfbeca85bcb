"""Tree-attention entry points built from one backend primitive, ``paged_partial``:

    paged_partial(q [B, Hkv, M, D], k_pages, v_pages [N, page, Hkv, D], table [B, Pmax] int32,
                  lengths [B] int32, init None | (o [B, Hkv, M, D] f32, lse [B, Hkv, M] f32),
                  *, interpret) -> (o [B, Hkv, M, D] f32, lse [B, Hkv, M] f32)

(``pallas_gpu.paged_partial_gpu``, ``pallas_tpu.paged_partial_tpu``). Cascade attention is
two calls: the prefix call treats each group as one row whose M = R * Gq queries (all rows
and query heads sharing a KV head) read each prefix page once; the suffix call runs per row
(M = Gq) over the row's suffix and starts from the prefix call's (o, lse), so the exact
log-sum-exp merge happens inside the kernel. A contiguous cache (the non-paged prefix, the
per-row suffix) is viewed as pages of ``block`` slots: a free reshape when its length is a
multiple of ``block``, else one padded copy. With the suffixes also in the page pool
(``paged_tree``) nothing is copied.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

PagedPartial = Callable[..., tuple[jax.Array, jax.Array]]


def key_block(length: int, max_block: int) -> int:
    """Slots per page for viewing a contiguous cache of ``length`` slots as pages: a power of
    two in [16, max_block] (Triton's dot needs >= 16; TPU tiles are multiples of 8/16)."""
    return min(max_block, max(16, 1 << (max(length, 1) - 1).bit_length()))


def contiguous_as_pages(k: jax.Array, v: jax.Array, block: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """k, v [B, S, Hkv, D] -> (k_pages, v_pages [B * n, block, Hkv, D], table [B, n] int32),
    n = ceil(S / block); row b owns pages b * n .. b * n + n - 1."""
    b, s = k.shape[:2]
    n = max(1, -(-s // block))  # at least one (masked) page: a kernel grid never has an empty axis
    if n * block != s:
        pad = ((0, 0), (0, n * block - s), (0, 0), (0, 0))
        k, v = jnp.pad(k, pad), jnp.pad(v, pad)
    table = jnp.arange(b * n, dtype=jnp.int32).reshape(b, n)
    return k.reshape(b * n, block, *k.shape[2:]), v.reshape(b * n, block, *v.shape[2:]), table


def paged_rows(partial: PagedPartial, q, k_pages, v_pages, page_table, lengths, *, interpret) -> jax.Array:
    """Rows with their own page tables: q [B, H, D] -> [B, H, D] in q's dtype."""
    b, h, d = q.shape
    hkv = k_pages.shape[2]
    o, _ = partial(q.reshape(b, hkv, h // hkv, d), k_pages, v_pages, page_table, lengths, None, interpret=interpret)
    return o.reshape(b, h, d).astype(q.dtype)


def two_part(partial: PagedPartial, q, prefix, prefix_len, suffix, suffix_len, *, interpret: bool) -> jax.Array:
    """The cascade on pages: q [G, R, H, D]; prefix = (k_pages, v_pages, table [G, P]) shared by
    each group's rows, prefix_len [G]; suffix = (k_pages, v_pages, table [G * R, Ps]) per row,
    suffix_len [G, R] -> [G, R, H, D] in q's dtype."""
    g, r, h, d = q.shape
    hkv = prefix[0].shape[2]
    gq = h // hkv
    qp = q.reshape(g, r, hkv, gq, d).transpose(0, 2, 1, 3, 4).reshape(g, hkv, r * gq, d)
    op, lp = partial(qp, *prefix, prefix_len, None, interpret=interpret)
    op = op.reshape(g, hkv, r, gq, d).transpose(0, 2, 1, 3, 4).reshape(g * r, hkv, gq, d)
    lp = lp.reshape(g, hkv, r, gq).transpose(0, 2, 1, 3).reshape(g * r, hkv, gq)
    o, _ = partial(q.reshape(g * r, hkv, gq, d), *suffix, suffix_len.reshape(-1), (op, lp), interpret=interpret)
    return o.reshape(g, r, h, d).astype(q.dtype)


def dense_suffix(suffix_k, suffix_v, max_block: int):
    """Per-row suffixes [G, R, S, Hkv, D] as pages with a [G * R, n] table."""
    g, r, s = suffix_k.shape[:3]
    flat = (g * r, s, *suffix_k.shape[3:])
    return contiguous_as_pages(suffix_k.reshape(flat), suffix_v.reshape(flat), key_block(s, max_block))


def paged_cascade(
    partial: PagedPartial, q, k_pages, v_pages, prefix_pages, prefix_len, suffix_k, suffix_v, suffix_len, *,
    max_block: int, interpret: bool,
) -> jax.Array:  # fmt: skip
    """Groups of rows over a paged shared prefix plus dense per-row suffixes (shapes in
    ``paged``'s docstring) -> [G, R, H, D] in q's dtype."""
    suffix = dense_suffix(suffix_k, suffix_v, max_block)
    return two_part(partial, q, (k_pages, v_pages, prefix_pages), prefix_len, suffix, suffix_len, interpret=interpret)


def paged_tree(
    partial: PagedPartial, q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len, *, interpret: bool
) -> jax.Array:
    """Prefix and suffixes both in the page pool: suffix_pages [G, R, Ps] -> [G, R, H, D]."""
    g, r = q.shape[:2]
    suffix = (k_pages, v_pages, suffix_pages.reshape(g * r, -1))
    return two_part(partial, q, (k_pages, v_pages, prefix_pages), prefix_len, suffix, suffix_len, interpret=interpret)


def dense_cascade(
    partial: PagedPartial, q, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, suffix_len, *, max_block, interpret
) -> jax.Array:
    """``tree_attention.cascade_attention``'s contract (contiguous prefix [G, P, Hkv, D])."""
    prefix = contiguous_as_pages(prefix_k, prefix_v, key_block(prefix_k.shape[1], max_block))
    suffix = dense_suffix(suffix_k, suffix_v, max_block)
    return two_part(partial, q, prefix, prefix_len, suffix, suffix_len, interpret=interpret)
