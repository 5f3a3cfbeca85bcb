"""experiments/scale_plan.py against the arithmetic written out by hand (docs/SCALE.md's numbers)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module():
    spec = importlib.util.spec_from_file_location("scale_plan", os.path.join(ROOT, "experiments", "scale_plan.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scale_plan"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_h200_round_one_by_hand(tmp_path, capsys):
    mod = _module()
    plan = mod.plan(mod.build_parser().parse_args(["--chip", "h200"]))
    # decode at 256 rows: memory bound = rows x 0.9 x 4.8 TB/s / (bf16 weights + the KV read per step:
    # 32 sibling groups' 1,024-token paths plus each row's 64 own tokens, 57,344 B a token); compute
    # bound = 40% of 989 TFLOP/s over 2 FLOPs per parameter
    kv = (256 / 8 * 1024 + 256 * 64) * 28 * 2 * 4 * 128 * 2
    rate = min(256 * 0.9 * 4.8e12 / (2 * 7.6e9 + kv), 989e12 * 0.4 / (2 * 7.6e9))
    assert plan["decode_tokens_per_s_per_chip"] == pytest.approx(rate)
    r1 = plan["rounds"][0]
    generated = 747e3 * 8 * 5 * 128  # problems x rollouts x candidates x tokens per step
    assert r1["generated_tokens"] == pytest.approx(generated)
    assert r1["decode_chip_h"] == pytest.approx(generated / rate / 3600)
    measured = mod.plan(mod.build_parser().parse_args(["--decode-tokens-per-s", "1000"]))
    assert measured["rounds"][0]["decode_chip_h"] == pytest.approx(generated / 1000 / 3600)
    mod.main(["--chip", "v6e", "--json", str(tmp_path / "plan.json")])
    assert "| all |" in capsys.readouterr().out and (tmp_path / "plan.json").exists()
