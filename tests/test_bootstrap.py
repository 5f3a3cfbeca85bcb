"""The scripted bootstrap proposer: configured slip rates are realised, results do not depend
on the batch, and any path (its own slips, duplicates, foreign steps) is continued sensibly."""

from __future__ import annotations

import math
import time

import pytest

from rstar_jax.data.problems import Problem
from rstar_jax.domain.bootstrap import (
    DEFAULT_ERROR_RATES,
    BootstrapProposer,
    ErrorRates,
    is_correct,
    next_clause,
    sample_solution,
    solve_rate,
)
from rstar_jax.domain.synthetic import (
    TIER_OPS,
    execute_trusted,
    generate_problems,
    plan_of,
    reference_solution,
)
from rstar_jax.search.types import ProposalRequest
from rstar_jax.steps import END_OF_CODE, answer_step, output_block, path_program

PROBLEMS = {t: generate_problems(150, t, seed=11) for t in TIER_OPS}
PERFECT = {t: ErrorRates() for t in TIER_OPS}


def _expected_rate(problems: list[Problem], p: float) -> float:
    """Correct iff each slip-prone step (start value + every operation) is written right."""
    return sum((1 - p) ** (len(plan_of(q)) - 1) for q in problems) / len(problems)


def _check_rates(error_rates, samples: int = 4) -> None:
    for tier, problems in PROBLEMS.items():
        measured = solve_rate(BootstrapProposer(problems, error_rates), problems, samples)[tier]
        expected = _expected_rate(problems, error_rates[tier].total)
        sd = math.sqrt(expected * (1 - expected) / (len(problems) * samples))
        assert abs(measured - expected) <= 4 * sd + 0.01, (tier, measured, expected)


def test_default_rates_make_search_necessary():
    rates = {t: solve_rate(BootstrapProposer(p), p, samples=2)[t] for t, p in PROBLEMS.items()}
    assert 0.6 <= rates[1] <= 0.8 and 0.27 <= rates[2] <= 0.47 and 0.06 <= rates[3] <= 0.2, rates
    _check_rates(DEFAULT_ERROR_RATES)


@pytest.mark.parametrize("kind", ["wrong_operand", "wrong_operation", "skip", "crash"])
def test_each_slip_kind_makes_a_solution_wrong_at_its_rate(kind):
    _check_rates({t: ErrorRates(**{kind: 0.1 * t}) for t in TIER_OPS}, samples=2)


def test_perfect_proposer_writes_the_reference_solution():
    for problem in PROBLEMS[3][:20]:
        steps = sample_solution(BootstrapProposer(PROBLEMS[3], PERFECT), problem, seed=0)
        assert steps == reference_solution(problem) and is_correct(steps, problem)


def _first_step(kind: str) -> tuple[str, str, Problem]:
    problem = PROBLEMS[2][0]
    reference = reference_solution(problem)
    proposer = BootstrapProposer(PROBLEMS[2], {t: ErrorRates(**{kind: 1.0}) for t in TIER_OPS})
    request = ProposalRequest(problem.id, problem.question, (reference[0],))
    return proposer.propose([request], 1, temperature=1.0, seed=0).candidates[0][0].text, reference[1], problem


def test_slips_look_as_intended():
    crash, good, problem = _first_step("crash")
    assert crash.split("\n")[0] == good.split("\n")[0] and crash != good
    with pytest.raises((NameError, SyntaxError)):
        execute_trusted(path_program(reference_solution(problem)[:1] + [crash]))
    operand, good, _ = _first_step("wrong_operand")
    assert operand.split("\n")[0] == good.split("\n")[0] and operand != good
    operation, good, _ = _first_step("wrong_operation")
    assert operation.split("\n")[0] == good.split("\n")[0] and operation != good
    skipped, _, problem = _first_step("skip")
    assert skipped == reference_solution(problem)[2]


def test_results_do_not_depend_on_the_batch():
    problems = PROBLEMS[3][:6]
    proposer = BootstrapProposer(problems)
    requests = [
        ProposalRequest(p.id, p.question, tuple(reference_solution(p)[:i]), node=(i, 0)) for i, p in enumerate(problems)
    ]
    together = proposer.propose(requests, 5, temperature=0.7, seed=3).candidates
    alone = [proposer.propose([r], 5, temperature=0.7, seed=3).candidates[0] for r in requests]
    reversed_ = proposer.propose(requests[::-1], 5, temperature=0.7, seed=3).candidates[::-1]
    assert together == alone == reversed_
    assert BootstrapProposer(problems).propose(requests, 5, temperature=0.7, seed=3).candidates == together
    other_seed = proposer.propose(requests, 5, temperature=0.7, seed=4).candidates
    assert other_seed != together
    assert all(c.num_tokens >= 1 and c.finish_reason == "stop" for cs in together for c in cs)


def test_continues_unexpected_paths():
    problem = PROBLEMS[3][1]
    ref = reference_solution(problem)
    plan = plan_of(problem)
    assert next_clause(plan, []) == 0
    assert next_clause(plan, [ref[0], ref[0], ref[1], ref[1]]) == 2  # duplicates
    assert next_clause(plan, [ref[0], "# something else\ny = 3\n<end_of_step>"]) == 1  # foreign step
    broken = ref[1].replace("x = x", "x = total", 1)
    assert next_clause(plan, [ref[0], broken]) == 1  # rewrite a failing step
    assert next_clause(plan, [ref[0].replace("from fractions import Fraction\n", ""), ref[1]]) == 0
    assert next_clause(plan, [ref[0], ref[2]]) == 3  # after a skip
    proposer = BootstrapProposer(PROBLEMS[3], PERFECT)

    def ask(steps):
        return (
            proposer.propose([ProposalRequest(problem.id, "", tuple(steps))], 1, temperature=1.0, seed=0)
            .candidates[0][0]
            .text
        )

    assert ask([ref[0], broken]) == ref[1]
    assert ask(ref[:-2]) == ref[-2].split(END_OF_CODE)[0] + END_OF_CODE
    final_wrong = ref[-2].split(END_OF_CODE)[0] + END_OF_CODE + output_block("12345")
    assert ask(ref[:-2] + [final_wrong]) == answer_step("12345")  # reads what was printed
    assert ask(ref) == ref[-1]
    with pytest.raises(ValueError, match="output"):
        ask(ref[:-2] + [ref[-2].split(END_OF_CODE)[0] + END_OF_CODE])
    with pytest.raises(KeyError, match="does not know"):
        proposer.propose([ProposalRequest("nope", "nope", ())], 1, temperature=1.0, seed=0)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="not a synthetic problem"):
        BootstrapProposer([Problem("g", "What is 1+1?", "2", {})])
    with pytest.raises(ValueError, match="tier"):
        BootstrapProposer(PROBLEMS[3], {1: ErrorRates()})
    with pytest.raises(ValueError, match="sum to at most 1"):
        ErrorRates(crash=0.7, skip=0.5)


def test_proposals_are_cheap():
    problems = PROBLEMS[3][:50]
    proposer = BootstrapProposer(problems)
    requests = [ProposalRequest(p.id, p.question, tuple(reference_solution(p)[:4])) for p in problems]
    start = time.perf_counter()
    proposer.propose(requests, 40, temperature=1.0, seed=0)
    rate = 2000 / (time.perf_counter() - start)
    assert rate > 2000, f"{rate:.0f} proposals/s"
