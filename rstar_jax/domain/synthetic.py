"""The embedded demo domain (docs/DESIGN.md §9): multi-step arithmetic word problems.

A problem is a chain of clauses about one quantity ("Maya has 23 apples. She buys
4 packs of 12 apples each. ..."); its reference solution has one code step per
clause, each restating the clause as a comment and updating one running variable
``x``. Values are exact ``Fraction``s, so answers are integers or fractions such as ``7/3``.

Why wrong solutions rarely hit the gold answer: every operation is an injective
function of ``x`` (no floor division, no modulo), no operand is 0 or 1, and values
stay in [10, 9999], so one wrong operand, operation or skipped clause changes the
final value; ``coincidence_rate`` measures what is left. Tiers count operations:
1 = 1-2, 2 = 3-4, 3 = 5-7.

Clauses are labelled "(1) ... (2) ..." in the question and in the step comments, so the
next clause to copy is found by its label (why: docs/DEMO_LOG.md, "Why the code is as it is").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import math
import random
import re
from fractions import Fraction
from typing import Callable, Sequence

from rstar_jax.data.problems import Problem
from rstar_jax.steps import END_OF_CODE, END_OF_STEP, answer_step, output_block, path_program

TIER_OPS: dict[int, tuple[int, int]] = {1: (1, 2), 2: (3, 4), 3: (5, 7)}
MIN_VALUE, MAX_VALUE = 10, 9999  # keeps chains away from small numbers and long digit strings
MAX_DENOMINATOR = 12
LABEL = re.compile(r"\(\d+\) ")  # a clause label, "(3) "
INIT_CODE = "from fractions import Fraction\nx = Fraction({a})"
FINAL_CODE = "print(x)"

NAMES: tuple[tuple[str, str], ...] = (
    ("Tom", "He"),
    ("Maya", "She"),
    ("Liam", "He"),
    ("Ava", "She"),
    ("Noah", "He"),
    ("Emma", "She"),
    ("Omar", "He"),
    ("Zoe", "She"),
    ("Ravi", "He"),
    ("Lena", "She"),
    ("Ben", "He"),
    ("Nora", "She"),
    ("Sam", "He"),
    ("Ivy", "She"),
    ("Leo", "He"),
    ("Mia", "She"),
)


@dataclasses.dataclass(frozen=True)
class Theme:
    noun: str  # "liters of juice": after a number
    short: str  # "juice": after "the"
    continuous: bool  # may hold fractional amounts


THEMES: tuple[Theme, ...] = tuple(
    Theme(n, n, False)
    for n in (
        "apples",
        "marbles",
        "stickers",
        "books",
        "cookies",
        "cards",
        "pencils",
        "stamps",
        "coins",
        "shells",
    )
) + (
    Theme("liters of juice", "juice", True),
    Theme("kilograms of flour", "flour", True),
    Theme("meters of rope", "rope", True),
    Theme("cups of rice", "rice", True),
)
INIT_PHRASES = ("{N} has {a} {n}.", "{N} starts with {a} {n}.", "{N} owns {a} {n}.")
QUESTION_PHRASES = ("How many {n} does {N} have now?", "How many {n} does {N} have in the end?")
LEFT_QUESTION = "How many {n} are left?"  # only after an operation that takes some away
TAKING_OPS = frozenset({"sub", "sub_groups", "sub_part", "div"})


@dataclasses.dataclass(frozen=True)
class Op:
    """One operation on the running value: code, exact semantics, wordings and typical slips."""

    code: str  # template over {a}, {b}
    fn: Callable[..., Fraction]  # (x, *args) -> new x
    sample: Callable[[random.Random, Fraction], tuple[int, ...] | None]
    phrases: tuple[str, ...]  # over {P} pronoun, {n}/{s} noun, {a}, {b}
    special: dict[tuple[int, ...], str]  # idiomatic wording for particular args
    wrong: tuple[str, ...]  # plausible wrong operations, same args


def _ints(lo: int, hi: int) -> Callable[[random.Random, Fraction], tuple[int, ...] | None]:
    return lambda rng, x: (rng.randint(lo, hi),)


def _sub_amount(rng: random.Random, x: Fraction) -> tuple[int, ...] | None:
    hi = min(99, math.floor(x) - MIN_VALUE)
    return (rng.randint(2, hi),) if hi >= 2 else None


def _groups(rng: random.Random, x: Fraction) -> tuple[int, ...] | None:
    a, b = rng.randint(2, 9), rng.randint(2, 20)
    return None if a == b == 2 else (a, b)  # 2*2 == 2+2 would make a slip invisible


def _part(rng: random.Random, x: Fraction) -> tuple[int, ...] | None:
    b = rng.randint(2, 10)
    a = rng.randint(1, b - 1)
    return (a, b) if math.gcd(a, b) == 1 else None


OPS: dict[str, Op] = {
    "add": Op(
        "x = x + {a}",
        lambda x, a: x + a,
        _ints(2, 99),
        ("{P} buys {a} more {n}.", "{P} gets {a} more {n} from a friend.", "{P} finds {a} more {n}."),
        {},
        ("x = x - {a}", "x = x * {a}"),
    ),
    "sub": Op(
        "x = x - {a}",
        lambda x, a: x - a,
        _sub_amount,
        ("{P} gives away {a} {n}.", "{P} sells {a} {n}.", "{P} uses {a} {n}."),
        {},
        ("x = x + {a}", "x = x / {a}"),
    ),
    "add_groups": Op(
        "x = x + {a} * {b}",
        lambda x, a, b: x + a * b,
        _groups,
        ("{P} buys {a} packs of {b} {n} each.", "{P} gets {a} boxes with {b} {n} in each."),
        {},
        ("x = x - {a} * {b}", "x = x + {a} + {b}"),
    ),
    "sub_groups": Op(
        "x = x - {a} * {b}",
        lambda x, a, b: x - a * b,
        _groups,
        ("{P} gives {b} {n} to each of {a} friends.", "{P} sells {a} bags of {b} {n} each."),
        {},
        ("x = x + {a} * {b}", "x = x - {a} - {b}"),
    ),
    "mul": Op(
        "x = x * {a}",
        lambda x, a: x * a,
        _ints(2, 5),
        ("{P} ends up with {a} times as many {n}.", "{P} multiplies the {s} by {a}."),
        {(2,): "{P} doubles the {s}.", (3,): "{P} triples the {s}."},
        ("x = x + {a}", "x = x / {a}"),
    ),
    "div": Op(
        "x = x / {a}",
        lambda x, a: x / a,
        _ints(2, 9),
        (
            "{P} splits the {s} into {a} equal parts and keeps one.",
            "{P} shares the {s} equally among {a} bags and keeps one bag.",
        ),
        {
            (2,): "{P} keeps half of the {s}.",
            (3,): "{P} keeps a third of the {s}.",
            (4,): "{P} keeps a quarter of the {s}.",
        },
        ("x = x * {a}", "x = x - {a}"),
    ),
    "sub_part": Op(
        "x = x - x * {a} / {b}",
        lambda x, a, b: x - x * a / b,
        _part,
        ("{P} gives away {a}/{b} of the {s}.", "{P} sells {a}/{b} of the {s}."),
        {(1, 2): "{P} gives away half of the {s}."},
        ("x = x + x * {a} / {b}", "x = x - {a} / {b}"),
    ),
}


def code_for(op: str, args: Sequence[int], template: str | None = None) -> str:
    """Python for one clause: ``template`` (default: the op's correct code) filled with ``args``."""
    if op == "init":
        template = INIT_CODE if template is None else template
    elif op == "final":
        return FINAL_CODE
    else:
        template = OPS[op].code if template is None else template
    return template.format(**dict(zip("ab", args)))


def step_text(clause: str, code: str, final: bool = False) -> str:
    """A step in the format of steps.py: the clause as a comment, the code, the end marker."""
    return f"# {clause}\n{code}\n{END_OF_CODE if final else END_OF_STEP}"


def plan_of(problem: Problem) -> list[dict]:
    """The clause plan of a synthetic problem: ``[{op, args, clause}, ...]``, init first, final last."""
    plan = problem.meta.get("plan")
    if not plan or plan[0]["op"] != "init" or plan[-1]["op"] != "final":
        raise ValueError(f"problem {problem.id!r} is not a synthetic problem (no clause plan in meta)")
    return plan


def question_numbers(problem: Problem) -> list[int]:
    """The numbers of the question's text, clause labels excepted."""
    return [int(t) for t in re.findall(r"\d+", LABEL.sub("", problem.question))]


def reference_solution(problem: Problem) -> list[str]:
    """The correct steps: one code step per clause, the print step with its output, the answer."""
    plan = plan_of(problem)
    steps = [step_text(p["clause"], code_for(p["op"], p["args"])) for p in plan[:-1]]
    final = step_text(plan[-1]["clause"], FINAL_CODE, final=True) + output_block(problem.answer)
    return steps + [final, answer_step(problem.answer)]


def execute_trusted(program: str) -> str:
    """Run a program we wrote ourselves (reference or scripted) in-process and return its stdout.

    Never use this on model output: that goes through the sandbox."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(program, "<synthetic>", "exec"), {"__builtins__": __builtins__})
    return out.getvalue().strip()


def _valid(x: Fraction, theme: Theme) -> bool:
    if not MIN_VALUE <= x <= MAX_VALUE:
        return False
    return x.denominator <= MAX_DENOMINATOR if theme.continuous else x.denominator == 1


def _phrase(rng: random.Random, op: Op, args: tuple[int, ...]) -> str:
    options = op.phrases + ((op.special[args],) * 2 if args in op.special else ())
    return rng.choice(options)


def _sample_problem(rng: random.Random, tier: int) -> Problem | None:
    """One random problem of ``tier``, or None when the draw painted itself into a corner."""
    name, pronoun = rng.choice(NAMES)
    theme = rng.choice(THEMES)
    words = {"N": name, "P": pronoun, "n": theme.noun, "s": theme.short}
    x = Fraction(rng.randint(MIN_VALUE, 99))
    plan = [{"op": "init", "args": [int(x)], "clause": rng.choice(INIT_PHRASES).format(a=int(x), **words)}]
    for _ in range(rng.randint(*TIER_OPS[tier])):
        for _attempt in range(30):
            name_op = rng.choice(tuple(OPS))
            op = OPS[name_op]
            args = op.sample(rng, x)
            if args is None or not _valid(new := op.fn(x, *args), theme):
                continue
            clause = _phrase(rng, op, args).format(**words, **dict(zip("ab", args)))
            if all(clause != p["clause"] for p in plan):
                break
        else:
            return None
        plan.append({"op": name_op, "args": list(args), "clause": clause})
        x = new
    questions = QUESTION_PHRASES + ((LEFT_QUESTION,) if plan[-1]["op"] in TAKING_OPS else ())
    plan.append({"op": "final", "args": [], "clause": rng.choice(questions).format(**words)})
    for i, p in enumerate(plan, start=1):  # "(3) He buys ...": see the module docstring
        p["clause"] = f"({i}) {p['clause']}"
    question = " ".join(p["clause"] for p in plan)
    answer = str(x)
    if answer in re.findall(r"\d+", question):  # copying a number from the question must not score
        return None
    pid = f"syn-t{tier}-{hashlib.sha1(question.encode()).hexdigest()[:12]}"
    return Problem(pid, question, answer, {"source": "synthetic", "tier": tier, "plan": plan})


def _stream(tier: int, key: str, n: int, exclude: frozenset[str] = frozenset()) -> list[Problem]:
    if tier not in TIER_OPS:
        raise ValueError(f"tier must be one of {sorted(TIER_OPS)}, got {tier}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"rstar-synthetic/{key}/{tier}")
    seen, out = set(exclude), []
    for _ in range(200 * n + 1000):
        if len(out) == n:
            return out
        p = _sample_problem(rng, tier)
        if p is not None and p.question not in seen:
            seen.add(p.question)
            out.append(p)
    raise RuntimeError(f"could only generate {len(out)} of {n} distinct tier-{tier} problems")


def generate_problems(n: int, tier: int, seed: int) -> list[Problem]:
    """``n`` distinct problems of one tier; the same (n, tier, seed) always gives the same list,
    and a larger ``n`` extends a smaller one."""
    return _stream(tier, f"seed{seed}", n)


def make_splits(
    seed: int, n_train_per_tier: int | Sequence[int], n_test_per_tier: int, tiers: Sequence[int] = (1, 2, 3)
) -> tuple[list[Problem], list[Problem]]:
    """(train, test) over ``tiers``. Each tier's test set comes from its own stream, so it is
    fixed by (seed, n_test_per_tier) whatever the train size; no test question is in train.

    n_train_per_tier: one count for every tier, or one per tier (hard tiers need more
    problems: fewer of them are solved)."""
    counts = [n_train_per_tier] * len(tiers) if isinstance(n_train_per_tier, int) else list(n_train_per_tier)
    if len(counts) != len(tiers):
        raise ValueError(f"got {len(counts)} training counts for {len(tiers)} tiers {tuple(tiers)}")
    train: list[Problem] = []
    test: list[Problem] = []
    for tier, n_train in zip(tiers, counts):
        held_out = _stream(tier, f"seed{seed}/test", n_test_per_tier)
        test += held_out
        train += _stream(tier, f"seed{seed}/train", n_train, exclude=frozenset(p.question for p in held_out))
    return train, test


def operand_slips(value: int, numbers: Sequence[int]) -> list[int]:
    """Plausible wrong copies of an operand: off by one or ten, digits swapped, another number
    of the question. Never the value itself and never below 1 (a slip is not a crash)."""
    swapped = int(str(value)[::-1]) if value >= 10 else value
    options = {value - 1, value + 1, value + 10, value - 10, swapped, *numbers}
    return sorted(v for v in options if v >= 1 and v != value)


def perturbations(problem: Problem) -> list[tuple[str, list[str]]]:
    """Every single-slip variant of the reference code steps: ``(kind, steps)`` with kind in
    wrong_operand / wrong_operation / skip_step; steps end with the final print step."""
    plan = plan_of(problem)
    numbers = question_numbers(problem)
    base = [step_text(p["clause"], code_for(p["op"], p["args"])) for p in plan[:-1]]
    final = step_text(plan[-1]["clause"], FINAL_CODE, final=True)
    out: list[tuple[str, list[str]]] = []
    for i, p in enumerate(plan[:-1]):

        def with_code(code: str) -> list[str]:
            return base[:i] + [step_text(p["clause"], code)] + base[i + 1 :] + [final]

        for j, value in enumerate(p["args"]):
            for slip in operand_slips(value, numbers):
                args = list(p["args"])
                args[j] = slip
                out.append(("wrong_operand", with_code(code_for(p["op"], args))))
        if p["op"] != "init":
            out += [("wrong_operation", with_code(code_for(p["op"], p["args"], t))) for t in OPS[p["op"]].wrong]
            out.append(("skip_step", base[:i] + base[i + 1 :] + [final]))
    return out


def coincidence_rate(problems: Sequence[Problem]) -> dict[str, float]:
    """Share of single-slip solutions (see ``perturbations``) that still print the gold answer,
    per kind and overall; ``answer_collision`` is the chance two random problems of the set
    share their answer (how often a solution of the wrong chain could match by luck)."""
    hits: dict[str, list[int]] = {}
    for problem in problems:
        for kind, steps in perturbations(problem):
            try:
                hit = execute_trusted(path_program(steps)) == problem.answer
            except ZeroDivisionError:
                hit = False
            h = hits.setdefault(kind, [0, 0])
            h[0] += hit
            h[1] += 1
    rates = {kind: h / max(n, 1) for kind, (h, n) in hits.items()}
    rates["overall"] = sum(h for h, _ in hits.values()) / max(sum(n for _, n in hits.values()), 1)
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.answer] = counts.get(p.answer, 0) + 1
    rates["answer_collision"] = sum((c / len(problems)) ** 2 for c in counts.values()) if problems else 0.0
    return rates
