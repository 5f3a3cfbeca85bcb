"""The tree viewer's page in headless Chromium: its self-test (open, expand, filter) checked
against the dumped DOM, a broken page caught, and (slow) a screenshot and the 1,000-problem page."""

from __future__ import annotations

import html
import json
import shutil
import struct
import subprocess
import time

import pytest

from rstar_jax.search.answers import choose_answer
from rstar_jax.search.records import TreeRecord, path_to, read_records
from rstar_jax.viewer import Source, render_html
from tests.viewer_helpers import NASTY, _Dom, small_record, synthetic_records, text_of

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
