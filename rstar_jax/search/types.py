"""The step-proposer interface: anything that writes K candidate next steps.

The engine-backed policy is one implementation; the scripted bootstrap
proposer of the embedded domain and test toys are others. The search knows
nothing else about where steps come from.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence


@dataclasses.dataclass(frozen=True)
class ProposalRequest:
    """One leaf to expand.

    problem_id: id of the problem (stable across batching; used for seeding).
    question:   the problem text.
    steps:      texts of the steps on the path from the root to this leaf
                (each ending with its marker; a final-code step includes the
                host-appended ``<output>`` block).
    node:       (tree index, node index) of the leaf, so a proposer may keep
                per-node state such as a prefix KV cache.
    sample_id:  tells independent samples of the same path apart (the chains of
                best-of-N / self-consistency); 0 in tree search.
    """

    problem_id: str
    question: str
    steps: tuple[str, ...]
    node: tuple[int, int] = (0, 0)
    sample_id: int = 0


@dataclasses.dataclass(frozen=True)
class StepCandidate:
    """One proposed next step: its text ends with a step marker (or not, if cut at
    the length limit), ``num_tokens`` counts generated tokens for budget accounting."""

    text: str
    num_tokens: int
    logprob: float = 0.0
    finish_reason: str = "stop"


class Proposer(Protocol):
    def propose(
        self, requests: Sequence[ProposalRequest], k: int, *, temperature: float, seed: int
    ) -> list[list[StepCandidate]]:
        """Return ``k`` candidates per request (duplicates allowed; the search dedups).

        Results for a request must depend only on (seed, request.problem_id,
        request.sample_id, request.steps), never on which other requests share the batch.
        """
        ...
