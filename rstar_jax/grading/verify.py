"""Parsing and comparison of answers with Math-Verify, under the project's conventions.

This module is the grading process: ``worker.py`` runs this file as a script,
and ``serve`` answers requests on stdin/stdout until stdin closes. It imports
nothing from ``rstar_jax`` (so it starts without the package on the path).
Math-Verify's own time limits use ``signal.alarm`` (main thread only): they are
off here (``parsing_timeout=None``, ``timeout_seconds=None``); the parent
process bounds each request by killing this process at the deadline.

An input is ``(kind, text)``: an ``answer`` is what a box holds (already
normalised by ``normalize.py``) and is parsed as ``\\boxed{answer}``; a
``text`` is prose or LaTeX with ``$...$`` and the like, and Math-Verify finds
the answer in it ("The final answer is $3$", "Answer: \\(x=2\\)").

Two answers are equal, in either argument order, when Math-Verify's
``verify`` says so with either of them as the gold, except where its two
orders differ by design; there the stricter order decides:

- an ordered tuple against a set (``(3, 1)`` vs ``\\{1, 3\\}``, ``(1, 3)`` vs
  ``3, 1``): compared in the written order, as Math-Verify does with the tuple
  as gold;
- an equation that is not an assignment against a value (``2x + z = 1`` vs
  ``1``): not equal (Math-Verify takes the right-hand side of a predicted
  equation). Assignments (``x = 5``) and computations (``3 \\cdot 4 = 12``)
  against their value are equal.

Numbers follow the rStar convention: when either is written as a decimal,
they are equal within a relative 1e-4 (``13.2872`` for 3840/289; not
Math-Verify's rounding to 6 decimal places, which makes 1e-7 equal to 2e-7),
otherwise exactly; a percentage may be read as x or x/100. When Math-Verify
says no, the same tolerance applies elementwise in tuples, intervals, vectors
and sets, and a column or row vector equals the tuple of its entries.
"""

from __future__ import annotations

import cmath
import json
import logging
import os
import sys
from collections import OrderedDict

REL_TOL = 1e-4
PARSE_CACHE_SIZE = 4096

_lib = None  # math_verify and sympy, imported on first use


def _load():
    global _lib
    if _lib is None:
        import sympy
        from latex2sympy2_extended.sets import FiniteSet as L2SFiniteSet
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, LatexNormalizationConfig, parse, verify
        from math_verify.grader import is_assignment_relation, is_equation

        # For answers, Math-Verify's defaults without its unit removal: that drops a trailing single letter
        # (c, d, h, m, s, t...) after a space, so "x + c" fails to parse and "11a + c" reads as 11;
        # normalize.py has removed units after numbers. Texts get the defaults (prose has units).
        _latex = LatexNormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )
        logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled" warnings: we bound time
        _lib = {
            "sympy": sympy,
            "parse": parse,
            "verify": verify,
            "answer": [
                LatexExtractionConfig(boxed_match_priority=0, normalization_config=_latex),
                ExprExtractionConfig(),
            ],
            "text": [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
            "is_equation": is_equation,
            "is_assignment": is_assignment_relation,
            "L2SFiniteSet": L2SFiniteSet,
        }
    return _lib


# ---------------------------------------------------------------------------- parsing

_cache: OrderedDict = OrderedDict()


def _is_math(x) -> bool:
    sympy = _load()["sympy"]
    return isinstance(x, (sympy.Basic, sympy.MatrixBase))


def parse(kind: str, text: str) -> list:
    """Math-Verify's reading of one input: sympy objects and/or its fallback strings (cached)."""
    key = (kind, text)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    lib = _load()
    if kind == "answer":
        out = lib["parse"]("\\boxed{" + text + "}", lib["answer"], parsing_timeout=None)
        if not any(_is_math(x) for x in out):  # not LaTeX: a plain-text answer
            raw = lib["parse"](text, lib["text"], parsing_timeout=None)
            out = raw if any(_is_math(x) for x in raw) else out
    else:
        out = lib["parse"](text, lib["text"], parsing_timeout=None)
    _cache[key] = out
    if len(_cache) > PARSE_CACHE_SIZE:
        _cache.popitem(last=False)
    return out


# ---------------------------------------------------------------------------- comparison


def equivalent(a: list, b: list) -> bool:
    """Whether any reading of ``a`` equals any reading of ``b`` (symmetric)."""
    for x in a:
        for y in b:
            try:
                if _pair(x, y):
                    return True
            except Exception:  # sympy raises many kinds on odd objects: those two readings are not equal
                pass
    return False


def _pair(x, y) -> bool:
    if isinstance(x, str) or isinstance(y, str):  # Math-Verify's fallback: the extracted text
        return isinstance(x, str) and isinstance(y, str) and x.strip() != "" and x.strip() == y.strip()
    lib = _load()
    sympy, verify = lib["sympy"], lib["verify"]
    if _constant(x) and _constant(y) and (x.atoms(sympy.Float) or y.atoms(sympy.Float)):
        return _close_numbers(x, y)  # not Math-Verify's rounding to 6 places: 1e-7 is not 2e-7
    for gold, pred in _orders(x, y):
        if verify(gold, pred, timeout_seconds=None):
            return True
    return _fallback(x, y)


def _constant(e) -> bool:
    return isinstance(e, _load()["sympy"].Expr) and not e.free_symbols


def _orders(x, y) -> list[tuple]:
    """(gold, pred) orders to try: both, or the stricter one where Math-Verify is asymmetric by design."""
    lib = _load()
    sympy, is_eq = lib["sympy"], lib["is_equation"]
    if _ordered(x) and isinstance(y, sympy.FiniteSet):
        return [(x, y)]
    if _ordered(y) and isinstance(x, sympy.FiniteSet):
        return [(y, x)]
    if _plain_equation(x) and not is_eq(y):
        return [(x, y)]
    if _plain_equation(y) and not is_eq(x):
        return [(y, x)]
    return [(y, x), (x, y)]


def _ordered(e) -> bool:
    """A tuple, or ``(1, 3)``, which parses as an open interval but may be an ordered pair."""
    sympy = _load()["sympy"]
    return isinstance(e, sympy.Tuple) or (isinstance(e, sympy.Interval) and e.left_open and e.right_open)


def _constant_equation(e) -> bool:
    """``3 \\cdot 4 = 12``: a computation that ends in the answer, read as its right-hand side."""
    sympy = _load()["sympy"]
    return isinstance(e, sympy.Eq) and not e.lhs.free_symbols and not e.rhs.free_symbols


def _plain_equation(e) -> bool:
    """An equation that states a relation (``2x + z = 1``), not a value (``x = 5``, ``3 \\cdot 4 = 12``)."""
    lib = _load()
    return lib["is_equation"](e) and not lib["is_assignment"](e) and not _constant_equation(e)


def _rhs_of_assignment(x, other):
    """``x = 5`` read as 5 when the other side is not an equation (as Math-Verify does)."""
    lib = _load()
    if (lib["is_assignment"](x) or _constant_equation(x)) and not lib["is_equation"](other):
        while isinstance(x, lib["sympy"].And):
            x = x._unsorted_args[-1] if hasattr(x, "_unsorted_args") else x.args[-1]
        return x.rhs
    return x


def _entries(x) -> list | None:
    """The entries of a tuple or of a matrix with one row or one column, in order."""
    sympy = _load()["sympy"]
    if isinstance(x, sympy.Tuple):
        return list(x.args)
    if isinstance(x, sympy.MatrixBase) and 1 in x.shape:
        return list(x)
    return None


def _set_args(x) -> list:
    return (
        list(x._unsorted_args)
        if isinstance(x, _load()["L2SFiniteSet"]) and hasattr(x, "_unsorted_args")
        else list(x.args)
    )


def _fallback(x, y) -> bool:
    """The rStar conventions Math-Verify does not have: vectors as tuples and a relative tolerance."""
    sympy = _load()["sympy"]
    x, y = _rhs_of_assignment(x, y), _rhs_of_assignment(y, x)
    ex, ey = _entries(x), _entries(y)
    if ex is not None and ey is not None:
        if isinstance(x, sympy.MatrixBase) and isinstance(y, sympy.MatrixBase) and x.shape != y.shape:
            return False
        return len(ex) == len(ey) and all(_pair(p, q) for p, q in zip(ex, ey))
    if isinstance(x, sympy.MatrixBase) and isinstance(y, sympy.MatrixBase):
        return x.shape == y.shape and all(_pair(p, q) for p, q in zip(x, y))
    if isinstance(x, sympy.Interval) and isinstance(y, sympy.Interval):
        return (
            (x.left_open, x.right_open) == (y.left_open, y.right_open)
            and _pair(x.start, y.start)
            and _pair(x.end, y.end)
        )
    if isinstance(x, sympy.FiniteSet) and isinstance(y, sympy.FiniteSet):
        xs, ys = _set_args(x), _set_args(y)
        if len(xs) != len(ys) or len(xs) > 32:
            return False
        for p in xs:  # greedy matching: a set of numbers written to a few decimals
            match = next((i for i, q in enumerate(ys) if _pair(p, q)), None)
            if match is None:
                return False
            ys.pop(match)
        return True
    return _close_numbers(x, y)


def _values(x) -> list[complex] | None:
    """The value(s) of a constant: a percentage ``x%`` is x/100 or x."""
    sympy = _load()["sympy"]
    if not isinstance(x, sympy.Expr) or x.free_symbols:
        return None
    candidates = [x]
    if isinstance(x, sympy.Mul) and len(x.args) == 2 and x.args[1] == sympy.UnevaluatedExpr(sympy.Rational(1, 100)):
        candidates = [x.args[0] / 100, x.args[0]]
    out = []
    for c in candidates:
        try:
            v = complex(sympy.N(c.doit(), 20))
        except (TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError):
            continue
        if not (cmath.isnan(v) or cmath.isinf(v)):
            out.append(v)
    return out or None


def _close_numbers(x, y) -> bool:
    """Numbers within a relative 1e-4, when at least one is written as a decimal (exact ones compare exactly)."""
    sympy = _load()["sympy"]
    if not (isinstance(x, sympy.Expr) and isinstance(y, sympy.Expr)):
        return False
    if not (x.atoms(sympy.Float) or y.atoms(sympy.Float)):
        return False
    vx, vy = _values(x), _values(y)
    if not vx or not vy:
        return False
    return any(abs(p - q) <= max(REL_TOL * max(abs(p), abs(q)), 1e-12) for p in vx for q in vy)


# ---------------------------------------------------------------------------- the process


def serve(stdin=None, stdout=None) -> None:
    """Answer requests until stdin closes. A request is one JSON line ``{"a": [kind, text], "b": [kind,
    text]}``; the replies are ``a`` once ``a`` is parsed, ``b`` once ``b`` is, then ``1`` (equal) or ``0``."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    try:
        equivalent(parse("answer", "x = \\frac{1}{2}"), parse("text", "The answer is $0.5$"))  # warm the parsers
    except BaseException as e:  # report why we cannot grade, then stop
        stdout.write(f"error {type(e).__name__}: {e}".replace("\n", " ").encode() + b"\n")
        stdout.flush()
        return
    stdout.write(b"ready\n")
    stdout.flush()
    for line in stdin:
        request = json.loads(line)
        results = []
        for side in ("a", "b"):
            kind, text = request[side]
            try:
                results.append(parse(kind, text))
            except Exception:  # an input Math-Verify cannot read equals nothing
                results.append([])
            stdout.write(side.encode() + b"\n")
            stdout.flush()
        stdout.write(b"1\n" if equivalent(*results) else b"0\n")
        stdout.flush()


if __name__ == "__main__":
    # run as a script: this file's folder is sys.path[0]; drop it so that its modules shadow nothing
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    replies = os.fdopen(os.dup(1), "wb")  # the protocol; anything a library prints goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)
