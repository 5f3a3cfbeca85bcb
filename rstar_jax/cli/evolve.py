"""`rstar-jax evolve` (the main job) and `rstar-jax eval` (any checkpoint on any problem file)."""

from __future__ import annotations

import json
import os


def _evolve(args) -> int:
    from rstar_jax.config import load_config
    from rstar_jax.evolve.config import EvolveConfig
    from rstar_jax.evolve.driver import run

    cfg = load_config(EvolveConfig, args.config, args.overrides)
    run(cfg, args.out, restart=args.restart)
    print(f"report: {os.path.join(args.out, 'report.md')}")
    return 0


def _eval(args) -> int:
    from rstar_jax.config import load_config
    from rstar_jax.data.problems import load_problems
    from rstar_jax.evolve.evaluate import EvalConfig, evaluate
    from rstar_jax.evolve.loading import load_proposer
    from rstar_jax.search.loading import load_scorer

    overrides = [*args.overrides, f"methods=[{','.join(args.method)}]"]
    cfg = load_config(EvalConfig, args.config, overrides)
    problems = load_problems(args.data, limit=args.limit)
    proposer = load_proposer(args.policy, problems, cfg.mcts)
    scorer = load_scorer(args.ppm) if args.ppm else None
    out_dir = args.out or None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    metrics = evaluate(proposer, scorer, problems, cfg, seed=args.seed, out_dir=out_dir)
    metrics["data"] = args.data
    if out_dir:
        from rstar_jax.io import atomic_write_json

        atomic_write_json(os.path.join(out_dir, "metrics.json"), metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evolve",
        help="run rStar-Math self-evolution rounds (the main job)",
        description="Run self-evolution: round 1 searches with the bootstrap proposer (terminal-guided "
        "MCTS); each later round searches with the previous round's policy and PPM; every round "
        "extracts SFT data and preference pairs, trains a policy from the base model and a PPM "
        "from that policy, and evaluates greedy, PPM-guided MCTS, best-of-N+ORM and "
        "self-consistency at matched budget. Rerunning the same command resumes after a crash; "
        "OUT/run.json records the config and the input files' hashes, and a rerun with other ones "
        "is refused (naming what differs) unless --restart. "
        "Outputs: OUT/report.md, OUT/report.json, OUT/accuracy_by_round.png, OUT/tb/.",
    )
    p.add_argument("--config", default="configs/demo.yaml", help="YAML preset (default: configs/demo.yaml)")
    p.add_argument("--out", required=True, help="run folder (created; reused to resume)")
    p.add_argument(
        "--restart",
        action="store_true",
        help="discard the run already in --out (what evolve wrote there) and start over with these settings",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=2 sft.steps=100")
    p.set_defaults(func=_evolve)

    e = sub.add_parser(
        "eval",
        help="evaluate a policy (+PPM) on a problem file",
        description="Evaluate a checkpoint on a GSM8K/MATH-format problem file with one or more methods; "
        "prints accuracy and generated tokens per problem for each method.",
    )
    e.add_argument("--policy", required=True, help="policy HF folder, or 'bootstrap' (synthetic problems only)")
    e.add_argument("--ppm", help="PPM HF folder (needed by mcts, bon, beam)")
    e.add_argument("--data", required=True, help="problem file (jsonl/json)")
    e.add_argument("--method", nargs="+", default=["greedy"], choices=["mcts", "bon", "sc", "greedy", "beam"])
    e.add_argument("--config", help="YAML with EvalConfig fields")
    e.add_argument("--limit", type=int, help="only the first N problems")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", help="folder for per-method records and metrics.json")
    e.add_argument("overrides", nargs="*", help="key=value overrides of EvalConfig fields (e.g. mcts.rollouts=4)")
    e.set_defaults(func=_eval)
