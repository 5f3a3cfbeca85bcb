"""``rstar-jax view``: search trees as a self-contained HTML page or a Graphviz file."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time

_DESCRIPTION = (
    "Turn tree records (the trees.jsonl of `rstar-jax search`, or an evaluation folder's "
    "greedy/mcts/chains .jsonl) into one self-contained HTML page: no network, inline JS and CSS. "
    "The page lists the problems (id, solved or not, the chosen answer, the gold answer) with a "
    "filter box; clicking one draws its tree as a collapsible outline in which each node shows its "
    "step (reasoning, code, output), Q, visits and PPM score, marks terminal, failed and correct "
    "nodes, and highlights the path to the chosen answer. A problem's tree is only built when it is "
    "opened, so thousands of problems stay usable. Append #p=K to the page's URL to open problem K "
    "(0-based). --format dot writes Graphviz instead (render with `dot -Tsvg FILE -o trees.svg`)."
)
_EPILOG = (
    "examples:  rstar-jax view out/trees.jsonl --out trees.html\n"
    "           rstar-jax view evolve/round2/eval --out round2.html   (every .jsonl in the folder)\n"
    "           rstar-jax view out/trees.jsonl --problem syn-t2-1a1dfc1d2445 --format dot --out tree.dot\n\n"
    + textwrap.fill(
        "On bad input the command prints one line naming the file (and line), exits with status 2 "
        "and writes nothing; the output file is replaced atomically.",
        88,
    )
)


def _view(args) -> int:
    from rstar_jax.viewer import load_sources, render_dot, render_html, select_problems
    from rstar_jax.viewer.html import default_title

    fmt = args.format or ("dot" if args.out.endswith((".dot", ".gv")) else "html")
    t = time.perf_counter()
    sources = select_problems(load_sources(args.trees), args.problem)  # bad input: one line, exit 2 (cli.main)
    if fmt == "dot":
        text = render_dot(sources, args.select)
    else:
        text = render_html(sources, args.select, args.title or default_title(sources))
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    from rstar_jax.io import atomic_write_text

    atomic_write_text(args.out, text)
    problems = sum(len(s.records) for s in sources)
    nodes = sum(len(r.nodes) for s in sources for r in s.records)
    size = os.path.getsize(args.out)
    print(
        f"wrote {args.out} ({fmt}, {problems} problems, {nodes} nodes, {size / 1e6:.2f} MB, "
        f"{time.perf_counter() - t:.1f} s)"
    )
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "view",
        help="search trees as a self-contained HTML page (or Graphviz)",
        description=textwrap.fill(_DESCRIPTION, 88),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "trees",
        nargs="+",
        metavar="TREES",
        help="tree-record files (.jsonl), or folders whose .jsonl files are all tree records; "
        "several files go on one page, told apart by file name",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the page (or DOT file) to write; '-' for stdout")
    p.add_argument(
        "--format",
        choices=("html", "dot"),
        help="html (default) or dot (Graphviz); default dot when --out ends in .dot or .gv",
    )
    p.add_argument(
        "--select",
        choices=("auto", "best", "majority", "weighted"),
        default="auto",
        help="how a tree's answer is chosen: best (highest PPM score, else Q), majority or "
        "weighted vote; auto (default): best when the search ran with a PPM, else majority",
    )
    p.add_argument("--problem", action="append", metavar="ID", help="only this problem id (repeatable)")
    p.add_argument("--title", help="page title (default: the file names)")
    p.set_defaults(func=_view)
