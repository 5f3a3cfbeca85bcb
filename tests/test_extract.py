"""SFT examples and PPM pairs from hand-built trees with known answers."""

import json
import random

import pytest

from rstar_jax.errors import UserError
from rstar_jax.search.records import NodeRecord, TreeRecord, write_records
from rstar_jax.steps import build_prompt
from rstar_jax.train.examples import (
    ExtractConfig,
    edit_distance,
    extract,
    pair_groups,
    read_pairs,
    read_sft,
    run_extract,
    sft_examples,
    subtree_labels,
)


def _tree(spec, pid="p"):
    """spec: (parent, text, q, kind) per node after the root; kind is None (inner step),
    "right"/"wrong" (answer), "error" (failed code, terminal), "inner-error" (invalid, non-terminal)."""
    nodes = [NodeRecord(0, -1, 0, "", 0.0, 1, None, None, False, True, None, None, 0)]
    for i, (parent, text, q, kind) in enumerate(spec, 1):
        answer = {"right": "3", "wrong": "4"}.get(kind)
        nodes.append(
            NodeRecord(
                i,
                parent,
                nodes[parent].depth + 1,
                text,
                q,
                1,
                None,
                None,
                kind in ("right", "wrong", "error"),
                kind not in ("error", "inner-error"),
                answer,
                None if answer is None else kind == "right",
                5,
            )
        )
    return TreeRecord(pid, "What is 1 + 2?", "3", nodes, {})


def _step(name):  # step texts far apart in edit distance
    return f"<code>\n# {name * 25}\nx = {name!r}\n<end_of_step>"


RIGHT = "<answer>\nThe answer is \\boxed{3}\n<end_of_answer>"
WRONG = "<answer>\nThe answer is \\boxed{4}\n<end_of_answer>"

# root -> 1 (q .6) -> {3 right, 4 wrong}; root -> 2 (q -.5) -> {5 code error, 6 wrong}; root -> 7 unexplored
TREE1 = _tree(
    [
        (0, _step("a"), 0.6, None),
        (0, _step("b"), -0.5, None),
        (1, RIGHT, 1.0, "right"),
        (1, WRONG, -1.0, "wrong"),
        (2, _step("e"), -1.0, "error"),
        (2, WRONG, -1.0, "wrong"),
        (0, _step("c"), 0.2, None),
    ]
)


def test_subtree_labels():
    assert list(subtree_labels(TREE1)) == [1, 1, -1, 1, -1, -1, -1, 0]
    # a mixed subtree leads to a correct answer; the root of a tree without outcomes has none
    deep = _tree([(0, "s", 0.0, None), (1, "t", 0.0, None), (2, RIGHT, 1.0, "right"), (1, WRONG, -1, "wrong")])
    assert list(subtree_labels(deep)) == [1, 1, 1, 1, -1]
    assert list(subtree_labels(_tree([(0, "s", 0.0, None)]))) == [0, 0]


def test_pairs_tree1():
    groups = pair_groups(TREE1, ExtractConfig())
    got = [(g.kind, g.node, [c.node for c in g.pos], [c.node for c in g.neg], list(g.pairs)) for g in groups]
    # root: 1 pos (node 1) vs negatives (node 2; 7 has no outcome); node 1: 3 vs 4 differ by one
    # character (edit distance filter); final: trajectory to 3 vs wrong ones worst-first
    # (6: mean -.75, then 4: mean -.2, again one character from 3's).
    assert got == [("step", 0, [1], [2], [(0, 0)]), ("final", 0, [3], [6], [(0, 0)])]
    root, final = groups
    assert root.prefix == "" and root.prompt == build_prompt("What is 1 + 2?")
    wide = pair_groups(TREE1, ExtractConfig(min_edit_distance=1, final_pairs=False))
    assert [(g.node, [c.node for c in g.pos], [c.node for c in g.neg]) for g in wide] == [(0, [1], [2]), (1, [3], [4])]
    assert wide[1].prefix == _step("a")
    assert final.pos[0].text == _step("a") + RIGHT and final.neg[0].text == _step("b") + WRONG


def test_pairs_two_vs_two_order_and_margin():
    # positives by Q desc: 3 (.95), 1 (.9), 2 (.7) -> take 3, 1; negatives by Q asc: 4 (-.9), 9 (.42), 11 (.6)
    spec = [
        (0, _step("a"), 0.9, None),
        (0, _step("b"), 0.7, None),
        (0, _step("c"), 0.95, None),
        (0, _step("d"), -0.9, None),
        (1, RIGHT, 1.0, "right"),
        (2, RIGHT, 1.0, "right"),
        (3, RIGHT, 1.0, "right"),
        (4, WRONG, -1.0, "wrong"),
        (0, _step("e"), 0.42, None),
        (9, WRONG, -1.0, "wrong"),
        (0, _step("f"), 0.6, None),
        (11, WRONG, -1.0, "wrong"),
    ]
    g = pair_groups(_tree(spec), ExtractConfig(final_pairs=False))[0]
    assert [c.node for c in g.pos] == [3, 1] and [c.node for c in g.neg] == [4, 9]
    # 1 (.9) vs 9 (.42): margin .48 < .5 dropped
    assert list(g.pairs) == [(0, 0), (0, 1), (1, 0)]
    loose = pair_groups(_tree(spec), ExtractConfig(final_pairs=False, min_q_margin=0.4))[0]
    assert list(loose.pairs) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_pairs_one_vs_four():
    # five correct children vs one wrong: up to 4 positives (best Q first) against it
    spec = [(0, _step(ch), q, None) for ch, q in zip("abcde", (0.5, 0.9, 0.7, 0.8, 0.6))]
    spec += [(i, RIGHT, 1.0, "right") for i in range(1, 6)] + [(0, _step("z"), -0.8, None), (11, WRONG, -1, "wrong")]
    g = pair_groups(_tree(spec), ExtractConfig(final_pairs=False))[0]
    assert [c.node for c in g.pos] == [2, 4, 3, 5] and [c.node for c in g.neg] == [11]
    assert list(g.pairs) == [(0, 0), (1, 0), (2, 0), (3, 0)]


def test_sft_ranking_and_invalid_exclusion():
    # a: q (.5, .5) mean .5 min .5; b: (0, 1) mean .5 min 0; c: highest mean but an invalid step
    spec = [
        (0, _step("a"), 0.5, None),
        (1, RIGHT, 0.5, "right"),
        (0, _step("b"), 0.0, None),
        (3, RIGHT, 1.0, "right"),
        (0, _step("c"), 0.9, "inner-error"),
        (5, RIGHT, 1.0, "right"),
        (0, _step("d"), 0.9, None),
        (7, WRONG, 1.0, "wrong"),
    ]
    rec = _tree(spec)
    ex = sft_examples(rec, ExtractConfig())
    assert [e.nodes for e in ex] == [(0, 1, 2), (0, 3, 4)]
    assert ex[0].solution == _step("a") + RIGHT and ex[0].prompt == build_prompt(rec.question)
    assert (ex[0].mean_q, ex[0].min_q, ex[1].min_q) == (0.5, 0.5, 0.0)
    assert [e.nodes for e in sft_examples(rec, ExtractConfig(sft_per_problem=1))] == [(0, 1, 2)]
    unsolved = _tree([(0, _step("a"), 0.0, None), (1, WRONG, -1.0, "wrong")])
    assert sft_examples(unsolved, ExtractConfig()) == []


def _levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def test_edit_distance_matches_full_dp():
    rng = random.Random(0)
    for _ in range(300):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 40)))
        for cap in (1, 5, 20):
            assert edit_distance(a, b, cap) == min(_levenshtein(a, b), cap), (a, b, cap)


def test_extract_files_and_stats(tmp_path, capsys):
    unsolved = _tree([(0, _step("a"), 0.0, None), (1, WRONG, -1.0, "wrong")], pid="q")
    write_records(tmp_path / "trees" / "a.jsonl", [TREE1])
    write_records(tmp_path / "trees" / "b.jsonl", [unsolved])
    stats = run_extract([tmp_path / "trees"], tmp_path / "out")
    assert stats["problems"] == 2 and stats["problems_with_sft"] == 1 and stats["sft_examples"] == 1
    assert stats["pairs"] == 2 and stats["step_pairs"] == 1 and stats["final_pairs"] == 1
    assert stats["dropped_edit_distance"] == 2 and stats["q_margin_min"] == pytest.approx(1.1)
    sft, groups, _ = extract([TREE1, unsolved])
    assert read_sft(tmp_path / "out" / "sft.jsonl") == sft
    assert read_pairs(tmp_path / "out" / "pairs.jsonl") == groups
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["pairs"] == 2 and saved["config"]["min_edit_distance"] == 20


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no tree records"):
        extract([])
    with pytest.raises(UserError, match="no .jsonl"):
        run_extract([tmp_path], tmp_path / "out")
    d = TREE1.to_dict()
    del d["nodes"][2]["q"]
    (tmp_path / "bad.jsonl").write_text(json.dumps(d) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: node 2: missing fields \['q'\]"):
        run_extract([tmp_path / "bad.jsonl"], tmp_path / "out")
    (tmp_path / "pairs.jsonl").write_text('{"problem_id": "p", "kind": "step"}\n')
    with pytest.raises(ValueError, match="pairs.jsonl:1: bad record"):
        read_pairs(tmp_path / "pairs.jsonl")
