"""Training settings (frozen dataclasses; YAML + key=value through ``rstar_jax.config.load_config``).

Defaults follow the official rStar-Math recipe (docs/DESIGN.md §10: SFT lr 7e-6, 2
epochs, batch 128, weight decay 0.1, linear schedule; PPM lr 7e-6, 1 epoch,
batch 512), which assumes a pretrained 7B model: a small model trained from
scratch wants a larger ``lr``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Shared by the policy and the reward models.

    batch_size: packed rows per optimizer step (global, across all devices/hosts).
    seq_len:    tokens per packed row; longer examples are dropped and counted.
    steps:      optimizer steps; 0 = ``epochs`` passes over the data.
    schedule:   "linear" or "cosine" decay to 0 after ``warmup_steps`` linear warmup, or "constant".
    compute_dtype: "bfloat16" runs the model in bf16 on float32 master weights.
    mesh_*:     device mesh (data = -1: all devices left after fsdp x tensor).
    checkpoint_every: steps between orbax checkpoints (0: only at the end); keep the last ``keep_checkpoints``.
    """

    lr: float = 7e-6
    schedule: str = "linear"
    warmup_steps: int = 0
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    clip_norm: float = 1.0
    batch_size: int = 128
    seq_len: int = 1024
    epochs: float = 2.0
    steps: int = 0
    compute_dtype: str = "float32"
    mesh_data: int = -1
    mesh_fsdp: int = 1
    mesh_tensor: int = 1
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ValueError(f"schedule must be linear, cosine or constant, got {self.schedule!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}")
        for name in ("batch_size", "seq_len", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0 or self.epochs <= 0 and self.steps == 0:
            raise ValueError("set steps > 0 or epochs > 0")


@dataclasses.dataclass(frozen=True)
class SFTConfig(TrainConfig):
    """Policy SFT. append_eos: end each solution with the tokenizer's EOS (if it has one)."""

    append_eos: bool = True


@dataclasses.dataclass(frozen=True)
class CopyWarmupConfig(TrainConfig):
    """The copy warm-up of a from-scratch base model (``rstar_jax.train.copy_warmup``).
    steps: 0 skips it. Each sequence is 2 x L tokens, L uniform in [min_len, max_len], ``items`` of
    them; a constant ``lr`` after warm-up (why: docs/DEMO_LOG.md)."""

    lr: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 20
    weight_decay: float = 0.01
    batch_size: int = 16
    seq_len: int = 128
    min_len: int = 10
    max_len: int = 64
    items: int = 8192

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.min_len <= self.max_len or 2 * self.max_len > self.seq_len:
            raise ValueError(f"need 1 <= min_len <= max_len and 2 * max_len <= seq_len, got {self}")


@dataclasses.dataclass(frozen=True)
class RewardConfig(TrainConfig):
    """PPM / PQM / ORM. eval_fraction of the prefix groups (by problem) is held out for
    pairwise accuracy, evaluated every ``eval_every`` steps (0: only at the end).
    squash_scale: PQM regresses ``tanh(r / squash_scale)`` onto Q; 5 matches the search's
    default ``squash="tanh5"``, so the squashed score the search sees estimates Q."""

    batch_size: int = 512
    epochs: float = 1.0
    eval_fraction: float = 0.05
    eval_every: int = 0
    squash_scale: float = 5.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
