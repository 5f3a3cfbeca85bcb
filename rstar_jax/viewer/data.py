"""What the viewer shows: tree-record files read into labelled sources, and each
problem turned into a compact, JSON-native summary plus its node table.

The node table is a list of rows, one per node in expansion order (node ``i`` is
row ``i``), each ``[parent, q, visits, ppm, flags, num_tokens, text, output, answer]``
(the ``ROW_FIELDS`` below); ``flags`` is a bit set of ``FLAGS``. A code step's text
comes without its ``<output>`` block, which is the ``output`` column.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterable, Sequence

from rstar_jax.errors import UserError
from rstar_jax.grading import is_equiv
from rstar_jax.search.answers import choose_answer
from rstar_jax.search.records import NodeRecord, TreeRecord, path_to, read_records
from rstar_jax.steps import OUTPUT_CLOSE, OUTPUT_OPEN

SELECTIONS = ("auto", "best", "majority", "weighted")
ROW_FIELDS = ("parent", "q", "visits", "ppm", "flags", "num_tokens", "text", "output", "answer")
FLAGS = {"terminal": 1, "failed": 2, "correct": 4, "wrong": 8}
# Q and PPM scores are shown with 3 decimals: 4 keep the page small and lose nothing visible.
DIGITS = 4

_OUTPUT_BLOCK = re.compile(r"\n?" + re.escape(OUTPUT_OPEN) + r".*?" + re.escape(OUTPUT_CLOSE) + r"\n?", re.S)


@dataclasses.dataclass
class Source:
    """The records of one file; ``label`` tells the files of one page apart (the file's stem,
    e.g. ``mcts`` or ``greedy`` in an evaluation folder)."""

    label: str
    path: str
    records: list[TreeRecord]


def _read(path: str) -> list[TreeRecord]:
    """The records of one file; a bad file raises UserError naming it (and the line)."""
    if os.path.isdir(path):
        raise UserError(f"{path}: is a folder")
    return read_records(path)


def tree_files(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Each path, a folder standing for the ``*.jsonl`` files in it (sorted)."""
    files = []
    for p in map(str, paths):
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".jsonl"))
            if not found:
                raise UserError(f"{p}: folder holds no .jsonl files")
            files += found
        else:
            files.append(p)
    return files


def _labels(files: Sequence[str]) -> list[str]:
    """File stems; where two files share a stem, parent/stem, then the whole path."""
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if len(set(stems)) == len(stems):
        return stems
    longer = [os.path.join(os.path.basename(os.path.dirname(os.path.abspath(f))), s) for f, s in zip(files, stems)]
    return longer if len(set(longer)) == len(longer) else list(files)


def load_sources(paths: Iterable[str | os.PathLike]) -> list[Source]:
    """Read tree-record files (or folders of them); UserError naming the file (and line)
    on bad input."""
    files = tree_files(paths)
    if not files:
        raise UserError("no tree-record files given")
    return [Source(label, f, _read(f)) for label, f in zip(_labels(files), files)]


def resolve_selection(how: str, records: Sequence[TreeRecord]) -> str:
    """``auto``: ``best`` when the search ran with a PPM (``meta["mode"] == "ppm"``, or any node
    has a score), else ``majority`` (as ``rstar-jax search`` and evaluation report accuracy)."""
    if how not in SELECTIONS:
        raise UserError(f"unknown selection {how!r}; use one of {', '.join(SELECTIONS)}")
    if how != "auto":
        return how
    ppm = any(r.meta.get("mode") == "ppm" or any(n.prior is not None for n in r.nodes) for r in records)
    return "best" if ppm else "majority"


def step_text(node: NodeRecord) -> str:
    """The step's text without the host-appended output block when the node records the output."""
    if node.output is None or OUTPUT_OPEN not in node.text:
        return node.text
    return _OUTPUT_BLOCK.sub("\n", node.text, count=1)


def node_flags(node: NodeRecord) -> int:
    return (
        FLAGS["terminal"] * node.terminal
        | FLAGS["failed"] * (not node.valid)
        | FLAGS["correct"] * (node.correct is True)
        | FLAGS["wrong"] * (node.correct is False)
    )


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, DIGITS)


def node_row(node: NodeRecord) -> list:
    return [
        node.parent,
        _round(node.q),
        node.visits,
        _round(node.prior),
        node_flags(node),
        node.num_tokens,
        step_text(node),
        node.output,
        node.answer,
    ]


def problem_summary(record: TreeRecord, source: int, how: str) -> dict:
    """What the problem list shows; ``node`` is the chosen answer's node (-1: no answer),
    ``solved`` whether that answer equals the gold one (None without a gold answer)."""
    chosen = choose_answer(record, how)
    solved = None if not record.gold.strip() else chosen is not None and is_equiv(chosen.answer, record.gold)
    return {
        "id": record.problem_id,
        "src": source,
        "question": record.question,
        "gold": record.gold,
        "answer": None if chosen is None else chosen.answer,
        "score": None if chosen is None else _round(chosen.score),
        "node": -1 if chosen is None else chosen.node,
        "solved": solved,
        "n": len(record.nodes),
        "answers": sum(n.answer is not None for n in record.nodes),
    }


def chosen_path(record: TreeRecord, how: str) -> list[int]:
    """Node indices from the root to the chosen answer ([] when the tree has no answer)."""
    chosen = choose_answer(record, how)
    return [] if chosen is None else path_to(record, chosen.node)


def select_problems(sources: list[Source], ids: Sequence[str] | None) -> list[Source]:
    """Only the records whose problem id is in ``ids`` (all when None); an id found in no
    source is a ValueError."""
    if not ids:
        return sources
    wanted = set(ids)
    missing = wanted - {r.problem_id for s in sources for r in s.records}
    if missing:
        names = ", ".join(s.path for s in sources)
        raise UserError(f"{names}: no problem with id {', '.join(sorted(missing))}")
    return [dataclasses.replace(s, records=[r for r in s.records if r.problem_id in wanted]) for s in sources]


def page_data(sources: Sequence[Source], select: str = "auto", title: str = "") -> dict:
    """Everything the page embeds: per source its label, file, selection and accuracy; per
    problem its summary (``problems``) and node table (``trees``), in the same order."""
    problems, trees, meta = [], [], []
    for k, src in enumerate(sources):
        how = resolve_selection(select, src.records)
        rows = [problem_summary(r, k, how) for r in src.records]
        graded = [p for p in rows if p["solved"] is not None]
        meta.append(
            {
                "label": src.label,
                "path": src.path,
                "select": how,
                "problems": len(rows),
                "accuracy": sum(p["solved"] for p in graded) / len(graded) if graded else None,
            }
        )
        problems += rows
        trees += [[node_row(n) for n in r.nodes] for r in src.records]
    return {
        "version": 1,
        "title": title,
        "fields": ROW_FIELDS,
        "flags": FLAGS,
        "sources": meta,
        "problems": problems,
        "trees": trees,
    }
