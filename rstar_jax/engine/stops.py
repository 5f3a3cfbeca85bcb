"""Stop strings on the host: find the first one a completion produced and cut there.

A stop string may span several tokens or end inside one, so the check runs on
decoded text. The completion keeps the fewest tokens whose text contains the
stop, and its text ends with the stop string (as in the official code).
"""

from __future__ import annotations

from typing import Callable, Sequence


def first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(end offset, stop) of the stop string that is completed first in ``text``, or None."""
    hits = [(i + len(s), i, s) for s in stops if (i := text.find(s)) >= 0]
    if not hits:
        return None
    end, _, stop = min(hits)  # earliest end; on a tie the earlier (longer) match
    return end, stop


def cut_at_stop(
    tokens: Sequence[int], stops: Sequence[str], decode: Callable[[Sequence[int]], str]
) -> tuple[int, str, str] | None:
    """(tokens kept, text ending with the stop, stop) for a completion containing a stop, else None.

    Binary search for the shortest token prefix whose text contains a stop: the
    text of a token prefix is a prefix of the full text, so containment is monotone.
    """
    if first_stop(decode(tokens), stops) is None:
        return None
    lo, hi = 1, len(tokens)  # invariant: tokens[:hi] contains a stop
    while lo < hi:
        mid = (lo + hi) // 2
        if first_stop(decode(tokens[:mid]), stops) is None:
            lo = mid + 1
        else:
            hi = mid
    text = decode(tokens[:hi])
    end, stop = first_stop(text, stops)
    return hi, text[:end], stop


def rows_with_stop(texts: Sequence[str], stops: Sequence[str]) -> list[bool]:
    """Which texts contain any stop string."""
    return [any(s in t for s in stops) for t in texts]
