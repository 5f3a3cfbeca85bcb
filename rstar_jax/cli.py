"""The ``rstar-jax`` command line: one subcommand per stage of the pipeline.

Each module that owns a stage exposes ``add_parser(subparsers)`` which registers
its subcommand and sets ``func``; this file only wires them together.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, attribute) providing add_parser(subparsers); imported lazily so --help stays fast.
_COMMANDS = [
    ("rstar_jax.models.cli", "add_info_parser"),
    ("rstar_jax.models.cli", "add_convert_parser"),
    ("rstar_jax.search.cli", "add_parser"),
    ("rstar_jax.evolve_cli", "add_parser"),
]
_BENCH = []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rstar-jax",
        description="rStar-Math in JAX: MCTS over code-augmented reasoning steps, process preference "
                    "models and self-evolution. Run `rstar-jax <command> --help` for each command.")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for module, attr in _COMMANDS:
        getattr(importlib.import_module(module), attr)(sub)
    if _BENCH:
        bench = sub.add_parser("bench", help="benchmarks: ours vs the baseline, side by side, table + JSON",
                               description="Run a benchmark; each prints a table and writes JSON.")
        bsub = bench.add_subparsers(dest="bench", metavar="<what>")
        for module, attr in _BENCH:
            getattr(importlib.import_module(module), attr)(bsub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
