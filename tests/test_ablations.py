"""Ablation scripts 2-4 end to end in --quick mode on a tiny evolve run, their own selection logic,
and the natural-language variant of the bootstrap proposer (with the NoExecution stand-in)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from fractions import Fraction

import pytest

from rstar_jax.domain.bootstrap import BootstrapProposer, ErrorRates, is_correct, nl_state, sample_solution
from rstar_jax.domain.synthetic import OPS, TIER_OPS, generate_problems, plan_of
from rstar_jax.search.expand import NoExecution, expand
from rstar_jax.search.records import NodeRecord, TreeRecord
from rstar_jax.search.types import ProposalRequest, StepCandidate
from rstar_jax.steps import END_OF_CODE, OUTPUT_OPEN, answer_step, step_code
from rstar_jax.train.examples import Continuation, PairGroup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = generate_problems(100, 2, seed=5)
PERFECT = {t: ErrorRates() for t in TIER_OPS}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny self-evolution round; enough rollouts (and a looser edit-distance filter) that
    some problems have pairs to hold out; only greedy evaluation (the scripts do their own)."""
    from rstar_jax.evolve import driver as evolve
    from tests.test_evolve import tiny_config

    out = str(tmp_path_factory.mktemp("ablation_run"))
    evolve.run(
        tiny_config("rounds=1", "bootstrap_search.rollouts=6", "extract.min_edit_distance=3", "eval.methods=[greedy]"),
        out,
    )
    return out


def _outputs(out, name: str) -> dict:
    for ext in ("md", "json", "png"):
        assert (out / f"{name}.{ext}").stat().st_size > 0, ext
    saved = json.loads((out / f"{name}.json").read_text())
    assert "(seed 0)" in (out / f"{name}.md").read_text() and saved["meta"]["args"]["quick"] is True
    return saved


def _share(x) -> bool:
    return x is None or 0.0 <= x <= 1.0


# --- the scripts end to end ---------------------------------------------------------------------
def test_reward_models_quick(run_dir, tmp_path):
    out = tmp_path / "rm"
    result = _script("reward_models").main(["--run", run_dir, "--out", str(out), "--quick"])
    saved = _outputs(out, "reward_models")
    assert list(saved["models"]) == ["ppm", "pqm", "orm"] == list(result["models"])
    assert result["train_pairs"] > 0 and result["heldout_pairs"] > 0
    for kind, m in result["models"].items():
        acc = m["pair_acc"]
        assert acc["all"] is not None and all(_share(acc[k]) for k in ("all", "step", "final")), kind
        assert 0 < acc["pairs"] <= result["heldout_pairs"]
        assert 0.0 <= m["mcts"]["acc"] <= 1.0 and m["mcts"]["tokens"] > 0
        assert (out / "models" / kind / "hf" / "model.safetensors").exists()
        assert not (out / "models" / kind / "ckpt").exists()
    assert len({m["pair_acc"]["pairs"] for m in result["models"].values()}) == 1  # the same held-out pairs


def test_sft_source_quick(run_dir, tmp_path):
    out = tmp_path / "sft"
    result = _script("sft_source").main(["--run", run_dir, "--out", str(out), "--quick", "--mcts"])
    _outputs(out, "sft_source")
    mcts, rs = result["sources"]["mcts"], result["sources"]["rejection"]
    assert mcts["data"]["examples"] == rs["data"]["examples"] > 0
    assert mcts["data"]["with_failed_steps"] == 0.0  # the standard extraction keeps fully valid paths
    for s in (mcts, rs):
        assert 0.0 <= s["greedy"]["acc"] <= 1.0 and 0.0 <= s["mcts"]["acc"] <= 1.0
        assert s["data"]["gen_tokens"] > 0
    for src in ("mcts", "rejection"):
        lines = (out / "data" / f"sft_{src}.jsonl").read_text().splitlines()
        assert len(lines) == mcts["data"]["examples"]


def test_code_vs_nl_quick(run_dir, tmp_path):
    out = tmp_path / "cvn"
    result = _script("code_vs_nl").main(["--run", run_dir, "--out", str(out), "--quick"])
    _outputs(out, "code_vs_nl")
    assert list(result["styles"]) == ["code", "nl"]
    for s in result["styles"].values():
        assert s["sft_examples"] > 0 and s["search_tokens"] > 0
        assert all(0.0 <= x <= 1.0 for x in (s["train_solved"], s["generator_chain"]["acc"], s["policy_greedy"]["acc"]))
    nl = [json.loads(x)["solution"] for x in (out / "data" / "sft_nl.jsonl").read_text().splitlines()]
    assert nl and not any(END_OF_CODE in t or OUTPUT_OPEN in t for t in nl)
    code = (out / "data" / "sft_code.jsonl").read_text()
    assert END_OF_CODE in code and OUTPUT_OPEN in code


# --- the scripts' own logic ---------------------------------------------------------------------
def _group(pid: str, kind: str, pos: str, neg: str) -> PairGroup:
    return PairGroup(pid, kind, "P:", "", 0, (Continuation(pos, 1.0, 1),), (Continuation(neg, -1.0, 2),), ((0, 0),))


def test_split_pairs_holds_out_whole_problems():
    split_pairs = _script("reward_models").split_pairs
    groups = [_group(f"p{i}", kind, "a" * i, "b") for i in range(5) for kind in ("step", "final")]
    train, held = split_pairs(groups, 0.2, seed=0)
    assert len({g.problem_id for g in held}) == 1 and len(held) == 2
    assert not {g.problem_id for g in held} & {g.problem_id for g in train}
    assert sorted(map(id, train + held)) == sorted(map(id, groups))
    assert split_pairs(groups, 0.2, seed=0) == (train, held)
    with pytest.raises(SystemExit, match="too few pairs"):
        split_pairs([g for g in groups if g.kind == "step"], 0.2, seed=0)  # nothing to train an ORM on


def test_pair_accuracy_counts_each_kind():
    class LengthScorer:  # scores a text by its length
        max_len = 8

        def encode(self, text):
            return list(text)

        def score(self, texts):
            return [len(t) for t in texts]

    groups = [
        _group("a", "step", "xxx", "x"),
        _group("b", "step", "x", "xx"),
        _group("c", "final", "xx", "x"),
        _group("d", "final", "x" * 20, "x"),
    ]  # too long: left out
    acc = _script("reward_models").pair_accuracy(LengthScorer(), groups)
    assert acc == {"all": 2 / 3, "step": 0.5, "final": 1.0, "pairs": 3, "texts_too_long": 1}


def _node(i: int, parent: int, text: str, valid: bool = True, correct: bool | None = None) -> NodeRecord:
    answer = None if correct is None else "1"
    return NodeRecord(
        i, parent, 0 if i == 0 else 1, text, 0.0, 1, None, None, correct is not None, valid, answer, correct, 1
    )


def test_rejection_examples_filter_on_the_final_answer_only():
    nodes = [
        _node(0, -1, ""),
        _node(1, 0, "bad ", valid=False),
        _node(2, 1, "right", correct=True),
        _node(3, 0, "ok "),
        _node(4, 3, "wrong", correct=False),
        _node(5, 0, "bad "),
        _node(6, 5, "right", correct=True),
        _node(7, 0, "other "),
        _node(8, 7, "right", correct=True),
        _node(9, 0, "more "),
        _node(10, 9, "right", correct=True),
    ]
    rec = TreeRecord("p", "What?", "1", nodes)
    module = _script("sft_source")
    examples = module.rejection_examples([rec], per_problem=2)
    assert [e.solution for e in examples] == ["bad right", "other right"]  # failed step kept, duplicate not
    assert examples[0].nodes == (0, 1, 2)
    stats = module.data_stats(examples, [rec])
    assert stats == {"examples": 2, "problems": 1, "with_failed_steps": 0.5}


# --- the natural-language bootstrap style --------------------------------------------------------
def _running_values(problem) -> list[Fraction]:
    plan = plan_of(problem)
    values = [Fraction(plan[0]["args"][0])]
    for p in plan[1:-1]:
        values.append(OPS[p["op"]].fn(values[-1], *p["args"]))
    return values


def test_perfect_nl_solution_states_every_running_value():
    proposer = BootstrapProposer(PROBLEMS, PERFECT, style="nl")
    for problem in PROBLEMS[:20]:
        steps = sample_solution(proposer, problem, seed=0)
        plan = plan_of(problem)
        assert is_correct(steps, problem) and len(steps) == len(plan)  # no print step: the answer ends it
        assert [nl_state(plan, steps[: i + 1])[1] for i in range(len(steps) - 1)] == _running_values(problem)
        for step in steps[:-1]:
            assert END_OF_CODE not in step and OUTPUT_OPEN not in step
            with pytest.raises(SyntaxError):  # text, not code: running it would fail every step
                compile(step_code(step), "<nl>", "exec")


@pytest.mark.parametrize("rates", [ErrorRates(crash=0.15), ErrorRates.split(0.2)])
def test_nl_slips_make_a_chain_wrong_at_the_configured_rate(rates):
    proposer = BootstrapProposer(PROBLEMS, {t: rates for t in TIER_OPS}, style="nl")
    hits = [is_correct(sample_solution(proposer, p, seed=s), p) for p in PROBLEMS for s in range(2)]
    expected = sum((1 - rates.total) ** (len(plan_of(p)) - 1) for p in PROBLEMS) / len(PROBLEMS)
    sd = math.sqrt(expected * (1 - expected) / len(hits))
    assert abs(sum(hits) / len(hits) - expected) <= 4 * sd + 0.01


def test_nl_crash_slip_is_a_silent_arithmetic_error_later_steps_build_on():
    problem = PROBLEMS[0]
    good = sample_solution(BootstrapProposer(PROBLEMS, PERFECT, style="nl"), problem, seed=0)
    slipper = BootstrapProposer(PROBLEMS, {t: ErrorRates(crash=1.0) for t in TIER_OPS}, style="nl")

    def ask(proposer, steps):
        return (
            proposer.propose(
                [ProposalRequest(problem.id, "", tuple(steps))],
                1,  # noqa: E731
                temperature=1.0,
                seed=0,
            )
            .candidates[0][0]
            .text
        )

    slipped = ask(slipper, good[:1])
    expr, value = slipped.split("\n")[1].rsplit(" = ", 1)
    assert expr == good[1].split("\n")[1].rsplit(" = ", 1)[0]  # the right arithmetic ...
    assert Fraction(value) - _running_values(problem)[1] in (-10, -1, 1, 10)  # ... a wrong stated value
    after = ask(BootstrapProposer(PROBLEMS, PERFECT, style="nl"), good[:1] + [slipped])
    assert after.split("\n")[0] == good[2].split("\n")[0] and f"x = {value} " in after  # builds on it


def test_nl_state_reads_any_path():
    problem = PROBLEMS[3]
    plan = plan_of(problem)
    good = sample_solution(BootstrapProposer(PROBLEMS, PERFECT, style="nl"), problem, seed=0)
    values = _running_values(problem)
    assert nl_state(plan, []) == (0, None)
    assert nl_state(plan, good[:2]) == (2, values[1])
    assert nl_state(plan, good[:2] + ["Something else.\nx = 5\n<end_of_step>"]) == (2, values[1])  # foreign
    assert nl_state(plan, [good[0], good[2]]) == (3, values[2])  # after a skip
    with pytest.raises(ValueError, match="style"):
        BootstrapProposer(PROBLEMS, style="latex")


def test_no_execution_keeps_nl_steps_and_grades_answers():
    problem = PROBLEMS[0]
    steps = sample_solution(BootstrapProposer(PROBLEMS, PERFECT, style="nl"), problem, seed=0)
    cands = [
        [StepCandidate(steps[0], 5)],
        [StepCandidate(answer_step(problem.answer), 3), StepCandidate(answer_step("12345"), 3)],
    ]
    kids = expand([[], []], cands, [problem.answer, problem.answer], NoExecution(), 1)
    step = kids[0][0]
    assert step.valid and not step.terminal and step.output == "" and step.text == steps[0]
    assert [k.correct for k in kids[1]] == [True, False]
