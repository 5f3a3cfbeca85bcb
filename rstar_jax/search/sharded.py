"""Search a problem set in resumable batches, split into hash shards that the processes of a
multi-process run own.

Problems go to ``num_shards`` shards by a hash of their id (``rstar_jax.distributed``), and shard s
to process s mod N: a shard is searched the same way (the same problems, in the same batches)
whichever process runs it, so for a fixed shard count the records are the same for any number of
processes. Every finished problem's record is appended to its shard's progress file, flushed and
synced after each batch: a killed run, rerun with the same arguments, redoes at most one batch per
process (with any number of processes: progress is kept by shard and problem id). The caller merges
after a barrier (``gather``).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Callable, Sequence

from rstar_jax.data.problems import Problem
from rstar_jax.distributed import Cluster, owned, split
from rstar_jax.io import atomic_write_json
from rstar_jax.search.expansion import SearchStats
from rstar_jax.search.records import TreeRecord

SearchBatch = Callable[[Sequence[Problem]], tuple[list[TreeRecord], SearchStats]]


def shards_of(problems: Sequence[Problem], num_shards: int) -> list[list[Problem]]:
    """``problems`` split into ``num_shards`` hash shards (input order kept within each)."""
    return split(problems, lambda p: p.id, num_shards)


def search_shards(
    problems: Sequence[Problem],
    search_batch: SearchBatch,
    folder: str,
    cluster: Cluster,
    num_shards: int,
    batch_size: int,
    log: Callable[[str], None] | None = None,
) -> SearchStats:
    """Search the shards this process owns with ``search_batch``, ``batch_size`` problems at a time,
    skipping problems whose records are already in ``folder``; returns this call's stats (also
    written to ``folder`` for ``merged_stats``)."""
    os.makedirs(folder, exist_ok=True)
    done = read_progress(folder)
    shards = shards_of(problems, num_shards)
    stats = SearchStats()
    for s in owned(num_shards, cluster):
        todo = [p for p in shards[s] if p.id not in done]
        if log:
            log(
                f"shard {s + 1}/{num_shards}: {len(shards[s])} problems ({len(shards[s]) - len(todo)} already searched)"
            )
        path = os.path.join(folder, f"s{s:04d}of{num_shards:04d}.jsonl")
        _drop_partial_line(path)
        with open(path, "a") as f:
            for i in range(0, len(todo), batch_size):
                records, st = search_batch(todo[i : i + batch_size])
                stats.add(st)
                f.write("".join(r.to_json() + "\n" for r in records))
                f.flush()
                os.fsync(f.fileno())
    tag = f"p{cluster.process_id:04d}of{cluster.num_processes:04d}"
    atomic_write_json(os.path.join(folder, f"{tag}.stats.json"), dataclasses.asdict(stats))
    return stats


def read_progress(folder: str) -> dict[str, TreeRecord]:
    """Every finished record in ``folder``'s progress files, by problem id."""
    done: dict[str, TreeRecord] = {}
    for path in sorted(glob.glob(os.path.join(folder, "s*of*.jsonl"))):
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # cut short by a kill (its owner truncates it before appending)
                rec = TreeRecord.from_json(line)
                done[rec.problem_id] = rec
    return done


def gather(problems: Sequence[Problem], folder: str) -> list[TreeRecord]:
    """The records of ``problems`` in their order, from every shard's progress file."""
    done = read_progress(folder)
    missing = [p.id for p in problems if p.id not in done]
    if missing:
        raise RuntimeError(f"{folder}: no search record for {len(missing)} problem(s), e.g. {missing[:3]}")
    return [done[p.id] for p in problems]


def merged_stats(folder: str, cluster: Cluster) -> SearchStats:
    """The stats of the last ``search_shards`` call of each of ``cluster``'s processes, added up."""
    total = SearchStats()
    for path in sorted(glob.glob(os.path.join(folder, f"p*of{cluster.num_processes:04d}.stats.json"))):
        with open(path) as f:
            total.add(SearchStats(**json.load(f)))
    return total


def _drop_partial_line(path: str) -> None:
    """Cut a line a kill left unfinished, so that appended records start on a line of their own."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
