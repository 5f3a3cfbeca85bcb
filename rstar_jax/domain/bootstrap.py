"""The scripted round-1 proposer of the embedded domain (docs/DESIGN.md §9).

It stands in for the paper's large bootstrap model: it knows each synthetic
problem's clause plan and writes the next step in the step format, but slips
at a configurable per-step rate that grows with the tier: a wrong operand, a
wrong operation, a skipped clause, or code that fails. Plain sampling then
solves few hard problems, and terminal-guided MCTS (which prunes failing code
and backs up correctness) is needed to find their solutions.

It reads the path it is asked to continue instead of keeping state, so any
path works: the next clause is the one after the last clause whose step is
sound (parses, and uses only names defined by earlier sound steps). A broken
last step is thus rewritten, unknown or repeated steps are tolerated.

``style="nl"`` writes the same solutions as natural-language steps for the
code-vs-NL ablation: the clause, then the arithmetic with the value stated by
the writer (``x = 23 + 4 * 12 = 71``), no code and no print step; the last step
is the answer. Nothing is executed, so the slip that makes code crash becomes a
silent arithmetic slip (a wrong stated value) that later steps build on.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import hashlib
import random
import re
from fractions import Fraction
from typing import Mapping, Sequence

from rstar_jax.data.problems import Problem, last_boxed
from rstar_jax.domain.synthetic import (
    FINAL_CODE,
    OPS,
    code_for,
    execute_trusted,
    operand_slips,
    plan_of,
    question_numbers,
    step_text,
)
from rstar_jax.search.types import Proposal, ProposalRequest, StepCandidate
from rstar_jax.steps import (
    END_OF_ANSWER,
    END_OF_CODE,
    END_OF_STEP,
    OUTPUT_CLOSE,
    OUTPUT_OPEN,
    answer_step,
    output_block,
    path_program,
)

_UNDEFINED_NAMES = ("total", "y", "count", "n")  # what a slip writes instead of ``x``
STYLES = ("code", "nl")
_NL_VALUE = re.compile(r"= (-?\d+(?:/\d+)?)\s*$")
_X = re.compile(r"\bx\b")


@dataclasses.dataclass(frozen=True)
class ErrorRates:
    """Per-step probabilities of each kind of slip (the rest is the correct step)."""

    wrong_operand: float = 0.0
    wrong_operation: float = 0.0
    skip: float = 0.0
    crash: float = 0.0

    def __post_init__(self) -> None:
        rates = dataclasses.astuple(self)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"error rates must lie in [0, 1] and sum to at most 1: {self}")

    @property
    def total(self) -> float:
        return sum(dataclasses.astuple(self))

    @classmethod
    def split(cls, p: float) -> "ErrorRates":
        """A per-step error rate ``p`` spread over the kinds in typical proportions."""
        return cls(wrong_operand=0.4 * p, wrong_operation=0.25 * p, skip=0.15 * p, crash=0.2 * p)


# Chosen so that plain sampling solves about 70% / 37% / 12% of tiers 1 / 2 / 3
# (a solution has n_ops + 1 slip-prone steps: the start value and each operation).
TIER_ERROR_RATES: tuple[float, ...] = (0.13, 0.20, 0.26)  # per-step error rate of tiers 1, 2, 3


def tier_error_rates(rates: Sequence[float] = TIER_ERROR_RATES) -> dict[int, ErrorRates]:
    """Per-tier ``ErrorRates`` from one total per-step error rate per tier (tier 1 first)."""
    return {tier: ErrorRates.split(p) for tier, p in enumerate(rates, start=1)}


DEFAULT_ERROR_RATES: Mapping[int, ErrorRates] = tier_error_rates()


@functools.lru_cache(maxsize=1 << 16)
def _step_info(step: str) -> tuple[str, frozenset[str], frozenset[str], bool]:
    """(clause of the comment, names read, names bound, parses) of one step's code."""
    code = step.split(OUTPUT_OPEN, 1)[0].rstrip()
    for marker in (END_OF_CODE, END_OF_STEP):
        code = code.removesuffix(marker)
    first = code.lstrip().split("\n", 1)[0]
    clause = first[1:].strip() if first.startswith("#") else ""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return clause, frozenset(), frozenset(), False
    loads, stores = set(), set()
    for stmt in tree.body:  # a name read before this statement binds it must already exist
        names = [n for n in ast.walk(stmt) if isinstance(n, ast.Name)]
        loads |= {n.id for n in names if isinstance(n.ctx, ast.Load)} - stores
        stores |= {n.id for n in names if isinstance(n.ctx, ast.Store)}
        stores |= {a.asname or a.name for n in ast.walk(stmt) if isinstance(n, ast.ImportFrom) for a in n.names}
    return clause, frozenset(loads), frozenset(stores), True


def next_clause(plan: Sequence[dict], steps: Sequence[str]) -> int:
    """Index in ``plan`` of the clause to write next: one past the last sound step's clause."""
    index = {p["clause"]: i for i, p in enumerate(plan)}
    defined: set[str] = set()
    done = -1
    for step in steps:
        clause, loads, stores, parses = _step_info(step)
        if parses and all(n in defined or hasattr(builtins, n) for n in loads):
            defined |= stores
            done = max(done, index.get(clause, -1))
    return done + 1


def _printed_value(step: str) -> str:
    """The last line the program printed, from the ``<output>`` block the host appended."""
    body = step.split(OUTPUT_OPEN, 1)[1].split(OUTPUT_CLOSE, 1)[0].strip()
    return body.rsplit("\n", 1)[-1].strip()


def _crash(code: str, rng: random.Random) -> str:
    """Code that fails when run: an undefined name, a missing import or a cut-off line."""
    if rng.random() < 0.5:
        return code.rsplit(" ", 1)[0] if " " in code else code + " +"  # SyntaxError
    if code.startswith("from fractions"):
        return code.split("\n", 1)[1]  # NameError: Fraction
    return code.replace("x = x", f"x = {rng.choice(_UNDEFINED_NAMES)}", 1)  # NameError


def nl_step(
    clause: str, template: str | None, args: Sequence[int], value: Fraction | None, slip: random.Random | None = None
) -> str:
    """A natural-language step: the clause, then ``x = <arithmetic> = <value>`` computed by the
    writer (``template``: an op's code over x; None for the start value, ``x = <value>``).
    ``slip`` states a wrong value for the right arithmetic (a misread start value)."""
    names = dict(zip("ab", args))
    if template is None:
        rhs, new = "", Fraction(args[0])
    else:
        rhs = template.split("=", 1)[1].strip()
        # Exact arithmetic: our own template evaluated over Fractions (1 / 2 must not become 0.5).
        new = eval(
            rhs.format(a="a", b="b"), {"__builtins__": {}}, {"x": value, **{k: Fraction(v) for k, v in names.items()}}
        )
        shown = str(value) if value.denominator == 1 and value >= 0 else f"({value})"
        rhs = _X.sub(shown, rhs.format(**names)) + " = "
    if slip is not None:
        new += slip.choice((-10, -1, 1, 10))
    return f"{clause}\nx = {rhs}{new}\n{END_OF_STEP}"


def nl_state(plan: Sequence[dict], steps: Sequence[str]) -> tuple[int, Fraction | None]:
    """(index in ``plan`` of the clause to write next, value stated last) of a natural-language path:
    the latest step that opens with a clause of the plan and states a value decides."""
    index = {p["clause"]: i for i, p in enumerate(plan)}
    done, value = -1, None
    for step in steps:
        lines = step.strip().split("\n")
        m = _NL_VALUE.search(lines[-2]) if len(lines) >= 3 else None
        if m and lines[0] in index:
            done, value = index[lines[0]], Fraction(m.group(1))
    return done + 1, value


class BootstrapProposer:
    """A deliberately imperfect step writer for synthetic problems (see module docstring).

    ``temperature`` is accepted for the Proposer protocol and ignored: the slip rates are the
    proposer's whole sampling distribution. ``style``: "code" (code-augmented steps) or "nl"."""

    def __init__(
        self,
        problems: Sequence[Problem],
        error_rates: Mapping[int, ErrorRates] = DEFAULT_ERROR_RATES,
        seed: int = 0,
        style: str = "code",
    ):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self._by_id = {p.id: p for p in problems}
        self._by_question = {p.question: p for p in problems}
        self._plans = {p.id: plan_of(p) for p in problems}  # fails early on non-synthetic problems
        missing = {p.meta.get("tier") for p in problems} - set(error_rates)
        if missing:
            raise ValueError(f"no error rates for tier(s) {sorted(missing, key=str)}")
        self.error_rates = dict(error_rates)
        self.seed, self.style = seed, style

    def problem(self, request: ProposalRequest) -> Problem:
        problem = self._by_id.get(request.problem_id) or self._by_question.get(request.question)
        if problem is None:
            raise KeyError(f"bootstrap proposer does not know problem {request.problem_id!r}")
        return problem

    def propose(
        self, requests: Sequence[ProposalRequest], k: int, *, temperature: float = 1.0, seed: int = 0
    ) -> Proposal:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return Proposal([[self._candidate(r, j, seed) for j in range(k)] for r in requests])

    def _candidate(self, request: ProposalRequest, j: int, seed: int) -> StepCandidate:
        # The PRNG depends only on what the protocol allows, never on the batch.
        key = repr((self.seed, seed, request.problem_id, request.sample_id, request.steps, j)).encode()
        rng = random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little"))
        text = self._next_step(self.problem(request), request.steps, rng)
        return StepCandidate(text=text, num_tokens=max(1, len(text) // 3))

    def _next_step(self, problem: Problem, steps: Sequence[str], rng: random.Random) -> str:
        last = steps[-1].rstrip() if steps else ""
        if last.endswith(END_OF_ANSWER):  # finished path: there is nothing new to say
            return last
        if END_OF_CODE in last:
            if OUTPUT_OPEN not in last:
                raise ValueError("final code step without <output>: append output_block before asking on")
            return answer_step(_printed_value(last))
        plan = self._plans[problem.id]
        i, value = nl_state(plan, steps) if self.style == "nl" else (next_clause(plan, steps), None)
        i = min(i, len(plan) - 1)
        write = functools.partial(self._write, plan, value=value)
        rates = self.error_rates[problem.meta["tier"]]
        u = rng.random()
        if i == len(plan) - 1 or u >= rates.total:
            return write(i, plan[i]["args"], None)
        op = plan[i]["op"]
        if u < rates.crash:
            return write(i, plan[i]["args"], None, slip=rng)
        if u < rates.crash + rates.skip and op != "init":
            return write(i + 1, plan[i + 1]["args"], None)
        if u >= rates.total - rates.wrong_operation and op != "init":
            return write(i, plan[i]["args"], rng.choice(OPS[op].wrong))
        # wrong operand (also what a skip or wrong operation becomes on the start value)
        args = list(plan[i]["args"])
        j = rng.randrange(len(args))
        args[j] = rng.choice(operand_slips(args[j], question_numbers(problem)))
        return write(i, args, None)

    def _write(
        self,
        plan: Sequence[dict],
        i: int,
        args: Sequence[int],
        template: str | None,
        value: Fraction | None = None,
        slip: random.Random | None = None,
    ) -> str:
        """Step i of the plan; ``slip``: code that crashes, or in NL a wrongly stated value."""
        p = plan[i]
        if self.style == "nl":
            if p["op"] == "final":
                return answer_step(str(value))
            template = template or (None if p["op"] == "init" else OPS[p["op"]].code)
            return nl_step(p["clause"], template, args, value, slip)
        if p["op"] == "final":
            return step_text(p["clause"], FINAL_CODE, final=True)
        code = code_for(p["op"], args, template)
        return step_text(p["clause"], _crash(code, slip) if slip else code)


def sample_solution(proposer: BootstrapProposer, problem: Problem, seed: int, max_steps: int = 32) -> list[str]:
    """One chain of the proposer's own first candidates, run like the search would run it.

    The final program is executed in-process: fine for this scripted proposer's code only."""
    steps: list[str] = []
    while len(steps) < max_steps:
        request = ProposalRequest(problem.id, problem.question, tuple(steps))
        text = proposer.propose([request], 1, seed=seed).candidates[0][0].text
        if text.rstrip().endswith(END_OF_ANSWER):
            return steps + [text]
        if text.rstrip().endswith(END_OF_CODE):
            try:
                out = execute_trusted(path_program(steps + [text]))
            except Exception as e:  # the search would end this branch here
                return steps + [text + output_block(f"{type(e).__name__}: {e}")]
            text += output_block(out)
        steps.append(text)
    return steps


def is_correct(steps: Sequence[str], problem: Problem) -> bool:
    """Whether a chain ends with an answer step equal (as a fraction) to the gold answer."""
    if not steps or not steps[-1].rstrip().endswith(END_OF_ANSWER):
        return False
    try:
        return Fraction(last_boxed(steps[-1]) or "") == Fraction(problem.answer)
    except (ValueError, ZeroDivisionError):
        return False


def solve_rate(
    proposer: BootstrapProposer, problems: Sequence[Problem], samples: int, seed: int = 0
) -> dict[int, float]:
    """Per tier, the share of sampled chains (``samples`` per problem, no search) that are correct."""
    hits: dict[int, list[int]] = {}
    for problem in problems:
        h = hits.setdefault(problem.meta["tier"], [0, 0])
        for s in range(samples):
            h[0] += is_correct(sample_solution(proposer, problem, seed + s), problem)
            h[1] += 1
    return {tier: h / n for tier, (h, n) in sorted(hits.items())}
