"""Final-answer grading (docs/DESIGN.md §7): extraction, normalisation, equivalence."""

from rstar_jax.grading.equiv import is_equiv
from rstar_jax.grading.extract import extract_answer, extract_gsm8k_gold
from rstar_jax.grading.normalize import normalize

__all__ = ["extract_answer", "extract_gsm8k_gold", "is_equiv", "normalize"]
