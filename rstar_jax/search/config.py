"""Search settings (DESIGN.md §6, §11): one dataclass for MCTS and the baselines."""
from __future__ import annotations

import dataclasses
from typing import Literal


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
    min_batch:       the policy's generation batches are padded to at least this many prompts
                     (rounded up to a power of two): as a batch's problems finish, its shrinking batches keep
                     one compiled program instead of one per size. Worth raising where a decode
                     step costs about the same for few rows as for many (small models, CPUs).
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
    seed: int = 0

    def __post_init__(self):
        for name in ("rollouts", "candidates", "leaves_per_tree", "max_depth", "batch_size", "min_batch",
                     "max_step_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.reward == "ppm" and self.mode != "ppm":
            raise ValueError("reward='ppm' needs mode='ppm' (a reward model)")

    def replace(self, **kw) -> "SearchConfig":
        return dataclasses.replace(self, **kw)
