"""Per-round settings of self-evolution (docs/DESIGN.md §9): who proposes steps, how the search runs,
which training problems it searches, and how the round's models are trained.

``EvolveConfig.schedule`` lists one ``RoundSettings`` per round; a round past the list's end (or a run
without a schedule) takes the run-wide defaults: round 1 the scripted bootstrap proposer with
``bootstrap_search``, later rounds the previous round's policy + PPM with ``policy_search`` (the
``policy_search_limit`` problems with the fewest solutions so far, ``final_extra_rollouts`` in the last
round). ``resolve(cfg, r)`` turns either into the ``Round`` the driver runs.
"""

from __future__ import annotations

import dataclasses

from rstar_jax.config import ConfigError, from_dict
from rstar_jax.search.config import SearchConfig
from rstar_jax.train.config import RewardConfig, SFTConfig

BOOTSTRAP = "bootstrap"  # the synthetic domain's scripted proposer
PREVIOUS = "previous"  # round r-1's trained policy (and its PPM in PPM mode)
PROBLEM_CHOICES = ("all", "unsolved", "solve_rate")
FEW_SHOT_BUILTIN = "builtin"


@dataclasses.dataclass(frozen=True)
class RoundSettings:
    """One round of ``EvolveConfig.schedule``.

    policy:         "bootstrap" (scripted proposer, synthetic problems only), "previous" (round r-1's
                    policy) or a local HF folder with its tokenizer (e.g. a large instruct model, as the
                    paper's round 1). "auto": bootstrap in round 1, previous after.
    few_shot:       prompt the policy with demonstrations of the step format first: "builtin" (ours,
                    ``rstar_jax.data.fewshot``), a JSON file of the same shape, or null (the plain prompt
                    a policy trained on the step format reads).
    search:         overrides of the round's default search settings (``bootstrap_search`` in round 1,
                    ``policy_search`` after): mode, rollouts, candidates, max_depth, temperature,
                    extra_rollouts_if_unsolved, ... ``mode: ppm`` scores with round r-1's PPM.
    problems:       which training problems to search: "all"; "unsolved" (no correct solution in round
                    r-1's data); "solve_rate" (round r-1's share of correct answers in the problem's
                    tree at most ``max_solve_rate``; problems it did not search count as unsolved
                    unless round r-1's data holds a solution).
    problem_limit:  at most this many of them (0 = all), those with the fewest solutions in round r-1's
                    data first, ties in a seeded order (round 1: a seeded sample).
    sft, ppm:       overrides of the run's ``sft`` / ``ppm`` training settings for this round."""

    policy: str = "auto"
    few_shot: str | None = None
    search: dict = dataclasses.field(default_factory=dict)
    problems: str = "all"
    max_solve_rate: float = 0.0
    problem_limit: int = 0
    sft: dict = dataclasses.field(default_factory=dict)
    ppm: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.problems not in PROBLEM_CHOICES:
            raise ValueError(f"problems must be one of {PROBLEM_CHOICES}, got {self.problems!r}")
        if self.problem_limit < 0:
            raise ValueError(f"problem_limit must be >= 0, got {self.problem_limit}")
        if not 0.0 <= self.max_solve_rate <= 1.0:
            raise ValueError(f"max_solve_rate must lie in [0, 1], got {self.max_solve_rate}")


@dataclasses.dataclass(frozen=True)
class Round:
    """Round r's settings, every default filled in (what the driver runs)."""

    index: int
    policy: str  # "bootstrap", "previous" or an HF folder
    few_shot: str | None
    search: SearchConfig
    problems: str
    max_solve_rate: float
    problem_limit: int
    sft: SFTConfig
    ppm: RewardConfig

    @property
    def uses_ppm(self) -> bool:
        return self.search.mode == "ppm"


def _merged(cls, base, overrides: dict, where: str):
    """``base`` (a dataclass) with ``overrides`` applied, type-checked like a config file."""
    return from_dict(cls, {**dataclasses.asdict(base), **overrides}, where) if overrides else base


def resolve(cfg, r: int) -> Round:
    """Round r (1-based) of the run ``cfg`` (an ``EvolveConfig``); raises ``ConfigError`` naming the
    schedule entry when its settings do not fit together."""
    where = f"schedule[{r - 1}]"
    entry = cfg.schedule[r - 1] if r <= len(cfg.schedule) else None
    s = entry or RoundSettings(problem_limit=cfg.policy_search_limit if r > 1 else 0)
    policy = s.policy if s.policy != "auto" else (BOOTSTRAP if r == 1 else PREVIOUS)
    if policy == PREVIOUS and r == 1:
        raise ConfigError(f"{where}.policy: round 1 has no previous round; use 'bootstrap' or an HF folder")
    search = _merged(SearchConfig, cfg.bootstrap_search if r == 1 else cfg.policy_search, s.search, where)
    if entry is None and r == cfg.rounds and r > 1 and cfg.final_extra_rollouts:
        search = search.replace(extra_rollouts_if_unsolved=cfg.final_extra_rollouts)
    if s.problems != "all" and r == 1:
        raise ConfigError(f"{where}.problems: round 1 has no previous round to select by; use problems: all")
    if search.mode == "ppm" and r == 1:
        raise ConfigError(f"{where}.search.mode: round 1 has no PPM to search with; use mode: terminal")
    if search.reward != "gold":
        raise ConfigError(f"{where}.search.reward: self-evolution grades against the gold answers (reward: gold)")
    if policy == BOOTSTRAP and s.few_shot:
        raise ConfigError(f"{where}.few_shot: the scripted bootstrap proposer takes no prompt")
    return Round(
        index=r,
        policy=policy,
        few_shot=s.few_shot,
        search=search.replace(seed=cfg.seed * 1000 + r),
        problems=s.problems,
        max_solve_rate=s.max_solve_rate,
        problem_limit=s.problem_limit,
        sft=_merged(SFTConfig, cfg.sft, s.sft, f"{where}.sft"),
        ppm=_merged(RewardConfig, cfg.ppm, s.ppm, f"{where}.ppm"),
    )


def resolve_all(cfg) -> list[Round]:
    """Every round of the run (validates the whole schedule before anything runs)."""
    return [resolve(cfg, r) for r in range(1, cfg.rounds + 1)]
