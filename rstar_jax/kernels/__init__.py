"""Attention kernels. ``tree_attention`` is the jnp reference of shared-prefix (cascade)
decode attention, the oracle that backend kernels are tested against."""

from rstar_jax.kernels.tree_attention import cascade_attention, merge_partials, partial_attention

__all__ = ["cascade_attention", "merge_partials", "partial_attention"]
