"""Batched PPM scoring of many token sequences with the engine's buckets.

Sequences that share a prefix (the K children of one search node share the
whole path) form a group: the group's common token prefix is run through the
model once and each member's remaining tokens attend to it as a shared KV
prefix, so a search iteration costs one path per node instead of K. Groups are
sorted by size and cut into batches of at most ``max_tokens`` padded tokens,
each padded to (groups, prefix, members, suffix) buckets, so a search that
scores thousands of children compiles a handful of programs.
"""

from __future__ import annotations

import functools
from typing import Hashable, Sequence

import jax
import numpy as np

from rstar_jax.engine.buckets import Buckets
from rstar_jax.models import ModelConfig, branch_cache, forward_cached, init_cache
from rstar_jax.models.transformer import value_head
from rstar_jax.sequences import common_prefix
from rstar_jax.shapes import check_shapes


@functools.partial(jax.jit, static_argnames=("config",))
def _score_batch(config: ModelConfig, params, prefix_ids, prefix_mask, suffix_ids, suffix_mask):
    """Scores [G * n] of suffixes [G * n, S] (row r continues prefix r // n, [G, P]); left padding."""
    check_shapes(
        "score",
        prefix_ids=(prefix_ids, "G P"),
        prefix_mask=(prefix_mask, "G P"),
        suffix_ids=(suffix_ids, "R S"),
        suffix_mask=(suffix_mask, "R S"),
    )
    _, cache = forward_cached(config, params, prefix_ids, init_cache(config, *prefix_ids.shape), prefix_mask)
    h, _ = forward_cached(config, params, suffix_ids, branch_cache(config, cache, *suffix_ids.shape), suffix_mask)
    return value_head(config, params, h[:, -1])


def left_pad(seqs: Sequence[Sequence[int]], rows: int, length: int, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ids, mask [rows, length] int32 with each sequence right-aligned (rows past len(seqs) empty)."""
    ids = np.full((rows, length), pad_id, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, length - len(s) :] = s
            mask[i, length - len(s) :] = 1
    return ids, mask


def score_sequences(
    config: ModelConfig,
    params,
    seqs: Sequence[Sequence[int]],
    buckets: Buckets,
    max_tokens: int = 16384,
    groups: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """Raw PPM scores [N] float32 for token sequences (each non-empty).

    groups: a key per sequence; sequences with equal keys share the computation of their
            common token prefix (None: every sequence on its own).
    """
    if "value_head" not in params:
        raise ValueError("these params have no value head: score() needs a PPM checkpoint")
    for i, s in enumerate(seqs):
        if not len(s):
            raise ValueError(f"text {i} is empty")
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups if groups is not None else range(len(seqs))):
        members.setdefault(key, []).append(i)
    # each member keeps at least one token of its own (its score is read at its last token)
    cut = {
        key: min(common_prefix([seqs[i] for i in idx]), min(len(seqs[i]) for i in idx) - 1)
        for key, idx in members.items()
    }

    # (prefix, members, suffix) padded sizes of a batch of groups, and its padded tokens
    def shape(keys):
        # members per group: powers of two, without the batch buckets' floor (K=4 siblings stay 4)
        g, n = buckets.rows(len(keys)), 1 << (max(len(members[k]) for k in keys) - 1).bit_length()
        p = buckets.tokens(max(max(cut[k] for k in keys), 1), "scored prefix length")
        s = buckets.tokens(max(len(seqs[i]) - cut[k] for k in keys for i in members[k]), "scored text length")
        return g, p, n, s, g * p + g * n * s

    order = sorted(members, key=lambda k: (cut[k], max(len(seqs[i]) for i in members[k])))
    batches: list[list[Hashable]] = []
    for key in order:
        if batches and len(batches[-1]) < buckets.batch[-1] and shape(batches[-1] + [key])[-1] <= max_tokens:
            batches[-1].append(key)
        else:
            batches.append([key])
    out = np.zeros(len(seqs), np.float32)
    for keys in batches:
        g, p, n, s, _ = shape(keys)
        pre_ids, pre_mask = left_pad([seqs[members[k][0]][: cut[k]] for k in keys], g, p)
        rows = [[seqs[i][cut[k] :] for i in members[k]] + [[]] * (n - len(members[k])) for k in keys]
        suf_ids, suf_mask = left_pad([r for group in rows for r in group], g * n, s)
        scores = np.asarray(_score_batch(config, params, pre_ids, pre_mask, suf_ids, suf_mask))
        for e, k in enumerate(keys):
            out[members[k]] = scores[e * n : e * n + len(members[k])]
    return out
