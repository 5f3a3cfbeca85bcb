"""The released rStar-Math SFT and PPM data formats: hand-made records in the official layouts, the
round trip extract -> official files -> trainer input, bad records, and short training runs on them."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from rstar_jax import cli
from rstar_jax.errors import UserError
from rstar_jax.search.records import write_records
from rstar_jax.steps import build_prompt
from rstar_jax.train.api import load_data
from rstar_jax.train.examples import ExtractConfig, extract, load_trees
from rstar_jax.train.formats import read_rstar_ppm, read_rstar_sft
from tests.test_extract import RIGHT, TREE1, WRONG, _step, _tree

# The official SFT trainer's prompt (train/train_SFT.py PROMPT_DICT) and PPM header (extra_rm_file.py).
OFFICIAL_PROMPT = "<|user|>:\n{}\n<|assistant|>: Let's think step by step and solve the problem with code."
ANSWER = "<end_of_code>\n<output>{0}<end_of_output>\n<answer>The answer is \\boxed{{{0}}}.<end_of_answer>"

SFT_RECORDS = [
    {"query": "What is 12 plus 7?", "response": "<code>\n# add them\nx = 12 + 7\nprint(x)\n" + ANSWER.format(19)},
    {"query": "What is 3 times 5?", "response": "<code>\n# multiply\nprint(3 * 5)\n" + ANSWER.format(15)},
]
Q = "What is 28 plus 16?"
STEP1 = "<code>\n# add them\nx = 28 + 16\n<end_of_step>"
PPM_RECORDS = [
    # a whole-solution pair whose prompt is the question only, as in the official rm_data_examples.json
    {
        "prompt": f"<|user|>:\n{Q}",
        "pos": OFFICIAL_PROMPT.format("")[len("<|user|>:\n") :] + STEP1 + "\nprint(x)\n" + ANSWER.format(44),
        "neg": OFFICIAL_PROMPT.format("")[len("<|user|>:\n") :] + "<code>\nprint(28 - 16)\n" + ANSWER.format(12),
        "pos_count": 1,
        "neg_count": 1,
    },
    # step pairs of one node: 1 preferred vs 2 rejected next steps
    *(
        {
            "prompt": OFFICIAL_PROMPT.format(Q) + STEP1,
            "pos": "\n# print the sum\nprint(x)\n" + ANSWER.format(44),
            "neg": neg,
            "pos_count": 1,
            "neg_count": 2,
        }
        for neg in (
            "\n# print the difference\nprint(x - 32)\n" + ANSWER.format(12),
            "\nprint(448)\n" + ANSWER.format(448),
        )
    ),
]


def _ours(text: str) -> str:
    """Official text in our step format: our prompt puts a newline between the header and ``<code>``."""
    return text.replace("with code.<code>", "with code.\n<code>")


def _json_array(path, records) -> None:
    """One record a line after the opening bracket: record k (0-based) is on line k + 2."""
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")


def _inputs(groups) -> Counter:
    """The (preferred, rejected) model inputs of every pair."""
    return Counter(
        (g.prompt + g.prefix + g.pos[i].text, g.prompt + g.prefix + g.neg[j].text) for g in groups for i, j in g.pairs
    )


def test_read_official_sft_and_ppm_records(tmp_path):
    _json_array(tmp_path / "sft.json", SFT_RECORDS[:1])
    (tmp_path / "sft.jsonl").write_text(
        json.dumps({"instruction": SFT_RECORDS[1]["query"], "output": SFT_RECORDS[1]["response"]}) + "\n"
    )
    intro = OFFICIAL_PROMPT.format("").split("\n")[-1]  # a response that kept the assistant's intro
    _json_array(tmp_path / "intro.json", [{**SFT_RECORDS[0], "response": intro + SFT_RECORDS[0]["response"]}])
    sft = load_data([tmp_path / "sft.json", tmp_path / "sft.jsonl", tmp_path / "intro.json"], "sft")
    assert [e.prompt for e in sft] == [build_prompt(r["query"]) for r in SFT_RECORDS + SFT_RECORDS[:1]]
    for e, r in zip(sft, SFT_RECORDS + SFT_RECORDS[:1]):  # the official trainer's text, in our step format
        assert e.prompt + e.solution == _ours(OFFICIAL_PROMPT.format(r["query"]) + r["response"])

    (tmp_path / "ppm.json").write_text(json.dumps(PPM_RECORDS, indent=4))  # as sample_rm_data.py writes
    groups = load_data([tmp_path / "ppm.json"], "pairs")
    assert len(groups) == 2 and [len(g.pairs) for g in groups] == [1, 2]
    assert [(len(g.pos), len(g.neg)) for g in groups] == [(1, 1), (1, 2)]
    assert _inputs(groups) == Counter(
        (_ours(r["prompt"] + r["pos"]), _ours(r["prompt"] + r["neg"])) for r in PPM_RECORDS
    )
    assert groups[1].prompt + groups[1].prefix == build_prompt(Q) + STEP1[len("<code>\n") :]
    assert len({g.problem_id for g in groups}) == 1  # one question: one problem for the held-out split


def test_extract_to_official_format_and_back(tmp_path):
    """extract --format rstar writes the official layouts; the trainers read back the same examples and pairs."""
    unsolved = _tree([(0, _step("a"), 0.0, None), (1, WRONG, -1.0, "wrong")], pid="q")
    two = _tree(  # two correct trajectories, code with output, a node with 2 vs 1 children
        [
            (0, _step("f"), 0.7, None),
            (0, _step("g"), 0.1, None),
            (0, _step("h"), -0.6, None),
            (1, "x = 1\nprint(x)\n<end_of_code>\n<output>3<end_of_output>\n" + RIGHT, 1.0, "right"),
            (2, RIGHT, 1.0, "right"),
            (3, WRONG, -1.0, "wrong"),
        ],
        pid="r",
    )
    write_records(tmp_path / "trees" / "hand.jsonl", [TREE1, unsolved, two])
    trees = [str(tmp_path / "trees")]
    loose = ["min_edit_distance=0", "min_q_margin=0"]
    assert cli.main(["extract", "--trees", *trees, "--out", str(tmp_path / "out"), "--format", "rstar", *loose]) == 0
    sft, groups, _ = extract(load_trees(trees), ExtractConfig(min_edit_distance=0, min_q_margin=0))
    assert len(sft) == 3 and sum(len(g.pairs) for g in groups) >= 6
    assert sorted((tmp_path / "out").iterdir()) == [
        tmp_path / "out" / n for n in ("rstar_ppm.jsonl", "rstar_sft.jsonl", "stats.json")
    ]
    records = [json.loads(x) for x in (tmp_path / "out" / "rstar_ppm.jsonl").read_text().splitlines()]
    assert all(set(r) == {"prompt", "pos", "neg", "pos_count", "neg_count"} for r in records)
    assert all(r["prompt"].startswith("<|user|>:\n") and "with code.<code>" in r["prompt"] + r["pos"] for r in records)
    back_sft = load_data([tmp_path / "out"], "sft")
    assert [(e.prompt, e.solution) for e in back_sft] == [(e.prompt, e.solution) for e in sft]
    back = load_data([tmp_path / "out"], "pairs", fmt="rstar")
    assert _inputs(back) == _inputs(groups)
    # the counts are the two sides of each pair's node
    assert Counter((r["pos_count"], r["neg_count"]) for r in records) == Counter(
        (len(g.pos), len(g.neg)) for g in groups for _ in g.pairs
    )


def test_bad_official_records(tmp_path):
    bad = [PPM_RECORDS[0], {k: v for k, v in PPM_RECORDS[1].items() if k not in ("neg", "neg_count")}]
    _json_array(tmp_path / "ppm.json", bad)
    with pytest.raises(UserError, match=r"ppm.json:3: missing field\(s\) neg, neg_count \(an rStar-Math PPM record"):
        load_data([tmp_path / "ppm.json"], "pairs")
    _json_array(tmp_path / "count.json", [{**PPM_RECORDS[0], "pos_count": "two"}])
    with pytest.raises(UserError, match=r"count.json:2: field 'pos_count' must be a count"):
        read_rstar_ppm(tmp_path / "count.json")
    (tmp_path / "sft.jsonl").write_text(json.dumps(SFT_RECORDS[0]) + "\n" + json.dumps({"query": "1+1?"}) + "\n")
    with pytest.raises(UserError, match=r"sft.jsonl:2: missing field\(s\) response"):
        read_rstar_sft(tmp_path / "sft.jsonl")
    (tmp_path / "trunc.json").write_text(json.dumps(SFT_RECORDS)[:-40])
    with pytest.raises(UserError, match="trunc.json:1: invalid JSON"):
        read_rstar_sft(tmp_path / "trunc.json")
    with pytest.raises(UserError, match="holds rstar-ppm data, this trainer needs"):
        load_data([tmp_path / "count.json"], "sft")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from tests.test_train_loop import _base_folder

    return _base_folder(tmp_path_factory.mktemp("base"))


def test_train_on_official_data(tmp_path, base, capsys):
    """train-policy / train-ppm --data on the official files: a short run each; bad records exit 2, nothing written."""
    from rstar_jax.models.hf_ppm import load_ppm

    _json_array(tmp_path / "sft.json", SFT_RECORDS)
    _json_array(tmp_path / "ppm.json", PPM_RECORDS)
    small = ["--steps", "2", "batch_size=2", "seq_len=256"]
    argv = ["train-policy", "--data", str(tmp_path / "sft.json"), "--init", base, "--out", str(tmp_path / "pol")]
    assert cli.main([*argv, *small]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["examples"] == len(SFT_RECORDS) and summary["steps"] == 2
    argv = ["train-ppm", "--data", str(tmp_path / "ppm.json"), "--format", "rstar", "--init", base]
    assert cli.main([*argv, "--out", str(tmp_path / "ppm"), *small, "eval_fraction=0"]) == 0
    config, params = load_ppm(str(tmp_path / "ppm" / "hf"))
    assert config.value_head and (tmp_path / "ppm" / "hf" / "tokenizer.json").exists()

    _json_array(tmp_path / "bad.json", [PPM_RECORDS[0], {"prompt": "p", "pos": "a"}])
    capsys.readouterr()
    argv = ["train-ppm", "--data", str(tmp_path / "bad.json"), "--init", base, "--out", str(tmp_path / "bad")]
    assert cli.main(argv) == 2
    assert "bad.json:3: missing field(s) neg, pos_count, neg_count" in capsys.readouterr().err
    assert cli.main([*argv[:-1], str(tmp_path / "pqm"), "--kind", "pqm", "--data", str(tmp_path / "ppm.json")]) == 2
    assert "hold no Q values" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() and not (tmp_path / "pqm").exists()
