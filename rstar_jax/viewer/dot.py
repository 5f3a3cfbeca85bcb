"""The trees as one Graphviz ``digraph``: a cluster per problem, a box per node.

Node ``p<K>n<I>`` is node ``I`` of problem ``K`` (list order). Each label holds the node's
index, Q, visits and PPM score, the first lines of its step text and its output. Terminal
nodes have a double border, failed ones (code errors) are yellow, answers green (correct) or
red (wrong); the chosen answer's path is drawn thick and blue (``class="path"``).
Render with e.g. ``dot -Tsvg trees.dot -o trees.svg``.
"""

from __future__ import annotations

import os
from typing import Sequence

from rstar_jax.io import atomic_write_text
from rstar_jax.search.answers import choose_answer
from rstar_jax.search.records import TreeRecord, path_to
from rstar_jax.viewer.data import Source, resolve_selection, step_text

MAX_LINES = 8
MAX_CHARS = 60
PATH_COLOR = "#0969da"


def quote(text: str) -> str:
    """A DOT double-quoted string; newlines become ``\\l`` (left-justified lines)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "")
    return '"' + out.replace("\n", "\\l") + '"'


def _clip(text: str, lines: int = MAX_LINES, chars: int = MAX_CHARS) -> str:
    rows = text.rstrip("\n").split("\n")
    cut = [r if len(r) <= chars else r[: chars - 1] + "\u2026" for r in rows[:lines]]
    if len(rows) > lines:
        cut.append(f"\u2026 {len(rows) - lines} more lines")
    return "\n".join(cut)


def node_label(record: TreeRecord, i: int, chosen: bool = False) -> str:
    n = record.nodes[i]
    head = f"#{i}  Q {n.q:.3f}  N {n.visits}" + ("" if n.prior is None else f"  PPM {n.prior:.3f}")
    marks = [m for m, on in (("terminal", n.terminal), ("failed", not n.valid)) if on]
    if n.answer is not None:
        marks.append({True: "correct ", False: "wrong "}.get(n.correct, "") + f"answer {n.answer}")
    if chosen:
        marks.append("CHOSEN")
    parts = [head + ("  [" + ", ".join(marks) + "]" if marks else "")]
    text = step_text(n)
    parts.append(_clip(text) if text else "(root)")
    if n.output:
        parts.append("output: " + _clip(n.output, 3))
    return "\n".join(parts) + "\n"


def _node_attrs(record: TreeRecord, i: int, on_path: bool, chosen: bool) -> str:
    n = record.nodes[i]
    attrs = [f"label={quote(node_label(record, i, chosen))}"]
    if n.terminal:
        attrs.append("peripheries=2")
    fill = "#dafbe1" if n.correct is True else "#ffebe9" if n.correct is False else "#fff8c5" if not n.valid else None
    if fill:
        attrs.append(f'style="filled" fillcolor="{fill}"')
    if on_path:
        attrs.append(f'color="{PATH_COLOR}" penwidth=3 class="path"')
    return " ".join(attrs)


def render_dot(sources: Sequence[Source], select: str = "auto") -> str:
    """One digraph with a cluster per problem of every source."""
    out = [
        "// rstar-jax view --format dot: search trees; the chosen answer's path is blue and thick",
        "digraph trees {",
        '  graph [rankdir=TB fontname="Helvetica" compound=true];',
        '  node [shape=box fontname="Courier" fontsize=10];',
        '  edge [color="#8c959f"];',
    ]
    k = 0
    for src in sources:
        how = resolve_selection(select, src.records)
        for record in src.records:
            chosen = choose_answer(record, how)
            path = set(path_to(record, chosen.node)) if chosen is not None else set()
            answer = "none" if chosen is None else chosen.answer
            title = f"{src.label}: {record.problem_id}  gold {record.gold}  chosen ({how}) {answer}"
            out.append(f'  subgraph "cluster_{k}" {{')
            out.append(f"    label={quote(title)};")
            for n in record.nodes:
                chosen_here = chosen is not None and n.index == chosen.node
                out.append(f"    p{k}n{n.index} [{_node_attrs(record, n.index, n.index in path, chosen_here)}];")
            for n in record.nodes[1:]:
                style = f' [color="{PATH_COLOR}" penwidth=3 class="path"]' if n.index in path else ""
                out.append(f"    p{k}n{n.parent} -> p{k}n{n.index}{style};")
            out.append("  }")
            k += 1
    out.append("}")
    return "\n".join(out) + "\n"


def write_dot(path: str | os.PathLike, sources: Sequence[Source], select: str = "auto") -> int:
    """Write the DOT file atomically; returns its size in bytes."""
    text = render_dot(sources, select)
    atomic_write_text(path, text)
    return len(text.encode("utf-8"))
