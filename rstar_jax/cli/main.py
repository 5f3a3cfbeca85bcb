"""The ``rstar-jax`` command line: one subcommand per stage of the pipeline.

Each module that owns a stage exposes ``add_parser(subparsers)`` which registers
its subcommand and sets ``func``; this file only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rstar_jax.errors import UserError, one_line

# (module, attribute) providing add_parser(subparsers); imported lazily so --help stays fast.
_COMMANDS = [
    ("rstar_jax.cli.models", "add_info_parser"),
    ("rstar_jax.cli.models", "add_convert_parser"),
    ("rstar_jax.cli.search", "add_parser"),
    ("rstar_jax.cli.train", "add_extract_parser"),
    ("rstar_jax.cli.train", "add_train_policy_parser"),
    ("rstar_jax.cli.train", "add_train_ppm_parser"),
    ("rstar_jax.cli.evolve", "add_parser"),
    ("rstar_jax.cli.view", "add_parser"),
]
# `rstar-jax bench <what> ...` runs rstar_jax.bench.<what>.main(argv); each has its own --help.
_BENCH = {
    "model": "forward and train-step throughput vs transformers PyTorch",
    "engine": "generation tokens/s vs transformers generate, and the CPU roofline",
    "sandbox": "isolated programs/s vs one python -c subprocess per program",
    "search": "MCTS nodes/s: batched vs a naive per-problem loop",
    "train": "SFT and PPM training tokens/s vs a PyTorch loop, and the matmul peak",
    "grading": "answer-grading agreement and pairs/s vs Math-Verify called directly",
    "device": "one accelerator: decode tok/s vs transformers and the HBM roofline, MCTS nodes/s, "
    "bf16 train-step MFU vs PyTorch, compile seconds (--tiny: a CPU smoke run)",
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (and exit status 2) like every other input error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rstar-jax",
        description="rStar-Math in JAX: MCTS over code-augmented reasoning steps, process preference "
        "models and self-evolution. Run `rstar-jax <command> --help` for each command. "
        "Compiled programs are cached in ~/.cache/rstar_jax/xla (set RSTAR_JAX_COMPILE_CACHE "
        "to another folder, or to `off`).",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an input error instead of one line (or RSTAR_JAX_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for module, attr in _COMMANDS:
        getattr(importlib.import_module(module), attr)(sub)
    bench = sub.add_parser(
        "bench",
        help="benchmarks: ours vs the baseline, side by side, table + JSON",
        description="Run a benchmark; each prints a table and writes JSON. "
        + "; ".join(f"{k}: {v}" for k, v in _BENCH.items())
        + ". `rstar-jax bench <what> --help` lists its options.",
    )
    bench.add_argument("what", choices=sorted(_BENCH))
    bench.add_argument("args", nargs=argparse.REMAINDER, help="options of that benchmark")
    bench.set_defaults(func=lambda a: importlib.import_module(f"rstar_jax.bench.{a.what}").main(a.args) and 0)
    return parser


def enable_compile_cache() -> str | None:
    """Keep compiled XLA programs on disk across runs: search compiles a program per shape
    bucket (minutes on a laptop), which a rerun or the next command then loads in
    milliseconds. ``RSTAR_JAX_COMPILE_CACHE`` names the folder (``off`` disables it)."""

    path = os.environ.get("RSTAR_JAX_COMPILE_CACHE", os.path.join("~", ".cache", "rstar_jax", "xla"))
    if path.lower() == "off":
        return None
    import jax

    path = os.path.expanduser(path)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one command. An error the user can fix (``UserError``, or a file that cannot be
    opened) prints one line and returns 2; ``--debug`` or ``RSTAR_JAX_DEBUG=1`` shows the traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    enable_compile_cache()
    try:
        return int(args.func(args) or 0)
    except (UserError, OSError) as e:
        if args.debug or os.environ.get("RSTAR_JAX_DEBUG") or (isinstance(e, OSError) and not e.filename):
            raise
        what = f"{e.filename}: {e.strerror or e}" if isinstance(e, OSError) else e
        print(f"rstar-jax {args.command}: error: {one_line(what)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
