"""`rstar-jax search` / `eval` / `solve` from the command line, on synthetic and real benchmark files."""

from __future__ import annotations

import json
import os

import pytest

from rstar_jax import cli
from rstar_jax.data import save_problems
from rstar_jax.domain import generate_problems
from rstar_jax.search.records import read_records

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "data")


def test_search_cli_with_bootstrap(tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    save_problems(generate_problems(6, 2, seed=3), data)
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "search",
                "--policy",
                "bootstrap",
                "--data",
                str(data),
                "--out",
                str(out),
                "--rollouts",
                "4",
                "--candidates",
                "3",
                "--seed",
                "1",
                "batch_size=3",
            ]
        )
        == 0
    )
    records = read_records(out / "trees.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert len(records) == summary["problems"] == 6
    assert summary["config"]["rollouts"] == 4 and summary["config"]["batch_size"] == 3
    assert summary["solved_any"] == sum(any(n.correct for n in r.nodes) for r in records) / 6
    assert summary["solved_any"] > 0.5 and summary["tokens"] > 0


def test_search_cli_rejects_bad_override(tmp_path, capsys):
    data = tmp_path / "p.jsonl"
    save_problems(generate_problems(1, 1, seed=3), data)
    out = tmp_path / "out"
    argv = ["search", "--policy", "bootstrap", "--data", str(data), "--out", str(out), "no_such_key=1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown keys ['no_such_key']" in err and not out.exists()
    with pytest.raises(ValueError, match="unknown keys"):  # --debug: the exception itself
        cli.main(["--debug", *argv])


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from rstar_jax.evolve.base_model import BaseModelSpec, build_base_model

    path = str(tmp_path_factory.mktemp("tiny_policy"))
    spec = BaseModelSpec(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        max_position_embeddings=2048,
    )
    build_base_model(spec, generate_problems(20, 2, seed=0), path)
    return path


@pytest.mark.parametrize("rel", ["gsm8k/test.jsonl", "math500/test.jsonl"])
def test_eval_on_real_benchmark_slices(tiny_policy, tmp_path, rel, capsys):
    data = os.path.join(SHARED, rel)
    if not os.path.exists(data):
        pytest.skip(f"{data} not present")
    out = tmp_path / "eval"
    assert (
        cli.main(
            [
                "eval",
                "--policy",
                tiny_policy,
                "--data",
                data,
                "--limit",
                "20",
                "--method",
                "greedy",
                "--out",
                str(out),
                "mcts.max_step_tokens=8",
                "mcts.max_depth=2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problems"] == 20 and 0.0 <= metrics["policy_greedy_acc"] <= 1.0
    records = read_records(out / "greedy.jsonl")
    assert len(records) == 20 and all(r.gold for r in records)  # gold answers were parsed from the file


def test_solve_cli_runs_a_search(tiny_policy, capsys):
    code = cli.main(
        [
            "solve",
            "--policy",
            tiny_policy,
            "--question",
            "Tom has 12 apples and buys 30 more.",
            "--rollouts",
            "1",
            "--candidates",
            "2",
            "--max-step-tokens",
            "8",
            "--max-depth",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert (code, "answer:" in printed) in ((0, True), (1, False)) and ("no answer found" in printed) == (code == 1)
