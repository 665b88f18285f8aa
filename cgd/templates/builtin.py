"""The built-in templates (``cgd``, ``cgd-detailed``) and the fixed texts of training and eval.

Question and student answer are wrapped in tags so that the teacher (and our simulator) can tell
them apart from instructions even when they contain headings of their own.

The system prompt is neutral on purpose: it is also the system prompt of the refine turn, and a
reviewer's brief there invited refined answers that talk about "the student's error" — text the
student would then be trained to write. The reviewing instructions live in the critique request.
"""

from __future__ import annotations

from cgd.templates.core import Template, TemplateSources

SYSTEM = (
    "You are an expert teacher of mathematics and the sciences. You reason carefully and check "
    "your work."
)
_TAGGED = (
    "<question>\n{{ question }}\n</question>\n\n"
    "<student_answer>\n{{ answer }}\n</student_answer>\n\n"
)
_VERDICT_ASK = (
    "finish with one line that is exactly `Conclusion: right` if the student's final answer is "
    "correct, or exactly `Conclusion: wrong` if it is not."
)

CRITIQUE = (
    _TAGGED + "Review the student's answer to the question above. Check every step of the "
    "reasoning and the final result. Point out each error, each missing or unjustified step, and "
    "anything unclear, and say how to fix it. Do not write a full corrected solution yet. After "
    "your review, " + _VERDICT_ASK
)

# After the reference release's critique instructions: a detailed, step-by-step critique that
# may show the correct reasoning where the student went wrong (our wording).
CRITIQUE_DETAILED = (
    _TAGGED + "Write a detailed critique of the student's answer to the question above.\n"
    "1. Go through the answer step by step. For each step, say whether it is correct; where it "
    "is not, explain what is wrong and show the correct reasoning or calculation for that step.\n"
    "2. Point out missing steps, unjustified claims and unclear explanations.\n"
    "3. Say whether the final answer is correct and, if it is not, what the correct approach "
    "leads to.\n"
    "Then " + _VERDICT_ASK
)

# Kept short on purpose: everything before it is shared with the critique request, so the
# teacher's prefix cache serves all but these few tokens. It asks for a standalone solution: the
# refined answer is a training target, and the student never sees a critique at inference.
REFINE = (
    "Now write a complete, standalone solution to the question, as it would appear in a "
    "textbook. Fix everything your review found, but do not mention the student, their answer, "
    "your review or any correction. Put the final answer in \\boxed{}."
)

SOLVE_SYSTEM = SYSTEM
SOLVE = (
    "<question>\n{{ question }}\n</question>\n\nSolve the question above. Reason step by step and "
    "put the final answer in \\boxed{}."
)

DEFAULT_SOURCES = TemplateSources(
    system=SYSTEM, critique=CRITIQUE, refine=REFINE, solve_system=SOLVE_SYSTEM, solve=SOLVE
)

TEMPLATES: dict[str, Template] = {
    "cgd": Template(name="cgd", version="cgd-v2", sources=DEFAULT_SOURCES),
    "cgd-detailed": Template(
        name="cgd-detailed",
        version="cgd-detailed-v1",
        sources=TemplateSources(
            system=SYSTEM,
            critique=CRITIQUE_DETAILED,
            refine=REFINE,
            solve_system=SOLVE_SYSTEM,
            solve=SOLVE,
        ),
    ),
}


def get_template(name: str) -> Template:
    """A built-in template (team templates: ``cgd.templates.ops``)."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown template {name!r}; known: {sorted(TEMPLATES)}") from None


# What the trained student sees (docs/method.md "Training format"); used by exports and training.
CGD_TRAIN_INSTRUCTION = (
    "Below are a question, a student's initial answer and a teacher's critique of it. Using the "
    "initial answer and the critique, write an improved, complete answer to the question."
)

EVAL_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
