"""A batch of B search trees as fixed-capacity arrays, and the jitted MCTS ops.

In the style of DeepMind's mctx: every field is ``[B, N]`` (node fields) or
``[B, N, K]`` (child slots, ``EMPTY`` = -1). Node 0 is the root; a node's index is
its expansion order, so host-side text/tokens/code output can be kept in lists
indexed the same way. All device functions are pure, written for one tree and
vmapped over B, and jitted with ``TreeSpec`` static.

Semantics (rStar-Math, docs/DESIGN.md §5):
  * ``Q = value_sum / visits`` (0 for an unvisited node). Terminal-guided mode
    starts a new node at N=0, W=0; PPM mode at N=1, W=PPM score (so its Q is the
    score). That birth visit is not propagated to the ancestors.
  * ``backup`` adds N+1, W+value to a node and all its ancestors.
  * ``mark_invalid`` gives a failed step N=1, W=-1 on itself only.
  * A node whose children are all terminal is terminal; a leaf that received no
    children is terminal (dead end); a node at ``max_depth`` is terminal.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rstar_jax.search.config import TreeSpec
from rstar_jax.search.records import q_value
from rstar_jax.shapes import check_shapes

NO_PARENT = -1  # the root's parent, and the parent of an unused slot
EMPTY = -1  # an empty child slot
NO_NODE = -1  # no leaf selected / child not inserted / nothing to back up


@struct.dataclass
class Tree:
    """B trees of capacity N with at most K children per node.

    parent:    [B, N] int32, NO_PARENT for the root and for unused slots.
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
    children:  [B, N, K] int32 node indices, EMPTY for empty slots.
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


def init_tree(batch_size: int, capacity: int, max_children: int) -> Tree:
    """B empty trees holding only a valid, unvisited, non-terminal root."""
    b, n, k = batch_size, capacity, max_children
    is_root = jnp.zeros((b, n), bool).at[:, 0].set(True)
    return Tree(
        parent=jnp.full((b, n), NO_PARENT, jnp.int32),
        depth=jnp.zeros((b, n), jnp.int32),
        visits=jnp.zeros((b, n), jnp.int32),
        value_sum=jnp.zeros((b, n), jnp.float32),
        prior=jnp.zeros((b, n), jnp.float32),
        terminal=jnp.zeros((b, n), bool),
        reward=jnp.zeros((b, n), jnp.float32),
        valid=is_root,
        failed=jnp.zeros((b, n), bool),
        children=jnp.full((b, n, k), EMPTY, jnp.int32),
        num_nodes=jnp.ones((b,), jnp.int32),
    )


def node_q(tree: Tree) -> jax.Array:
    """Q of every node, [B, N] float32 (0 where unvisited)."""
    return q_value(tree.visits, tree.value_sum)


def _uct(parent_visits, visits, value_sum, spec: TreeSpec):
    """UCT scores [K] of children with (visits, value_sum) [K] under one parent."""
    q = q_value(visits, value_sum)
    # ln(max(N_parent, 1)): a parent visited 0 or 1 times gives no bonus.
    log_np = jnp.log(jnp.maximum(parent_visits, 1).astype(jnp.float32))
    bonus = spec.c_uct * jnp.sqrt(log_np / jnp.maximum(visits, 1))
    unvisited = q if spec.unvisited == "q" else jnp.finfo(jnp.float32).max
    return jnp.where(visits > 0, q + bonus, unvisited)


def _select_one(tree: Tree, spec: TreeSpec, num_leaves: int) -> jax.Array:
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
            score = _uct(visits[node], visits[safe], value_sum[safe], spec)
            best = kids[jnp.argmax(jnp.where(ok, score, jnp.finfo(score.dtype).min))]
            return jnp.where(ok.any(), best, node), ~ok.any(), steps + 1

        def cond(state):
            _, done, steps = state
            return ~done & (steps < n)

        node, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(0), False, 0))
        return jnp.where(~blocked[node] & ~has_children[node], node, NO_NODE)

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
                value_sum.at[node].add(-spec.virtual_loss),
                blocked.at[node].set(blocked[node] | (has_children[node] & kids_blocked)),
            )

        state = (leaf, visits, value_sum, blocked)
        return jax.lax.while_loop(lambda s: s[0] >= 0, body, state)[1:]

    def one_leaf(carry, _):
        leaf = descend(*carry)
        return apply_virtual_loss(leaf, *carry), leaf

    blocked = tree.terminal | ~tree.valid | (tree.depth >= spec.max_depth)
    carry = (tree.visits, tree.value_sum, blocked)
    _, leaves = jax.lax.scan(one_leaf, carry, None, length=num_leaves)
    return leaves


@functools.partial(jax.jit, static_argnames=("spec", "num_leaves"))
def select(tree: Tree, spec: TreeSpec, num_leaves: int) -> jax.Array:
    """Pick up to ``num_leaves`` distinct expandable leaves per tree by UCT.

    Each descent starts at the root, takes the valid, non-terminal child with the
    best UCT score (ties: lowest slot) and stops at a node without children.
    Between descents a virtual loss is applied along the chosen path and the leaf
    is blocked (with any ancestor whose children are then all blocked); the
    virtual loss only lives inside this call, the tree is not modified.

    Returns leaves [B, L] int32, NO_NODE where no further leaf exists (e.g. the root
    is terminal, or fewer than L expandable leaves).
    """
    return jax.vmap(lambda t: _select_one(t, spec, num_leaves))(tree)


def _close_terminal(children: jax.Array, terminal: jax.Array) -> jax.Array:
    """Mark [N] nodes whose children are all terminal, up to a fixpoint (<= depth steps)."""
    has_children = (children >= 0).any(-1)

    def body(state):
        term, _ = state
        kids_term = jnp.where(children >= 0, term[jnp.maximum(children, 0)], True).all(-1)
        new = term | (has_children & kids_term)
        return new, (new != term).any()

    return jax.lax.while_loop(lambda s: s[1], body, (terminal, True))[0]


def _insert_one(tree, leaves, prior, terminal, reward, mask, spec: TreeSpec):
    n = tree.capacity
    num_leaves, k = mask.shape
    live = mask & (leaves >= 0)[:, None]
    index = tree.num_nodes + jnp.cumsum(live.reshape(-1)) - 1
    keep = live.reshape(-1) & (index < n)
    target = jnp.where(keep, index, n)  # index n is out of bounds: dropped
    par = jnp.repeat(leaves, k)
    depth = tree.depth[jnp.maximum(par, 0)] + 1
    prior = prior.reshape(-1)

    def set_(field, value):
        return field.at[target].set(value, mode="drop")

    keep2 = keep.reshape(num_leaves, k)
    slot = (jnp.cumsum(keep2, axis=1) - 1).reshape(-1)
    children = tree.children.at[jnp.where(keep, par, n), slot].set(index, mode="drop")
    dead_end = jnp.where((leaves >= 0) & ~keep2.any(1), leaves, n)
    is_terminal = set_(tree.terminal, terminal.reshape(-1) | (depth >= spec.max_depth))
    is_terminal = is_terminal.at[dead_end].set(True, mode="drop")
    ppm = spec.mode == "ppm"
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
    return tree, jnp.where(keep, index, NO_NODE).reshape(num_leaves, k)


@functools.partial(jax.jit, static_argnames=("spec",))
def insert(
    tree: Tree,
    leaves: jax.Array,
    child_prior: jax.Array,
    child_terminal: jax.Array,
    child_reward: jax.Array,
    child_mask: jax.Array,
    spec: TreeSpec,
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
    check_shapes(
        "insert",
        parent=(tree.parent, "B N"),
        leaves=(leaves, "B L"),
        child_prior=(child_prior, "B L K"),
        child_terminal=(child_terminal, "B L K"),
        child_reward=(child_reward, "B L K"),
        child_mask=(child_mask, "B L K"),
        children=(tree.children, "B N K"),
    )

    def fn(*args):
        return _insert_one(*args, spec=spec)

    return jax.vmap(fn)(tree, leaves, child_prior, child_terminal, child_reward, child_mask)


def _backup_one(tree: Tree, nodes: jax.Array, values: jax.Array) -> Tree:
    n = tree.capacity

    def body(state):
        node, visits, value_sum = state
        target = jnp.where(node >= 0, node, n)
        visits = visits.at[target].add(1, mode="drop")
        value_sum = value_sum.at[target].add(values, mode="drop")
        return jnp.where(node >= 0, tree.parent[jnp.maximum(node, 0)], NO_NODE), visits, value_sum

    state = (nodes, tree.visits, tree.value_sum)
    _, visits, value_sum = jax.lax.while_loop(lambda s: (s[0] >= 0).any(), body, state)
    return tree.replace(visits=visits, value_sum=value_sum)


@jax.jit
def backup(tree: Tree, nodes: jax.Array, values: jax.Array) -> Tree:
    """Add N+1 and W+value to each node [B, M] (-1 = none) and all its ancestors.

    values: [B, M] float32, e.g. +1/-1 from the gold answer or the PPM score of a
    terminal answer. Terminal flags are unchanged.
    """
    check_shapes("backup", parent=(tree.parent, "B N"), nodes=(nodes, "B M"), values=(values, "B M"))
    return jax.vmap(_backup_one)(tree, nodes, values)


def _mark_invalid_one(tree: Tree, nodes: jax.Array) -> Tree:
    target = jnp.where(nodes >= 0, nodes, tree.capacity)

    def set_(field, value):
        return field.at[target].set(value, mode="drop")

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
    check_shapes("mark_invalid", parent=(tree.parent, "B N"), nodes=(nodes, "B M"))
    return jax.vmap(_mark_invalid_one)(tree, nodes)


# ---- host-side helpers (numpy) ----


def tree_slice(tree: Tree, b: int) -> Tree:
    """Tree b as a Tree of numpy arrays without the batch axis."""
    return jax.tree.map(lambda x: np.asarray(x)[b], tree)
