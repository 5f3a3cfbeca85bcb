"""Proposers and scorers by name: an HF folder, or the synthetic domain's scripted bootstrap."""

from __future__ import annotations

from typing import Sequence

from rstar_jax.data.fewshot import load_few_shot
from rstar_jax.domain.bootstrap import BootstrapProposer
from rstar_jax.errors import UserError
from rstar_jax.evolve.config import EvolveConfig
from rstar_jax.evolve.schedule import BOOTSTRAP, PREVIOUS, Round
from rstar_jax.evolve.workdir import WorkDir
from rstar_jax.search.config import SearchConfig
from rstar_jax.search.loading import load_policy, load_scorer
from rstar_jax.search.proposers import PPMScorer
from rstar_jax.search.types import Proposer

__all__ = ["BOOTSTRAP", "load_proposer", "round_searchers"]


def load_proposer(
    policy: str,
    problems: Sequence,
    cfg: SearchConfig,
    bootstrap_kwargs: dict | None = None,
    few_shot: str | None = None,
) -> Proposer:
    """``policy`` is an HF folder (with tokenizer) or ``"bootstrap"`` (synthetic problems only).
    few_shot: "builtin" or a JSON file of demonstrations put before each prompt (HF folders only)."""
    if policy == BOOTSTRAP:
        if few_shot:
            raise UserError("the scripted bootstrap proposer takes no few-shot prompt")
        return BootstrapProposer(list(problems), **(bootstrap_kwargs or {}))
    return load_policy(policy, cfg, prompt_prefix=load_few_shot(few_shot) if few_shot else "")


def round_searchers(
    cfg: EvolveConfig, wd: WorkDir, rnd: Round, problems: Sequence
) -> tuple[Proposer, PPMScorer | None]:
    """(proposer, scorer) of a self-evolution round: its policy (the scripted bootstrap, an HF folder
    or round r-1's policy) and, in PPM mode, round r-1's PPM."""
    prev = f"round{rnd.index - 1}"
    policy = wd.path(prev, "policy", "hf") if rnd.policy == PREVIOUS else rnd.policy
    proposer = load_proposer(policy, problems, rnd.search, cfg.bootstrap_kwargs(), rnd.few_shot)
    if not rnd.uses_ppm:
        return proposer, None
    if not wd.done(f"{prev}/ppm"):
        raise UserError(
            f"schedule[{rnd.index - 1}]: PPM mode needs round {rnd.index - 1}'s PPM, but that round found no "
            "preference pairs to train one; search this round with search.mode=terminal"
        )
    return proposer, load_scorer(wd.path(prev, "ppm", "hf"), None if policy == BOOTSTRAP else policy, rnd.search)
