"""rstar_jax: rStar-Math in JAX/Flax.

Submodules are imported lazily so that light host-side pieces (the sandbox
worker, grading) never pull in JAX.
"""

import importlib

__version__ = "0.1.0"
_SUBMODULES = (
    "steps",
    "sequences",
    "config",
    "io",
    "lru",
    "shapes",
    "kernels",
    "models",
    "engine",
    "grading",
    "sandbox",
    "data",
    "search",
    "domain",
    "train",
    "evolve",
    "cli",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"rstar_jax.{name}")
    raise AttributeError(f"module 'rstar_jax' has no attribute {name!r}")
