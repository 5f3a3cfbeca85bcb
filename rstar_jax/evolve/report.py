"""The self-evolution report: OUT/report.md, OUT/report.json, a plot and TensorBoard scalars."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Sequence

from rstar_jax.io import atomic_write_json, atomic_write_text

COLUMNS = [
    ("round", "round"),
    ("policy_greedy_acc", "policy greedy"),
    ("mcts_ppm_acc", "MCTS+PPM"),
    ("bon_orm_acc", "best-of-N+ORM"),
    ("sc_acc", "self-consistency"),
    ("train_solved_share", "train solved"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{100 * v:.1f}%"
    return "-" if v is None else str(v)


def markdown_table(rows: Sequence[dict]) -> str:
    head = [c for _, c in COLUMNS] + ["tokens/problem (greedy / mcts / bon / sc)", "N chains"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t = r.get("tokens", {})
        toks = " / ".join(f"{t[m]:.0f}" if m in t else "-" for m in ("greedy", "mcts", "bon", "sc"))
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in COLUMNS) + f" | {toks} | {r.get('n_chains', '-')} |")
    return "\n".join(lines)


def write_report(rows: Sequence[dict], out: str, cfg=None) -> None:
    rows = [dict(r) for r in rows]
    atomic_write_json(os.path.join(out, "report.json"), {"rounds": rows})
    md = ["# Self-evolution report", "", markdown_table(rows), ""]
    if rows:
        md.append(
            f"Evaluated on {rows[-1].get('problems')} held-out problems per round; accuracy of the "
            "selected answer. Budgets are generated tokens per problem."
        )
        if rows[-1].get("skipped_train_problems"):
            md.append(
                f"\nTraining problems: {rows[-1].get('train_problems')} with a checkable gold answer; "
                f"{rows[-1]['skipped_train_problems']} skipped without one."
            )
    atomic_write_text(os.path.join(out, "report.md"), "\n".join(md) + "\n")
    print("\n".join(md), flush=True)
    plot_rounds(rows, os.path.join(out, "accuracy_by_round.png"))
    _tensorboard(rows, os.path.join(out, "tb"))


def plot_rounds(rows: Sequence[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    rounds = [r["round"] for r in rows]
    for key, label in COLUMNS[1:]:
        ys = [r.get(key) for r in rows]
        if any(y is not None for y in ys):
            ax.plot(rounds, [100 * y if y is not None else float("nan") for y in ys], marker="o", label=label)
    ax.set_xlabel("self-evolution round")
    ax.set_ylabel("accuracy (%)")
    ax.set_xticks(rounds)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _tensorboard(rows: Sequence[dict], logdir: str) -> None:
    """Every round's scalars, written whole each time: the previous copy is removed first, so a
    new round (or a resumed run) does not add its earlier rounds' points again."""
    from tensorboardX import SummaryWriter

    shutil.rmtree(logdir, ignore_errors=True)
    with SummaryWriter(logdir) as w:
        for r in rows:
            for key, _ in COLUMNS[1:]:
                if isinstance(r.get(key), (int, float)):
                    w.add_scalar(f"evolve/{key}", r[key], r["round"])
            for m, t in r.get("tokens", {}).items():
                w.add_scalar(f"tokens/{m}", t, r["round"])


def load_report(out: str) -> dict:
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)
