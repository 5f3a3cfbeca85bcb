"""Answer equivalence: ``is_equiv(pred, gold)`` (docs/DESIGN.md §7), built on Math-Verify.

Each side is either an answer (what a box holds; a text with boxes is
reduced to its last box, or its last boxes when the answer is given as
several, by ``extract_answer``) or a text in which Math-Verify finds the
answer (``The final answer is $3$``, ``Answer: \\(x = 2\\)``, prose). In
order, cheapest first: the same text; the same normalised answer
(normalize.py); base-``b`` numerals (``52_8``), compared as written; plain
numbers (integers, decimals, simple fractions), compared here as verify.py
would; then Math-Verify in a grading process (verify.py: parsing, sets in any
order, intervals against inequalities, equations, percentages, matrices,
symbolic equality, and the rStar conventions it lacks) under a time limit
that holds off the main thread too (worker.py: the process is killed at the
deadline).

Nothing raises for any input: a parse failure or a timeout is False. (A
missing math-verify installation raises ``GradingUnavailable``.) Results are
cached, and an input that ran out of time is not tried again with the same or
a smaller limit.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from fractions import Fraction

from rstar_jax.grading.extract import extract_answer
from rstar_jax.grading.normalize import compact, normalize
from rstar_jax.grading.worker import pool

DEFAULT_TIMEOUT_S = 3.0
MAX_ANSWER_CHARS = 1000  # longer answers are only compared as exact text
MAX_TEXT_CHARS = 20000
CACHE_SIZE = 8192
# LaTeX math delimiters: the side is a text for Math-Verify to search
_MATH_ENV = re.compile(r"(?<!\\)\$|\\\(|\\\[")
_PROSE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}\s+[a-zA-Z]{2,}\b")  # two words in a row, outside commands
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|operatorname)\s*\{[^{}]*\}")
_BASE_NUMERAL = re.compile(r"^(?=[0-9A-F]*\d)([0-9A-F]+)_\{?\(?(\d+)\)?\}?$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)$")
_FRACTION = re.compile(r"^([-+]?)(?:\\frac\{(\d+)\}\{(\d+)\}|(\d+)/(\d+))$")
REL_TOL = Fraction(1, 10_000)

Side = tuple[str, str]  # ("answer" | "text", the text Math-Verify reads)

_lock = threading.Lock()
_results: OrderedDict = OrderedDict()
_timed_out: OrderedDict = OrderedDict()  # side or pair -> the largest limit it ran out of


def _side(s: str) -> Side | None:
    if "\\boxed" in s or "\\fbox" in s:
        boxed = extract_answer(s)
        if boxed is not None:
            s = boxed
    if _MATH_ENV.search(s) or _PROSE.search(_TEXT_GROUP.sub(" ", s)):
        return ("text", s.strip()) if len(s) <= MAX_TEXT_CHARS else None
    if len(s) > MAX_ANSWER_CHARS:
        return None
    n = normalize(s)
    return ("answer", n) if n else None


def _base_numeral(side: Side) -> tuple[str, int] | None:
    m = _BASE_NUMERAL.match(compact(side[1])) if side[0] == "answer" else None
    return (m.group(1).lstrip("0") or "0", int(m.group(2))) if m else None


def _plain_number(side: Side) -> tuple[Fraction, bool] | None:
    """The value of an answer that is an integer, a decimal or a simple fraction, and whether it is a
    decimal; None for anything else (left to Math-Verify)."""
    t = compact(side[1]) if side[0] == "answer" else ""
    if _DECIMAL.match(t):
        return Fraction(t + "0" if t.endswith(".") else t), "." in t
    m = _FRACTION.match(t)
    if m and int(m.group(3) or m.group(5)):
        value = Fraction(int(m.group(2) or m.group(4)), int(m.group(3) or m.group(5)))
        return (-value if m.group(1) == "-" else value), False
    return None


def _same_number(x: tuple[Fraction, bool], y: tuple[Fraction, bool]) -> bool:
    """As verify.py compares constants: within a relative 1e-4 if either is a decimal, else exactly."""
    (a, a_decimal), (b, b_decimal) = x, y
    if not (a_decimal or b_decimal):
        return a == b
    return abs(a - b) <= max(REL_TOL * max(abs(a), abs(b)), Fraction(1, 10**12))


def _remember(table: OrderedDict, key, value) -> None:
    with _lock:
        table[key] = value
        table.move_to_end(key)
        if len(table) > CACHE_SIZE:
            table.popitem(last=False)


def is_equiv(pred: str | None, gold: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether two final answers are the same (argument order does not matter). Never raises on any input.

    ``timeout_s`` bounds the parsing and comparison of this pair (not a grading process's start-up).
    """
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    if pred.strip() == gold.strip():
        return True
    a, b = _side(pred), _side(gold)
    if a is None or b is None:
        return False
    if a[0] == b[0] and compact(a[1]) == compact(b[1]):
        return True
    # 52_8 is not 52: a numeral in another base equals only itself (or, in base 10, its digits)
    base_a, base_b = _base_numeral(a), _base_numeral(b)
    if (base_a or base_b) and a[0] == b[0] == "answer":
        digits_a = base_a or (compact(a[1]).lstrip("0") or "0", 10)
        digits_b = base_b or (compact(b[1]).lstrip("0") or "0", 10)
        return digits_a == digits_b
    num_a, num_b = _plain_number(a), _plain_number(b)
    if num_a and num_b:  # the common case (GSM8K, most of MATH), without a round trip to Math-Verify
        return _same_number(num_a, num_b)
    key = (a, b) if a <= b else (b, a)
    with _lock:
        if key in _results:
            return _results[key]
        if any(_timed_out.get(k, -1.0) >= timeout_s for k in (a, b, key)):
            return False
    got = pool().compare(a, b, timeout_s)
    if isinstance(got, bool):
        _remember(_results, key, got)
        return got
    where = {"a": a, "b": b}.get(got, key)
    _remember(_timed_out, where, max(timeout_s, _timed_out.get(where, -1.0)))
    return False
