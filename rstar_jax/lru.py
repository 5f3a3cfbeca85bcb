"""One bounded least-recently-used mapping for every cache in the package.

The bound is on the sum of ``size(value)`` over the entries: with the default size (1 an
entry) it counts entries (the sandbox's result cache), with ``size=nbytes`` it counts
bytes.
"""

from __future__ import annotations

import collections
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING = object()


def one(value: object) -> int:
    """The count size: every entry weighs 1."""
    return 1


def nbytes(value) -> int:
    """The byte size of an array-like (its ``nbytes``)."""
    return value.nbytes


class LRU(Generic[K, V]):
    """key -> value; after each ``put`` the least recently used entries are evicted until
    the sizes sum to at most ``capacity``. A value bigger than ``capacity`` alone is not
    kept (so capacity 0 keeps nothing). A value's size is taken once, when it is put.

    ``get`` refreshes an entry's recency and counts ``hits``/``misses``; ``pop`` removes
    an entry; ``in`` and ``len`` change nothing. ``used`` is the current sum of sizes.
    """

    def __init__(self, capacity: int, size: Callable[[V], int] = one):
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity, self.size = capacity, size
        self._items: collections.OrderedDict[K, tuple[V, int]] = collections.OrderedDict()
        self.used = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K, default=None):
        """The value of ``key`` (now the most recently used), or ``default``."""
        item = self._items.get(key, _MISSING)
        if item is _MISSING:
            self.misses += 1
            return default
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def pop(self, key: K, default=None):
        """Remove and return the value of ``key``, or ``default``."""
        item = self._items.pop(key, _MISSING)
        if item is _MISSING:
            return default
        self.used -= item[1]
        return item[0]

    def put(self, key: K, value: V) -> None:
        """Insert as the most recently used (replacing any old value of ``key``), then evict
        down to the capacity; a value bigger than the capacity is dropped instead."""
        self.pop(key)
        n = self.size(value)
        if n > self.capacity:
            return
        self._items[key] = (value, n)
        self.used += n
        while self.used > self.capacity:
            _, (_, dropped) = self._items.popitem(last=False)
            self.used -= dropped

    def clear(self) -> None:
        self._items.clear()
        self.used = 0
