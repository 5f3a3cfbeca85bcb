"""Training data from search trees: SFT examples for the policy, preference pairs for the PPM.

Definitions (``rstar_jax.search.records`` trees; node 0 is the root):

- An *outcome* is a terminal node that is either graded (``answer`` not None and
  ``correct`` not None) or failed to execute (``valid`` False, a dead end).
  It is correct iff ``correct is True``.
- A node *leads to a correct answer* iff its subtree (itself included) holds a
  correct outcome; it *leads to a wrong answer* iff its subtree holds outcomes and
  none of them is correct. Nodes without outcomes below them are neither.
- A *trajectory* is the root-to-node path of a terminal node with an ``answer``.

SFT (``sft.jsonl``, one object per line)::

    {"problem_id": str, "prompt": str, "solution": str, "mean_q": float, "min_q": float, "nodes": [int]}

``prompt`` is ``steps.build_prompt(question)``; ``solution`` the concatenated step
texts (the model is trained on solution tokens only). Per problem: the top
``sft_per_problem`` distinct correct trajectories by (mean step Q, min step Q),
none containing an invalid (execution error) node.

Pairs (``pairs.jsonl``, one prefix with its continuations per line)::

    {"problem_id": str, "kind": "step" | "final", "prompt": str, "prefix": str, "node": int,
     "pos": [{"text": str, "q": float, "node": int}], "neg": [...], "pairs": [[i, j], ...]}

A PPM input is ``prompt + prefix + candidate text``; ``pairs`` index ``pos`` and
``neg`` (pos[i] preferred to neg[j]). Step groups: for a node with children of
both kinds, the ``per_side`` best-Q correct children vs the ``per_side``
worst-Q wrong ones, or 1 vs up to ``single_side_max`` when one kind has a
single child; a pair is kept iff Q(pos) - Q(neg) >= ``min_q_margin`` and the
two texts are >= ``min_edit_distance`` characters apart. Final groups (prefix
"", node 0): whole correct trajectories (valid ones, best first by (mean Q,
min Q)) vs whole wrong ones (worst first), same counts, edit distance filter
only (the outcome is the label, not Q). Ties always break by node index.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rstar_jax.errors import UserError
from rstar_jax.io import atomic_write_text, read_jsonl, write_jsonl
from rstar_jax.search.records import TreeRecord, mean_q, min_q, path_to, read_records
from rstar_jax.steps import build_prompt


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    sft_per_problem: int = 2
    per_side: int = 2
    single_side_max: int = 4
    min_q_margin: float = 0.5
    min_edit_distance: int = 20
    final_pairs: bool = True


@dataclasses.dataclass(frozen=True)
class SFTExample:
    problem_id: str
    prompt: str
    solution: str
    mean_q: float
    min_q: float
    nodes: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Continuation:
    """One candidate continuation of a pair group's prefix: its text, Q and node index."""

    text: str
    q: float
    node: int


@dataclasses.dataclass(frozen=True)
class PairGroup:
    """Continuations of one shared prefix; ``pairs`` are (pos index, neg index)."""

    problem_id: str
    kind: str
    prompt: str
    prefix: str
    node: int
    pos: tuple[Continuation, ...]
    neg: tuple[Continuation, ...]
    pairs: tuple[tuple[int, int], ...]


# --- tree analysis -------------------------------------------------------------------------
def outcomes(record: TreeRecord) -> np.ndarray:
    """Per node: 1 correct outcome, -1 wrong outcome (wrong answer or execution error), 0 none. [N] int."""
    out = np.zeros(len(record.nodes), np.int64)
    for n in record.nodes:
        if n.terminal and n.answer is not None and n.correct is not None:
            out[n.index] = 1 if n.correct else -1
        elif n.terminal and not n.valid:
            out[n.index] = -1
    return out


def subtree_labels(record: TreeRecord) -> np.ndarray:
    """Per node: 1 leads to a correct answer, -1 leads only to wrong ones, 0 no outcome below. [N] int."""
    own = outcomes(record)
    has_correct, has_any = own == 1, own != 0
    for n in reversed(record.nodes[1:]):  # children have larger indices than their parents
        has_correct[n.parent] |= has_correct[n.index]
        has_any[n.parent] |= has_any[n.index]
    return np.where(has_correct, 1, np.where(has_any, -1, 0))


def _trajectories(record: TreeRecord) -> list[list[int]]:
    return [path_to(record, n.index) for n in record.nodes if n.terminal and n.answer is not None and n.index]


def _all_valid(record: TreeRecord, path: Sequence[int]) -> bool:
    return all(record.nodes[i].valid for i in path)


def _text(record: TreeRecord, path: Sequence[int]) -> str:
    return "".join(record.nodes[i].text for i in path)


def _rank_key(record: TreeRecord, path: Sequence[int]) -> tuple[float, float]:
    return mean_q(record, path), min_q(record, path)


def sft_examples(record: TreeRecord, cfg: ExtractConfig) -> list[SFTExample]:
    """Top correct, fully valid trajectories by (mean Q, min Q), best first, distinct texts."""
    good = [p for p in _trajectories(record) if record.nodes[p[-1]].correct is True and _all_valid(record, p)]
    good.sort(key=lambda p: (tuple(-x for x in _rank_key(record, p)), p[-1]))
    out, seen = [], set()
    for p in good:
        text = _text(record, p)
        if text in seen:
            continue
        seen.add(text)
        out.append(SFTExample(record.problem_id, build_prompt(record.question), text, *_rank_key(record, p), tuple(p)))
        if len(out) == cfg.sft_per_problem:
            break
    return out


def edit_distance(a: str, b: str, cap: int) -> int:
    """Levenshtein distance of two strings, or ``cap`` if it is at least ``cap``.

    Common prefix/suffix are stripped and the DP is banded to width ``cap``: O(cap * len)."""
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    a, b = a[i:], b[i:]
    j = 0
    while j < min(len(a), len(b)) and a[-1 - j] == b[-1 - j]:
        j += 1
    a, b = a[: len(a) - j], b[: len(b) - j]
    if abs(len(a) - len(b)) >= cap:
        return cap
    if not a or not b:
        return min(max(len(a), len(b)), cap)
    big = cap  # any distance >= cap is reported as cap, so cells are clipped there
    prev = [min(k, big) for k in range(len(b) + 1)]
    for x in range(1, len(a) + 1):
        lo, hi = max(1, x - cap), min(len(b), x + cap)
        cur = [big] * (len(b) + 1)
        cur[0] = min(x, big)
        for y in range(lo, hi + 1):
            cur[y] = min(prev[y] + 1, cur[y - 1] + 1, prev[y - 1] + (a[x - 1] != b[y - 1]), big)
        if min(cur[lo - 1 : hi + 1]) >= big:
            return cap
        prev = cur
    return min(prev[len(b)], cap)


def _select(pos: list, neg: list, cfg: ExtractConfig) -> tuple[list, list]:
    """``per_side`` vs ``per_side``, or 1 vs up to ``single_side_max`` when a side has one (lists pre-sorted)."""
    if len(pos) == 1:
        return pos, neg[: cfg.single_side_max]
    if len(neg) == 1:
        return pos[: cfg.single_side_max], neg
    return pos[: cfg.per_side], neg[: cfg.per_side]


def _group(
    record: TreeRecord,
    kind: str,
    prefix: str,
    node: int,
    pos: list[Continuation],
    neg: list[Continuation],
    cfg: ExtractConfig,
    counts: dict,
) -> PairGroup | None:
    pos, neg = _select(pos, neg, cfg)
    pairs = []
    for i, p in enumerate(pos):
        for j, n in enumerate(neg):
            if kind == "step" and p.q - n.q < cfg.min_q_margin:
                counts["dropped_margin"] += 1
            elif edit_distance(p.text, n.text, cfg.min_edit_distance) < cfg.min_edit_distance:
                counts["dropped_edit_distance"] += 1
            else:
                pairs.append((i, j))
    if not pairs:
        return None
    used_p, used_n = sorted({i for i, _ in pairs}), sorted({j for _, j in pairs})
    remap_p, remap_n = {i: k for k, i in enumerate(used_p)}, {j: k for k, j in enumerate(used_n)}
    return PairGroup(
        record.problem_id,
        kind,
        build_prompt(record.question),
        prefix,
        node,
        tuple(pos[i] for i in used_p),
        tuple(neg[j] for j in used_n),
        tuple((remap_p[i], remap_n[j]) for i, j in pairs),
    )


def pair_groups(record: TreeRecord, cfg: ExtractConfig, counts: dict | None = None) -> list[PairGroup]:
    """Step groups in node order, then the final-answer group."""
    counts = counts if counts is not None else {"dropped_margin": 0, "dropped_edit_distance": 0}
    labels = subtree_labels(record)
    children: dict[int, list[int]] = {}
    for n in record.nodes[1:]:
        children.setdefault(n.parent, []).append(n.index)
    groups = []
    for parent, kids in sorted(children.items()):
        cand = {k: Continuation(record.nodes[k].text, record.nodes[k].q, k) for k in kids}
        pos = sorted((cand[k] for k in kids if labels[k] == 1), key=lambda c: (-c.q, c.node))
        neg = sorted((cand[k] for k in kids if labels[k] == -1), key=lambda c: (c.q, c.node))
        if pos and neg:
            prefix = _text(record, path_to(record, parent))
            groups.append(_group(record, "step", prefix, parent, pos, neg, cfg, counts))
    if cfg.final_pairs:
        trajs = _trajectories(record)
        right = [p for p in trajs if record.nodes[p[-1]].correct is True and _all_valid(record, p)]
        wrong = [p for p in trajs if record.nodes[p[-1]].correct is False]
        right.sort(key=lambda p: (tuple(-x for x in _rank_key(record, p)), p[-1]))
        wrong.sort(key=lambda p: (_rank_key(record, p), p[-1]))
        to_cand = lambda p: Continuation(_text(record, p), mean_q(record, p), p[-1])  # noqa: E731
        if right and wrong:
            groups.append(
                _group(record, "final", "", 0, [to_cand(p) for p in right], [to_cand(p) for p in wrong], cfg, counts)
            )
    return [g for g in groups if g is not None]


# --- the whole extraction ------------------------------------------------------------------
def extract(
    records: Iterable[TreeRecord], cfg: ExtractConfig = ExtractConfig()
) -> tuple[list[SFTExample], list[PairGroup], dict]:
    """SFT examples, pair groups and statistics from tree records."""
    sft, groups, per_problem = [], [], []
    counts = {"dropped_margin": 0, "dropped_edit_distance": 0}
    n = solved = 0
    for rec in records:
        n += 1
        ex = sft_examples(rec, cfg)
        solved += bool(ex)
        sft.extend(ex)
        gs = pair_groups(rec, cfg, counts)
        groups.extend(gs)
        per_problem.append(sum(len(g.pairs) for g in gs))
    if n == 0:
        raise ValueError("no tree records to extract from")
    margins = [g.pos[i].q - g.neg[j].q for g in groups if g.kind == "step" for i, j in g.pairs]
    stats = {
        "problems": n,
        "problems_with_sft": solved,
        "sft_examples": len(sft),
        "pair_groups": len(groups),
        "pairs": int(sum(per_problem)),
        "step_pairs": sum(len(g.pairs) for g in groups if g.kind == "step"),
        "final_pairs": sum(len(g.pairs) for g in groups if g.kind == "final"),
        "pairs_per_problem_mean": float(np.mean(per_problem)),
        "pairs_per_problem_max": int(max(per_problem)),
        "problems_with_pairs": int(sum(c > 0 for c in per_problem)),
        "q_margin_mean": float(np.mean(margins)) if margins else None,
        "q_margin_min": float(np.min(margins)) if margins else None,
        "q_margin_median": float(np.median(margins)) if margins else None,
        **counts,
    }
    return sft, groups, stats


# --- files -----------------------------------------------------------------------------------
def is_json_array(path: str | os.PathLike) -> bool:
    """Whether a file holds a JSON array (its first non-blank byte is ``[``), as the released rStar-Math data."""
    with open(path, "rb") as f:
        return f.read(4096).lstrip()[:1] == b"["


def tree_files(paths: Sequence[str | os.PathLike], json_arrays: bool = False) -> list[Path]:
    """Expand files and folders (every ``*.jsonl`` inside, sorted; with ``json_arrays`` also every
    ``*.json`` holding a JSON array, as the released rStar-Math data) into data files."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            arrays = (f for f in p.rglob("*.json") if is_json_array(f)) if json_arrays else ()
            found = sorted([*p.rglob("*.jsonl"), *arrays])
            if not found:
                raise UserError(
                    f"{p}: no .jsonl {'(or JSON array .json) ' if json_arrays else 'tree '}files in this folder"
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return out


def load_trees(paths: Sequence[str | os.PathLike]) -> list[TreeRecord]:
    return [r for f in tree_files(paths) for r in read_records(f)]


def _read_jsonl(path: str | os.PathLike, build) -> list:
    def checked(d):
        try:
            return build(d)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"bad record ({type(e).__name__}: {e})") from None

    return list(read_jsonl(path, checked))


def write_sft(examples: Iterable[SFTExample], path: str | os.PathLike) -> None:
    write_jsonl(path, (dataclasses.asdict(e) for e in examples))


def read_sft(path: str | os.PathLike) -> list[SFTExample]:
    def build(d):
        return SFTExample(
            str(d["problem_id"]),
            str(d["prompt"]),
            str(d["solution"]),
            float(d["mean_q"]),
            float(d["min_q"]),
            tuple(int(i) for i in d["nodes"]),
        )

    return _read_jsonl(path, build)


def write_pairs(groups: Iterable[PairGroup], path: str | os.PathLike) -> None:
    write_jsonl(path, (dataclasses.asdict(g) for g in groups))


def read_pairs(path: str | os.PathLike) -> list[PairGroup]:
    def build(d):
        cands = lambda xs: tuple(Continuation(str(c["text"]), float(c["q"]), int(c["node"])) for c in xs)  # noqa: E731
        pos, neg = cands(d["pos"]), cands(d["neg"])
        pairs = tuple((int(i), int(j)) for i, j in d["pairs"])
        if (
            d["kind"] not in ("step", "final")
            or not pairs
            or any(not (0 <= i < len(pos) and 0 <= j < len(neg)) for i, j in pairs)
        ):
            raise ValueError("kind must be step/final and pairs must index pos/neg")
        return PairGroup(
            str(d["problem_id"]), d["kind"], str(d["prompt"]), str(d["prefix"]), int(d["node"]), pos, neg, pairs
        )

    return _read_jsonl(path, build)


def write_extracted(sft: Iterable[SFTExample], groups: Iterable[PairGroup], out_dir: str | os.PathLike) -> dict:
    """``out_dir/sft.jsonl`` and ``out_dir/pairs.jsonl``; returns {} (no counts beyond the stats)."""
    write_sft(sft, Path(out_dir) / "sft.jsonl")
    write_pairs(groups, Path(out_dir) / "pairs.jsonl")
    return {}


def run_extract(
    trees: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    cfg: ExtractConfig = ExtractConfig(),
    write: Callable[[list, list, str | os.PathLike], dict] = write_extracted,
) -> dict:
    """Read trees, write the examples and pairs with ``write`` (ours: ``sft.jsonl``, ``pairs.jsonl``;
    ``train.formats.write_rstar``: the official layouts) and ``stats.json`` to ``out_dir``; return stats."""
    sft, groups, stats = extract(load_trees(trees), cfg)
    stats.update(write(sft, groups, out_dir))
    text = json.dumps({**stats, "config": dataclasses.asdict(cfg)}, indent=2) + "\n"
    atomic_write_text(Path(out_dir) / "stats.json", text)
    return stats
