"""The memory of a training step, estimated before anything compiles, and the micro-batch that fits.

A step holds, per device, a fixed part and a part per row of its micro-batch:

``fixed``: the float32 master params, the caller's copy of them, AdamW's two float32 moments
and two float32 gradient-sized buffers (the micro-batches' running sum and one micro-batch's
gradient), plus a compute-dtype copy of the params (bfloat16 compute; gathered whole under
FSDP) and the device's share of the global batch's rows.

``per_row``: the activations one packed row of ``seq_len`` = T tokens keeps for the backward
pass, ``T^2 (MASK + L H ATTN) + T (L LINEAR (5 D + 5 F + 3 H Dh + 4 Hkv Dh) e + EMBED D +
VOCAB V)`` bytes: the [T, T] packed attention mask, each layer's scores and probabilities of
its H query heads (the blocked causal attention, ``models.attention``, computes only the lower
triangle, in 64-query blocks), each layer's per-token tensors in the compute dtype (e bytes: q,
k, v and their RoPE'd copies, the MLP's gate, up and product, norms, residuals), the embedding
and, for the LM loss, the float32 logits over the vocabulary V with their softmax and one-hot.

The constants are calibrated against XLA's own account of the compiled step
(``jax.jit(...).lower(...).compile().memory_analysis()``: temp + argument + output - aliased
bytes) on CPU; ``tests/test_train_microbatch.py`` keeps the estimate within a factor of 2 of
it (measured: 1.01x for SFT at 32 x 256 in micro-batches of 16, 1.32x for PPM at 16 x 512 in 8s,
1.00x for PPM at 64 x 1,024 in 32s). Not yet calibrated on GPU/TPU, whose fusion differs.

The budget is ``memory_gb``, else the device's free memory (``memory_stats``, GPU/TPU) or,
on CPU, the host's available memory (``MemAvailable``, a cgroup limit, an address-space
rlimit) shared by the host's CPU devices, times a safety fraction. The micro-batch is the
largest divisor of the rows per device that fits (the largest power of two for the paper's
batch sizes).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh

from rstar_jax.errors import UserError
from rstar_jax.memory import GB, memory_budget
from rstar_jax.models import ModelConfig, init_params
from rstar_jax.models.sharding import param_shardings
from rstar_jax.train.config import TrainConfig

# Bytes per unit of each term, fitted (rounded up) to XLA:CPU's temp memory per row of 16- to
# 512-row steps (a few rows get less: XLA fuses small steps differently) over T 256..2048, 1..4
# layers, hidden 64..896, MLP 128..4864, 2..14 heads, vocab 400..4000, float32 and bfloat16:
# the estimate is 0.94-1.27x XLA's (1.0x at T 1024, hidden 64; 1.06x at hidden 896).
MASK = 2.0  # per T^2: the [T, T] bool packed mask and its broadcasts
ATTN = 7.0  # per T^2, layer and query head: the f32 lower triangle (2 bytes per T^2), ~3.5 copies
LINEAR = 1.2  # per token, layer and unit of 5 D + 5 F + 3 H Dh + 4 Hkv Dh, times e bytes
VOCAB = 12.0  # per token and vocabulary entry, LM loss only (f32 logits, one-hot, softmax)
EMBED = 12  # per token and hidden unit: the embedding output, final norm, RoPE tables


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """The chosen micro-batch and the estimate behind it (bytes per device)."""

    micro_batch: int  # rows per device per micro-step
    micro_steps: int  # micro-steps per optimizer step
    rows_per_device: int
    fixed_bytes: int
    row_bytes: int
    budget_bytes: int
    budget_source: str

    @property
    def estimate_bytes(self) -> int:
        return self.fixed_bytes + self.micro_batch * self.row_bytes

    def summary(self) -> dict:
        return {
            "micro_batch": self.micro_batch,
            "micro_steps": self.micro_steps,
            "memory": {
                "estimate_gb": round(self.estimate_bytes / GB, 3),
                "fixed_gb": round(self.fixed_bytes / GB, 3),
                "per_row_gb": round(self.row_bytes / GB, 4),
                "budget_gb": round(self.budget_bytes / GB, 3),
                "budget": self.budget_source,
            },
        }


def param_bytes_per_device(config: ModelConfig, mesh: Mesh) -> tuple[int, int]:
    """(float32 bytes of the params one device holds under the mesh's sharding rules, of all params)."""
    shapes = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    shardings = param_shardings(shapes, mesh)
    local = sum(
        4 * int(np.prod(sh.shard_shape(x.shape))) for x, sh in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings))
    )
    return local, 4 * sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


def activation_bytes_per_row(config: ModelConfig, seq_len: int, compute_dtype: str, lm_loss: bool) -> int:
    """Activations one packed row keeps for the backward pass (module docstring), per device
    (tensor parallelism splits the heads and the MLP)."""
    c, t = config, seq_len
    e = 3 if compute_dtype == "bfloat16" else 4  # bf16: norms, RoPE and softmax stay float32
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    widths = 5 * c.hidden_size + 5 * c.intermediate_size + 3 * q + 4 * kv
    quad = t * t * (MASK + c.num_layers * c.num_heads * ATTN)
    lin = t * (c.num_layers * LINEAR * widths * e + EMBED * c.hidden_size + (VOCAB * c.vocab_size if lm_loss else 0))
    return int(quad + lin)


def fixed_bytes(config: ModelConfig, cfg: TrainConfig, mesh: Mesh, row_bytes_in: int) -> int:
    """Training state and its transients, plus the device's share of the global batch (module docstring)."""
    local, whole = param_bytes_per_device(config, mesh)
    state = local * (1 + 1 + 2 + 2)
    if cfg.compute_dtype == "bfloat16":
        state += local // 2
    if mesh.shape["fsdp"] > 1:
        state += whole // mesh.shape["tensor"] // (2 if cfg.compute_dtype == "bfloat16" else 1)
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    return state + cfg.batch_size // shards * row_bytes_in


# --- the plan ----------------------------------------------------------------------------------
def _count(n: int) -> str:
    return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"


def plan_memory(config: ModelConfig, cfg: TrainConfig, mesh: Mesh, rows: dict) -> MemoryPlan:
    """The micro-batch of a step on ``rows`` (one packed epoch: its fields and dtypes): ``cfg.micro_batch``
    if set, else the largest divisor of the rows per device whose estimate fits the budget.
    Raises ``UserError`` (before anything compiles) when the setting cannot fit."""
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    per_device = cfg.batch_size // shards
    row_in = sum(int(np.prod(v.shape[1:])) * v.dtype.itemsize for v in rows.values())
    lm_loss = "targets" in rows
    fixed = fixed_bytes(config, cfg, mesh, row_in)
    per_row = activation_bytes_per_row(config, cfg.seq_len, cfg.compute_dtype, lm_loss)
    if mesh.shape["tensor"] > 1:
        per_row = per_row // mesh.shape["tensor"]
    budget, source = memory_budget(cfg.memory_gb)
    plan = lambda m: MemoryPlan(m, per_device // m, per_device, fixed, per_row, budget, source)  # noqa: E731
    what = (
        f"{fixed / GB:.2f} GB for the params, gradients, AdamW state and batch of "
        f"{_count(config.num_params())} params plus {per_row / GB:.3f} GB per row of seq_len={cfg.seq_len}"
    )
    if cfg.micro_batch:
        if per_device % cfg.micro_batch:
            raise UserError(
                f"micro_batch={cfg.micro_batch} must divide the {per_device} rows per device "
                f"(batch_size={cfg.batch_size} over {shards} data-parallel devices)"
            )
        chosen = plan(cfg.micro_batch)
        if chosen.estimate_bytes > budget:
            raise UserError(
                f"micro_batch={cfg.micro_batch} needs about {chosen.estimate_bytes / GB:.2f} GB per device ({what}), "
                f"over the budget of {budget / GB:.2f} GB ({source}); lower micro_batch (0 picks one that fits) "
                "or raise memory_gb"
            )
        return chosen
    for m in sorted((d for d in range(1, per_device + 1) if per_device % d == 0), reverse=True):
        if plan(m).estimate_bytes <= budget:
            return plan(m)
    raise UserError(
        f"a training step does not fit in memory even one row per device at a time: it needs about "
        f"{plan(1).estimate_bytes / GB:.2f} GB per device ({what}), over the budget of {budget / GB:.2f} GB "
        f"({source}); lower seq_len, train a smaller model, shard the params over more devices (mesh_fsdp) "
        "or raise memory_gb"
    )
