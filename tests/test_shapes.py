"""Shape checks at the jitted boundaries refuse inconsistent arguments with a named dimension."""

from __future__ import annotations

import numpy as np
import pytest

from rstar_jax.search import tree as tree_lib
from rstar_jax.shapes import check_shapes


def test_check_shapes_binds_dimensions_across_arguments():
    a, b = np.zeros((2, 3)), np.zeros((2, 3, 4))
    assert check_shapes("f", a=(a, "B T"), b=(b, "B T K")) == {"B": 2, "T": 3, "K": 4}
    assert check_shapes("f", b=(b, "... 4")) == {}
    with pytest.raises(ValueError, match=r"f: b has shape \(2, 3, 4\), expected \[B L K\] with L=5"):
        check_shapes("f", a=(np.zeros((2, 5)), "B L"), b=(b, "B L K"))
    with pytest.raises(ValueError, match="expected \\[B\\]"):
        check_shapes("f", a=(a, "B"))
    with pytest.raises(ValueError, match="with 3=3|expected \\[2 4\\]"):
        check_shapes("f", a=(a, "2 4"))


def test_tree_insert_refuses_mismatched_children():
    tree = tree_lib.init_tree(2, 8, 3)
    spec = tree_lib.TreeSpec()
    leaves = np.zeros((2, 1), np.int32)
    ok = np.zeros((2, 1, 3), np.float32)
    bad = np.zeros((2, 1, 2), bool)  # K = 2 masks for K = 3 priors
    with pytest.raises(ValueError, match="insert: child_mask has shape"):
        tree_lib.insert(tree, leaves, ok, ok.astype(bool), ok, bad, spec)
