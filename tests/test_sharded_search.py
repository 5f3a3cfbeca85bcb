"""search/sharded.py: for a fixed shard count, any number of processes merge into the records of one
process; a run killed mid-shard and rerun redoes at most its unfinished batch and loses nothing."""

from __future__ import annotations

import os

import pytest

from rstar_jax.data.problems import Problem
from rstar_jax.distributed import Cluster
from rstar_jax.search.expansion import SearchStats
from rstar_jax.search.records import TreeRecord
from rstar_jax.search.sharded import gather, merged_stats, search_shards, shards_of

PROBLEMS = [Problem(id=f"p{i}", question=f"what is {i} + {i}?", answer=str(2 * i)) for i in range(23)]


class Searcher:
    """A stand-in for MCTS: a record that depends only on its problem; counts what it searched."""

    def __init__(self, fail_after: int | None = None):
        self.searched: list[str] = []
        self.fail_after = fail_after

    def __call__(self, problems):
        if self.fail_after is not None and len(self.searched) >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.searched += [p.id for p in problems]
        recs = [TreeRecord(p.id, p.question, p.answer, [], {"answer": p.answer}) for p in problems]
        return recs, SearchStats(problems=len(problems), nodes_expanded=3 * len(problems))


def _cluster(n: int, i: int) -> Cluster:
    return Cluster(n, i, "h:1" if n > 1 else None)


def _run(folder, n: int, searchers=None, shards: int = 3) -> list[TreeRecord]:
    searchers = searchers or [Searcher() for _ in range(n)]
    for i in range(n):
        search_shards(PROBLEMS, searchers[i], str(folder), _cluster(n, i), shards, batch_size=4)
    return gather(PROBLEMS, str(folder))


@pytest.mark.parametrize("n", [2, 3])
def test_shards_merge_into_the_one_process_records(tmp_path, n):
    one = _run(tmp_path / "one", 1)
    searchers = [Searcher() for _ in range(n)]
    many = _run(tmp_path / "many", n, searchers)
    assert [r.to_json() for r in many] == [r.to_json() for r in one]
    # disjoint shards that cover every problem once
    assert sorted(x for s in searchers for x in s.searched) == sorted(p.id for p in PROBLEMS)
    assert all(len(s.searched) < len(PROBLEMS) for s in searchers)
    stats = merged_stats(str(tmp_path / "many"), _cluster(n, 0))
    assert (stats.problems, stats.nodes_expanded) == (len(PROBLEMS), 3 * len(PROBLEMS))


def test_killed_shard_resumes_without_duplicates(tmp_path):
    folder = str(tmp_path / "run")
    killed = Searcher(fail_after=4)  # process 1 of 2 owns shard 1 of 2: one batch of 4, then dies
    with pytest.raises(KeyboardInterrupt):
        search_shards(PROBLEMS, killed, folder, _cluster(2, 1), 2, batch_size=4)
    (path,) = [p for p in os.listdir(folder) if p.endswith(".jsonl")]
    with open(os.path.join(folder, path), "a") as f:
        f.write('{"problem_id": "p9", "quest')  # the kill also cut a line short
    rerun = Searcher()
    search_shards(PROBLEMS, rerun, folder, _cluster(2, 1), 2, batch_size=4)
    mine = [p.id for p in shards_of(PROBLEMS, 2)[1]]
    assert killed.searched == mine[:4]
    assert rerun.searched == mine[4:]  # nothing searched twice, nothing lost
    # the rest is finished by one process alone: progress is kept by shard, not by process
    search_shards(PROBLEMS, Searcher(), folder, _cluster(1, 0), 2, batch_size=4)
    assert [r.to_json() for r in gather(PROBLEMS, folder)] == [r.to_json() for r in _run(tmp_path / "one", 1)]


def test_gather_names_missing_problems(tmp_path):
    search_shards(PROBLEMS, Searcher(), str(tmp_path), _cluster(2, 0), 2, batch_size=4)
    with pytest.raises(RuntimeError, match="no search record"):
        gather(PROBLEMS, str(tmp_path))
