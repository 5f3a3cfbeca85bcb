"""Generation engine: jitted prefill/decode over a bucketed KV cache, sampling, stop strings,
prefix-KV reuse, batched PPM scoring, and the policy-backed step proposer."""
from rstar_jax.engine.buckets import Buckets
from rstar_jax.engine.engine import Completion, Engine, GenerateStats, Prefix
from rstar_jax.engine.policy_proposer import PolicyProposer
from rstar_jax.engine.sampling import SamplingMode

__all__ = ["Buckets", "Completion", "Engine", "GenerateStats", "Prefix", "PolicyProposer", "SamplingMode"]
