"""Problem files: every benchmark format in shared/data loads, gold answers are right, errors name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rstar_jax.data.problems import Problem, last_boxed, load_problems, save_problems

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared/data not present")


@needs_data
def test_gsm8k_gold_is_after_hashes_without_commas():
    problems = load_problems(DATA / "gsm8k" / "test.jsonl", limit=50)
    assert len(problems) == 50
    assert problems[0].answer == "18" and problems[0].question.startswith("Janet")
    assert "<<" in problems[0].meta["solution"]  # the worked solution is kept, minus the gold
    with_comma = [json.loads(line) for line in (DATA / "gsm8k" / "test.jsonl").open()]
    raw = next(r for r in with_comma if "," in r["answer"].rsplit("####", 1)[1])
    i = with_comma.index(raw)
    gold = load_problems(DATA / "gsm8k" / "test.jsonl", limit=i + 1)[i].answer
    assert gold == raw["answer"].rsplit("####", 1)[1].strip().replace(",", "") and gold.isdigit()
    assert len({p.id for p in problems}) == 50


@needs_data
def test_math500_and_rstar_eval_agree():
    math500 = load_problems(DATA / "math500" / "test.jsonl", limit=20)
    rstar = load_problems(DATA / "rstar_math_eval" / "math500_test.json", limit=20)
    assert [p.question for p in math500] == [p.question for p in rstar]
    assert [p.answer for p in math500] == [p.answer for p in rstar]
    assert math500[0].id == "test/precalculus/807.json" and math500[0].meta["subject"] == "Precalculus"
    assert rstar[0].id == "rstar_math_eval/math500_test-0"


@needs_data
@pytest.mark.parametrize(
    "name", sorted(p.name for p in (DATA / "rstar_math_eval").glob("*.json")) if DATA.exists() else []
)
def test_every_rstar_eval_file_loads(name):
    records = json.loads((DATA / "rstar_math_eval" / name).read_text())
    problems = load_problems(DATA / "rstar_math_eval" / name)
    assert len(problems) == len(records)
    assert [p.answer for p in problems[:30]] == [str(r["answer"]).strip() for r in records[:30]]


@needs_data
def test_other_formats_find_their_answers():
    olympiad = load_problems(DATA / "olympiadbench" / "test.jsonl", limit=3)
    assert olympiad[0].answer == "2" and olympiad[1].answer == "\\frac{1}{2 n+2}"
    minerva = load_problems(DATA / "minerva_math" / "test.jsonl", limit=1)
    assert minerva[0].answer == "1.6"


def test_last_boxed_matches_braces():
    assert last_boxed(r"so \boxed{1} then \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert last_boxed("no box") is None and last_boxed(r"\boxed{unclosed") is None


def test_round_trip_and_limit(tmp_path):
    problems = [Problem(f"p{i}", f"What is {i} + 1?", str(i + 1), {"tier": 1, "plan": [1, 2]}) for i in range(5)]
    path = tmp_path / "sub" / "p.jsonl"
    save_problems(problems, path)
    assert load_problems(path) == problems
    assert load_problems(path, limit=2) == problems[:2]
    with pytest.raises(ValueError, match=r"\.jsonl"):
        save_problems(problems, tmp_path / "p.txt")


def test_malformed_lines_name_file_and_line(tmp_path):
    bad_json = tmp_path / "a.jsonl"
    bad_json.write_text('{"question": "q", "answer": "1"}\n\n{"question": "q2", \n')
    with pytest.raises(ValueError, match=r"a\.jsonl:3: invalid JSON"):
        load_problems(bad_json)
    no_answer = tmp_path / "b.jsonl"
    no_answer.write_text('{"question": "q", "answer": "1"}\n{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl:2: no answer"):
        load_problems(no_answer)
    no_question = tmp_path / "c.json"
    no_question.write_text('[{"question": "q", "answer": "1"}, {"answer": "2"}]')
    with pytest.raises(ValueError, match=r"c\.json:\[1\]: no question"):
        load_problems(no_question)
    with pytest.raises(ValueError, match="suffix"):
        load_problems(tmp_path / "d.csv")
