"""Logical axis names for every parameter and one rule table mapping them to mesh axes.

Mesh axes: ``data`` (pure data parallel), ``fsdp`` (data parallel with sharded
params and optimizer state), ``tensor`` (Megatron-style model parallel).
A dimension that does not divide evenly by its mesh axes is replicated, so tiny
test models shard on any mesh.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Parameter path regex -> logical axes, one per array dimension.
PARAM_AXES: list[tuple[str, tuple[str | None, ...]]] = [
    (r"embed/embedding", ("vocab", "embed")),
    (r"layers_\d+/attn/q_proj/kernel", ("embed", "heads")),
    (r"layers_\d+/attn/(k|v)_proj/kernel", ("embed", "kv_heads")),
    (r"layers_\d+/attn/q_proj/bias", ("heads",)),
    (r"layers_\d+/attn/(k|v)_proj/bias", ("kv_heads",)),
    (r"layers_\d+/attn/o_proj/kernel", ("heads", "embed")),
    (r"layers_\d+/mlp/(gate|up)_proj/kernel", ("embed", "mlp")),
    (r"layers_\d+/mlp/down_proj/kernel", ("mlp", "embed")),
    (r".*norm/scale", ("norm",)),
    (r"lm_head/kernel", ("embed", "vocab")),
    (r"value_head/kernel", ("embed", None)),
    (r"value_head/bias", (None,)),
]

# Logical axis -> mesh axes (None = replicated).
DEFAULT_RULES: dict[str, tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "embed": ("fsdp",),
    "vocab": ("tensor",),
    "heads": ("tensor",),
    "kv_heads": ("tensor",),
    "mlp": ("tensor",),
    "norm": None,
    "length": None,
}


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh; ``data=-1`` takes every device left over.

    Built from ``Mesh`` directly so axes are Auto: the compiler propagates
    shardings through plain jitted code (docs/DESIGN.md §11).
    """
    devices = list(devices if devices is not None else jax.devices())
    if data == -1:
        if len(devices) % (fsdp * tensor):
            raise ValueError(f"{len(devices)} devices do not divide into fsdp={fsdp} x tensor={tensor}")
        data = len(devices) // (fsdp * tensor)
    if data * fsdp * tensor != len(devices):
        raise ValueError(f"mesh {data}x{fsdp}x{tensor} needs {data * fsdp * tensor} devices, have {len(devices)}")
    return Mesh(np.array(devices).reshape(data, fsdp, tensor), MESH_AXES)


def logical_axes(path: str, ndim: int) -> tuple[str | None, ...]:
    for pat, axes in PARAM_AXES:
        if re.fullmatch(pat, path):
            if len(axes) != ndim:
                raise ValueError(f"parameter {path}: {ndim} dims but logical axes {axes}")
            return axes
    raise KeyError(f"no logical axes for parameter {path!r}")


def spec_for(
    logical: Sequence[str | None],
    shape: Sequence[int],
    mesh: Mesh,
    rules: dict[str, tuple[str, ...] | None] = DEFAULT_RULES,
) -> P:
    """PartitionSpec for logical axes; replicate dims the mesh does not divide."""
    out = []
    for name, size in zip(logical, shape):
        axes = rules.get(name) if name else None
        if axes:
            axes = tuple(a for a in axes if mesh.shape[a] > 1)
            n = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
            axes = axes if axes and size % n == 0 else None
        out.append((axes[0] if len(axes) == 1 else axes) if axes else None)
    return P(*out)


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def param_shardings(params: Any, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
    """A pytree of NamedSharding matching ``params`` (arrays or ShapeDtypeStructs)."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: NamedSharding(mesh, spec_for(logical_axes(_path_str(p), x.ndim), x.shape, mesh, rules)), params
    )


def batch_sharding(mesh: Mesh, ndim: int = 2, rules=DEFAULT_RULES) -> NamedSharding:
    """Shard dim 0 of a batch over the data-parallel axes, replicate the rest."""
    axes = tuple(a for a in rules["batch"] if mesh.shape[a] > 1) or None
    return NamedSharding(mesh, P(axes, *([None] * (ndim - 1))))


def shard_rows(mesh: Mesh, *arrays, rules=DEFAULT_RULES) -> tuple:
    """Host arrays [rows, ...] onto ``mesh``, their rows split over the data-parallel axes (each
    device receives only its rows; replicated where the mesh does not divide the rows)."""
    return tuple(
        jax.device_put(x, NamedSharding(mesh, spec_for(("batch",) + (None,) * (x.ndim - 1), x.shape, mesh, rules)))
        for x in arrays
    )


def shard_params(params: Any, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
    return jax.device_put(params, param_shardings(params, mesh, rules))
