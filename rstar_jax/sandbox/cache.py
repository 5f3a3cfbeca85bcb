"""An LRU cache of execution results keyed by program hash.

In a search tree the same path prefix is executed over and over (every
sibling re-runs its parent's steps), so results are memoised in the parent.
Keys are digests, not the programs, to keep memory flat for long programs.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

from rstar_jax.lru import LRU

V = TypeVar("V")


def program_key(program: str) -> bytes:
    """A 16-byte digest identifying a program's exact text."""
    return hashlib.blake2b(program.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class LRUCache(LRU[bytes, V]):
    """At most ``max_entries`` results (0 disables caching), least recently used evicted
    first, with hit/miss counts: ``rstar_jax.lru.LRU`` counting entries."""

    def __init__(self, max_entries: int):
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        super().__init__(max_entries)

    @property
    def max_entries(self) -> int:
        return self.capacity
