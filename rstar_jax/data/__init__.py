"""Problem files: the ``Problem`` record and the GSM8K / MATH / jsonl loaders."""

from rstar_jax.data.problems import Problem, load_problems, save_problems

__all__ = ["Problem", "load_problems", "save_problems"]
