"""Training: policy SFT and reward models (PPM / PQM / ORM) on a device mesh, with orbax resume.

Names are loaded lazily so that importing the configs (``rstar_jax.train.config``)
stays light.
"""

import importlib

_EXPORTS = {
    "TrainConfig": "config",
    "SFTConfig": "config",
    "RewardConfig": "config",
    "train_policy": "sft",
    "train_reward_model": "reward",
    "train_policy_folder": "api",
    "train_reward_folder": "api",
    "load_data": "api",
    "export_hf": "api",
    "Trainer": "trainer",
    "TrainingDiverged": "trainer",
    "init_distributed": "trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rstar_jax.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rstar_jax.train' has no attribute {name!r}")
