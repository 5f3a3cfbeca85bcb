"""An LRU cache of execution results keyed by program hash.

In a search tree the same path prefix is executed over and over (every
sibling re-runs its parent's steps), so results are memoised in the parent.
Keys are digests, not the programs, to keep memory flat for long programs.
"""
from __future__ import annotations

import collections
import hashlib
from typing import Generic, TypeVar

V = TypeVar("V")


def program_key(program: str) -> bytes:
    """A 16-byte digest identifying a program's exact text."""
    return hashlib.blake2b(program.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class LRUCache(Generic[V]):
    """Bounded mapping with least-recently-used eviction and hit/miss counts."""

    def __init__(self, max_entries: int):
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._data: collections.OrderedDict[bytes, V] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> V | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: bytes, value: V) -> None:
        if self.max_entries == 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: bytes) -> bool:
        return key in self._data
