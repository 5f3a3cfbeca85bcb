"""Losses against float64 numpy, packing and masks, the row stream, the optimizer schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rstar_jax.train.batching import (
    EncodedGroup,
    EncodedSFT,
    RowStream,
    first_fit,
    group_caps,
    pack_groups,
    pack_sft,
)
from rstar_jax.train.config import SFTConfig
from rstar_jax.train.losses import RewardLoss, bt_loss, packed_mask, token_nll
from rstar_jax.train.state import schedule


def _np_bt(r_pos, r_neg, w):
    d = r_pos.astype(np.float64) - r_neg
    return np.sum(w * np.log1p(np.exp(-d))) / np.sum(w)


def test_bt_loss_and_gradient_match_float64_numpy():
    rng = np.random.RandomState(0)
    r_pos, r_neg = rng.randn(2, 14) * 3
    # 3 prefixes with 4, 6 and 3 pairs (weights 1/4, 1/6, 1/3), then a padded pair (weight 0)
    w = np.array([0.25] * 4 + [1 / 6] * 6 + [1 / 3] * 3 + [0.0])
    loss, (g_pos, g_neg) = jax.value_and_grad(bt_loss, argnums=(0, 1))(
        jnp.float32(r_pos), jnp.float32(r_neg), jnp.float32(w)
    )
    np.testing.assert_allclose(float(loss), _np_bt(r_pos, r_neg, w), rtol=1e-6)
    # d/d r_pos of w*softplus(-(r_pos - r_neg)) / sum(w) = -w * sigmoid(-(d)) / sum(w)
    d = r_pos.astype(np.float64) - r_neg
    ref = -w / (1 + np.exp(d)) / w.sum()
    np.testing.assert_allclose(np.asarray(g_pos), ref, atol=1e-7)
    np.testing.assert_allclose(np.asarray(g_neg), -ref, atol=1e-7)
    # the per-prefix mean: equal to averaging each prefix's mean pair loss
    per = [_np_bt(r_pos[a:b], r_neg[a:b], np.ones(b - a)) for a, b in ((0, 4), (4, 10), (10, 13))]
    np.testing.assert_allclose(float(loss), np.mean(per), rtol=1e-6)


def test_token_nll_matches_numpy():
    rng = np.random.RandomState(1)
    logits, targets = rng.randn(3, 5, 11) * 4, rng.randint(0, 11, (3, 5))
    ref = np.log(np.exp(logits).sum(-1)) - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(token_nll(jnp.float32(logits), targets)), ref, rtol=1e-5, atol=1e-5)


def test_packed_mask_segments_and_branches():
    seg = jnp.array([[1, 1, 1, 1, 1, 2, 2, 0]])
    br = jnp.array([[0, 0, 1, 2, 2, 0, 3, 0]])
    m = np.asarray(packed_mask(seg, br))[0].astype(int)
    expect = np.array(
        [
            [1, 0, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0],  # branch 1 sees the prefix and itself
            [1, 1, 0, 1, 0, 0, 0, 0],  # branch 2 does not see branch 1
            [1, 1, 0, 1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 1, 0, 0],  # a new segment sees nothing before it
            [0, 0, 0, 0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],  # padding
        ]
    )
    np.testing.assert_array_equal(m, expect)
    np.testing.assert_array_equal(np.asarray(packed_mask(seg))[0, 3].astype(int), [1, 1, 1, 1, 0, 0, 0, 0])


def test_pack_sft_layout():
    items = [
        EncodedSFT(np.array([5, 6, 7, 8], np.int32), 2),
        EncodedSFT(np.array([9, 10, 11], np.int32), 1),
        EncodedSFT(np.array([1, 2, 3, 4, 5, 6], np.int32), 3),
    ]
    rows = pack_sft(items, [0, 1, 2], 8)
    np.testing.assert_array_equal(rows["tokens"], [[5, 6, 7, 8, 9, 10, 11, 0], [1, 2, 3, 4, 5, 6, 0, 0]])
    np.testing.assert_array_equal(rows["segments"], [[1, 1, 1, 1, 2, 2, 2, 0], [1] * 6 + [0, 0]])
    np.testing.assert_array_equal(rows["positions"], [[0, 1, 2, 3, 0, 1, 2, 0], [0, 1, 2, 3, 4, 5, 0, 0]])
    # weights mark positions whose next token is a solution token of the same segment
    np.testing.assert_array_equal(rows["weights"], [[0, 1, 1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(rows["targets"][0, :3], [6, 7, 8])


def test_pack_groups_layout_and_weights():
    g = EncodedGroup(
        np.array([1, 2, 3], np.int32),
        (np.array([4, 5], np.int32), np.array([6], np.int32), np.array([7, 8], np.int32)),
        np.array([0.9, -0.5, -1.0], np.float32),
        np.array([1, 0, 0], np.float32),
        np.array([[0, 1], [0, 2]], np.int32),
    )
    caps = group_caps([g, g], 16)
    assert caps == (8, 8)
    rows = pack_groups([g, g], [0, 1], 16, caps)
    np.testing.assert_array_equal(rows["tokens"][0], [1, 2, 3, 4, 5, 6, 7, 8] * 2)
    np.testing.assert_array_equal(rows["positions"][0], [0, 1, 2, 3, 4, 3, 3, 4] * 2)
    np.testing.assert_array_equal(rows["branches"][0], [0, 0, 0, 1, 1, 2, 3, 3, 0, 0, 0, 4, 4, 5, 6, 6])
    np.testing.assert_array_equal(rows["cand_index"][0, :6], [4, 5, 7, 12, 13, 15])
    np.testing.assert_array_equal(rows["pair_a"][0, :4], [0, 0, 3, 3])
    np.testing.assert_array_equal(rows["pair_b"][0, :4], [1, 2, 4, 5])
    assert rows["pair_w"][0].sum() == pytest.approx(2.0)  # one per prefix
    # caps split rows even when tokens would fit
    assert len(pack_groups([g, g], [0, 1], 16, (3, 2))["tokens"]) == 2
    with pytest.raises(ValueError, match="more than seq_len"):
        first_fit([20], [0], 16)


def test_reward_kinds_against_numpy(monkeypatch):
    """PPM, PQM and ORM losses from fixed candidate scores through the packed pair/candidate tables."""
    r = np.array([[1.5, -0.5, 0.2, 0.0]], np.float32)
    batch = {
        "cand_mask": np.array([[1, 1, 1, 0]], np.float32),
        "cand_q": np.array([[0.8, -0.6, 0.1, 0]], np.float32),
        "cand_label": np.array([[1, 0, 0, 0]], np.float32),
        "pair_a": np.array([[0, 0]]),
        "pair_b": np.array([[1, 2]]),
        "pair_w": np.array([[0.5, 0.5]], np.float32),
    }
    monkeypatch.setattr("rstar_jax.train.losses.candidate_scores", lambda *a: jnp.asarray(r))
    pqm, m = RewardLoss("pqm", 2.0)(None, None, batch)
    orm, _ = RewardLoss("orm")(None, None, batch)
    ppm, _ = RewardLoss("ppm")(None, None, batch)
    rr, mask = r[0, :3].astype(np.float64), slice(0, 3)
    np.testing.assert_allclose(float(pqm), np.mean((np.tanh(rr / 2) - batch["cand_q"][0, mask]) ** 2), rtol=1e-6)
    p = 1 / (1 + np.exp(-rr))
    y = batch["cand_label"][0, mask]
    np.testing.assert_allclose(float(orm), np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))), rtol=1e-6)
    np.testing.assert_allclose(float(ppm), _np_bt(rr[[0, 0]], rr[[1, 2]], np.array([0.5, 0.5])), rtol=1e-6)
    assert float(m["pair_acc"]) == 1.0 and float(m["pairs"]) == 2.0
    with pytest.raises(ValueError, match="ppm, pqm or orm"):
        RewardLoss("prm")


def test_row_stream_is_deterministic_across_epochs():
    items = [EncodedSFT(np.arange(1, 2 + i % 5, dtype=np.int32), 0) for i in range(11)]
    make = lambda: RowStream(lambda order: pack_sft(items, order, 8), len(items), 3, seed=7)  # noqa: E731
    a, b = make(), make()
    n = a.rows_in_epoch(0)
    whole = np.concatenate([a.epoch(e)["tokens"] for e in range(8)])
    for step in reversed(range(8)):  # any order of access gives the same batches
        np.testing.assert_array_equal(b.batch(step)["tokens"], whole[3 * step : 3 * step + 3])
    assert not np.array_equal(a.epoch(0)["tokens"], a.epoch(1)["tokens"][:n])  # a fresh permutation per epoch
    with pytest.raises(ValueError, match="no training examples"):
        RowStream(lambda o: {}, 0, 3, 0)


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedule_warmup_and_decay(kind):
    s = schedule(SFTConfig(lr=1.0, warmup_steps=4, schedule=kind), 20)
    assert float(s(0)) == 0.0 and float(s(2)) == pytest.approx(0.5) and float(s(4)) == pytest.approx(1.0)
    end = float(s(20))
    assert end == pytest.approx(1.0 if kind == "constant" else 0.0, abs=1e-6)
    if kind == "cosine":
        assert float(s(12)) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="schedule"):
        SFTConfig(schedule="exp")
