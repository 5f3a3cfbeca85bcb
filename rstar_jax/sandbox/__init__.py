"""Host-side sandbox for model-written programs (docs/DESIGN.md §6; docs/SANDBOX.md).

``Sandbox.run_many(programs)`` runs each program in a forked, confined child of
a persistent worker process (no JAX in the workers) and returns ``ExecResult``s.
"""

from rstar_jax.sandbox.cache import LRUCache, program_key
from rstar_jax.sandbox.launch import Isolation
from rstar_jax.sandbox.limits import Limits
from rstar_jax.sandbox.pool import ExecResult, Sandbox

__all__ = ["ExecResult", "Isolation", "LRUCache", "Limits", "Sandbox", "program_key"]
