"""``rstar-jax bench sandbox``: programs/s and latency of the sandbox against ``python -c``.

Runs N distinct programs of 2-6 code steps (the kind the policy writes:
comment, a few arithmetic lines, a print at the end; some use math or
fractions, a few have the policy's typical mistakes) through

- the sandbox with its defaults (stateless programs share forked children),
- the sandbox with one forked child per program (``share_children=False``),
- the sandbox again on the same programs (all cache hits),
- the sandbox on sympy programs (heavy workers, one child each),
- one ``subprocess.run([python, "-c", program])`` per program, on a subset,
  scaled to programs/s,

in one run, prints a table and writes JSON. Latency percentiles are the
per-program execution times the sandbox reports (fork to result), and the
wall time of each subprocess for the baseline. The machine's load average is
recorded because the CPUs may be shared.
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

from rstar_jax.sandbox import ExecResult, Sandbox

_NAMES = ("apples", "total", "price", "speed", "area", "width", "count", "cost", "rate", "hours", "profit", "side")


def make_program(rng: random.Random, index: int) -> str:
    """One program of 2-6 steps in the policy's step format (code only, as the sandbox sees it)."""
    n_steps = rng.randint(2, 6)
    names: list[str] = []
    lines: list[str] = []
    uses_fraction = rng.random() < 0.15
    if uses_fraction:
        lines.append("from fractions import Fraction\n")
    elif rng.random() < 0.2:
        lines.append("import math\n")
    for step in range(n_steps):
        name = f"{rng.choice(_NAMES)}_{step}"
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        if names and rng.random() < 0.7:
            prev = rng.choice(names)
            expr = rng.choice(
                [
                    f"{prev} * {a}",
                    f"{prev} + {a} * {b}",
                    f"({prev} - {b}) / {a}",
                    f"{prev} // {a}",
                    f"{prev} ** 2 - {a}",
                    f"abs({prev} - {a * b})",
                ]
            )
        else:
            expr = rng.choice([f"{a} * {b} + {index}", f"{a} + {b} - {index % 7}", f"({a} + {index}) * {b}"])
        if uses_fraction and rng.random() < 0.5:
            expr = f"Fraction({expr}, {b})"
        elif lines and lines[0] == "import math\n" and rng.random() < 0.5:
            expr = f"math.sqrt(abs({expr}))"
        lines.append(f"# Step {step + 1}: compute {name.split('_')[0]}\n{name} = {expr}\n")
        names.append(name)
    if rng.random() < 0.05:  # the policy's typical slips: an undefined name or a division by zero
        lines.append(rng.choice(["print(result)\n", f"print({names[-1]} / 0)\n"]))
    else:
        lines.append(f"print({names[-1]})\n")
    return "".join(lines)


def make_sympy_program(rng: random.Random, index: int) -> str:
    a, b = rng.randint(2, 30), rng.randint(2, 30) + index
    return (
        "from sympy import symbols, solve, Rational\n"
        f"# Step 1: set up the equation\nx = symbols('x')\nsol = solve(x**2 - {a} * x - {b}, x)\n"
        f"# Step 2: report\nprint(sol, Rational({a}, {b}))\n"
    )


def _percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return q[49] * 1e3, q[98] * 1e3


def _row(name: str, n: int, seconds: float, latencies: list[float], ok: int, cpu_s: float | None = None) -> dict:
    p50, p99 = _percentiles(latencies)
    return {
        "name": name,
        "programs": n,
        "seconds": seconds,
        "programs_per_s": n / seconds if seconds else 0.0,
        "p50_ms": p50,
        "p99_ms": p99,
        "ok": ok,
        "cpu_ms_per_program": None if cpu_s is None else 1e3 * cpu_s / n,
    }


def _cpu(box: Sandbox | None = None) -> float:
    """CPU seconds of this process and its reaped children (+ the sandbox's workers and their children)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + ((box.cpu_seconds() or 0.0) if box else 0.0)


def _timed_sandbox(box: Sandbox, programs: list[str]) -> tuple[list[ExecResult], float, float]:
    c0, t0 = _cpu(box), time.perf_counter()
    results = box.run_many(programs)
    return results, time.perf_counter() - t0, _cpu(box) - c0


def _baseline(programs: list[str], timeout_s: float) -> tuple[list[float], int]:
    latencies, ok = [], 0
    for program in programs:
        t0 = time.perf_counter()
        try:
            out = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=timeout_s)
            ok += out.returncode == 0
        except subprocess.TimeoutExpired:
            pass
        latencies.append(time.perf_counter() - t0)
    return latencies, ok


def run(
    n_programs: int = 1000,
    n_baseline: int = 100,
    n_sympy: int = 100,
    num_workers: int | None = None,
    timeout_s: float = 5.0,
    seed: int = 0,
) -> dict:
    rng = random.Random(seed)
    programs = [make_program(rng, i) for i in range(n_programs)]
    sympy_programs = [make_sympy_program(rng, i) for i in range(n_sympy)]
    rows = []
    with Sandbox(num_workers=num_workers, timeout_s=timeout_s) as box:
        box.run_many(["print(1)"])  # warm: workers are up, first fork done
        results, seconds, cpu = _timed_sandbox(box, programs)
        rows.append(
            _row(
                "sandbox, uncached",
                n_programs,
                seconds,
                [r.duration_s for r in results],
                sum(r.ok for r in results),
                cpu,
            )
        )
        cached, seconds, cpu = _timed_sandbox(box, programs)
        assert cached == results
        rows.append(
            _row("sandbox, cached", n_programs, seconds, [r.duration_s for r in cached], sum(r.ok for r in cached), cpu)
        )
        if n_sympy:
            box.run_many(["import sympy\nprint(sympy.Rational(1, 2))"])  # start the heavy workers
            heavy, seconds, cpu = _timed_sandbox(box, sympy_programs)
            rows.append(
                _row(
                    "sandbox, sympy programs",
                    n_sympy,
                    seconds,
                    [r.duration_s for r in heavy],
                    sum(r.ok for r in heavy),
                    cpu,
                )
            )
        isolation = box.isolation
        workers = box.num_workers
    with Sandbox(num_workers=num_workers, timeout_s=timeout_s, share_children=False) as box:
        box.run_many(["print(1)"])
        single, seconds, cpu = _timed_sandbox(box, programs)
        rows.append(
            _row(
                "sandbox, fork per program",
                n_programs,
                seconds,
                [r.duration_s for r in single],
                sum(r.ok for r in single),
                cpu,
            )
        )
    c0, t0 = _cpu(), time.perf_counter()
    latencies, ok = _baseline(programs[:n_baseline], timeout_s)
    rows.append(
        _row(
            f"subprocess python -c (first {n_baseline})",
            n_baseline,
            time.perf_counter() - t0,
            latencies,
            ok,
            _cpu() - c0,
        )
    )
    baseline_rate = rows[-1]["programs_per_s"]
    return {
        "rows": rows,
        "speedup_uncached_vs_subprocess": rows[0]["programs_per_s"] / baseline_rate if baseline_rate else None,
        "num_workers": workers,
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "isolation": {
            "python": isolation.python,
            "network_namespace": isolation.network_namespace,
            "drops_privileges": isolation.drops_privileges,
            "notes": list(isolation.notes),
        },
    }


def format_table(report: dict) -> str:
    head = f"{'':42s} {'programs':>8s} {'prog/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'cpu ms/prog':>11s} {'ok':>5s}"
    lines = [head, "-" * len(head)]
    for r in report["rows"]:
        cpu = "" if r["cpu_ms_per_program"] is None else f"{r['cpu_ms_per_program']:.2f}"
        lines.append(
            f"{r['name']:42s} {r['programs']:8d} {r['programs_per_s']:9.1f} {r['p50_ms']:8.2f} "
            f"{r['p99_ms']:8.2f} {cpu:>11s} {r['ok']:5d}"
        )
    lines.append(
        f"speedup (uncached vs subprocess): {report['speedup_uncached_vs_subprocess']:.1f}x; "
        f"{report['num_workers']} workers on {report['cpus']} CPUs, load avg {report['load_avg_1min']:.2f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rstar-jax bench sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--baseline", type=int, default=100, help="programs for the subprocess baseline")
    parser.add_argument("--sympy", type=int, default=100, help="sympy programs (0 to skip)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_sandbox.json")
    args = parser.parse_args(argv)
    report = run(args.programs, args.baseline, args.sympy, args.workers, args.timeout, args.seed)
    print(format_table(report))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
