"""Host side of an expansion: turn proposed step texts into checked child nodes.

Every search method (MCTS, sampling baselines, beam search) expands nodes the
same way: dedupe the candidates of a node, run each candidate's path program in
the sandbox (all of them in one batch), append the code output after a final
code step, grade answer steps against the gold answer. This module owns that.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Protocol, Sequence

import numpy as np

from rstar_jax import steps as fmt
from rstar_jax.search.types import StepCandidate


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


class Scorer(Protocol):
    def score(self, questions: Sequence[str], paths: Sequence[Sequence[str]]) -> np.ndarray:
        """Raw reward-model scores [M] for each (question, step texts) pair."""
        ...


SQUASH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh5": lambda r: np.tanh(r / 5.0),  # the official code's bounded score
    "tanh": np.tanh,
    "sigmoid": lambda r: 2.0 / (1.0 + np.exp(-r)) - 1.0,
    "none": lambda r: np.clip(r, -1.0, 1.0),
}


def path_infos(nodes: Sequence[NodeInfo], parents: Sequence[int], node: int) -> list[NodeInfo]:
    """NodeInfos from the root's first child down to ``node`` (root excluded)."""
    path = []
    while node > 0:
        path.append(nodes[node])
        node = parents[node]
    return path[::-1]


def program_of(path: Sequence[NodeInfo], step: str) -> str:
    """The code of every kept code step on the path, plus the new step's code.

    Failed steps stay in the text (the policy may repair them) but not in the program.
    """
    parts = [fmt.step_code(n.text) for n in path if n.valid and n.kind in ("code", "final_code")]
    return "".join(parts) + fmt.step_code(step)


class NoExecution:
    """A stand-in for the sandbox that runs nothing: every program "succeeds" with no output.

    For steps that are not code (natural-language reasoning, the code-vs-NL ablation): no step
    is filtered by execution and whatever the text states goes unchecked."""

    def run_many(self, programs: Sequence[str]) -> list:
        from rstar_jax.sandbox import ExecResult
        return [ExecResult(ok=True, stdout="", error=None, timed_out=False, duration_s=0.0) for _ in programs]

    def __enter__(self) -> "NoExecution":
        return self

    def __exit__(self, *exc) -> None:
        return None


@dataclasses.dataclass(frozen=True)
class ExpandSettings:
    error_threshold: int = 2  # a branch dies at this many consecutive code errors


def expand(paths: Sequence[Sequence[NodeInfo]], candidates: Sequence[Sequence[StepCandidate]],
           golds: Sequence[str | None], sandbox, settings: ExpandSettings) -> list[list[NodeInfo]]:
    """Children for each expanded node: deduplicated, executed, graded.

    paths[i]: the NodeInfos on the path to node i; candidates[i]: its proposals;
    golds[i]: the gold answer (None at test time: answers are not graded).
    Tokens of duplicates still count toward ``num_tokens`` of the kept copy's
    node so the generation budget stays exact.
    """
    from rstar_jax.grading import extract_answer, is_equiv

    children: list[list[NodeInfo]] = []
    jobs: list[tuple[NodeInfo, str, int]] = []  # (child, program, parent errors)
    for path, cands in zip(paths, candidates):
        kept: dict[str, NodeInfo] = {}
        for c in cands:
            if c.text in kept:
                kept[c.text].num_tokens += c.num_tokens
                continue
            kind = fmt.step_kind(c.text)
            child = NodeInfo(text=c.text, kind=kind, num_tokens=c.num_tokens)
            kept[c.text] = child
            if kind == "incomplete":  # cut at the length limit: not a step
                child.valid, child.terminal = False, True
            elif kind in ("code", "final_code"):
                jobs.append((child, program_of(path, c.text), path[-1].errors if path else 0))
            else:  # answer step
                child.terminal = True
                child.answer = extract_answer(c.text)
        children.append(list(kept.values()))

    results = sandbox.run_many([p for _, p, _ in jobs]) if jobs else []
    for (child, _, parent_errors), res in zip(jobs, results):
        if res.ok:
            child.output = res.stdout
            if child.kind == "final_code":
                child.text = child.text + fmt.output_block(res.stdout)
        else:
            child.valid = False
            child.output = res.error or ("TimeoutError: timed out" if res.timed_out else "error")
            child.errors = parent_errors + 1
            child.terminal = child.errors >= settings.error_threshold
            if not child.terminal:  # kept so the policy can repair it: show it the error
                child.text = child.text + fmt.output_block(child.output)

    for kids, gold in zip(children, golds):
        for child in kids:
            if child.kind == "answer" and gold is not None:
                child.correct = child.answer is not None and is_equiv(child.answer, gold)
    return children
