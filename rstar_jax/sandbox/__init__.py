"""Host-side sandbox for model-written programs (docs/DESIGN.md §6; docs/SANDBOX.md).

``Sandbox.run_many(programs)`` runs each program in a fresh process forked from a
pristine zygote inside an OS-level wall (bubblewrap namespaces, seccomp, rlimits,
cgroups), or from the paused process of the program it extends, and returns
``ExecResult``s decided by the worker (exit status, its own pipes, its deadline).
"""

from rstar_jax.sandbox.cache import LRUCache, program_key
from rstar_jax.sandbox.launch import Isolation
from rstar_jax.sandbox.limits import Limits
from rstar_jax.sandbox.pool import ExecResult, Sandbox

__all__ = ["ExecResult", "Isolation", "LRUCache", "Limits", "Sandbox", "program_key"]
