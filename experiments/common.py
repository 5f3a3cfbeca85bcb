"""Shared plumbing of the experiment scripts: inputs from an evolve run or explicit checkpoints,
settings from the run's config (or a YAML) plus overrides, training into a fresh folder, the
evaluation helpers, and outputs as a markdown table, JSON and a plot, each stating the
configuration and seed."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Sequence

MODEL_HELP = {
    "policy": "policy HF folder",
    "ppm": "PPM HF folder",
    "base": "base model HF folder (with tokenizer) that the compared policies are trained from",
}


def add_io_args(p: argparse.ArgumentParser, models: Sequence[str] = ("policy", "ppm")) -> None:
    p.add_argument(
        "--run",
        help="an `rstar-jax evolve` output folder: its checkpoints, trees and "
        "held-out problems are used unless given below",
    )
    for name in models:
        p.add_argument(f"--{name}", help=MODEL_HELP[name])
    p.add_argument("--data", help="held-out problem file (jsonl/json)")
    p.add_argument("--limit", type=int, help="only the first N held-out problems")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny version that only checks the script works")
    p.add_argument("--out", required=True, help="output folder")


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help="EvolveConfig YAML for the training, extraction and search settings "
        "(default: the run's config.yaml, else the library defaults)",
    )
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="overrides of that config, e.g. sft.steps=200 ppm.lr=1e-4 eval.mcts.rollouts=4",
    )


def run_config(args, quick: Sequence[str] = ()):
    """The EvolveConfig of ``--config`` or the run (defaults otherwise), ``quick`` overrides in
    ``--quick`` mode, then ``--set``."""
    from rstar_jax.config import load_config
    from rstar_jax.evolve.config import EvolveConfig

    path = args.config or (os.path.join(args.run, "config.yaml") if args.run else None)
    return load_config(EvolveConfig, path, [*(quick if args.quick else ()), *args.set])


def last_round(run: str) -> int:
    from rstar_jax.evolve.report import load_report

    return load_report(run)["rounds"][-1]["round"]


def held_out_problems(args) -> list:
    """``--data``, else the run's held-out evaluation problems; first ``--limit``."""
    from rstar_jax.data.problems import load_problems

    if args.data:
        problems = load_problems(args.data)
    elif args.run:
        from rstar_jax.config import load_config
        from rstar_jax.evolve.config import EvolveConfig
        from rstar_jax.evolve.driver import eval_problems

        cfg = load_config(EvolveConfig, os.path.join(args.run, "config.yaml"))
        problems = eval_problems(cfg, load_problems(os.path.join(args.run, "problems", "test.jsonl")))
    else:
        raise SystemExit("give --run or --data (held-out problems)")
    if not problems:
        raise SystemExit("no held-out problems")
    return problems[: args.limit] if args.limit else problems


def resolve_inputs(args) -> tuple[str, str, list]:
    """(policy dir, ppm dir, problems) from --run and/or explicit flags."""
    policy, ppm = args.policy, args.ppm
    if args.run:
        last = last_round(args.run)
        policy = policy or os.path.join(args.run, f"round{last}", "policy", "hf")
        ppm = ppm or os.path.join(args.run, f"round{last}", "ppm", "hf")
    if not (policy and ppm and (args.run or args.data)):
        raise SystemExit("give --run, or --policy, --ppm and --data")
    return policy, ppm, held_out_problems(args)


def train_fresh(train_fn, data: str, init: str, out_dir: str, cfg, seed: int, **kw) -> str:
    """Train with ``rstar_jax.train.api`` into an emptied ``out_dir`` (a stale checkpoint there would
    be resumed) and drop the checkpoints afterwards; returns the trained HF folder."""
    shutil.rmtree(out_dir, ignore_errors=True)
    ckpt = os.path.join(out_dir, "ckpt")
    info = train_fn(data, init, out_dir, ckpt, cfg, seed=seed, **kw)
    shutil.rmtree(ckpt, ignore_errors=True)
    return info["hf"]


def greedy_eval(proposer, problems: Sequence, cfg, sandbox) -> dict:
    """Policy-only accuracy: one temperature-0 chain per problem (``cfg``: a SearchConfig)."""
    m = _evaluate("greedy", proposer, None, problems, cfg, sandbox)
    return {"acc": m["policy_greedy_acc"], "tokens": m["tokens"]["greedy"]}


def mcts_eval(proposer, scorer, problems: Sequence, cfg, sandbox) -> dict:
    """Reward-guided MCTS accuracy (best-scored answer) with the test-time settings ``cfg``."""
    m = _evaluate("mcts", proposer, scorer, problems, cfg, sandbox)
    return {"acc": m["mcts_ppm_acc"], "tokens": m["tokens"]["mcts"]}


def _evaluate(method: str, proposer, scorer, problems: Sequence, cfg, sandbox) -> dict:
    from rstar_jax.evolve.evaluate import EvalConfig, evaluate

    return evaluate(
        proposer, scorer, problems, EvalConfig(mcts=cfg, methods=(method,)), cfg.seed, sandbox=sandbox, progress=False
    )


def write_outputs(
    out: str,
    name: str,
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence],
    result: dict,
    args,
    notes: Sequence[str] = (),
) -> None:
    os.makedirs(out, exist_ok=True)
    meta = {"command": " ".join(sys.argv), "args": vars(args), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({**result, "meta": meta}, f, indent=2, default=str)
    seeds = getattr(args, "seeds", None)
    which = f"seeds {seeds}" if seeds else f"seed {args.seed}"
    lines = [
        f"# {title}",
        "",
        f"Configuration: `{meta['command']}` ({which}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    lines += ["", *notes] if notes else []
    with open(os.path.join(out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def bar_plot(path: str, title: str, metrics: Sequence[str], methods: dict[str, Sequence[float | None]]) -> None:
    """Grouped bars: one group per metric (shares in [0, 1], drawn in %), one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(metrics) * max(1, len(methods)) / 2, 3.6))
    width = 0.8 / max(len(methods), 1)
    for k, (label, values) in enumerate(methods.items()):
        xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(metrics))]
        ax.bar(xs, [100 * (v or 0.0) for v in values], width, label=label)
    ax.set_xticks(range(len(metrics)), metrics, fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(c) -> str:
    if c is None:
        return "-"
    return f"{c:.3f}" if isinstance(c, float) else str(c)
