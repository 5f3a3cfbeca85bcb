"""``rstar-jax bench sandbox``: programs/s and CPU per program of the sandbox on a search workload.

The workload is what MCTS sends (docs/DESIGN.md §3): trees whose nodes are
programs of 2-10 code steps, each node's program its parent's plus one step,
executed layer by layer (one ``run_many`` per layer, as one expansion round
does); only nodes whose program ran without error are expanded. Steps are
the policy's kind of code: arithmetic, helper functions, ``fractions``/
``math``, comprehensions, a print, now and then a mistake (NameError,
ZeroDivisionError). Modes, on identical programs:

- the sandbox with incremental execution (default: a node's step runs in a
  process forked from its parent node's paused process),
- the sandbox re-running every path in a fresh process (``incremental=False``),
- one ``subprocess.run([python, "-c", program])`` per program, on a sample,
- chains of 6 steps that each do real work (``--step-work`` loop iterations,
  a few ms, like a sympy call), incremental against re-running.

Every sandbox program runs in a fresh process inside the wall (namespaces,
seccomp; docs/SANDBOX.md); cached results are not counted. CPU per program
sums the parent and every worker process; on a shared machine programs/s
depends on the load, which is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Callable, Sequence

from rstar_jax.sandbox import ExecResult, Sandbox

Runner = Callable[[Sequence[str]], list[ExecResult]]


def make_step(rng: random.Random, depth: int, work: int = 0) -> str:
    """One code step at ``depth`` (its value is ``v{depth}``, the previous one ``v{depth - 1}``)."""
    p, a, b = f"v{depth - 1}", rng.randint(2, 99), rng.randint(2, 9)
    if work:
        return f"# Step {depth}: count\nv{depth} = ({p} + sum(i * i % {b} for i in range({work}))) % 1000003\n"
    body = rng.choice(
        [
            f"v{depth} = {p} * {a} + {b}\n",
            f"def f{depth}(n):\n    return n * {a} - {b}\nv{depth} = f{depth}({p})\n",
            f"from fractions import Fraction\nv{depth} = Fraction({p}, {b}) + Fraction(1, {a})\n",
            f"import math\nv{depth} = math.isqrt(abs(int({p})) + {a})\n",
            f"vals = [(int({p}) + i) % {b} for i in range({a})]\nv{depth} = sum(vals) + len(vals)\n",
            f"v{depth} = {p}\nfor i in range({b}):\n    v{depth} = v{depth} * 2 % 1000003\n",
        ]
    )
    if rng.random() < 0.06:  # the policy's typical slips
        body += rng.choice([f"print(undefined_{depth})\n", f"v{depth} = {p} / 0\n"])
    return f"# Step {depth}: compute\n{body}print(v{depth})\n"


def search_workload(
    run: Runner, rng: random.Random, n_trees: int, width: int = 3, branching: int = 3, max_steps: int = 10
) -> tuple[list[list[str]], list[list[ExecResult]]]:
    """Run a search-shaped workload layer by layer with ``run``; return (layers of programs, results).

    Roots have 2 steps; each layer, up to ``width`` ok nodes per tree get ``branching`` children."""
    layers, results = [], []
    root = "# Step 0: set up\nv0 = {}\n"
    frontier = [[root.format(rng.randint(1, 50)) + make_step(rng, 1) for _ in range(width)] for _ in range(n_trees)]
    for depth in range(2, max_steps + 1):
        programs = [p for tree in frontier for p in tree]
        if not programs:
            break
        res = run(programs)
        layers.append(programs)
        results.append(res)
        ok = iter(r.ok for r in res)
        survivors = [[p for p in tree if next(ok)] for tree in frontier]
        if depth == max_steps:
            break
        frontier = [
            [p + make_step(rng, depth) for p in rng.sample(tree, min(width, len(tree))) for _ in range(branching)]
            for tree in survivors
        ]
    return layers, results


def chains(rng: random.Random, n: int, steps: int, work: int) -> list[list[str]]:
    """``n`` paths of ``steps`` steps that each cost ``work`` loop iterations; layer k holds the k-step prefixes."""
    paths = [[f"# Step 0: set up\nv0 = {rng.randint(1, 50)}\n"] for _ in range(n)]
    for path in paths:
        for depth in range(1, steps + 1):
            path.append(path[-1] + make_step(rng, depth, work))
    return [[path[k] for path in paths] for k in range(1, steps + 1)]


def _cpu(box: Sandbox | None = None) -> float:
    """CPU seconds of this process and its reaped children (+ the sandbox's worker process trees)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + ((box.cpu_seconds() or 0.0) if box else 0.0)


def _percentiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0] * 1e3,) * 2 if values else (float("nan"),) * 2
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49] * 1e3, q[98] * 1e3


def _row(name: str, results: list[ExecResult], seconds: float, cpu_s: float) -> dict:
    p50, p99 = _percentiles([r.duration_s for r in results])
    n = len(results)
    return {
        "name": name,
        "programs": n,
        "seconds": seconds,
        "programs_per_s": n / seconds if seconds else 0.0,
        "cpu_ms_per_program": 1e3 * cpu_s / n if n else 0.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "ok": sum(r.ok for r in results),
    }


def _sandbox_layers(make_box: Callable[[], Sandbox], layers_or_seed) -> tuple[list[ExecResult], float, float, dict]:
    """Run a workload in a fresh Sandbox (cache off); return (results, seconds, cpu seconds, stats)."""
    with make_box() as box:
        box.run_many(["print(1)"])  # workers up
        c0, t0 = _cpu(box), time.perf_counter()
        flat = layers_or_seed(box.run_many)
        seconds, cpu = time.perf_counter() - t0, _cpu(box) - c0
        return flat, seconds, cpu, box.stats()


def _baseline(programs: list[str], timeout_s: float) -> tuple[list[ExecResult], float, float]:
    c0, t0, out = _cpu(), time.perf_counter(), []
    for program in programs:
        s = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=timeout_s)
            ok = done.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        out.append(ExecResult(ok, "", None, False, time.perf_counter() - s))
    return out, time.perf_counter() - t0, _cpu() - c0


def run(
    n_trees: int = 12,
    n_baseline: int = 100,
    n_chains: int = 40,
    step_work: int = 100_000,
    num_workers: int | None = None,
    timeout_s: float = 5.0,
    seed: int = 0,
) -> dict:
    def box(incremental: bool) -> Callable[[], Sandbox]:
        return lambda: Sandbox(num_workers=num_workers, timeout_s=timeout_s, cache_size=0, incremental=incremental)

    def search(run_many: Runner) -> list[ExecResult]:
        layers, results = search_workload(run_many, random.Random(seed), n_trees)
        programs.extend(p for layer in layers for p in layer)
        return [r for layer in results for r in layer]

    def chain(run_many: Runner) -> list[ExecResult]:
        return [r for layer in chains(random.Random(seed), n_chains, 6, step_work) for r in run_many(layer)]

    rows, programs = [], []
    inc, seconds, cpu, stats = _sandbox_layers(box(True), search)
    rows.append(_row("search, incremental (default)", inc, seconds, cpu))
    continued = stats["continued"]
    n_programs, programs = len(programs), []
    rerun, seconds, cpu, _ = _sandbox_layers(box(False), search)
    rows.append(_row("search, re-running paths", rerun, seconds, cpu))
    identical = [(r.ok, r.stdout, r.error) for r in inc] == [(r.ok, r.stdout, r.error) for r in rerun]
    sample = random.Random(seed).sample(programs, min(n_baseline, len(programs)))
    base, seconds, cpu = _baseline(sample, timeout_s)
    rows.append(_row(f"search, subprocess python -c (sample of {len(sample)})", base, seconds, cpu))
    chains_identical = True
    if n_chains:
        chain_inc, seconds, cpu, _ = _sandbox_layers(box(True), chain)
        rows.append(_row("6-step chains, incremental", chain_inc, seconds, cpu))
        chain_rerun, seconds, cpu, _ = _sandbox_layers(box(False), chain)
        rows.append(_row("6-step chains, re-running paths", chain_rerun, seconds, cpu))
        chains_identical = [(r.ok, r.stdout) for r in chain_inc] == [(r.ok, r.stdout) for r in chain_rerun]
    with Sandbox(num_workers=num_workers) as probe:
        isolation = probe.isolation
        workers = probe.workers_per_kind["lean"]
    rate = {r["name"]: r["programs_per_s"] for r in rows}
    return {
        "rows": rows,
        "search_programs": n_programs,
        "continued_from_parent": continued,
        "speedup_vs_subprocess": rows[0]["programs_per_s"] / rows[2]["programs_per_s"],
        "incremental_vs_rerun_search": rows[0]["programs_per_s"] / rows[1]["programs_per_s"],
        "incremental_vs_rerun_chains": (
            rate["6-step chains, incremental"] / rate["6-step chains, re-running paths"] if n_chains else None
        ),
        "outputs_identical": identical and chains_identical,
        "num_workers": workers,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "isolation": {"active": list(isolation.active), "notes": list(isolation.notes)},
    }


def format_table(report: dict) -> str:
    head = f"{'':52s} {'programs':>8s} {'prog/s':>8s} {'cpu ms/prog':>11s} {'p50 ms':>7s} {'p99 ms':>7s} {'ok':>5s}"
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        lines.append(
            f"{r['name']:52s} {r['programs']:8d} {r['programs_per_s']:8.1f} {r['cpu_ms_per_program']:11.2f} "
            f"{r['p50_ms']:7.2f} {r['p99_ms']:7.2f} {r['ok']:5d}"
        )
    lines.append(
        f"search: {report['speedup_vs_subprocess']:.1f}x subprocess, "
        f"incremental {report['incremental_vs_rerun_search']:.2f}x"
        f" re-running ({report['continued_from_parent']} of {report['search_programs']} continued from their parent);"
        f" 6-step chains: incremental {report['incremental_vs_rerun_chains'] or 0:.2f}x re-running;"
        f" outputs identical: {report['outputs_identical']}"
    )
    lines.append(
        f"{report['num_workers']} (lean) workers on {report['cpus']} CPUs, load avg {report['load_avg_1min']:.2f}; "
        f"wall: {', '.join(report['isolation']['active']) or 'none'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rstar-jax bench sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=12, help="search trees (about 100 programs each)")
    parser.add_argument("--baseline", type=int, default=100, help="programs for the subprocess baseline")
    parser.add_argument("--chains", type=int, default=40, help="6-step chains with costly steps (0 to skip)")
    parser.add_argument("--step-work", type=int, default=100_000, help="loop iterations per chain step")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_sandbox.json")
    args = parser.parse_args(argv)
    report = run(args.trees, args.baseline, args.chains, args.step_work, args.workers, args.timeout, args.seed)
    print(format_table(report))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
