"""Search's interfaces: what proposes steps, executes them and scores them, and the host
data of a node.

The engine-backed policy is one ``Proposer`` (``search.proposers``); the scripted
bootstrap proposer of the embedded domain and test toys are others. The search knows
nothing else about where steps come from, how code runs, or how steps are scored.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

import numpy as np


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


@dataclasses.dataclass(frozen=True)
class Proposal:
    """What one ``propose`` call returns: ``k`` candidates per request, and the work it took.

    prefill_tokens: prompt tokens run through the model.
    shared_saved:   prompt tokens not run because the k samples of a request share its prefill.
    prefix_reused:  prompt tokens not run because a node's KV was reused.
    decode_slots:   row-steps the decode loops ran (``engine.GenerateStats.decode_slots``).
    kv_bytes:       device bytes of node KV the proposer holds after the call.
    pages_evicted:  KV pages it freed during the call to make room (their nodes re-prefill).
    """

    candidates: list[list[StepCandidate]]
    prefill_tokens: int = 0
    shared_saved: int = 0
    prefix_reused: int = 0
    decode_slots: int = 0
    kv_bytes: int = 0
    pages_evicted: int = 0


class Proposer(Protocol):
    def propose(self, requests: Sequence[ProposalRequest], k: int, *, temperature: float, seed: int) -> Proposal:
        """Return ``k`` candidates per request (duplicates allowed; the search dedups).

        Results for a request must depend only on (seed, request.problem_id,
        request.sample_id, request.steps), never on which other requests share the batch.
        """
        ...


class Scorer(Protocol):
    def score(self, questions: Sequence[str], paths: Sequence[Sequence[str]]) -> np.ndarray:
        """Raw reward-model scores [M] float for each (question, step texts) pair."""
        ...


class ExecutionResult(Protocol):
    ok: bool
    stdout: str
    error: str | None
    timed_out: bool


class Executor(Protocol):
    """Runs programs (the sandbox, or ``expand.NoExecution``); results in input order."""

    def run_many(self, programs: Sequence[str]) -> Sequence[ExecutionResult]: ...


@dataclasses.dataclass
class NodeInfo:
    """Host-side data of one tree node (index-aligned with the device tree).

    text:     the step text as the policy continues from it (a final code step
              carries its ``<output>`` block; a failed-but-kept step its error).
    valid:    the step's code (with the path before it) executed, or it is not code.
    errors:   consecutive failed code steps ending at this node.
    """

    text: str = ""
    kind: str = "root"
    output: str | None = None
    valid: bool = True
    answer: str | None = None
    correct: bool | None = None
    num_tokens: int = 0
    errors: int = 0
    terminal: bool = False  # an answer, or a failure that ends the branch
    score: float | None = None  # squashed PPM score
