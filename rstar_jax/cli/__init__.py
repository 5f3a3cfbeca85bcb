"""The ``rstar-jax`` command line: argument parsing that calls library functions."""

from rstar_jax.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
