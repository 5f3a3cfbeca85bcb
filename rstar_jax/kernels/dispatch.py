"""Tree attention with the implementation picked by backend: the Pallas Triton kernel on GPUs,
the Pallas Mosaic kernel on TPUs, the jnp reference elsewhere (CPU).

Callers choose once, outside jit (``impl = tree_attention_impl()``), and pass ``impl`` as a
static argument; ``impl="auto"`` does the same at trace time. ``interpret=True`` runs a Pallas
implementation in Pallas's interpreter (how the tests run them on CPU). Shapes are in
``tree_attention`` (contiguous prefix) and ``paged`` (paged prefix) and checked here, before
any implementation runs; every entry point returns q's shape and dtype.
"""

from __future__ import annotations

import jax

from rstar_jax.kernels import cascade, paged, pallas_compat, pallas_gpu, pallas_tpu, tree_attention
from rstar_jax.kernels.checks import check_cascade, check_paged_attention, check_paged_cascade, check_paged_tree

IMPLS = ("reference", "pallas_gpu", "pallas_tpu")
# impl -> (the backend's paged partial-attention primitive, the page size it gets for contiguous caches)
KERNELS = {
    "pallas_gpu": (pallas_gpu.paged_partial_gpu, pallas_gpu.MAX_BLOCK),
    "pallas_tpu": (pallas_tpu.paged_partial_tpu, pallas_tpu.MAX_BLOCK),
}


def tree_attention_impl(backend: str | None = None) -> str:
    """The implementation for ``backend`` (default: ``jax.default_backend()``): "gpu" ->
    "pallas_gpu", "tpu" -> "pallas_tpu", anything else (or a jax without that Pallas backend:
    Triton is deprecated from jax 0.11) -> "reference"."""
    impl = {"gpu": "pallas_gpu", "cuda": "pallas_gpu", "tpu": "pallas_tpu"}.get(backend or jax.default_backend())
    present = {"pallas_gpu": pallas_compat.pltriton, "pallas_tpu": pallas_compat.pltpu}
    return impl if impl is not None and present[impl] is not None else "reference"


def resolve_impl(impl: str) -> str:
    if impl == "auto":
        return tree_attention_impl()
    if impl not in IMPLS:
        raise ValueError(f"unknown tree attention impl {impl!r}; expected 'auto' or one of {IMPLS}")
    return impl


def cascade_attention(
    q, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, suffix_len, *, impl: str = "auto", interpret: bool = False
) -> jax.Array:
    """Grouped rows over a contiguous shared prefix [G, P, Hkv, D] plus per-row suffixes ->
    [G, R, H, D]."""
    check_cascade(q, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, suffix_len)
    impl = resolve_impl(impl)
    if impl == "reference":
        return tree_attention.cascade_attention(q, prefix_k, prefix_v, prefix_len, suffix_k, suffix_v, suffix_len)
    partial, max_block = KERNELS[impl]
    return cascade.dense_cascade(
        partial,
        q,
        prefix_k,
        prefix_v,
        prefix_len,
        suffix_k,
        suffix_v,
        suffix_len,
        max_block=max_block,
        interpret=interpret,
    )


def paged_cascade_attention(
    q,
    k_pages,
    v_pages,
    prefix_pages,
    prefix_len,
    suffix_k,
    suffix_v,
    suffix_len,
    *,
    impl: str = "auto",
    interpret: bool = False,
) -> jax.Array:
    """Grouped rows over a paged shared prefix (``prefix_pages`` [G, Pmax] into k/v_pages
    [N, page, Hkv, D]) plus dense per-row suffixes [G, R, S, Hkv, D] -> [G, R, H, D]."""
    args = (q, k_pages, v_pages, prefix_pages, prefix_len, suffix_k, suffix_v, suffix_len)
    check_paged_cascade(*args)
    impl = resolve_impl(impl)
    if impl == "reference":
        return paged.paged_cascade_attention_reference(*args)
    partial, max_block = KERNELS[impl]
    return cascade.paged_cascade(partial, *args, max_block=max_block, interpret=interpret)


def paged_tree_attention(
    q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len, *, impl: str = "auto", interpret=False
) -> jax.Array:
    """Grouped rows whose shared prefix and own suffixes both live in the page pool:
    prefix_pages [G, Pmax], suffix_pages [G, R, Ps] into k/v_pages [N, page, Hkv, D] ->
    [G, R, H, D]. Nothing is copied: the form for a tree-owned paged KV cache."""
    args = (q, k_pages, v_pages, prefix_pages, prefix_len, suffix_pages, suffix_len)
    check_paged_tree(*args)
    impl = resolve_impl(impl)
    if impl == "reference":
        return paged.paged_tree_attention_reference(*args)
    return cascade.paged_tree(KERNELS[impl][0], *args, interpret=interpret)


def paged_attention(
    q, k_pages, v_pages, page_table, lengths, *, impl: str = "auto", interpret: bool = False
) -> jax.Array:
    """Rows with their own page tables: q [B, H, D], page_table [B, Pmax], lengths [B] ->
    [B, H, D]."""
    check_paged_attention(q, k_pages, v_pages, page_table, lengths)
    impl = resolve_impl(impl)
    if impl == "reference":
        return paged.paged_attention_reference(q, k_pages, v_pages, page_table, lengths)
    return cascade.paged_rows(KERNELS[impl][0], q, k_pages, v_pages, page_table, lengths, interpret=interpret)
