"""Tree records and page parsing shared by the viewer tests."""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser

from rstar_jax.search.records import NodeRecord, TreeRecord

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
