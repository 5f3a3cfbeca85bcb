"""Shape checks at jitted boundaries: named dimensions bound consistently across arguments.

Shapes are static under ``jit``, so a check runs once per trace and costs nothing per call::

    check_shapes("insert", leaves=(leaves, "B L"), child_mask=(mask, "B L K"))

A dimension named by a number must equal it; ``*`` matches any size; ``...`` any number of
leading dimensions. A mismatch raises ValueError naming the function, argument and dimension.
"""

from __future__ import annotations

from typing import Any


def check_shapes(where: str, **args: tuple[Any, str]) -> dict[str, int]:
    """Check every ``name=(array, "dims")``; returns the bound sizes of the named dimensions."""
    bound: dict[str, int] = {}
    for name, (array, spec) in args.items():
        shape, dims = tuple(array.shape), spec.split()
        if dims and dims[0] == "...":
            dims = dims[1:]
            shape = shape[len(shape) - len(dims) :] if len(shape) >= len(dims) else None
        if shape is None or len(shape) != len(dims):
            raise ValueError(f"{where}: {name} has shape {tuple(array.shape)}, expected [{spec}]")
        for dim, size in zip(dims, shape):
            if dim == "*":
                continue
            want = int(dim) if dim.isdigit() else bound.setdefault(dim, size)
            if size != want:
                raise ValueError(f"{where}: {name} has shape {tuple(array.shape)}, expected [{spec}] with {dim}={want}")
    return bound
