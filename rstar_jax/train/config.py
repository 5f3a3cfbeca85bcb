"""Training settings (frozen dataclasses; YAML + key=value through ``rstar_jax.config.load_config``).

Defaults follow the official rStar-Math recipe (docs/DESIGN.md §10: SFT lr 7e-6, 2
epochs, batch 128, weight decay 0.1, linear schedule; PPM lr 7e-6, 1 epoch,
batch 512), which assumes a pretrained 7B model: a small model trained from
scratch wants a larger ``lr``.
"""

from __future__ import annotations

import dataclasses
import math

from rstar_jax.errors import UserError


def _check_types(cfg) -> None:
    """int fields hold ints (not bools), float fields real numbers, str and bool fields their type."""
    kinds = {"int": int, "float": (int, float), "str": str, "bool": bool}
    for f in dataclasses.fields(cfg):
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        optional = name.endswith(" | None")
        want = kinds.get(name.removesuffix(" | None"))
        v = getattr(cfg, f.name)
        if want is None or v is None and optional:
            continue
        if not isinstance(v, want) or (want is not bool and isinstance(v, bool)):
            raise UserError(f"{f.name} must be {name.removesuffix(' | None')}, got {v!r}")


def _check(cfg, name: str, ok, bound: str) -> None:
    """Raise naming the setting and its bound unless ``ok(value)`` (NaN fails every bound)."""
    v = getattr(cfg, name)
    if not (isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) and ok(v)):
        raise UserError(f"{name} must be {bound}, got {v!r}")


# Settings that change how much memory a step takes, not what it computes: a run resumed with
# other values continues as it would have (up to float rounding: the same update, summed in another order).
MEMORY_SETTINGS = ("micro_batch", "memory_gb")


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
    micro_batch: rows per device per micro-step, dividing the rows per device (batch_size / data-parallel
                devices); the micro-steps' gradients add up to the whole batch's, so it changes memory,
                not the result. 0: the largest that fits the memory estimate (``rstar_jax.train.memory``).
    memory_gb:  the memory (GB, 1e9 bytes) one device may use for a training step; None: the device's
                free memory (GPU/TPU) or the host's available memory shared by its CPU devices.
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
    micro_batch: int = 0
    memory_gb: float | None = None

    def __post_init__(self):
        _check_types(self)
        if self.schedule not in ("linear", "cosine", "constant"):
            raise UserError(f"schedule must be linear, cosine or constant, got {self.schedule!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise UserError(f"compute_dtype must be float32 or bfloat16, got {self.compute_dtype!r}")
        positive = lambda x: x > 0  # noqa: E731
        at_least_0 = lambda x: x >= 0  # noqa: E731
        finite = lambda ok: lambda x: ok(x) and math.isfinite(x)  # noqa: E731
        for name in ("lr", "eps", "clip_norm"):
            _check(self, name, finite(positive), "> 0 and finite")
        _check(self, "weight_decay", finite(at_least_0), ">= 0 and finite")
        for name in ("b1", "b2"):
            _check(self, name, lambda x: 0 <= x < 1, "in [0, 1)")
        for name in ("batch_size", "seq_len", "log_every", "keep_checkpoints", "mesh_fsdp", "mesh_tensor"):
            _check(self, name, lambda x: x >= 1, ">= 1")
        for name in ("warmup_steps", "steps", "checkpoint_every", "seed", "micro_batch"):
            _check(self, name, at_least_0, ">= 0")
        _check(self, "mesh_data", lambda x: x >= 1 or x == -1, ">= 1 (or -1: every device left)")
        _check(self, "epochs", finite(at_least_0), ">= 0 and finite")
        if self.steps == 0 and self.epochs == 0:
            raise UserError(f"epochs must be > 0 when steps is 0 (steps=0 trains epochs passes), got {self.epochs!r}")
        if self.memory_gb is not None:
            _check(self, "memory_gb", finite(positive), "> 0 and finite (or unset: the device's memory)")


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
        _check(self, "items", lambda x: x >= 1, ">= 1")
        _check(self, "min_len", lambda x: x >= 1, ">= 1")
        _check(self, "max_len", lambda x: x >= self.min_len, f">= min_len={self.min_len}")
        _check(self, "max_len", lambda x: 2 * x <= self.seq_len, f"<= seq_len / 2 = {self.seq_len // 2}")


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
        _check(self, "eval_fraction", lambda x: 0 <= x < 1, "in [0, 1)")
        _check(self, "eval_every", lambda x: x >= 0, ">= 0")
        _check(self, "squash_scale", lambda x: x > 0 and math.isfinite(x), "> 0 and finite")
