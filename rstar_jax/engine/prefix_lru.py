"""A byte-bounded LRU of KV prefixes: the policy proposer's per-node cache."""
from __future__ import annotations

import collections
from typing import Callable, Hashable


class PrefixLRU:
    """key -> value, least recently used evicted first once the values' bytes pass ``max_bytes``.

    size: the bytes of a value (default ``value.nbytes``; e.g. a sum over a dict of Prefixes).
    """

    def __init__(self, max_bytes: int, size: Callable[[object], int] = lambda v: v.nbytes):
        self.max_bytes, self.size = max_bytes, size
        self._items: collections.OrderedDict[Hashable, object] = collections.OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def pop(self, key: Hashable):
        """Remove and return the value, or None."""
        value = self._items.pop(key, None)
        if value is not None:
            self.nbytes -= self.size(value)
        return value

    def put(self, key: Hashable, value) -> None:
        """Insert (replacing any old value of ``key``), then evict down to the budget."""
        self.pop(key)
        self._items[key] = value
        self.nbytes += self.size(value)
        while self.nbytes > self.max_bytes and self._items:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= self.size(dropped)
