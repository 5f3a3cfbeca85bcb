"""Copy warm-up of a from-scratch model: random token sequences, each followed by itself.

The paper's policy starts from a pretrained model, which already copies spans from
its context (induction heads). A randomly initialised one does not, and on the
embedded domain's SFT data it did not learn to within the demo's budget: the
digits it must copy from the question stayed at uniform loss while the format,
names and nouns were learned (README, "The embedded default"). On this task
copying is the only way to lower the loss, so the circuit forms first, in a few
hundred steps, and SFT then starts from a model that can copy. The sequences are
uniform random tokens of random length (no fixed offset to exploit), drawn from
the non-special vocabulary; nothing about the domain's problems or solutions is
in them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rstar_jax.models import ModelConfig
from rstar_jax.train.batching import EncodedSFT, RowStream, pack_sft
from rstar_jax.train.config import SFTConfig
from rstar_jax.train.losses import sft_loss
from rstar_jax.train.trainer import Trainer, data_seed, write_summary


@dataclasses.dataclass(frozen=True)
class CopyWarmupConfig:
    """steps: optimizer steps (0: no warm-up); rows of ``seq_len`` tokens, ``batch_size`` per step;
    each sequence is 2 x L tokens, L uniform in [min_len, max_len]; a constant ``lr`` after warm-up
    (a decaying one stalled the circuit's formation on a 600-step schedule)."""

    steps: int = 0
    lr: float = 1e-3
    batch_size: int = 16
    seq_len: int = 128
    min_len: int = 10
    max_len: int = 64
    items: int = 8192
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.min_len <= self.max_len or 2 * self.max_len > self.seq_len:
            raise ValueError(f"need 1 <= min_len <= max_len and 2 * max_len <= seq_len, got {self}")


def copy_items(cfg: CopyWarmupConfig, token_ids: np.ndarray) -> list[EncodedSFT]:
    """``cfg.items`` sequences ``a + a`` of tokens drawn from ``token_ids``; the loss covers the
    repeat from its second token (its first follows an unmarked boundary and cannot be known)."""
    if len(token_ids) < 2:
        raise ValueError(f"need at least 2 ordinary token ids to copy, got {len(token_ids)}")
    rng = np.random.default_rng(cfg.seed)
    out = []
    for n in rng.integers(cfg.min_len, cfg.max_len + 1, cfg.items):
        a = rng.choice(np.asarray(token_ids, np.int32), n)
        out.append(EncodedSFT(np.concatenate([a, a]), int(n) + 1))
    return out


def copy_warmup(init: tuple[ModelConfig, dict], token_ids: np.ndarray, log_dir: str, cfg: CopyWarmupConfig
                ) -> tuple[ModelConfig, dict]:
    """Train ``init`` on the copy task over ``token_ids`` (the non-special ids); metrics (TensorBoard,
    ``metrics.jsonl``, ``summary.json``) to ``log_dir``; returns (config, float32 params)."""
    import tempfile

    config, params = init
    items = copy_items(cfg, token_ids)
    train_cfg = SFTConfig(lr=cfg.lr, schedule="constant", warmup_steps=min(20, cfg.steps), weight_decay=0.01,
                          batch_size=cfg.batch_size, seq_len=cfg.seq_len, steps=cfg.steps, seed=cfg.seed)
    stream = RowStream(lambda order: pack_sft(items, order, cfg.seq_len), len(items), cfg.batch_size,
                       data_seed(cfg.seed))
    with tempfile.TemporaryDirectory() as ckpt:  # the base stage is redone whole after a crash
        trainer = Trainer(sft_loss, config, train_cfg, stream, ckpt, log_dir,
                          {"kind": "copy_warmup", "config": dataclasses.asdict(cfg)})
        params, summary = trainer.fit(params, desc="copy warm-up")
    write_summary(log_dir, summary)
    return config, params
