"""The tree viewer (`rstar-jax view`): the page's data and escaping, the DOT output, the CLI's
errors, the scale of 1,000 problems x 200 nodes, and the page itself in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import struct
import subprocess
import time
from html.parser import HTMLParser

import pytest

from rstar_jax import cli
from rstar_jax.data import save_problems
from rstar_jax.domain import generate_problems
from rstar_jax.search.answers import choose_answer, is_solved
from rstar_jax.search.records import NodeRecord, TreeRecord, path_to, read_records, write_records
from rstar_jax.viewer import Source, load_sources, render_dot, render_html, write_eval_page
from rstar_jax.viewer.data import FLAGS, ROW_FIELDS, step_text

NASTY = (
    '# it\'s </script><script>window.__pwned = 1</script> & <!-- "quoted" --> <b id="pwned">x</b>\n'
    "print('<end_of_step>' if a < b > c else \"&amp;\")  # \\ backslash \u2028 line sep \u00e9\n"
    "<end_of_step>"
)


def node(i, parent, depth, text, q=0.0, visits=1, prior=None, output=None, terminal=False, valid=True, answer=None):
    correct = None if answer is None else answer == "42"
    return NodeRecord(i, parent, depth, text, q, visits, prior, output, terminal, valid, answer, correct, 10 * (i > 0))


def small_record(pid="p<1>&", text=NASTY, prior=0.5) -> TreeRecord:
    """root -> 1 (nasty) -> 2 (final code with output) -> 3 (answer 42, correct)
    root -> 4 (failed code) ; 1 -> 5 (answer 41, wrong); 2 -> 6 (plain step, no children)."""
    final = "# print it\nprint(x)\n<end_of_code>\n<output>\n42\n<end_of_output>\n"
    nodes = [
        node(0, -1, 0, "", visits=4),
        node(1, 0, 1, text, q=0.5, visits=3, prior=prior),
        node(2, 1, 2, final, q=0.7, visits=2, prior=prior, output="42\n"),
        node(
            3,
            2,
            3,
            "<answer>\nThe answer is \\boxed{42}\n<end_of_answer>",
            1.0,
            1,
            prior and 0.9,
            None,
            True,
            True,
            "42",
        ),
        node(4, 0, 1, "x = 1/0\n<end_of_step>", -1.0, 1, prior, "ZeroDivisionError: division by zero", True, False),
        node(
            5,
            1,
            2,
            "<answer>\nThe answer is \\boxed{41}\n<end_of_answer>",
            -1.0,
            1,
            prior and 0.2,
            None,
            True,
            True,
            "41",
        ),
        node(6, 2, 3, "# more\ny = 2\n<end_of_step>", 0.1, 0, prior),
    ]
    return TreeRecord(pid, 'What is 6 * 7? <b>bold</b> & "more"', "42", nodes, {"method": "mcts"})


def synthetic_records(n_problems: int, n_nodes: int, seed: int = 0) -> list[TreeRecord]:
    """Random trees of realistic-looking steps: 15% answers (gold 7), 5% failed code, PPM scores."""
    rng = random.Random(seed)
    records = []
    for p in range(n_problems):
        nodes = [node(0, -1, 0, "", visits=n_nodes)]
        for i in range(1, n_nodes):
            parent = rng.randrange(max(0, i - 12), i)
            depth = nodes[parent].depth + 1
            q, visits, score = round(rng.uniform(-1, 1), 6), rng.randrange(9), rng.random()
            if rng.random() < 0.15:
                ans = str(rng.randrange(12))
                text = f"<answer>\nThe answer is \\boxed{{{ans}}}\n<end_of_answer>"
                nodes.append(
                    NodeRecord(i, parent, depth, text, q, visits, score, None, True, True, ans, ans == "7", 20)
                )
            else:
                a, b = rng.randrange(99), rng.randrange(9)
                text = f"# ({depth}) She buys {a} packs of {b} apples each.\nx = x + {a} * {b}\n<end_of_step>"
                valid = rng.random() > 0.05
                out = "" if valid else "NameError: name 'x' is not defined"
                nodes.append(
                    NodeRecord(i, parent, depth, text, q, visits, score, out, not valid, valid, None, None, 40)
                )
        records.append(TreeRecord(f"syn-{p:04d}", f"Question {p}: how many apples are left?", "7", nodes, {}))
    return records


class _Dom(HTMLParser):
    """Elements (tag, attrs, text inside) of an HTML document; a tiny DOM for assertions."""

    VOID = {"meta", "input", "br", "img", "link", "hr", "wbr", "source", "col", "area", "base", "embed", "track"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements, self._open = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": []}
        self.elements.append(el)
        if tag not in self.VOID:
            self._open.append(el)

    def handle_endtag(self, tag):
        for j in range(len(self._open) - 1, -1, -1):
            if self._open[j]["tag"] == tag:
                del self._open[j:]
                break

    def handle_data(self, data):
        for el in self._open:
            el["text"].append(data)

    def find(self, tag=None, cls=None, **attrs):
        out = []
        for el in self.elements:
            classes = (el["attrs"].get("class") or "").split()
            if (tag is None or el["tag"] == tag) and (cls is None or cls in classes):
                if all(el["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items()):
                    out.append(el)
        return out


def text_of(el) -> str:
    return "".join(el["text"])


def embedded_data(page: str) -> dict:
    (script,) = _Dom(page).find("script", id="rv-data")
    return json.loads(text_of(script))


# ---------------------------------------------------------------- the page's data


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


@pytest.fixture(scope="module")
def search_trees(tmp_path_factory):
    """Real trees: `rstar-jax search` with the scripted bootstrap proposer on synthetic problems."""
    d = tmp_path_factory.mktemp("view_search")
    save_problems(generate_problems(8, 2, seed=0), d / "p.jsonl")
    argv = ["search", "--policy", "bootstrap", "--data", str(d / "p.jsonl"), "--out", str(d / "out")]
    assert cli.main([*argv, "--rollouts", "4", "--candidates", "3", "--seed", "0"]) == 0
    return d / "out" / "trees.jsonl"


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


# ---------------------------------------------------------------- in a browser

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless browser test: Debian's `chromium` is not installed (apt-get install chromium)"
)


def chromium(tmp_path, url: str, *extra: str, timeout: float = 120) -> str:
    """Load ``url`` in headless Chromium (no network, virtual time) and return its stdout."""
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=10000",
        *extra,
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def selftest(tmp_path, page_path, **params) -> tuple[dict, _Dom]:
    """Open the page with ``#selftest&...``; return its report and the dumped DOM."""
    frag = "&".join(["selftest", *(f"{k}={v}" for k, v in params.items())])
    dump = chromium(tmp_path, f"file://{page_path}#{frag}", "--dump-dom")
    dom = _Dom(dump)
    pre = dom.find("pre", id="selftest")
    assert pre, "the page wrote no self-test report:\n" + dump[-2000:]
    return json.loads(text_of(pre[0])), dom


def _expected(record: TreeRecord, chosen: int):
    kids = {n.index: [] for n in record.nodes}
    for n in record.nodes[1:]:
        kids[n.parent].append(n.index)
    path = path_to(record, chosen)
    rendered = {0} | {c for p in path for c in kids[p]}
    # a node shown but not expanded that has children: off the path
    expand = next(i for i in sorted(rendered) if i not in path and kids[i])
    return kids, set(path), rendered, expand


@needs_chromium
def test_browser_opens_expands_filters_without_errors(search_trees, tmp_path):
    records = read_records(search_trees)
    # the problem we open carries the nasty text on its answer path
    k, record = next((k, r) for k, r in enumerate(records) if choose_answer(r, "majority") is not None)
    chosen = choose_answer(record, "majority").node
    step = path_to(record, chosen)[1]
    record.nodes[step].text = NASTY
    records[k] = record
    page_path = tmp_path / "trees.html"
    page_path.write_text(render_html([Source("trees", str(search_trees), records)]))
    kids, path, rendered, expand = _expected(record, chosen)
    word = records[-1].problem_id.upper()  # case-insensitive match on the id
    report, dom = selftest(tmp_path, page_path, p=k, expand=expand, filter=word)

    assert report["errors"] == [] and report["results"], report
    res = report["results"]
    assert res["rows"] == len(records) and res["open"]["selected"] == [k]
    assert set(res["open"]["nodes"]) == rendered and res["open"]["rendered"] == len(rendered)
    assert set(res["open"]["onpath"]) == path and res["open"]["chosen"] == [chosen]
    after = rendered | set(kids[expand])
    assert res["expand_found"] and set(res["expand"]["nodes"]) == after and len(kids[expand]) > 0
    assert res["filter"]["shown"] == [len(records) - 1] and res["filter"]["count"] == f"1 of {len(records)} problems"

    # the DOM itself, as dumped: rendered node elements, the highlighted path, the filtered list
    boxes = [e for e in dom.find("div", cls="node")]
    assert {int(e["attrs"]["data-index"]) for e in boxes} == after and len(boxes) == len(after)
    assert {int(e["attrs"]["data-index"]) for e in dom.find("div", cls="onpath")} == path
    assert [int(e["attrs"]["data-index"]) for e in dom.find("div", cls="chosen")] == [chosen]
    assert all(e["attrs"].get("class").split().count("node") == 1 for e in boxes)
    rows = dom.find("tr", cls="prob")
    assert len(rows) == len(records)
    assert [int(r["attrs"]["data-k"]) for r in rows if "hidden" not in r["attrs"]] == [len(records) - 1]
    assert [int(r["attrs"]["data-k"]) for r in dom.find("tr", cls="sel")] == [k]
    toggles = [e for e in dom.find("button", cls="tog") if e["attrs"].get("aria-expanded") == "true"]
    assert len(toggles) == len([p for p in path if kids[p]]) + 1  # the path's inner nodes and the one expanded
    # the nasty step is shown as text: nothing of it became an element
    (box,) = [e for e in boxes if e["attrs"]["data-index"] == str(step)]
    texts = [text_of(e) for e in dom.find("pre", cls="text")]
    assert NASTY.rstrip("\n") in texts and not dom.find(id="pwned")
    assert len(dom.find("script")) == 3
    stats = [text_of(e) for e in dom.find("span", cls="stat")]
    assert all(f"N {record.nodes[i].visits}" in stats and f"Q {record.nodes[i].q:.3f}" in stats for i in after)
    assert html.unescape(text_of(dom.find("h2")[0])).startswith(record.problem_id)


@needs_chromium
def test_browser_check_catches_a_broken_page(tmp_path):
    page = render_html([Source("t", "t.jsonl", [small_record()])])
    thrown = page.replace('"use strict";', '"use strict"; throw new Error("boom in the page");', 1)
    syntax = page.replace('"use strict";', '"use strict"; var = ;', 1)
    assert thrown != page and syntax != page
    for name, text in (("thrown", thrown), ("syntax", syntax)):
        (tmp_path / f"{name}.html").write_text(text)
        report, _ = selftest(tmp_path, tmp_path / f"{name}.html", p=0)
        assert report["results"] is None and report["errors"], report
    assert "boom in the page" in selftest(tmp_path, tmp_path / "thrown.html", p=0)[0]["errors"][0]
    # and the same page unbroken passes
    (tmp_path / "ok.html").write_text(page)
    report, _ = selftest(tmp_path, tmp_path / "ok.html", p=0)
    assert report["errors"] == [] and set(report["results"]["open"]["nodes"]) == {0, 1, 2, 3, 4, 5, 6}


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
@needs_chromium
def test_browser_screenshot_and_the_big_page(search_trees, tmp_path, capsys):
    import numpy as np
    from matplotlib.image import imread

    records = read_records(search_trees)
    k = next(k for k, r in enumerate(records) if choose_answer(r, "majority") is not None)
    page_path = tmp_path / "trees.html"
    page_path.write_text(render_html([Source("trees", str(search_trees), records)]))
    shot = tmp_path / "shot.png"
    chromium(
        tmp_path, f"file://{page_path}#p={k}", f"--screenshot={shot}", "--window-size=1400,1000", "--hide-scrollbars"
    )
    assert _png_size(shot) == (1400, 1000)
    pixels = imread(str(shot))[..., :3]
    blue = np.all(np.abs(pixels - np.array([0x09, 0x69, 0xDA]) / 255) < 0.03, axis=-1).sum()
    assert pixels.std() > 0.05 and blue > 200, (pixels.std(), blue)  # drawn, with the answer path in blue
    with capsys.disabled():
        print(f"\n[viewer] screenshot: {shot}")

    big = tmp_path / "big.html"
    records = synthetic_records(1000, 200)
    big.write_text(render_html([Source("big", "big.jsonl", records)]))
    expand = _expected(records[999], choose_answer(records[999], "best").node)[3]
    t = time.perf_counter()
    report, dom = selftest(tmp_path, big, p=999, expand=expand, all=1, filter="syn-05")
    wall = time.perf_counter() - t
    assert report["errors"] == [] and report["results"]["rows"] == 1000
    assert report["results"]["open"]["rendered"] < report["results"]["expand"]["rendered"] < 200
    assert report["results"]["filter"]["shown"] == list(range(500, 600))
    assert report["results"]["all"]["rendered"] == len(dom.find("div", cls="node")) == 200
    with capsys.disabled():
        print(f"[viewer] 1,000 x 200 page in Chromium: {json.dumps(report['results']['timings'])}, {wall:.1f} s wall")
