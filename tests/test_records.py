"""Tree records: lossless JSON, building from a device tree, trajectories, files."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from rstar_jax.search.records import (
    NodeRecord,
    TreeRecord,
    mean_q,
    min_q,
    read_records,
    trajectories,
    trajectory_steps,
    write_records,
)
from rstar_jax.search.tree import Tree
from tests.tree_checks import check_invariants, record_from_tree


def _tree() -> Tree:
    """One terminal-mode tree (no batch axis): root -> 1 -> {2 correct answer, 3 failed,
    4 wrong answer}; 2 and 4 backed up +1 / -1."""
    n, k = 6, 3
    parent = np.array([-1, 0, 1, 1, 1, -1], np.int32)
    children = np.full((n, k), -1, np.int32)
    children[0, 0], children[1] = 1, [2, 3, 4]
    return Tree(
        parent=parent,
        depth=np.array([0, 1, 2, 2, 2, 0], np.int32),
        visits=np.array([2, 2, 1, 1, 1, 0], np.int32),
        value_sum=np.array([0, 0, 1, -1, -1, 0], np.float32),
        prior=np.zeros(n, np.float32),
        terminal=np.array([1, 1, 1, 1, 1, 0], bool),
        reward=np.array([0, 0, 1, -1, -1, 0], np.float32),
        valid=np.arange(n) < 5,
        failed=np.arange(n) == 3,
        children=children,
        num_nodes=np.int32(5),
    )


INFOS = [
    {"text": ""},
    {"text": "<code>\n# add\nx = 1 + 2\n<end_of_step>", "output": None, "num_tokens": 9, "score": 0.25},
    {"text": "<answer>\\boxed{3}<end_of_answer>", "answer": "3", "correct": True, "num_tokens": 7, "score": 1 / 3},
    {"text": "print(y)<end_of_code>", "output": "NameError: name 'y' is not defined", "valid": False},
    {"text": "<answer>\\boxed{4}<end_of_answer>", "answer": "4", "correct": False, "score": -0.1},
]


def _record(**meta) -> TreeRecord:
    return record_from_tree(
        _tree(),
        INFOS,
        problem_id="p1",
        question="1+2? ünïcode ∑",
        gold="3",
        meta={"mode": "terminal", "nested": {"xs": [1, 2.5, None]}, **meta},
    )


def test_record_from_tree():
    tree = _tree()
    check_invariants(jax.tree.map(lambda x: np.asarray(x)[None], tree))
    r = _record()
    assert [n.parent for n in r.nodes] == [-1, 0, 1, 1, 1]
    assert [n.depth for n in r.nodes] == [0, 1, 2, 2, 2]
    assert [n.q for n in r.nodes] == [0.0, 0.0, 1.0, -1.0, -1.0]
    assert [n.visits for n in r.nodes] == [2, 2, 1, 1, 1]
    assert [n.prior for n in r.nodes] == [None, 0.25, 1 / 3, None, -0.1]
    assert [n.valid for n in r.nodes] == [True, True, True, False, True]
    assert r.nodes[3].output.startswith("NameError") and r.nodes[2].correct is True
    with pytest.raises(ValueError, match="4 host nodes"):
        record_from_tree(tree, INFOS[:4], problem_id="p", question="q", gold="g")


def test_json_round_trip_is_lossless():
    r = _record(weird=[0.1, 1e-300, -0.0, 2**53 + 1])
    r.nodes[1].q = float(np.float32(1 / 3))  # a float32 value, as the device produces
    r.nodes[4].q = -0.7000000000000001
    line = r.to_json()
    assert "\n" not in line
    back = TreeRecord.from_json(line)
    assert back == r and back.to_json() == line
    assert math.copysign(1, back.meta["weird"][2]) == -1.0
    assert [type(n.q) for n in back.nodes] == [float] * 5
    assert back.nodes[1].prior == 0.25 and back.nodes[0].prior is None and back.nodes[1].output is None
    # an int where a float is expected is accepted (some writers drop ".0")
    d = json.loads(line)
    d["nodes"][0]["q"] = 0
    assert TreeRecord.from_dict(d).nodes[0].q == 0.0 and type(TreeRecord.from_dict(d).nodes[0].q) is float


def test_nan_is_rejected():
    r = _record()
    r.nodes[1].q = float("nan")
    with pytest.raises(ValueError):
        r.to_json()


def test_trajectories():
    r = _record()
    assert trajectories(r) == [[0, 1, 2], [0, 1, 4]]
    good, bad = trajectories(r)
    assert trajectory_steps(r, good) == [INFOS[1]["text"], INFOS[2]["text"]]
    assert r.nodes[good[-1]].correct is True and r.nodes[bad[-1]].correct is not True
    assert mean_q(r, good) == 0.5 and min_q(r, good) == 0.0
    assert mean_q(r, bad) == -0.5 and min_q(r, bad) == -1.0
    with pytest.raises(ValueError):
        mean_q(r, [0])


def test_write_read_atomic(tmp_path):
    path = tmp_path / "sub" / "trees.jsonl"
    records = [_record(i=i) for i in range(3)]
    write_records(path, records)
    assert read_records(path) == records
    assert len(path.read_text().splitlines()) == 3
    # a failure while writing leaves the previous file intact and no temp file behind
    broken = _record()
    broken.nodes[0].q = float("inf")
    with pytest.raises(ValueError):
        write_records(path, [records[0], broken])
    assert read_records(path) == records
    assert sorted(p.name for p in path.parent.iterdir()) == ["trees.jsonl"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: "{not json", r"trees.jsonl:2: "),
        (lambda d: d.pop("gold") and d, r"trees.jsonl:2: record: missing fields \['gold'\]"),
        (lambda d: d["nodes"][1].pop("visits") and d, r"trees.jsonl:2: node 1: missing fields \['visits'\]"),
        (lambda d: d["nodes"][1].update(extra=1) or d, r"unknown fields \['extra'\]"),
        (lambda d: d["nodes"][2].update(visits="3") or d, r"trees.jsonl:2: node 2: field 'visits'"),
        (lambda d: d["nodes"][2].update(visits=True) or d, r"node 2: field 'visits'"),
        (lambda d: d["nodes"][2].update(correct=1) or d, r"node 2: field 'correct'"),
        (lambda d: d["nodes"][2].update(parent=3) or d, r"node 2: index 2 / parent 3"),
        (lambda d: [d], r"trees.jsonl:2: record: expected an object"),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, edit, message):
    path = tmp_path / "trees.jsonl"
    good = _record().to_json()
    bad = edit(json.loads(good))
    path.write_text(good + "\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n\n")
    with pytest.raises(ValueError, match=message):
        read_records(path)


def test_node_record_fields_match_schema():
    r = _record()
    assert list(r.to_dict()["nodes"][0]) == [f.name for f in dataclasses.fields(NodeRecord)]
