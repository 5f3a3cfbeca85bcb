"""Shared-prefix (cascade) attention against dense attention over the materialised paths,
in float64 numpy; and the kernels package never shadows Hugging Face's ``kernels``."""

from __future__ import annotations

import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.kernels import cascade_attention, merge_partials, partial_attention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dense_reference(q, pk, pv, plen, sk, sv, slen):
    """Each row's attention over its own concatenated path [prefix[:plen], suffix[:slen]]."""
    g, r, h, d = q.shape
    hkv = pk.shape[2]
    out = np.zeros((g, r, h, d))
    for i in range(g):
        for j in range(r):
            k = np.concatenate([pk[i, : plen[i]], sk[i, j, : slen[i, j]]]).astype(np.float64)
            v = np.concatenate([pv[i, : plen[i]], sv[i, j, : slen[i, j]]]).astype(np.float64)
            if not len(k):
                continue
            for head in range(h):
                kv_head = head // (h // hkv)
                s = k[:, kv_head] @ q[i, j, head].astype(np.float64) / np.sqrt(d)
                p = np.exp(s - s.max())
                out[i, j, head] = (p / p.sum()) @ v[:, kv_head]
    return out


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
    want = dense_reference(q, pk, pv, plen, sk, sv, slen)
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
