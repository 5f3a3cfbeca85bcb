"""What the engine returns: completions, their reusable KV prefixes, and a call's counters."""

from __future__ import annotations

import dataclasses

import jax


@dataclasses.dataclass(frozen=True, eq=False)
class Prefix:
    """The KV of ``tokens``: k [L, Hkv, Dh, P], v [L, Hkv, P, Dh], the first len(tokens) slots real."""

    tokens: tuple[int, ...]
    k: jax.Array
    v: jax.Array

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sample. finish_reason: the stop string hit, "eos" or "length". logprob: sum of the
    model's log-probabilities of ``token_ids`` (unscaled by temperature or truncation)."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    logprob: float
    prefix: Prefix | None = None


@dataclasses.dataclass
class GenerateStats:
    """Counters of one ``generate`` call (summed over its row groups), returned with its completions."""

    prompts: int = 0
    rows: int = 0
    prefill_tokens: int = 0  # real prompt tokens run through the model
    shared_prefill_saved: int = 0  # tokens n separate copies of each prompt would have added
    prefix_reused: int = 0  # prompt tokens taken from a cached Prefix instead
    new_tokens: int = 0
    decode_calls: int = 0
    compactions: int = 0  # times the unfinished rows moved to a batch of at most half the rows
    decode_slots: int = 0  # row-steps decoded (batch-padding rows included): new_tokens / this is
    #                        the share of decode work that produced tokens (rows wait for the longest)
    seconds: float = 0.0
