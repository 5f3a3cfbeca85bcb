"""Paged decode attention: the jnp references (boundary checks in ``checks``).

The KV of a search tree lives in fixed-size pages owned by the search; a row's (or a
group's) keys are the pages its page table lists, in order, of which the first ``len``
slots are valid. Page-table entries past ``ceil(len / page)`` are never read (any value,
e.g. -1).

Shapes (one decode token per row, grouped-query attention with H = Hkv * Gq):
    k_pages, v_pages [N, page, Hkv, D]     N pages of ``page`` slots
    paged_attention:         q [B, H, D],    page_table [B, Pmax] int32, lengths [B] int32
    paged_cascade_attention: q [G, R, H, D], prefix_pages [G, Pmax] int32, prefix_len [G] int32,
                             suffix_k, suffix_v [G, R, S, Hkv, D], suffix_len [G, R] int32
    paged_tree_attention:    as paged_cascade_attention, with the suffixes in the pool too:
                             suffix_pages [G, R, Ps] int32, suffix_len [G, R] int32
q, the pages and the suffix share one float dtype (float32, bfloat16 or float16). The
references gather each row's pages into a contiguous copy and run ``tree_attention``'s math.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rstar_jax.kernels.checks import check_paged_attention, check_paged_cascade, check_paged_tree
from rstar_jax.kernels.tree_attention import cascade_attention, partial_attention


def gather_pages(pages: jax.Array, table: jax.Array) -> jax.Array:
    """[N, page, Hkv, D] pages, [B, Pmax] table -> [B, Pmax * page, Hkv, D] contiguous keys.
    Entries out of range (unused slots) are clipped: their keys are masked anyway."""
    got = pages[jnp.clip(table, 0, pages.shape[0] - 1)]  # [B, Pmax, page, Hkv, D]
    return got.reshape(table.shape[0], -1, *pages.shape[2:])


def paged_attention_reference(q, k_pages, v_pages, page_table, lengths) -> jax.Array:
    """Each row attends to its own pages (shapes in the module docstring) -> [B, H, D] in q's
    dtype; a row of length 0 gets zeros."""
    check_paged_attention(q, k_pages, v_pages, page_table, lengths)
    b, h, d = q.shape
    hkv = k_pages.shape[2]
    k, v = gather_pages(k_pages, page_table), gather_pages(v_pages, page_table)
    mask = jnp.arange(k.shape[1])[None, :] < lengths[:, None]
    o, _ = partial_attention(q.reshape(b, hkv, h // hkv, d), k, v, mask, d**-0.5)
    return o.reshape(b, h, d).astype(q.dtype)


def paged_cascade_attention_reference(
    q, k_pages, v_pages, prefix_pages, prefix_len, suffix_k, suffix_v, suffix_len
) -> jax.Array:
    """``cascade_attention`` over each group's gathered prefix pages -> [G, R, H, D]."""
    check_paged_cascade(q, k_pages, v_pages, prefix_pages, prefix_len, suffix_k, suffix_v, suffix_len)
    pk, pv = gather_pages(k_pages, prefix_pages), gather_pages(v_pages, prefix_pages)
    return cascade_attention(q, pk, pv, prefix_len, suffix_k, suffix_v, suffix_len)


def paged_tree_attention_reference(q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len):
    """``paged_cascade_attention_reference`` with each row's gathered suffix pages -> [G, R, H, D]."""
    check_paged_tree(q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len)
    g, r, ps = suffix_pages.shape
    flat = suffix_pages.reshape(g * r, ps)
    sk = gather_pages(k_pages, flat).reshape(g, r, -1, *k_pages.shape[2:])
    sv = gather_pages(v_pages, flat).reshape(g, r, -1, *v_pages.shape[2:])
    return paged_cascade_attention_reference(q, k_pages, v_pages, prefix_pages, prefix_len, sk, sv, suffix_len)
