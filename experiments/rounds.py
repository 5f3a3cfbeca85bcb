"""Ablation 5: policy-only (greedy) and MCTS+PPM accuracy per self-evolution round, read from an
`rstar-jax evolve` run's report (rStar-Math Table 3 in spirit: 69.6 / 73.6 / 75.8 / 78.4 policy-only
on MATH over rounds 1-4).

    python experiments/rounds.py --run runs/demo --out runs/ablations/rounds
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import write_outputs  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="an `rstar-jax evolve` output folder")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0, help="recorded only: the run's own seed decides")
    p.add_argument("--quick", action="store_true", help="accepted for uniformity; this script is cheap")
    args = p.parse_args(argv)

    from rstar_jax.evolve.report import load_report, plot_rounds

    rows_in = load_report(args.run)["rounds"]
    keys = ("policy_greedy_acc", "mcts_ppm_acc", "train_solved_share")
    rows = [[r["round"], *(r.get(k) for k in keys)] for r in rows_in]
    write_outputs(
        args.out,
        "rounds",
        "Accuracy per self-evolution round",
        ["round", "policy greedy", "MCTS+PPM", "train solved"],
        rows,
        {"rounds": rows_in},
        args,
    )
    plot_rounds(rows_in, os.path.join(args.out, "rounds.png"))
    return {"rounds": rows_in}


if __name__ == "__main__":
    main()
