"""Generation engine: jitted prefill/decode over a bucketed KV cache, sampling, stop strings,
prefix-KV reuse and batched sequence (PPM) scoring. It knows nothing of search."""

from rstar_jax.engine.buckets import Buckets
from rstar_jax.engine.engine import Engine
from rstar_jax.engine.sampling import SamplingMode
from rstar_jax.engine.types import Completion, GenerateStats, Prefix

__all__ = ["Buckets", "Completion", "Engine", "GenerateStats", "Prefix", "SamplingMode"]
