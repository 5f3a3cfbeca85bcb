"""LaTeX answer -> sympy expression, for the symbolic and numeric comparisons.

sympy's own ``parse_latex`` needs the antlr4 runtime (or lark), which is not
a dependency here, so a small translator rewrites the LaTeX of final answers
(fractions, roots, powers, binomials, trig/log functions, Greek letters,
implicit products) into Python syntax and hands it to sympy's ``parse_expr``.

``parse_expr`` evaluates its input, and answers are model-written, so the
translated text must pass a strict whitelist first: digits, operators,
brackets, and identifiers that are single letters, Greek names or the
functions below. Expressions whose evaluation could explode (huge powers or
factorials) are refused.
"""

from __future__ import annotations

import math
import re

import sympy
from sympy.parsing.sympy_parser import (
    factorial_notation,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

FUNCTIONS = {
    "sin": "sin",
    "cos": "cos",
    "tan": "tan",
    "cot": "cot",
    "sec": "sec",
    "csc": "csc",
    "arcsin": "asin",
    "arccos": "acos",
    "arctan": "atan",
    "sinh": "sinh",
    "cosh": "cosh",
    "tanh": "tanh",
    "ln": "log",
    "log": "log",
    "exp": "exp",
}
# Greek letters become symbols of these names ("lambda" is a Python keyword: sympy spells it "lamda").
GREEK = {
    name: name
    for name in (
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "varepsilon",
        "zeta",
        "eta",
        "theta",
        "vartheta",
        "iota",
        "kappa",
        "mu",
        "nu",
        "xi",
        "rho",
        "sigma",
        "tau",
        "phi",
        "varphi",
        "chi",
        "psi",
        "omega",
    )
} | {"lambda": "lamda"}
_OPERATORS = {"cdot": "*", "times": "*", "div": "/", "ast": "*"}
_CONSTANTS = {"pi": "pi", "infty": "oo"}
_NAMES = frozenset(FUNCTIONS.values()) | {"sqrt", "binomial", "pi", "oo", "E", "I"}
_GREEK_SYMBOLS = frozenset(GREEK.values())
_TRANSFORMS = standard_transformations + (implicit_multiplication_application, factorial_notation)
_SAFE_CHARS = re.compile(r"[0-9A-Za-z+\-*/().,! ]*")
MAX_CHARS = 400
MAX_EXPONENT = 10_000  # largest exponent or factorial argument evaluated
MAX_DIGITS = 20_000  # largest number (in decimal digits) a power may produce


class Unsupported(ValueError):
    """The answer uses notation this translator does not handle."""


def _group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at s[i]: a brace group, or one character / command. Returns (text, end)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise Unsupported("missing argument")
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return s[i + 1 : j], j + 1
        raise Unsupported("unbalanced braces")
    if s[i] == "\\":
        m = re.match(r"\\[a-zA-Z]+", s[i:])
        if m:
            return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def to_python(s: str) -> str:
    """Translate normalised LaTeX into Python expression syntax (whitelisted identifiers only)."""
    out, i = [], 0
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            m = re.match(r"\\([a-zA-Z]+)", s[i:])
            if not m:
                raise Unsupported(f"stray backslash in {s!r}")
            name, i = m.group(1), i + len(m.group(0))
            if name == "frac":
                num, i = _group(s, i)
                den, i = _group(s, i)
                out.append(f"(({to_python(num)})/({to_python(den)}))")
            elif name == "sqrt":
                if i < len(s) and s[i] == "[":
                    j = s.index("]", i)
                    index, i = s[i + 1 : j], j + 1
                    arg, i = _group(s, i)
                    out.append(f"(({to_python(arg)})**(1/({to_python(index)})))")
                else:
                    arg, i = _group(s, i)
                    out.append(f"sqrt({to_python(arg)})")
            elif name in ("binom", "dbinom", "tbinom"):
                top, i = _group(s, i)
                bottom, i = _group(s, i)
                out.append(f"binomial({to_python(top)},{to_python(bottom)})")
            elif name in FUNCTIONS:
                out.append(f" {FUNCTIONS[name]} ")
            elif name in _OPERATORS:
                out.append(_OPERATORS[name])
            elif name in _CONSTANTS:
                out.append(f" {_CONSTANTS[name]} ")
            elif name in GREEK:
                out.append(f" {GREEK[name]} ")
            else:
                raise Unsupported(f"\\{name}")
        elif ch == "^":
            arg, i = _group(s, i + 1)
            out.append(f"**({to_python(arg)})")
        elif ch in "{}":
            out.append("(" if ch == "{" else ")")
            i += 1
        elif ch == "[" or ch == "]":
            out.append("(" if ch == "[" else ")")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _identifiers(py: str) -> str:
    """Split unknown letter runs into single-letter products; map e -> E, i -> I."""

    def repl(m: re.Match) -> str:
        word = m.group(0)
        if word in _NAMES or word in _GREEK_SYMBOLS:
            return word
        return "*".join({"e": "E", "i": "I"}.get(c, c) for c in word)

    return re.sub(r"[A-Za-z]+", repl, py)


def _check_size(expr: sympy.Basic) -> None:
    """Refuse expressions whose evaluation could take long: checked bottom-up, so
    evaluating an already-checked subexpression numerically is itself cheap."""
    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.Integer) and abs(int(node)).bit_length() > MAX_DIGITS * 4:
            raise Unsupported("number too large")
        if isinstance(node, (sympy.factorial, sympy.binomial)) and any(
            a.is_number and abs(complex(sympy.N(a))) > MAX_EXPONENT for a in node.args
        ):
            raise Unsupported("factorial too large")
        if isinstance(node, sympy.Pow) and node.exp.is_number and node.base.is_number:
            e, b = abs(complex(sympy.N(node.exp))), abs(complex(sympy.N(node.base)))
            if e > MAX_EXPONENT or (b > 1 and math.log10(b) * e > MAX_DIGITS):
                raise Unsupported("power too large")


def parse(latex: str) -> sympy.Expr:
    """A sympy expression for a normalised answer; raises ``Unsupported`` (a ValueError) when unsure."""
    if len(latex) > MAX_CHARS or "=" in latex or "_" in latex:
        raise Unsupported("too long, an equation, or subscripts")
    py = _identifiers(to_python(latex))
    # Only whitelisted names reach eval, and no attribute access ("x.n") either.
    if not _SAFE_CHARS.fullmatch(py) or re.search(r"[A-Za-z]\s*\.|\.\s*[A-Za-z]", py):
        raise Unsupported(f"unsafe text {py!r}")
    if any(int(n) > MAX_EXPONENT for n in re.findall(r"(\d+)\s*!", py)):
        raise Unsupported("factorial too large")  # parse_expr would already compute it
    letters = {c: sympy.Symbol(c) for c in "abcdfghjklmnopqrstuvwxyzABCDFGHJKLMNOPQRSTUVWXYZ"}
    letters.update({g: sympy.Symbol(g) for g in _GREEK_SYMBOLS})
    expr = parse_expr(py, local_dict=letters, transformations=_TRANSFORMS, evaluate=False)
    if not isinstance(expr, sympy.Expr):
        raise Unsupported(f"not an expression: {py!r}")
    _check_size(expr)
    return expr.doit()  # parsed unevaluated for the size check; now evaluate (1*1 -> 1, etc.)
