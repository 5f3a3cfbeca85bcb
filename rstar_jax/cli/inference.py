"""The ``--dtype`` and ``--tensor-parallel`` options shared by search, solve, eval and evolve.

They become ``key=value`` overrides of the SearchConfig fields ``dtype`` and ``tensor_parallel``
that ``search/loading.py`` turns into a ``models.placement.Inference`` (how the policy and the
PPM are loaded: their dtype, and their placement on the device mesh)."""

from __future__ import annotations

import argparse


def add_dtype_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dtype",
        metavar="{auto,bfloat16,float32}",  # checked by SearchConfig (no model import for --help)
        help="weights and compute dtype of the policy and PPM (default auto: bfloat16 on GPU/TPU, float32 on CPU)",
    )
    p.add_argument(
        "--tensor-parallel",
        type=int,
        metavar="N",
        help="devices that split each model's heads (default: the fewest that hold its weights); "
        "the other devices split the rows (problems x candidates)",
    )


def dtype_overrides(args: argparse.Namespace, *prefixes: str) -> list[str]:
    """The overrides the options ask for, once per config prefix (``""`` for a SearchConfig itself,
    ``"mcts."`` for eval's, ...); nothing for an option left unset, so a YAML preset's value stays."""
    keys = {"dtype": args.dtype, "tensor_parallel": args.tensor_parallel}
    return [f"{pre}{k}={v}" for pre in (prefixes or ("",)) for k, v in keys.items() if v is not None]
