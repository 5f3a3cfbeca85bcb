"""Ablation 1: accuracy against the number of trajectories for PPM-guided MCTS, best-of-N with an
ORM (the PPM's score of the full solution) and self-consistency, also plotted against generated
tokens so the methods are compared at matched budget (rStar-Math Fig. 5 in spirit).

MCTS with n rollouts yields about n trajectories; the chains are sampled once at the largest n
and the first n chains of each problem give the n-chain result (nested subsets). Sampling and
search settings are the run's test-time ones (``eval.mcts`` and ``eval.chain_temperature`` of its
config; ``--set`` overrides).

    python experiments/test_time_scaling.py --run runs/demo --out runs/ablations/scaling
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_config_args, add_io_args, resolve_inputs, run_config, write_outputs  # noqa: E402


def first_chains(record, n: int):
    """The record restricted to its first ``n`` chains (chains hang off the root in sample order)."""
    from rstar_jax.search.records import TreeRecord

    starts = [node.index for node in record.nodes if node.parent == 0][:n]
    keep, owner = set([0]), {}
    for node in record.nodes[1:]:
        owner[node.index] = node.index if node.parent == 0 else owner[node.parent]
        if owner[node.index] in starts:
            keep.add(node.index)
    return TreeRecord(
        record.problem_id,
        record.question,
        record.gold,
        [node for node in record.nodes if node.index in keep],
        record.meta,
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(p)
    add_config_args(p)
    p.add_argument("--budgets", default="1,2,4,8,16,32,64", help="numbers of trajectories")
    p.add_argument(
        "--seeds",
        help="comma-separated search seeds (default: --seed): accuracies are "
        "averaged over them, with each seed's in the JSON and the plot's band",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.budgets, args.limit = "1,2", args.limit or 3

    policy, ppm, problems = resolve_inputs(args)
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    per_seed = [_one_seed(args, policy, ppm, problems, budgets, seed) for seed in seeds]
    result = {"budgets": budgets, "problems": len(problems), "seeds": seeds, "per_seed": per_seed}
    for m in ("mcts", "bon", "sc"):  # the mean over seeds, per budget
        result[m] = []
        for i, b in enumerate(budgets):
            accs = [r[m][i]["acc"] for r in per_seed]
            result[m].append(
                {
                    "n": b,
                    "acc": float(np.mean(accs)),
                    "acc_min": min(accs),
                    "acc_max": max(accs),
                    "tokens": float(np.mean([r[m][i]["tokens"] for r in per_seed])),
                }
            )
    rows = [
        [b, *(result[m][i][k] for m in ("mcts", "bon", "sc") for k in ("acc", "tokens"))] for i, b in enumerate(budgets)
    ]
    header = ["trajectories", "MCTS+PPM acc", "MCTS tokens", "BoN+ORM acc", "BoN tokens", "SC acc", "SC tokens"]
    notes = (
        []
        if len(seeds) == 1
        else [f"Means over seeds {seeds}; accuracy per seed (MCTS+PPM / BoN+ORM / SC):", ""]
        + [
            f"- {b} trajectories: "
            + " / ".join(" ".join(f"{r[m][i]['acc']:.2f}" for r in per_seed) for m in ("mcts", "bon", "sc"))
            for i, b in enumerate(budgets)
        ]
    )
    write_outputs(args.out, "test_time_scaling", "Test-time scaling", header, rows, result, args, notes)
    _plot(result, os.path.join(args.out, "test_time_scaling.png"))
    return result


def _one_seed(args, policy, ppm, problems, budgets, seed) -> dict:
    """Accuracy and tokens per budget for one search seed: MCTS with b rollouts, and the first b
    of max(budgets) chains for best-of-N and self-consistency."""
    from rstar_jax.evolve.loading import load_proposer
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.answers import accuracy
    from rstar_jax.search.baselines import run_chains
    from rstar_jax.search.loading import load_scorer
    from rstar_jax.search.mcts import run_mcts

    ev = run_config(args).eval
    cfg = ev.mcts.replace(mode="ppm", reward="ppm", seed=seed)
    proposer, scorer = load_proposer(policy, problems, cfg), load_scorer(ppm)
    n = len(problems)
    result = {"seed": seed, "mcts": [], "bon": [], "sc": []}
    with Sandbox() as sandbox:
        chains, _ = run_chains(
            problems,
            proposer,
            sandbox,
            cfg.replace(temperature=ev.chain_temperature),
            max(budgets),
            scorer,
            gold=False,
            progress=False,
        )
        for b in budgets:
            recs, st = run_mcts(problems, proposer, sandbox, cfg.replace(rollouts=b), scorer, progress=False)
            sub = [first_chains(r, b) for r in chains]
            chain_tokens = sum(node.num_tokens for r in sub for node in r.nodes) / n
            result["mcts"].append({"n": b, "acc": accuracy(recs, "best"), "tokens": st.tokens / n})
            result["bon"].append({"n": b, "acc": accuracy(sub, "best"), "tokens": chain_tokens})
            result["sc"].append({"n": b, "acc": accuracy(sub, "majority"), "tokens": chain_tokens})
    return result


def _plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, label in (("mcts", "MCTS+PPM"), ("bon", "best-of-N+ORM"), ("sc", "self-consistency")):
        pts = result[method]
        for ax, x in ((axes[0], [q["n"] for q in pts]), (axes[1], [q["tokens"] for q in pts])):
            (line,) = ax.plot(x, [100 * q["acc"] for q in pts], marker="o", label=label)
            if len(result["seeds"]) > 1:  # the seeds' range around their mean
                ax.fill_between(
                    x,
                    [100 * q["acc_min"] for q in pts],
                    [100 * q["acc_max"] for q in pts],
                    color=line.get_color(),
                    alpha=0.15,
                )
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("trajectories per problem")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("generated tokens per problem")
    for ax in axes:
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
