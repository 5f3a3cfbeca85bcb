"""Problem files: one ``Problem`` type for every benchmark format we read.

Accepted records (``.jsonl``, one object a line, or ``.json``, an array of objects):

- ours:            ``id, question, answer, meta``
- GSM8K:           ``question``, ``answer`` = worked solution ending ``#### 1,234``
- MATH / MATH-500: ``problem``, ``answer`` (optional ``solution``, ``unique_id``)
- rStar eval sets: ``index``, ``question``, ``answer``
- OlympiadBench:   ``question``, ``final_answer`` (a list)
- Minerva math:    ``problem``, ``solution`` with the answer in the last ``\\boxed{}``
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterator

from rstar_jax.errors import UserError
from rstar_jax.io import read_jsonl_numbered, write_jsonl

_QUESTION_KEYS = ("question", "problem")
_ID_KEYS = ("id", "unique_id")
# Fields turned into Problem attributes; everything else lands in ``meta``.
_CONSUMED = {"id", "unique_id", "question", "problem", "answer", "final_answer", "meta"}


class NoAnswer(ValueError):
    """A record with a question but no gold answer to check a solution against."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem: ``answer`` is the gold final answer as a string (no ``\\boxed``; may be
    empty where the source has none, which no prediction matches)."""

    id: str
    question: str
    answer: str
    meta: dict = dataclasses.field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "answer": self.answer, "meta": self.meta}


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (braces matched), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def _gold_answer(record: dict) -> tuple[str, str | None]:
    """(gold answer, worked solution or None) of one record, whichever format it is in."""
    if "answer" in record and record["answer"] is not None:
        answer = record["answer"]
        scalars = answer if isinstance(answer, list) else [answer]
        if not scalars or any(isinstance(a, bool) or not isinstance(a, (str, int, float)) for a in scalars):
            raise ValueError(f"'answer' must be a string, a number or a list of them, got {json.dumps(answer)[:60]}")
        if isinstance(answer, list):  # several answers (rStar's MATH_test.json): graded as one tuple
            return ", ".join(str(a).strip() for a in answer), record.get("solution")
        if isinstance(answer, str) and "####" in answer:  # GSM8K: worked solution, then the number
            solution, gold = answer.rsplit("####", 1)
            return gold.strip().replace(",", ""), solution.strip()
        return str(answer).strip(), record.get("solution")
    if "final_answer" in record:
        answers = record["final_answer"]
        answers = answers if isinstance(answers, list) else [answers]
        return ", ".join(str(a).strip().strip("$").strip() for a in answers), None
    solution = record.get("solution")
    if isinstance(solution, str) and (boxed := last_boxed(solution)) is not None:
        return boxed.strip(), solution
    raise NoAnswer("no answer: expected 'answer', 'final_answer' or a \\boxed{} in 'solution'")


def problem_from_record(record: Any, default_id: str) -> Problem:
    """Convert one parsed record; raises ValueError with the reason if it is malformed."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    question = next((record[k] for k in _QUESTION_KEYS if isinstance(record.get(k), str)), None)
    if question is None or not question.strip():
        raise ValueError("no question: expected a non-empty 'question' or 'problem' string")
    # An empty gold answer is kept (2 records of gaokao2023en have one): it grades as wrong.
    answer, solution = _gold_answer(record)
    pid = next((str(record[k]) for k in _ID_KEYS if record.get(k) is not None), default_id)
    if isinstance(record.get("meta"), dict):
        meta = dict(record["meta"])
    else:
        meta = {k: v for k, v in record.items() if k not in _CONSUMED}
        if solution is not None:
            meta["solution"] = solution
    return Problem(id=pid, question=question, answer=answer, meta=meta)


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(location, parsed record) pairs; location is ``file:line`` or ``file:[index]``."""
    if path.suffix == ".jsonl":
        for lineno, record in read_jsonl_numbered(path):
            yield f"{path}:{lineno}", record
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON: {e}") from None
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON array of problems, got {type(data).__name__}")
        for i, record in enumerate(data):
            yield f"{path}:[{i}]", record
    else:
        raise UserError(f"{path}: unsupported problem file suffix {path.suffix!r} (use .jsonl or .json)")


def load_problems(path: str | os.PathLike, limit: int | None = None) -> list[Problem]:
    """Read up to ``limit`` problems from a ``.jsonl`` or ``.json`` file in any supported format."""
    return _load(Path(path), limit, skip_unanswered=False)[0]


def load_answered(path: str | os.PathLike, limit: int | None = None) -> tuple[list[Problem], list[str]]:
    """Up to ``limit`` problems with a non-empty gold answer (a training set: a problem without one
    cannot reward a solution), and ``file:line: reason`` for each record skipped for lacking one.
    Raises ``UserError`` naming the file when none has an answer."""
    path = Path(path)
    problems, skipped = _load(path, limit, skip_unanswered=True)
    if not problems and limit != 0:
        raise UserError(
            f"{path}: none of its {len(skipped)} problems has an extractable gold answer "
            f"({skipped[0].split(': ', 1)[1]}); a training file needs 'answer', 'final_answer' "
            "or a \\boxed{} in 'solution'"
        )
    return problems, skipped


def _load(path: Path, limit: int | None, skip_unanswered: bool) -> tuple[list[Problem], list[str]]:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    problems: list[Problem] = []
    skipped: list[str] = []
    for i, (where, record) in enumerate(_records(path)):
        if limit is not None and len(problems) >= limit:
            break
        index = record.get("index", i) if isinstance(record, dict) else i
        try:
            problem = problem_from_record(record, default_id=f"{path.parent.name}/{path.stem}-{index}")
        except NoAnswer as e:
            if not skip_unanswered:
                raise UserError(f"{where}: {e}") from None
            skipped.append(f"{where}: {e}")
            continue
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
        if skip_unanswered and not problem.answer.strip():
            skipped.append(f"{where}: empty gold answer")
            continue
        problems.append(problem)
    if not problems and not skipped and limit != 0:
        raise UserError(f"{path}: no problems in the file")
    return problems, skipped


def save_problems(problems: list[Problem], path: str | os.PathLike) -> None:
    """Write problems as our ``.jsonl`` format, atomically (a reader never sees half a file)."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ValueError(f"{path}: problems are saved as .jsonl")
    write_jsonl(path, (p.to_json() for p in problems))
