"""Build engine-backed proposers and scorers from HF checkpoint folders."""

from __future__ import annotations

from rstar_jax.engine import Buckets, Engine
from rstar_jax.models import load_hf
from rstar_jax.models.tokenizer import load_tokenizer
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.proposers import PolicyProposer, PPMScorer


def search_engine(
    config, params, tokenizer, min_rows: int = 8, compact: bool = False, memory_gb: float | None = None
) -> Engine:
    """An engine with coarse buckets: search changes its batch and lengths every iteration, and
    on a small model each new shape costs more to compile than its padding costs to run."""
    buckets = Buckets.coarse(min_rows=min_rows, min_length=32)
    return Engine(config, params, tokenizer, buckets=buckets, compact=compact, memory_gb=memory_gb)


def load_engine(path: str, min_rows: int = 8, memory_gb: float | None = None) -> Engine:
    config, params = load_hf(path)
    return search_engine(config, params, load_tokenizer(path), min_rows=min_rows, memory_gb=memory_gb)


def load_policy(path: str, cfg: SearchConfig) -> PolicyProposer:
    """The policy in HF folder ``path`` (with its tokenizer) as a step proposer."""
    engine = load_engine(path, cfg.min_batch, cfg.memory_gb)
    return PolicyProposer(engine, max_step_tokens=cfg.max_step_tokens, top_p=cfg.top_p)


def load_scorer(ppm: str) -> PPMScorer:
    return PPMScorer(load_engine(ppm))
