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
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from rstar_jax.data.problems import Problem
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.expansion import (
    Forest,
    Frontier,
    SearchStats,
    answer_value,
    make_record,
    propose_and_expand,
    release_kv,
    search_meta,
)
from rstar_jax.search.records import TreeRecord, root_path
from rstar_jax.search.types import Executor, NodeInfo, Proposer, Scorer


def _records(forest: Forest, problems: Sequence[Problem], cfg: SearchConfig, method: str) -> list[TreeRecord]:
    """Tree records of host-only trees. Q of a node is the mean outcome of the answers below it
    (0 when none), so trajectory statistics (mean Q) mean the same as in an MCTS record."""
    out = []
    for b, problem in enumerate(problems):
        infos, parents = forest.infos[b], np.asarray(forest.parents[b])
        value_sum = np.zeros(len(infos))
        visits = np.zeros(len(infos), np.int64)
        for n, info in enumerate(infos):
            if info.kind == "answer":
                on_path = root_path(parents, n)
                value_sum[on_path] += answer_value(info, "gold" if info.correct is not None else "ppm")
                visits[on_path] += 1
        depth = np.array([len(root_path(parents, n)) - 1 for n in range(len(infos))], np.int32)
        out.append(
            make_record(
                problem,
                infos,
                search_meta(cfg, method),
                parent=parents,
                depth=depth,
                visits=visits,
                value_sum=value_sum,
                terminal=np.array([i.terminal for i in infos]),
            )
        )
    return out


def _step(
    problems,
    forest: Forest,
    frontier: Frontier,
    proposer,
    executor,
    cfg: SearchConfig,
    k: int,
    stats: SearchStats,
    **scoring,
) -> list[list[tuple[int, int, int, NodeInfo]]]:
    """Expand the frontier and add every child to the forest: per frontier entry, its
    children as (problem, node, sample id, info)."""
    kids = propose_and_expand(problems, forest, frontier, proposer, executor, cfg, k, stats, **scoring)
    out = []
    for (b, node, sid), ks in zip(frontier, kids):
        out.append([(b, forest.add(b, node, kid), sid, kid) for kid in ks])
        stats.nodes_created += len(ks)
    return out


def run_chains(
    problems: Sequence[Problem],
    proposer: Proposer,
    executor: Executor,
    cfg: SearchConfig,
    n: int,
    scorer: Scorer | None = None,
    gold: bool = True,
    progress: bool = True,
) -> tuple[list[TreeRecord], SearchStats]:
    """N independent chains per problem, stepped in lockstep; the answer step of each
    chain is scored by ``scorer`` (the ORM for best-of-N) when given."""
    stats, forest = SearchStats(problems=len(problems)), Forest(len(problems))
    start = time.perf_counter()
    frontier = [(b, 0, s) for b in range(len(problems)) for s in range(n)]
    for _ in tqdm(range(cfg.max_depth), desc="chains", disable=not progress, leave=False):
        if not frontier:
            break
        expanded = _step(
            problems, forest, frontier, proposer, executor, cfg, 1, stats, scorer=scorer, gold=gold, answers_only=True
        )
        frontier = [(b, i, sid) for kids in expanded for b, i, sid, kid in kids if not kid.terminal]
        stats.iterations += 1
    for p in problems:  # the proposer's node KV of these problems is no longer needed
        release_kv(proposer, p.id)
    stats.seconds = time.perf_counter() - start
    return _records(forest, problems, cfg, "chains"), stats


def run_beam(
    problems: Sequence[Problem],
    proposer: Proposer,
    executor: Executor,
    cfg: SearchConfig,
    width: int,
    scorer: Scorer,
    gold: bool = True,
    progress: bool = True,
) -> tuple[list[TreeRecord], SearchStats]:
    """Step-level beam search: K candidates per beam, keep the ``width`` best-scored steps."""
    stats, forest = SearchStats(problems=len(problems)), Forest(len(problems))
    start = time.perf_counter()
    frontier = [(b, 0, 0) for b in range(len(problems))]
    for _ in tqdm(range(cfg.max_depth), desc="beam", disable=not progress, leave=False):
        if not frontier:
            break
        expanded = _step(
            problems, forest, frontier, proposer, executor, cfg, cfg.candidates, stats, scorer=scorer, gold=gold
        )
        by_problem: dict[int, list] = {}
        for kids in expanded:
            for b, i, _, kid in kids:
                if not kid.terminal:
                    by_problem.setdefault(b, []).append((-(kid.score or 0.0), i))
        frontier = [(b, i, 0) for b, cands in sorted(by_problem.items()) for _, i in sorted(cands)[:width]]
        stats.iterations += 1
    for p in problems:
        release_kv(proposer, p.id)
    stats.seconds = time.perf_counter() - start
    return _records(forest, problems, cfg, "beam"), stats
