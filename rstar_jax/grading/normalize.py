"""String normalisation of final answers (the MATH convention, extended).

``normalize`` maps the many ways a model or a dataset writes one answer to
one string: ``\\dfrac``/``\\tfrac`` -> ``\\frac``, ``\\frac12`` -> ``\\frac{1}{2}``,
no ``\\left``/``\\right`` or spacing commands, no ``\\text{}`` wrappers or
trailing units, no degrees, dollars or percent signs, no thousands
separators, no trailing ``.0``, no ``x =`` prefix, ``(E)`` -> ``E``.
Percent signs are reported separately (``had_percent``) because ``10\\%``
and ``0.1`` are the same answer but ``10`` and ``0.1`` are not.
"""

from __future__ import annotations

import re

_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad|~")  # not the row break \\ of a matrix
_SIZES = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)[lr]?(?![a-zA-Z])\s*")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree|\^\{\\text\{o\}\}")
_TEXT_CMD = r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|mathit|operatorname)"
_UNIT_TEXT = re.compile(r"(?<=[\d}.)])\s*" + _TEXT_CMD + r"\{\s*[a-zA-Z][a-zA-Z .]*\}(?:\s*\^\s*\{?\d\}?)?")
_TEXT = re.compile(_TEXT_CMD + r"\s*\{([^{}]*)\}")
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
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_VAR_PREFIX = re.compile(r"^\s*(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*=\s*(?=[^=]+$)")
_CHOICE = re.compile(r"^\(?([A-E])\)?$|^\(([a-e])\)$")


def _fix_fracs(s: str) -> str:
    """``\\frac12`` / ``\\frac1{2}`` / ``\\frac 34`` -> braced arguments."""
    out, i = [], 0
    while True:
        j = s.find("\\frac", i)
        if j < 0:
            out.append(s[i:])
            return "".join(out)
        out.append(s[i : j + 5])
        i = j + 5
        for _ in range(2):
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] != "{" and s[i] != "\\":
                out.append("{" + s[i] + "}")
                i += 1
            else:
                break


def _fix_sqrt(s: str) -> str:
    """``\\sqrt2`` / ``\\sqrt 2`` -> ``\\sqrt{2}``."""
    return re.sub(r"\\sqrt\s*([^\s{\[\\])", r"\\sqrt{\1}", s)


def had_percent(s: str) -> bool:
    return "%" in s


def normalize(answer: str, strip_assignment: bool = True) -> str:
    """Canonical string form of an answer (keeps single spaces; compare with ``compact``).

    ``strip_assignment``: drop a leading ``x =`` (off when comparing equations).
    """
    s = answer.strip().replace("\n", " ")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\displaystyle", "")
    s = _SIZES.sub("", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    s = _UNIT_TEXT.sub("", s)
    while True:  # unwrap \text{...} from the inside out
        t = _TEXT.sub(r"\1", s)
        if t == s:
            break
        s = t
    s = re.sub(r"\s+", " ", s).strip()
    s = _UNIT_WORDS.sub("", s).strip()
    s = s.rstrip(".").strip()  # a sentence-final period
    if strip_assignment:
        s = _VAR_PREFIX.sub("", s, count=1).strip()
    s = _fix_sqrt(_fix_fracs(s))
    if _THOUSANDS.match(s.replace(" ", "")):
        s = s.replace(",", "").replace(" ", "")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 -> 0.5
    # (?<![\d.]) anchors each match at the start of a number: linear time on long digit runs
    s = re.sub(r"(?<![\d.])(\d+\.\d*?[1-9])0+(?!\d)", r"\1", s)  # 2.50 -> 2.5
    s = re.sub(r"(?<![\d.])(\d+)\.0+(?!\d)", r"\1", s)  # 3.0 -> 3
    m = _CHOICE.match(s)
    if m:
        s = (m.group(1) or m.group(2)).upper()
    if re.fullmatch(r"[A-Za-z ]+", s) and len(s) > 1:  # a word answer: "Even" == "even"
        s = s.lower()
    return s


def compact(s: str) -> str:
    """``normalize``d text without spaces, for plain string comparison."""
    return s.replace(" ", "")
