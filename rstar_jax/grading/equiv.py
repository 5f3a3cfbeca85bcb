"""Answer equivalence: ``is_equiv(pred, gold)`` (docs/DESIGN.md §7).

In order, cheapest first: exact text; normalised text (normalize.py);
structure (matrices, unions of intervals, tuples and intervals element-wise
with matching brackets, comma lists as multisets, ``\\pm`` expanded);
equations (sides moved over, equal up to a constant factor); numbers with a
relative tolerance of 1e-4 (percent variants x, x/100, x*100 when either side
had a percent sign); symbolic equality of sympy expressions (exact
difference zero, numerically at deterministic points, or ``simplify``).

All sympy work runs under a time limit: SIGALRM in the main thread, a
helper thread elsewhere (which cannot be killed: it is abandoned and finishes
in the background). Nothing raises; a parse failure or a timeout is False.
"""

from __future__ import annotations

import cmath
import contextlib
import functools
import re
import signal
import threading

import sympy

from rstar_jax.grading import latex
from rstar_jax.grading.normalize import compact, had_percent, normalize

REL_TOL = 1e-4
DEFAULT_TIMEOUT_S = 3.0
_MATRIX = re.compile(r"^\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.S)
_PLAIN_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")
MAX_ANSWER_CHARS = 1000  # longer answers are only compared as exact text
_SIMPLE_FRACTION = re.compile(r"^([-+]?)\\frac\{(\d+)\}\{(\d+)\}$|^([-+]?\d+)/(\d+)$")
_PROBE_VALUES = (0.6180339887, 1.4142135624, 2.7182818285, 0.3010299957, 1.7320508076, 0.5772156649)


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that sympy's ``except Exception`` cannot swallow it."""


def is_equiv(pred: str | None, gold: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether two final answers are the same (argument order does not matter). Never raises."""
    try:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        if pred.strip() == gold.strip():
            return True
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False
        p, g = normalize(pred), normalize(gold)
        if compact(p) == compact(g):
            return True
        if not p or not g:
            return False
        percent = had_percent(pred) or had_percent(gold)

        def compare() -> bool:
            if _equiv(p, g, percent) or _equiv(g, p, percent):
                return True
            # "y = -2x" against "2x + y = 0": as equations, with their left-hand sides kept
            return "=" in pred and "=" in gold and _equation_equiv(normalize(pred, False), normalize(gold, False))

        return _with_time_limit(compare, timeout_s)
    except (Exception, _Timeout):
        return False


# ---------------------------------------------------------------------------- time limit


def _with_time_limit(fn, seconds: float) -> bool:
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _alarm(seconds):
            return bool(fn())
    box: list[bool] = []
    worker = threading.Thread(target=lambda: box.append(bool(fn())), daemon=True)
    worker.start()
    worker.join(seconds)
    return bool(box and box[0])


@contextlib.contextmanager
def _alarm(seconds: float):
    def on_alarm(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    outer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer[0] > 0:  # someone else's timer was running: give it back (less the time we used)
            signal.setitimer(signal.ITIMER_REAL, max(outer[0] - seconds, 1e-3), outer[1])


# ---------------------------------------------------------------------------- structure


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(s[start:i].strip())
            start = i + 1
    parts.append(s[start:].strip())
    return parts


def _expand_pm(items: list[str]) -> list[str]:
    out = []
    for item in items:
        if item.count("\\pm") == 1:
            out += [item.replace("\\pm", "+"), item.replace("\\pm", "-")]
        else:
            out.append(item)
    return out


def _structure(s: str) -> tuple:
    """("matrix", rows) | ("union", intervals) | ("tuple", open, close, items) | ("list", items) | ("scalar", s)."""
    m = _MATRIX.match(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        return ("matrix", [[c.strip() for c in r.split("&")] for r in rows])
    if "\\cup" in s:
        return ("union", [x.strip() for x in s.split("\\cup")])
    if s.startswith("\\{") and s.endswith("\\}"):
        return ("list", _expand_pm(_split_top(s[2:-2])))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _balanced(s[1:-1]):
        items = _split_top(s[1:-1])
        if len(items) > 1:
            return ("tuple", s[0], s[-1], items)
    items = _expand_pm(_split_top(s))
    return ("list", items) if len(items) > 1 else ("scalar", s)


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += (ch in "([{") - (ch in ")]}")
        if depth < 0:
            return False
    return depth == 0


def _equiv(a: str, b: str, percent: bool) -> bool:
    sa, sb = _structure(a), _structure(b)
    kinds = (sa[0], sb[0])
    if kinds == ("matrix", "matrix"):
        return (
            len(sa[1]) == len(sb[1])
            and all(len(r) == len(q) for r, q in zip(sa[1], sb[1]))
            and _all_equiv([c for r in sa[1] for c in r], [c for r in sb[1] for c in r], percent)
        )
    if kinds == ("matrix", "tuple") and (len(sa[1]) == 1 or all(len(r) == 1 for r in sa[1])):
        return _all_equiv([c for r in sa[1] for c in r], sb[3], percent)  # a vector written either way
    if kinds == ("union", "union"):
        return len(sa[1]) == len(sb[1]) and all(_equiv(x, y, percent) for x, y in zip(sa[1], sb[1]))
    if kinds == ("tuple", "tuple"):
        return sa[1:3] == sb[1:3] and _all_equiv(sa[3], sb[3], percent)
    if kinds == ("tuple", "list"):
        return sa[1:3] == ("(", ")") and _all_equiv(sa[3], sb[1], percent)
    if kinds == ("list", "list"):
        return len(sa[1]) == len(sb[1]) and _multiset_equiv(sa[1], sb[1], percent)
    if kinds == ("scalar", "scalar"):
        return _scalar_equiv(a, b, percent)
    return False


def _all_equiv(xs: list[str], ys: list[str], percent: bool) -> bool:
    return len(xs) == len(ys) and all(compact(x) == compact(y) or _equiv(x, y, percent) for x, y in zip(xs, ys))


def _multiset_equiv(xs: list[str], ys: list[str], percent: bool) -> bool:
    remaining = list(ys)
    for x in xs:
        match = next((i for i, y in enumerate(remaining) if compact(x) == compact(y) or _equiv(x, y, percent)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True


# ---------------------------------------------------------------------------- scalars


def _scalar_equiv(a: str, b: str, percent: bool) -> bool:
    if compact(a) == compact(b):
        return True
    if "=" in a or "=" in b:
        return _equation_equiv(a, b)
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        variants = (y, y / 100, y * 100) if percent else (y,)
        return any(_close(x, v) for v in variants)
    ea, eb = _parse(a), _parse(b)
    return ea is not None and eb is not None and _expr_equiv(ea, eb)


def _number(s: str) -> complex | None:
    """The value of a constant answer, or None (symbols, unparsable text)."""
    t = s.replace(" ", "")
    if _PLAIN_NUMBER.match(t):
        return complex(float(t))
    m = _SIMPLE_FRACTION.match(t)
    if m:
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else ("", m.group(4), m.group(5))
        return complex((-1 if sign == "-" else 1) * int(num) / int(den)) if int(den) else None
    t = re.sub(r"^(-?\d+)\\frac", r"\1+\\frac", t)  # a mixed number: 1\frac{4}{5}
    expr = _parse(t)
    if expr is None or expr.free_symbols:
        return None
    try:
        value = complex(sympy.N(expr, 20))
    except (TypeError, ValueError):  # zoo, nan, or something sympy cannot make a number of
        return None
    return None if cmath.isnan(value) else value


def _close(x: complex, y: complex) -> bool:
    if cmath.isinf(x) or cmath.isinf(y):
        return x == y
    return abs(x - y) <= max(REL_TOL * max(abs(x), abs(y)), 1e-12)


@functools.lru_cache(maxsize=4096)
def _parse(s: str) -> sympy.Expr | None:
    try:
        return latex.parse(s)
    except (Exception, RecursionError):  # sympy raises many kinds (TokenError, SyntaxError, TypeError...)
        return None


def _values_at_probes(expr: sympy.Expr, symbols: list, k: int) -> complex:
    subs = {sym: _PROBE_VALUES[(i + k) % len(_PROBE_VALUES)] + 0.1 * k for i, sym in enumerate(symbols)}
    return complex(sympy.N(expr.subs(subs), 20))


def _expr_equiv(ea: sympy.Expr, eb: sympy.Expr) -> bool:
    if ea == eb:
        return True
    diff = ea - eb
    symbols = sorted(diff.free_symbols, key=lambda s: s.name)
    if not symbols:
        x, y = complex(sympy.N(ea, 20)), complex(sympy.N(eb, 20))
        return _close(x, y)
    try:  # a cheap numeric check at deterministic points, then simplify if it was inconclusive
        pairs = [(_values_at_probes(ea, symbols, k), _values_at_probes(eb, symbols, k)) for k in range(3)]
        if all(not (cmath.isnan(x) or cmath.isinf(x) or cmath.isnan(y) or cmath.isinf(y)) for x, y in pairs):
            return all(_close(x, y) for x, y in pairs)
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    return sympy.simplify(diff) == 0


def _equation_equiv(a: str, b: str) -> bool:
    """``lhs = rhs`` forms: equal if lhs - rhs agree up to a nonzero constant factor."""
    if a.count("=") != 1 or b.count("=") != 1:
        return False
    sides = [_parse(x) for x in (*a.split("="), *b.split("="))]
    if any(x is None for x in sides):
        return False
    da, db = sides[0] - sides[1], sides[2] - sides[3]
    if _expr_equiv(da, db) or _expr_equiv(da, -db):
        return True
    symbols = sorted(da.free_symbols | db.free_symbols, key=lambda s: s.name)
    if not symbols:
        return False
    ratios = []
    for k in range(3):
        x, y = _values_at_probes(da, symbols, k), _values_at_probes(db, symbols, k)
        if y == 0 or cmath.isnan(x) or cmath.isnan(y):
            return False
        ratios.append(x / y)
    return ratios[0] != 0 and all(_close(r, ratios[0]) for r in ratios)
