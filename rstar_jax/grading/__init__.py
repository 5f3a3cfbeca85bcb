"""Final-answer grading (docs/DESIGN.md §7): extraction, normalisation, equivalence (on Math-Verify)."""

from rstar_jax.grading.equiv import is_equiv
from rstar_jax.grading.extract import extract_answer, extract_gsm8k_gold
from rstar_jax.grading.normalize import normalize
from rstar_jax.grading.worker import GradingUnavailable

__all__ = ["GradingUnavailable", "extract_answer", "extract_gsm8k_gold", "is_equiv", "normalize"]
