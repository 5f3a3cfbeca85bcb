"""The jnp references of shared-prefix (cascade) attention, contiguous and paged, against dense
attention over the materialised paths in float64 numpy; the backend dispatcher and the boundary
checks; and the kernels package never shadows Hugging Face's ``kernels``. (The Pallas kernels:
tests/test_kernels_pallas.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.kernels import merge_partials, paged_attention, paged_cascade_attention, partial_attention
from rstar_jax.kernels.check import SMALL, dense_attention_f64, gathered_prefix, make_case, suffix_in_pool
from rstar_jax.kernels.dispatch import resolve_impl, tree_attention_impl
from rstar_jax.kernels.paged import (
    paged_attention_reference,
    paged_cascade_attention_reference,
    paged_tree_attention_reference,
)
from rstar_jax.kernels.tree_attention import cascade_attention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _case(dtype, seed=0, g=3, r=4, h=4, hkv=2, d=16, p=11, s=5):
    rng = np.random.default_rng(seed)
    arrays = [
        rng.normal(size=shape).astype(np.float32)
        for shape in [(g, r, h, d), (g, p, hkv, d), (g, p, hkv, d), (g, r, s, hkv, d), (g, r, s, hkv, d)]
    ]
    arrays = [np.asarray(jnp.asarray(a, dtype).astype(jnp.float32)) for a in arrays]  # rounded inputs
    plen = np.array([p, 0, 6])[:g]  # full, empty (a root), ragged
    slen = rng.integers(0, s + 1, size=(g, r))
    slen[1, 0] = 0  # no prefix and no suffix: a padding row
    slen[0, 1] = 0  # prefix only
    return arrays, plen, slen


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-5), (jnp.bfloat16, 2e-2)])
def test_cascade_equals_dense_attention(dtype, tol):
    (q, pk, pv, sk, sv), plen, slen = _case(dtype)
    got = cascade_attention(
        *(jnp.asarray(a, dtype) for a in (q, pk, pv)),
        jnp.asarray(plen),
        jnp.asarray(sk, dtype),
        jnp.asarray(sv, dtype),
        jnp.asarray(slen),
    )
    assert got.dtype == dtype and got.shape == q.shape
    want = dense_attention_f64(q, pk, pv, plen, sk, sv, slen)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=tol, rtol=tol)
    assert not np.asarray(got[1, 0]).any()  # the padding row is zeros, not NaN


def test_merge_is_associative_over_key_splits():
    rng = np.random.default_rng(1)
    q = jnp.asarray(rng.normal(size=(2, 3, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(12, 2, 8)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(12, 2, 8)), jnp.float32)
    whole, lse = partial_attention(q, k, v, jnp.ones(12, bool), 0.35)
    parts = [partial_attention(q, k[a:b], v[a:b], jnp.ones(b - a, bool), 0.35) for a, b in [(0, 5), (5, 12)]]
    merged, merged_lse = merge_partials(*parts[0], *parts[1])
    np.testing.assert_allclose(merged, whole, atol=1e-6)
    np.testing.assert_allclose(merged_lse, lse, atol=1e-5)


def test_bad_shapes_are_refused():
    (q, pk, pv, sk, sv), plen, slen = _case(jnp.float32)
    with pytest.raises(ValueError, match="groups/rows differ"):
        cascade_attention(q, pk, pv, plen, sk[:, :2], sv[:, :2], slen[:, :2])


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-5), (jnp.bfloat16, 2e-2)])
def test_paged_references_equal_dense_attention(dtype, tol):
    """Groups share pages (a tree), unused table entries are -1, lengths are ragged; the suffixes
    dense, and paged in the pool."""
    case = make_case(SMALL, dtype, seed=3)
    pk, pv = gathered_prefix(case)
    a = {k: jnp.asarray(x, dtype if x.dtype == np.float32 else x.dtype) for k, x in case.items()}
    want = dense_attention_f64(
        case["q"], pk, pv, case["prefix_len"], case["suffix_k"], case["suffix_v"], case["suffix_len"]
    )
    got = paged_cascade_attention_reference(*a.values())
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=tol, rtol=tol)
    g, r, h, d = case["q"].shape
    rows = paged_attention_reference(
        a["q"].reshape(g * r, h, d), a["k_pages"], a["v_pages"], jnp.repeat(a["prefix_pages"], r, 0),
        jnp.repeat(a["prefix_len"], r),
    )  # fmt: skip
    no_suffix = dense_attention_f64(
        case["q"], pk, pv, case["prefix_len"], case["suffix_k"], case["suffix_v"], 0 * case["suffix_len"]
    )
    np.testing.assert_allclose(np.asarray(rows, np.float64).reshape(g, r, h, d), no_suffix, atol=tol, rtol=tol)
    tree = {k: jnp.asarray(x, dtype if x.dtype == np.float32 else x.dtype) for k, x in suffix_in_pool(case).items()}
    got_tree = paged_tree_attention_reference(*tree.values())  # suffixes in the shuffled pool too
    np.testing.assert_allclose(np.asarray(got_tree, np.float64), want, atol=tol, rtol=tol)
    if jax.default_backend() == "cpu":  # where "auto" is the reference, bit for bit
        np.testing.assert_array_equal(paged_cascade_attention(*a.values()), got)


@pytest.mark.parametrize("impl", ["reference", "pallas_gpu"])
def test_no_suffix_slots(impl):
    """S = 0 (rows right after an expansion, before their first token): prefix-only attention."""
    case = make_case(SMALL, jnp.float32, seed=4)
    for name in ("suffix_k", "suffix_v"):
        case[name] = case[name][:, :, :0]
    case["suffix_len"] = 0 * case["suffix_len"]
    pk, pv = gathered_prefix(case)
    want = dense_attention_f64(
        case["q"], pk, pv, case["prefix_len"], case["suffix_k"], case["suffix_v"], case["suffix_len"]
    )
    got = paged_cascade_attention(*map(jnp.asarray, case.values()), impl=impl, interpret=True)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=2e-5)


def test_dispatch_by_backend():
    assert [tree_attention_impl(b) for b in ("gpu", "tpu", "cpu")] == ["pallas_gpu", "pallas_tpu", "reference"]
    assert resolve_impl("auto") == tree_attention_impl() == tree_attention_impl(jax.default_backend())
    with pytest.raises(ValueError, match="unknown tree attention impl"):
        resolve_impl("triton")


def test_paged_boundary_checks():
    case = make_case(SMALL, jnp.float32)
    a = {k: jnp.asarray(x) for k, x in case.items()}
    with pytest.raises(ValueError, match="share one dtype"):
        paged_cascade_attention(*{**a, "k_pages": a["k_pages"].astype(jnp.bfloat16)}.values())
    with pytest.raises(ValueError, match="integer"):
        paged_cascade_attention(*{**a, "prefix_len": a["prefix_len"].astype(jnp.float32)}.values())
    with pytest.raises(ValueError, match=r"suffix_len \[G, R\]"):
        paged_cascade_attention(*{**a, "suffix_len": a["suffix_len"][:, :2]}.values())
    with pytest.raises(ValueError, match="KV heads dividing"):
        paged_attention(a["q"][:, 0, :3], a["k_pages"], a["v_pages"], a["prefix_pages"], a["prefix_len"])


def test_transformers_kernels_not_shadowed_from_repo_root():
    """From the repository root (on sys.path, as under pytest), transformers must still find
    Hugging Face's ``kernels`` and load a model class."""
    code = (
        "import transformers.activations, transformers; import importlib.util as u; "
        "spec = u.find_spec('kernels'); print(spec.origin if spec else None); "
        "transformers.AutoModelForCausalLM"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    origin = out.stdout.strip().splitlines()[-1]
    assert not origin.startswith(os.path.join(ROOT, "kernels")), origin
