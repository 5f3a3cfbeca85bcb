"""Model params as an orbax checkpoint folder (``config.json`` + ``params/``).

This is the native format for training and resharding: orbax restores each
array directly onto a target sharding. HF folders (hf_io) are for exchange.
"""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp

from rstar_jax.errors import UserError
from rstar_jax.models.config import ModelConfig
from rstar_jax.models.sharding import param_shardings


def save_orbax(config: ModelConfig, params: dict, path: str) -> None:
    path = os.path.abspath(path)
    os.makedirs(path, exist_ok=True)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(path, "params"), params, force=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config.to_hf_dict(), f, indent=2)


def load_orbax(path: str, dtype: str = "float32", shardings=None, mesh=None) -> tuple[ModelConfig, dict]:
    """Restore (config, params) in ``dtype``; ``shardings`` (a pytree of Sharding), or ``mesh`` (the
    rules of ``models/sharding.py`` on it), places each array as it loads, each device reading its shard."""
    path = os.path.abspath(path)
    if not os.path.isdir(os.path.join(path, "params")):
        raise UserError(f"{path}: not an orbax model folder (no params/)")
    config = ModelConfig.from_json_file(os.path.join(path, "config.json"), dtype=dtype)
    from rstar_jax.models.transformer import init_params

    abstract = jax.eval_shape(lambda: init_params(config, jax.random.key(0)))
    if mesh is not None and shardings is None:
        shardings = param_shardings(abstract, mesh)
    if shardings is not None:
        abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    with ocp.StandardCheckpointer() as ckpt:
        return config, ckpt.restore(os.path.join(path, "params"), abstract)


def is_orbax_folder(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "params"))
