"""Answer extraction: the last ``\\boxed{...}`` of a solution, GSM8K's ``#### 42`` gold."""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _braced(text: str, open_index: int) -> str | None:
    """Content of the brace group opening at ``text[open_index]`` (nested braces matched)."""
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
                return text[open_index + 1 : i]
    return None


def extract_answer(text: str | None) -> str | None:
    """The content of the last ``\\boxed{...}`` or ``\\fbox{...}`` in ``text``, stripped.

    Also accepts the brace-less form ``\\boxed 5``. None when there is no
    complete box (e.g. unbalanced braces from a truncated generation).
    """
    if not isinstance(text, str):
        return None
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    while start >= 0:
        cmd = next(c for c in _BOX_COMMANDS if text.startswith(c, start))
        rest = start + len(cmd)
        j = rest
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            inner = _braced(text, j)
            if inner is not None:
                return inner.strip()
        elif j > rest:  # "\boxed 5": up to the next space or dollar sign
            m = re.match(r"[^\s$]+", text[j:])
            if m:
                return m.group(0).strip()
        start = max(text.rfind(c, 0, start) for c in _BOX_COMMANDS)  # malformed: try an earlier box
    return None


def extract_gsm8k_gold(answer_text: str) -> str | None:
    """The number after ``####`` in a GSM8K solution, without thousands separators."""
    if not isinstance(answer_text, str) or "####" not in answer_text:
        return None
    value = answer_text.rsplit("####", 1)[1].strip()
    return value.replace(",", "").replace("$", "").strip() or None
