"""Every Pallas name that moved between jax releases, in one place (tested on jax 0.10.2; the
H200 machine has 0.11.2, where the Triton backend is deprecated but still present).

``pl`` is ``jax.experimental.pallas``; ``pltpu`` and ``pltriton`` are its TPU and Triton
modules, or None where this jax lacks them (the kernel that needs one then refuses to run).
"""

from __future__ import annotations

from jax.experimental import pallas as pl

try:
    from jax.experimental.pallas import tpu as pltpu
except ImportError:  # pragma: no cover - a jax without Mosaic TPU
    pltpu = None
try:
    from jax.experimental.pallas import triton as pltriton
except ImportError:  # pragma: no cover - the Triton backend is deprecated from jax 0.11
    pltriton = None


def _first(module, *names):
    for name in names:
        if module is not None and hasattr(module, name):
            return getattr(module, name)
    raise RuntimeError(f"this jax's Pallas lacks all of {names} in {getattr(module, '__name__', module)}")


def whole_array_spec():
    """An input the kernel indexes itself (the whole array, in GPU global memory)."""
    return getattr(pl, "no_block_spec", None) or pl.BlockSpec()


def triton_params(num_warps: int, num_stages: int):
    return _first(pltriton, "CompilerParams", "TritonCompilerParams")(num_warps=num_warps, num_stages=num_stages)


def tpu_params(dimension_semantics: tuple[str, ...]):
    """Mosaic compiler params; semantics by name ("parallel", "arbitrary"), as constants where
    this jax has them."""
    semantics = tuple(getattr(pltpu, name.upper(), name) for name in dimension_semantics)
    return _first(pltpu, "CompilerParams", "TPUCompilerParams")(dimension_semantics=semantics)


def tpu_prefetch_grid_spec(**kwargs):
    """``PrefetchScalarGridSpec``: the leading ``num_scalar_prefetch`` operands go to SMEM
    before the grid runs and are passed to every index map and to the kernel."""
    return _first(pltpu, "PrefetchScalarGridSpec")(**kwargs)


def tpu_vmem(shape, dtype):
    """A VMEM scratch buffer."""
    vmem = getattr(pltpu, "VMEM", None) or _first(getattr(pltpu, "MemorySpace", None), "VMEM")
    return vmem(shape, dtype)


def tpu_interpret():
    """The TPU interpreter (simulates DMAs and scalar prefetch on CPU) where this jax has one."""
    params = getattr(pltpu, "InterpretParams", None)
    return params() if params is not None else True
