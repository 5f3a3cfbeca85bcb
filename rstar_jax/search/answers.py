"""Test-time answer selection from a tree record (DESIGN.md §6).

A trajectory is a root-to-answer path. Its score is the reward model's score of
its answer step (``prior``), falling back to the node's Q when the search ran
without a reward model. Equivalent answers are grouped with the grader.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from rstar_jax.search.records import TreeRecord


@dataclasses.dataclass(frozen=True)
class Candidate:
    answer: str
    score: float
    correct: bool | None
    node: int


def candidates(record: TreeRecord) -> list[Candidate]:
    """Every answered trajectory of the tree, best score first (ties: earlier node)."""
    out = [Candidate(n.answer, n.prior if n.prior is not None else n.q, n.correct, n.index)
           for n in record.nodes if n.answer is not None]
    return sorted(out, key=lambda c: (-c.score, c.node))


def _groups(cands: Sequence[Candidate]) -> list[list[Candidate]]:
    from rstar_jax.grading import is_equiv

    groups: list[list[Candidate]] = []
    for c in cands:
        for g in groups:
            if is_equiv(c.answer, g[0].answer):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


def select(record: TreeRecord, how: str = "best", top_k: int | None = None) -> Candidate | None:
    """The chosen answer: ``best`` score, ``majority`` vote or score-``weighted`` vote,
    over the ``top_k`` best-scored trajectories (all when None)."""
    cands = candidates(record)[:top_k] if top_k else candidates(record)
    if not cands:
        return None
    if how == "best":
        return cands[0]
    groups = _groups(cands)
    if how == "majority":
        key = lambda g: (len(g), max(c.score for c in g))
    elif how == "weighted":  # scores in [-1, 1]: shift so every vote counts positively
        key = lambda g: (sum(c.score + 1.0 for c in g), len(g))
    else:
        raise ValueError(f"unknown selection {how!r}; use best, majority or weighted")
    return max(groups, key=key)[0]


def is_solved(record: TreeRecord, how: str = "best", top_k: int | None = None) -> bool:
    """Whether the selected answer is correct (the record must have been graded)."""
    from rstar_jax.grading import is_equiv

    chosen = select(record, how, top_k)
    return chosen is not None and is_equiv(chosen.answer, record.gold)
