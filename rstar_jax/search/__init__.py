"""Search: the batched tree (device), the MCTS driver and baselines (host), tree records."""
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.types import ProposalRequest, Proposer, StepCandidate
from rstar_jax.search.records import (
    NodeRecord, TreeRecord, is_correct_path, mean_q, min_q, path_to, read_records, record_from_tree,
    trajectories, trajectory_steps, write_records,
)
from rstar_jax.search.tree import (
    SearchParams, Tree, backup, check_invariants, init_tree, insert, mark_invalid, node_q, path_to_root, select,
    tree_slice,
)

__all__ = [
    "SearchConfig", "ProposalRequest", "Proposer", "StepCandidate", "NodeRecord", "TreeRecord",
    "is_correct_path", "mean_q", "min_q", "path_to", "read_records", "record_from_tree", "trajectories",
    "trajectory_steps", "write_records", "SearchParams", "Tree", "backup", "check_invariants", "init_tree",
    "insert", "mark_invalid", "node_q", "path_to_root", "select", "tree_slice",
]
