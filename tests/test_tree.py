"""Tree ops against a plain-Python MCTS, a toy problem with a known best path,
virtual loss, and the structural edge cases (capacity, dead ends, closure)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.search.tree import TreeSpec, backup, init_tree, insert, mark_invalid, node_q, select
from tests.tree_checks import check_invariants, path_to_root

# One set of shapes and specs for all tests: every jit compile costs seconds on CPU.
B, N, K, L = 3, 48, 3, 2
TERMINAL = TreeSpec(max_depth=6, mode="terminal", unvisited="q")
PPM = TreeSpec(max_depth=5, mode="ppm", unvisited="inf", virtual_loss=0.5)


class RefTrees:
    """The same MCTS over dict nodes, one list per tree, written for clarity."""

    def __init__(self, batch, capacity, spec):
        self.capacity, self.p = capacity, spec
        self.trees = [[self._node(-1, 0, 0.0, False, 0.0)] for _ in range(batch)]

    def _node(self, parent, depth, prior, terminal, reward):
        ppm = self.p.mode == "ppm" and parent >= 0
        return dict(
            parent=parent,
            depth=depth,
            n=int(ppm),
            w=prior if ppm else 0.0,
            terminal=terminal,
            reward=reward,
            failed=False,
            kids=[],
        )

    @staticmethod
    def q(n, w):
        return w / n if n > 0 else 0.0

    def _path(self, t, i):
        while i >= 0:
            yield i
            i = t[i]["parent"]

    def select(self, num_leaves):
        return [self._select_tree(t, num_leaves) for t in self.trees]

    def _select_tree(self, t, num_leaves):
        n = [x["n"] for x in t]
        w = [x["w"] for x in t]
        chosen = set()

        def blocked(i):
            x = t[i]
            if i in chosen or x["terminal"] or x["depth"] >= self.p.max_depth:
                return True
            return bool(x["kids"]) and all(blocked(c) for c in x["kids"])

        def score(parent, c):
            q = self.q(n[c], w[c])
            if n[c] == 0:
                return q if self.p.unvisited == "q" else math.inf
            return q + self.p.c_uct * math.sqrt(math.log(max(n[parent], 1)) / n[c])

        leaves = []
        for _ in range(num_leaves):
            node = 0
            while True:
                cands = [(score(node, c), -s, c) for s, c in enumerate(t[node]["kids"]) if not blocked(c)]
                if not cands:
                    break
                node = max(cands)[2]
            leaf = node if not blocked(node) and not t[node]["kids"] else -1
            leaves.append(leaf)
            if leaf >= 0:
                chosen.add(leaf)
                for a in self._path(t, leaf):
                    n[a] += 1
                    w[a] -= self.p.virtual_loss
        return leaves

    def _close(self, t):
        changed = True
        while changed:
            changed = False
            for x in t:
                if x["kids"] and not x["terminal"] and all(t[c]["terminal"] for c in x["kids"]):
                    x["terminal"] = changed = True

    def insert(self, leaves, prior, terminal, reward, mask):
        ids = np.full(mask.shape, -1)
        for b, t in enumerate(self.trees):
            for slot, leaf in enumerate(leaves[b]):
                if leaf < 0:
                    continue
                for k in range(mask.shape[-1]):
                    if mask[b, slot, k] and len(t) < self.capacity:
                        depth = t[leaf]["depth"] + 1
                        term = bool(terminal[b, slot, k]) or depth >= self.p.max_depth
                        t.append(self._node(leaf, depth, float(prior[b, slot, k]), term, float(reward[b, slot, k])))
                        t[leaf]["kids"].append(len(t) - 1)
                        ids[b, slot, k] = len(t) - 1
                if not t[leaf]["kids"]:
                    t[leaf]["terminal"] = True
            self._close(t)
        return ids

    def backup(self, nodes, values):
        for b, t in enumerate(self.trees):
            for i, v in zip(nodes[b], values[b]):
                for a in self._path(t, i):
                    t[a]["n"] += 1
                    t[a]["w"] += float(v)

    def mark_invalid(self, nodes):
        for b, t in enumerate(self.trees):
            for i in nodes[b]:
                if i >= 0:
                    t[i].update(n=1, w=-1.0, reward=-1.0, failed=True, terminal=True)
            self._close(t)

    def assert_matches(self, tree):
        q = np.asarray(node_q(tree))
        tree = jax.device_get(tree)  # slicing device arrays would compile per shape
        for b, t in enumerate(self.trees):
            assert int(tree.num_nodes[b]) == len(t)
            m = len(t)
            np.testing.assert_array_equal(tree.visits[b, :m], [x["n"] for x in t])
            np.testing.assert_allclose(q[b, :m], [self.q(x["n"], x["w"]) for x in t], atol=1e-5)
            np.testing.assert_array_equal(tree.terminal[b, :m], [x["terminal"] for x in t])
            np.testing.assert_array_equal(tree.failed[b, :m], [x["failed"] for x in t])
            np.testing.assert_array_equal(tree.parent[b, :m], [x["parent"] for x in t])
            np.testing.assert_array_equal(tree.depth[b, :m], [x["depth"] for x in t])
            np.testing.assert_allclose(tree.reward[b, :m], [x["reward"] for x in t])
            kids = [x["kids"] + [-1] * (K - len(x["kids"])) for x in t]
            np.testing.assert_array_equal(tree.children[b, :m], kids)


@pytest.mark.parametrize("spec", [TERMINAL, PPM], ids=["terminal-q", "ppm-inf"])
def test_matches_reference_mcts(spec):
    rng = np.random.default_rng(0)
    tree, ref = init_tree(B, N, K), RefTrees(B, N, spec)
    saw_full = saw_dead = saw_closed = False
    for _ in range(30):
        leaves = np.asarray(select(tree, spec, L))
        assert leaves.tolist() == ref.select(L)
        mask = rng.random((B, L, K)) < 0.85
        term = rng.random((B, L, K)) < 0.25
        reward = (term * np.where(rng.random((B, L, K)) < 0.5, 1.0, -1.0)).astype(np.float32)
        prior = rng.uniform(-1, 1, (B, L, K)).astype(np.float32)
        tree, ids = insert(
            tree,
            jnp.asarray(leaves),
            jnp.asarray(prior),
            jnp.asarray(term),
            jnp.asarray(reward),
            jnp.asarray(mask),
            spec,
        )
        ids = np.asarray(ids)
        np.testing.assert_array_equal(ids, ref.insert(leaves, prior, term, reward, mask))
        failed = np.where((ids >= 0) & (rng.random(ids.shape) < 0.1), ids, -1).reshape(B, -1)
        tree = mark_invalid(tree, jnp.asarray(failed))
        ref.mark_invalid(failed)
        # back up the new terminal answers: their reward (data generation) or PPM score
        answer = (ids >= 0) & term & (ids[..., None] != failed[:, None, None, :]).all(-1)
        values = (prior if spec.mode == "ppm" else reward).reshape(B, -1)
        nodes = np.where(answer, ids, -1).reshape(B, -1)
        tree = backup(tree, jnp.asarray(nodes), jnp.asarray(values))
        ref.backup(nodes, np.where(nodes >= 0, values, 0.0))
        ref.assert_matches(tree)
        check_invariants(tree, spec.mode)
        saw_full |= bool((mask & (leaves >= 0)[..., None] & (ids < 0)).any())
        saw_dead |= any(
            x["terminal"] and not x["kids"] and x["depth"] < spec.max_depth and not x["failed"] and x["reward"] == 0
            for t in ref.trees
            for x in t
        )
        saw_closed |= any(x["terminal"] and x["kids"] for t in ref.trees for x in t)
    # the random run exercised the edge cases (capacity, dead ends, closure)
    assert (saw_full, saw_dead, saw_closed) == (True, True, True)
    assert (np.asarray(select(tree, spec, L)) == -1).any()


# Toy problem (PPM mode): ternary tree, answers at depth 4, exactly one correct
# answer at the end of GOOD. The first step of GOOD has a mediocre PPM score and
# slot 0 of the root is a decoy with the best score whose subtree is all wrong.
GOOD = (2, 1, 2, 0)


def toy_children(path):
    """(prior, terminal, reward) of the 3 children of the node at ``path``."""
    out = []
    for k in range(K):
        child = path + (k,)
        on_good = child == GOOD[: len(child)]
        if len(child) == len(GOOD):
            out.append((0.9 if on_good else -0.8, True, 1.0 if on_good else -1.0))
        elif on_good:
            out.append((0.2, False, 0.0))
        else:
            out.append((0.7 if child == (0,) else -0.3, False, 0.0))
    return out


def greedy_reward():
    path, (term, reward) = (), (False, 0.0)
    while not term:
        kids = toy_children(path)
        k = int(np.argmax([c[0] for c in kids]))
        path, (_, term, reward) = path + (k,), kids[k]
    return reward


def test_toy_search_finds_best_path_greedy_does_not():
    assert greedy_reward() == -1.0
    tree, paths = init_tree(B, N, K), [{0: ()} for _ in range(B)]  # B identical problems
    for _ in range(8):
        leaves = np.asarray(select(tree, PPM, L))
        kids = np.array(
            [[toy_children(paths[b][leaf]) if leaf >= 0 else [(0, 0, 0)] * K for leaf in leaves[b]] for b in range(B)]
        )  # [B, L, K, 3]
        prior, term, reward = kids[..., 0], kids[..., 1].astype(bool), kids[..., 2]
        mask = (leaves >= 0)[..., None].repeat(K, -1)
        tree, ids = insert(
            tree,
            jnp.asarray(leaves),
            jnp.asarray(prior),
            jnp.asarray(term),
            jnp.asarray(reward),
            jnp.asarray(mask),
            PPM,
        )
        ids = np.asarray(ids)
        for b, slot, k in zip(*np.nonzero(ids >= 0)):
            paths[b][int(ids[b, slot, k])] = paths[b][int(leaves[b, slot])] + (k,)
        answers = np.where(term & (ids >= 0), ids, -1).reshape(B, -1)
        tree = backup(tree, jnp.asarray(answers), jnp.asarray(reward.reshape(B, -1)))
        check_invariants(tree, "ppm")
    # descend by best Q from the root: it must end at the correct answer
    q = np.asarray(node_q(tree))
    for b in range(B):
        node = 0
        while kids := [c for c in np.asarray(tree.children[b, node]) if c >= 0]:
            node = max(kids, key=lambda c: q[b, c])
        assert paths[b][node] == GOOD and float(tree.reward[b, node]) == 1.0
        assert [paths[b][i] for i in path_to_root(tree, b, node)] == [GOOD[:d] for d in range(5)]


def _nodes(*rows):
    """[B, L*K] node lists padded with -1 (the shape every backup here uses)."""
    return np.array([list(r) + [-1] * (L * K - len(r)) for r in rows], np.int32)


def _bushy_tree(spec):
    """Root -> nodes 1, 2, 3; node 2 -> answer 4 (+1, backed up), open 5 and 6."""
    tree = init_tree(B, N, K)
    ones, zeros = np.ones((B, L, K), bool), np.zeros((B, L, K), np.float32)
    tree, _ = insert(tree, np.array([[0, -1]] * B), zeros + 0.5, ~ones, zeros, ones, spec)
    prior, answer = zeros.copy(), ~ones
    prior[:, 0], answer[:, 0, 0] = [0.9, 0.1, 0.2], True
    tree, _ = insert(tree, np.array([[2, -1]] * B), prior, answer, answer * 1.0, ones, spec)
    return backup(tree, _nodes(*[[4]] * B), np.ones((B, L * K), np.float32))


@pytest.mark.parametrize("spec", [TERMINAL, PPM], ids=["terminal", "ppm"])
def test_virtual_loss_distinct_leaves(spec):
    tree = _bushy_tree(spec)
    check_invariants(tree, spec.mode)
    leaves = np.asarray(select(tree, spec, 6))
    for row in leaves:  # 4 open leaves: each once, then -1
        assert sorted(row[:4].tolist()) == [1, 3, 5, 6] and (row[4:] == -1).all()
    # the first descent follows UCT alone: node 2 (Q=1 resp. 0.75), then its best open
    # child (terminal: both unvisited, lowest slot; ppm: the higher PPM score)
    assert int(leaves[0, 0]) == (6 if spec.mode == "ppm" else 5)


def test_terminal_root_and_dead_ends():
    tree = init_tree(B, N, K)
    ones, zeros = jnp.ones((B, L, K), bool), jnp.zeros((B, L, K))
    leaves = jnp.array([[0, -1]] * B)
    # tree 0: no children -> root is a dead end; tree 1: all answers; tree 2: one open child
    mask = ones.at[0].set(False).at[2, 0, 1:].set(False)
    term = ones.at[2].set(False)
    tree, ids = insert(tree, leaves, zeros, term, zeros, mask, TERMINAL)
    assert np.asarray(tree.terminal[:, 0]).tolist() == [True, True, False]
    np.testing.assert_array_equal(select(tree, TERMINAL, L), [[-1, -1], [-1, -1], [1, -1]])
    # failing the only open child closes tree 2 as well, without any backup
    tree = mark_invalid(tree, _nodes([], [], [1]))
    assert bool(tree.terminal[2, 0]) and int(tree.visits[2, 0]) == 0
    assert float(node_q(tree)[2, 1]) == -1.0
    check_invariants(tree)


def test_check_invariants_catches_errors():
    tree = _bushy_tree(TERMINAL)
    check_invariants(tree)
    with pytest.raises(AssertionError, match="visits"):  # a non-terminal node with own visits
        check_invariants(backup(tree, _nodes(*[[5]] * B), jnp.ones((B, L * K))))
    with pytest.raises(AssertionError, match="depth"):
        check_invariants(tree.replace(depth=tree.depth.at[0, 5].set(3)))
    with pytest.raises(AssertionError, match="Q outside"):
        check_invariants(tree.replace(value_sum=tree.value_sum.at[1, 4].set(2.0)))
    with pytest.raises(AssertionError, match="all terminal"):
        check_invariants(tree.replace(terminal=tree.terminal.at[2, 1:4].set(True)))
