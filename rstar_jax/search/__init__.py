"""Search: batched MCTS (tree on device, expansion on host) and the sampling and beam baselines,
over any ``Proposer``, ``Executor`` and ``Scorer``; results are tree records.

Names load lazily, so that the configs and interfaces (``search.config``, ``search.types``)
import without JAX.
"""

import importlib

_EXPORTS = {
    "run_mcts": "mcts",
    "run_chains": "baselines",
    "run_beam": "baselines",
    "SearchConfig": "config",
    "TreeSpec": "config",
    "SearchStats": "expansion",
    "NodeRecord": "records",
    "TreeRecord": "records",
    "read_records": "records",
    "write_records": "records",
    "trajectories": "records",
    "Executor": "types",
    "NodeInfo": "types",
    "Proposal": "types",
    "ProposalRequest": "types",
    "Proposer": "types",
    "Scorer": "types",
    "StepCandidate": "types",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rstar_jax.search.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rstar_jax.search' has no attribute {name!r}")
