"""Paged partial decode attention for NVIDIA GPUs: a Pallas kernel through the Triton lowering.

``paged_partial_gpu`` is the one primitive ``cascade`` builds every tree-attention entry point
from: a block of M query vectors per (row, KV head) against the keys a page table lists,
optionally continuing a partial softmax already computed over other keys (the exact
log-sum-exp merge, done online: the earlier part enters as the running max m = lse, sum
l = 1 and accumulator o).

Tiling: grid (B, Hkv, M / BM), one program per row, KV head and block of BM = min(M, 64)
queries (the shared-prefix call makes a "row" a whole group, so its M = R * Gq queries read
each prefix page once per 64 queries, instead of once per row). A program holds its [BM, D]
queries and the f32 running max, sum and [BM, D] accumulator in registers and walks
the row's pages in a loop of ceil(len / page) steps: one [BM, page] score product, the
online-softmax update, one [BM, page] x [page, D] product per page. Pages past the length are
never read; slots past the length inside the last page are masked to -inf.

Assumes (Triton's dot and block rules): D, page and M are powers of two >= 16; M is padded
here up to that with zero queries (their outputs are dropped), and the kernel reads the
pages in place, whatever N. float32 inputs use full-precision products (no TF32); for bf16
and fp16 the probabilities are rounded to the value dtype before the second product, as in
FlashAttention. Outputs are float32; a row with no valid key gets o = 0 and lse = -inf.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from rstar_jax.kernels.pallas_compat import pl, triton_params, whole_array_spec

MAX_BLOCK = 64  # key slots per block when the caller pages a contiguous cache for this kernel
BLOCK_M = 64  # queries per program: a [64, D] f32 accumulator stays in registers at 4 warps


def _pow2_at_least_16(n: int) -> int:
    return max(16, 1 << (n - 1).bit_length())


def _kernel(table_ref, len_ref, q_ref, k_ref, v_ref, *refs, page, scale, has_init, precision):
    o0_ref, lse0_ref, o_ref, lse_ref = refs if has_init else (None, None, *refs)
    b, h = pl.program_id(0), pl.program_id(1)
    n = len_ref[b]
    q = q_ref[...]
    rows, d = q.shape
    if has_init:
        m = lse0_ref[...]
        den = jnp.where(m > -jnp.inf, 1.0, 0.0).astype(jnp.float32)
        acc = o0_ref[...] * den[:, None]
    else:
        m = jnp.full((rows,), -jnp.inf, jnp.float32)
        den = jnp.zeros((rows,), jnp.float32)
        acc = jnp.zeros((rows, d), jnp.float32)

    def step(j, carry):
        m, den, acc = carry
        page_id = jnp.clip(table_ref[b, j], 0, k_ref.shape[0] - 1)  # a bad table reads a wrong page, not past memory
        k = k_ref[page_id, :, h, :]  # [page, D]
        v = v_ref[page_id, :, h, :]
        s = lax.dot_general(q, k, (((1,), (1,)), ((), ())), precision=precision, preferred_element_type=jnp.float32)
        pos = j * page + jnp.arange(page)
        s = jnp.where((pos < n)[None, :], s * scale, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))  # finite: the page holds a valid slot
        alpha = jnp.exp(m - m_new)
        p = jnp.exp(s - m_new[:, None])
        pv = jnp.dot(p.astype(v.dtype), v, precision=precision, preferred_element_type=jnp.float32)
        return m_new, alpha * den + jnp.sum(p, axis=1), alpha[:, None] * acc + pv

    m, den, acc = lax.fori_loop(0, lax.div(n + page - 1, page), step, (m, den, acc))
    filled = den > 0
    o_ref[...] = acc / jnp.where(filled, den, 1.0)[:, None]
    lse_ref[...] = jnp.where(filled, m + jnp.log(jnp.where(filled, den, 1.0)), -jnp.inf)


def paged_partial_gpu(
    q: jax.Array,
    k_pages: jax.Array,
    v_pages: jax.Array,
    table: jax.Array,
    lengths: jax.Array,
    init: tuple[jax.Array, jax.Array] | None = None,
    *,
    interpret: bool = False,
    num_warps: int = 4,
    num_stages: int = 2,
) -> tuple[jax.Array, jax.Array]:
    """q [B, Hkv, M, D]; k_pages, v_pages [N, page, Hkv, D]; table [B, Pmax] int32; lengths [B]
    int32; init None or (o [B, Hkv, M, D] f32, lse [B, Hkv, M] f32), a partial attention over
    other keys to merge with. Returns (o [B, Hkv, M, D] f32, lse [B, Hkv, M] f32)."""
    b, hkv, rows, d = q.shape
    page = k_pages.shape[1]
    if d != _pow2_at_least_16(d) or page != _pow2_at_least_16(page):
        raise ValueError(f"the GPU kernel needs head dim and page size powers of two >= 16, got {d} and {page}")
    mp = _pow2_at_least_16(rows)
    bm = min(mp, BLOCK_M)
    pad = ((0, 0), (0, 0), (0, mp - rows))
    operands = [table.astype(jnp.int32), jnp.clip(lengths, 0, table.shape[1] * page).astype(jnp.int32)]
    operands += [jnp.pad(q, pad + ((0, 0),)), k_pages, v_pages]
    rows_spec = pl.BlockSpec((None, None, bm, d), lambda i, h, t: (i, h, t, 0))
    lse_spec = pl.BlockSpec((None, None, bm), lambda i, h, t: (i, h, t))
    in_specs = [whole_array_spec(), whole_array_spec(), rows_spec, whole_array_spec(), whole_array_spec()]
    if init is not None:
        operands += [jnp.pad(init[0], pad + ((0, 0),)), jnp.pad(init[1], pad, constant_values=-jnp.inf)]
        in_specs += [rows_spec, lse_spec]
    kernel = functools.partial(
        _kernel,
        page=page,
        scale=d**-0.5,
        has_init=init is not None,
        precision=lax.Precision.HIGHEST if q.dtype == jnp.float32 else None,
    )
    o, lse = pl.pallas_call(
        kernel,
        out_shape=[jax.ShapeDtypeStruct((b, hkv, mp, d), jnp.float32), jax.ShapeDtypeStruct((b, hkv, mp), jnp.float32)],
        grid=(b, hkv, mp // bm),
        in_specs=in_specs,
        out_specs=[rows_spec, lse_spec],
        compiler_params=triton_params(num_warps, num_stages),
        interpret=interpret,
        name="paged_partial_attention_gpu",
    )(*operands)
    return o[:, :, :rows], lse[:, :, :rows]
