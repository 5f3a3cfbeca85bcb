"""The released rStar-Math training data formats (microsoft/rStar, branch ``rStar-math``), read as our
SFT examples and pair groups, and written from them.

Both are JSON files of records: a JSON array (the released ``rstar_sft.json`` and the PPM set, and
what ``train/sample_*_data.py`` write) or JSON Lines (which the official trainers read too).

SFT (``train/train_SFT.py``)::

    {"query": str, "response": str}        # or {"instruction": str, "output": str}

The official trainer trains on ``response`` + eos after the prompt ``<|user|>:\\n{query}\\n<|assistant|>:
Let's think step by step and solve the problem with code.``; ``response`` starts with ``<code>``.

PPM pairs (``train/train_RM.py``, ``train/rm.py``), one preference pair a record::

    {"prompt": str, "pos": str, "neg": str, "pos_count": int, "neg_count": int}

The model scores ``prompt + pos`` and ``prompt + neg`` (``prompt`` = question and the steps so far,
``pos``/``neg`` a preferred and a rejected next step); the counts are the sizes of the two sides of the
node the pair came from (the official loss weighs a pair by ``1 / (pos_count * neg_count)``).

Reading turns the official text into ours (``steps.build_prompt``): the official header ends
``...with code.<code>``, ours ``...with code.\\n<code>\\n``; writing does the reverse, so
extract -> official -> read gives the same model inputs. Records of one ``prompt`` become one pair group
(our loss weighs each of its pairs by 1 / its number of pairs: the official weight when the file holds
all ``pos_count * neg_count`` pairs of the node). The official records hold no Q values (``q`` is NaN:
``--kind pqm`` needs tree records) and no problem ids (the question's hash stands in).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from rstar_jax.errors import UserError
from rstar_jax.io import read_jsonl_numbered, write_jsonl
from rstar_jax.steps import ASSISTANT, CODE_OPEN, USER, build_prompt
from rstar_jax.train.examples import Continuation, PairGroup, SFTExample, is_json_array

SFT_FIELDS = (("query", "response"), ("instruction", "output"))
PPM_FIELDS = ("prompt", "pos", "neg", "pos_count", "neg_count")
_INTRO = ASSISTANT + ": Let's think step by step and solve the problem with code."
_OFFICIAL, _OURS = _INTRO + CODE_OPEN, _INTRO + "\n" + CODE_OPEN


# --- files: a JSON array or JSON lines --------------------------------------------------------------
def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(1-based line, value) of each record of a JSON array or JSON Lines file; bad JSON raises
    UserError ``"<path>:<line>: ..."``. An array is decoded one element at a time."""
    if not is_json_array(path):
        yield from read_jsonl_numbered(path)
        return
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    decoder, pos, line, seen = json.JSONDecoder(), text.index("[") + 1, 1, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            if pos >= len(text):
                raise UserError(f"{path}:{text.count(chr(10)) + 1}: the JSON array is not closed (truncated file?)")
            return
        line += text.count("\n", seen, pos)
        seen = pos
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        yield line, value


def first_record(path: str | os.PathLike) -> Any:
    """The first record of a JSON array or JSON Lines file, or None if it has none."""
    return next((v for _, v in iter_records(path)), None)


def kind_of(record: Any) -> str | None:
    """ "rstar-sft", "rstar-ppm" or None, from a record's fields (our own formats are told apart first)."""
    keys = set(record) if isinstance(record, dict) else set()
    if "pairs" in keys or "solution" in keys:
        return None
    if keys & {"pos", "neg", "pos_count", "neg_count"}:
        return "rstar-ppm"
    if keys & {"query", "response", "instruction", "output"}:
        return "rstar-sft"
    return None


def _fields(path, line: int, record: Any, names: tuple[str, ...], what: str) -> list:
    if not isinstance(record, dict):
        raise UserError(f"{path}:{line}: expected an object ({what}: {', '.join(names)}), got {type(record).__name__}")
    missing = [n for n in names if n not in record]
    if missing:
        raise UserError(f"{path}:{line}: missing field(s) {', '.join(missing)} ({what}: {', '.join(names)})")
    return [record[n] for n in names]


def _text(path, line: int, value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{path}:{line}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def _problem_id(question: str) -> str:
    return hashlib.sha1(question.strip().encode()).hexdigest()[:12]


# --- SFT --------------------------------------------------------------------------------------------
def read_rstar_sft(path: str | os.PathLike) -> list[SFTExample]:
    """The official SFT records of ``path`` as SFT examples: prompt ``build_prompt(query)``, solution the
    response after its leading ``<code>`` (which our prompt ends with)."""
    out = []
    for line, rec in iter_records(path):
        names = next((n for n in SFT_FIELDS if isinstance(rec, dict) and n[0] in rec), SFT_FIELDS[0])
        query, response = (
            _text(path, line, v, n) for v, n in zip(_fields(path, line, rec, names, "an rStar-Math SFT record"), names)
        )
        # sample_sft_data.py strips the assistant's intro from a response; a file that kept it reads the same
        solution = response.lstrip().removeprefix(_INTRO).removeprefix(CODE_OPEN).removeprefix("\n")
        out.append(SFTExample(_problem_id(query), build_prompt(query), solution, math.nan, math.nan, ()))
    return out


def question_of(prompt: str) -> str:
    """The question that ``steps.build_prompt`` made ``prompt`` from (ValueError if it did not)."""
    head, tail = build_prompt("\0").split("\0")
    if not (prompt.startswith(head) and prompt.endswith(tail)):
        raise ValueError(f"not a prompt of steps.build_prompt: {prompt[:60]!r}...")
    return prompt[len(head) : len(prompt) - len(tail)]


def rstar_sft_records(examples: Iterable[SFTExample]) -> Iterator[dict]:
    """Our SFT examples as official records (``response`` = ``<code>\\n`` + solution)."""
    for e in examples:
        yield {"query": question_of(e.prompt), "response": CODE_OPEN + "\n" + e.solution}


# --- PPM pairs --------------------------------------------------------------------------------------
def read_rstar_ppm(path: str | os.PathLike) -> list[PairGroup]:
    """The official PPM records of ``path`` as pair groups, one per distinct ``prompt`` (in file order)."""
    groups: dict[str, dict] = {}
    for line, rec in iter_records(path):
        prompt, pos, neg, npos, nneg = _fields(path, line, rec, PPM_FIELDS, "an rStar-Math PPM record")
        prompt, pos, neg = (_text(path, line, v, n) for v, n in zip((prompt, pos, neg), PPM_FIELDS))
        for name, count in (("pos_count", npos), ("neg_count", nneg)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise UserError(f"{path}:{line}: field {name!r} must be a count (an integer >= 0), got {count!r}")
        ours = prompt.replace(_OFFICIAL, _OURS)
        full = [(prompt + t).replace(_OFFICIAL, _OURS) for t in (pos, neg)]
        if not all(f.startswith(ours) for f in full):  # the official header split across prompt and step
            ours = ""
        g = groups.setdefault(ours, {"pos": {}, "neg": {}, "pairs": [], "question": _question(full[0])})
        i = g["pos"].setdefault(full[0][len(ours) :], len(g["pos"]))
        j = g["neg"].setdefault(full[1][len(ours) :], len(g["neg"]))
        g["pairs"].append((i, j))
    cands = lambda texts: tuple(Continuation(t, math.nan, -1) for t in texts)  # noqa: E731
    return [
        PairGroup(_problem_id(g["question"]), "step", p, "", -1, cands(g["pos"]), cands(g["neg"]), tuple(g["pairs"]))
        for p, g in groups.items()
    ]


def _question(text: str) -> str:
    """The question of an official PPM input (``<|user|>:\\n{question}\\n<|assistant|>...``)."""
    start = text.find(USER + ":\n")
    start = 0 if start < 0 else start + len(USER) + 2
    end = text.find("\n" + ASSISTANT, start)
    return text[start : end if end >= 0 else len(text)]


def rstar_ppm_records(groups: Iterable[PairGroup]) -> Iterator[dict]:
    """Our pair groups as official records, one per pair (the counts: the group's two sides)."""
    for g in groups:
        prompt = (g.prompt + g.prefix).replace(_OURS, _OFFICIAL)
        for i, j in g.pairs:
            pos, neg = ((g.prompt + g.prefix + c.text).replace(_OURS, _OFFICIAL) for c in (g.pos[i], g.neg[j]))
            yield {
                "prompt": prompt,
                "pos": pos[len(prompt) :],
                "neg": neg[len(prompt) :],
                "pos_count": len(g.pos),
                "neg_count": len(g.neg),
            }


def write_rstar(sft: Iterable[SFTExample], groups: Iterable[PairGroup], out_dir: str | os.PathLike) -> dict:
    """``out_dir/rstar_sft.jsonl`` and ``out_dir/rstar_ppm.jsonl`` in the official layouts; the record counts."""
    return {
        "rstar_sft_records": write_jsonl(os.path.join(out_dir, "rstar_sft.jsonl"), rstar_sft_records(sft)),
        "rstar_ppm_records": write_jsonl(os.path.join(out_dir, "rstar_ppm.jsonl"), rstar_ppm_records(groups)),
    }
