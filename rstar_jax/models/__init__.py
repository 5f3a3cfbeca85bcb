"""Models: the Qwen2/Llama transformer, PPM head, KV cache, HF interop, sharding rules."""

from rstar_jax.models.config import ModelConfig
from rstar_jax.models.hf_io import CheckpointError, load_hf, save_hf
from rstar_jax.models.kv_cache import KVCache, SharedPrefix, branch_cache, init_cache
from rstar_jax.models.transformer import (
    forward_cached,
    hidden_states,
    init_params,
    init_value_head,
    last_token_index,
    logits,
    ppm_scores,
    project,
)

__all__ = [
    "ModelConfig",
    "KVCache",
    "SharedPrefix",
    "branch_cache",
    "forward_cached",
    "hidden_states",
    "init_cache",
    "init_params",
    "init_value_head",
    "last_token_index",
    "logits",
    "ppm_scores",
    "project",
    "CheckpointError",
    "load_hf",
    "save_hf",
]
