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
    bench = out / rel.replace(".jsonl", "").replace("/", "_")
    metrics = json.loads((bench / "metrics.json").read_text())
    assert metrics["problems"] == 20 and 0.0 <= metrics["policy_greedy_acc"] <= 1.0
    records = read_records(bench / "greedy.jsonl")
    assert len(records) == 20 and all(r.gold for r in records)  # gold answers were parsed from the file


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """A synthetic problem and a policy (+ PPM) trained on its reference solution: it solves it."""
    from rstar_jax.domain import reference_solution
    from tests.demo_policy import trained_policy, trained_ppm

    problem = generate_problems(1, 1, seed=5)[0]
    steps = reference_solution(problem)
    root = tmp_path_factory.mktemp("taught")
    policy = trained_policy(str(root / "policy"), [("", problem, steps)])
    wrong = steps[0].replace("Fraction(", "Fraction(1 + ")
    return problem, policy, trained_ppm(str(root / "ppm"), policy, problem, steps[0], wrong)


def _solve_output(capsys) -> tuple[str, str]:
    printed = capsys.readouterr().out
    trajectory, _, tail = printed.rpartition("\nanswer: ")
    return trajectory, tail.split()[0]


def test_solve_prints_a_correct_trajectory_and_answer(taught, capsys):
    from rstar_jax.grading import is_equiv
    from rstar_jax.steps import build_prompt

    problem, policy, _ = taught
    argv = ["solve", "--policy", policy, "--question", problem.question, "--rollouts", "2", "--candidates", "2"]
    assert cli.main([*argv, "--max-step-tokens", "64", "--max-depth", "10"]) == 0
    trajectory, answer = _solve_output(capsys)
    assert is_equiv(answer, problem.answer), (answer, problem.answer)
    assert "<end_of_code>" in trajectory and "<output>" in trajectory and f"\\boxed{{{answer}}}" in trajectory
    assert build_prompt(problem.question) not in trajectory  # the steps, not the prompt


def test_solve_with_an_evolve_run_folder(taught, tmp_path, capsys):
    """``--run``: the last round's policy and PPM of an evolve run (as the demo leaves them)."""
    from rstar_jax.grading import is_equiv

    problem, policy, ppm = taught
    for r, (pol, rm) in enumerate([(policy, ppm), (policy, ppm)], start=1):
        os.makedirs(tmp_path / f"round{r}" / "policy")
        os.makedirs(tmp_path / f"round{r}" / "ppm")
        os.symlink(pol, tmp_path / f"round{r}" / "policy" / "hf")
        os.symlink(rm, tmp_path / f"round{r}" / "ppm" / "hf")
    argv = ["solve", "--run", str(tmp_path), "--question", problem.question, "--rollouts", "2", "--candidates", "2"]
    assert cli.main([*argv, "--max-step-tokens", "64", "--max-depth", "10"]) == 0
    _, answer = _solve_output(capsys)
    assert is_equiv(answer, problem.answer)
    assert cli.main(["solve", "--run", str(tmp_path / "round1"), "--question", "q"]) == 2
    assert "no finished round" in capsys.readouterr().err
    assert cli.main(["solve", "--question", "q"]) == 2
    assert "--policy" in capsys.readouterr().err
