"""Shape and dtype checks at the tree-attention boundary: each raises a ValueError naming
the arrays, their shapes and dtypes, and what was expected (shapes in ``tree_attention`` and
``paged``). These are programming errors of the caller, not user input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

FLOATS = (jnp.float32, jnp.bfloat16, jnp.float16)


def _fail(what: str, arrays: dict) -> None:
    shapes = ", ".join(f"{k} {tuple(v.shape)} {jnp.dtype(v.dtype).name}" for k, v in arrays.items())
    raise ValueError(f"{what}: {shapes}")


def check_floats(**arrays) -> None:
    """All arrays share one of the supported float dtypes."""
    dtypes = {jnp.dtype(a.dtype) for a in arrays.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in {jnp.dtype(f) for f in FLOATS}:
        _fail("q, keys and values must share one dtype of float32, bfloat16, float16", arrays)


def check_ints(**arrays) -> None:
    """Integer page tables and lengths; a page table has at least one column."""
    for name, a in arrays.items():
        if not jnp.issubdtype(a.dtype, jnp.integer):
            _fail("page tables and lengths must be integer arrays", arrays)
        if name.endswith("pages") or name.endswith("table"):
            if a.shape[-1] < 1:
                _fail("a page table needs at least one column (entries past the length are never read)", arrays)


def check_pages(q_heads: int, head_dim: int, k_pages: jax.Array, v_pages: jax.Array) -> None:
    """k_pages, v_pages [N, page, Hkv, D] with Hkv dividing q's H and D equal to q's."""
    if k_pages.ndim != 4 or k_pages.shape != v_pages.shape:
        _fail("k_pages and v_pages must both be [N, page, Hkv, D]", {"k_pages": k_pages, "v_pages": v_pages})
    if q_heads % k_pages.shape[2] or k_pages.shape[3] != head_dim:
        _fail(f"pages must have KV heads dividing q's {q_heads} heads and head dim {head_dim}", {"k_pages": k_pages})


def check_paged_attention(q, k_pages, v_pages, page_table, lengths) -> None:
    if q.ndim != 3 or page_table.ndim != 2 or lengths.shape != (q.shape[0],) or page_table.shape[0] != q.shape[0]:
        _fail(
            "paged_attention wants q [B, H, D], page_table [B, Pmax], lengths [B]",
            {"q": q, "page_table": page_table, "lengths": lengths},
        )
    check_pages(q.shape[1], q.shape[2], k_pages, v_pages)
    check_floats(q=q, k_pages=k_pages, v_pages=v_pages)
    check_ints(page_table=page_table, lengths=lengths)


def check_paged_cascade(q, k_pages, v_pages, prefix_pages, prefix_len, suffix_k, suffix_v, suffix_len) -> None:
    g, r = q.shape[:2] if q.ndim == 4 else (None, None)
    hkv, d = k_pages.shape[2:] if k_pages.ndim == 4 else (None, None)
    if (
        q.ndim != 4
        or prefix_pages.ndim != 2
        or prefix_pages.shape[0] != g
        or prefix_len.shape != (g,)
        or suffix_k.shape != suffix_v.shape
        or suffix_k.ndim != 5
        or suffix_k.shape[:2] != (g, r)
        or suffix_k.shape[3:] != (hkv, d)
        or suffix_len.shape != (g, r)
    ):
        _fail(
            "paged_cascade_attention wants q [G, R, H, D], prefix_pages [G, Pmax], prefix_len [G], "
            "suffix_k/v [G, R, S, Hkv, D], suffix_len [G, R]",
            {"q": q, "k_pages": k_pages, "prefix_pages": prefix_pages, "prefix_len": prefix_len, "suffix_k": suffix_k}
            | {"suffix_v": suffix_v, "suffix_len": suffix_len},
        )
    check_pages(q.shape[2], q.shape[3], k_pages, v_pages)
    check_floats(q=q, k_pages=k_pages, v_pages=v_pages, suffix_k=suffix_k, suffix_v=suffix_v)
    check_ints(prefix_pages=prefix_pages, prefix_len=prefix_len, suffix_len=suffix_len)


def check_cascade(q, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, suffix_len) -> None:
    """Contiguous shared prefix: q [G, R, H, D], prefix_k/v [G, P, Hkv, D], prefix_len [G],
    suffix_k/v [G, R, S, Hkv, D], suffix_len [G, R]."""
    if q.ndim != 4 or prefix_k.ndim != 4 or suffix_k.ndim != 5:
        _fail(
            "cascade_attention wants q [G, R, H, D], prefix [G, P, Hkv, D], suffix [G, R, S, Hkv, D]",
            {"q": q, "prefix_k": prefix_k, "suffix_k": suffix_k},
        )
    g, r, h, d = q.shape
    hkv = prefix_k.shape[2]
    if h % hkv or prefix_k.shape != prefix_v.shape or suffix_k.shape != suffix_v.shape or prefix_k.shape[3] != d:
        _fail(
            "bad shapes",
            {"q": q, "prefix_k": prefix_k, "prefix_v": prefix_v, "suffix_k": suffix_k, "suffix_v": suffix_v},
        )
    if suffix_k.shape[:2] != (g, r) or prefix_k.shape[0] != g or suffix_k.shape[3:] != (hkv, d):
        _fail("groups/rows differ", {"q": q, "prefix_k": prefix_k, "suffix_k": suffix_k})
    if prefix_len.shape != (g,) or suffix_len.shape != (g, r):
        _fail(
            "lengths want prefix_len [G], suffix_len [G, R]",
            {"q": q, "prefix_len": prefix_len, "suffix_len": suffix_len},
        )
    check_floats(q=q, prefix_k=prefix_k, prefix_v=prefix_v, suffix_k=suffix_k, suffix_v=suffix_v)
    check_ints(prefix_len=prefix_len, suffix_len=suffix_len)


def check_paged_tree(q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len) -> None:
    """q [G, R, H, D], prefix_pages [G, Pmax], prefix_len [G], suffix_pages [G, R, Ps], suffix_len [G, R]."""
    g, r = q.shape[:2] if q.ndim == 4 else (None, None)
    if (
        q.ndim != 4
        or prefix_pages.ndim != 2
        or prefix_pages.shape[0] != g
        or prefix_len.shape != (g,)
        or suffix_pages.ndim != 3
        or suffix_pages.shape[:2] != (g, r)
        or suffix_len.shape != (g, r)
    ):
        _fail(
            "paged_tree_attention wants q [G, R, H, D], prefix_pages [G, Pmax], prefix_len [G], "
            "suffix_pages [G, R, Ps], suffix_len [G, R]",
            {"q": q, "prefix_pages": prefix_pages, "prefix_len": prefix_len, "suffix_pages": suffix_pages}
            | {"suffix_len": suffix_len},
        )
    check_pages(q.shape[2], q.shape[3], k_pages, v_pages)
    check_floats(q=q, k_pages=k_pages, v_pages=v_pages)
    check_ints(prefix_pages=prefix_pages, prefix_len=prefix_len, suffix_pages=suffix_pages, suffix_len=suffix_len)
