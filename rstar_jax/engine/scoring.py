"""Batched PPM scoring of many token sequences with the engine's buckets.

Sequences are sorted by length and cut into batches of at most ``max_tokens``
padded tokens, each padded (left) to a (batch, length) bucket, so a search
that scores thousands of children compiles a handful of programs.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np

from rstar_jax.engine.buckets import Buckets
from rstar_jax.engine.decode import TRACES
from rstar_jax.models import ModelConfig, ppm_scores


@functools.partial(jax.jit, static_argnames=("config",))
def _score_batch(config: ModelConfig, params, ids, mask):
    TRACES["score"] += 1
    return ppm_scores(config, params, ids, mask)


def left_pad(seqs: Sequence[Sequence[int]], rows: int, length: int, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ids, mask [rows, length] int32 with each sequence right-aligned (rows past len(seqs) empty)."""
    ids = np.full((rows, length), pad_id, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, length - len(s):] = s
            mask[i, length - len(s):] = 1
    return ids, mask


def score_sequences(config: ModelConfig, params, seqs: Sequence[Sequence[int]], buckets: Buckets,
                    max_tokens: int = 16384) -> np.ndarray:
    """Raw PPM scores [N] float32 for token sequences (each non-empty)."""
    if "value_head" not in params:
        raise ValueError("these params have no value head: score() needs a PPM checkpoint")
    for i, s in enumerate(seqs):
        if not len(s):
            raise ValueError(f"text {i} is empty")
    batches: list[list[int]] = [[]]
    for i in sorted(range(len(seqs)), key=lambda i: len(seqs[i])):  # longest last in each batch
        grown = batches[-1] + [i]
        if batches[-1] and (len(grown) > buckets.batch[-1] or
                            buckets.rows(len(grown)) * buckets.tokens(len(seqs[i])) > max_tokens):
            grown = [i]
            batches.append(grown)
        batches[-1] = grown
    out = np.zeros(len(seqs), np.float32)
    for idx in batches:
        length = buckets.tokens(len(seqs[idx[-1]]), "scored text length")
        ids, mask = left_pad([seqs[i] for i in idx], buckets.rows(len(idx)), length)
        out[idx] = np.asarray(_score_batch(config, params, ids, mask))[:len(idx)]
    return out
