"""Token-id sequence helpers shared by the engine and the trainers."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix all of ``seqs`` (token-id lists or arrays) start with."""
    arrays = [np.asarray(s) for s in seqs]
    n = min(len(a) for a in arrays)
    first = arrays[0][:n]
    for a in arrays[1:]:
        diff = np.flatnonzero(a[:n] != first)
        n = int(diff[0]) if len(diff) else n
        first = first[:n]
    return n
