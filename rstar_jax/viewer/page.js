// rstar-jax tree viewer (rstar_jax/viewer/html.py embeds this file).
// Data: page_data() in rstar_jax/viewer/data.py. Every text goes in through textContent.
(function () {
  "use strict";
  var t0 = performance.now();
  var DATA = JSON.parse(document.getElementById("rv-data").textContent);
  var tParse = performance.now() - t0;
  var PROBS = DATA.problems, TREES = DATA.trees, SOURCES = DATA.sources;
  // node row columns (ROW_FIELDS) and flag bits (FLAGS)
  var PARENT = 0, Q = 1, VISITS = 2, PPM = 3, FL = 4, TOKENS = 5, TEXT = 6, OUTPUT = 7, ANSWER = 8;
  var TERMINAL = DATA.flags.terminal, FAILED = DATA.flags.failed, CORRECT = DATA.flags.correct, WRONG = DATA.flags.wrong;
  var MARKER = /^\s*<(end_of_step|end_of_code|end_of_answer|answer|code|output|end_of_output)>\s*$/;

  var $ = function (id) { return document.getElementById(id); };
  var list = $("list"), tbody = list.tBodies[0], filterBox = $("filter"), statusBox = $("status"),
    sourceBox = $("source"), countBox = $("count"), detail = $("detail"), treeBox = $("tree");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function num(x, digits) { return x === null || x === undefined ? "\u2013" : x.toFixed(digits); }
  function status(p) {
    if (p.answer === null) return ["noanswer", "no answer"];
    if (p.solved === true) return ["solved", "\u2713 solved"];
    if (p.solved === false) return ["unsolved", "\u2717 wrong"];
    return ["ungraded", "ungraded"];
  }

  // ---- header: one line per source file ----
  SOURCES.forEach(function (s, k) {
    var line = el("div", "srcline");
    line.append(el("b", null, s.label), el("span", "muted", " " + s.path + " \u00b7 "),
      el("span", null, s.problems + " problems \u00b7 answer by " + s.select +
        (s.accuracy === null ? "" : " \u00b7 accuracy " + (100 * s.accuracy).toFixed(1) + "%")));
    $("sources").append(line);
    var opt = el("option", null, s.label);
    opt.value = String(k);
    sourceBox.append(opt);
  });
  var allOpt = el("option", null, "all files");
  allOpt.value = "";
  sourceBox.insertBefore(allOpt, sourceBox.firstChild);
  sourceBox.value = "";
  if (SOURCES.length < 2) { sourceBox.hidden = true; list.classList.add("onesource"); }

  // ---- the problem list: one row per problem, built once ----
  var rows = [];
  (function buildList() {
    var frag = document.createDocumentFragment();
    PROBS.forEach(function (p, k) {
      var st = status(p), tr = el("tr", "prob");
      tr.dataset.k = String(k);
      tr.append(el("td", "num", String(k + 1)), el("td", "srccol", SOURCES[p.src].label), el("td", "pid", p.id),
        el("td", "st " + st[0], st[1]), el("td", "ans", p.answer === null ? "\u2014" : p.answer),
        el("td", "gold", p.gold), el("td", "num", String(p.n)));
      tr.title = p.question;
      rows.push(tr);
      frag.append(tr);
    });
    tbody.append(frag);
  })();
  var tList = performance.now() - t0;

  var haystack = null;
  function applyFilter() {
    if (haystack === null) {
      haystack = PROBS.map(function (p) {
        return [p.id, p.question, p.answer || "", p.gold, SOURCES[p.src].label].join("\n").toLowerCase();
      });
    }
    var words = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean), want = statusBox.value,
      src = sourceBox.value, shown = 0;
    PROBS.forEach(function (p, k) {
      var ok = (src === "" || String(p.src) === src) && (want === "" || status(p)[0] === want) &&
        words.every(function (w) { return haystack[k].indexOf(w) >= 0; });
      rows[k].hidden = !ok;
      shown += ok;
    });
    countBox.textContent = shown + " of " + PROBS.length + " problems";
    return shown;
  }
  filterBox.addEventListener("input", applyFilter);
  statusBox.addEventListener("change", applyFilter);
  sourceBox.addEventListener("change", applyFilter);
  applyFilter();

  // ---- one problem: its tree as an outline, children built on expansion ----
  var cur = { k: -1, nodes: null, kids: null, path: null, expanded: null };

  function stepText(text) {
    var pre = el("pre", "text");
    text.replace(/\n+$/, "").split("\n").forEach(function (line, i) {
      if (i) pre.append("\n");
      var t = line.trim(), cls = MARKER.test(line) ? "mk" : t.charAt(0) === "#" ? "rs" : "code";
      pre.append(el("span", cls, line));
    });
    return pre;
  }

  function renderNode(i) {
    var n = cur.nodes[i], f = n[FL], kids = cur.kids[i], open = cur.expanded.has(i);
    var box = el("div", "node"), row = el("div", "row");
    box.dataset.index = String(i);
    if (cur.path.has(i)) box.classList.add("onpath");
    if (i === PROBS[cur.k].node) box.classList.add("chosen");
    if (f & TERMINAL) box.classList.add("terminal");
    if (f & FAILED) box.classList.add("failed");
    if (f & CORRECT) box.classList.add("correct");
    if (f & WRONG) box.classList.add("wrong");
    var tog = el("button", kids.length ? "tog" : "tog leaf", kids.length ? (open ? "\u25be" : "\u25b8") : "\u00b7");
    tog.type = "button";
    if (kids.length) {
      tog.setAttribute("aria-expanded", String(open));
      tog.title = kids.length + (kids.length === 1 ? " child" : " children");
    } else {
      tog.disabled = true;
    }
    row.append(tog, el("span", "idx", i === 0 ? "root" : "#" + i));
    row.append(el("span", "stat", "Q " + num(n[Q], 3)), el("span", "stat", "N " + n[VISITS]));
    if (n[PPM] !== null) row.append(el("span", "stat", "PPM " + num(n[PPM], 3)));
    if (n[TOKENS]) row.append(el("span", "stat muted", n[TOKENS] + " tok"));
    if (kids.length) row.append(el("span", "stat muted", kids.length + "\u2193"));
    if (f & TERMINAL) row.append(el("span", "mark m-term", "terminal"));
    if (f & FAILED) row.append(el("span", "mark m-fail", "failed"));
    if (n[ANSWER] !== null) {
      var mark = f & CORRECT ? "m-ok" : f & WRONG ? "m-bad" : "m-ans";
      var sign = f & CORRECT ? "\u2713 " : f & WRONG ? "\u2717 " : "";
      row.append(el("span", "mark " + mark, sign + "answer " + n[ANSWER]));
    }
    if (i === PROBS[cur.k].node) row.append(el("span", "mark m-chosen", "chosen"));
    box.append(row);
    var body = el("div", "body");
    if (n[TEXT]) body.append(stepText(n[TEXT]));
    if (n[OUTPUT] !== null && n[OUTPUT] !== "") body.append(el("pre", f & FAILED ? "out err" : "out", n[OUTPUT]));
    if (body.firstChild) box.append(body);
    var kidBox = el("div", "kids");
    if (open) kids.forEach(function (c) { kidBox.append(renderNode(c)); });
    box.append(kidBox);
    return box;
  }

  function nodeBox(i) { return treeBox.querySelector('.node[data-index="' + i + '"]'); }

  function toggle(i) {
    var box = nodeBox(i);
    if (!box || !cur.kids[i].length) return;
    var kidBox = box.lastChild, tog = box.firstChild.firstChild;
    if (cur.expanded.has(i)) {
      cur.expanded.delete(i);
      kidBox.textContent = "";
    } else {
      cur.expanded.add(i);
      var frag = document.createDocumentFragment();
      cur.kids[i].forEach(function (c) { frag.append(renderNode(c)); });
      kidBox.append(frag);
    }
    tog.textContent = cur.expanded.has(i) ? "\u25be" : "\u25b8";
    tog.setAttribute("aria-expanded", String(cur.expanded.has(i)));
  }

  function redraw(expanded) {
    cur.expanded = expanded;
    cur.expanded.add(0);
    treeBox.textContent = "";
    treeBox.append(renderNode(0));
  }

  function answerTable(nodes, p) {
    var groups = new Map();
    nodes.forEach(function (n, i) {
      if (n[ANSWER] === null) return;
      var score = n[PPM] !== null ? n[PPM] : n[Q], g = groups.get(n[ANSWER]);
      if (!g) groups.set(n[ANSWER], g = { answer: n[ANSWER], count: 0, best: -Infinity, node: i, f: n[FL] });
      g.count += 1;
      if (score > g.best) { g.best = score; g.node = i; }
    });
    var all = Array.from(groups.values()).sort(function (a, b) { return b.count - a.count || b.best - a.best; });
    var table = el("table", "answers"), head = el("tr");
    head.append(el("th", null, "answer"), el("th", null, "trajectories"), el("th", null, "best score"), el("th", null, "node"));
    table.append(head);
    all.forEach(function (g) {
      var tr = el("tr", g.f & CORRECT ? "a-ok" : g.f & WRONG ? "a-bad" : null);
      var go = el("button", "link", "#" + g.node);
      go.type = "button";
      go.addEventListener("click", function () { reveal(g.node); });
      var cell = el("td");
      cell.append(go);
      tr.append(el("td", null, (g.f & CORRECT ? "\u2713 " : g.f & WRONG ? "\u2717 " : "") + g.answer),
        el("td", "num", String(g.count)), el("td", "num", num(g.best, 3)), cell);
      if (g.answer === p.answer) tr.classList.add("a-chosen");
      table.append(tr);
    });
    return all.length ? table : el("p", "muted", "No trajectory reached an answer.");
  }

  function pathTo(i) {
    var path = [];
    for (; i >= 0; i = cur.nodes[i][PARENT]) path.push(i);
    return path.reverse();
  }

  function reveal(i) {  // expand the path to node i and scroll to it
    pathTo(i).forEach(function (j) { if (j !== i) cur.expanded.add(j); });
    redraw(cur.expanded);
    var box = nodeBox(i);
    if (box) {
      box.classList.add("flash");
      box.scrollIntoView({ block: "center" });
    }
  }

  function open(k) {
    var p = PROBS[k], nodes = TREES[k], kids = nodes.map(function () { return []; });
    nodes.forEach(function (n, i) { if (n[PARENT] >= 0) kids[n[PARENT]].push(i); });
    cur = { k: k, nodes: nodes, kids: kids, path: null, expanded: null };
    cur.path = new Set(p.node >= 0 ? pathTo(p.node) : []);
    rows.forEach(function (r) { r.classList.remove("sel"); });
    rows[k].classList.add("sel");

    var st = status(p);
    detail.textContent = "";
    var h = el("h2");
    h.append(el("span", null, p.id + " "), el("span", "st " + st[0], st[1]));
    detail.append(h);
    detail.append(el("pre", "question", p.question));
    var facts = el("div", "facts");
    facts.append(el("span", null, "gold: "), el("b", "gold", p.gold || "\u2014"),
      el("span", null, " \u00b7 chosen (" + SOURCES[p.src].select + "): "),
      el("b", "ans", p.answer === null ? "none" : p.answer),
      el("span", "muted", p.answer === null ? "" : " score " + num(p.score, 3) + ", node #" + p.node),
      el("span", null, " \u00b7 " + p.n + " nodes, " + p.answers + " answers \u00b7 " + SOURCES[p.src].label));
    detail.append(facts);
    detail.append(answerTable(nodes, p));
    var tools = el("div", "tools");
    [["expand all", function () {
      redraw(new Set(kids.map(function (c, i) { return c.length ? i : -1; }).filter(function (i) { return i >= 0; })));
    }],
    ["collapse all", function () { redraw(new Set([0])); }],
    ["answer path", function () { redraw(new Set(cur.path)); }]].forEach(function (b) {
      var btn = el("button", null, b[0]);
      btn.type = "button";
      btn.addEventListener("click", b[1]);
      tools.append(btn);
    });
    var legend = el("span", "legend muted");
    legend.append(el("span", "mark m-path", "answer path"), el("span", "mark m-term", "terminal"),
      el("span", "mark m-fail", "failed (code error)"), el("span", "mark m-ok", "\u2713 correct"),
      el("span", "mark m-bad", "\u2717 wrong"));
    tools.append(legend);
    detail.append(tools);
    redraw(new Set(cur.path));
    if (!selftesting) history.replaceState(null, "", "#p=" + k);
  }

  tbody.addEventListener("click", function (e) {
    var tr = e.target.closest("tr.prob");
    if (tr) open(Number(tr.dataset.k));
  });
  treeBox.addEventListener("click", function (e) {
    var tog = e.target.closest("button.tog");
    if (tog && !tog.disabled) toggle(Number(tog.closest(".node").dataset.index));
  });

  // ---- the URL hash: #p=K opens problem K; #selftest&p=K&expand=I&filter=T tests the page ----
  var params = new URLSearchParams(location.hash.slice(1));
  var selftesting = params.has("selftest");
  function wanted() {
    var k = Number(new URLSearchParams(location.hash.slice(1)).get("p"));
    return Number.isInteger(k) && k >= 0 && k < PROBS.length ? k : -1;
  }
  window.addEventListener("hashchange", function () { var k = wanted(); if (k >= 0 && k !== cur.k) open(k); });

  function snapshot() {
    var boxes = Array.from(treeBox.querySelectorAll(".node"));
    var ids = function (sel) {
      return Array.from(treeBox.querySelectorAll(sel)).map(function (b) { return Number(b.dataset.index); });
    };
    return { rendered: boxes.length, nodes: ids(".node"), onpath: ids(".node.onpath"), chosen: ids(".node.chosen"),
      expanded: Array.from(cur.expanded).sort(function (a, b) { return a - b; }) };
  }

  if (selftesting) {
    var res = { rows: rows.length, problems: PROBS.length, timings: { parse_ms: tParse, list_ms: tList } };
    var k = wanted();
    if (k >= 0) {
      var t1 = performance.now();
      rows[k].click();
      res.timings.open_ms = performance.now() - t1;
      res.open = snapshot();
      res.open.selected = Array.from(tbody.querySelectorAll("tr.sel")).map(function (r) { return Number(r.dataset.k); });
      if (params.has("expand")) {
        var tog = treeBox.querySelector('.node[data-index="' + params.get("expand") + '"] > .row > button.tog');
        res.expand_found = Boolean(tog);
        if (tog) tog.click();
        res.expand = snapshot();
      }
      if (params.has("all")) {
        var t2 = performance.now();
        detail.querySelector(".tools button").click();  // expand all
        res.timings.expand_all_ms = performance.now() - t2;
        res.all = snapshot();
      }
    }
    if (params.has("filter")) {
      filterBox.value = params.get("filter");
      filterBox.dispatchEvent(new Event("input"));
      res.filter = { shown: rows.filter(function (r) { return !r.hidden; }).map(function (r) { return Number(r.dataset.k); }),
        count: countBox.textContent };
    }
    res.timings.total_ms = performance.now() - t0;
    window.__rvSelftest = res;
  } else if (wanted() >= 0) {
    open(wanted());
  }
})();
