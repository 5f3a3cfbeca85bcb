"""The few-shot bootstrap prompt: its demonstrations are valid solutions in the step format (their code
runs and prints what they claim, their answers are right), and a user's own file loads or is refused."""

from __future__ import annotations

import json

import pytest

from rstar_jax.data.fewshot import EXAMPLES, load_few_shot
from rstar_jax.errors import UserError
from rstar_jax.grading import extract_answer, is_equiv
from rstar_jax.sandbox import Sandbox
from rstar_jax.steps import OUTPUT_CLOSE, OUTPUT_OPEN, STEP_STOPS, build_prompt, path_program, step_kind

GOLD = ("4", "5")  # worked out by hand: 25 - (4*3 + 6*1.5) = 4; x^2-5x+6 = (x-2)(x-3): 2 + 3 = 5


def test_demonstrations_are_correct_step_format_solutions():
    assert len(EXAMPLES) == len(GOLD) == 2
    with Sandbox() as sandbox:
        for ex, gold in zip(EXAMPLES, GOLD):
            kinds = [step_kind(s) for s in ex["steps"]]
            assert kinds == ["code"] * (len(kinds) - 2) + ["final_code", "answer"]
            final = ex["steps"][-2]
            stated = final.split(OUTPUT_OPEN, 1)[1].split(OUTPUT_CLOSE, 1)[0].strip()
            (result,) = sandbox.run_many([path_program(ex["steps"])])
            assert result.ok and result.stdout.strip() == stated  # the output block is what the code prints
            answer = extract_answer(ex["steps"][-1])
            assert is_equiv(answer, gold) and is_equiv(answer, stated)
            for step in ex["steps"]:  # one generation call writes one step: exactly one stop, at its end
                hits = [s for s in STEP_STOPS if s in step]
                assert len(hits) == 1 and step.split(OUTPUT_OPEN)[0].rstrip().endswith(hits[0])


def test_prefix_shape_and_a_users_own_file(tmp_path):
    prefix = load_few_shot("builtin")
    assert all(build_prompt(ex["question"]) + "".join(ex["steps"]) in prefix for ex in EXAMPLES)
    assert prefix.endswith("\n\n") and not prefix.startswith("<|user|>")  # the instruction comes first
    own = {"instruction": "Solve it.", "examples": [{"question": "1+1?", "steps": ["print(2)\n<end_of_code>"]}]}
    path = tmp_path / "shots.json"
    path.write_text(json.dumps(own))
    assert load_few_shot(str(path)) == "Solve it.\n\n" + build_prompt("1+1?") + "print(2)\n<end_of_code>\n\n"
    path.write_text(json.dumps({"instruction": "x", "examples": [{"question": "q"}]}))
    with pytest.raises(UserError, match=f"{path}: expected"):
        load_few_shot(str(path))
    with pytest.raises(UserError, match="cannot read"):
        load_few_shot(str(tmp_path / "missing.json"))
