"""The few-shot prompt of a bootstrap policy that was never trained on the step format (docs/DESIGN.md §3).

The paper's round 1 prompts a large instruct model with an instruction block and two solved
demonstrations in the step format before each question (the official code keeps them in
``few_shots/``); the policy then continues the question's own prompt step by step, stopping at the
step markers like a trained policy. These demonstrations are ours. A user's own file has the same
shape (JSON)::

    {"instruction": str, "examples": [{"question": str, "steps": [str, ...]}, ...]}

where ``steps`` are the solution's steps as the search writes them (the last code step carries its
``<output>`` block, the last step is the answer step). The block is only a prompt prefix: trees,
SFT examples and PPM inputs keep the plain ``steps.build_prompt`` prompt.
"""

from __future__ import annotations

import json

from rstar_jax.errors import UserError
from rstar_jax.steps import END_OF_CODE, END_OF_STEP, answer_step, build_prompt, output_block

BUILTIN = "builtin"

INSTRUCTION = (
    "Solve each math problem with Python code, one small step at a time. A step starts with comment lines "
    f"(#) that explain the reasoning, then the code of that step, and ends with {END_OF_STEP}. Each step may "
    "use the variables of the steps before it. The last code step prints the final result and ends with "
    f"{END_OF_CODE}; its printed output follows. Then state the final answer in \\boxed{{}}."
)


def _final(code: str, output: str) -> str:
    return f"{code}\n{END_OF_CODE}" + output_block(output)


EXAMPLES: tuple[dict, ...] = (
    {
        "question": "A bakery sells muffins for $3 each and cookies for $1.50 each. Maya buys 4 muffins and "
        "6 cookies and pays with a $25 bill. How much change does she get, in dollars?",
        "steps": [
            f"# The muffins cost 4 times $3.\nmuffins = 4 * 3\n{END_OF_STEP}",
            f"# The cookies cost 6 times $1.50.\ncookies = 6 * 1.5\n{END_OF_STEP}",
            _final(
                "# The change is $25 minus both costs; print it.\nchange = 25 - (muffins + cookies)\nprint(change)",
                "4.0",
            ),
            answer_step("4"),
        ],
    },
    {
        "question": "What is the sum of the real solutions of $x^2 - 5x + 6 = 0$?",
        "steps": [
            "# Solve the quadratic equation exactly with sympy.\nfrom sympy import symbols, solve\n"
            f"x = symbols('x')\nroots = solve(x**2 - 5*x + 6, x)\n{END_OF_STEP}",
            _final(
                "# Add the real roots and print the sum.\ntotal = sum(r for r in roots if r.is_real)\nprint(total)", "5"
            ),
            answer_step("5"),
        ],
    },
)


def few_shot_prefix(instruction: str, examples) -> str:
    """The text put before a question's prompt: the instruction, then each solved example."""
    shots = "".join(build_prompt(ex["question"]) + "".join(ex["steps"]) + "\n\n" for ex in examples)
    return f"{instruction.strip()}\n\n{shots}"


def load_few_shot(source: str) -> str:
    """The prefix of ``"builtin"`` (ours) or of a JSON file in the module docstring's shape."""
    if source == BUILTIN:
        return few_shot_prefix(INSTRUCTION, EXAMPLES)
    try:
        with open(source, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UserError(f"few_shot: {source}: cannot read ({e.strerror}); use 'builtin' or a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"few_shot: {source}: not valid JSON ({e})") from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not (
        isinstance(data.get("instruction") if isinstance(data, dict) else None, str)
        and isinstance(examples, list)
        and examples
        and all(
            isinstance(ex, dict)
            and isinstance(ex.get("question"), str)
            and isinstance(ex.get("steps"), list)
            and all(isinstance(s, str) for s in ex["steps"])
            for ex in examples
        )
    ):
        raise UserError(
            f"few_shot: {source}: expected {{'instruction': str, 'examples': [{{'question': str, 'steps': [str]}}]}}"
        )
    return few_shot_prefix(data["instruction"], examples)
