"""A batch of B search trees as fixed-capacity arrays, and the jitted MCTS ops.

In the style of DeepMind's mctx: every field is ``[B, N]`` (node fields) or
``[B, N, K]`` (child slots, -1 = empty). Node 0 is the root; a node's index is
its expansion order, so host-side text/tokens/code output can be kept in lists
indexed the same way. All device functions are pure, written for one tree and
vmapped over B, and jitted with ``SearchParams`` static.

Semantics (rStar-Math, DESIGN.md §6):
  * ``Q = value_sum / visits`` (0 for an unvisited node). Terminal-guided mode
    starts a new node at N=0, W=0; PPM mode at N=1, W=PPM score (so its Q is the
    score). That birth visit is not propagated to the ancestors.
  * ``backup`` adds N+1, W+value to a node and all its ancestors.
  * ``mark_invalid`` gives a failed step N=1, W=-1 on itself only.
  * A node whose children are all terminal is terminal; a leaf that received no
    children is terminal (dead end); a node at ``max_depth`` is terminal.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Tree:
    """B trees of capacity N with at most K children per node.

    parent:    [B, N] int32, -1 for the root and for empty slots.
    depth:     [B, N] int32, root 0.
    visits:    [B, N] int32, visit count N.
    value_sum: [B, N] float32, W; Q = W / N.
    prior:     [B, N] float32, the PPM score (0 when none).
    terminal:  [B, N] bool, not selectable (answer, failure, dead end, max depth,
               or all children terminal).
    reward:    [B, N] float32, terminal reward given at insertion (-1 if failed).
    valid:     [B, N] bool, the node exists (index < num_nodes).
    failed:    [B, N] bool, an invalid terminal (code error): its -1 is not
               propagated, so it is excluded from its parent's visit sum.
    children:  [B, N, K] int32 node indices, -1 for empty slots.
    num_nodes: [B] int32, nodes in use (the next free index).
    """

    parent: jax.Array
    depth: jax.Array
    visits: jax.Array
    value_sum: jax.Array
    prior: jax.Array
    terminal: jax.Array
    reward: jax.Array
    valid: jax.Array
    failed: jax.Array
    children: jax.Array
    num_nodes: jax.Array

    @property
    def capacity(self) -> int:
        return self.parent.shape[-1]


@dataclasses.dataclass(frozen=True)
class SearchParams:
    """Static search settings (hashable: a jit static argument).

    c_uct:        exploration constant c in ``Q + c*sqrt(ln N_parent / N)``.
    max_depth:    nodes at this depth are terminal (root is depth 0).
    unvisited:    "q": an unvisited child scores its Q, no bonus (official code);
                  "inf": unvisited children are always tried first.
    virtual_loss: subtracted from W (with N+1) along a selected path while the
                  other leaves of the same ``select`` call are chosen.
    mode:         "terminal" (new node N=0, W=0) or "ppm" (N=1, W=PPM score).
    """

    c_uct: float = 2.0
    max_depth: int = 16
    unvisited: Literal["q", "inf"] = "q"
    virtual_loss: float = 1.0
    mode: Literal["terminal", "ppm"] = "terminal"

    def __post_init__(self):
        if self.unvisited not in ("q", "inf"):
            raise ValueError(f"unvisited must be 'q' or 'inf', got {self.unvisited!r}")
        if self.mode not in ("terminal", "ppm"):
            raise ValueError(f"mode must be 'terminal' or 'ppm', got {self.mode!r}")


def init_tree(batch_size: int, capacity: int, max_children: int) -> Tree:
    """B empty trees holding only a valid, unvisited, non-terminal root."""
    b, n, k = batch_size, capacity, max_children
    is_root = jnp.zeros((b, n), bool).at[:, 0].set(True)
    return Tree(
        parent=jnp.full((b, n), -1, jnp.int32),
        depth=jnp.zeros((b, n), jnp.int32),
        visits=jnp.zeros((b, n), jnp.int32),
        value_sum=jnp.zeros((b, n), jnp.float32),
        prior=jnp.zeros((b, n), jnp.float32),
        terminal=jnp.zeros((b, n), bool),
        reward=jnp.zeros((b, n), jnp.float32),
        valid=is_root,
        failed=jnp.zeros((b, n), bool),
        children=jnp.full((b, n, k), -1, jnp.int32),
        num_nodes=jnp.ones((b,), jnp.int32),
    )


def _q(visits: jax.Array, value_sum: jax.Array) -> jax.Array:
    return jnp.where(visits > 0, value_sum / jnp.maximum(visits, 1), 0.0)


def node_q(tree: Tree) -> jax.Array:
    """Q of every node, [B, N] float32 (0 where unvisited)."""
    return _q(tree.visits, tree.value_sum)


def _uct(parent_visits, visits, value_sum, params: SearchParams):
    """UCT scores [K] of children with (visits, value_sum) [K] under one parent."""
    q = _q(visits, value_sum)
    # ln(max(N_parent, 1)): a parent visited 0 or 1 times gives no bonus.
    log_np = jnp.log(jnp.maximum(parent_visits, 1).astype(jnp.float32))
    bonus = params.c_uct * jnp.sqrt(log_np / jnp.maximum(visits, 1))
    unvisited = q if params.unvisited == "q" else jnp.finfo(jnp.float32).max
    return jnp.where(visits > 0, q + bonus, unvisited)


def _select_one(tree: Tree, params: SearchParams, num_leaves: int) -> jax.Array:
    """Leaves [L] of one (unbatched) tree; see ``select``."""
    n = tree.capacity
    children, parent = tree.children, tree.parent
    has_children = (children >= 0).any(-1)

    def descend(visits, value_sum, blocked):
        def body(state):
            node, _, steps = state
            kids = children[node]
            safe = jnp.maximum(kids, 0)
            ok = (kids >= 0) & ~blocked[safe]
            score = _uct(visits[node], visits[safe], value_sum[safe], params)
            best = kids[jnp.argmax(jnp.where(ok, score, jnp.finfo(score.dtype).min))]
            return jnp.where(ok.any(), best, node), ~ok.any(), steps + 1

        def cond(state):
            _, done, steps = state
            return ~done & (steps < n)

        node, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), False, 0))
        return jnp.where(~blocked[node] & ~has_children[node], node, -1)

    def apply_virtual_loss(leaf, visits, value_sum, blocked):
        # Block the leaf, then walk to the root adding the virtual loss and
        # blocking every ancestor whose children are now all blocked.
        blocked = blocked | (jnp.arange(n) == leaf)

        def body(state):
            node, visits, value_sum, blocked = state
            kids = children[node]
            kids_blocked = ((kids < 0) | blocked[jnp.maximum(kids, 0)]).all()
            return (
                parent[node],
                visits.at[node].add(1),
                value_sum.at[node].add(-params.virtual_loss),
                blocked.at[node].set(blocked[node] | (has_children[node] & kids_blocked)),
            )

        state = (leaf, visits, value_sum, blocked)
        return jax.lax.while_loop(lambda s: s[0] >= 0, body, state)[1:]

    def one_leaf(carry, _):
        leaf = descend(*carry)
        return apply_virtual_loss(leaf, *carry), leaf

    blocked = tree.terminal | ~tree.valid | (tree.depth >= params.max_depth)
    carry = (tree.visits, tree.value_sum, blocked)
    _, leaves = jax.lax.scan(one_leaf, carry, None, length=num_leaves)
    return leaves


@functools.partial(jax.jit, static_argnames=("params", "num_leaves"))
def select(tree: Tree, params: SearchParams, num_leaves: int) -> jax.Array:
    """Pick up to ``num_leaves`` distinct expandable leaves per tree by UCT.

    Each descent starts at the root, takes the valid, non-terminal child with the
    best UCT score (ties: lowest slot) and stops at a node without children.
    Between descents a virtual loss is applied along the chosen path and the leaf
    is blocked (with any ancestor whose children are then all blocked); the
    virtual loss only lives inside this call, the tree is not modified.

    Returns leaves [B, L] int32, -1 where no further leaf exists (e.g. the root
    is terminal, or fewer than L expandable leaves).
    """
    return jax.vmap(lambda t: _select_one(t, params, num_leaves))(tree)


def _close_terminal(children: jax.Array, terminal: jax.Array) -> jax.Array:
    """Mark [N] nodes whose children are all terminal, up to a fixpoint (<= depth steps)."""
    has_children = (children >= 0).any(-1)

    def body(state):
        term, _ = state
        kids_term = jnp.where(children >= 0, term[jnp.maximum(children, 0)], True).all(-1)
        new = term | (has_children & kids_term)
        return new, (new != term).any()

    return jax.lax.while_loop(lambda s: s[1], body, (terminal, True))[0]


def _insert_one(tree, leaves, prior, terminal, reward, mask, params: SearchParams):
    n = tree.capacity
    num_leaves, k = mask.shape
    live = mask & (leaves >= 0)[:, None]
    index = tree.num_nodes + jnp.cumsum(live.reshape(-1)) - 1
    keep = live.reshape(-1) & (index < n)
    target = jnp.where(keep, index, n)  # index n is out of bounds: dropped
    par = jnp.repeat(leaves, k)
    depth = tree.depth[jnp.maximum(par, 0)] + 1
    prior = prior.reshape(-1)
    set_ = lambda field, value: field.at[target].set(value, mode="drop")

    keep2 = keep.reshape(num_leaves, k)
    slot = (jnp.cumsum(keep2, axis=1) - 1).reshape(-1)
    children = tree.children.at[jnp.where(keep, par, n), slot].set(index, mode="drop")
    dead_end = jnp.where((leaves >= 0) & ~keep2.any(1), leaves, n)
    is_terminal = set_(tree.terminal, terminal.reshape(-1) | (depth >= params.max_depth))
    is_terminal = is_terminal.at[dead_end].set(True, mode="drop")
    ppm = params.mode == "ppm"
    tree = tree.replace(
        parent=set_(tree.parent, par),
        depth=set_(tree.depth, depth),
        visits=set_(tree.visits, 1 if ppm else 0),
        value_sum=set_(tree.value_sum, prior if ppm else 0.0),
        prior=set_(tree.prior, prior),
        terminal=_close_terminal(children, is_terminal),
        reward=set_(tree.reward, reward.reshape(-1)),
        valid=set_(tree.valid, True),
        children=children,
        num_nodes=tree.num_nodes + keep.sum(dtype=jnp.int32),
    )
    return tree, jnp.where(keep, index, -1).reshape(num_leaves, k)


@functools.partial(jax.jit, static_argnames=("params",))
def insert(
    tree: Tree,
    leaves: jax.Array,
    child_prior: jax.Array,
    child_terminal: jax.Array,
    child_reward: jax.Array,
    child_mask: jax.Array,
    params: SearchParams,
) -> tuple[Tree, jax.Array]:
    """Append children under leaves [B, L] (from ``select``; -1 entries ignored).

    child_prior/terminal/reward/mask: [B, L, K]. Masked-in children get the next
    free indices in (leaf, k) order and the leaf's child slots in k order. A
    child that would exceed the capacity N is dropped (-1), as are all after it.
    A leaf that receives no child (all masked or dropped) becomes terminal; no
    value is backed up for it. Children at ``max_depth`` are terminal.
    Leaves must not have children already.

    Returns (tree, child_ids [B, L, K] int32, -1 where not inserted).
    """
    fn = lambda *args: _insert_one(*args, params=params)
    return jax.vmap(fn)(tree, leaves, child_prior, child_terminal, child_reward, child_mask)


def _backup_one(tree: Tree, nodes: jax.Array, values: jax.Array) -> Tree:
    n = tree.capacity

    def body(state):
        node, visits, value_sum = state
        target = jnp.where(node >= 0, node, n)
        visits = visits.at[target].add(1, mode="drop")
        value_sum = value_sum.at[target].add(values, mode="drop")
        return jnp.where(node >= 0, tree.parent[jnp.maximum(node, 0)], -1), visits, value_sum

    state = (nodes, tree.visits, tree.value_sum)
    _, visits, value_sum = jax.lax.while_loop(lambda s: (s[0] >= 0).any(), body, state)
    return tree.replace(visits=visits, value_sum=value_sum)


@jax.jit
def backup(tree: Tree, nodes: jax.Array, values: jax.Array) -> Tree:
    """Add N+1 and W+value to each node [B, M] (-1 = none) and all its ancestors.

    values: [B, M] float32, e.g. +1/-1 from the gold answer or the PPM score of a
    terminal answer. Terminal flags are unchanged.
    """
    return jax.vmap(_backup_one)(tree, nodes, values)


def _mark_invalid_one(tree: Tree, nodes: jax.Array) -> Tree:
    target = jnp.where(nodes >= 0, nodes, tree.capacity)
    set_ = lambda field, value: field.at[target].set(value, mode="drop")
    terminal = set_(tree.terminal, True)
    return tree.replace(
        visits=set_(tree.visits, 1),
        value_sum=set_(tree.value_sum, -1.0),
        reward=set_(tree.reward, -1.0),
        failed=set_(tree.failed, True),
        terminal=_close_terminal(tree.children, terminal),
    )


@jax.jit
def mark_invalid(tree: Tree, nodes: jax.Array) -> Tree:
    """Make nodes [B, M] (-1 = none) failed terminals: N=1, W=-1, reward -1, on
    themselves only (nothing is propagated). Call right after ``insert`` on the
    children whose step failed."""
    return jax.vmap(_mark_invalid_one)(tree, nodes)


# ---- host-side helpers (numpy) ----


def tree_slice(tree: Tree, b: int) -> Tree:
    """Tree b as a Tree of numpy arrays without the batch axis."""
    return jax.tree.map(lambda x: np.asarray(x)[b], tree)


def path_to_root(tree: Tree, b: int, node: int) -> list[int]:
    """Node indices from the root to ``node`` in tree b: [0, ..., node]."""
    parent = np.asarray(tree.parent)[b]
    path = [int(node)]
    while parent[path[-1]] >= 0:
        path.append(int(parent[path[-1]]))
    return path[::-1]


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
        where = lambda mask: f"tree {b}, nodes {np.flatnonzero(mask)[:8].tolist()}"
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

        q = np.where(t.visits > 0, t.value_sum / np.maximum(t.visits, 1), 0.0)
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
