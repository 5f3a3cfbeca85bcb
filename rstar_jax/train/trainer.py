"""The training loop shared by the policy and the reward models.

Data parallel (and FSDP / tensor parallel) through one ``jax.jit`` over a
``make_mesh`` mesh: parameters and optimizer state carry ``param_shardings``,
batches are split over the data axes, XLA inserts the gradient all-reduce. The
same code runs on one CPU, 8 fake devices, or several hosts after
``init_distributed`` (every process reads the same global batch and hands each
of its devices its shard). Checkpoints hold the whole state; a run resumes from
the latest one and continues exactly as if never stopped.

Bounded memory: a step takes the global batch (``cfg.batch_size`` rows) and runs it
as micro-batches of ``micro_batch`` rows per device in a ``lax.scan`` inside the one
jitted step, adding the loss's numerators, denominators and gradients and dividing
once, so the update equals the whole batch's (``losses.Sums``). The micro-batch is
the largest that the memory estimate (``train.memory``) fits in the device's memory
or ``cfg.memory_gb``; a setting that cannot fit fails before anything compiles.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rstar_jax.errors import UserError
from rstar_jax.models import ModelConfig
from rstar_jax.models.sharding import batch_sharding, make_mesh, param_shardings, shard_params
from rstar_jax.shapes import check_shapes
from rstar_jax.train.batching import Rows, RowStream
from rstar_jax.train.checkpoint import Checkpointer
from rstar_jax.train.config import TrainConfig
from rstar_jax.train.losses import Sums, ratios
from rstar_jax.train.memory import MemoryPlan, plan_memory
from rstar_jax.train.metrics import MetricsLogger
from rstar_jax.train.state import TrainState, cast_floats, init_state, optimizer, schedule


class LossFn(Protocol):
    """A hashable loss (``losses.SFTLoss``, ``losses.RewardLoss``): additive sums of a batch."""

    def sums(self, config: ModelConfig, params: Any, batch: dict) -> Sums: ...


class TrainingDiverged(FloatingPointError):
    """A non-finite loss or gradient; the state of that step is not saved."""


def init_distributed(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (CPU collectives use gloo); call before any other JAX use."""
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def data_seed(seed: int) -> int:
    """The data-order seed of a run, from its RNG key (stored in ``TrainState.rng``)."""
    k = np.asarray(jax.random.key_data(jax.random.key(seed)), np.uint64)
    return int(k[0] << np.uint64(32) | k[1])


def data_shards(mesh: Mesh) -> int:
    """Devices a batch is split over (the data-parallel axes)."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def total_steps(cfg: TrainConfig, stream: RowStream) -> int:
    return cfg.steps or max(1, int(np.ceil(cfg.epochs * stream.rows_in_epoch(0) / cfg.batch_size)))


def _put(rows: Rows, mesh) -> dict[str, jax.Array]:
    """Host rows (the same global batch on every process) -> globally sharded arrays."""

    def put(x):
        sh = batch_sharding(mesh, x.ndim)
        return jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx])

    return {k: put(v) for k, v in rows.items()}


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static about a train step. Hashable: equal specs (the same model, settings,
    length and mesh) share one compiled program, e.g. a rerun or a resumed run in one process.
    ``cfg.micro_batch``: rows per device per micro-step (0: the whole batch at once)."""

    loss_fn: LossFn
    model_config: ModelConfig
    cfg: TrainConfig
    total_steps: int
    mesh: Mesh

    def tx(self) -> optax.GradientTransformation:
        return optimizer(self.cfg, self.total_steps)

    def sums(self, params, batch) -> Sums:
        dtype = self.cfg.compute_dtype
        if dtype != "float32":
            params = cast_floats(params, jnp.dtype(dtype))
        return self.loss_fn.sums(self.model_config.replace(dtype=dtype), params, batch)

    def loss(self, params, batch) -> tuple[jax.Array, dict]:
        metrics = ratios(self.sums(params, batch))
        return metrics["loss"], metrics

    def micro_steps(self) -> int:
        per_device = self.cfg.batch_size // data_shards(self.mesh)
        return per_device // self.cfg.micro_batch if self.cfg.micro_batch else 1

    def shardings(self, state: TrainState) -> TrainState:
        """Params and their optimizer moments by the model's sharding rules; scalars replicated."""
        repl = NamedSharding(self.mesh, P())
        params_sh = param_shardings(state.params, self.mesh)
        opt_sh = optax.tree_map_params(
            self.tx(), lambda _, s: s, state.opt_state, params_sh, transform_non_params=lambda _: repl
        )
        return TrainState(repl, params_sh, opt_sh, repl)


@functools.partial(jax.jit, static_argnums=0)
def _init(spec: StepSpec, params, seed) -> TrainState:
    state = init_state(params, spec.tx(), seed)
    return jax.lax.with_sharding_constraint(state, spec.shardings(state))


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _train_step(spec: StepSpec, state: TrainState, batch) -> tuple[TrainState, dict]:
    """One optimizer step on a packed batch (``batching.pack_sft`` / ``pack_groups``): token fields
    [rows, seq_len], candidate fields [rows, C], pair fields [rows, P]."""
    dims = {
        "tokens": "Rows T",
        "positions": "Rows T",
        "segments": "Rows T",
        "targets": "Rows T",
        "weights": "Rows T",
        "branches": "Rows T",
        "cand_index": "Rows C",
        "cand_mask": "Rows C",
        "cand_q": "Rows C",
        "cand_label": "Rows C",
        "pair_a": "Rows P",
        "pair_b": "Rows P",
        "pair_w": "Rows P",
    }
    check_shapes("train_step", **{k: (v, dims[k]) for k, v in batch.items()})

    def grad_sums(mb) -> tuple[Any, Sums]:
        """A micro-batch's sums and the gradient of its loss numerator (the denominator is data:
        token or pair weights), to be added over micro-batches and divided once."""

        def numerator(params):
            sums = spec.sums(params, mb)
            return sums["loss"][0], sums

        (_, sums), grads = jax.value_and_grad(numerator, has_aux=True)(state.params)
        return grads, sums

    n = spec.micro_steps()
    if n == 1:
        grads, sums = grad_sums(batch)
    else:
        micro = _micro_batches(spec, batch, n)
        shapes = jax.eval_shape(grad_sums, {k: v[0] for k, v in micro.items()})
        zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)
        zeros = (jax.lax.with_sharding_constraint(zeros[0], spec.shardings(state).params), zeros[1])

        def add(acc, mb):
            return jax.tree.map(jnp.add, acc, grad_sums(mb)), None

        (grads, sums), _ = jax.lax.scan(add, zeros, micro)  # one micro-batch's activations at a time
    den = jnp.maximum(sums["loss"][1], 1e-9)
    grads = jax.tree.map(lambda g: g / den, grads)
    updates, opt_state = spec.tx().update(grads, state.opt_state, state.params)
    new = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state, state.rng)
    metrics = {
        **ratios(sums),
        "grad_norm": optax.global_norm(grads),
        "lr": schedule(spec.cfg, spec.total_steps)(state.step),
    }
    return jax.lax.with_sharding_constraint(new, spec.shardings(new)), metrics


def _micro_batches(spec: StepSpec, batch: dict, n: int) -> dict:
    """[B, ...] rows, sharded over the S data-parallel devices -> [n, B / n, ...]: micro-batch i
    holds rows [i m, (i + 1) m) of every device's shard (m = B / (S n)), so no row moves."""
    s = data_shards(spec.mesh)

    def split(x):
        m = x.shape[0] // (s * n)
        y = x.reshape(s, n, m, *x.shape[1:]).swapaxes(0, 1).reshape(n, s * m, *x.shape[1:])
        sh = batch_sharding(spec.mesh, x.ndim)
        return jax.lax.with_sharding_constraint(y, NamedSharding(spec.mesh, P(None, *sh.spec)))

    return {k: split(v) for k, v in batch.items()}


@functools.partial(jax.jit, static_argnums=0)
def _eval_step(spec: StepSpec, params, batch) -> dict:
    return spec.loss(params, batch)[1]


@dataclasses.dataclass
class Trainer:
    """Builds the sharded state (or restores it) and runs ``loss_fn`` steps over ``stream``."""

    loss_fn: LossFn
    model_config: ModelConfig
    cfg: TrainConfig
    stream: RowStream
    ckpt_dir: str
    log_dir: str
    meta: dict  # what the data/settings were; must match to resume

    def __post_init__(self):
        cfg = self.cfg
        self.mesh = make_mesh(cfg.mesh_data, cfg.mesh_fsdp, cfg.mesh_tensor)
        shards = data_shards(self.mesh)
        if cfg.batch_size % shards:
            raise UserError(f"batch_size={cfg.batch_size} is not divisible by the {shards} data-parallel devices")
        self.total_steps = total_steps(cfg, self.stream)
        # before anything compiles: the micro-batch that fits, or a UserError saying why none does
        self.plan: MemoryPlan = plan_memory(self.model_config, cfg, self.mesh, self.stream.epoch(0))
        # the seed only seeds the state and the memory budget only picks the micro-batch: runs that
        # differ in them alone (with the same micro-batch) share compiled steps
        spec_cfg = dataclasses.replace(cfg, seed=0, memory_gb=None, micro_batch=self.plan.micro_batch)
        self.spec = StepSpec(self.loss_fn, self.model_config, spec_cfg, self.total_steps, self.mesh)
        self.meta = {
            **self.meta,
            "total_steps": self.total_steps,
            "batch_size": cfg.batch_size,
            "seq_len": cfg.seq_len,
            "seed": cfg.seed,
            "compute_dtype": cfg.compute_dtype,
        }

    # --- the loop ----------------------------------------------------------------------------
    def fit(
        self,
        params,
        eval_fn: Callable[[Any], dict] | None = None,
        eval_every: int = 0,
        callback: Callable[[int, dict], None] | None = None,
        desc: str = "train",
    ) -> tuple[Any, dict]:
        """Train to ``total_steps`` (resuming from the latest checkpoint); returns (params, summary)."""
        cfg = self.cfg
        state = _init(self.spec, shard_params(params, self.mesh), cfg.seed)
        ckpt = Checkpointer(self.ckpt_dir, keep=cfg.keep_checkpoints)
        start = ckpt.latest_step()
        if start is not None:
            state, meta = ckpt.restore(state)
            diff = {k: (meta.get(k), v) for k, v in self.meta.items() if meta.get(k) != v}
            if diff:
                raise ValueError(
                    f"checkpoint {self.ckpt_dir} step {start} was made with other settings "
                    f"(checkpoint, now): {diff}; use a new checkpoint folder"
                )
        start = start or 0
        log = MetricsLogger(self.log_dir, self.total_steps, start, desc)
        summary: dict = {"start_step": start, **self.plan.summary()}
        try:
            rows = self.stream.batch(start) if start < self.total_steps else None
            t0, tokens = time.perf_counter(), 0
            for s in range(start, self.total_steps):
                tokens += int((rows["segments"] > 0).sum())
                state, metrics = _train_step(self.spec, state, _put(rows, self.mesh))
                rows = self.stream.batch(s + 1) if s + 1 < self.total_steps else None  # overlaps the step
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not (np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])):
                    ckpt.wait()
                    raise TrainingDiverged(
                        f"non-finite loss {metrics['loss']} / grad norm {metrics['grad_norm']} at step {s + 1}; "
                        f"last good checkpoint: step {ckpt.latest_step()} in {self.ckpt_dir}"
                    )
                log.advance()
                done = s + 1
                if done % cfg.log_every == 0 or done == self.total_steps:
                    dt = time.perf_counter() - t0
                    metrics["tokens_per_s"] = tokens / dt
                    log.log(done, metrics)
                    t0, tokens = time.perf_counter(), 0
                if eval_fn and eval_every and done % eval_every == 0 and done < self.total_steps:
                    log.log(done, eval_fn(state.params), "eval")
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < self.total_steps:
                    ckpt.save(done, state, self.meta)
                if callback:
                    callback(done, metrics)
                summary.update(metrics)
            if ckpt.latest_step() != self.total_steps:
                ckpt.save(self.total_steps, state, self.meta)
            if eval_fn:
                summary["eval"] = eval_fn(state.params)
                log.log(self.total_steps, summary["eval"], "eval")
        finally:
            ckpt.close()
            log.close()
        summary["steps"] = self.total_steps
        return state.params, summary

    def evaluate(self, params, rows: Rows, weight_key: str) -> dict:
        """Forward-only metrics over ``rows`` in micro-batches (what fits a training step fits its
        forward), averaged with weights ``metrics[weight_key]``."""
        b, n = self.plan.micro_batch * data_shards(self.mesh), len(rows["tokens"])
        totals: dict[str, float] = {}
        for i in range(0, n, b):
            chunk = {k: v[i : i + b] for k, v in rows.items()}
            pad = b - len(chunk["tokens"])
            chunk = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in chunk.items()}
            m = {k: float(v) for k, v in jax.device_get(_eval_step(self.spec, params, _put(chunk, self.mesh))).items()}
            w = m.pop(weight_key)
            totals[weight_key] = totals.get(weight_key, 0.0) + w
            for k, v in m.items():
                totals[k] = totals.get(k, 0.0) + v * w
        w = max(totals.get(weight_key, 0.0), 1e-9)
        return {k: (v if k == weight_key else v / w) for k, v in totals.items()}


def gather_params(params):
    """Params as host numpy arrays, gathered across processes when sharded over several hosts."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(params, tiled=True)
    return jax.device_get(params)


def fingerprint(arrays) -> str:
    """A short hash of the encoded training data (a resumed run must train on the same data)."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def write_summary(out_dir: str, summary: dict) -> None:
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
