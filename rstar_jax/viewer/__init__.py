"""Tree viewer: search trees (tree records) as a self-contained HTML page or Graphviz DOT.

``rstar-jax view TREES.jsonl --out trees.html`` (rstar_jax/cli/view.py) and, after each
evolution round's evaluation, ``write_eval_page`` (OUT/roundN/eval/trees.html).
"""

from __future__ import annotations

import dataclasses
import os

from rstar_jax.viewer.data import SELECTIONS, Source, load_sources, page_data, select_problems
from rstar_jax.viewer.dot import render_dot, write_dot
from rstar_jax.viewer.html import render_html, write_html

EVAL_PAGE = "trees.html"


def write_eval_page(eval_dir: str | os.PathLike, title: str | None = None) -> str | None:
    """Write ``eval_dir/trees.html`` with every method's trees in the folder (``*.jsonl``:
    greedy, mcts, chains, ...; mcts first); returns its path, None when the folder holds no
    trees. Files are named without their folder: it may be a temporary one, renamed later."""
    eval_dir = str(eval_dir)
    files = sorted((f for f in os.listdir(eval_dir) if f.endswith(".jsonl")), key=lambda f: (f != "mcts.jsonl", f))
    if not files:
        return None
    sources = load_sources([os.path.join(eval_dir, f) for f in files])
    sources = [dataclasses.replace(s, path=os.path.basename(s.path)) for s in sources]
    path = os.path.join(eval_dir, EVAL_PAGE)
    write_html(path, sources, "auto", title)
    return path


__all__ = [
    "EVAL_PAGE",
    "SELECTIONS",
    "Source",
    "load_sources",
    "page_data",
    "render_dot",
    "render_html",
    "select_problems",
    "write_dot",
    "write_eval_page",
    "write_html",
]
