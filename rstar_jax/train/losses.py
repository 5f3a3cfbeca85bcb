"""Losses of the policy and the reward models, over packed batches (``batching``).

A loss is a hashable object (the trainer's compiled step is keyed on it) with
``sums(config, params, batch) -> Sums``: every metric as a (numerator, denominator)
pair of float32 scalars that add up over the rows of a batch, ``"loss"`` among them.
A batch's value of a metric is ``numerator / denominator`` (``ratios``; a count has
no denominator), so a batch split into micro-batches gives the full batch's loss,
gradient and metrics by adding the pairs and dividing once (a mean of per-micro-batch
means would overweight micro-batches with few target tokens or pairs). Calling the
loss, ``loss(config, params, batch)``, returns ``(loss, metrics)`` of one batch.
"""

from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp

from rstar_jax.models import ModelConfig, hidden_states, project
from rstar_jax.models.transformer import Transformer


def packed_mask(segments: jax.Array, branches: jax.Array | None = None) -> jax.Array:
    """[B, T, T] bool: causal, within a segment (0 = padding sees nothing but is harmless),
    and with ``branches`` a token sees its segment's prefix (branch 0) and its own branch."""
    t = segments.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))
    same = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] > 0)
    if branches is not None:
        same &= (branches[:, None, :] == 0) | (branches[:, :, None] == branches[:, None, :])
    return causal[None] & same


# metric -> (numerator, denominator), both additive over rows; a count (target tokens, pairs) has
# denominator None: its value is its sum
Sums = dict[str, tuple[jax.Array, jax.Array | None]]


def ratios(sums: Sums) -> dict[str, jax.Array]:
    """Each metric's value: numerator / denominator (0 where nothing is weighted), a count's sum."""
    return {k: num if den is None else num / jnp.maximum(den, 1e-9) for k, (num, den) in sums.items()}


def _masked_mean(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1e-9)


def _weighted(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sum(x * w), sum(w)): the parts of a weighted mean."""
    return jnp.sum(x * w), jnp.sum(w)


class _Loss(abc.ABC):
    """A loss given as additive (numerator, denominator) sums, so micro-batches can be summed
    before the one division; calling it gives (loss, metrics) of a whole batch."""

    @abc.abstractmethod
    def sums(self, config: ModelConfig, params, batch) -> Sums:
        """Every metric as a (numerator, denominator or None) pair over ``batch``."""

    def __call__(self, config: ModelConfig, params, batch) -> tuple[jax.Array, dict]:
        metrics = ratios(self.sums(config, params, batch))
        return metrics["loss"], metrics


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """-log softmax(logits)[target]: [..., V], [...] -> [...]. The one-hot product keeps the
    backward a fused elementwise op (a gather's gradient is a slow scatter on CPU)."""
    picked = jnp.sum(logits * jax.nn.one_hot(targets, logits.shape[-1], dtype=logits.dtype), axis=-1)
    return jax.nn.logsumexp(logits, axis=-1) - picked


@dataclasses.dataclass(frozen=True)
class SFTLoss(_Loss):
    """Mean next-token NLL over solution tokens (``weights``) of packed rows."""

    def sums(self, config: ModelConfig, params, batch) -> Sums:
        h = hidden_states(
            config, params, batch["tokens"], positions=batch["positions"], attn_mask=packed_mask(batch["segments"])
        )
        nll = token_nll(project(config, params, h), batch["targets"])
        num, tokens = _weighted(nll, batch["weights"])
        return {"loss": (num, tokens), "target_tokens": (tokens, None)}


sft_loss = SFTLoss()


def bt_loss(r_pos: jax.Array, r_neg: jax.Array, w: jax.Array) -> jax.Array:
    """Bradley-Terry: ``sum(w * -log sigmoid(r_pos - r_neg)) / sum(w)``; with w = 1 / (pairs of
    the prefix) this is the mean over prefixes of each prefix's mean pair loss."""
    return _masked_mean(-jax.nn.log_sigmoid(r_pos - r_neg), w)


def candidate_scores(config: ModelConfig, params, batch) -> jax.Array:
    """Raw value-head scores [B, C] of every candidate's last token (prefix computed once)."""
    h = hidden_states(
        config,
        params,
        batch["tokens"],
        positions=batch["positions"],
        attn_mask=packed_mask(batch["segments"], batch["branches"]),
    )
    last = jnp.take_along_axis(h, batch["cand_index"][..., None], axis=1)  # [B, C, D]
    return Transformer(config).apply({"params": params}, last, method=Transformer.score)


def _pairs(r: jax.Array, batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    take = lambda i: jnp.take_along_axis(r, batch[i], axis=1)  # noqa: E731
    return take("pair_a"), take("pair_b"), (batch["pair_w"] > 0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class RewardLoss(_Loss):
    """The loss of a reward model ``kind``: "ppm" (Bradley-Terry on pairs), "pqm" (MSE of
    tanh(r / squash_scale) to Q per candidate), "orm" (BCE of the outcome label per candidate).
    Every kind reports pairwise accuracy over the batch's pairs. (A frozen dataclass: hashable,
    so the trainer's compiled step is shared by equal losses.)"""

    kind: str
    squash_scale: float = 5.0

    def __post_init__(self):
        if self.kind not in ("ppm", "pqm", "orm"):
            raise ValueError(f"reward model kind must be ppm, pqm or orm, got {self.kind!r}")

    def sums(self, config: ModelConfig, params, batch) -> Sums:
        r = candidate_scores(config, params, batch)
        ra, rb, valid = _pairs(r, batch)
        if self.kind == "ppm":
            loss = _weighted(-jax.nn.log_sigmoid(ra - rb), batch["pair_w"])  # bt_loss's parts
        elif self.kind == "pqm":
            loss = _weighted((jnp.tanh(r / self.squash_scale) - batch["cand_q"]) ** 2, batch["cand_mask"])
        else:
            bce = jax.nn.softplus(r) - batch["cand_label"] * r  # -log sigmoid(r) or -log(1 - sigmoid(r))
            loss = _weighted(bce, batch["cand_mask"])
        acc, pairs = _weighted((ra > rb).astype(jnp.float32), valid)
        return {"loss": loss, "pair_acc": (acc, pairs), "pairs": (pairs, None)}
