"""Baselines on the same proposer, sandbox and budget accounting as MCTS.

* ``run_chains``: N independent step-by-step samples per problem (greedy when
  N=1 and temperature 0). Best-of-N picks the ORM-best chain (the reward model's
  score of the full solution), self-consistency the majority answer.
* ``run_beam``: step-level beam search, keeping the W best-scored partial
  solutions after each step, K candidates per beam.
Results are tree records too (chains hang off a shared root), so the same
answer selection, SFT extraction and reports apply.
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from rstar_jax.data.problems import Problem
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.expand import ExpandSettings, NodeInfo, Scorer, expand, path_infos
from rstar_jax.search.mcts import (SearchStats, TimedSandbox, answer_value, make_record, score_children,
                                   search_meta)
from rstar_jax.search.types import ProposalRequest, Proposer
from rstar_jax.search.records import TreeRecord


class _Forest:
    """Host-only trees: one per problem, nodes appended in creation order."""

    def __init__(self, n: int):
        self.infos = [[NodeInfo()] for _ in range(n)]
        self.parents = [[-1] for _ in range(n)]

    def add(self, b: int, parent: int, info: NodeInfo) -> int:
        self.infos[b].append(info)
        self.parents[b].append(parent)
        return len(self.infos[b]) - 1

    def path(self, b: int, node: int) -> list[NodeInfo]:
        return path_infos(self.infos[b], self.parents[b], node)

    def records(self, problems: Sequence[Problem], cfg: SearchConfig, method: str) -> list[TreeRecord]:
        out = []
        for b, p in enumerate(problems):
            infos = self.infos[b]
            # Q of a node: the mean outcome of the answers below it (0 when none), so
            # trajectory statistics (mean Q) mean the same as in an MCTS record.
            value = np.zeros(len(infos))
            count = np.zeros(len(infos), np.int64)
            for n, info in enumerate(infos):
                if info.kind == "answer":
                    v = answer_value(info, "gold" if info.correct is not None else "ppm")
                    m = n
                    while m >= 0:
                        value[m] += v
                        count[m] += 1
                        m = self.parents[b][m]
            depth = np.zeros(len(infos), np.int32)
            for n in range(1, len(infos)):
                depth[n] = depth[self.parents[b][n]] + 1
            tree_np = SimpleNamespace(parent=np.asarray(self.parents[b]), depth=depth, visits=count,
                                      value_sum=value, terminal=np.array([i.terminal for i in infos]),
                                      num_nodes=len(infos))
            out.append(make_record(p, tree_np, infos, search_meta(cfg, method)))
        return out


def _step(problems, forest, frontier, proposer, sandbox, cfg, k, seed, scorer, stats, gold, answers_only=False):
    """Expand every (problem, node, sample_id) in the frontier with k candidates each;
    ``scorer`` scores the new children (only those with an answer if ``answers_only``)."""
    requests = [ProposalRequest(problems[b].id, problems[b].question,
                                tuple(n.text for n in forest.path(b, node)), (b, node), sid)
                for b, node, sid in frontier]
    t0 = time.perf_counter()
    cands = proposer.propose(requests, k, temperature=cfg.temperature, seed=seed)
    stats.propose_seconds += time.perf_counter() - t0
    stats.count_prefill(proposer)
    stats.tokens += sum(c.num_tokens for cs in cands for c in cs)
    paths = [forest.path(b, node) for b, node, _ in frontier]
    golds = [problems[b].answer if gold else None for b, _, _ in frontier]
    kids = expand(paths, cands, golds, TimedSandbox(sandbox, stats), ExpandSettings(cfg.error_threshold))
    if scorer is not None:
        t0 = time.perf_counter()
        score_children(scorer, cfg.squash, [problems[b].question for b, _, _ in frontier], paths, kids,
                       answers_only)
        stats.score_seconds += time.perf_counter() - t0
    stats.nodes_expanded += len(frontier)
    out = []
    for (b, node, sid), ks in zip(frontier, kids):
        ids = [forest.add(b, node, kid) for kid in ks]
        stats.nodes_created += len(ids)
        out.append([(b, i, sid, kid) for i, kid in zip(ids, ks)])
    return out


def run_chains(problems: Sequence[Problem], proposer: Proposer, sandbox, cfg: SearchConfig, n: int,
               scorer: Scorer | None = None, gold: bool = True,
               progress: bool = True) -> tuple[list[TreeRecord], SearchStats]:
    """N independent chains per problem, stepped in lockstep; the answer step of each
    chain is scored by ``scorer`` (the ORM for best-of-N) when given."""
    stats, forest = SearchStats(problems=len(problems)), _Forest(len(problems))
    start = time.perf_counter()
    frontier = [(b, 0, s) for b in range(len(problems)) for s in range(n)]
    for _ in tqdm(range(cfg.max_depth), desc="chains", disable=not progress, leave=False):
        if not frontier:
            break
        expanded = _step(problems, forest, frontier, proposer, sandbox, cfg, 1, cfg.seed, scorer, stats, gold,
                         answers_only=True)
        frontier = [(b, i, sid) for kids in expanded for b, i, sid, kid in kids if not kid.terminal]
        stats.iterations += 1
    stats.seconds = time.perf_counter() - start
    return forest.records(problems, cfg, "chains"), stats


def run_beam(problems: Sequence[Problem], proposer: Proposer, sandbox, cfg: SearchConfig, width: int,
             scorer: Scorer, gold: bool = True, progress: bool = True) -> tuple[list[TreeRecord], SearchStats]:
    """Step-level beam search: K candidates per beam, keep the ``width`` best-scored steps."""
    stats, forest = SearchStats(problems=len(problems)), _Forest(len(problems))
    start = time.perf_counter()
    frontier = [(b, 0, 0) for b in range(len(problems))]
    for _ in tqdm(range(cfg.max_depth), desc="beam", disable=not progress, leave=False):
        if not frontier:
            break
        expanded = _step(problems, forest, frontier, proposer, sandbox, cfg, cfg.candidates, cfg.seed,
                         scorer, stats, gold)
        by_problem: dict[int, list] = {}
        for kids in expanded:
            for b, i, _, kid in kids:
                if not kid.terminal:
                    by_problem.setdefault(b, []).append((-(kid.score or 0.0), i))
        frontier = [(b, i, 0) for b, cands in sorted(by_problem.items()) for _, i in sorted(cands)[:width]]
        stats.iterations += 1
    stats.seconds = time.perf_counter() - start
    return forest.records(problems, cfg, "beam"), stats
