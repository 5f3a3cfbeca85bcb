"""The KV of proposed but not yet expanded nodes, owned by the search.

Every candidate the policy writes leaves its KV (prompt + step) behind; when the search
later expands that child, only the text appended since (the step's last token, an
``<output>`` block) is prefilled. Entries are keyed by (problem id, sample id, parent
path) -> {candidate text: KV}: the sample id keeps the chains of one problem (all at the
same root) apart.

Paged (the default): the KV lives in a ``PagePool``; a candidate's prefix shares its
ancestors' pages, so a node's KV is computed once and held once however many
descendants read it. An entry is dropped when its node is expanded (its pages live on
in its children's), can no longer be selected (``drop``), or, least recently used first,
when a call needs pages the budget does not have (a later expansion of that node
re-prefills its path). Copies (``pool=None``): each prefix is its own copy of the whole
path, entries dropped past ``capacity`` bytes.
"""

from __future__ import annotations

import collections
from typing import Callable

from rstar_jax.engine import Prefix
from rstar_jax.engine.pages import PagedPrefix, PagePool

Key = tuple[str, int, tuple[str, ...]]  # (problem id, sample id, parent path)
KV = Prefix | PagedPrefix


class NodeKV:
    """Per-candidate KV, least recently used first (module docstring)."""

    def __init__(self, capacity: int, pool: PagePool | None = None):
        self.capacity, self.pool = capacity, pool
        self._entries: collections.OrderedDict[Key, dict[str, KV]] = collections.OrderedDict()
        self._copy_bytes = 0
        self.evicted_pages = 0  # pages freed to make room for a call (paged)
        self.evicted_entries = 0

    @property
    def nbytes(self) -> int:
        """Device bytes the held KV takes (pages in use, or the copies' bytes)."""
        return self.pool.in_use * self.pool.page_bytes if self.pool else self._copy_bytes

    def take(self, key: Key, text: str) -> KV | None:
        """Remove and return the KV of the candidate of ``key`` that ``text`` starts with (the
        longest: a step may have grown an ``<output>`` block since it was proposed)."""
        entry = self._entries.get(key)
        if not entry:
            return None
        texts = [t for t in entry if text.startswith(t)]
        if not texts:
            return None
        kv = entry.pop(max(texts, key=len))
        self._copy_bytes -= self._size(kv)
        if entry:
            self._entries.move_to_end(key)  # its siblings are the most recently used now
        else:
            del self._entries[key]
        return kv

    def put(self, key: Key, entry: dict[str, KV]) -> None:
        """Keep ``entry`` as the most recently used (replacing any old one of ``key``)."""
        self._release(self._entries.pop(key, {}))
        size = sum(map(self._size, entry.values()))
        if self.pool is None and size > self.capacity:
            return
        self._entries[key] = entry
        self._copy_bytes += size
        while self.pool is None and self._copy_bytes > self.capacity:
            self._release(self._entries.popitem(last=False)[1])
            self.evicted_entries += 1

    def release(self, kv: KV | None) -> None:
        """Give back one taken KV (its node has been expanded)."""
        if self.pool is not None and isinstance(kv, PagedPrefix):
            self.pool.release(kv)

    def drop(self, which: Callable[[Key], bool]) -> None:
        """Drop the entries whose key ``which`` accepts."""
        for key in [k for k in self._entries if which(k)]:
            self._release(self._entries.pop(key))

    def make_room(self, pages: int) -> bool:
        """Free pages until ``pages`` are free, dropping least recently used entries; False if
        even an empty pool is too small."""
        if self.pool is None:
            return True
        if pages > self.pool.max_pages:
            return False
        while self.pool.free < pages and self._entries:
            before = self.pool.free
            self._release(self._entries.popitem(last=False)[1])
            self.evicted_pages += self.pool.free - before
            self.evicted_entries += 1
        return self.pool.free >= pages

    def _release(self, entry: dict[str, KV]) -> None:
        for kv in entry.values():
            self._copy_bytes -= self._size(kv)
            self.release(kv)

    def _size(self, kv: KV) -> int:
        return kv.nbytes if isinstance(kv, Prefix) else 0
