"""Adapters from the engine to search's interfaces: the policy as a ``Proposer`` and the
PPM as a ``Scorer``.

The policy proposes k sampled next steps per leaf, one engine call per batch.

Each candidate's KV (prompt + step) is kept in a byte-bounded LRU cache keyed by
its parent's path and its text; when the search later expands that child, only
the text appended since (the last step token, an ``<output>`` block) is
prefilled instead of the whole path (the tree owns its cache).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from rstar_jax.engine import Engine, Prefix
from rstar_jax.lru import LRU
from rstar_jax.search.types import Proposal, ProposalRequest, StepCandidate
from rstar_jax.steps import STEP_STOPS, build_prompt


def request_seed(seed: int, request: ProposalRequest) -> int:
    """A 32-bit seed from (seed, problem id, sample id, path): independent of the batch a request
    is in; the sample id keeps independent chains through the same path independent."""
    h = hashlib.blake2b(digest_size=4)
    for part in (str(seed), request.problem_id, str(request.sample_id), str(len(request.steps)), *request.steps):
        h.update(part.encode() + b"\0")
    return int.from_bytes(h.digest(), "little")


class PolicyProposer:
    """Proposer protocol over an ``Engine`` (stop at any step marker, ``max_step_tokens`` per step).

    prefix_cache_mb: byte budget of the per-node prefix-KV cache (0 disables it).
    chunk: the engine's decode chunk. 0 (one ``while_loop`` per step) suits steps: they are
           short, and step markers are single tokens stopped on the device, so host checks
           between chunks would only add programs to compile.
    """

    def __init__(
        self,
        engine: Engine,
        max_step_tokens: int = 256,
        *,
        top_p: float = 1.0,
        top_k: int = 0,
        prefix_cache_mb: float = 512.0,
        chunk: int = 0,
    ):
        self.engine, self.max_step_tokens, self.chunk = engine, max_step_tokens, chunk
        self.top_p, self.top_k = top_p, top_k
        self.cache_bytes = int(prefix_cache_mb * 2**20)
        # (problem id, sample id, parent path) -> {candidate text: Prefix}; the sample id keeps the
        # chains of one problem (all at the same root) from overwriting each other's entries
        self._cache = LRU(self.cache_bytes, size=lambda entry: sum(p.nbytes for p in entry.values()))

    def propose(self, requests: Sequence[ProposalRequest], k: int, *, temperature: float, seed: int) -> Proposal:
        if not requests:
            return Proposal([])
        prompts = [build_prompt(r.question) + "".join(r.steps) for r in requests]
        comps, stats = self.engine.generate(
            prompts,
            n=k,
            max_new_tokens=self.max_step_tokens,
            temperature=temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=STEP_STOPS,
            seed=[request_seed(seed, r) for r in requests],
            prefixes=[self._take(r) for r in requests],
            return_prefix=self.cache_bytes > 0,
            chunk=self.chunk,
        )
        out = []
        for r, cs in zip(requests, comps):
            if self.cache_bytes > 0:
                self._cache.put((r.problem_id, r.sample_id, r.steps), {c.text: c.prefix for c in cs})
            out.append(
                [
                    StepCandidate(
                        c.text,
                        len(c.token_ids),
                        c.logprob,
                        "stop" if c.finish_reason in STEP_STOPS else c.finish_reason,
                    )
                    for c in cs
                ]
            )
        return Proposal(
            out,
            prefill_tokens=stats.prefill_tokens,
            shared_saved=stats.shared_prefill_saved,
            prefix_reused=stats.prefix_reused,
            decode_slots=stats.decode_slots,
        )

    def _take(self, r: ProposalRequest) -> Prefix | None:
        """Pop the cached KV of the candidate this leaf was made from (its step may have grown
        an ``<output>`` block since, so match the longest candidate text it starts with)."""
        if not r.steps:
            return None
        key = (r.problem_id, r.sample_id, r.steps[:-1])
        entry = self._cache.pop(key)
        if not entry:
            return None
        texts = [t for t in entry if r.steps[-1].startswith(t)]
        prefix = entry.pop(max(texts, key=len)) if texts else None  # a node is expanded once
        if entry:
            self._cache.put(key, entry)
        return prefix


class PPMScorer:
    """The Scorer protocol over the engine's batched, bucketed PPM scoring."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def score(self, questions: Sequence[str], paths: Sequence[Sequence[str]]) -> np.ndarray:
        texts = [build_prompt(q) + "".join(p) for q, p in zip(questions, paths)]
        # paths that differ only in their last step (siblings) share the rest's computation
        groups = [(q, tuple(p[:-1])) for q, p in zip(questions, paths)]
        return np.asarray(self.engine.score(texts, groups=groups), np.float64)
