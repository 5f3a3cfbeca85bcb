"""Problem files: every benchmark format in shared/data loads, gold answers are right, errors name the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rstar_jax.data.problems import Problem, last_boxed, load_answered, load_problems, save_problems

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


def test_training_sets_skip_and_count_problems_without_an_answer(tmp_path):
    """NuminaMath-style records (``problem``/``solution``) next to GSM8K and MATH ones: those without a
    gold answer are skipped with their line, the rest keep their answers; none at all is an error."""
    records = [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "He has 3 + 4 = 7.\n#### 7"},
        {"problem": "Show that $\\sqrt 2$ is irrational.", "solution": "Suppose it were rational. Contradiction."},
        {"problem": "Compute $1+1$.", "solution": "We get $\\boxed{2}$."},
        {"question": "An empty answer?", "answer": ""},
        {"question": "Which angles?", "final_answer": []},
        {"problem": "Solve $x+1=3$.", "answer": "2"},
    ]
    path = tmp_path / "numina.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    problems, skipped = load_answered(path)
    assert [p.answer for p in problems] == ["7", "2", "2"]
    assert [s.split(": ", 1)[0] for s in skipped] == [f"{path}:2", f"{path}:4", f"{path}:5"]
    assert "no answer" in skipped[0] and "empty gold answer" in skipped[1]
    assert load_answered(path, limit=2)[0] == problems[:2]
    with pytest.raises(ValueError, match=r"numina\.jsonl:2: no answer"):
        load_problems(path)  # an evaluation file keeps its strictness
    unanswerable = tmp_path / "proofs.jsonl"
    unanswerable.write_text("".join(json.dumps(r) + "\n" for r in (records[1], records[3])))
    with pytest.raises(ValueError, match=r"proofs\.jsonl: none of its 2 problems has an extractable gold answer"):
        load_answered(unanswerable)


@needs_data
def test_real_training_files_have_checkable_answers():
    problems, skipped = load_answered(DATA / "gsm8k" / "train.jsonl", limit=200)
    assert len(problems) == 200 and not skipped and all(p.answer.replace("-", "").isdigit() for p in problems)
    problems, skipped = load_answered(DATA / "gaokao2023en" / "test.jsonl")
    raw = [json.loads(line) for line in (DATA / "gaokao2023en" / "test.jsonl").open()]
    assert len(problems) + len(skipped) == len(raw) and len(skipped) == 2  # its two empty gold answers
