"""Evaluation on benchmark files (``rstar-jax eval``): which problems, and the per-benchmark report.

Each ``--data`` file is one benchmark. Its problems are optionally shuffled (a seeded permutation)
and cut to ``--limit``; every method of ``evolve.evaluate`` runs on them; the report gives, per
benchmark and method (MCTS once per answer selection), the accuracy with its 95% Wilson score
interval, the generated tokens per problem and the method's wall time, as ``report.md`` and
``report.json``.
"""

from __future__ import annotations

import math
import os
import random
import time
from typing import Sequence

from rstar_jax.evolve.evaluate import evaluate
from rstar_jax.io import atomic_write_json, atomic_write_text

# (metric key, method whose tokens and time it spent, label)
ROWS = (
    ("policy_greedy_acc", "greedy", "greedy"),
    ("mcts_ppm_acc", "mcts", "MCTS+PPM (top PPM trajectory)"),
    ("mcts_ppm_majority_acc", "mcts", "MCTS+PPM (majority vote)"),
    ("mcts_ppm_weighted_acc", "mcts", "MCTS+PPM (score-weighted vote)"),
    ("bon_orm_acc", "bon", "best-of-N + ORM"),
    ("sc_acc", "sc", "self-consistency"),
    ("beam_acc", "beam", "step-level beam"),
)


def select_problems(problems: Sequence, limit: int | None = None, shuffle_seed: int | None = None) -> list:
    """The problems to evaluate: a seeded shuffle first (``shuffle_seed``), then the first ``limit``."""
    chosen = list(problems)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(chosen)
    return chosen[:limit] if limit is not None else chosen


def evaluate_benchmarks(
    proposer, scorer, sets: dict[str, Sequence], files: dict[str, str], cfg, seed: int = 0, out: str | None = None
) -> dict[str, dict]:
    """``evolve.evaluate`` on each benchmark's problems (``sets``: name -> problems; ``files``: name ->
    its file), with the benchmark's wall time; its records and ``metrics.json`` go to
    ``out/<name with / as _>/`` when ``out`` is given. Returns name -> metrics."""
    results = {}
    for name, problems in sets.items():
        out_dir = os.path.join(out, name.replace("/", "_")) if out else None
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        t = time.perf_counter()
        metrics = evaluate(proposer, scorer, problems, cfg, seed=seed, out_dir=out_dir)
        metrics.update(data=files[name], wall_seconds=time.perf_counter() - t)
        if out_dir:
            atomic_write_json(os.path.join(out_dir, "metrics.json"), metrics)
        results[name] = metrics
    return results


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for the default z); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def benchmark_rows(name: str, metrics: dict) -> list[dict]:
    """One row per method (and MCTS answer selection) that ``metrics`` (``evaluate``'s) holds."""
    n = metrics["problems"]
    rows = []
    for key, method, label in ROWS:
        if key not in metrics:
            continue
        k = metrics["correct"][key]
        lo, hi = wilson_interval(k, n)
        rows.append(
            {
                "benchmark": name,
                "method": label,
                "key": key,
                "problems": n,
                "correct": k,
                "accuracy": k / n if n else 0.0,
                "ci95": [lo, hi],
                "tokens_per_problem": metrics["tokens"][method],
                "seconds": metrics["seconds"][method],
            }
        )
    return rows


def markdown(rows: Sequence[dict]) -> str:
    head = "| benchmark | method | problems | accuracy | 95% interval | tokens/problem | wall time (s) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci95"]
        lines.append(
            f"| {r['benchmark']} | {r['method']} | {r['problems']} | {100 * r['accuracy']:.1f}% "
            f"| {100 * lo:.1f}-{100 * hi:.1f}% | {r['tokens_per_problem']:.0f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def write_benchmark_report(results: dict[str, dict], out_dir: str, settings: dict) -> dict:
    """``out_dir/report.json`` (settings, per-benchmark metrics, rows) and ``report.md``; returns the JSON."""
    rows = [row for name, metrics in results.items() for row in benchmark_rows(name, metrics)]
    report = {"settings": settings, "benchmarks": results, "rows": rows}
    atomic_write_json(os.path.join(out_dir, "report.json"), report)
    md = [
        "# Evaluation report",
        "",
        markdown(rows),
        "",
        "Accuracy of the selected answer with its 95% Wilson score interval; tokens are generated tokens per "
        "problem; wall time is the method's search time on this machine (MCTS's rows share one search).",
        "",
    ]
    atomic_write_text(os.path.join(out_dir, "report.md"), "\n".join(md))
    return report
