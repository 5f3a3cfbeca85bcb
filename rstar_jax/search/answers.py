"""Test-time answer selection from a tree record, and accuracy over records.

A trajectory is a root-to-answer path. Its score is the reward model's score of
its answer step (``prior``), falling back to the node's Q when the search ran
without a reward model. Equivalent answers are grouped with the grader.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from rstar_jax.grading import is_equiv
from rstar_jax.search.records import TreeRecord


@dataclasses.dataclass(frozen=True)
class AnswerCandidate:
    answer: str
    score: float
    correct: bool | None
    node: int


def candidates(record: TreeRecord) -> list[AnswerCandidate]:
    """Every answered trajectory of the tree, best score first (ties: earlier node)."""
    out = [
        AnswerCandidate(n.answer, n.prior if n.prior is not None else n.q, n.correct, n.index)
        for n in record.nodes
        if n.answer is not None
    ]
    return sorted(out, key=lambda c: (-c.score, c.node))


def _equivalence_groups(cands: Sequence[AnswerCandidate]) -> list[list[AnswerCandidate]]:
    groups: list[list[AnswerCandidate]] = []
    for c in cands:
        for g in groups:
            if is_equiv(c.answer, g[0].answer):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


def choose_answer(record: TreeRecord, how: str = "best", top_k: int | None = None) -> AnswerCandidate | None:
    """The chosen answer: ``best`` score, ``majority`` vote or score-``weighted`` vote,
    over the ``top_k`` best-scored trajectories (all when None)."""
    cands = candidates(record)[:top_k] if top_k else candidates(record)
    if not cands:
        return None
    if how == "best":
        return cands[0]
    groups = _equivalence_groups(cands)
    if how == "majority":

        def key(g):
            return (len(g), max(c.score for c in g))
    elif how == "weighted":  # scores in [-1, 1]: shift so every vote counts positively

        def key(g):
            return (sum(c.score + 1.0 for c in g), len(g))
    else:
        raise ValueError(f"unknown selection {how!r}; use best, majority or weighted")
    return max(groups, key=key)[0]


def is_solved(record: TreeRecord, how: str = "best", top_k: int | None = None) -> bool:
    """Whether the selected answer is correct (the record must have been graded)."""
    chosen = choose_answer(record, how, top_k)
    return chosen is not None and is_equiv(chosen.answer, record.gold)


def accuracy(records: Sequence[TreeRecord], how: str = "best", top_k: int | None = None) -> float:
    """Share of records whose selected answer is correct (0 for no records)."""
    return sum(is_solved(r, how, top_k) for r in records) / max(len(records), 1)


def solved_any(records: Sequence[TreeRecord]) -> float:
    """Share of records with at least one answer graded correct anywhere in the tree."""
    return sum(any(n.correct for n in r.nodes) for r in records) / max(len(records), 1)
