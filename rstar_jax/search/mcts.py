"""Batched MCTS over reasoning steps: B trees in lockstep, tree on device, sandbox on host.

One iteration for every tree at once (docs/DESIGN.md §5):
  select (jit) -> propose, execute, grade and score the new children (host,
  ``expansion.propose_and_expand``) -> insert, mark failed steps, back up answers (jit).
A tree stops after ``rollouts`` completed rollouts (an expansion that reached an
answer or a dead end) or when its root becomes terminal.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from rstar_jax.data.problems import Problem
from rstar_jax.errors import UserError
from rstar_jax.search import tree as tree_lib
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.expansion import (
    Forest,
    SearchStats,
    answer_value,
    make_record,
    propose_and_expand,
    release_kv,
    search_meta,
)
from rstar_jax.search.records import TreeRecord
from rstar_jax.search.types import Executor, NodeInfo, Proposer, Scorer


def run_mcts(
    problems: Sequence[Problem],
    proposer: Proposer,
    executor: Executor,
    cfg: SearchConfig,
    scorer: Scorer | None = None,
    progress: bool = True,
) -> tuple[list[TreeRecord], SearchStats]:
    """Search every problem; returns one TreeRecord per problem (input order) and telemetry."""
    check_scorer(cfg, scorer)
    records, stats = [], SearchStats()
    chunks = [problems[i : i + cfg.batch_size] for i in range(0, len(problems), cfg.batch_size)]
    for chunk in tqdm(chunks, desc="search", unit="batch", disable=not progress or len(chunks) < 2):
        recs, st = _search_batch(list(chunk), proposer, executor, cfg, scorer, progress)
        records.extend(recs)
        stats.add(st)
    return records, stats


def check_scorer(cfg: SearchConfig, scorer: Scorer | None) -> None:
    """PPM mode needs the PPM (callers check before they write anything)."""
    if cfg.mode == "ppm" and scorer is None:
        raise UserError("mode='ppm' needs a scorer (the PPM: --ppm)")


class _Rollouts:
    """Completed rollouts per tree against each tree's target (raised once, for a tree with no
    correct answer, by ``extra_rollouts_if_unsolved``), with a progress bar."""

    def __init__(self, cfg: SearchConfig, b: int, progress: bool):
        self.cfg, self.done, self.target = cfg, np.zeros(b, np.int64), np.full(b, cfg.rollouts)
        self.bar = tqdm(total=int(self.target.sum()), desc="rollouts", disable=not progress, leave=False)

    def active(self, root_terminal: np.ndarray) -> np.ndarray:
        return (self.done < self.target) & ~root_terminal

    def count(self, b: int, inserted: Sequence[NodeInfo], proposed: Sequence[NodeInfo]) -> None:
        """A rollout ends when an expansion produced an answer or nothing left to expand."""
        if all(kid.terminal for kid in inserted) or any(kid.kind == "answer" for kid in proposed):
            self.done[b] += 1
            self.bar.update(1)

    def extend_unsolved(self, forest: Forest) -> None:
        extra = self.cfg.extra_rollouts_if_unsolved
        if not extra or self.cfg.reward != "gold":
            return
        for b in np.nonzero((self.done >= self.target) & (self.target == self.cfg.rollouts))[0]:
            if not forest.solved(b):
                self.target[b] += extra
                self.bar.total += extra


def _search_batch(
    problems: list[Problem],
    proposer: Proposer,
    executor: Executor,
    cfg: SearchConfig,
    scorer: Scorer | None,
    progress: bool,
) -> tuple[list[TreeRecord], SearchStats]:
    """mctx's ``body_fun`` over B trees: select -> expand -> insert -> mark invalid -> backup."""
    b, k, num_leaves, spec = len(problems), cfg.candidates, cfg.leaves_per_tree, cfg.tree_spec()
    stats, forest, rollouts = SearchStats(problems=b), Forest(b), _Rollouts(cfg, b, progress)
    tree = tree_lib.init_tree(b, cfg.tree_capacity(), k)
    start = time.perf_counter()
    released = np.zeros(b, bool)  # trees whose node KV the proposer has dropped
    for _ in range(cfg.max_iterations()):
        active = rollouts.active(np.asarray(tree.terminal[:, 0]))
        for i in np.flatnonzero(~active & ~released):
            release_kv(proposer, problems[i].id)
        released |= ~active
        if not active.any():
            break
        leaves = np.array(tree_lib.select(tree, spec, num_leaves))  # a writable copy
        leaves[~active] = tree_lib.NO_NODE
        slots = [(i, j) for i in range(b) for j in range(num_leaves) if leaves[i, j] >= 0]
        if not slots:
            break
        kids = propose_and_expand(
            problems,
            forest,
            [(i, int(leaves[i, j]), 0) for i, j in slots],
            proposer,
            executor,
            cfg,
            k,
            stats,
            scorer=scorer if cfg.mode == "ppm" else None,
            gold=cfg.reward == "gold",
        )
        tree, ids = tree_lib.insert(tree, leaves, *_child_arrays(slots, kids, leaves.shape, k), spec)
        failed, answers, values = _register(forest, leaves, slots, kids, np.asarray(ids), cfg, rollouts)
        _release_terminal(proposer, problems, forest, slots, kids, np.asarray(ids))
        stats.nodes_created += int((np.asarray(ids) >= 0).sum())
        tree = tree_lib.mark_invalid(tree, failed)
        tree = tree_lib.backup(tree, answers, values)
        rollouts.extend_unsolved(forest)
        stats.iterations += 1
    rollouts.bar.close()
    for i in np.flatnonzero(~released):
        release_kv(proposer, problems[i].id)
    stats.seconds = time.perf_counter() - start
    host = jax.device_get(tree)
    meta = search_meta(cfg, "mcts")
    records = []
    for i, problem in enumerate(problems):
        t = tree_lib.tree_slice(host, i)
        records.append(
            make_record(
                problem,
                forest.infos[i],
                meta,
                parent=t.parent,
                depth=t.depth,
                visits=t.visits,
                value_sum=t.value_sum,
                terminal=t.terminal,
            )
        )
    return records, stats


def _child_arrays(slots, kids, shape, k) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """insert's (prior, terminal, reward, mask) [B, L, K] of the new children of each slot."""
    prior = np.zeros((*shape, k), np.float32)
    terminal = np.zeros((*shape, k), bool)
    mask = np.zeros((*shape, k), bool)
    for (i, j), ks in zip(slots, kids):
        for c, kid in enumerate(ks[:k]):
            mask[i, j, c], terminal[i, j, c] = True, kid.terminal
            prior[i, j, c] = kid.score if kid.score is not None else 0.0
    return prior, terminal, np.zeros_like(prior), mask


def _release_terminal(proposer, problems, forest, slots, kids, ids) -> None:
    """Drop the proposer's KV of the new children that can never be selected (answers, dead ends)."""
    for (i, j), ks in zip(slots, kids):
        for c, kid in enumerate(ks[: ids.shape[-1]]):
            if kid.terminal and ids[i, j, c] >= 0:
                release_kv(proposer, problems[i].id, [n.text for n in forest.path(i, int(ids[i, j, c]))])


def _register(forest, leaves, slots, kids, ids, cfg, rollouts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add the inserted children to the host forest and count finished rollouts; returns the
    failed nodes [B, L*K] and the answer nodes with their values [B, L*K] for the tree."""
    b, num_leaves = leaves.shape
    k = ids.shape[-1]
    failed = np.full((b, num_leaves * k), tree_lib.NO_NODE, np.int32)
    answers = np.full((b, num_leaves * k), tree_lib.NO_NODE, np.int32)
    values = np.zeros((b, num_leaves * k), np.float32)
    for (i, j), ks in zip(slots, kids):
        inserted = []
        for c, kid in enumerate(ks[:k]):
            node = int(ids[i, j, c])
            if node < 0:  # dropped: tree capacity reached
                continue
            inserted.append(kid)
            if forest.add(i, int(leaves[i, j]), kid) != node:
                raise AssertionError("host and device node indices diverged")
            if kid.terminal and not kid.valid:
                failed[i, j * k + c] = node
            elif kid.kind == "answer":
                answers[i, j * k + c] = node
                values[i, j * k + c] = answer_value(kid, cfg.reward)
        rollouts.count(i, inserted, ks[:k])
    return failed, answers, values
