"""Ablation 3: where the SFT data comes from. Step-verified MCTS trajectories (the standard
extraction: per problem the top correct trajectories by mean/min Q with every step's code run)
against rejection sampling (independent chains of the same generator on the same problems, kept
when the final answer is right, nothing else checked), at the same number of examples. A policy
is trained on each from the same base model with the same SFT settings and evaluated on the
held-out problems: greedy (policy only) and, with --mcts, PPM-guided MCTS with one shared PPM.

rStar-Math ablation (MATH, policy only): 78.4 with step-by-step verified trajectories vs 73.4
with rejection-sampled ones.

With --run: round R's trees (R = --round, default 1, whose generator is the scripted bootstrap
proposer; R > 1: round R-1's policy), the run's base model, held-out problems, last-round PPM and
its settings (the chains use round R's search settings; change any with --set). Rejection
sampling draws --chains chains per problem (default rollouts x candidates of that search).

    python experiments/sft_source.py --run runs/demo --out runs/ablations/sft_source --mcts
    python experiments/sft_source.py --trees TREES.jsonl --generator POLICY_HF --round 2 --base BASE_HF \\
        --data test.jsonl --config configs/demo.yaml --out runs/ablations/sft_source
"""

from __future__ import annotations

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    add_config_args,
    add_io_args,
    bar_plot,
    greedy_eval,
    held_out_problems,
    last_round,
    mcts_eval,
    run_config,
    train_fresh,
    write_outputs,
)

QUICK = (
    "sft.steps=2",
    "sft.batch_size=4",
    "eval.mcts.rollouts=1",
    "eval.mcts.candidates=2",
    "eval.mcts.max_step_tokens=24",
    "eval.mcts.max_depth=6",
)
SOURCES = {"mcts": "MCTS, step-verified", "rejection": "rejection sampling"}


def rejection_examples(records, per_problem: int) -> list:
    """Per problem, the first ``per_problem`` distinct chains whose final answer is correct."""
    from rstar_jax.search.records import mean_q, min_q, path_to
    from rstar_jax.steps import build_prompt
    from rstar_jax.train.examples import SFTExample

    out = []
    for rec in records:
        seen: set[str] = set()
        for node in rec.nodes:
            if node.correct and len(seen) < per_problem:
                path = path_to(rec, node.index)
                text = "".join(rec.nodes[i].text for i in path)
                if text not in seen:
                    seen.add(text)
                    out.append(
                        SFTExample(
                            rec.problem_id,
                            build_prompt(rec.question),
                            text,
                            mean_q(rec, path),
                            min_q(rec, path),
                            tuple(path),
                        )
                    )
    return out


def data_stats(examples, records) -> dict:
    """Examples, problems covered, and the share of examples with a step whose code failed."""
    nodes = {r.problem_id: r.nodes for r in records}
    failed = sum(any(not nodes[e.problem_id][i].valid for i in e.nodes) for e in examples)
    return {
        "examples": len(examples),
        "problems": len({e.problem_id for e in examples}),
        "with_failed_steps": failed / max(len(examples), 1),
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(p, models=("base", "ppm"))
    add_config_args(p)
    p.add_argument("--trees", nargs="*", help="tree records of the MCTS data (default: the run's round R search)")
    p.add_argument(
        "--generator",
        help="what searched the trees, for the rejection-sampling chains: a policy "
        "HF folder or 'bootstrap' (default with --run: round R's searcher)",
    )
    p.add_argument("--round", type=int, default=1, help="the round whose search made the trees (its settings)")
    p.add_argument("--chains", type=int, help="rejection-sampling chains per problem (default: rollouts x candidates)")
    p.add_argument("--mcts", action="store_true", help="also evaluate each policy with MCTS guided by the PPM")
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.chains = args.limit or 2, args.chains or 4

    from rstar_jax.data.problems import Problem
    from rstar_jax.evolve.driver import round_search_config
    from rstar_jax.evolve.loading import BOOTSTRAP, load_proposer
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.baselines import run_chains
    from rstar_jax.search.loading import load_scorer
    from rstar_jax.search.records import write_records
    from rstar_jax.train.api import train_policy_folder
    from rstar_jax.train.examples import extract, load_trees, write_sft

    r, run = args.round, args.run
    base = args.base or (run and os.path.join(run, "base"))
    trees = args.trees or (run and [os.path.join(run, f"round{r}", "search")])
    searcher = BOOTSTRAP if r == 1 else os.path.join(str(run), f"round{r - 1}", "policy", "hf")
    generator = args.generator or (run and searcher)
    ppm = args.ppm or (run and args.mcts and os.path.join(run, f"round{last_round(run)}", "ppm", "hf"))
    if not (base and trees and generator and (ppm or not args.mcts)):
        raise SystemExit("give --run, or --trees, --generator, --base and --data (and --ppm with --mcts)")
    cfg = run_config(args, QUICK)
    scfg = round_search_config(cfg, r)
    eval_cfg = cfg.eval.mcts.replace(seed=args.seed)
    problems = held_out_problems(args)

    records = load_trees(trees)
    train = [Problem(rec.problem_id, rec.question, rec.gold, rec.meta.get("problem_meta", {})) for rec in records]
    chains = args.chains or scfg.rollouts * scfg.candidates
    data_dir = os.path.join(args.out, "data")
    with Sandbox() as sandbox:
        gen = load_proposer(generator, train, scfg, cfg.bootstrap_kwargs())
        sampled, st = run_chains(train, gen, sandbox, scfg, chains, gold=True, progress=False)
        write_records(os.path.join(data_dir, "rejection_trees.jsonl"), sampled)
        examples = {
            "mcts": extract(records, cfg.extract)[0],
            "rejection": rejection_examples(sampled, cfg.extract.sft_per_problem),
        }
        n = min(len(x) for x in examples.values())
        if n == 0:
            raise SystemExit(f"a source has no correct solution: { {k: len(x) for k, x in examples.items()} }")
        rng = random.Random(args.seed)  # the same number of examples from each source
        examples = {k: [x[i] for i in sorted(rng.sample(range(len(x)), n))] for k, x in examples.items()}
        tokens = {
            "mcts": sum(nd.num_tokens for rec in records for nd in rec.nodes) / len(records),
            "rejection": st.tokens / len(train),
        }
        scorer = load_scorer(ppm) if args.mcts else None
        result = {"problems": len(problems), "train_problems": len(train), "chains": chains, "sources": {}}
        for src, exs in examples.items():
            write_sft(exs, os.path.join(data_dir, f"sft_{src}.jsonl"))
            hf = train_fresh(
                train_policy_folder,
                os.path.join(data_dir, f"sft_{src}.jsonl"),
                base,
                os.path.join(args.out, "models", src),
                cfg.sft,
                args.seed,
            )
            proposer = load_proposer(hf, problems, eval_cfg)
            result["sources"][src] = {
                "data": {**data_stats(exs, records if src == "mcts" else sampled), "gen_tokens": tokens[src]},
                "greedy": greedy_eval(proposer, problems, eval_cfg, sandbox),
                "mcts": mcts_eval(proposer, scorer, problems, eval_cfg, sandbox) if scorer else None,
            }

    rows = [
        [
            SOURCES[k],
            s["data"]["examples"],
            s["data"]["problems"],
            s["data"]["with_failed_steps"],
            s["data"]["gen_tokens"],
            s["greedy"]["acc"],
            s["mcts"] and s["mcts"]["acc"],
        ]
        for k, s in result["sources"].items()
    ]
    notes = [
        f"{len(train)} training problems ({chains} rejection-sampling chains each); policies trained from "
        f"{base}; evaluated on {len(problems)} held-out problems. Generation tokens: per training problem."
    ]
    write_outputs(
        args.out,
        "sft_source",
        "SFT data: step-verified MCTS trajectories vs rejection sampling",
        ["source", "examples", "problems", "with failed steps", "gen tokens", "greedy acc", "MCTS+PPM acc"],
        rows,
        result,
        args,
        notes,
    )
    metrics = ["greedy accuracy"] + (["MCTS+PPM accuracy"] if args.mcts else [])
    bar_plot(
        os.path.join(args.out, "sft_source.png"),
        "Policies trained on each SFT source",
        metrics,
        {
            SOURCES[k]: [s["greedy"]["acc"]] + ([s["mcts"]["acc"]] if args.mcts else [])
            for k, s in result["sources"].items()
        },
    )
    return result


if __name__ == "__main__":
    main()
