"""`rstar-jax evolve` (the main job) and `rstar-jax eval` (any checkpoint on any problem file)."""

from __future__ import annotations

import dataclasses
import json
import os

from rstar_jax.cli.inference import add_dtype_arguments, dtype_overrides
from rstar_jax.distributed import add_cluster_arguments


def _evolve(args) -> int:
    from rstar_jax.config import load_config
    from rstar_jax.distributed import cluster_from_args, initialize
    from rstar_jax.evolve.config import EvolveConfig
    from rstar_jax.evolve.driver import run

    # the policies a run loads (each round's search, the evaluation's MCTS) take --dtype/--tensor-parallel
    placement = dtype_overrides(args, "bootstrap_search.", "policy_search.", "eval.mcts.")
    cfg = load_config(EvolveConfig, args.config, [*placement, *args.overrides])
    cluster = initialize(cluster_from_args(args))
    run(cfg, args.out, restart=args.restart, cluster=cluster)
    if cluster.is_main:
        print(f"report: {os.path.join(args.out, 'report.md')}")
    return 0


def _benchmark_names(paths: list[str]) -> list[str]:
    """A short unique name per data file: its folder and stem (``math500/test``)."""
    names = [
        f"{os.path.basename(os.path.dirname(os.path.abspath(p)))}/{os.path.splitext(os.path.basename(p))[0]}"
        for p in paths
    ]
    return [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]


def _eval(args) -> int:
    from rstar_jax.config import load_config
    from rstar_jax.data.problems import load_problems
    from rstar_jax.errors import UserError
    from rstar_jax.evolve.benchmarks import evaluate_benchmarks, markdown, select_problems, write_benchmark_report
    from rstar_jax.evolve.evaluate import METHODS, EvalConfig, check_methods
    from rstar_jax.evolve.loading import BOOTSTRAP, load_proposer
    from rstar_jax.search.loading import load_scorer

    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}")
    methods = args.method or ([] if args.config else ["greedy"])
    methods = list(METHODS[:4]) if "all" in methods else methods
    overrides = [*args.overrides, f"methods=[{','.join(methods)}]"] if methods else list(args.overrides)
    cfg = load_config(EvalConfig, args.config, [*dtype_overrides(args, "mcts."), *overrides])
    check_methods(cfg, bool(args.ppm))
    names = _benchmark_names(args.data)
    # every input is read and checked before anything is written
    sets = {n: select_problems(load_problems(p), args.limit, args.shuffle_seed) for n, p in zip(names, args.data)}
    proposer = load_proposer(args.policy, [p for ps in sets.values() for p in ps], cfg.mcts, few_shot=args.few_shot)
    scorer = load_scorer(args.ppm, None if args.policy == BOOTSTRAP else args.policy, cfg.mcts) if args.ppm else None
    results = evaluate_benchmarks(proposer, scorer, sets, dict(zip(names, args.data)), cfg, args.seed, args.out)
    settings = {
        "policy": args.policy,
        "ppm": args.ppm,
        "few_shot": args.few_shot,
        "limit": args.limit,
        "shuffle_seed": args.shuffle_seed,
        "seed": args.seed,
        "eval": json.loads(json.dumps(dataclasses.asdict(cfg))),
    }
    if args.out:
        report = write_benchmark_report(results, args.out, settings)
        print(markdown(report["rows"]))
        print(f"report: {os.path.join(args.out, 'report.md')}")
    else:
        from rstar_jax.evolve.benchmarks import benchmark_rows

        print(markdown([row for name, m in results.items() for row in benchmark_rows(name, m)]))
        print(json.dumps(results, indent=2))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evolve",
        help="run rStar-Math self-evolution rounds (the main job)",
        description="Run self-evolution: by default round 1 searches with the scripted bootstrap proposer "
        "(terminal-guided MCTS) and each later round with the previous round's policy and PPM; the config's "
        "`schedule` sets each round's policy (scripted, an HF folder with a few-shot prompt, or the previous "
        "round's), search mode and budget, problems and training (configs/paper.yaml: the paper's). "
        "The training set is the synthetic domain or domain.train_file (any problem file; problems without a "
        "checkable answer are skipped and counted). Every round "
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
    add_dtype_arguments(p)
    add_cluster_arguments(p)
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. rounds=2 sft.steps=100")
    p.set_defaults(func=_evolve)

    e = sub.add_parser(
        "eval",
        help="evaluate a policy (+PPM) on benchmark files",
        description="Evaluate a checkpoint on one or more problem files (each a benchmark: GSM8K, MATH, the "
        "rStar evaluation sets, ...) with greedy decoding, PPM-guided MCTS (answer chosen by the top PPM "
        "trajectory, majority vote and score-weighted vote), best-of-N + ORM and self-consistency. "
        "With --out: OUT/report.md and OUT/report.json (per benchmark and method: accuracy with a 95%% Wilson "
        "interval, generated tokens per problem, wall time) and each benchmark's trees in OUT/<benchmark>/. "
        "The paper's test-time settings: --config configs/eval_paper.yaml.",
    )
    e.add_argument("--policy", required=True, help="policy HF folder, or 'bootstrap' (synthetic problems only)")
    e.add_argument("--ppm", help="PPM HF folder (needed by mcts, bon, beam)")
    e.add_argument("--few-shot", help="prompt the policy with step-format demonstrations: 'builtin' or a JSON file")
    e.add_argument("--data", required=True, nargs="+", help="problem files (jsonl/json), one benchmark each")
    e.add_argument(
        "--method",
        nargs="+",
        choices=["mcts", "bon", "sc", "greedy", "beam", "all"],
        help="methods to run (default: the config's methods, else greedy); all = greedy mcts bon sc",
    )
    e.add_argument("--config", help="YAML with EvalConfig fields (configs/eval_paper.yaml: the paper's test time)")
    e.add_argument("--limit", type=int, help="only the first N problems of each file (after --shuffle-seed)")
    e.add_argument("--shuffle-seed", type=int, help="shuffle each file's problems with this seed before --limit")
    e.add_argument("--seed", type=int, default=0, help="sampling seed")
    e.add_argument("--out", help="folder for the report and each benchmark's records and metrics.json")
    add_dtype_arguments(e)
    e.add_argument("overrides", nargs="*", help="key=value overrides of EvalConfig fields (e.g. mcts.rollouts=4)")
    e.set_defaults(func=_eval)
