"""Test-only helpers for device trees: invariants, root paths, a record from one tree slice."""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from rstar_jax.search.records import TreeRecord, q_value, record_from_arrays, root_path
from rstar_jax.search.tree import Tree, tree_slice


def path_to_root(tree: Tree, b: int, node: int) -> list[int]:
    """Node indices from the root to ``node`` in tree b: [0, ..., node]."""
    return root_path(np.asarray(tree.parent)[b], node)


def check_invariants(tree: Tree, mode: str = "terminal", atol: float = 1e-5) -> None:
    """Raise AssertionError naming (tree, node) on any inconsistency.

    Checks structure (nodes 0..num_nodes-1 exist and nothing else, parent index
    below the child's, depth = parent depth + 1, child slots agree with parent
    pointers), Q in [-1, 1], terminal closure (all children terminal => terminal),
    failed nodes (N=1, W=-1, terminal, childless) and visit accounting: N of a
    node = its birth visit (1 in "ppm" mode for non-root nodes) + the propagated
    visits of its non-failed children + its own backups, which only a childless
    terminal node may have.
    """
    tree = jax.device_get(tree)
    for b in range(tree.num_nodes.shape[0]):
        t = tree_slice(tree, b)
        n, num = t.capacity, int(t.num_nodes)

        def where(mask):
            return f"tree {b}, nodes {np.flatnonzero(mask)[:8].tolist()}"

        idx = np.arange(n)
        used = idx < num
        assert (t.valid == used).all(), f"valid != index < num_nodes: {where(t.valid != used)}"
        assert (t.parent[~used] == -1).all() and (t.children[~used] == -1).all(), where(~used)
        assert t.parent[0] == -1 and t.depth[0] == 0, f"bad root in tree {b}"
        nonroot = used & (idx > 0)
        par = np.maximum(t.parent, 0)
        bad = nonroot & ((t.parent < 0) | (t.parent >= idx))
        assert not bad.any(), f"parent not an earlier node: {where(bad)}"
        bad = nonroot & (t.depth != t.depth[par] + 1)
        assert not bad.any(), f"depth != parent depth + 1: {where(bad)}"
        kids = t.children
        counts = np.bincount(kids[kids >= 0], minlength=n)
        bad = nonroot & (counts != 1)
        assert not bad.any() and counts[0] == 0, f"node not in exactly one slot: {where(bad)}"
        bad = (kids >= 0) & (t.parent[np.maximum(kids, 0)] != idx[:, None])
        assert not bad.any(), f"child slot disagrees with parent: {where(bad.any(-1))}"

        q = q_value(t.visits, t.value_sum)
        bad = np.abs(q) > 1 + atol
        assert not bad.any(), f"Q outside [-1, 1]: {where(bad)}"
        has_kids = (kids >= 0).any(-1)
        all_term = np.where(kids >= 0, t.terminal[np.maximum(kids, 0)], True).all(-1)
        bad = has_kids & all_term & ~t.terminal
        assert not bad.any(), f"children all terminal but node not: {where(bad)}"
        bad = t.failed & ((t.visits != 1) | (t.value_sum != -1) | ~t.terminal | has_kids)
        assert not bad.any(), f"bad failed node: {where(bad)}"

        birth = np.where(nonroot & (mode == "ppm"), 1, 0)
        birth = np.where(t.failed, t.visits, birth)
        propagated = np.where(used, t.visits - birth, 0)
        from_kids = np.zeros(n, np.int64)
        np.add.at(from_kids, t.parent[nonroot], propagated[nonroot])
        own = t.visits - birth - from_kids
        may_own = t.terminal & ~has_kids
        bad = used & ((own < 0) | ((own != 0) & ~may_own))
        assert not bad.any(), f"visits != birth + children + own terminal visits: {where(bad)}"


def record_from_tree(
    tree: Any, infos: Sequence[Any], *, problem_id: str, question: str, gold: str, meta: dict | None = None
) -> TreeRecord:
    """``record_from_arrays`` for one device tree as numpy arrays without the batch axis
    (``tree.tree_slice``); it must hold exactly ``len(infos)`` nodes."""
    if len(infos) != int(tree.num_nodes):
        raise ValueError(f"{len(infos)} host nodes for a tree of {int(tree.num_nodes)} nodes")
    return record_from_arrays(
        parent=tree.parent,
        depth=tree.depth,
        visits=tree.visits,
        value_sum=tree.value_sum,
        terminal=tree.terminal,
        infos=infos,
        problem_id=problem_id,
        question=question,
        gold=gold,
        meta=meta,
    )
