"""`rstar-jax search` and `rstar-jax solve`: run MCTS (or a baseline) from checkpoints."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

from rstar_jax.cli.inference import add_dtype_arguments, dtype_overrides
from rstar_jax.distributed import add_cluster_arguments

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
    from rstar_jax.distributed import barrier, cluster_from_args, initialize
    from rstar_jax.errors import UserError
    from rstar_jax.evolve.loading import BOOTSTRAP, load_proposer
    from rstar_jax.io import atomic_write_json
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.answers import accuracy, solved_any
    from rstar_jax.search.loading import load_scorer
    from rstar_jax.search.mcts import check_scorer, run_mcts
    from rstar_jax.search.records import write_records
    from rstar_jax.search.sharded import gather, merged_stats, search_shards

    if not args.policy:
        raise UserError("search: give --policy (an HF folder, or 'bootstrap')")
    if args.shards is not None and args.shards < 1:
        raise UserError(f"--shards must be >= 1, got {args.shards}")
    cluster = initialize(cluster_from_args(args))
    cfg = search_config(args)
    problems = load_problems(args.data, limit=args.limit)
    shards = args.shards or cluster.num_processes
    progress = os.path.join(args.out, ".progress")
    settings = _progress_settings(args, cfg, shards)
    proposer = load_proposer(args.policy, problems, cfg, few_shot=args.few_shot)
    scorer = load_scorer(args.ppm, None if args.policy == BOOTSTRAP else args.policy, cfg) if args.ppm else None
    check_scorer(cfg, scorer)
    if cluster.is_main:
        _open_progress(progress, settings)
    barrier("search/start", cluster)
    with Sandbox() as sandbox:
        search_shards(
            problems,
            lambda batch: run_mcts(batch, proposer, sandbox, cfg, scorer, progress=cluster.is_main),
            progress,
            cluster,
            shards,
            cfg.batch_size,
        )
    barrier("search/searched", cluster)
    if cluster.is_main:  # every process's shards are on disk: one process merges them
        records, stats = gather(problems, progress), merged_stats(progress, cluster)
        write_records(os.path.join(args.out, "trees.jsonl"), records)
        how = "best" if cfg.mode == "ppm" else "majority"
        summary = {
            **stats.as_dict(),  # this invocation's work (a resumed search: what was left)
            "searched": stats.problems,
            "problems": len(records),
            "accuracy": accuracy(records, how),
            "solved_any": solved_any(records),
            "selection": how,
            "processes": cluster.num_processes,
            "shards": shards,
            "config": cfg.__dict__,
        }
        atomic_write_json(os.path.join(args.out, "summary.json"), summary)
        shutil.rmtree(progress)
        print(json.dumps({k: summary[k] for k in ("problems", "accuracy", "solved_any", "tokens", "nodes_per_s")}))
    barrier("search/written", cluster)
    return 0


def _progress_settings(args, cfg, shards: int) -> dict:
    """What a search's records depend on: progress left by another search is never reused."""
    from rstar_jax.runs import file_sha256

    return {
        "data": file_sha256(args.data),
        "limit": args.limit,
        "policy": args.policy,
        "ppm": args.ppm,
        "few_shot": args.few_shot,
        "shards": shards,
        "config": json.loads(json.dumps(cfg.__dict__)),
    }


def _open_progress(folder: str, settings: dict) -> None:
    """Resume the unfinished search in ``folder`` if it had these settings; refuse one that had others."""
    from rstar_jax.errors import UserError
    from rstar_jax.io import atomic_write_json

    path = os.path.join(folder, "settings.json")
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) != settings:
                raise UserError(
                    f"{folder} holds an unfinished search with other settings or data; remove it to start over, "
                    "or use another --out"
                )
        return
    os.makedirs(folder, exist_ok=True)
    atomic_write_json(path, settings)


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
    p.add_argument(
        "--shards",
        type=int,
        help="hash shards of the problems (default: one per process); shard s runs on process s mod N, and "
        "for a fixed count the trees are the same for any number of processes",
    )
    add_cluster_arguments(p)
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
