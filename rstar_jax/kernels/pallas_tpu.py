"""Paged partial decode attention for TPUs: a Pallas kernel through Mosaic TPU.

Same primitive and contract as ``pallas_gpu.paged_partial_gpu`` (``cascade`` builds the
tree-attention entry points from it): M queries per (row, KV head) against the pages a page
table lists, optionally merged online with an earlier partial softmax (running max = lse,
sum = 1, accumulator = o).

Tiling: grid (B, Pmax) with the page axis innermost and sequential ("arbitrary"). The page
table and lengths are scalar-prefetched into SMEM (``PrefetchScalarGridSpec``) so the index
map of the K and V inputs picks the page: step (b, j) DMAs page ``table[b, j]`` as one
[page, Hkv * D] block (the pages are viewed as [N, page, Hkv * D], a free reshape) while the
pipeline computes on the previous one. Steps past ``ceil(len / page)`` repeat the last valid
page's index, so Pallas issues no new DMA, and skip the compute. The [Hkv, M, D] queries
(index constant along j: fetched once per row) and the f32 running max, sum [Hkv, M, 1] and
accumulator [Hkv, M, D] stay in VMEM; each step runs, per KV head (a static loop), one
[M, D] x [D, page] score product on the MXU, the online-softmax update and one [M, page] x
[page, D] product. Outputs are written once, at the row's last step.

Assumes: page a multiple of 8 (16 for bf16/fp16: sublane packing) and D a multiple of 128,
so a head's lane slice of the page block is tile-aligned (other sizes run, with relayouts);
M is padded here to a multiple of 16 with zero queries, whose outputs are dropped. float32
inputs use full-precision (multi-pass) products; bf16 and fp16 round the probabilities to
the value dtype before the second product. A row with no valid key gets o = 0, lse = -inf.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from rstar_jax.kernels.pallas_compat import pl, tpu_interpret, tpu_params, tpu_prefetch_grid_spec, tpu_vmem

MAX_BLOCK = 128  # key slots per block when the caller pages a contiguous cache for this kernel
ROW_ALIGN = 16


def _kernel(table_ref, len_ref, q_ref, k_ref, v_ref, *refs, page, scale, has_init, precision):
    del table_ref  # used by the index maps only
    o0_ref, lse0_ref, o_ref, lse_ref, m_ref, l_ref, acc_ref = refs if has_init else (None, None, *refs)
    b, j = pl.program_id(0), pl.program_id(1)
    n = len_ref[b]
    hkv, _, d = q_ref.shape

    @pl.when(j == 0)
    def _start():
        if has_init:
            m0 = lse0_ref[...]
            l0 = jnp.where(m0 > -jnp.inf, 1.0, 0.0).astype(jnp.float32)
            m_ref[...], l_ref[...], acc_ref[...] = m0, l0, o0_ref[...] * l0
        else:
            m_ref[...] = jnp.full(m_ref.shape, -jnp.inf, jnp.float32)
            l_ref[...] = jnp.zeros(l_ref.shape, jnp.float32)
            acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

    @pl.when(j * page < n)
    def _step():
        valid = j * page + lax.broadcasted_iota(jnp.int32, (1, page), 1) < n
        for h in range(hkv):
            k = k_ref[:, h * d : (h + 1) * d]  # [page, D]
            v = v_ref[:, h * d : (h + 1) * d]
            s = lax.dot_general(
                q_ref[h], k, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=jnp.float32
            )
            s = jnp.where(valid, s * scale, -jnp.inf)
            m_prev = m_ref[h]
            m_new = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))  # finite: a valid slot
            alpha = jnp.exp(m_prev - m_new)
            p = jnp.exp(s - m_new)
            pv = jnp.dot(p.astype(v.dtype), v, precision=precision, preferred_element_type=jnp.float32)
            l_ref[h] = alpha * l_ref[h] + jnp.sum(p, axis=1, keepdims=True)
            acc_ref[h] = alpha * acc_ref[h] + pv
            m_ref[h] = m_new

    @pl.when(j == pl.num_programs(1) - 1)
    def _finish():
        den = l_ref[...]
        filled = den > 0
        safe = jnp.where(filled, den, 1.0)
        o_ref[...] = acc_ref[...] / safe
        lse_ref[...] = jnp.where(filled, m_ref[...] + jnp.log(safe), -jnp.inf)


def paged_partial_tpu(
    q: jax.Array,
    k_pages: jax.Array,
    v_pages: jax.Array,
    table: jax.Array,
    lengths: jax.Array,
    init: tuple[jax.Array, jax.Array] | None = None,
    *,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """q [B, Hkv, M, D]; k_pages, v_pages [N, page, Hkv, D]; table [B, Pmax] int32; lengths [B]
    int32; init None or (o [B, Hkv, M, D] f32, lse [B, Hkv, M] f32), a partial attention over
    other keys to merge with. Returns (o [B, Hkv, M, D] f32, lse [B, Hkv, M] f32)."""
    b, hkv, rows, d = q.shape
    n_pages, page = k_pages.shape[:2]
    pmax = table.shape[1]
    mp = -(-rows // ROW_ALIGN) * ROW_ALIGN
    pad = ((0, 0), (0, 0), (0, mp - rows), (0, 0))

    def row_map(i, j, table_ref, len_ref):
        return i, 0, 0, 0

    def page_map(i, j, table_ref, len_ref):
        last = jnp.maximum(lax.div(len_ref[i] + page - 1, page) - 1, 0)  # past the length: no new DMA
        return jnp.clip(table_ref[i, jnp.minimum(j, last)], 0, n_pages - 1), 0, 0

    rows_spec = pl.BlockSpec((None, hkv, mp, d), row_map)
    lse_spec = pl.BlockSpec((None, hkv, mp, 1), row_map)
    page_spec = pl.BlockSpec((None, page, hkv * d), page_map)
    operands = [jnp.pad(q, pad), k_pages.reshape(n_pages, page, hkv * d), v_pages.reshape(n_pages, page, hkv * d)]
    in_specs = [rows_spec, page_spec, page_spec]
    if init is not None:
        lse0 = jnp.pad(init[1][..., None], pad[:3] + ((0, 0),), constant_values=-jnp.inf)
        operands += [jnp.pad(init[0], pad), lse0]
        in_specs += [rows_spec, lse_spec]
    grid_spec = tpu_prefetch_grid_spec(
        num_scalar_prefetch=2,
        grid=(b, pmax),
        in_specs=in_specs,
        out_specs=[rows_spec, lse_spec],
        scratch_shapes=[
            tpu_vmem((hkv, mp, 1), jnp.float32),
            tpu_vmem((hkv, mp, 1), jnp.float32),
            tpu_vmem((hkv, mp, d), jnp.float32),
        ],
    )
    kernel = functools.partial(
        _kernel,
        page=page,
        scale=d**-0.5,
        has_init=init is not None,
        precision=lax.Precision.HIGHEST if q.dtype == jnp.float32 else None,
    )
    o, lse = pl.pallas_call(
        kernel,
        out_shape=[
            jax.ShapeDtypeStruct((b, hkv, mp, d), jnp.float32),
            jax.ShapeDtypeStruct((b, hkv, mp, 1), jnp.float32),
        ],
        grid_spec=grid_spec,
        compiler_params=tpu_params(("parallel", "arbitrary")),
        interpret=tpu_interpret() if interpret else False,
        name="paged_partial_attention_tpu",
    )(table.astype(jnp.int32), jnp.clip(lengths, 0, pmax * page).astype(jnp.int32), *operands)
    return o[:, :, :rows], lse[:, :, :rows, 0]
