"""Proposers and scorers by name: an HF folder, or the synthetic domain's scripted bootstrap."""

from __future__ import annotations

from typing import Sequence

from rstar_jax.domain.bootstrap import BootstrapProposer
from rstar_jax.evolve.config import EvolveConfig
from rstar_jax.evolve.workdir import WorkDir
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.loading import load_policy, load_scorer
from rstar_jax.search.proposers import PPMScorer
from rstar_jax.search.types import Proposer

BOOTSTRAP = "bootstrap"


def load_proposer(policy: str, problems: Sequence, cfg: SearchConfig, bootstrap_kwargs: dict | None = None) -> Proposer:
    """``policy`` is an HF folder (with tokenizer) or ``"bootstrap"`` (synthetic problems only)."""
    if policy == BOOTSTRAP:
        return BootstrapProposer(list(problems), **(bootstrap_kwargs or {}))
    return load_policy(policy, cfg)


def round_searchers(
    cfg: EvolveConfig, wd: WorkDir, r: int, problems: Sequence, scfg: SearchConfig
) -> tuple[Proposer, PPMScorer | None]:
    """(proposer, scorer) for round r of self-evolution: bootstrap first, then the previous round's models."""
    if r == 1:
        return load_proposer(BOOTSTRAP, problems, scfg, cfg.bootstrap_kwargs()), None
    prev = f"round{r - 1}"
    return load_proposer(wd.path(prev, "policy", "hf"), problems, scfg), load_scorer(wd.path(prev, "ppm", "hf"))
