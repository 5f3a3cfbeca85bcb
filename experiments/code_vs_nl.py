"""Ablation 4: code-augmented steps vs natural-language steps without the execution filter.

The scripted bootstrap proposer writes the same solutions, with the same slip rates, in two
styles: code-augmented (each step's code runs in the sandbox; a failing step is pruned and
rewritten) and natural language (``style="nl"``: the clause, then ``x = 23 + 4 * 12 = 71`` with the
value stated by the writer; nothing runs, so its counterpart of a crash is a silent arithmetic
slip). Each style gets the same terminal-guided MCTS budget on the same training problems; the
standard extraction gives each its SFT data; a policy is trained on each from the same base with
the same SFT settings; both are evaluated greedily on the held-out problems (the NL policy without
execution, so it must do its own arithmetic). Also reported: the training problems the search
solved, and one chain of the generator itself on the held-out problems (with / without execution).

No paper number is reproduced here: rStar-Math argues for code-augmented CoT because execution
filters out steps with errors; this measures what that is worth at small scale.

The proposer knows the synthetic domain only: training (and held-out) problems must be synthetic.
With --run: the run's base model, training and held-out problems, error rates and round-1 search
settings (bootstrap_search; change any with --set).

    python experiments/code_vs_nl.py --run runs/demo --out runs/ablations/code_vs_nl
    python experiments/code_vs_nl.py --base BASE_HF --train-data train.jsonl --data test.jsonl \\
        --config configs/demo.yaml --out runs/ablations/code_vs_nl
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    add_config_args,
    add_io_args,
    bar_plot,
    greedy_eval,
    held_out_problems,
    run_config,
    train_fresh,
    write_outputs,
)

QUICK = (
    "sft.steps=2",
    "sft.batch_size=4",
    "bootstrap_search.rollouts=2",
    "eval.mcts.max_step_tokens=24",
    "eval.mcts.max_depth=6",
)
STYLES = {"code": "code-augmented, executed", "nl": "natural language, not executed"}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_args(p, models=("base",))
    add_config_args(p)
    p.add_argument("--train-data", help="synthetic training problems (default: the run's problems/train.jsonl)")
    p.add_argument("--train-limit", type=int, help="only the first N training problems")
    args = p.parse_args(argv)
    if args.quick:
        args.limit, args.train_limit = args.limit or 2, args.train_limit or 12

    from rstar_jax.data.problems import load_problems
    from rstar_jax.domain.bootstrap import BootstrapProposer
    from rstar_jax.evolve.loading import load_proposer
    from rstar_jax.sandbox import Sandbox
    from rstar_jax.search.expand import NoExecution
    from rstar_jax.search.mcts import run_mcts
    from rstar_jax.search.records import write_records
    from rstar_jax.train.api import train_policy_folder
    from rstar_jax.train.examples import extract, write_sft

    base = args.base or (args.run and os.path.join(args.run, "base"))
    train_file = args.train_data or (args.run and os.path.join(args.run, "problems", "train.jsonl"))
    if not (base and train_file):
        raise SystemExit("give --run, or --base, --train-data and --data")
    cfg = run_config(args, QUICK)
    search_cfg = cfg.bootstrap_search.replace(seed=args.seed)
    eval_cfg = cfg.eval.mcts.replace(seed=args.seed)
    train = load_problems(train_file)[: args.train_limit]
    problems = held_out_problems(args)

    result = {"problems": len(problems), "train_problems": len(train), "styles": {}}
    data_dir = os.path.join(args.out, "data")
    for style in STYLES:
        with Sandbox() if style == "code" else NoExecution() as executor:
            generator = BootstrapProposer(train + problems, **cfg.bootstrap_kwargs(), style=style)
            records, st = run_mcts(train, generator, executor, search_cfg, progress=False)
            write_records(os.path.join(data_dir, f"trees_{style}.jsonl"), records)
            sft, _, stats = extract(records, cfg.extract)
            if not sft:
                raise SystemExit(f"the {style} search solved no training problem")
            write_sft(sft, os.path.join(data_dir, f"sft_{style}.jsonl"))
            hf = train_fresh(
                train_policy_folder,
                os.path.join(data_dir, f"sft_{style}.jsonl"),
                base,
                os.path.join(args.out, "models", style),
                cfg.sft,
                args.seed,
            )
            result["styles"][style] = {
                "train_solved": stats["problems_with_sft"] / len(train),
                "sft_examples": len(sft),
                "search_tokens": st.tokens / len(train),
                "generator_chain": greedy_eval(generator, problems, search_cfg, executor),
                "policy_greedy": greedy_eval(load_proposer(hf, problems, eval_cfg), problems, eval_cfg, executor),
            }

    rows = [
        [
            STYLES[k],
            s["train_solved"],
            s["sft_examples"],
            s["search_tokens"],
            s["generator_chain"]["acc"],
            s["policy_greedy"]["acc"],
        ]
        for k, s in result["styles"].items()
    ]
    notes = [
        f"Round-1 MCTS ({search_cfg.rollouts} rollouts, {search_cfg.candidates} candidates) on {len(train)} "
        f"training problems per style; policies trained from {base}; {len(problems)} held-out problems."
    ]
    write_outputs(
        args.out,
        "code_vs_nl",
        "Code-augmented vs natural-language steps",
        ["steps", "train solved", "SFT examples", "search tokens", "generator chain acc", "policy greedy acc"],
        rows,
        result,
        args,
        notes,
    )
    bar_plot(
        os.path.join(args.out, "code_vs_nl.png"),
        "Code-augmented vs natural-language steps",
        ["train problems solved", "generator, one chain", "policy greedy"],
        {
            STYLES[k]: [s["train_solved"], s["generator_chain"]["acc"], s["policy_greedy"]["acc"]]
            for k, s in result["styles"].items()
        },
    )
    return result


if __name__ == "__main__":
    main()
