"""`rstar-jax eval` on the benchmark files: every method and answer selection, the per-benchmark report
(accuracy, 95% Wilson interval, tokens, wall time), --limit / --shuffle-seed, and bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rstar_jax import cli
from rstar_jax.data.problems import load_problems
from rstar_jax.evolve.benchmarks import select_problems, wilson_interval
from rstar_jax.grading import is_equiv
from rstar_jax.search.answers import choose_answer
from rstar_jax.search.records import read_records
from tests.demo_policy import gsm8k_models

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared/data not present")
GSM8K, MATH500 = DATA / "gsm8k" / "test.jsonl", DATA / "math500" / "test.jsonl"


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 20), (7, 20), (20, 20), (13, 500), (250, 500)])
def test_wilson_interval_matches_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-9) and hi == pytest.approx(ref.high, abs=1e-9)
    assert lo <= k / n <= hi


def test_select_problems_shuffles_then_limits():
    items = list(range(50))
    assert select_problems(items, 5) == items[:5] and select_problems(items) == items
    a, b = select_problems(items, 10, shuffle_seed=1), select_problems(items, 10, shuffle_seed=2)
    assert a == select_problems(items, 10, shuffle_seed=1) and a != b and a != items[:10]
    assert len(set(a)) == 10 and set(select_problems(items, None, shuffle_seed=1)) == set(items)
    assert select_problems(items, 50, shuffle_seed=1)[:10] == a  # the limit cuts one fixed permutation


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    if not DATA.exists():
        pytest.skip("shared/data not present")
    return gsm8k_models(str(tmp_path_factory.getbasetemp()), str(GSM8K))


@needs_data
def test_eval_report_on_benchmark_files(models, tmp_path, capsys):
    problem, policy, ppm = models
    out = tmp_path / "eval"
    # a shuffle that keeps GSM8K's first problem (the one the policy solves) among the two evaluated
    everything = load_problems(GSM8K)
    seed = next(s for s in range(10_000) if problem in select_problems(everything, 2, s))
    argv = ["eval", "--policy", policy, "--ppm", ppm, "--data", str(GSM8K), str(MATH500), "--limit", "2"]
    argv += ["--method", "all", "--out", str(out), "--shuffle-seed", str(seed), "--seed", "1"]
    argv += ["mcts.rollouts=2", "mcts.candidates=2", "mcts.max_step_tokens=40", "mcts.max_depth=4", "max_chains=2"]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert set(report["benchmarks"]) == {"gsm8k/test", "math500/test"}
    for name, path in (("gsm8k/test", GSM8K), ("math500/test", MATH500)):
        rows = {r["key"]: r for r in report["rows"] if r["benchmark"] == name}
        assert set(rows) == {
            "policy_greedy_acc",
            "mcts_ppm_acc",
            "mcts_ppm_majority_acc",
            "mcts_ppm_weighted_acc",
            "bon_orm_acc",
            "sc_acc",
        }
        folder = out / name.replace("/", "_")
        gold = {p.id: p.answer for p in load_problems(path)}  # the file read again: the reference golds
        records = {m: read_records(folder / f"{m}.jsonl") for m in ("greedy", "mcts", "chains")}
        expected = [p.id for p in select_problems(load_problems(path), 2, seed)]
        assert all([r.problem_id for r in recs] == expected for recs in records.values())
        chosen = {
            "policy_greedy_acc": ("greedy", "best"),
            "mcts_ppm_acc": ("mcts", "best"),
            "mcts_ppm_majority_acc": ("mcts", "majority"),
            "mcts_ppm_weighted_acc": ("mcts", "weighted"),
            "bon_orm_acc": ("chains", "best"),
            "sc_acc": ("chains", "majority"),
        }
        for key, (method, how) in chosen.items():
            picks = [(choose_answer(r, how), gold[r.problem_id]) for r in records[method]]
            correct = sum(c is not None and is_equiv(c.answer, g) for c, g in picks)
            row = rows[key]
            assert row["problems"] == 2 and row["correct"] == correct and row["accuracy"] == correct / 2
            assert row["ci95"] == list(wilson_interval(correct, 2))
            assert row["tokens_per_problem"] > 0 and row["seconds"] > 0
            assert row["method"] in md
        assert name in md
    gsm8k = {r["key"]: r for r in report["rows"] if r["benchmark"] == "gsm8k/test"}
    greedy = read_records(out / "gsm8k_test" / "greedy.jsonl")
    solved = next(r for r in greedy if r.problem_id == problem.id)
    assert is_equiv(choose_answer(solved, "best").answer, "18")  # the trained policy's real answer
    assert gsm8k["policy_greedy_acc"]["correct"] >= 1
    assert report["settings"]["limit"] == 2 and report["settings"]["eval"]["mcts"]["candidates"] == 2


@needs_data
def test_the_few_shot_block_reaches_the_model(models):
    """The proposer runs the policy on prefix + prompt: its prefill grows by exactly the tokens the block adds."""
    from rstar_jax.data.fewshot import load_few_shot
    from rstar_jax.models.tokenizer import load_tokenizer
    from rstar_jax.search.config import SearchConfig
    from rstar_jax.search.loading import load_policy
    from rstar_jax.search.types import ProposalRequest
    from rstar_jax.steps import build_prompt

    problem, policy, _ = models
    prefix, tok = load_few_shot("builtin"), load_tokenizer(policy)
    request = ProposalRequest(problem.id, problem.question, (), (0, 0))
    prefill = {}
    for name, text in (("plain", ""), ("few_shot", prefix)):
        proposer = load_policy(policy, SearchConfig(max_step_tokens=4), prompt_prefix=text)
        prefill[name] = proposer.propose([request], 1, temperature=0.0, seed=0).prefill_tokens
    n = [len(tok(t)["input_ids"]) for t in (build_prompt(problem.question), prefix + build_prompt(problem.question))]
    assert prefill["few_shot"] - prefill["plain"] == n[1] - n[0] > 100


@needs_data
def test_few_shot_prompt_from_the_command_line(models, tmp_path, capsys):
    """``--few-shot builtin`` puts our demonstrations before the question: the policy taught to answer
    after them solves the problem through ``solve`` and ``eval``."""
    problem, policy, _ = models
    argv = ["solve", "--policy", policy, "--few-shot", "builtin", "--question", problem.question]
    assert cli.main([*argv, "--rollouts", "1", "--candidates", "1", "--max-step-tokens", "48"]) == 0
    assert is_equiv(capsys.readouterr().out.rpartition("answer: ")[2].split()[0], problem.answer)
    out = tmp_path / "eval"
    argv = ["eval", "--policy", policy, "--few-shot", "builtin", "--data", str(GSM8K), "--limit", "1"]
    assert cli.main([*argv, "--out", str(out), "mcts.max_step_tokens=48", "mcts.max_depth=4"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["few_shot"] == "builtin" and report["rows"][0]["correct"] == 1


@needs_data
def test_eval_refuses_bad_inputs_and_writes_nothing(models, tmp_path, capsys):
    _, policy, _ = models
    no_tok = tmp_path / "no_tokenizer"
    shutil.copytree(policy, no_tok, ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json"))
    out = tmp_path / "out"
    assert cli.main(["eval", "--policy", str(no_tok), "--data", str(GSM8K), "--limit", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(no_tok) in err and "tokenizer" in err and err.count("\n") == 1 and not out.exists()

    unanswerable = tmp_path / "numina.jsonl"
    unanswerable.write_text(json.dumps({"problem": "What is 2+2?", "solution": "It is four."}) + "\n")
    assert cli.main(["eval", "--policy", policy, "--data", str(unanswerable), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{unanswerable}:1" in err and "no answer" in err and not out.exists()
    assert cli.main(["eval", "--policy", policy, "--data", str(GSM8K), "--limit", "0", "--out", str(out)]) == 2
    assert "--limit" in capsys.readouterr().err and not out.exists()
