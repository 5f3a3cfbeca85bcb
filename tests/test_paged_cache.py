"""The paged, tree-owned KV cache (``engine.pages``): a continuation's KV shares its prompt's pages
and equals the path-copy prefixes the engine returns otherwise; every page comes back."""

from __future__ import annotations

import numpy as np
import pytest

from rstar_jax.engine import Engine
from rstar_jax.engine.pages import PagePool, PoolFull, pages_needed
from tests.engine_helpers import prompts_of

NEW = 12


def held(pool: PagePool) -> int:
    return pool.in_use


def test_paged_prefixes_equal_path_copies_and_share_pages(tiny):
    config, params, _, _ = tiny
    engine = Engine(config, params)
    pool = PagePool(config, page=4, max_pages=512, initial_pages=2)  # small pages: many partial ones, growth
    prompts = prompts_of([5, 9, 13], config.vocab_size, seed=5)
    kw = dict(n=2, max_new_tokens=NEW, temperature=1.0, seed=[1, 2, 3], return_prefix=True)
    copies, _ = engine.generate(prompts, **kw)
    paged, _ = engine.generate(prompts, pages=pool, **kw)
    for o, q in zip(copies, paged):
        for c, d in zip(o, q):
            assert c.token_ids == d.token_ids and c.logprob == d.logprob
            assert d.prefix.tokens == c.prefix.tokens
            n = len(d.prefix.tokens)
            k, v = pool.gather([d.prefix], [n], 1, n)
            np.testing.assert_array_equal(np.asarray(k[0]), np.asarray(c.prefix.k[..., :n]))
            np.testing.assert_array_equal(np.asarray(v[0]), np.asarray(c.prefix.v[..., :n, :]))
    # the two samples of a prompt share its full pages: only their tails are their own
    for p, (a, b) in zip(prompts, paged):
        full = len(p) // pool.page
        assert a.prefix.pages[:full] == b.prefix.pages[:full] and set(a.prefix.pages[full:]).isdisjoint(b.prefix.pages)
    # continuing (two appended tokens) from paged prefixes draws what fresh prefill draws, bit for bit
    comps = [c for o in paged for c in o]
    longer = [list(c.prefix.tokens) + [c.token_ids[-1], 7, 8] for c in comps]
    seeds = list(range(10, 16))
    cont, stats = engine.generate(
        longer, n=2, max_new_tokens=NEW, temperature=1.0, seed=seeds, prefixes=[c.prefix for c in comps], pages=pool
    )
    assert stats.prefix_reused == sum(len(c.prefix.tokens) for c in comps)
    ref, _ = engine.generate(
        longer, n=2, max_new_tokens=NEW, temperature=1.0, seed=seeds, prefixes=[c.prefix for o in copies for c in o]
    )
    assert [[c.token_ids for c in o] for o in cont] == [[c.token_ids for c in o] for o in ref]
    for c in comps:
        pool.release(c.prefix)
    assert held(pool) == 0


def test_pool_refcounts_budget_and_bound(tiny):
    config, params, _, _ = tiny
    engine = Engine(config, params)
    pool = PagePool(config, page=8, max_pages=6)
    with pytest.raises(PoolFull):
        pool.alloc(7)
    got = pool.alloc(6)
    assert sorted(got) == list(range(1, 7)) and pool.free == 0  # page 0 is scratch
    pool.retain(got[:2])
    from rstar_jax.engine.pages import PagedPrefix

    pool.release(PagedPrefix((), tuple(got)))
    assert pool.in_use == 2
    pool.release(PagedPrefix((), tuple(got[:2])))
    assert pool.in_use == 0
    with pytest.raises(AssertionError):
        pool.release(PagedPrefix((), tuple(got[:1])))
    # pages_needed bounds what a call allocates
    big = PagePool(config, page=4, max_pages=4096)
    prompts = prompts_of([3, 8, 11], config.vocab_size, seed=2)
    out, _ = engine.generate(prompts, n=3, max_new_tokens=NEW, temperature=1.0, pages=big, return_prefix=True)
    assert 0 < big.peak_in_use <= pages_needed(list(map(len, prompts)), [0, 0, 0], 3, NEW, 4)
    for o in out:
        for c in o:
            big.release(c.prefix)
    assert big.in_use == 0
