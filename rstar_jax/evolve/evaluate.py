"""Evaluate a policy (+ PPM) on a problem set with every method at matched budget.

greedy: one temperature-0 chain.  mcts: PPM-guided MCTS, best-scored answer.
bon: best-of-N chains by the ORM score (the PPM's score of the full solution).
sc: self-consistency, majority answer of the same N chains.  beam: step-level beam.
N is chosen so the chains generate about as many tokens as MCTS did.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

from rstar_jax.errors import UserError
from rstar_jax.search.answers import is_solved
from rstar_jax.search.config import SearchConfig

METHODS = ("greedy", "mcts", "bon", "sc", "beam")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """mcts:         test-time search settings (PPM mode, reward = the PPM score).
    n_chains:     chains for best-of-N / self-consistency; 0 = match MCTS's generated tokens.
    methods:      which of greedy, mcts, bon, sc, beam to run.
    beam_width:   beams kept per step (K = mcts.candidates candidates per beam)."""

    mcts: SearchConfig = SearchConfig(
        rollouts=8, candidates=4, temperature=1.0, mode="ppm", reward="ppm", error_threshold=1
    )
    chain_temperature: float = 1.0
    n_chains: int = 0
    max_chains: int = 64
    methods: tuple[str, ...] = ("greedy", "mcts", "bon", "sc")
    beam_width: int = 2
    top_k: int | None = None


def check_methods(cfg: EvalConfig, has_scorer: bool) -> None:
    """Refuse unknown methods, and methods that need a reward model when there is none."""
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise UserError(f"unknown eval methods {sorted(unknown)}; choose from {METHODS}")
    if not has_scorer and {"mcts", "bon", "beam"} & set(cfg.methods):
        raise UserError("mcts, bon and beam need a reward model (--ppm)")


def evaluate(
    proposer,
    scorer,
    problems: Sequence,
    cfg: EvalConfig,
    seed: int = 0,
    out_dir: str | None = None,
    sandbox=None,
    progress: bool = True,
) -> dict:
    """Accuracy (and solved count, ``correct``), generated tokens per problem and wall seconds per
    method; writes each method's records if ``out_dir``.

    sandbox: the executor to run steps with (default: a new ``Sandbox``), e.g. one shared
             across calls, or ``search.expand.NoExecution`` for steps that are not code.
    """
    import contextlib

    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search import run_beam, run_chains, run_mcts
    from rstar_jax.search.records import write_records

    check_methods(cfg, scorer is not None)
    base = cfg.mcts.replace(seed=seed)
    n = max(len(problems), 1)
    out: dict = {"problems": len(problems), "tokens": {}, "seconds": {}, "correct": {}}
    with contextlib.nullcontext(sandbox) if sandbox is not None else Sandbox() as sandbox:

        def score(key, recs, how, top_k=None):
            out["correct"][key] = sum(is_solved(r, how, top_k) for r in recs)
            out[key] = out["correct"][key] / n

        def cost(method, st):
            out["tokens"][method], out["seconds"][method] = st.tokens / n, st.seconds

        def save(name, records):
            if out_dir:
                write_records(os.path.join(out_dir, f"{name}.jsonl"), records)

        if "greedy" in cfg.methods:
            recs, st = run_chains(
                problems, proposer, sandbox, base.replace(temperature=0.0), 1, None, gold=False, progress=progress
            )
            score("policy_greedy_acc", recs, "best")
            cost("greedy", st)
            save("greedy", recs)
        if "mcts" in cfg.methods:
            recs, st = run_mcts(problems, proposer, sandbox, base, scorer, progress=progress)
            score("mcts_ppm_acc", recs, "best", cfg.top_k)
            score("mcts_ppm_majority_acc", recs, "majority", cfg.top_k)
            score("mcts_ppm_weighted_acc", recs, "weighted", cfg.top_k)
            cost("mcts", st)
            save("mcts", recs)
        if {"bon", "sc"} & set(cfg.methods):
            chains = cfg.n_chains or _matched_chains(out["tokens"], cfg.max_chains)
            recs, st = run_chains(
                problems,
                proposer,
                sandbox,
                base.replace(temperature=cfg.chain_temperature),
                chains,
                scorer if "bon" in cfg.methods else None,
                gold=False,
                progress=progress,
            )
            out["n_chains"] = chains
            if "bon" in cfg.methods:
                score("bon_orm_acc", recs, "best")
                cost("bon", st)
            if "sc" in cfg.methods:
                score("sc_acc", recs, "majority")
                cost("sc", st)
            save("chains", recs)
        if "beam" in cfg.methods:
            recs, st = run_beam(
                problems, proposer, sandbox, base, cfg.beam_width, scorer, gold=False, progress=progress
            )
            score("beam_acc", recs, "best")
            cost("beam", st)
            save("beam", recs)
    return out


def _matched_chains(tokens: dict, cap: int) -> int:
    """Chains whose expected tokens match MCTS's: MCTS tokens / one greedy chain's tokens."""
    if "mcts" in tokens and tokens.get("greedy"):
        return int(min(cap, max(1, round(tokens["mcts"] / tokens["greedy"]))))
    return 8


def evaluate_round(
    policy_dir: str, ppm_dir: str | None, problems: Sequence, cfg: EvalConfig, out_dir: str, seed: int = 0
) -> dict:
    """Load a round's checkpoints and evaluate them; metrics also go to ``out_dir/metrics.json``."""
    from rstar_jax.search.loading import load_policy, load_scorer

    proposer = load_policy(policy_dir, cfg.mcts)
    scorer = load_scorer(ppm_dir, policy_dir, cfg.mcts) if ppm_dir else None
    metrics = evaluate(proposer, scorer, problems, cfg, seed, out_dir)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics
