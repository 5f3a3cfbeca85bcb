"""Answer extraction: the last ``\\boxed{...}`` of a solution, GSM8K's ``#### 42`` gold."""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
# What may stand between the boxes of one answer given as several: "$\boxed{1}$ and $\boxed{-2}$",
# "\boxed{(1, 2)}, \boxed{(2, 1)}", "x = \boxed{3} \text{ or } x = \boxed{7}"
_BETWEEN_BOXES = re.compile(
    r"(?:\s|[,;&~]|\$|\\[()\[\]]|\\\\|\\q?quad\b|\\[,;:! ]|\band\b|\bor\b"
    r"|\\(?:text|textrm|mathrm)\{\s*(?:and|or|,)?\s*\}|\b[a-zA-Z](?:_\{?\w+\}?)?\s*=)*"
)


def _braced(text: str, open_index: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[open_index]`` (nested braces matched), and its end."""
    depth = 0
    for i in range(open_index, len(text)):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue  # an escaped brace \{ or \} does not open or close a group
        if ch == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : i], i + 1
    return None


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete box, in order of their start."""
    out = []
    for m in _BOX.finditer(text):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            got = _braced(text, j)
            if got is not None:
                out.append((m.start(), got[1], got[0].strip()))
        elif j > m.end():  # "\boxed 5": up to the next space or dollar sign
            word = re.match(r"[^\s$]+", text[j:])
            if word:
                out.append((m.start(), j + word.end(), word.group(0).strip()))
    return out


def extract_answer(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, stripped.

    Also accepts the brace-less form ``\\boxed 5``. None when there is no
    complete box (e.g. unbalanced braces from a truncated generation). An
    answer given as several boxes in a row (``\\boxed{1} and \\boxed{-2}``,
    only connectives, commas and math delimiters between them) is their
    contents joined by commas: ``1, -2``.
    """
    if not isinstance(text, str) or not any(cmd in text for cmd in _BOX_COMMANDS):
        return None
    boxes = _boxes(text)
    if not boxes:
        return None
    start, _, content = boxes[-1]
    parts = [content]
    for prev_start, prev_end, prev in reversed(boxes[:-1]):
        if prev_end > start or not _BETWEEN_BOXES.fullmatch(text, prev_end, start):
            break  # a box nested in the last one, or real text between them
        parts.append(prev)
        start = prev_start
    return ", ".join(reversed(parts))


def extract_gsm8k_gold(answer_text: str) -> str | None:
    """The number after ``####`` in a GSM8K solution, without thousands separators."""
    if not isinstance(answer_text, str) or "####" not in answer_text:
        return None
    value = answer_text.rsplit("####", 1)[1].strip()
    return value.replace(",", "").replace("$", "").strip() or None
