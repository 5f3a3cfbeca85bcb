"""The Pallas tree-attention kernels (GPU/Triton and TPU/Mosaic) in interpret mode on CPU,
against float64 dense attention over each row's materialised path; that both lower to their
backend's custom call at model-like shapes; and the on-device check script's CPU path."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.kernels import paged_cascade_attention, paged_tree_attention
from rstar_jax.kernels.check import ENTRIES, SMALL, TOLERANCE, Shape, compare, main, make_case, suffix_in_pool
from rstar_jax.kernels.dispatch import KERNELS
from rstar_jax.kernels.paged import gather_pages
from rstar_jax.kernels.tree_attention import merge_partials, partial_attention


@pytest.mark.parametrize("impl", sorted(KERNELS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_kernel_equals_dense_attention(impl, dtype):
    """Paged cascade (tree-shared pages, -1 past the lengths), contiguous cascade (prefix length
    not a multiple of the page: the padded path), paged rows; GQA (4 heads over 2 KV heads),
    ragged prefix (full, empty, random) and suffix lengths (0 included); padding rows exactly 0.
    (bf16: the paged cascade only.) Tolerances: check.TOLERANCE (float32 5e-5, bf16 2e-2, justified there)."""
    entries = ENTRIES if dtype == jnp.float32 else ENTRIES[:1]  # keeps the interpreted runs under a minute
    errs = compare(impl, dtype, interpret=True, shape=SMALL, seed=2, entries=entries)
    assert max(errs[e] for e in entries) <= TOLERANCE[jnp.dtype(dtype).name], errs
    assert errs["padding_rows_max_abs"] == 0.0, errs


@pytest.mark.parametrize("impl", sorted(KERNELS))
def test_partial_primitive_merges_and_tiles_queries(impl):
    """The primitive alone: 70 queries per row (the GPU kernel's query tiles: 2 of 64) continuing
    an earlier partial (o, lse) with some rows empty, against the jnp partial + exact merge."""
    rng = np.random.default_rng(5)
    b, hkv, m, d, page = 3, 1, 70, 16, 16
    q, o0 = (jnp.asarray(rng.normal(size=(b, hkv, m, d)), jnp.float32) for _ in range(2))
    lse0 = jnp.asarray(rng.normal(size=(b, hkv, m)), jnp.float32).at[1].set(-jnp.inf)  # row 1: nothing before
    kp, vp = (jnp.asarray(rng.normal(size=(5, page, hkv, d)), jnp.float32) for _ in range(2))
    table, lengths = jnp.asarray([[4, 0], [2, 3], [1, -1]], jnp.int32), jnp.asarray([20, 32, 0], jnp.int32)
    o, lse = KERNELS[impl][0](q, kp, vp, table, lengths, (o0, lse0), interpret=True)
    k, v = gather_pages(kp, table), gather_pages(vp, table)
    ref = partial_attention(q, k, v, jnp.arange(2 * page)[None, :] < lengths[:, None], d**-0.5)
    want_o, want_lse = merge_partials(o0, lse0, *ref)
    np.testing.assert_allclose(o, want_o, atol=2e-6)
    np.testing.assert_allclose(lse, want_lse, atol=2e-6)  # finite: no row is empty in both parts


@pytest.mark.parametrize(
    "impl,platform,call", [("pallas_gpu", "cuda", "triton"), ("pallas_tpu", "tpu", "tpu_custom_call")]
)
def test_kernel_lowers_for_its_backend(impl, platform, call):
    """Traced and lowered (not compiled) for the real platform at 7B-like head shapes in bf16, 32
    rows a group (224 prefix queries: 4 query tiles on GPU), both paged entry points: catches
    ops a backend's Pallas lowering lacks, which interpret mode runs anyway."""
    shape = Shape(groups=2, rows=32, heads=28, kv_heads=4, head_dim=128, page=16, pmax=4, suffix=40)
    spec = lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16 if x.dtype == np.float32 else x.dtype)  # noqa: E731
    case = make_case(shape, jnp.bfloat16)
    for fn, inputs in ((paged_cascade_attention, case), (paged_tree_attention, suffix_in_pool(case))):
        jitted = jax.jit(lambda *a: fn(*a, impl=impl))
        text = jitted.trace(*map(spec, inputs.values())).lower(lowering_platforms=(platform,)).as_text()
        assert text.count(call) >= 2  # the prefix call and the suffix call


def test_check_script(tmp_path, capsys):
    """The device check at small size: interpreted on CPU, compiled on a GPU."""
    out = tmp_path / "check.json"
    assert main(["--impl", "pallas_gpu", "--size", "small", "--dtype", "bfloat16", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(c["pass"], c["interpret"]) for c in result["comparisons"]] == [(True, jax.default_backend() != "gpu")]
    assert not result["errors"]
    assert result["timings"][0]["max_abs_diff_vs_reference"] <= TOLERANCE["bfloat16"]
    assert "all comparisons passed" in capsys.readouterr().out
