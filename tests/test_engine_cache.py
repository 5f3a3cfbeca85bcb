"""The engine's KV reuse against recomputation: continuing from a cached prefix, PPM scoring
(batched and grouped by shared prefix), and decode-batch compaction against lockstep."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from rstar_jax import models
from rstar_jax.engine import Engine
from tests.engine_helpers import compiled, prompts_of

NEW = 12


def test_continue_from_cached_prefix(tiny):
    config, params, _, _ = tiny
    engine = Engine(config, params)
    prompts = prompts_of([5, 9], config.vocab_size, seed=5)
    first, _ = engine.generate(prompts, n=2, max_new_tokens=NEW, temperature=1.0, seed=[1, 2], return_prefix=True)
    comps = [c for o in first for c in o]
    for p, o in zip(prompts, first):
        for c in o:
            assert c.prefix.tokens == tuple(p) + c.token_ids[:-1]  # the KV the rows hold
    # three prompts continue their prefix's text (+ 2 appended tokens); the fourth leaves it after 4 tokens
    longer = [p + list(c.token_ids) + [7, 8] for p, o in zip(prompts, first) for c in o]
    longer[3] = list(comps[3].prefix.tokens[:4]) + [3, 3, 3]
    seeds = [3, 4, 5, 6]
    cont, stats = engine.generate(
        longer, n=2, max_new_tokens=NEW, temperature=1.0, seed=seeds, prefixes=[c.prefix for c in comps]
    )
    # reused: all but the last completion token and the 2 appended; the common 4 of the fourth
    assert stats.prefix_reused == sum(len(q) - 3 for q in longer[:3]) + 4
    fresh, stats = engine.generate(longer, n=2, max_new_tokens=NEW, temperature=1.0, seed=seeds)
    assert stats.prefix_reused == 0
    for o, r in zip(cont, fresh):
        for c, d in zip(o, r):
            assert c.token_ids == d.token_ids and c.logprob == pytest.approx(d.logprob, abs=1e-4)


def test_ppm_scores_batched(tiny):
    config, params, _, _ = tiny
    pconfig, pparams = models.init_value_head(config, params, jax.random.key(1))
    engine = Engine(pconfig, pparams)
    texts = prompts_of([3, 17, 9, 30, 12], config.vocab_size, seed=6)
    got = engine.score(texts)
    ids, mask = np.zeros((len(texts), 32), np.int32), np.zeros((len(texts), 32), np.int32)
    for i, t in enumerate(texts):  # right padding here, left padding in the engine
        ids[i, : len(t)], mask[i, : len(t)] = t, 1
    ref = jax.jit(models.ppm_scores, static_argnums=0)(pconfig, pparams, ids, mask)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    counts = compiled()
    engine.score(prompts_of([4, 15, 10, 29, 11], config.vocab_size, seed=7))  # same buckets
    assert compiled() == counts
    with pytest.raises(ValueError, match="value head"):
        Engine(config, params).score(texts)


def test_ppm_scores_grouped_share_prefix(tiny):
    """Siblings scored over their shared prefix (once) equal full-sequence scores."""
    config, params, _, _ = tiny
    pconfig, pparams = models.init_value_head(config, params, jax.random.key(2))
    engine = Engine(pconfig, pparams)
    rng = np.random.default_rng(3)
    stems = prompts_of([20, 7, 1], config.vocab_size, seed=8)
    texts, groups = [], []
    for g, stem in enumerate(stems):
        for _ in range(int(rng.integers(1, 5))):
            texts.append(list(stem) + rng.integers(1, config.vocab_size, int(rng.integers(1, 9))).tolist())
            groups.append(g)
    texts.append(list(stems[0]))  # a member that is the whole shared prefix
    groups.append(0)
    ref = engine.score(texts)
    got = engine.score(texts, groups=groups)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    ids, mask = np.zeros((len(texts), 32), np.int32), np.zeros((len(texts), 32), np.int32)
    for i, t in enumerate(texts):
        ids[i, : len(t)], mask[i, : len(t)] = t, 1
    np.testing.assert_allclose(
        got, jax.jit(models.ppm_scores, static_argnums=0)(pconfig, pparams, ids, mask), atol=1e-5
    )


def test_compaction_equals_lockstep(tiny):
    """Finished prompts leaving the batch between decode calls change no sample, logprob or KV."""
    config, params, _, _ = tiny
    # prompts near max_len (128) get smaller budgets, so they finish at different steps
    prompts = prompts_of([5, 104, 108, 112, 116, 120], config.vocab_size, seed=4)  # budgets 40, 24, ..., 8
    kw = dict(n=2, max_new_tokens=40, temperature=1.0, seed=[1, 2, 3, 4, 5, 6], return_prefix=True, chunk=4)
    packed, lockstep = Engine(config, params, compact=True), Engine(config, params)
    (out, packed_stats), (ref, lockstep_stats) = packed.generate(prompts, **kw), lockstep.generate(prompts, **kw)
    assert packed_stats.compactions >= 2 and lockstep_stats.compactions == 0
    assert packed_stats.decode_slots < lockstep_stats.decode_slots
    assert packed_stats.new_tokens == lockstep_stats.new_tokens == 2 * (40 + 24 + 20 + 16 + 12 + 8)
    for o, r in zip(out, ref):
        for c, d in zip(o, r):
            assert c.token_ids == d.token_ids and c.logprob == pytest.approx(d.logprob, abs=1e-4)
            m = len(c.prefix.tokens)
            assert c.prefix.tokens == d.prefix.tokens
            np.testing.assert_allclose(c.prefix.k[..., :m], d.prefix.k[..., :m], atol=1e-5)
            np.testing.assert_allclose(c.prefix.v[..., :m, :], d.prefix.v[..., :m, :], atol=1e-5)


def test_compaction_plan_unit(tiny):
    """Which prompt slots and rows a compaction keeps: every unfinished row, at most half the rows."""
    config, params, _, _ = tiny
    engine = Engine(config, params, compact=True)
    done = np.ones((8, 4), bool)  # 8 prompts x 4 rows
    done[1, [0, 2]] = False
    done[6, 3] = False
    prompts, rows = engine._compaction(done.reshape(-1), 8)
    # 2 live prompts (a bucket of 2), n' = 2 (the most unfinished rows of one prompt)
    assert prompts.tolist() == [1, 6] and rows.tolist() == [4, 6, 27, 24]
    assert not done.reshape(-1)[rows].all() and (~done).sum() == (~done.reshape(-1)[rows]).sum()
    done[:4, :] = False  # 5 live prompts (a bucket of 6) x 4 rows: more than half of 32
    assert engine._compaction(done.reshape(-1), 8) is None
    done[:] = True
    done[5, 1] = False  # bucket 1 x n' 1
    assert [a.tolist() for a in engine._compaction(done.reshape(-1), 8)] == [[5], [21]]


def test_decode_batches_fit_the_memory_budget(tiny):
    """A budget that fits only a few rows caps the decode batch (a power of two) without changing
    any sample; a budget below the model itself is refused before anything compiles."""
    from rstar_jax.engine.buckets import row_bytes, rows_that_fit
    from rstar_jax.errors import UserError
    from rstar_jax.memory import GB

    config, params, _, _ = tiny
    weights = config.num_params() * 4
    budget = weights + 5 * row_bytes(config, config.max_position_embeddings)  # room for 5 rows
    assert rows_that_fit(config, config.max_position_embeddings, budget) == 5
    small = Engine(config, params, memory_gb=budget / GB)
    assert small.max_rows == 4
    prompts = prompts_of([3, 7, 5], config.vocab_size, seed=9)
    kw = dict(n=3, max_new_tokens=6, temperature=1.0, seed=4)
    (got, _), (want, _) = small.generate(prompts, **kw), Engine(config, params).generate(prompts, **kw)
    assert [[c.token_ids for c in cs] for cs in got] == [[c.token_ids for c in cs] for cs in want]
    with pytest.raises(UserError, match="do not fit the .* GB budget"):
        Engine(config, params, memory_gb=weights / 2 / GB)
