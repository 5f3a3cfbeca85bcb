"""`rstar-jax bench device --tiny`: every section runs on CPU and reports sane numbers; the time
budget skips sections and says so; the roofline counts the bytes the parameters really hold."""

import json

import jax
import numpy as np
import pytest

from rstar_jax.bench import device


def test_bench_device_tiny(tmp_path, capsys):
    from rstar_jax import cli

    out = tmp_path / "d.json"
    assert cli.main(["bench", "device", "--tiny", "--sections", "decode,train", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (
        r["tiny"]
        and r["skipped"] == r["errors"] == {}
        and r["copy_bytes_per_s"] > 0
        and r["matmul_bf16_flop_per_s"] > 0
    )
    assert [(d["trees"], d["k"]) for d in r["decode"]] == list(device.DECODE_SHAPES)
    for d in r["decode"]:
        assert d["rows"] == d["trees"] * d["k"] and d["tokens_per_s"] > 0 and d["torch_tokens_per_s"] > 0
        assert 0 < d["roofline_frac"] and d["compile_s"] >= 0
        assert d["vs_torch"] == pytest.approx(d["tokens_per_s"] / d["torch_tokens_per_s"])
    assert [t["what"] for t in r["train"]] == ["sft", "ppm"]
    for t in r["train"]:  # model FLOPs over the measured matmul rate: a fraction, for both sides
        assert 0 < t["ours_mfu"] < 1 and 0 < t["torch_mfu"] < 1
    text = capsys.readouterr().out
    assert "| decode tok/s | 64 trees x K=4 |" in text and "| ppm train step MFU |" in text


def test_budget_skips_and_reports(tmp_path):
    r = device.main(["--tiny", "--budget-s", "0", "--no-torch", "--out", str(tmp_path / "d.json")])
    assert set(r["skipped"]) == {"decode", "train", "search"} and "decode" not in r and "search" not in r
    assert json.loads((tmp_path / "d.json").read_text())["skipped"] == r["skipped"]


def test_roofline_bytes_count_the_real_parameters():
    """Weights: the bytes of the arrays init_params makes; KV: per token 2 (K and V) x layers x KV
    heads x head dim x 2 bytes, each tree's prompt once and each row's own tokens (half the new)."""
    from rstar_jax.models import ModelConfig, init_params

    kv = 2 * 2 * 2 * 16 * 2  # K+V x layers x KV heads x head dim (64 / 4 heads) x bytes
    for tie in (True, False):  # an untied embedding table is read only at the rows' tokens: left out
        config = ModelConfig(**{**device.TINY, "tie_word_embeddings": tie}, dtype="bfloat16")
        params = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        read = [x for p, x in leaves if tie or "embed" not in jax.tree_util.keystr(p)]
        want = sum(np.prod(x.shape) * x.dtype.itemsize for x in read) + kv * (3 * 10 + 12 * 8 / 2)
        got = device.decode_bytes_per_step(config, trees=3, rows=12, prompt_len=10, new_tokens=8)
        assert got == pytest.approx(want), tie


@pytest.mark.slow
def test_bench_device_tiny_with_search(tmp_path):
    r = device.main(["--tiny", "--out", str(tmp_path / "d.json")])
    s = r["search"]
    assert r["errors"] == {}
    assert s["ours_nodes_per_s"] > 0 and s["naive_nodes_per_s"] > 0 and 0 <= s["sandbox_share"] <= 1
