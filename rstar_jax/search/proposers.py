"""Adapters from the engine to search's interfaces: the policy as a ``Proposer`` and the
PPM as a ``Scorer``.

The policy proposes k sampled next steps per leaf, one engine call per batch.

Each candidate's KV (prompt + step) is kept (``node_kv.NodeKV``, in pages by default);
when the search later expands that child, only the text appended since (the last step
token, an ``<output>`` block) is prefilled instead of the whole path (the tree owns its cache).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from rstar_jax.engine import Engine
from rstar_jax.engine.pages import PagePool, page_bytes, pages_needed
from rstar_jax.search.node_kv import NodeKV
from rstar_jax.search.types import Proposal, ProposalRequest, StepCandidate
from rstar_jax.sequences import common_prefix
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

    prefix_cache_mb: byte budget of the per-node KV the proposer keeps (0 disables it).
    paged: keep that KV in pages (``engine.pages``: a node's KV written once, shared by its
           descendants) rather than one copy of the whole path per candidate.
    page_size: token slots per page.
    chunk: the engine's decode chunk. 0 (one ``while_loop`` per step) suits steps: they are
           short, and step markers are single tokens stopped on the device, so host checks
           between chunks would only add programs to compile.
    prompt_prefix: text put before every prompt (a few-shot block for a model not trained on the format).

    ``release`` and ``release_problem`` let the search drop the KV of nodes it will never expand.
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
        prompt_prefix: str = "",
        paged: bool = True,
        page_size: int = 16,
    ):
        self.engine, self.max_step_tokens, self.chunk = engine, max_step_tokens, chunk
        self.prompt_prefix = prompt_prefix
        self.top_p, self.top_k = top_p, top_k
        self.cache_bytes = int(prefix_cache_mb * 2**20)
        pages = self.cache_bytes // page_bytes(engine.config, page_size)
        pool = PagePool(engine.config, page_size, pages) if paged and pages > 0 else None
        self.kv = NodeKV(self.cache_bytes, pool)

    def propose(self, requests: Sequence[ProposalRequest], k: int, *, temperature: float, seed: int) -> Proposal:
        if not requests:
            return Proposal([])
        prompts = [
            self.engine.encode(self.prompt_prefix + build_prompt(r.question) + "".join(r.steps)) for r in requests
        ]
        taken = [self._take(r) for r in requests]
        keep = self.cache_bytes > 0
        evicted = self.kv.evicted_pages
        if self.kv.pool is not None:  # room for this call's pages, else its children re-prefill later
            kept = [min(common_prefix([t.tokens, p]), len(p) - 1) if t else 0 for t, p in zip(taken, prompts)]
            keep = self.kv.make_room(
                pages_needed(list(map(len, prompts)), kept, k, self.max_step_tokens, self.kv.pool.page)
            )
        comps, stats = self.engine.generate(
            prompts,
            n=k,
            max_new_tokens=self.max_step_tokens,
            temperature=temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            stop=STEP_STOPS,
            seed=[request_seed(seed, r) for r in requests],
            prefixes=taken,
            return_prefix=keep,
            chunk=self.chunk,
            pages=self.kv.pool,
        )
        for kv in taken:  # a node is expanded once: its KV lives on in its children's
            self.kv.release(kv)
        out = []
        for r, cs in zip(requests, comps):
            if keep:
                entry: dict = {}
                for c in cs:  # duplicate texts keep one KV
                    self.kv.release(entry.get(c.text))
                    entry[c.text] = c.prefix
                self.kv.put((r.problem_id, r.sample_id, r.steps), entry)
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
            kv_bytes=self.kv.nbytes,
            pages_evicted=self.kv.evicted_pages - evicted,
        )

    def _take(self, r: ProposalRequest):
        """The KV of the candidate this leaf was made from, or None."""
        return self.kv.take((r.problem_id, r.sample_id, r.steps[:-1]), r.steps[-1]) if r.steps else None

    def release(self, problem_id: str, sample_id: int, steps: Sequence[str]) -> None:
        """Drop the KV of the node at path ``steps`` (terminal: it will not be expanded)."""
        self.kv.release(self.kv.take((problem_id, sample_id, tuple(steps[:-1])), steps[-1]))

    def release_problem(self, problem_id: str) -> None:
        """Drop the KV of every node of ``problem_id`` (its search is over)."""
        self.kv.drop(lambda k: k[0] == problem_id)


class PPMScorer:
    """The Scorer protocol over the engine's batched, bucketed PPM scoring."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def score(self, questions: Sequence[str], paths: Sequence[Sequence[str]]) -> np.ndarray:
        texts = [build_prompt(q) + "".join(p) for q, p in zip(questions, paths)]
        # paths that differ only in their last step (siblings) share the rest's computation
        groups = [(q, tuple(p[:-1])) for q, p in zip(questions, paths)]
        return np.asarray(self.engine.score(texts, groups=groups), np.float64)
