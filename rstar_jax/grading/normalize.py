"""The rStar conventions applied to an answer before Math-Verify reads it.

``normalize`` rewrites only what Math-Verify would read differently from
the MATH and GSM8K conventions: ``\\dfrac``/``\\tfrac`` -> ``\\frac``, no
``\\left``/``\\right`` or spacing commands, no degree signs, dollar signs,
units after a number (``5 \\text{ cm}``, ``20 dollars``), thousands
separators (``10,\\!080``, ``1\\,000``, ``1 000``) or sentence-final
period, and scientific notation as a decimal (``1e3`` -> ``1000``).
Percent signs, ``x =``, ``\\text{}`` around words and malformed LaTeX
(``\\frac12``) are left to Math-Verify. Pure string work (no sympy): the
grader also uses it for its fast path, two answers with the same
normalised text being equal.
"""

from __future__ import annotations

import decimal
import re

_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad(?![a-zA-Z])|~")  # not the row break \\ of a matrix
_SIZES = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?![a-zA-Z])\s*")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree|\^\{\\text\{o\}\}")
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname)"
# a unit after a number; not a connective ("6 \text{ and } 8" is a list)
_UNIT_TEXT = re.compile(
    r"(?<=[\d}.)])\s*" + _TEXT_CMD + r"\{\s*(?!(?:and|or)\b)[a-zA-Z][a-zA-Z .]*\}(?:\s*\^\s*\{?\d\}?)?"
)
_UNITS = (
    "units",
    "unit",
    "square units",
    "sq units",
    "cm",
    "centimeters",
    "m",
    "meters",
    "km",
    "mm",
    "inches",
    "inch",
    "in",
    "feet",
    "foot",
    "ft",
    "yards",
    "miles",
    "mph",
    "dollars",
    "dollar",
    "cents",
    "degrees",
    "hours",
    "hour",
    "minutes",
    "minute",
    "seconds",
    "second",
    "days",
    "day",
    "weeks",
    "years",
    "pounds",
    "lbs",
    "ounces",
    "oz",
    "grams",
    "g",
    "kg",
    "liters",
    "people",
    "students",
    "apples",
    "cups",
)
_UNIT_WORDS = re.compile(
    r"(?<=\d)\s+(?:" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")(?:\s*\^\s*\{?\d\}?)?$"
)
_THIN_THOUSANDS = re.compile(r"(?<=\d)\\[,!](?=\d{3}(?!\d))")  # 1\,000 and 10\!080
_THOUSANDS = re.compile(r"^[-+]?[1-9]\d{0,2}(?:(,)\d{3}(?:,\d{3})*|( )\d{3}(?: \d{3})*)(?:\.\d+)?$")
_SCIENTIFIC = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d{1,3}$")


def normalize(answer: str) -> str:
    """The answer as the grader hands it to Math-Verify (single spaces kept; see ``compact``)."""
    s = answer.strip().replace("\n", " ")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\displaystyle", "")
    s = re.sub(r"(?<=\d)(?:,\\!|\{,\})\s*(?=\d{3}(?!\d))", ",", s)  # 10,\!080 and 11,\! 111
    s = _THIN_THOUSANDS.sub("", s)
    s = _SIZES.sub("", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\$", "").replace("$", "")
    s = _UNIT_TEXT.sub("", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = _UNIT_WORDS.sub("", s).strip()
    s = s.rstrip(".").strip() if not s.endswith("..") else s  # a sentence-final period, not \ldots-like dots
    if _THOUSANDS.match(s):
        s = s.replace(",", "").replace(" ", "")
    if _SCIENTIFIC.match(s):
        s = format(decimal.Decimal(s), "f")
    return s


def compact(s: str) -> str:
    """Text without spaces, for plain string comparison."""
    return s.replace(" ", "")
