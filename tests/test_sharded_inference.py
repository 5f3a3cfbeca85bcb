"""Inference on a mesh of 8 fake CPU devices (data 4 x tensor 2): parameters are placed straight
into their shardings, fp32 on the mesh draws exactly the greedy tokens of fp32 on one device, and
bf16 on the mesh draws them too except where the float32 model itself is within bf16 rounding of
a tie (measured, and bounded, below)."""

import json

import numpy as np
import pytest

from tests.conftest import make_hf_checkpoint, run_with_devices

NEW = 12
PROMPTS = [[(7 * i + 3 * j) % 120 + 1 for j in range(3 + i % 5)] for i in range(8)]

# Run with 8 devices: load the checkpoint twice (fp32, bf16) onto a data 4 x tensor 2 mesh,
# check each parameter's shards, generate greedily, and print the tokens and the bf16 logits
# of the fp32 tokens (teacher-forced, for the tie check).
MESH = """
import json, jax, numpy as np
import jax.numpy as jnp
from rstar_jax.engine import Engine
from rstar_jax.models import ModelConfig, logits, placement
from rstar_jax.models.sharding import logical_axes, shard_rows, spec_for

assert jax.device_count() == 8
calls = []  # (param size, the largest slice handed to one device)
real = jax.make_array_from_callback
def spy(shape, sharding, cb):
    sizes = []
    out = real(shape, sharding, lambda idx: (lambda a: (sizes.append(a.size), a)[1])(cb(idx)))
    calls.append((int(np.prod(shape)), max(sizes)))
    return out
jax.make_array_from_callback = spy
def whole(*a, **k):
    raise AssertionError("a whole parameter went through device_put")
real_put = jax.device_put
out = {}
for dtype in ("float32", "bfloat16"):
    mesh = placement.inference_mesh(ModelConfig.from_json_file(path + "/config.json"), tensor=2)
    calls.clear()
    jax.device_put = whole
    config, params = placement.load_sharded(path, dtype, mesh)
    jax.device_put = real_put
    assert len(calls) == len(jax.tree.leaves(params))  # every parameter went slice by slice
    sharded = 0
    for p, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = "/".join(k.key for k in p)
        spec = spec_for(logical_axes(name, x.ndim), x.shape, mesh)
        assert x.sharding.spec == spec and x.dtype == jnp.dtype(dtype), (name, x.sharding, spec)
        parts = int(np.prod([mesh.shape[a] for s in spec if s for a in ((s,) if isinstance(s, str) else s)]))
        assert {sh.data.size for sh in x.addressable_shards} == {x.size // parts}, name
        sharded += parts > 1
    assert sharded >= 8 and calls and all(big < size for size, big in calls if size > 64), calls
    even, odd = shard_rows(mesh, np.zeros((8, 3)), np.zeros((6, 3)))  # rows over data (4), or replicated
    assert {sh.data.shape for sh in even.addressable_shards} == {(2, 3)}
    assert {sh.data.shape for sh in odd.addressable_shards} == {(6, 3)}
    engine = Engine(config, params, mesh=mesh, max_rows=64)
    done, _ = engine.generate(prompts, n=2, max_new_tokens=new, temperature=0.0)
    out[dtype] = [[list(c.token_ids) for c in row] for row in done]
    # the mesh's logits along the fp32 reference's sequences, for the tie check
    seqs = [p + r for p, r in zip(prompts, ref)]
    t = max(map(len, seqs))
    ids = np.array([[0] * (t - len(s)) + s for s in seqs], np.int32)
    mask = (np.arange(t)[None] >= (t - np.array([len(s) for s in seqs]))[:, None]).astype(np.int32)
    out[dtype + "_logits"] = np.asarray(jax.jit(logits, static_argnums=0)(config, params, ids, mask)).tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("sharded")
    make_hf_checkpoint(path, "qwen2", vocab_size=128, seed=1)
    return path


def _reference(path):
    """fp32 greedy tokens on this process's one device, and the fp32 logits along them."""
    import jax

    from rstar_jax.engine import Engine
    from rstar_jax.models import load_hf, logits

    assert jax.device_count() == 1
    config, params = load_hf(str(path))
    done, _ = Engine(config, params).generate(PROMPTS, n=2, max_new_tokens=NEW, temperature=0.0)
    tokens = [[list(c.token_ids) for c in row] for row in done]
    assert all(r[0] == r[1] for r in tokens)  # greedy: a prompt's two rows agree
    seqs = [p + r[0] for p, r in zip(PROMPTS, tokens)]
    t = max(map(len, seqs))
    ids = np.array([[0] * (t - len(s)) + s for s in seqs], np.int32)
    mask = (np.arange(t)[None] >= (t - np.array([len(s) for s in seqs]))[:, None]).astype(np.int32)
    return tokens, np.asarray(logits(config, params, ids, mask)), t


def test_mesh_inference_matches_one_device(ckpt):
    ref, ref_logits, t = _reference(ckpt)
    args = f"path, prompts, new, ref = {str(ckpt)!r}, {PROMPTS!r}, {NEW}, {[r[0] for r in ref]!r}\n"
    out = json.loads(run_with_devices(args + MESH, n=8, timeout=600))
    assert out["float32"] == ref  # same arithmetic up to reduction order: the same tokens
    np.testing.assert_allclose(out["float32_logits"], ref_logits, atol=1e-4)

    # bf16: the logits move by rounding; a token may differ only where fp32's choice wins by less
    # than twice the largest such move (a near-tie), and then the rest of that row may differ too
    bf = np.asarray(out["bfloat16_logits"])
    err = float(np.max(np.abs(bf - ref_logits)))
    assert 0 < err < 0.02  # measured 0.005 (logits' std 0.17)
    diverged = 0
    for i, (p, rows, mine) in enumerate(zip(PROMPTS, ref, out["bfloat16"])):
        for want, got in zip(rows, mine):
            k = next((j for j, (a, b) in enumerate(zip(want, got)) if a != b), None)
            if k is None:
                assert got == want
                continue
            diverged += 1
            pos = t - len(want) + k - 1  # the (left-padded) logits row that chose token k
            row = ref_logits[i, pos]
            assert row[want[k]] - row[got[k]] <= 2 * err, (i, k, row[want[k]] - row[got[k]], err)
    assert diverged <= 4  # measured 2 of the 16 rows (one prompt's two rows), both at near-ties


def test_inference_load_equals_load_hf_and_orbax(ckpt, tmp_path):
    """One device: Inference.load (HF) and load_orbax(mesh=) hold exactly load_hf's arrays."""
    import jax

    from rstar_jax.models import load_hf
    from rstar_jax.models.orbax_io import load_orbax, save_orbax
    from rstar_jax.models.placement import Inference, inference_mesh

    want = jax.tree.map(np.asarray, load_hf(str(ckpt))[1])
    config, params, mesh = Inference(dtype="auto").load(str(ckpt))  # auto on CPU: float32
    assert config.dtype == "float32" and mesh.shape == {"data": 1, "fsdp": 1, "tensor": 1}
    assert Inference(dtype="bfloat16").setup(str(ckpt))[0] == "bfloat16"
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), want)
    save_orbax(config, params, str(tmp_path / "o"))
    _, restored = load_orbax(str(tmp_path / "o"), mesh=inference_mesh(config, tensor=1))
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, restored), want)


def test_dtype_and_tensor_choice():
    from rstar_jax.errors import UserError
    from rstar_jax.models import ModelConfig
    from rstar_jax.models.placement import WEIGHT_SHARE, default_dtype, resolve_dtype, tensor_size

    assert default_dtype("cpu") == "float32" and default_dtype("gpu") == default_dtype("tpu") == "bfloat16"
    assert resolve_dtype("bfloat16") == "bfloat16" and resolve_dtype(None) == "float32"
    with pytest.raises(UserError, match="--dtype 'fp16'"):
        resolve_dtype("fp16")
    config = ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=8, num_kv_heads=4)
    weights = 4 * config.num_params()
    # the fewest devices (dividing both the 8 devices and the 4 KV heads) whose share fits
    for budget, want in ((weights / WEIGHT_SHARE, 1), (weights, 2), (weights / 2, 4), (weights / 100, 4)):
        assert tensor_size(config, 8, int(budget)) == want, budget
    assert tensor_size(config, 6, int(weights / 2)) == 2  # 4 does not divide 6 devices: all that divide


def test_dtype_options_become_overrides():
    import argparse

    from rstar_jax.cli.inference import add_dtype_arguments, dtype_overrides

    p = argparse.ArgumentParser()
    add_dtype_arguments(p)
    assert dtype_overrides(p.parse_args([])) == []
    args = p.parse_args(["--dtype", "bfloat16", "--tensor-parallel", "2"])
    assert dtype_overrides(args) == ["dtype=bfloat16", "tensor_parallel=2"]
    assert dtype_overrides(args, "a.", "b.") == [
        "a.dtype=bfloat16",
        "a.tensor_parallel=2",
        "b.dtype=bfloat16",
        "b.tensor_parallel=2",
    ]
    from rstar_jax.config import load_config
    from rstar_jax.search.config import SearchConfig

    assert load_config(SearchConfig, None, dtype_overrides(args)).dtype == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):  # checked by the config, not argparse
        load_config(SearchConfig, None, dtype_overrides(p.parse_args(["--dtype", "float16"])))
