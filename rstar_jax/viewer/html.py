"""The tree viewer as one self-contained HTML file: inline CSS and JS, the data as JSON.

The page embeds ``page_data`` in a ``<script type="application/json">`` block and parses
it once; the problem list is built at load, a problem's tree only when it is opened, and
a node's children only when it is expanded, so 1,000 problems of 200 nodes stay usable.
Every text reaches the DOM through ``textContent``, never as markup.

Opened with ``#p=K`` the page shows problem ``K`` (0-based, in list order). Opened with
``#selftest&p=K&expand=I&all=1&filter=TEXT`` it opens problem ``K``, clicks node ``I``'s toggle,
then "expand all", types ``TEXT`` into the filter box (each step optional), and writes what
it saw and every JavaScript error to ``<pre id="selftest">`` as JSON (the browser test reads
it from the dumped DOM).
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from typing import Sequence

from rstar_jax.io import atomic_write_text
from rstar_jax.viewer.data import Source, page_data

# Before the page's own script: records every error, also a syntax error in that script,
# and writes the self-test report (results or not) once the page has loaded.
_ERRORS_JS = """
window.__rvErrors = [];
window.__rvReport = function () {
  if (!location.hash.startsWith("#selftest")) return;
  var pre = document.getElementById("selftest");
  if (!pre) { pre = document.createElement("pre"); pre.id = "selftest"; document.body.appendChild(pre); }
  pre.textContent = JSON.stringify({results: window.__rvSelftest || null, errors: window.__rvErrors});
};
window.addEventListener("error", function (e) {
  window.__rvErrors.push(String(e.message || e) + (e.lineno ? " (line " + e.lineno + ")" : ""));
  if (document.readyState === "complete") window.__rvReport();
});
window.addEventListener("unhandledrejection", function (e) {
  window.__rvErrors.push("unhandled rejection: " + String(e.reason));
  if (document.readyState === "complete") window.__rvReport();
});
window.addEventListener("load", function () { window.__rvReport(); });
"""

# No network: scripts, styles and images only from the page itself.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


def _asset(name: str) -> str:
    return resources.files("rstar_jax.viewer").joinpath(name).read_text(encoding="utf-8")


def script_json(obj) -> str:
    """``obj`` as JSON safe inside a ``<script>`` element: every ``<`` becomes ``\\u003c`` (so
    neither ``</script>`` nor ``<!--`` can end or change the element; ``<`` only occurs inside
    JSON strings, where the escape means the same character), and U+2028/U+2029 are escaped."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _inline(code: str, tag: str) -> str:
    if f"</{tag}" in code.lower():
        raise ValueError(f"inline {tag} must not contain '</{tag}'")
    return code


def default_title(sources: Sequence[Source]) -> str:
    return "Search trees: " + ", ".join(os.path.basename(s.path) for s in sources)


def render_html(sources: Sequence[Source], select: str = "auto", title: str | None = None) -> str:
    """The whole page for these sources (``select``: how each tree's answer is chosen)."""
    title = default_title(sources) if title is None else title
    data = page_data(sources, select, title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rstar-jax view">
<title>{html.escape(title)}</title>
<script>{_inline(_ERRORS_JS, "script")}</script>
<style>{_inline(_asset("page.css"), "style")}</style>
</head>
<body>
<header>
<h1>{html.escape(title)}</h1>
<div id="sources"></div>
</header>
<main>
<section id="left">
<div class="controls">
<input id="filter" type="search" placeholder="filter: id, question, answer" aria-label="filter problems"
 autocomplete="off">
<select id="status" aria-label="status">
<option value="">all</option><option value="solved">solved</option><option value="unsolved">not solved</option>
<option value="noanswer">no answer</option>
</select>
<select id="source" aria-label="file"></select>
<span id="count"></span>
</div>
<div id="listwrap">
<table id="list"><thead><tr><th>#</th><th class="srccol">file</th><th>problem</th><th></th><th>answer</th>
<th>gold</th><th title="nodes in the tree">nodes</th></tr></thead><tbody></tbody></table>
</div>
</section>
<section id="right">
<div id="detail"><p class="hint">Choose a problem on the left to see its search tree.</p></div>
<div id="tree"></div>
</section>
</main>
<noscript>This page needs JavaScript to show the trees.</noscript>
<script id="rv-data" type="application/json">{script_json(data)}</script>
<script>{_inline(_asset("page.js"), "script")}</script>
</body>
</html>
"""


def write_html(
    path: str | os.PathLike, sources: Sequence[Source], select: str = "auto", title: str | None = None
) -> int:
    """Write the page atomically; returns its size in bytes."""
    text = render_html(sources, select, title)
    atomic_write_text(path, text)
    return len(text.encode("utf-8"))
