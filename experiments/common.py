"""Shared plumbing of the experiment scripts: inputs from an evolve run or explicit checkpoints,
and outputs as a markdown table, JSON and a plot, each stating the configuration and seed."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence


def add_io_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", help="an `rstar-jax evolve` output folder: its last round's policy, PPM and "
                                 "held-out problems are used unless given below")
    p.add_argument("--policy", help="policy HF folder")
    p.add_argument("--ppm", help="PPM HF folder")
    p.add_argument("--data", help="problem file (jsonl/json)")
    p.add_argument("--limit", type=int, help="only the first N problems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny version that only checks the script works")
    p.add_argument("--out", required=True, help="output folder")


def resolve_inputs(args) -> tuple[str, str, list]:
    """(policy dir, ppm dir, problems) from --run and/or explicit flags."""
    from rstar_jax.data.problems import load_problems
    policy, ppm, problems = args.policy, args.ppm, None
    if args.run:
        from rstar_jax.report import load_report
        last = load_report(args.run)["rounds"][-1]["round"]
        policy = policy or os.path.join(args.run, f"round{last}", "policy", "hf")
        ppm = ppm or os.path.join(args.run, f"round{last}", "ppm", "hf")
        if not args.data:
            from rstar_jax.config import load_config
            from rstar_jax.evolve import eval_problems
            from rstar_jax.evolve_config import EvolveConfig
            cfg = load_config(EvolveConfig, os.path.join(args.run, "config.yaml"))
            problems = eval_problems(cfg, load_problems(os.path.join(args.run, "problems", "test.jsonl")))
    if args.data:
        problems = load_problems(args.data)
    if not (policy and ppm and problems):
        raise SystemExit("give --run, or --policy, --ppm and --data")
    return policy, ppm, problems[: args.limit] if args.limit else problems


def write_outputs(out: str, name: str, title: str, header: Sequence[str], rows: Sequence[Sequence],
                  result: dict, args) -> None:
    os.makedirs(out, exist_ok=True)
    meta = {"command": " ".join(sys.argv), "args": vars(args), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({**result, "meta": meta}, f, indent=2, default=str)
    lines = [f"# {title}", "", f"Configuration: `{meta['command']}` (seed {args.seed}).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cell(c) -> str:
    return f"{c:.3f}" if isinstance(c, float) else str(c)
