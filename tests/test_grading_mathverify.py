"""The grader on Math-Verify: the answer categories it must handle, the decisions where Math-Verify and the
project's conventions differ, time limits that hold off the main thread, and `bench grading`."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from rstar_jax.bench import grading as bench
from rstar_jax.grading import extract_answer, is_equiv

# Math-Verify's regression tests (the tests/ folder of its sdist: `pip download math-verify==0.9.0
# --no-binary :all: --no-deps`, unpacked) are not installed with it; point this at them to run them here.
SUITE = os.environ.get("MATH_VERIFY_TESTS", "")
# The timed-out inputs below need time for the kill; this is how much more than the limit they may take
# on a loaded machine (measured: 0.01-0.02 s).
SLACK_S = 1.5


def _answer(text: str) -> str:
    boxed = extract_answer(text)
    return text if boxed is None else boxed


@pytest.mark.parametrize("category,gold,pred,expected", bench.CASES)
def test_answer_categories(category, gold, pred, expected):
    """Sets in any order, several boxes, intervals vs inequalities, equations vs values, thousands
    separators, "The final answer is", percent, units, numbers, matrices, choices, the step format."""
    g, p = _answer(gold), _answer(pred)
    assert is_equiv(p, g) is expected, (category, g, p)
    assert is_equiv(g, p) is expected, (category, g, p)


# Where Math-Verify (its defaults, or one of its own tests) and this project's tests or conventions gave
# different answers: (a, b, equal, the decision). Each holds in both argument orders.
DECISIONS = [
    # --- Math-Verify decides
    ("3, 5", "3, 5, 5", True, "a list of answers is a set, as in Math-Verify (the old grader compared multisets)"),
    ("x = 5", "y = 5", False, "two assignments: the names count, as in Math-Verify (the old grader dropped both)"),
    ("7 = 11a + c", "11a + c", False, "an equation is not its right-hand side (Math-Verify's test, gold order)"),
    ("2x + z = 1", "1", False, "the same"),
    ("(3, 1)", r"\{1, 3\}", False, "an ordered pair is not a set: compared in the written order (Math-Verify's test)"),
    ("(1, 3)", "3, 1", False, "the same, for (1, 3), which parses as an open interval"),
    ("(1, 3)", "1, 3", True, "in the written order they agree"),
    (
        "$9$",
        "Answer $ \n 9 \n $",
        True,
        "Math-Verify's test expects no match with LaTeX-only extraction; "
        "its default (LaTeX and plain numbers) finds the 9, and so do we",
    ),
    # --- the project's convention decides
    ("52_8", "52", False, "a numeral in base 8 is not the decimal 52; Math-Verify drops the subscript"),
    ("52_8", "52_{8}", True, "the same numeral"),
    ("1e3", "1000", True, "scientific notation; Math-Verify reads e as Euler's number"),
    ("20 dollars", "20", True, "a unit word after a number; Math-Verify reads the word as symbols"),
    ("30°", "30", True, "a degree sign"),
    ("11a + c", "11a+c", True, "Math-Verify's unit removal drops a trailing c (centi?) from answers: off for them"),
    (
        r"\frac{3840}{289}",
        "13.2872",
        True,
        "rStar: within a relative 1e-4 when a side is a decimal; Math-Verify rounds to 6 decimal places",
    ),
    (r"\left( 3, \frac{\pi}{2} \right)", "(3, 1.5708)", True, "the same, elementwise"),
    (r"\frac{2}{3}", "0.6667", True, "the same"),
    ("0.0000001", "0.0000002", False, "a relative tolerance, not Math-Verify's rounding to 6 places"),
    ("1000000", "1000001", False, "exact numbers compare exactly (the old grader's 1e-4 applied to them too)"),
    (r"\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}", "(0.2, -3.6)", True, "a column vector is the tuple of its entries"),
    ("[2, 5]", r"2 \le x \le 5", True, "both orders: Math-Verify turns the inequality into a set only when it is gold"),
    (r"3 \cdot 4 = 12", "12", True, "a computation ending in its value (Math-Verify: only as the prediction)"),
    (
        "1,22",
        "1.22",
        False,
        "a comma between numbers separates answers (1 and 22); Math-Verify's number "
        "extraction reads a decimal comma. Groups of three digits are thousands: 1,234 = 1234",
    ),
]


@pytest.mark.parametrize("a,b,equal,why", DECISIONS)
def test_decisions(a, b, equal, why):
    assert is_equiv(a, b) is equal, why
    assert is_equiv(b, a) is equal, why


def test_several_boxes_are_one_answer():
    assert is_equiv(extract_answer(r"so $x = \boxed{3}$ or $x = \boxed{-1}$"), r"-1, 3")
    assert not is_equiv(extract_answer(r"$\boxed{3}$, $\boxed{-1}$, $\boxed{2}$"), "-1, 3")
    # text between boxes: only the last counts (hedging between answers is not an answer)
    assert extract_answer(r"either \boxed{3} or maybe \boxed{4}") == "4"


def test_pathological_inputs_time_out_off_the_main_thread():
    assert is_equiv("x", "y") is False  # the grading process is up (numbers never reach it)
    out = []

    def grade():
        t0 = time.monotonic()
        got = is_equiv(extract_answer(r"The answer is \boxed{8^{8^{8^{8}}}}"), "1", timeout_s=1.0)
        out.append((got, time.monotonic() - t0))

    worker = threading.Thread(target=grade)
    worker.start()
    worker.join(60)
    assert out and out[0][0] is False and out[0][1] < 1.0 + SLACK_S, out
    t0 = time.monotonic()  # a spare process takes over: no start-up to wait for
    assert is_equiv("x^2 - 1", "(x-1)(x+1)") and time.monotonic() - t0 < 1.0 + SLACK_S
    t0 = time.monotonic()  # an input that ran out of time is not tried again with the same limit
    assert is_equiv("1", r"8^{8^{8^{8}}}", timeout_s=1.0) is False and time.monotonic() - t0 < 0.5


def test_huge_factorial_times_out_in_the_main_thread():
    t0 = time.monotonic()
    assert is_equiv(r"\boxed{99999999!}", "1", timeout_s=1.0) is False
    assert time.monotonic() - t0 < 1.0 + SLACK_S


def test_threads_grade_concurrently():
    pairs = [(r"\frac{1}{2}", "0.5", True), ("(1, 2)", "(2, 1)", False), (r"\sqrt{12}", r"2\sqrt{3}", True)] * 3
    results = [None] * len(pairs)

    def grade(i):
        results[i] = is_equiv(pairs[i][0], pairs[i][1] + " ")  # a space: not the exact-text shortcut

    threads = [threading.Thread(target=grade, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [p[2] for p in pairs]


# Rows of Math-Verify's suite we grade differently from its expected label, and why (see DECISIONS)
SUITE_DIFFERENCES = {  # (gold[:20], pred[:20]) -> why
    ("1000.99", "1000,99"): "a comma between numbers separates answers",
    ("1,22", "1.22"): "the same",
    ("$9$", "Answer $ \n 9 \n $"): "its LaTeX-only extraction test; its default extraction agrees with us",
    ("$9$", "Answer \\( \n 9 \n \\)"): "the same",
    ("Since $25<30<36$, we", "We have that \\begin{"): "the last box, \\boxed{12 $ and $13 }, spans $ delimiters",
    ("$(\\begin{pmatrix}\\fr", "$\\begin{pmatrix}0.33"): "a test at precision 2 (0.33 for 1/3)",
    ("$10455$", "First, let's calcula"): "the answer is the last box (255), not a later 'final answer is'",
    ("$\\\\boxed{35 cm} ++++", "${35 cm,4}$"): "boxes with '++++++' between them are not one answer",
    ("\\\\boxed{W(n) = 1 \\\\t", "W(x)=1orW(x)=-1"): "an unterminated box",
    ("$$(3, 3), (1, 1)$$", "$$\\boxed{(3, 3)} \\te"): "boxes with prose between them are not one answer",
    ("\\boxed{1} papers and", "$\\boxed{1,2}$"): "the same",
}


@pytest.mark.skipif(not os.path.isdir(SUITE), reason="set MATH_VERIFY_TESTS to Math-Verify's tests/ folder")
def test_math_verify_regression_suite():
    cases = bench.load_suite(SUITE)
    assert len(cases) == 268
    differ = {
        (gold[:20], pred[:20])
        for _, gold, pred, expected in cases
        if is_equiv(_answer(pred), _answer(gold)) is not expected
    }
    assert differ == set(SUITE_DIFFERENCES)


def test_bench_grading_quick(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    ours, warm, direct = report["rows"]
    assert ours["pairs"] == warm["pairs"] == direct["pairs"] == 12
    assert ours["agree"] == warm["agree"] == 12 and ours["pairs_per_s"] > 0 and warm["pairs_per_s"] > 0
    numeric = report["numeric_rows"][0]
    # no speed comparisons: "cold" is cold only in a fresh process, and the tests above graded these pairs
    assert numeric["pairs"] == numeric["agree"] == 30 and numeric["pairs_per_s"] > 0
    assert [p["equal"] for p in report["pathological"]] == [False]
    assert all(p["seconds"] < report["limit_s"] + SLACK_S for p in report["pathological"])
    assert "pairs/s" in capsys.readouterr().out


def test_a_missing_math_verify_is_an_error_not_false(tmp_path, monkeypatch):
    from rstar_jax.grading import GradingUnavailable, worker

    fake = tmp_path / "server.py"
    fake.write_text("print('error ModuleNotFoundError: No module named math_verify', flush=True)\n")
    monkeypatch.setattr(worker, "_SERVER", str(fake))
    with pytest.raises(GradingUnavailable, match="math_verify"):
        worker.Pool(standby=False).compare(("answer", "1"), ("answer", "x"), 1.0)


def test_bench_is_registered():
    from rstar_jax.cli.main import _BENCH

    assert "grading" in _BENCH
