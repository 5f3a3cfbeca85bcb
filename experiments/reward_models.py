"""Ablation 2: reward models. A PPM (pairwise Bradley-Terry), a PQM (Q-value regression) and an
ORM (outcome labels of whole solutions) are trained on the same search trees, from the same init
(the round's policy), with the same settings; each then guides the same PPM-mode MCTS (same policy,
same seed) on the held-out problems. Reported per reward model: pairwise accuracy on the pairs of
held-out trees (a share of the tree problems that have pairs, kept out of training; step pairs,
final-answer pairs and all), and the MCTS end accuracy.

rStar-Math reward-model ablation (MATH / AIME 2024): ORM 82.6 / 26.7 (best-of-N), Q-value
regression 88.2 / 46.7, PPM 89.4 / 50.0. Here all three guide the same MCTS, so only the reward
model differs.

With --run: the trees of rounds 1..R (R = --round, default the last: what round R's PPM was
trained on), round R's policy, the run's held-out problems and its ppm / extract / eval.mcts
settings (changed with --set).

    python experiments/reward_models.py --run runs/demo --out runs/ablations/reward_models
    python experiments/reward_models.py --policy POLICY_HF --trees TREES.jsonl --data test.jsonl \\
        --config configs/demo.yaml --out runs/ablations/reward_models
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    add_config_args,
    add_io_args,
    bar_plot,
    held_out_problems,
    last_round,
    mcts_eval,
    run_config,
    train_fresh,
    write_outputs,
)

QUICK = (
    "ppm.steps=2",
    "ppm.batch_size=4",
    "eval.mcts.rollouts=1",
    "eval.mcts.candidates=2",
    "eval.mcts.max_step_tokens=24",
    "eval.mcts.max_depth=6",
)
LABELS = {"ppm": "PPM (pairwise)", "pqm": "PQM (Q regression)", "orm": "ORM (outcome)"}


def split_pairs(groups, fraction: float, seed: int) -> tuple[list, list]:
    """(train, held-out) pair groups: ``fraction`` of the problems that have pairs are held out.
    The training side must keep a final-answer group, or there is nothing to train an ORM on."""
    ids = sorted({g.problem_id for g in groups})
    n = int(np.ceil(fraction * len(ids)))
    held = set(np.random.default_rng(seed).permutation(ids)[:n].tolist())
    train = [g for g in groups if g.problem_id not in held]
    if n < 1 or not any(g.kind == "final" for g in train):
        raise SystemExit(
            f"too few pairs to hold some out: {len(groups)} groups over {len(ids)} problems "
            f"({fraction:.0%} held out); search more problems or rollouts"
        )
    return train, [g for g in groups if g.problem_id in held]


def pair_accuracy(engine, groups) -> dict:
    """Share of (pos, neg) pairs the model scores pos > neg, over step, final and all pairs.
    Texts longer than the model's context are left out (and counted)."""
    texts = sorted({g.prompt + g.prefix + c.text for g in groups for c in g.pos + g.neg})
    fits = [t for t in texts if len(engine.encode(t)) <= engine.max_len]
    score = dict(zip(fits, np.asarray(engine.score(fits), np.float64)))
    wins: dict[str, list[bool]] = {"step": [], "final": []}
    for g in groups:
        for i, j in g.pairs:
            pos, neg = (g.prompt + g.prefix + c.text for c in (g.pos[i], g.neg[j]))
            if pos in score and neg in score:
                wins[g.kind].append(bool(score[pos] > score[neg]))
    mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
    return {
        "all": mean(wins["step"] + wins["final"]),
        "step": mean(wins["step"]),
        "final": mean(wins["final"]),
        "pairs": len(wins["step"]) + len(wins["final"]),
        "texts_too_long": len(texts) - len(fits),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(p, models=("policy",))
    add_config_args(p)
    p.add_argument(
        "--trees",
        nargs="*",
        help="tree record files/folders the reward models are trained on (default: the run's searches of rounds 1..R)",
    )
    p.add_argument(
        "--round", type=int, help="with --run: trees up to this round, and its policy (default: the last round)"
    )
    p.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.2,
        help="share of the tree problems with pairs whose pairs are held out for pairwise accuracy",
    )
    p.add_argument("--kinds", default="ppm,pqm,orm", help="reward models to compare")
    args = p.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 2

    from rstar_jax.evolve.loading import load_proposer
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.loading import load_scorer
    from rstar_jax.train.api import train_reward_folder
    from rstar_jax.train.examples import extract, load_trees, write_pairs
    from rstar_jax.train.reward import KINDS

    kinds = args.kinds.split(",")
    if set(kinds) - set(KINDS) or not kinds:
        raise SystemExit(f"--kinds must be a subset of {','.join(KINDS)}, got {args.kinds!r}")
    r = args.round or (last_round(args.run) if args.run else None)
    policy = args.policy or (args.run and os.path.join(args.run, f"round{r}", "policy", "hf"))
    trees = args.trees or (args.run and [os.path.join(args.run, f"round{k}", "search") for k in range(1, r + 1)])
    if not (policy and trees):
        raise SystemExit("give --run, or --policy, --trees and --data")
    cfg = run_config(args, QUICK)
    problems = held_out_problems(args)

    _, groups, stats = extract(load_trees(trees), cfg.extract)
    train, held = split_pairs(groups, args.heldout_fraction, args.seed)
    pairs_file = os.path.join(args.out, "data", "train_pairs.jsonl")
    write_pairs(train, pairs_file)
    rm_cfg = dataclasses.replace(cfg.ppm, eval_fraction=0.0)  # held out above, the same pairs for every kind
    search_cfg = cfg.eval.mcts.replace(mode="ppm", reward="ppm", seed=args.seed)
    result = {
        "kinds": kinds,
        "problems": len(problems),
        "tree_problems": stats["problems"],
        "train_pairs": sum(len(g.pairs) for g in train),
        "heldout_pairs": sum(len(g.pairs) for g in held),
        "models": {},
    }
    proposer = load_proposer(policy, problems, search_cfg)
    with Sandbox() as sandbox:
        for kind in kinds:
            hf = train_fresh(
                train_reward_folder,
                pairs_file,
                policy,
                os.path.join(args.out, "models", kind),
                rm_cfg,
                args.seed,
                kind=kind,
            )
            scorer = load_scorer(hf)
            result["models"][kind] = {
                "pair_acc": pair_accuracy(scorer.engine, held),
                "mcts": mcts_eval(proposer, scorer, problems, search_cfg, sandbox),
            }

    rows = [
        [
            LABELS[k],
            m["pair_acc"]["step"],
            m["pair_acc"]["final"],
            m["pair_acc"]["all"],
            m["mcts"]["acc"],
            m["mcts"]["tokens"],
        ]
        for k, m in result["models"].items()
    ]
    notes = [
        f"Reward models trained on {result['train_pairs']} pairs from {', '.join(trees)}; pairwise accuracy "
        f"on {result['heldout_pairs']} pairs of held-out tree problems; MCTS on {len(problems)} held-out "
        f"problems ({search_cfg.rollouts} rollouts, {search_cfg.candidates} candidates). '-': no such pairs."
    ]
    write_outputs(
        args.out,
        "reward_models",
        "Reward models: PPM vs PQM vs ORM",
        ["reward model", "step pair acc", "final pair acc", "all pair acc", "MCTS acc", "MCTS tokens"],
        rows,
        result,
        args,
        notes,
    )
    bar_plot(
        os.path.join(args.out, "reward_models.png"),
        "Reward models guiding the same MCTS",
        ["held-out pair acc", "MCTS accuracy"],
        {LABELS[k]: [m["pair_acc"]["all"], m["mcts"]["acc"]] for k, m in result["models"].items()},
    )
    return result


if __name__ == "__main__":
    main()
