"""Settings of a self-evolution run (configs/demo.yaml and friends)."""

from __future__ import annotations

import dataclasses

from rstar_jax.domain.bootstrap import TIER_ERROR_RATES, tier_error_rates
from rstar_jax.evolve.evaluate import EvalConfig
from rstar_jax.evolve.schedule import RoundSettings, resolve_all
from rstar_jax.search.config import SearchConfig
from rstar_jax.train.config import CopyWarmupConfig, RewardConfig, SFTConfig
from rstar_jax.train.examples import ExtractConfig


@dataclasses.dataclass(frozen=True)
class BaseModelSpec:
    """init:      HF folder of a pretrained base model; None trains from scratch.
    tokenizer: HF tokenizer folder (default: the one in ``init``, or a new domain tokenizer).
    The size fields apply only when training from scratch.
    tie_word_embeddings: share the input embedding and the LM head (as small Qwen2 models do).
    copy_warmup: train a from-scratch model to copy before it is saved (``steps: 0`` skips it)."""

    init: str | None = None
    tokenizer: str | None = None
    dtype: str = "float32"
    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    copy_warmup: CopyWarmupConfig = CopyWarmupConfig()


@dataclasses.dataclass(frozen=True)
class DomainConfig:
    """Problems: ``train_file``/``test_file`` (any file ``rstar_jax.data`` reads: GSM8K, MATH,
    NuminaMath-style ``problem``/``solution``, the rStar evaluation sets) or, when unset, the
    synthetic domain. Training problems without a checkable gold answer are skipped and counted.

    train_limit: read ``train_file`` only up to its N-th problem with an answer (0 = all).
    n_train_per_tier: one count for every tier, or a list with one per tier.
    eval_tier / eval_limit pick the held-out problems evaluated each round (tier None = all, and
    problems without a tier, e.g. from a test file, are never filtered out; limit 0 = all)."""

    train_file: str | None = None
    train_limit: int = 0
    test_file: str | None = None
    n_train_per_tier: int | tuple[int, ...] = 200
    n_test_per_tier: int = 50
    tiers: tuple[int, ...] = (1, 2, 3)
    eval_tier: int | None = 3
    eval_limit: int = 0


@dataclasses.dataclass(frozen=True)
class EvolveConfig:
    """rounds:                 self-evolution rounds.
    schedule:               per-round settings (``evolve.schedule.RoundSettings``: policy, few-shot
                            prompt, search overrides, which problems, SFT/PPM overrides); rounds past
                            its end use the defaults below. configs/paper.yaml writes down the paper's.
    bootstrap_error_rates:  per-tier total step error rate of the scripted bootstrap proposer.
    bootstrap_search:       round 1's default search (terminal-guided, gold rewards).
    policy_search:          later rounds' default search (policy + PPM, gold rewards).
    policy_search_limit:    rounds >= 2 search at most this many training problems (0 = all), those
                            with the fewest solutions in the previous round's data first (a laptop
                            budget spent where the previous round failed).
    final_extra_rollouts:   last round: extra rollouts for problems still unsolved.
    search_shards:          hash shards of a round's search problems (0: one per process); shard s runs
                            on process s mod N, so for a fixed count the trees are the same for any N.
    policy_init:            "base": each round's policy is trained again from the base model (the
                            paper); "previous": it continues from the previous round's policy (for
                            small compute budgets, where retraining from scratch each round wastes it).
    accumulate_data:        a round's training data also keeps the previous round's examples and
                            pairs for problems this round's search did not cover (the data only grows;
                            False = each round trains on its own trees alone, as in the paper)."""

    seed: int = 0
    rounds: int = 3
    schedule: tuple[RoundSettings, ...] = ()
    domain: DomainConfig = DomainConfig()
    model: BaseModelSpec = BaseModelSpec()
    bootstrap_error_rates: tuple[float, ...] = TIER_ERROR_RATES
    bootstrap_search: SearchConfig = SearchConfig(rollouts=8, candidates=5, temperature=0.7, error_threshold=2)
    policy_search: SearchConfig = SearchConfig(
        rollouts=16, candidates=8, temperature=1.0, mode="ppm", reward="gold", error_threshold=1
    )
    policy_search_limit: int = 0
    final_extra_rollouts: int = 0
    search_shards: int = 0
    policy_init: str = "base"
    accumulate_data: bool = True
    extract: ExtractConfig = ExtractConfig()
    sft: SFTConfig = SFTConfig()
    ppm: RewardConfig = RewardConfig()
    eval: EvalConfig = EvalConfig()

    def __post_init__(self):
        if self.policy_init not in ("base", "previous"):
            raise ValueError(f"policy_init must be 'base' or 'previous', got {self.policy_init!r}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        resolve_all(self)  # every round's settings fit together

    def bootstrap_kwargs(self) -> dict:
        return {"error_rates": tier_error_rates(self.bootstrap_error_rates), "seed": self.seed}
