"""Batched MCTS over reasoning steps: B trees in lockstep, tree on device, sandbox on host.

One iteration for every tree at once (DESIGN.md §6):
  select (jit) -> host builds requests -> proposer writes K candidates per leaf
  -> host dedups, runs the sandbox, grades -> PPM scores new children (one batch)
  -> insert, mark failed steps, back up answers (jit).
A tree stops after ``rollouts`` completed rollouts (an expansion that reached an
answer or a dead end) or when its root becomes terminal.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from rstar_jax.data.problems import Problem
from rstar_jax.search import tree as T
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.expand import SQUASH, ExpandSettings, NodeInfo, Scorer, expand, path_infos
from rstar_jax.search.types import ProposalRequest, Proposer
from rstar_jax.search.records import TreeRecord, record_from_tree


@dataclasses.dataclass
class SearchStats:
    """Telemetry of one search call; ``as_dict`` adds the rates."""

    problems: int = 0
    iterations: int = 0
    nodes_expanded: int = 0
    nodes_created: int = 0
    tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens the proposer's engine ran through the model
    prefill_saved: int = 0  # prompt tokens it did not run: shared across samples or reused from a node's KV
    decode_slots: int = 0  # row-steps its decode loops ran (see GenerateStats)
    seconds: float = 0.0
    propose_seconds: float = 0.0
    sandbox_seconds: float = 0.0
    score_seconds: float = 0.0

    def add(self, other: "SearchStats") -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["nodes_per_s"] = self.nodes_expanded / max(self.seconds, 1e-9)
        d["sandbox_share"] = self.sandbox_seconds / max(self.seconds, 1e-9)
        d["prefill_per_expansion"] = self.prefill_tokens / max(self.nodes_expanded, 1)
        d["decode_utilization"] = self.tokens / self.decode_slots if self.decode_slots else None
        return d

    def count_prefill(self, proposer) -> None:
        """Add the prefill and decode counters of the proposer's engine (if it has one) for its last call."""
        gs = getattr(getattr(proposer, "engine", None), "stats", None)
        if gs is not None:
            self.prefill_tokens += gs.prefill_tokens
            self.prefill_saved += gs.shared_prefill_saved + gs.prefix_reused
            self.decode_slots += gs.decode_slots


class TimedSandbox:
    """Wraps the sandbox so expansion time spent executing code is measured."""

    def __init__(self, sandbox, stats: SearchStats):
        self.sandbox, self.stats = sandbox, stats

    def run_many(self, programs):
        t = time.perf_counter()
        out = self.sandbox.run_many(programs)
        self.stats.sandbox_seconds += time.perf_counter() - t
        return out


def answer_value(node: NodeInfo, reward: str) -> float:
    """The value an answer node backs up: gold +1/-1, its PPM score, or 0."""
    if reward == "gold":
        return 1.0 if node.correct else -1.0
    return float(node.score or 0.0) if reward == "ppm" else 0.0


def score_children(scorer: Scorer, squash: str, questions: Sequence[str],
                   paths: Sequence[Sequence[NodeInfo]], children: Sequence[Sequence[NodeInfo]],
                   answers_only: bool = False) -> None:
    """Set ``score`` of every valid new child with one batched reward-model call;
    ``answers_only``: only children with an answer (an outcome reward model's use)."""
    qs, texts, targets = [], [], []
    for q, path, kids in zip(questions, paths, children):
        prefix = [n.text for n in path]
        for kid in kids:
            if kid.valid and (kid.answer is not None or not answers_only):
                qs.append(q)
                texts.append(prefix + [kid.text])
                targets.append(kid)
    if targets:
        scores = SQUASH[squash](np.asarray(scorer.score(qs, texts), np.float64))
        for kid, s in zip(targets, scores):
            kid.score = float(s)


def run_mcts(problems: Sequence[Problem], proposer: Proposer, sandbox, cfg: SearchConfig,
             scorer: Scorer | None = None, progress: bool = True) -> tuple[list[TreeRecord], SearchStats]:
    """Search every problem; returns one TreeRecord per problem (input order) and telemetry."""
    if cfg.mode == "ppm" and scorer is None:
        raise ValueError("mode='ppm' needs a scorer (the PPM)")
    records, stats = [], SearchStats()
    chunks = [problems[i:i + cfg.batch_size] for i in range(0, len(problems), cfg.batch_size)]
    for chunk in tqdm(chunks, desc="search", unit="batch", disable=not progress or len(chunks) < 2):
        recs, st = _search_batch(list(chunk), proposer, sandbox, cfg, scorer, progress)
        records.extend(recs)
        stats.add(st)
    return records, stats


def _search_batch(problems, proposer, sandbox, cfg, scorer, progress):
    stats = SearchStats(problems=len(problems))
    timed = TimedSandbox(sandbox, stats)
    start = time.perf_counter()
    b, k, l = len(problems), cfg.candidates, cfg.leaves_per_tree
    max_rollouts = cfg.rollouts + cfg.extra_rollouts_if_unsolved
    max_iters = max_rollouts * (cfg.max_depth + 2)
    capacity = min(cfg.max_nodes, 1 + max_iters * l * k)
    params = T.SearchParams(cfg.c_uct, cfg.max_depth, cfg.unvisited, cfg.virtual_loss, cfg.mode)
    tree = T.init_tree(b, capacity, k)
    infos = [[NodeInfo()] for _ in range(b)]
    parents = [[-1] for _ in range(b)]
    done = np.zeros(b, np.int64)
    target = np.full(b, cfg.rollouts)
    settings = ExpandSettings(cfg.error_threshold)
    bar = tqdm(total=int(target.sum()), desc="rollouts", disable=not progress, leave=False)

    for _ in range(max_iters):
        root_terminal = np.asarray(tree.terminal[:, 0])
        active = (done < target) & ~root_terminal
        if not active.any():
            break
        leaves = np.array(T.select(tree, params, l))  # a writable copy
        leaves[~active] = -1
        slots = [(i, j) for i in range(b) for j in range(l) if leaves[i, j] >= 0]
        if not slots:
            break
        paths = [path_infos(infos[i], parents[i], int(leaves[i, j])) for i, j in slots]
        requests = [ProposalRequest(problems[i].id, problems[i].question, tuple(n.text for n in p),
                                    (i, int(leaves[i, j]))) for (i, j), p in zip(slots, paths)]
        t0 = time.perf_counter()
        cands = proposer.propose(requests, k, temperature=cfg.temperature, seed=cfg.seed)
        stats.propose_seconds += time.perf_counter() - t0
        stats.count_prefill(proposer)
        stats.tokens += sum(c.num_tokens for cs in cands for c in cs)
        golds = [problems[i].answer if cfg.reward == "gold" else None for i, _ in slots]
        kids = expand(paths, cands, golds, timed, settings)
        if cfg.mode == "ppm":
            t0 = time.perf_counter()
            score_children(scorer, cfg.squash, [problems[i].question for i, _ in slots], paths, kids)
            stats.score_seconds += time.perf_counter() - t0

        prior = np.zeros((b, l, k), np.float32)
        terminal = np.zeros((b, l, k), bool)
        mask = np.zeros((b, l, k), bool)
        for (i, j), ks in zip(slots, kids):
            for c, kid in enumerate(ks[:k]):
                mask[i, j, c], terminal[i, j, c] = True, kid.terminal
                prior[i, j, c] = kid.score if kid.score is not None else 0.0
        tree, ids = T.insert(tree, leaves, prior, terminal, np.zeros_like(prior), mask, params)
        ids = np.asarray(ids)

        failed = np.full((b, l * k), -1, np.int32)
        answers = np.full((b, l * k), -1, np.int32)
        values = np.zeros((b, l * k), np.float32)
        for (i, j), ks in zip(slots, kids):
            reached_end = True
            for c, kid in enumerate(ks[:k]):
                node = int(ids[i, j, c])
                if node < 0:  # dropped: tree capacity reached
                    continue
                assert node == len(infos[i]), "host and device node indices diverged"
                infos[i].append(kid)
                parents[i].append(int(leaves[i, j]))
                slot = j * k + c
                if kid.terminal and not kid.valid:
                    failed[i, slot] = node
                elif kid.kind == "answer":
                    answers[i, slot] = node
                    values[i, slot] = answer_value(kid, cfg.reward)
                reached_end &= kid.terminal
            # A rollout ends when this expansion produced an answer or nothing left to expand.
            if reached_end or any(kid.kind == "answer" for kid in ks[:k]):
                done[i] += 1
                bar.update(1)
            stats.nodes_expanded += 1
        stats.nodes_created += int((ids >= 0).sum())
        tree = T.mark_invalid(tree, failed)
        tree = T.backup(tree, answers, values)
        if cfg.extra_rollouts_if_unsolved and cfg.reward == "gold":
            for i in np.nonzero((done >= target) & (target == cfg.rollouts))[0]:
                if not any(n.correct for n in infos[i]):
                    target[i] += cfg.extra_rollouts_if_unsolved
                    bar.total += cfg.extra_rollouts_if_unsolved
        stats.iterations += 1
    bar.close()
    stats.seconds = time.perf_counter() - start
    h = jax.device_get(tree)
    recs = [make_record(p, T.tree_slice(h, i), infos[i], search_meta(cfg, "mcts")) for i, p in enumerate(problems)]
    return recs, stats


def make_record(problem: Problem, tree_np, infos: Sequence[NodeInfo], meta: dict) -> TreeRecord:
    return record_from_tree(tree_np, infos, problem_id=problem.id, question=problem.question, gold=problem.answer,
                            meta={**meta, "problem_meta": dict(problem.meta)})


def search_meta(cfg: SearchConfig, method: str) -> dict:
    return {"method": method, "mode": cfg.mode, "reward": cfg.reward, "rollouts": cfg.rollouts,
            "candidates": cfg.candidates, "temperature": cfg.temperature, "seed": cfg.seed}
