"""Build proposers and scorers from checkpoint folders (or the bootstrap proposer)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rstar_jax.search.config import SearchConfig
from rstar_jax.steps import build_prompt

BOOTSTRAP = "bootstrap"


class PPMScorer:
    """The Scorer protocol over the engine's batched, bucketed PPM scoring."""

    def __init__(self, engine):
        self.engine = engine

    def score(self, questions: Sequence[str], paths: Sequence[Sequence[str]]) -> np.ndarray:
        texts = [build_prompt(q) + "".join(p) for q, p in zip(questions, paths)]
        # paths that differ only in their last step (siblings) share the rest's computation
        groups = [(q, tuple(p[:-1])) for q, p in zip(questions, paths)]
        return np.asarray(self.engine.score(texts, groups=groups), np.float64)


def search_engine(config, params, tokenizer, min_rows: int = 8, compact: bool = False):
    """An engine with coarse buckets: search changes its batch and lengths every iteration, and
    on a small model each new shape costs more to compile than its padding costs to run."""
    from rstar_jax.engine import Buckets, Engine
    return Engine(config, params, tokenizer, buckets=Buckets.coarse(min_rows=min_rows, min_length=32),
                  compact=compact)


def load_engine(path: str, min_rows: int = 8):
    from rstar_jax.data.domain_tokenizer import load_tokenizer
    from rstar_jax.models import load_hf

    config, params = load_hf(path)
    return search_engine(config, params, load_tokenizer(path), min_rows=min_rows)


def load_proposer(policy: str, problems: Sequence, cfg: SearchConfig, bootstrap_kwargs: dict | None = None):
    """``policy`` is an HF folder (with tokenizer) or ``"bootstrap"`` (synthetic problems only)."""
    if policy == BOOTSTRAP:
        from rstar_jax.data.bootstrap import BootstrapProposer
        return BootstrapProposer(list(problems), **(bootstrap_kwargs or {}))
    from rstar_jax.engine import PolicyProposer
    return PolicyProposer(load_engine(policy, cfg.min_batch), max_step_tokens=cfg.max_step_tokens)


def load_scorer(ppm: str) -> PPMScorer:
    return PPMScorer(load_engine(ppm))


def round_searchers(cfg, wd, r: int, problems: Sequence, scfg: SearchConfig):
    """(proposer, scorer) for round r of self-evolution: bootstrap first, then the previous round's models."""
    if r == 1:
        return load_proposer(BOOTSTRAP, problems, scfg, cfg.bootstrap_kwargs()), None
    prev = f"round{r - 1}"
    return load_proposer(wd.path(prev, "policy", "hf"), problems, scfg), load_scorer(wd.path(prev, "ppm", "hf"))
