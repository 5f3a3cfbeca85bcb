"""Tree records: one JSON object per searched problem, every node with its text,
search statistics and code output, plus trajectory helpers for SFT/PPM data.

A record is the host-side, lossless snapshot of one search tree: node ``i`` of
the record is node ``i`` of the device tree (expansion order), node 0 is the
root (empty text). Files hold one record per line (``.jsonl``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from rstar_jax.io import read_jsonl, write_jsonl

_INT, _FLOAT, _STR, _BOOL, _NONE = (int,), (float, int), (str,), (bool,), (type(None),)


@dataclasses.dataclass
class NodeRecord:
    """One node. ``q``/``visits`` come from the device tree; the rest from the host.

    prior:      the (squashed) PPM score, None when the search ran without one.
    output:     the code's stdout or error text, None when the step ran no code.
    terminal:   terminal in the final tree (answer, failure, dead end, exhausted).
    valid:      the step's code executed without error (or it has no code).
    answer:     the extracted final answer of an answer step, else None.
    correct:    the answer graded against the gold answer, None when ungraded.
    num_tokens: tokens generated for this step.
    """

    index: int
    parent: int
    depth: int
    text: str
    q: float
    visits: int
    prior: float | None
    output: str | None
    terminal: bool
    valid: bool
    answer: str | None
    correct: bool | None
    num_tokens: int


# Accepted JSON types per field (bool is checked before int: bool is an int subclass).
_NODE_TYPES = {
    "index": _INT,
    "parent": _INT,
    "depth": _INT,
    "text": _STR,
    "q": _FLOAT,
    "visits": _INT,
    "prior": _FLOAT + _NONE,
    "output": _STR + _NONE,
    "terminal": _BOOL,
    "valid": _BOOL,
    "answer": _STR + _NONE,
    "correct": _BOOL + _NONE,
    "num_tokens": _INT,
}
_TREE_TYPES = {"problem_id": _STR, "question": _STR, "gold": _STR, "nodes": (list,), "meta": (dict,)}


def _checked(d: Any, types: Mapping[str, tuple], what: str) -> dict:
    """``d`` with exactly the fields of ``types`` and values of those types, else ValueError."""
    if not isinstance(d, dict):
        raise ValueError(f"{what}: expected an object, got {type(d).__name__}")
    missing, unknown = sorted(types.keys() - d.keys()), sorted(d.keys() - types.keys())
    if missing or unknown:
        raise ValueError(f"{what}: missing fields {missing}, unknown fields {unknown}")
    for key, allowed in types.items():
        v = d[key]
        if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
            raise ValueError(f"{what}: field {key!r} has type {type(v).__name__}")
    return d


@dataclasses.dataclass
class TreeRecord:
    """One searched problem: its nodes in expansion order and free-form ``meta``
    (search settings, problem metadata; JSON-native values only)."""

    problem_id: str
    question: str
    gold: str
    nodes: list[NodeRecord]
    meta: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "TreeRecord":
        d = _checked(d, _TREE_TYPES, "record")
        nodes = []
        for i, n in enumerate(d["nodes"]):
            n = _checked(n, _NODE_TYPES, f"node {i}")
            if n["index"] != i or not -1 <= n["parent"] < i or (n["parent"] == -1) != (i == 0):
                raise ValueError(f"node {i}: index {n['index']} / parent {n['parent']} out of order")
            q, prior = float(n["q"]), n["prior"] if n["prior"] is None else float(n["prior"])
            nodes.append(NodeRecord(**{**n, "q": q, "prior": prior}))
        return cls(d["problem_id"], d["question"], d["gold"], nodes, d["meta"])

    def to_json(self) -> str:
        """One line of strict JSON (no NaN); floats round-trip exactly."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> "TreeRecord":
        return cls.from_dict(json.loads(line))


def _attr(info: Any, name: str, default: Any = None) -> Any:
    return info.get(name, default) if isinstance(info, Mapping) else getattr(info, name, default)


def q_value(visits, value_sum):
    """Q = W / N, 0 for an unvisited node: the one formula, for numpy and jax arrays alike."""
    xp = visits.__array_namespace__()
    return xp.where(visits > 0, value_sum / xp.maximum(visits, 1), 0.0)


def record_from_arrays(
    *,
    parent: np.ndarray,
    depth: np.ndarray,
    visits: np.ndarray,
    value_sum: np.ndarray,
    terminal: np.ndarray,
    infos: Sequence[Any],
    problem_id: str,
    question: str,
    gold: str,
    meta: dict | None = None,
) -> TreeRecord:
    """Join one tree's node arrays (each [>= len(infos)]; structure, N, W and terminal flags)
    with its host-side node data.

    infos: per node index, an object or mapping with ``text`` and optionally ``output``,
           ``valid`` (default True), ``answer``, ``correct``, ``num_tokens`` (default 0),
           ``score`` (the PPM score, recorded as ``prior``).
    """
    num = len(infos)
    visits = np.asarray(visits)[:num]
    q = q_value(visits, np.asarray(value_sum)[:num])
    nodes = []
    for i, info in enumerate(infos):
        score = _attr(info, "score")
        nodes.append(
            NodeRecord(
                index=i,
                parent=int(parent[i]),
                depth=int(depth[i]),
                text=_attr(info, "text"),
                q=float(q[i]),
                visits=int(visits[i]),
                prior=None if score is None else float(score),
                output=_attr(info, "output"),
                terminal=bool(terminal[i]),
                valid=bool(_attr(info, "valid", True)),
                answer=_attr(info, "answer"),
                correct=_attr(info, "correct"),
                num_tokens=int(_attr(info, "num_tokens", 0)),
            )
        )
    return TreeRecord(problem_id, question, gold, nodes, dict(meta or {}))


# ---- trajectories ----


def root_path(parents: Sequence[int], node: int) -> list[int]:
    """Node indices from the root to ``node`` ([0, ..., node]), given each node's parent
    (negative for the root): the one root-path walk."""
    path = [int(node)]
    while parents[path[-1]] >= 0:
        path.append(int(parents[path[-1]]))
    return path[::-1]


def path_to(record: TreeRecord, node: int) -> list[int]:
    """Node indices from the root to ``node``: [0, ..., node]."""
    return root_path([n.parent for n in record.nodes], node)


def trajectories(record: TreeRecord) -> list[list[int]]:
    """Root-to-answer paths (one per node with an extracted answer), by node index."""
    return [path_to(record, n.index) for n in record.nodes if n.answer is not None]


def _steps(record: TreeRecord, path: Sequence[int]) -> list[NodeRecord]:
    steps = [record.nodes[i] for i in path if i != 0]
    if not steps:
        raise ValueError("a trajectory needs at least one step below the root")
    return steps


def trajectory_steps(record: TreeRecord, path: Sequence[int]) -> list[str]:
    """The step texts along ``path`` (the root, which has no text, is skipped)."""
    return [n.text for n in _steps(record, path)]


def mean_q(record: TreeRecord, path: Sequence[int]) -> float:
    """Mean Q of the steps on ``path`` (root excluded)."""
    return float(np.mean([n.q for n in _steps(record, path)]))


def min_q(record: TreeRecord, path: Sequence[int]) -> float:
    """Smallest Q of the steps on ``path`` (root excluded)."""
    return min(n.q for n in _steps(record, path))


# ---- files ----


def write_records(path: str | os.PathLike, records: Iterable[TreeRecord]) -> None:
    """Write one record per line, atomically: readers see the old file or the new one."""
    write_jsonl(path, (r.to_json() for r in records))


def read_records(path: str | os.PathLike) -> list[TreeRecord]:
    """All records of a ``.jsonl`` file (blank lines skipped); a bad line raises
    ValueError naming ``file:line``."""
    return list(read_jsonl(path, TreeRecord.from_dict))
