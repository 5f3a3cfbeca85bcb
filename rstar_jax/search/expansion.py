"""The expansion step every search method shares, the host node store, and search telemetry.

One step of MCTS, of the sampling baselines and of beam search is the same:
requests for the frontier nodes -> the proposer writes k candidates each -> the
executor runs their code and answers are graded (``expand``) -> the reward model
scores the new children. Callers decide which children enter their trees.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import numpy as np

from rstar_jax.data.problems import Problem
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.expand import expand
from rstar_jax.search.records import TreeRecord, record_from_arrays, root_path
from rstar_jax.search.types import Executor, NodeInfo, ProposalRequest, Proposer, Scorer

NO_PARENT = -1  # the parent of a root

SQUASH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh5": lambda r: np.tanh(r / 5.0),  # the official code's bounded score
    "tanh": np.tanh,
    "sigmoid": lambda r: 2.0 / (1.0 + np.exp(-r)) - 1.0,
    "none": lambda r: np.clip(r, -1.0, 1.0),
}


@dataclasses.dataclass
class SearchStats:
    """Telemetry of one search call; ``as_dict`` adds the rates."""

    problems: int = 0
    iterations: int = 0
    nodes_expanded: int = 0
    nodes_created: int = 0
    tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens the proposer ran through the model
    prefill_saved: int = 0  # prompt tokens it did not run: shared across samples or reused from a node's KV
    decode_slots: int = 0  # row-steps its decode loops ran (see engine.GenerateStats)
    kv_bytes_held: int = 0  # most device bytes of node KV the proposer held after a step
    pages_evicted: int = 0  # KV pages freed to make room (those nodes re-prefill their paths)
    seconds: float = 0.0
    propose_seconds: float = 0.0
    sandbox_seconds: float = 0.0
    score_seconds: float = 0.0

    def add(self, other: "SearchStats") -> None:
        for f in dataclasses.fields(self):
            combine = max if f.name == "kv_bytes_held" else (lambda a, b: a + b)
            setattr(self, f.name, combine(getattr(self, f.name), getattr(other, f.name)))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["nodes_per_s"] = self.nodes_expanded / max(self.seconds, 1e-9)
        d["sandbox_share"] = self.sandbox_seconds / max(self.seconds, 1e-9)
        d["prefill_per_expansion"] = self.prefill_tokens / max(self.nodes_expanded, 1)
        d["decode_utilization"] = self.tokens / self.decode_slots if self.decode_slots else None
        return d


class Forest:
    """Host-side node data of one tree per problem, nodes in creation order (node 0 the root),
    index-aligned with the device tree where there is one."""

    def __init__(self, n: int):
        self.infos: list[list[NodeInfo]] = [[NodeInfo()] for _ in range(n)]
        self.parents: list[list[int]] = [[NO_PARENT] for _ in range(n)]

    def add(self, b: int, parent: int, info: NodeInfo) -> int:
        self.infos[b].append(info)
        self.parents[b].append(parent)
        return len(self.infos[b]) - 1

    def path(self, b: int, node: int) -> list[NodeInfo]:
        """NodeInfos from the root's first child down to ``node`` (root excluded)."""
        return [self.infos[b][i] for i in root_path(self.parents[b], node)[1:]]

    def solved(self, b: int) -> bool:
        return any(n.correct for n in self.infos[b])


class _Timed:
    """The executor, its time added to ``stats.sandbox_seconds``."""

    def __init__(self, executor: Executor, stats: SearchStats):
        self.executor, self.stats = executor, stats

    def run_many(self, programs):
        t = time.perf_counter()
        out = self.executor.run_many(programs)
        self.stats.sandbox_seconds += time.perf_counter() - t
        return out


Frontier = Sequence[tuple[int, int, int]]  # (problem index, node, sample id)


def answer_value(node: NodeInfo, reward: str) -> float:
    """The value an answer node backs up: gold +1/-1, its PPM score, or 0."""
    if reward == "gold":
        return 1.0 if node.correct else -1.0
    return float(node.score or 0.0) if reward == "ppm" else 0.0


def score_children(
    scorer: Scorer,
    squash: str,
    questions: Sequence[str],
    paths: Sequence[Sequence[NodeInfo]],
    children: Sequence[Sequence[NodeInfo]],
    answers_only: bool = False,
) -> list[list[float | None]]:
    """Squashed scores of the new children (one batched reward-model call), None for those not
    scored: invalid ones, and with ``answers_only`` (an outcome reward model) those without an answer."""
    qs, texts, targets = [], [], []
    for i, (q, path, kids) in enumerate(zip(questions, paths, children)):
        prefix = [n.text for n in path]
        for j, kid in enumerate(kids):
            if kid.valid and (kid.answer is not None or not answers_only):
                qs.append(q)
                texts.append(prefix + [kid.text])
                targets.append((i, j))
    out: list[list[float | None]] = [[None] * len(kids) for kids in children]
    if targets:
        scores = SQUASH[squash](np.asarray(scorer.score(qs, texts), np.float64))
        for (i, j), s in zip(targets, scores):
            out[i][j] = float(s)
    return out


def propose_and_expand(
    problems: Sequence[Problem],
    forest: Forest,
    frontier: Frontier,
    proposer: Proposer,
    executor: Executor,
    cfg: SearchConfig,
    k: int,
    stats: SearchStats,
    *,
    scorer: Scorer | None = None,
    gold: bool = True,
    answers_only: bool = False,
) -> list[list[NodeInfo]]:
    """The children of every frontier node: proposed (k each), executed, graded against the gold
    answer (if ``gold``) and scored by ``scorer`` (if given). Nothing is added to ``forest``."""
    paths = [forest.path(b, node) for b, node, _ in frontier]
    requests = [
        ProposalRequest(problems[b].id, problems[b].question, tuple(n.text for n in path), (b, node), sid)
        for (b, node, sid), path in zip(frontier, paths)
    ]
    t0 = time.perf_counter()
    proposal = proposer.propose(requests, k, temperature=cfg.temperature, seed=cfg.seed)
    stats.propose_seconds += time.perf_counter() - t0
    stats.prefill_tokens += proposal.prefill_tokens
    stats.prefill_saved += proposal.shared_saved + proposal.prefix_reused
    stats.decode_slots += proposal.decode_slots
    stats.kv_bytes_held = max(stats.kv_bytes_held, proposal.kv_bytes)
    stats.pages_evicted += proposal.pages_evicted
    stats.tokens += sum(c.num_tokens for cs in proposal.candidates for c in cs)
    golds = [problems[b].answer if gold else None for b, _, _ in frontier]
    kids = expand(paths, proposal.candidates, golds, _Timed(executor, stats), cfg.error_threshold)
    if scorer is not None:
        t2 = time.perf_counter()
        questions = [problems[b].question for b, _, _ in frontier]
        for ks, scores in zip(kids, score_children(scorer, cfg.squash, questions, paths, kids, answers_only)):
            for kid, s in zip(ks, scores):
                kid.score = s
        stats.score_seconds += time.perf_counter() - t2
    stats.nodes_expanded += len(frontier)
    return kids


def release_kv(proposer: Proposer, problem_id: str, steps: Sequence[str] | None = None, sample_id: int = 0) -> None:
    """Tell a proposer that keeps node KV (``PolicyProposer``) that the node at ``steps`` (None:
    every node of the problem) will not be expanded; other proposers keep none."""
    if steps is None:
        if hasattr(proposer, "release_problem"):
            proposer.release_problem(problem_id)
    elif hasattr(proposer, "release"):
        proposer.release(problem_id, sample_id, steps)


def search_meta(cfg: SearchConfig, method: str) -> dict:
    return {
        "method": method,
        "mode": cfg.mode,
        "reward": cfg.reward,
        "rollouts": cfg.rollouts,
        "candidates": cfg.candidates,
        "temperature": cfg.temperature,
        "seed": cfg.seed,
    }


def make_record(problem: Problem, infos: Sequence[NodeInfo], meta: dict, **arrays: np.ndarray) -> TreeRecord:
    """A problem's tree record from its host nodes and the tree's ``parent``, ``depth``,
    ``visits``, ``value_sum`` and ``terminal`` arrays."""
    return record_from_arrays(
        infos=infos,
        problem_id=problem.id,
        question=problem.question,
        gold=problem.answer,
        meta={**meta, "problem_meta": dict(problem.meta)},
        **arrays,
    )
