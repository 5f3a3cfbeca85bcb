"""Search settings: one dataclass for MCTS and the baselines, and the static tree spec it derives."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class TreeSpec:
    """Static tree settings (hashable: a jit static argument), built by ``SearchConfig.tree_spec``.

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


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """rollouts:        completed rollouts (a path reaching an answer or a dead end) per problem.
    candidates:      K, candidate next steps proposed per expanded node.
    leaves_per_tree: leaves expanded per tree per iteration (virtual loss keeps them distinct).
    error_threshold: consecutive code errors that end a branch (2 bootstrap, 1 trained policy).
    mode:            "terminal" (new nodes start at Q=0) or "ppm" (new nodes start at their PPM score).
    reward:          "gold" grades answers against the gold answer (+1/-1, data generation);
                     "ppm" backs up the answer node's PPM score (test time);
                     "none" backs up 0 (no reward model, no gold: answers are voted on).
    squash:          maps raw PPM scores into [-1, 1] ("tanh5" = tanh(r/5), as the official code).
    batch_size:      problems searched in lockstep.
    memory_gb:       device memory the policy's engine may use (default: the device's; see rstar_jax.memory):
                     its decode batches are capped to the rows whose KV cache fits.
    min_batch:       the policy's generation batches are padded to at least this many prompts
                     (rounded up to a power of two): as a batch's problems finish, its shrinking batches keep
                     one compiled program instead of one per size. Worth raising where a decode
                     step costs about the same for few rows as for many (small models, CPUs).
    dtype:           policy/PPM weights and compute: "auto" = bfloat16 on accelerators, float32 on CPU.
    tensor_parallel: devices per model copy, splitting its heads (0: the fewest that hold the weights);
                     the other devices split the rows (models/placement.py).
    """

    rollouts: int = 8
    candidates: int = 5
    temperature: float = 0.7
    top_p: float = 1.0
    c_uct: float = 2.0
    max_depth: int = 16
    unvisited: Literal["q", "inf"] = "q"
    virtual_loss: float = 1.0
    leaves_per_tree: int = 1
    max_step_tokens: int = 256
    error_threshold: int = 2
    mode: Literal["terminal", "ppm"] = "terminal"
    reward: Literal["gold", "ppm", "none"] = "gold"
    squash: Literal["tanh5", "tanh", "sigmoid", "none"] = "tanh5"
    extra_rollouts_if_unsolved: int = 0  # rounds 2-3: +16 rollouts when all answers are wrong
    batch_size: int = 64
    min_batch: int = 8
    max_nodes: int = 4096
    memory_gb: float | None = None
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    tensor_parallel: int = 0
    seed: int = 0

    def __post_init__(self):
        for name in (
            "rollouts",
            "candidates",
            "leaves_per_tree",
            "max_depth",
            "batch_size",
            "min_batch",
            "max_step_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.reward == "ppm" and self.mode != "ppm":
            raise ValueError("reward='ppm' needs mode='ppm' (a reward model)")
        if self.memory_gb is not None and not self.memory_gb > 0:
            raise ValueError(f"memory_gb must be > 0, got {self.memory_gb}")
        if self.tensor_parallel < 0:
            raise ValueError(f"tensor_parallel must be >= 0, got {self.tensor_parallel}")

    def replace(self, **kw) -> "SearchConfig":
        return dataclasses.replace(self, **kw)

    def tree_spec(self) -> TreeSpec:
        """The static settings of the jitted tree ops."""
        return TreeSpec(
            c_uct=self.c_uct,
            max_depth=self.max_depth,
            unvisited=self.unvisited,
            virtual_loss=self.virtual_loss,
            mode=self.mode,
        )

    def max_iterations(self) -> int:
        """Search iterations after which every tree has had its chance at every rollout."""
        return (self.rollouts + self.extra_rollouts_if_unsolved) * (self.max_depth + 2)

    def tree_capacity(self) -> int:
        """Nodes a tree can need: the root plus K children per leaf per iteration, at most ``max_nodes``."""
        return min(self.max_nodes, 1 + self.max_iterations() * self.leaves_per_tree * self.candidates)
