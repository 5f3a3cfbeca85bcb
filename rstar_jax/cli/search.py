"""`rstar-jax search` and `rstar-jax solve`: run MCTS (or a baseline) from checkpoints."""

from __future__ import annotations

import argparse
import json
import os
import time

from rstar_jax.cli.inference import add_dtype_arguments, dtype_overrides

SEARCH_FLAGS = ("rollouts", "candidates", "max_depth", "max_step_tokens", "seed")


def add_search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy",
        help="HF folder of the policy (with its tokenizer), or 'bootstrap' for the scripted "
        "proposer of the synthetic domain",
    )
    p.add_argument("--ppm", help="HF folder of the process preference model (enables PPM mode)")
    p.add_argument(
        "--few-shot",
        help="prompt the policy with demonstrations of the step format first: 'builtin' or a JSON file "
        "(for a model never trained on the format, e.g. an instruct model as bootstrap policy)",
    )
    p.add_argument("--config", help="YAML search preset (configs/search_*.yaml)")
    p.add_argument("--rollouts", type=int)
    p.add_argument("--candidates", type=int, help="K candidate steps per expansion")
    p.add_argument("--max-depth", type=int)
    p.add_argument("--max-step-tokens", type=int)
    p.add_argument("--seed", type=int)
    add_dtype_arguments(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides of SearchConfig fields")


def search_config(args):
    from rstar_jax.config import load_config
    from rstar_jax.search.config import SearchConfig

    flags = [f"{k}={getattr(args, k)}" for k in SEARCH_FLAGS if getattr(args, k, None) is not None]
    if args.ppm and not any(o.startswith("mode=") for o in args.overrides):
        flags.append("mode=ppm")
    return load_config(SearchConfig, args.config, [*flags, *dtype_overrides(args), *args.overrides])


def _search(args) -> int:
    from rstar_jax.data.problems import load_problems
    from rstar_jax.errors import UserError
    from rstar_jax.evolve.loading import BOOTSTRAP, load_proposer
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.answers import accuracy, solved_any
    from rstar_jax.search.loading import load_scorer
    from rstar_jax.search.mcts import run_mcts
    from rstar_jax.search.records import write_records

    if not args.policy:
        raise UserError("search: give --policy (an HF folder, or 'bootstrap')")
    cfg = search_config(args)
    problems = load_problems(args.data, limit=args.limit)
    proposer = load_proposer(args.policy, problems, cfg, few_shot=args.few_shot)
    scorer = load_scorer(args.ppm, None if args.policy == BOOTSTRAP else args.policy, cfg) if args.ppm else None
    os.makedirs(args.out, exist_ok=True)
    with Sandbox() as sandbox:
        records, stats = run_mcts(problems, proposer, sandbox, cfg, scorer)
    write_records(os.path.join(args.out, "trees.jsonl"), records)
    how = "best" if cfg.mode == "ppm" else "majority"
    summary = {
        "problems": len(records),
        "accuracy": accuracy(records, how),
        "solved_any": solved_any(records),
        "selection": how,
        **stats.as_dict(),
        "config": cfg.__dict__,
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps({k: summary[k] for k in ("problems", "accuracy", "solved_any", "tokens", "nodes_per_s")}))
    return 0


def run_models(run: str) -> tuple[str, str]:
    """(policy, PPM) HF folders of the last finished round of an ``evolve`` run folder."""
    from rstar_jax.errors import UserError

    rounds = sorted(
        int(name[5:])
        for name in (os.listdir(run) if os.path.isdir(run) else [])
        if name.startswith("round")
        and name[5:].isdigit()
        and os.path.isfile(os.path.join(run, name, "ppm", "hf", "config.json"))
    )
    if not rounds:
        raise UserError(f"--run {run}: no finished round with a policy and a PPM (not an evolve run folder?)")
    last = os.path.join(run, f"round{rounds[-1]}")
    return os.path.join(last, "policy", "hf"), os.path.join(last, "ppm", "hf")


def _solve(args) -> int:
    from rstar_jax.data.problems import Problem
    from rstar_jax.errors import UserError
    from rstar_jax.evolve.loading import BOOTSTRAP, load_proposer
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.answers import choose_answer
    from rstar_jax.search.loading import load_scorer
    from rstar_jax.search.mcts import run_mcts
    from rstar_jax.search.records import trajectories, trajectory_steps

    if args.run:
        if args.policy:
            raise UserError("solve: give --policy (with --ppm) or --run, not both")
        args.policy, args.ppm = run_models(args.run)
    elif not args.policy:
        raise UserError("solve: give --policy (an HF folder) or --run (an evolve run folder)")
    cfg = search_config(args).replace(reward="ppm" if args.ppm else "none")
    problem = Problem(id="q0", question=args.question, answer="")
    proposer = load_proposer(args.policy, [problem], cfg, few_shot=args.few_shot)
    scorer = load_scorer(args.ppm, None if args.policy == BOOTSTRAP else args.policy, cfg) if args.ppm else None
    t = time.perf_counter()
    with Sandbox() as sandbox:
        (record,), _ = run_mcts([problem], proposer, sandbox, cfg, scorer, progress=False)
    chosen = choose_answer(record, "best" if args.ppm else "majority")
    if chosen is None:
        print("no answer found")
        return 1
    path = next(p for p in trajectories(record) if p[-1] == chosen.node)
    print("".join(trajectory_steps(record, path)))
    print(f"\nanswer: {chosen.answer}   score: {chosen.score:.3f}   ({time.perf_counter() - t:.1f} s)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "search",
        help="batched MCTS over a problem file; writes tree records",
        description="Run batched MCTS over code-augmented steps for every problem in a "
        "jsonl/json file (GSM8K or MATH format) and write OUT/trees.jsonl "
        "(one tree record per problem) and OUT/summary.json.",
    )
    add_search_args(p)
    p.add_argument("--data", required=True, help="problem file (jsonl/json)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, help="only the first N problems")
    p.set_defaults(func=_search)

    s = sub.add_parser(
        "solve",
        help="solve one question with MCTS and print the best solution",
        description="Search one question with an HF policy folder (--policy, optionally --ppm) or the last "
        "round of an evolve run (--run, e.g. the demo's) and print the chosen trajectory and its answer.",
    )
    add_search_args(s)
    s.add_argument("--run", help="an `rstar-jax evolve` run folder: use its last round's policy and PPM")
    s.add_argument("--question", required=True)
    s.set_defaults(func=_solve)
