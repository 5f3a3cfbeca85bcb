"""A paged KV pool owned by the caller (the search's trees): fixed-size pages, refcounts, page tables.

A sequence's KV is a ``PagedPrefix``: token t sits in slot t % page of page ``pages[t // page]``.
A continuation shares its parent's full pages (a reference each) and copies the tokens of the
parent's last, partial page into its own first page (copy on write), so every sequence is whole
pages plus at most one partial last page: the page-table form of vLLM's paged attention, which
``kernels.paged`` reads. The KV of a token is computed once, when its sequence is first
generated or prefilled, and written once; descendants only point at it.

Device arrays: k, v [L, N, page, Hkv, Dh] (layer l is the kernels' [N, page, Hkv, D]). Page 0 is
scratch: never handed out, it takes padded writes and pads gathers. The pool grows 4x at a time
up to ``max_pages`` (the caller's budget); the host side (refcounts) is plain numpy.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rstar_jax.models import ModelConfig

SCRATCH = 0  # the page padded reads and writes go to


@dataclasses.dataclass(frozen=True, eq=False)
class PagedPrefix:
    """The KV of ``tokens`` in a PagePool: ``pages`` [ceil(len(tokens) / page)] ids, one reference
    held on each (``PagePool.release`` drops them)."""

    tokens: tuple[int, ...]
    pages: tuple[int, ...]


class PoolFull(RuntimeError):
    """No free pages for a write (the caller makes room first: ``PagePool.free``)."""


def page_bytes(config: ModelConfig, page: int) -> int:
    """Device bytes of one page's K and V over all layers."""
    return 2 * config.num_layers * page * config.num_kv_heads * config.head_dim * jnp.dtype(config.dtype).itemsize


def pages_for(length: int, page: int) -> int:
    return -(-length // page)


class PagePool:
    """Pages of KV for one model: allocation, sharing (refcounts), writes and gathers.

    page:      token slots per page.
    max_pages: pages the pool may hold (the byte budget / ``page_bytes``), scratch excluded.
    """

    def __init__(self, config: ModelConfig, page: int = 16, max_pages: int = 4096, initial_pages: int = 4096):
        if page < 1 or max_pages < 1:
            raise ValueError(f"need page >= 1 and max_pages >= 1, got {page}, {max_pages}")
        self.config, self.page, self.max_pages = config, page, max_pages
        self.dtype = jnp.dtype(config.dtype)
        n = min(initial_pages, max_pages) + 1
        shape = (config.num_layers, n, page, config.num_kv_heads, config.head_dim)
        self.k, self.v = jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype)
        self.refs = np.zeros(n, np.int64)
        self.refs[SCRATCH] = 1  # never free
        self._idle = list(range(n - 1, 0, -1))  # unreferenced pages, lowest id last (popped first)
        self.peak_in_use = 0

    # --- host bookkeeping -------------------------------------------------------------
    @property
    def page_bytes(self) -> int:
        return page_bytes(self.config, self.page)

    @property
    def in_use(self) -> int:
        """Pages holding a reference (scratch excluded)."""
        return len(self.refs) - 1 - len(self._idle)

    @property
    def free(self) -> int:
        """Pages that can still be handed out (within ``max_pages``)."""
        return self.max_pages - self.in_use

    def alloc(self, n: int) -> list[int]:
        """``n`` fresh pages, one reference each (the pool grows if it must)."""
        if n > self.free:
            raise PoolFull(f"{n} pages wanted, {self.free} free of {self.max_pages}")
        if len(self._idle) < n:
            self._grow(len(self.refs) - len(self._idle) + n)
        got = [self._idle.pop() for _ in range(n)]
        self.refs[got] = 1
        self.peak_in_use = max(self.peak_in_use, self.in_use)
        return got

    def retain(self, pages: Sequence[int]) -> None:
        np.add.at(self.refs, np.asarray(pages, np.int64), 1)

    def release(self, prefix: PagedPrefix | None) -> None:
        """Drop ``prefix``'s references (its pages are free once nothing else holds them)."""
        if prefix is None or not prefix.pages:
            return
        idx = np.asarray(prefix.pages, np.int64)
        if (self.refs[idx] <= 0).any():
            raise AssertionError(f"released a page twice: {prefix.pages}")
        np.add.at(self.refs, idx, -1)
        self._idle.extend(int(p) for p in set(prefix.pages) if self.refs[p] == 0)

    def _grow(self, need: int) -> None:
        size = len(self.refs)
        new = min(max(4 * size, need), self.max_pages + 1)  # few sizes: each is a new program shape
        self.k, self.v = _pad_pages(self.k, new - size), _pad_pages(self.v, new - size)
        self.refs = np.concatenate([self.refs, np.zeros(new - size, np.int64)])
        self._idle[:0] = range(new - 1, size - 1, -1)  # after the pages already idle

    def slots(self, prefix: PagedPrefix, start: int, stop: int) -> np.ndarray:
        """Flat slots (page * page_size + offset) of ``prefix``'s tokens [start, stop)."""
        t = np.arange(start, stop)
        return np.asarray(prefix.pages, np.int64)[t // self.page] * self.page + t % self.page

    # --- continuations ----------------------------------------------------------------
    def extend(self, base: PagedPrefix | None, keep: int, tokens: Sequence[int]) -> tuple[PagedPrefix, int]:
        """A sequence ``tokens`` whose first ``keep`` tokens' KV is ``base``'s: its full pages are
        shared, the rest gets new pages. Returns (prefix, first token to write: the copy-on-write
        start ``keep // page * page``); the caller writes tokens [start, len(tokens)) (``write``)."""
        shared = keep // self.page if base is not None else 0
        own = list(base.pages[:shared]) if base is not None else []
        self.retain(own)
        start = shared * self.page
        return PagedPrefix(
            tuple(int(t) for t in tokens), tuple(own + self.alloc(pages_for(len(tokens) - start, self.page)))
        ), start

    # --- device -----------------------------------------------------------------------
    def gather(self, prefixes: Sequence[PagedPrefix | None], keeps: Sequence[int], rows: int, width: int):
        """The first ``keeps[i]`` tokens of each prefix as the engine's stacked layout:
        k [rows, L, Hkv, Dh, width], v [rows, L, Hkv, width, Dh] (slots past a keep hold junk)."""
        idx = np.full((rows, width), SCRATCH * self.page, np.int32)
        for i, (p, keep) in enumerate(zip(prefixes, keeps)):
            if keep:
                idx[i, :keep] = self.slots(p, 0, keep)
        return _gather(self.k, self.v, idx)

    def write(self, ks, vs, rows: np.ndarray, src: np.ndarray, dst: np.ndarray) -> None:
        """Copy cache slots into pool slots: for item m, token j of row ``rows[m]`` at slot
        ``src[m, j]`` of ks/vs (L x [X, Hkv, Dh, S] / L x [X, Hkv, S, Dh]) goes to flat pool slot
        ``dst[m, j]`` (padding: the scratch page)."""
        self.k, self.v = _write(self.k, self.v, tuple(ks), tuple(vs), rows, src, dst)

    def copy(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Pool slots ``src`` [X] copied to ``dst`` [X] (copy on write of a shared partial page)."""
        self.k, self.v = _copy(self.k, self.v, src, dst)


def pages_needed(prompt_lens: Sequence[int], kept: Sequence[int], n: int, max_new: int, page: int) -> int:
    """An upper bound on the pages one ``generate(..., pages=pool, return_prefix=True)`` call
    allocates: each prompt's new pages (from its last page shared with its prefix, which keeps
    ``kept`` tokens) and each of its n samples'."""
    per_row = pages_for(page - 1 + max_new, page)
    return sum(pages_for(length - keep // page * page, page) + n * per_row for length, keep in zip(prompt_lens, kept))


@functools.partial(jax.jit, static_argnames=("extra",))
def _pad_pages(a: jax.Array, extra: int) -> jax.Array:
    return jnp.pad(a, [(0, 0), (0, extra), (0, 0), (0, 0), (0, 0)])


@jax.jit
def _gather(k, v, idx):
    """k, v [L, N, page, Hkv, Dh]; idx [B, P] flat slots -> [B, L, Hkv, Dh, P], [B, L, Hkv, P, Dh]."""
    gk, gv = _flat(k)[:, idx], _flat(v)[:, idx]  # [L, B, P, Hkv, Dh]
    return gk.transpose(1, 0, 3, 4, 2), gv.transpose(1, 0, 3, 2, 4)


def _flat(a: jax.Array) -> jax.Array:
    """[L, N, page, Hkv, Dh] -> [L, N * page, Hkv, Dh] (slot-major)."""
    return a.reshape(a.shape[0], -1, *a.shape[3:])


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _write(k, v, ks, vs, rows, src, dst):
    """Scatter ks[l][rows[m], :, :, src[m, j]] (and vs alike) into flat pool slot dst[m, j]."""
    d = dst.reshape(-1)
    nk = jnp.stack([a[rows[:, None], :, :, src] for a in ks])  # [L, M, W, Hkv, Dh]
    nv = jnp.stack([a[rows[:, None], :, src, :] for a in vs])
    nk, nv = (x.reshape(x.shape[0], -1, *x.shape[3:]).astype(k.dtype) for x in (nk, nv))
    return _flat(k).at[:, d].set(nk).reshape(k.shape), _flat(v).at[:, d].set(nv).reshape(v.shape)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _copy(k, v, src, dst):
    fk, fv = _flat(k), _flat(v)
    return fk.at[:, dst].set(fk[:, src]).reshape(k.shape), fv.at[:, dst].set(fv[:, src]).reshape(v.shape)


# --- the engine's writes: a decode batch's new KV into pages ---------------------------


def write_prompts(pool: PagePool, shared, ids, prefixes, keeps, buckets) -> list[PagedPrefix]:
    """After prefill, each prompt's KV as a PagedPrefix (the kept prefix's full pages shared).

    shared: the decode cache's SharedPrefix, L x [Bp, Hkv, Dh, P + T]: prompt e's kept tokens at
    slots [0, keep), its prefilled rest left-padded to end at slot P + T.
    """
    width = shared.mask.shape[1]
    paths, items = [], []
    for e, (tok, pf, keep) in enumerate(zip(ids, prefixes, keeps)):
        path, start = pool.extend(pf, keep, tok)
        t = np.arange(start, len(tok))
        items.append((e, np.where(t < keep, t, width - len(tok) + t), pool.slots(path, start, len(tok))))
        paths.append(path)
    _write_items(pool, shared.k, shared.v, items, buckets)
    return paths


def write_rows(pool: PagePool, cache, rows, paths, seqs, buckets) -> list[PagedPrefix]:
    """At harvest, the KV of each decode row's prompt + completion[:-1] (``seqs``) as a
    PagedPrefix: its prompt's path (``paths``) shared, the rest in new pages. The row's own
    token j is in its own cache slot j (rows start together and stop feeding when done)."""
    if not len(rows):
        return []
    out, items, cow = [], [], []
    for row, path, seq in zip(rows, paths, seqs):
        n = len(path.tokens)
        child, start = pool.extend(path, n, seq)
        cow.append((pool.slots(path, start, n), pool.slots(child, start, n)))
        items.append((row, np.arange(len(seq) - n), pool.slots(child, n, len(seq))))
        out.append(child)
    src, dst = (np.concatenate(x) for x in zip(*cow))
    if len(src):
        size = 1 << (len(src) - 1).bit_length()  # up to rows x (page - 1) slots: a power of two, few programs
        pool.copy(*(np.pad(a, (0, size - len(a))).astype(np.int32) for a in (src, dst)))  # pads: scratch
    _write_items(pool, cache.k, cache.v, items, buckets)
    return out


def _write_items(pool: PagePool, ks, vs, items, buckets) -> None:
    """pool.write of items [(cache row, its slots [W_m], pool slots [W_m])], padded to buckets."""
    width = max((len(s) for _, s, _ in items), default=0)
    if not width:
        return
    m, w = buckets.rows(len(items)), buckets.tokens(width, "write length")
    rows, src, dst = np.zeros(m, np.int32), np.zeros((m, w), np.int32), np.zeros((m, w), np.int32)
    for i, (row, s, d) in enumerate(items):
        rows[i], src[i, : len(s)], dst[i, : len(d)] = row, s, d
    pool.write(ks, vs, rows, src, dst)
