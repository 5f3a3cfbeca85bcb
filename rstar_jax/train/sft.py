"""Policy SFT: causal LM loss on solution tokens of packed (prompt, solution) rows."""

from __future__ import annotations

import os
from typing import Sequence

from rstar_jax.models import ModelConfig
from rstar_jax.search.records import TreeRecord
from rstar_jax.train.batching import EncodedSFT, RowStream, check_vocab, encode_sft, pack_sft
from rstar_jax.train.config import SFTConfig, TrainConfig
from rstar_jax.train.examples import ExtractConfig, SFTExample, sft_examples
from rstar_jax.train.losses import sft_loss
from rstar_jax.train.trainer import Trainer, data_seed, fingerprint, write_summary


def as_examples(
    data: Sequence[SFTExample | TreeRecord], extract_cfg: ExtractConfig = ExtractConfig()
) -> list[SFTExample]:
    """SFT examples as given, or extracted from tree records."""
    out = []
    for d in data:
        out.extend(sft_examples(d, extract_cfg) if isinstance(d, TreeRecord) else [d])
    return out


def fit_packed(
    items: Sequence[EncodedSFT],
    init: tuple[ModelConfig, dict],
    cfg: TrainConfig,
    ckpt_dir: str,
    log_dir: str,
    meta: dict,
    desc: str,
    callback=None,
) -> tuple[dict, dict]:
    """Train ``init`` with the LM loss on ``items`` packed into ``cfg.seq_len`` rows (loss on the
    tokens after each item's ``n_prompt``); returns (float32 params on the mesh, run summary)."""
    config, params = init
    stream = RowStream(
        lambda order: pack_sft(items, order, cfg.seq_len), len(items), cfg.batch_size, data_seed(cfg.seed)
    )
    trainer = Trainer(sft_loss, config, cfg, stream, ckpt_dir, log_dir, meta)
    params, summary = trainer.fit(params, callback=callback, desc=desc)
    return params, {**summary, "rows_per_epoch": stream.rows_in_epoch(0)}


def train_policy(
    data: Sequence[SFTExample | TreeRecord],
    init: tuple[ModelConfig, dict],
    tokenizer,
    out_dir: str,
    cfg: SFTConfig = SFTConfig(),
    ckpt_dir: str | None = None,
    callback=None,
) -> tuple[ModelConfig, dict]:
    """Fine-tune ``init`` on SFT examples (or the examples of tree records).

    Checkpoints go to ``ckpt_dir`` (default ``out_dir/ckpt``) and a rerun resumes
    there; metrics to ``out_dir`` (TensorBoard ``tb/``, ``metrics.jsonl``, ``summary.json``).
    Returns (config, float32 params on the mesh).
    """
    config, params = init
    if config.value_head:
        raise ValueError("the init checkpoint has a value head: train_policy needs a policy (LM) checkpoint")
    check_vocab(tokenizer, config.vocab_size)
    examples = as_examples(data)
    if not examples:
        raise ValueError("no SFT examples (no problem has a correct, valid trajectory)")
    encoded = encode_sft(examples, tokenizer, cfg.append_eos)
    kept = [e for e in encoded if len(e.ids) <= cfg.seq_len]
    meta = {"kind": "sft", "examples": len(kept), "data": fingerprint(e.ids for e in kept)}
    params, summary = fit_packed(
        kept, (config, params), cfg, ckpt_dir or os.path.join(out_dir, "ckpt"), out_dir, meta, "sft", callback
    )
    summary.update(examples=len(examples), dropped_too_long=len(encoded) - len(kept))
    write_summary(out_dir, summary)
    return config, params
