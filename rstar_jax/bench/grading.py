"""``rstar-jax bench grading``: agreement and graded pairs/s of the answer grader.

Grades (gold, prediction, expected) triples with

- ``rstar_jax.grading`` as the project calls it: ``extract_answer`` of the
  prediction (and of the gold, when it has a box; else the text itself), then
  ``is_equiv(pred, gold)``, once with cold caches and once more on the same
  pairs (warm: parses and results cached);
- Math-Verify called directly, in this process, with its defaults
  (``verify(parse(gold), parse(pred))``; a bare gold is wrapped in
  ``$\\boxed{...}$`` so that its extraction finds it),

and reports how many agree with the expected label and pairs/s, the same on
GSM8K-style numeric answers (``numeric_cases``), and the time
``is_equiv`` takes on pathological inputs under a 1 s limit. The cases are a
compact hand-written table (``CASES``: every category of answer the grader
must handle), or, with ``--suite DIR``, the (gold, pred, expected) rows of
Math-Verify's own regression tests: pass the ``tests/`` folder of its sdist
(``pip download math-verify==0.9.0 --no-binary :all: --no-deps``, unpacked).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import random
import sys
import time

# (category, gold, prediction, expected): the gold as a dataset stores it, the prediction as a model writes it
CASES: list[tuple[str, str, str, bool]] = [
    ("set order", "1, 3, 5", r"The solutions are $\boxed{5, 1, 3}$.", True),
    ("set order", r"\{-2, 4\}", r"$\boxed{\{4, -2\}}$", True),
    ("set order", "(1, 2), (3, 4)", r"$\boxed{(3, 4), (1, 2)}$", True),
    ("set order", "(1, 2)", r"$\boxed{(2, 1)}$", False),
    ("set order", "(2, 1), (5, 0)", r"$\boxed{(1, 2), (0, 5)}$", False),
    ("several boxes", "-2, 1", r"The roots are $\boxed{1}$ and $\boxed{-2}$.", True),
    ("several boxes", "3, 7", r"Therefore $\boxed{7}, \boxed{3}$.", True),
    ("several boxes", "(1, 2), (2, 1)", r"\(\boxed{(2, 1)}\) and \(\boxed{(1, 2)}\)", True),
    ("several boxes", "3, 7", r"$\boxed{3}$, $\boxed{7}$, $\boxed{8}$", False),
    ("interval", "[2, 5]", r"$\boxed{2 \le x \le 5}$", True),
    ("interval", r"2 \leq x \leq 5", r"$\boxed{x \in [2, 5]}$", True),
    ("interval", r"(-\infty, 3)", r"$\boxed{x < 3}$", True),
    ("interval", "[2, 5)", r"$\boxed{2 \le x \le 5}$", False),
    ("interval", r"(-3, 1) \cup (2, \infty)", r"$\boxed{(2, \infty) \cup (-3, 1)}$", True),
    ("equation", "5", r"$\boxed{x = 5}$", True),
    ("equation", "x = 5", r"$\boxed{5}$", True),
    ("equation", "y = 2x + 3", r"$\boxed{2x - y + 3 = 0}$", True),
    ("equation", "x^2 + y^2 = 4", r"$\boxed{4}$", False),
    ("equation", "k = 3", r"$\boxed{k = 4}$", False),
    ("thousands", "1234567", r"$\boxed{1,234,567}$", True),
    ("thousands", "10080", r"$\boxed{10,\!080}$", True),
    ("thousands", "1000", r"The total is $\boxed{1\,000}$ dollars.", True),
    ("thousands", "1,000", r"$\boxed{1,001}$", False),
    ("final answer", "42", "The final answer is $42$. I hope it is correct.", True),
    ("final answer", r"\frac{3}{4}", r"Final Answer: The final answer is $\frac{3}{4}$.", True),
    ("final answer", "7", "The final answer is $8$. I hope it is correct.", False),
    ("final answer", "12", "The answer is 12.", True),
    ("percent", r"25\%", r"$\boxed{0.25}$", True),
    ("percent", "25", r"$\boxed{25\%}$", True),
    ("percent", "0.25", r"$\boxed{25}$", False),
    ("units and text", "5", r"$\boxed{5 \text{ cm}}$", True),
    ("units and text", "18.90", r"$\boxed{\$18.90}$", True),
    ("units and text", "30", r"$\boxed{30^\circ}$", True),
    ("units and text", r"\text{odd}", r"$\boxed{\text{Odd}}$", True),
    ("units and text", r"\text{even}", r"$\boxed{\text{odd}}$", False),
    ("numbers", r"\frac{1}{2}", r"$\boxed{0.5}$", True),
    ("numbers", r"\frac{2}{3}", r"$\boxed{0.6667}$", True),
    ("numbers", r"2\sqrt{2}", r"$\boxed{\sqrt{8}}$", True),
    ("numbers", r"\frac{\sqrt{3}}{2}", r"$\boxed{\frac{\sqrt{3}}{3}}$", False),
    ("numbers", "x^2 + 2x + 1", r"$\boxed{(x+1)^2}$", True),
    ("matrix", r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}", r"$\boxed{\begin{pmatrix} 1 \\ -2 \end{pmatrix}}$", True),
    (
        "matrix",
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
        r"$\boxed{\begin{pmatrix} 1 & 3 \\ 2 & 4 \end{pmatrix}}$",
        False,
    ),
    ("choice", "C", r"$\boxed{\text{(C)}}$", True),
    ("choice", "B", r"$\boxed{D}$", False),
    ("step format", "8", r"<answer>The answer is \boxed{8}<end_of_answer>", True),
    ("step format", r"\frac{7}{2}", r"<answer>It is 3.5, so the answer is \boxed{\dfrac{7}{2}}<end_of_answer>", True),
]

# Inputs no grader may hang on: the prediction is a huge number or a tower sympy would try to evaluate
PATHOLOGICAL: list[tuple[str, str]] = [
    ("1", r"The answer is \boxed{9^{9^{9^{9}}}}"),
    ("1", r"\boxed{100000000!}"),
    ("2", r"\boxed{10^{10^{10}} - 10^{10^{10}} + 2}"),
]
# Math-Verify's tests with a non-default comparison setting (strict=False, allow_set_relation_comp)
_SUITE_SKIP = {"test_set_rel_assymetry", "test_strict_variable_comparison"}


def load_suite(folder: str) -> list[tuple[str, str, str, bool]]:
    """(test name, gold, pred, expected) of every ``@pytest.mark.parametrize("gold, pred, ...")`` row in
    the ``test_*.py`` files of ``folder`` (read as source, never imported)."""
    out = []
    for name in sorted(os.listdir(folder)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef) or fn.name in _SUITE_SKIP:
                continue
            for dec in fn.decorator_list:
                if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                    continue
                try:
                    names = [n.strip() for n in ast.literal_eval(dec.args[0]).split(",")]
                except (ValueError, SyntaxError, AttributeError):
                    continue
                if names[:2] != ["gold", "pred"] or not isinstance(dec.args[1], (ast.List, ast.Tuple)):
                    continue
                for elt in dec.args[1].elts:
                    try:
                        row = dict(zip(names, ast.literal_eval(elt)))
                    except (ValueError, SyntaxError):
                        continue
                    expected = row.get("expected", row.get("result"))
                    if isinstance(row["gold"], str) and isinstance(row["pred"], str) and expected is not None:
                        out.append((f"{name[:-3]}::{fn.name}", row["gold"], row["pred"], bool(expected)))
    return out


def _answer(text: str) -> str:
    """What the project grades: the content of the last box, or the text itself when it has none."""
    from rstar_jax.grading import extract_answer

    boxed = extract_answer(text)
    return text if boxed is None else boxed


def _ours():
    from rstar_jax.grading import is_equiv

    def grade(gold: str, pred: str) -> bool:
        return is_equiv(_answer(pred), _answer(gold))

    return grade


def _math_verify():
    from math_verify import parse, verify

    def grade(gold: str, pred: str) -> bool:
        if not any(m in gold for m in ("$", "\\boxed", "\\(", "\\[")):
            gold = f"$\\boxed{{{gold}}}$"
        return bool(verify(parse(gold), parse(pred)))

    return grade


def _timed(name: str, grade, cases) -> dict:
    wrong = []
    t0 = time.perf_counter()
    for category, gold, pred, expected in cases:
        got = grade(gold, pred)
        if got != expected:
            wrong.append({"case": category, "gold": gold, "pred": pred, "expected": expected, "got": got})
    seconds = time.perf_counter() - t0
    n = len(cases)
    return {
        "name": name,
        "pairs": n,
        "seconds": seconds,
        "pairs_per_s": n / seconds if seconds else 0.0,
        "agree": n - len(wrong),
        "agreement": (n - len(wrong)) / max(n, 1),
        "disagreements": wrong,
    }


def numeric_cases(n: int, seed: int = 0) -> list[tuple[str, str, str, bool]]:
    """GSM8K-style pairs: an integer gold, and an answer step boxing it (or a number at least 1% off)
    as a model writes it: with thousands separators, ``.0``, a dollar sign or a unit."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold = rng.randint(1, 10 ** rng.randint(1, 7))
        value = gold if rng.random() < 0.6 else gold + rng.choice((-1, 1)) * rng.randint(1, 9) * max(1, gold // 100)
        form = rng.choice([str(value), f"{value:,}", f"{value}.0", f"\\${value}", f"{value} \\text{{ dollars}}"])
        out.append(("numeric", str(gold), f"<answer>The answer is \\boxed{{{form}}}<end_of_answer>", value == gold))
    return out


def run(
    cases,
    math_verify_baseline: bool = True,
    pathological=tuple(PATHOLOGICAL),
    limit_s: float = 1.0,
    numeric: int = 300,
) -> dict:
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" / "timeout" warnings
    ours = _ours()
    t0 = time.perf_counter()
    ours("x + 1", "1 + x")  # start-up (a grading process, imports) is not part of the timed rows
    startup_s = time.perf_counter() - t0
    rows = [_timed("rstar_jax.grading, cold", ours, cases), _timed("rstar_jax.grading, warm", ours, cases)]
    if math_verify_baseline:
        rows.append(_timed("math_verify defaults, in process", _math_verify(), cases))
    numbers = numeric_cases(numeric)
    numeric_rows = [_timed("rstar_jax.grading, numeric answers", ours, numbers)] if numbers else []
    if numbers and math_verify_baseline:
        numeric_rows.append(_timed("math_verify defaults, numeric answers", _math_verify(), numbers))
    slow = []
    from rstar_jax.grading import is_equiv

    for gold, pred in pathological:
        t0 = time.perf_counter()
        got = is_equiv(_answer(pred), _answer(gold), timeout_s=limit_s)
        slow.append({"gold": gold, "pred": pred, "equal": got, "seconds": time.perf_counter() - t0})
    return {
        "rows": rows,
        "numeric_rows": numeric_rows,
        "startup_s": startup_s,
        "pathological": slow,
        "limit_s": limit_s,
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
    }


def format_table(report: dict) -> str:
    head = f"{'':36s} {'pairs':>6s} {'agree':>6s} {'agree %':>8s} {'pairs/s':>9s}"
    lines = [head, "-" * len(head)]
    for r in report["rows"] + report["numeric_rows"]:
        lines.append(
            f"{r['name']:36s} {r['pairs']:6d} {r['agree']:6d} {100 * r['agreement']:7.1f}% {r['pairs_per_s']:9.1f}"
        )
    lines.append(f"start-up (first call): {report['startup_s']:.2f} s")
    for p in report["pathological"]:
        lines.append(
            f"pathological {p['pred'][-32:]!r} vs {p['gold']!r}: {'equal' if p['equal'] else 'not equal'} "
            f"in {p['seconds']:.2f} s (limit {report['limit_s']:g} s)"
        )
    for r in report["rows"][:1] + report["rows"][2:] + report["numeric_rows"]:
        for w in r["disagreements"][:40]:
            lines.append(
                f"  [{r['name'].split(',')[0]}] {w['case']}: gold {w['gold'][:60]!r} pred {w['pred'][:60]!r} "
                f"expected {w['expected']} got {w['got']}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rstar-jax bench grading", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", help="a folder of Math-Verify's test_*.py files (its sdist's tests/)")
    parser.add_argument(
        "--quick", action="store_true", help="12 cases, 30 numeric pairs, one pathological input: seconds"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip Math-Verify called directly")
    parser.add_argument("--limit", type=float, default=1.0, help="time limit for the pathological inputs, seconds")
    parser.add_argument("--numeric", type=int, default=300, help="GSM8K-style numeric pairs (0 to skip)")
    parser.add_argument("--out", default="bench_grading.json")
    args = parser.parse_args(argv)
    cases = load_suite(args.suite) if args.suite else list(CASES)
    pathological = PATHOLOGICAL[:1] if args.quick else PATHOLOGICAL
    if args.quick:
        cases = cases[::4][:12]
    numeric = min(args.numeric, 30) if args.quick else args.numeric
    report = run(cases, not args.no_baseline, pathological, args.limit, numeric)
    report["cases"] = args.suite or "CASES"
    print(format_table(report))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
