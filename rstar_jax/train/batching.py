"""Tokenisation and sequence packing: SFT examples and reward prefix groups -> fixed-shape rows.

Every row is ``seq_len`` tokens holding several segments (1, 2, ...; 0 = padding);
attention never crosses segments (``losses.packed_mask``) and positions restart
at 0 in each segment, so a packed example computes exactly what it would alone.

A reward group (one prefix with its candidate continuations) is one segment:
the shared prefix tokens once (branch 0) followed by each candidate's tokens
(branch 1, 2, ... unique within the row); a candidate's tokens see the prefix and
themselves only, and its positions continue from the prefix, so each candidate is
scored as ``prompt + prefix + candidate`` alone would be, for one prefix pass.
Texts are tokenised whole and split at their common token prefix, so the packed
tokens equal the tokenisation of each full text.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from rstar_jax.sequences import common_prefix
from rstar_jax.train.examples import PairGroup, SFTExample

Rows = dict[str, np.ndarray]  # name -> [R, ...] arrays of one epoch


def encode(tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [np.asarray(x, np.int32) for x in ids]


def check_vocab(tokenizer, vocab_size: int) -> None:
    """A tokenizer whose ids do not fit the model's embedding is a configuration error."""
    n = len(tokenizer)
    if n > vocab_size:
        raise ValueError(
            f"tokenizer has {n} tokens but the model's vocab_size is {vocab_size}: mismatched tokenizer and checkpoint"
        )


# --- SFT ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EncodedSFT:
    ids: np.ndarray  # prompt + solution (+ eos) token ids
    n_prompt: int  # leading tokens excluded from the loss


def encode_sft(examples: Sequence[SFTExample], tokenizer, append_eos: bool) -> list[EncodedSFT]:
    fulls = encode(tokenizer, [e.prompt + e.solution for e in examples])
    prompts = encode(tokenizer, [e.prompt for e in examples])
    eos = tokenizer.eos_token_id if append_eos else None
    out = []
    for full, prompt in zip(fulls, prompts):
        n = common_prefix([full, prompt]) if len(prompt) else 0
        ids = np.append(full, np.int32(eos)) if eos is not None else full
        out.append(EncodedSFT(ids.astype(np.int32), n))
    return out


# --- reward groups -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EncodedGroup:
    prefix: np.ndarray  # shared token ids
    cands: tuple[np.ndarray, ...]  # each candidate's own token ids (>= 1)
    q: np.ndarray  # [C] candidate Q
    label: np.ndarray  # [C] 1 preferred (pos), 0 not (neg)
    pairs: np.ndarray  # [P, 2] (preferred, dispreferred) candidate indices

    @property
    def length(self) -> int:
        return len(self.prefix) + sum(len(c) for c in self.cands)


def encode_groups(groups: Sequence[PairGroup], tokenizer) -> list[EncodedGroup]:
    texts, spans = [], []
    for g in groups:
        head = g.prompt + g.prefix
        spans.append((len(texts), len(g.pos) + len(g.neg)))
        texts.extend(head + c.text for c in g.pos + g.neg)
    ids = encode(tokenizer, texts)
    out = []
    for g, (start, n) in zip(groups, spans):
        full = ids[start : start + n]
        shared = min(common_prefix(full), min(len(f) for f in full) - 1)
        npos = len(g.pos)
        out.append(
            EncodedGroup(
                full[0][:shared],
                tuple(f[shared:] for f in full),
                np.array([c.q for c in g.pos + g.neg], np.float32),
                np.array([1.0] * npos + [0.0] * (n - npos), np.float32),
                np.array([(i, npos + j) for i, j in g.pairs], np.int32).reshape(-1, 2),
            )
        )
    return out


# --- packing -------------------------------------------------------------------------------------
def first_fit(
    lengths: Sequence[int],
    order: Sequence[int],
    seq_len: int,
    counts: Sequence[tuple[int, int]] = (),
    caps: tuple[int, ...] = (),
) -> list[list[int]]:
    """Assign items (visited in ``order``) to rows: the first row with room for the item's
    length and, per extra resource r, ``counts[item][r]`` more under ``caps[r]``."""
    room = np.zeros(0, np.int64)
    used = np.zeros((0, len(caps)), np.int64)
    rows: list[list[int]] = []
    for i in order:
        if lengths[i] > seq_len:
            raise ValueError(f"item {i} has {lengths[i]} tokens, more than seq_len={seq_len}")
        ok = room >= lengths[i]
        if caps:
            ok &= np.all(used + np.asarray(counts[i]) <= np.asarray(caps), axis=1)
        r = int(np.argmax(ok)) if ok.any() else len(rows)
        if r == len(rows):
            rows.append([])
            room = np.append(room, seq_len)
            used = np.vstack([used, np.zeros((1, len(caps)), np.int64)])
        rows[r].append(i)
        room[r] -= lengths[i]
        if caps:
            used[r] += counts[i]
    return rows


def pack_sft(items: Sequence[EncodedSFT], order: Sequence[int], seq_len: int) -> Rows:
    """tokens, positions, segments [R, T] int32; targets [R, T] int32 (next token) and
    weights [R, T] float32 (1 where the next token is a solution token of the same segment)."""
    rows = first_fit([len(x.ids) for x in items], order, seq_len)
    out = {k: np.zeros((len(rows), seq_len), np.int32) for k in ("tokens", "positions", "segments", "targets")}
    out["weights"] = np.zeros((len(rows), seq_len), np.float32)
    for r, members in enumerate(rows):
        at = 0
        for s, i in enumerate(members, 1):
            ids, n = items[i].ids, len(items[i].ids)
            out["tokens"][r, at : at + n] = ids
            out["positions"][r, at : at + n] = np.arange(n)
            out["segments"][r, at : at + n] = s
            out["targets"][r, at : at + n - 1] = ids[1:]
            out["weights"][r, at + max(items[i].n_prompt - 1, 0) : at + n - 1] = 1.0
            at += n
    return out


def group_caps(items: Sequence[EncodedGroup], seq_len: int) -> tuple[int, int]:
    """(candidates, pairs) per row for a fixed array shape: the most an unconstrained
    packing in data order needs, rounded up to a multiple of 8."""
    rows = first_fit([g.length for g in items], range(len(items)), seq_len)
    c = max(sum(len(items[i].cands) for i in row) for row in rows)
    p = max(sum(len(items[i].pairs) for i in row) for row in rows)
    return -(-c // 8) * 8, -(-p // 8) * 8


def pack_groups(items: Sequence[EncodedGroup], order: Sequence[int], seq_len: int, caps: tuple[int, int]) -> Rows:
    """tokens, positions, segments, branches [R, T]; per candidate slot [R, C]: cand_index
    (its last token), cand_mask, cand_q, cand_label; per pair [R, P]: pair_a (preferred
    slot), pair_b, pair_w = 1 / (pairs of its prefix), 0 for padding, so a batch's loss
    weights sum to its number of prefixes (the official per-prefix mean)."""
    counts = [(len(g.cands), len(g.pairs)) for g in items]
    rows = first_fit([g.length for g in items], order, seq_len, counts, caps)
    t = {k: np.zeros((len(rows), seq_len), np.int32) for k in ("tokens", "positions", "segments", "branches")}
    c = {
        k: np.zeros((len(rows), caps[0]), dt)
        for k, dt in (
            ("cand_index", np.int32),
            ("cand_mask", np.float32),
            ("cand_q", np.float32),
            ("cand_label", np.float32),
        )
    }
    p = {
        k: np.zeros((len(rows), caps[1]), dt)
        for k, dt in (("pair_a", np.int32), ("pair_b", np.int32), ("pair_w", np.float32))
    }
    for r, members in enumerate(rows):
        at = slot = npair = 0
        for s, i in enumerate(members, 1):
            g = items[i]
            n = len(g.prefix)
            t["tokens"][r, at : at + n], t["positions"][r, at : at + n] = g.prefix, np.arange(n)
            t["segments"][r, at : at + n] = s
            at, first = at + n, slot
            for cand, q, label in zip(g.cands, g.q, g.label):
                m = len(cand)
                t["tokens"][r, at : at + m], t["positions"][r, at : at + m] = cand, n + np.arange(m)
                t["segments"][r, at : at + m], t["branches"][r, at : at + m] = s, slot + 1
                c["cand_index"][r, slot], c["cand_mask"][r, slot] = at + m - 1, 1.0
                c["cand_q"][r, slot], c["cand_label"][r, slot] = q, label
                at, slot = at + m, slot + 1
            k = len(g.pairs)
            p["pair_a"][r, npair : npair + k] = first + g.pairs[:, 0]
            p["pair_b"][r, npair : npair + k] = first + g.pairs[:, 1]
            p["pair_w"][r, npair : npair + k] = 1.0 / k
            npair += k
    return {**t, **c, **p}


# --- the row stream ------------------------------------------------------------------------------
class RowStream:
    """Epochs of packed rows (each epoch packs a fresh permutation of the items) read as one
    endless sequence of ``batch_size``-row batches; batch ``s`` depends only on (seed, s), so
    a resumed run reads exactly what an uninterrupted one would."""

    def __init__(self, pack_epoch: Callable[[np.ndarray], Rows], num_items: int, batch_size: int, seed: int):
        if num_items == 0:
            raise ValueError("no training examples left to pack (all empty or longer than seq_len)")
        self._pack, self.num_items, self.batch_size, self.seed = pack_epoch, num_items, batch_size, seed
        self._epochs: dict[int, Rows] = {}  # the last two packed epochs
        self._lengths: dict[int, int] = {}  # rows per epoch, kept for good

    def epoch(self, e: int) -> Rows:
        if e not in self._epochs:
            order = np.random.default_rng([self.seed, e]).permutation(self.num_items)
            self._epochs = {k: self._epochs[k] for k in sorted(self._epochs)[-1:]}
            self._epochs[e] = self._pack(order)
            self._lengths[e] = len(self._epochs[e]["tokens"])
        return self._epochs[e]

    def rows_in_epoch(self, e: int) -> int:
        if e not in self._lengths:
            self.epoch(e)
        return self._lengths[e]

    def batch(self, step: int) -> Rows:
        """Rows [step * B, (step + 1) * B) of the concatenated epochs."""
        start, e = step * self.batch_size, 0
        while start >= self.rows_in_epoch(e):
            start, e = start - self.rows_in_epoch(e), e + 1
        want, parts = self.batch_size, []
        while want:
            rows = self.epoch(e)
            take = min(want, self.rows_in_epoch(e) - start)
            parts.append({k: v[start : start + take] for k, v in rows.items()})
            want, start, e = want - take, 0, e + 1
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
