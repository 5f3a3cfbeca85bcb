"""Attention kernels for tree search decoding.

``tree_attention`` is the jnp reference of shared-prefix (cascade) decode attention and ``paged``
its paged-KV form: the CPU implementation and the oracle the Pallas kernels (``pallas_gpu``,
``pallas_tpu``) are tested against. ``dispatch`` picks one by backend; its entry points are
re-exported here. ``check.main`` compares and times them on the machine at hand.
"""

from rstar_jax.kernels.dispatch import (
    IMPLS,
    cascade_attention,
    paged_attention,
    paged_cascade_attention,
    paged_tree_attention,
    tree_attention_impl,
)
from rstar_jax.kernels.tree_attention import merge_partials, partial_attention

__all__ = [
    "IMPLS",
    "cascade_attention",
    "merge_partials",
    "paged_attention",
    "paged_cascade_attention",
    "paged_tree_attention",
    "partial_attention",
    "tree_attention_impl",
]
