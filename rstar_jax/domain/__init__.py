"""The embedded synthetic domain, a plug-in above search: multi-step arithmetic problems,
the scripted bootstrap proposer (a ``search.types.Proposer``) and the domain tokenizer."""

from rstar_jax.domain.bootstrap import DEFAULT_ERROR_RATES, BootstrapProposer, ErrorRates, solve_rate
from rstar_jax.domain.synthetic import coincidence_rate, generate_problems, make_splits, reference_solution
from rstar_jax.domain.tokenizer import save_tokenizer, train_domain_tokenizer

__all__ = [
    "DEFAULT_ERROR_RATES",
    "BootstrapProposer",
    "ErrorRates",
    "solve_rate",
    "coincidence_rate",
    "generate_problems",
    "make_splits",
    "reference_solution",
    "save_tokenizer",
    "train_domain_tokenizer",
]
