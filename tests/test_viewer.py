"""The tree viewer (`rstar-jax view`): the page's data and escaping, the DOT output, the CLI's
errors and the scale of 1,000 problems x 200 nodes (the page in a browser: test_viewer_browser.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from rstar_jax import cli
from rstar_jax.search.answers import choose_answer, is_solved
from rstar_jax.search.records import path_to, read_records, write_records
from rstar_jax.viewer import Source, load_sources, render_dot, render_html, write_eval_page
from rstar_jax.viewer.data import FLAGS, ROW_FIELDS, step_text
from tests.viewer_helpers import NASTY, _Dom, embedded_data, node, small_record, synthetic_records, text_of


def test_page_embeds_every_problem_and_its_nodes():
    a, b = synthetic_records(7, 30, seed=1), synthetic_records(5, 20, seed=2)
    b.append(small_record(prior=None))  # no PPM scores anywhere: answer by majority
    page = render_html([Source("mcts", "x/mcts.jsonl", a), Source("greedy", "x/greedy.jsonl", b)])
    data = embedded_data(page)
    assert [p["id"] for p in data["problems"]] == [r.problem_id for r in a + b]
    assert [p["src"] for p in data["problems"]] == [0] * 7 + [1] * 6
    assert [s["select"] for s in data["sources"]] == ["best", "best"]  # the synthetic trees have scores
    assert data["fields"] == list(ROW_FIELDS) and data["flags"] == FLAGS
    for p, tree, r in zip(data["problems"], data["trees"], a + b):
        assert len(tree) == p["n"] == len(r.nodes)
        chosen = choose_answer(r, "best")
        assert p["node"] == (chosen.node if chosen else -1) and p["answer"] == (chosen and chosen.answer)
        assert p["solved"] == is_solved(r, "best") and p["gold"] == r.gold and p["question"] == r.question
        for row, n in zip(tree, r.nodes):
            got = dict(zip(ROW_FIELDS, row))
            assert (got["parent"], got["visits"], got["answer"], got["num_tokens"]) == (
                n.parent,
                n.visits,
                n.answer,
                n.num_tokens,
            )
            assert abs(got["q"] - n.q) < 1e-4 and (got["ppm"] is None) == (n.prior is None)
            assert bool(got["flags"] & FLAGS["terminal"]) == n.terminal
            assert bool(got["flags"] & FLAGS["failed"]) == (not n.valid)
            assert bool(got["flags"] & FLAGS["correct"]) == (n.correct is True)
            assert bool(got["flags"] & FLAGS["wrong"]) == (n.correct is False)
    # only the small record lacks scores: on its own it is answered by majority vote
    data = embedded_data(render_html([Source("t", "t.jsonl", [small_record(prior=None)])]))
    assert data["sources"][0]["select"] == "majority" and data["problems"][0]["node"] == 3
    ppm_search = small_record(prior=None)  # a PPM-mode search whose scored nodes all failed: still best
    ppm_search.meta["mode"] = "ppm"
    assert embedded_data(render_html([Source("t", "t.jsonl", [ppm_search])]))["sources"][0]["select"] == "best"


def test_step_text_drops_the_output_block_it_records():
    r = small_record()
    assert step_text(r.nodes[2]) == "# print it\nprint(x)\n<end_of_code>\n"
    assert r.nodes[2].output == "42\n"
    assert step_text(r.nodes[1]) == NASTY
    kept = node(1, 0, 1, "print(1)\n<end_of_code>\n<output>\n1\n<end_of_output>\n")  # no output recorded
    assert step_text(kept) == kept.text


def test_nasty_text_is_escaped_and_the_page_is_self_contained():
    title = 'Trees <i>&</i> "more"'
    page = render_html([Source("t<x>", "a&b.jsonl", [small_record()])], title=title)
    # the data cannot end its <script> element or open a comment: no '<' at all inside it
    start = page.index('<script id="rv-data" type="application/json">') + len(
        '<script id="rv-data" type="application/json">'
    )
    blob = page[start : page.index("</script>", start)]
    assert "<" not in blob and "\u2028" not in blob
    assert page.count("</script>") == 3 and page.count("<script") == 3 and "<!--" not in page
    dom = _Dom(page)
    assert [s["attrs"].get("id") for s in dom.find("script")] == [None, "rv-data", None]
    assert not dom.find(id="pwned") and not dom.find("b")
    assert text_of(dom.find("title")[0]) == title and text_of(dom.find("h1")[0]) == title
    data = embedded_data(page)
    assert data["trees"][0][1][ROW_FIELDS.index("text")] == NASTY  # round-trips exactly
    assert data["problems"][0]["id"] == "p<1>&" and data["sources"][0]["label"] == "t<x>"
    # no network: nothing is loaded from anywhere, and the policy forbids it anyway
    assert not [e for e in dom.elements if {"src", "href", "action"} & e["attrs"].keys()]
    assert not re.search(r"url\(|@import|https?://|fetch\(|XMLHttpRequest", page)
    (csp,) = dom.find("meta", http_equiv="Content-Security-Policy")
    assert csp["attrs"]["content"].startswith("default-src 'none'")


# ---------------------------------------------------------------- DOT


def _dot_statements(dot: str):
    nodes = dict(re.findall(r"^\s*(p\d+n\d+) \[(.*)\];$", dot, re.M))
    edges = re.findall(r"^\s*(p\d+n\d+) -> (p\d+n\d+)( \[.*\])?;$", dot, re.M)
    return nodes, edges


def test_dot_has_one_node_per_tree_node_and_marks_the_answer_path():
    records = [small_record(), *synthetic_records(3, 25, seed=4)]
    dot = render_dot([Source("t", "t.jsonl", records)])
    assert dot.lstrip().split("\n", 1)[1].startswith("digraph trees {") and dot.rstrip().endswith("}")
    # braces balance outside quoted strings; every quoted string is closed
    unquoted = re.sub(r'"(\\.|[^"\\])*"', '""', dot.split("\n", 1)[1])
    assert unquoted.count("{") == unquoted.count("}") == len(records) + 1 and '"' not in unquoted.replace('""', "")
    nodes, edges = _dot_statements(dot)
    assert len(nodes) == sum(len(r.nodes) for r in records)
    assert len(edges) == sum(len(r.nodes) - 1 for r in records)
    for k, r in enumerate(records):
        path = set(path_to(r, choose_answer(r, "best").node))
        marked = {
            int(n.split("n")[1]) for n, attrs in nodes.items() if n.startswith(f"p{k}n") and 'class="path"' in attrs
        }
        assert marked == path
        marked_edges = {int(b.split("n")[1]) for a, b, style in edges if b.startswith(f"p{k}n") and style}
        assert marked_edges == path - {0}
        for n in r.nodes[1:]:
            assert (f"p{k}n{n.parent}", f"p{k}n{n.index}") in {(a, b) for a, b, _ in edges}
    # the nasty text is inside one quoted label, its quotes and backslashes escaped
    label = nodes["p0n1"]
    assert '\\"&amp;\\"' in label and "\\\\ back" in label and "\\l" in label  # lines clipped at 60 chars
    assert "CHOSEN" in nodes["p0n3"] and "peripheries=2" in nodes["p0n3"] and "#dafbe1" in nodes["p0n3"]
    assert "#fff8c5" in nodes["p0n4"] and "#ffebe9" in nodes["p0n5"]


@pytest.mark.skipif(not shutil.which("dot"), reason="graphviz's `dot` is not installed (apt-get install graphviz)")
def test_dot_renders_with_graphviz(tmp_path):
    path = tmp_path / "t.dot"
    path.write_text(render_dot([Source("t", "t.jsonl", [small_record(), *synthetic_records(2, 40)])]))
    out = subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count('class="node') == 7 + 80 and 'class="node path"' in out.stdout


# ---------------------------------------------------------------- scale


def test_a_thousand_problems_of_200_nodes(capsys):
    t = time.perf_counter()
    records = synthetic_records(1000, 200)
    made = time.perf_counter() - t
    t = time.perf_counter()
    page = render_html([Source("big", "big.jsonl", records)])
    seconds = time.perf_counter() - t
    size = len(page.encode("utf-8"))
    with capsys.disabled():
        print(
            f"\n[viewer] 1,000 problems x 200 nodes: page {size / 1e6:.1f} MB in {seconds:.2f} s (records {made:.2f} s)"
        )
    assert seconds < 20, seconds  # about 1 s here; generous for slow CI machines
    assert size < 40e6, size
    start = page.index('type="application/json">') + len('type="application/json">')
    data = json.loads(page[start : page.index("</script>", start)])
    assert len(data["problems"]) == 1000 and sum(len(t) for t in data["trees"]) == 200_000


# ---------------------------------------------------------------- the command line


def test_cli_writes_html_and_dot(search_trees, tmp_path, capsys):
    out = tmp_path / "v" / "trees.html"
    assert cli.main(["view", str(search_trees), "--out", str(out), "--title", "mine"]) == 0
    assert "wrote" in capsys.readouterr().out
    data = embedded_data(out.read_text())
    records = read_records(search_trees)
    assert data["title"] == "mine" and [p["id"] for p in data["problems"]] == [r.problem_id for r in records]
    assert data["sources"][0]["select"] == "majority"  # terminal-guided search: no PPM scores
    pid = records[1].problem_id
    assert cli.main(["view", str(search_trees), "--out", str(tmp_path / "one.dot"), "--problem", pid]) == 0
    nodes, _ = _dot_statements((tmp_path / "one.dot").read_text())
    assert len(nodes) == len(records[1].nodes) and "1 problems" in capsys.readouterr().out
    assert cli.main(["view", str(search_trees), "--out", "-", "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("// rstar-jax view")


def test_cli_help_explains(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["view", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "self-contained HTML" in text and "--format" in text and "exits with status 2" in text


def _bad_inputs(tmp_path, good):
    bad_json = tmp_path / "bad_json.jsonl"
    bad_json.write_text(good.read_text().splitlines()[0] + "\n{not json\n")
    not_record = tmp_path / "not_record.jsonl"
    not_record.write_text('{"prompt": "x", "completion": "y"}\n')
    bad_node = tmp_path / "bad_node.jsonl"
    rec = json.loads(good.read_text().splitlines()[0])
    rec["nodes"][1]["parent"] = 5
    bad_node.write_text(json.dumps(rec) + "\n")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    return [
        (tmp_path / "missing.jsonl", "missing.jsonl: No such file or directory"),
        (bad_json, "bad_json.jsonl:2: invalid JSON"),
        (not_record, "not_record.jsonl:1: record: missing fields"),
        (bad_node, "bad_node.jsonl:1: node 1"),
        (binary, "binary.jsonl:1: not UTF-8"),
        (empty_dir, "empty_dir: folder holds no .jsonl files"),
    ]


def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(search_trees, tmp_path, capsys):
    out = tmp_path / "out.html"
    for path, msg in _bad_inputs(tmp_path, search_trees):
        assert cli.main(["view", str(search_trees), str(path), "--out", str(out)]) == 2, path
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("rstar-jax view: error: ") and msg in err, err
        assert not out.exists()
    out.write_text("old page")
    assert cli.main(["view", str(search_trees), "--out", str(out), "--problem", "no-such-id"]) == 2
    assert "no problem with id no-such-id" in capsys.readouterr().err
    assert out.read_text() == "old page" and os.listdir(tmp_path).count("out.html") == 1
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_eval_page_holds_every_method(tmp_path):
    records = synthetic_records(3, 12)
    for name in ("greedy", "chains", "mcts"):
        write_records(tmp_path / f"{name}.jsonl", records)
    (tmp_path / "metrics.json").write_text("{}")
    path = write_eval_page(tmp_path, title="Round 1")
    assert path == str(tmp_path / "trees.html")
    data = embedded_data(open(path).read())
    assert [s["label"] for s in data["sources"]] == ["mcts", "chains", "greedy"]
    assert [s["path"] for s in data["sources"]] == ["mcts.jsonl", "chains.jsonl", "greedy.jsonl"]
    assert len(data["problems"]) == 9 and data["title"] == "Round 1"
    (tmp_path / "nothing").mkdir()
    assert write_eval_page(tmp_path / "nothing") is None
    assert len(load_sources([tmp_path])) == 3  # a folder stands for its .jsonl files
