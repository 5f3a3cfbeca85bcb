"""Problems (files and the synthetic domain), the bootstrap proposer, the domain tokenizer."""
from rstar_jax.data.problems import Problem, load_problems, save_problems
from rstar_jax.data.synthetic import coincidence_rate, generate_problems, make_splits, reference_solution
from rstar_jax.data.bootstrap import DEFAULT_ERROR_RATES, BootstrapProposer, ErrorRates, solve_rate
from rstar_jax.data.domain_tokenizer import load_tokenizer, train_domain_tokenizer

__all__ = [
    "Problem", "load_problems", "save_problems", "coincidence_rate", "generate_problems", "make_splits",
    "reference_solution", "DEFAULT_ERROR_RATES", "BootstrapProposer", "ErrorRates", "solve_rate",
    "load_tokenizer", "train_domain_tokenizer",
]
