"""Host side of an expansion: turn proposed step texts into checked child nodes.

Every search method (MCTS, sampling baselines, beam search) expands nodes the
same way: dedupe the candidates of a node, run each candidate's path program in
the sandbox (all of them in one batch), append the code output after a final
code step, grade answer steps against the gold answer. This module owns that.
"""

from __future__ import annotations

from typing import Sequence

from rstar_jax import steps
from rstar_jax.grading import extract_answer, is_equiv
from rstar_jax.sandbox import ExecResult
from rstar_jax.search.types import Executor, NodeInfo, StepCandidate


def program_of(path: Sequence[NodeInfo], step: str) -> str:
    """The code of every kept code step on the path, plus the new (code) step's code.

    Failed steps stay in the text (the policy may repair them) but not in the program.
    """
    return steps.path_program([n.text for n in path if n.valid] + [step])


class NoExecution:
    """A stand-in for the sandbox that runs nothing: every program "succeeds" with no output.

    For steps that are not code (natural-language reasoning, the code-vs-NL ablation): no step
    is filtered by execution and whatever the text states goes unchecked."""

    def run_many(self, programs: Sequence[str]) -> list[ExecResult]:
        return [ExecResult(ok=True, stdout="", error=None, timed_out=False, duration_s=0.0) for _ in programs]

    def __enter__(self) -> "NoExecution":
        return self

    def __exit__(self, *exc) -> None:
        return None


def expand(
    paths: Sequence[Sequence[NodeInfo]],
    candidates: Sequence[Sequence[StepCandidate]],
    golds: Sequence[str | None],
    executor: Executor,
    error_threshold: int,
) -> list[list[NodeInfo]]:
    """Children for each expanded node: deduplicated, executed, graded.

    paths[i]: the NodeInfos on the path to node i; candidates[i]: its proposals;
    golds[i]: the gold answer (None at test time: answers are not graded);
    error_threshold: a branch dies at this many consecutive code errors.
    Tokens of duplicates still count toward ``num_tokens`` of the kept copy's
    node so the generation budget stays exact.
    """
    children: list[list[NodeInfo]] = []
    jobs: list[tuple[NodeInfo, str, int]] = []  # (child, program, parent errors)
    for path, cands in zip(paths, candidates):
        kept: dict[str, NodeInfo] = {}
        for c in cands:
            if c.text in kept:
                kept[c.text].num_tokens += c.num_tokens
                continue
            kind = steps.step_kind(c.text)
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

    results = executor.run_many([p for _, p, _ in jobs]) if jobs else []
    for (child, _, parent_errors), res in zip(jobs, results):
        if res.ok:
            child.output = res.stdout
            if child.kind == "final_code":
                child.text = child.text + steps.output_block(res.stdout)
        else:
            child.valid = False
            child.output = res.error or ("TimeoutError: timed out" if res.timed_out else "error")
            child.errors = parent_errors + 1
            child.terminal = child.errors >= error_threshold
            if not child.terminal:  # kept so the policy can repair it: show it the error
                child.text = child.text + steps.output_block(child.output)

    for kids, gold in zip(children, golds):
        for child in kids:
            if child.kind == "answer" and gold is not None:
                child.correct = child.answer is not None and is_equiv(child.answer, gold)
    return children
