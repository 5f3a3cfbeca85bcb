"""The code-augmented step format (docs/DESIGN.md §3), shared by every component.

A solution is ``<code>`` followed by steps. A code step is reasoning as ``#``
comment lines, then Python lines, then ``<end_of_step>``; the last code step
prints the answer and ends with ``<end_of_code>``. The host appends the code's
output as ``<output>...<end_of_output>``; the final step is
``<answer>...\\boxed{...}<end_of_answer>``.
"""

from __future__ import annotations

END_OF_STEP = "<end_of_step>"
END_OF_CODE = "<end_of_code>"
END_OF_ANSWER = "<end_of_answer>"
CODE_OPEN = "<code>"
OUTPUT_OPEN = "<output>"
OUTPUT_CLOSE = "<end_of_output>"
ANSWER_OPEN = "<answer>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"

STEP_STOPS: tuple[str, ...] = (END_OF_STEP, END_OF_CODE, END_OF_ANSWER)
SPECIAL_TOKENS: tuple[str, ...] = (
    USER,
    ASSISTANT,
    CODE_OPEN,
    END_OF_STEP,
    END_OF_CODE,
    OUTPUT_OPEN,
    OUTPUT_CLOSE,
    ANSWER_OPEN,
    END_OF_ANSWER,
)

PROMPT_TEMPLATE = (
    USER
    + ":\n{question}\n"
    + ASSISTANT
    + ": Let's think step by step and solve the problem with code.\n"
    + CODE_OPEN
    + "\n"
)


def build_prompt(question: str) -> str:
    """The policy's prompt for a question; the solution's steps follow it verbatim."""
    return PROMPT_TEMPLATE.format(question=question.strip())


def _without_output(step: str) -> str:
    """A final code step carries the host-appended ``<output>`` block: cut it off."""
    return step[: step.index(OUTPUT_OPEN)] if OUTPUT_OPEN in step else step


def step_kind(step: str) -> str:
    """'code' (``<end_of_step>``), 'final_code' (``<end_of_code>``), 'answer' or 'incomplete'."""
    s = step.rstrip()
    if s.endswith(END_OF_ANSWER):
        return "answer"
    s = _without_output(s).rstrip()
    if s.endswith(END_OF_CODE):
        return "final_code"
    if s.endswith(END_OF_STEP):
        return "code"
    return "incomplete"


def step_code(step: str) -> str:
    """The Python source of one step: the text without its end marker and output block."""
    s = _without_output(step).rstrip()
    for marker in (END_OF_STEP, END_OF_CODE):
        if s.endswith(marker):
            s = s[: -len(marker)]
            break
    return s.rstrip() + "\n"


def path_program(steps: list[str]) -> str:
    """The program a node is checked by: the code of every code step on its path."""
    return "".join(step_code(s) for s in steps if step_kind(s) in ("code", "final_code"))


def output_block(stdout: str) -> str:
    """What the host appends after a final code step: its output, for the answer step to read."""
    return f"\n{OUTPUT_OPEN}\n{stdout.strip()}\n{OUTPUT_CLOSE}\n"


def answer_step(answer: str) -> str:
    return f"{ANSWER_OPEN}\nThe answer is \\boxed{{{answer}}}\n{END_OF_ANSWER}"
