"""Inference on a device mesh: the dtype, the mesh, and parameters placed straight into their shardings.

Rows (problems, samples) are split over the mesh's ``data`` axis and each weight over ``tensor``
by the rules of ``models/sharding.py`` (heads, KV heads, MLP columns and the vocabulary). Loading
never puts a whole parameter on one device: ``jax.make_array_from_callback`` asks, per device,
for that device's slice of the host (memory-mapped) array and copies only that slice.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from rstar_jax.errors import UserError
from rstar_jax.memory import memory_budget
from rstar_jax.models.config import DTYPES, ModelConfig
from rstar_jax.models.sharding import DEFAULT_RULES, logical_axes, make_mesh, param_shardings, spec_for

WEIGHT_SHARE = 0.5  # of a device's memory the weights may take; the rest holds KV and activations


def default_dtype(backend: str | None = None) -> str:
    """bfloat16 on accelerators (their matrix units and memory bandwidth are built for it), float32
    on CPU (where bfloat16 matmuls are emulated and slower)."""
    return "float32" if (backend or jax.default_backend()) == "cpu" else "bfloat16"


def resolve_dtype(dtype: str | None) -> str:
    """``dtype`` checked, or the backend's default for None / ``"auto"``."""
    if dtype in (None, "auto"):
        return default_dtype()
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)} (or auto)")
    return dtype


def tensor_size(config: ModelConfig, devices: int, budget: int) -> int:
    """The fewest tensor-parallel devices (a divisor of the KV heads and of ``devices``) whose
    share of the weights fits ``WEIGHT_SHARE`` of ``budget`` bytes; all that divide if none does."""
    weights = config.num_params() * jnp.dtype(config.dtype).itemsize
    fits = [t for t in range(1, devices + 1) if devices % t == 0 and config.num_kv_heads % t == 0]
    return next((t for t in fits if weights / t <= WEIGHT_SHARE * budget), fits[-1])


def inference_mesh(
    config: ModelConfig,
    tensor: int | None = None,
    devices: Sequence[Any] | None = None,
    memory_gb: float | None = None,
) -> Mesh:
    """A (data, 1, tensor) mesh over ``devices`` (default: this process's own; each process of a
    multi-process search runs its own shard): ``tensor`` devices split each layer's heads, the rest
    split the rows. ``tensor=None`` picks the fewest that hold the weights."""
    devices = list(devices if devices is not None else jax.local_devices())
    if tensor is None:
        tensor = tensor_size(config, len(devices), memory_budget(memory_gb, agree=False)[0])
    if len(devices) % tensor or config.num_kv_heads % tensor:
        raise UserError(
            f"tensor parallelism {tensor} must divide the {len(devices)} devices and the model's "
            f"{config.num_kv_heads} KV heads"
        )
    return make_mesh(data=-1, fsdp=1, tensor=tensor, devices=devices)


def sharding_of(path: str, shape: Sequence[int], mesh: Mesh, rules=DEFAULT_RULES) -> NamedSharding:
    """Where parameter ``path`` of ``shape`` lives on ``mesh``."""
    return NamedSharding(mesh, spec_for(logical_axes(path, len(shape)), shape, mesh, rules))


def placer(mesh: Mesh, rules=DEFAULT_RULES) -> Callable[[str, np.ndarray], jax.Array]:
    """``place(param path, host array)`` for ``hf_io.load_hf``: each device receives only its
    slice (read from a memory map, only that slice is read from disk)."""

    def place(path: str, arr: np.ndarray) -> jax.Array:
        sharding = sharding_of(path, arr.shape, mesh, rules)
        return jax.make_array_from_callback(arr.shape, sharding, lambda idx: np.ascontiguousarray(arr[idx]))

    return place


def place_params(params: Any, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
    """Host (numpy) params -> arrays on ``mesh``, slice by slice (params already on devices are
    fetched to the host first: use ``placer`` or ``init_sharded`` to avoid that round trip)."""
    place = placer(mesh, rules)
    return jax.tree_util.tree_map_with_path(lambda p, x: place(_path(p), np.asarray(x)), jax.device_get(params))


def init_sharded(config: ModelConfig, rng: jax.Array, mesh: Mesh, rules=DEFAULT_RULES) -> Any:
    """Random params (``init_params``) made on the mesh, each device computing only its shard."""
    from rstar_jax.models.transformer import init_params

    abstract = jax.eval_shape(lambda: init_params(config, rng))
    return jax.jit(lambda k: init_params(config, k), out_shardings=param_shardings(abstract, mesh, rules))(rng)


def load_sharded(path: str, dtype: str, mesh: Mesh) -> tuple[ModelConfig, Any]:
    """(config, params) of an HF or orbax model folder in ``dtype``, placed on ``mesh`` as read."""
    from rstar_jax.models.hf_io import load_hf
    from rstar_jax.models.orbax_io import is_orbax_folder, load_orbax

    if is_orbax_folder(path):
        return load_orbax(path, dtype, mesh=mesh)
    return load_hf(path, dtype, place=placer(mesh))


@dataclasses.dataclass(frozen=True)
class Inference:
    """How search, eval, solve and evolve hold a model: ``dtype`` ("auto": bfloat16 on accelerators,
    float32 on CPU) and ``tensor`` devices per model copy (None: the fewest whose share of the
    weights fits ``memory_gb``, see ``inference_mesh``); every other device splits the rows."""

    dtype: str = "auto"
    tensor: int | None = None
    memory_gb: float | None = None

    def setup(self, path: str) -> tuple[str, Mesh]:
        """(dtype, mesh) for the model folder ``path`` (its config.json sizes the tensor axis); load
        with any loader that takes ``place=placer(mesh)``, such as a PPM's."""
        dtype = resolve_dtype(self.dtype)
        if not os.path.isdir(path):
            raise UserError(f"{path}: model folder does not exist")
        config = ModelConfig.from_json_file(os.path.join(path, "config.json"), dtype=dtype)
        return dtype, inference_mesh(config, self.tensor, memory_gb=self.memory_gb)

    def load(self, path: str) -> tuple[ModelConfig, Any, Mesh]:
        """(config, params placed on the mesh, mesh) of the HF or orbax model folder ``path``."""
        dtype, mesh = self.setup(path)
        config, params = load_sharded(path, dtype, mesh)
        return config, params, mesh


def _path(keys) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in keys)
