"""The built-in templates (``cgd``, ``cgd-standalone``, ``cgd-detailed``) and the fixed texts of
training and eval.

``cgd`` (the default, ``cgd-v3``) follows the paper's reference prompts (our wording): a detailed
critique of the student's answer, then an improved answer that corrects the student's
inaccuracies. ``cgd-standalone`` keeps the earlier default (``cgd-v2``: a review without a
corrected solution, then a standalone textbook solution that never mentions the student) for
those who relied on it.

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

# cgd-v2 (now `cgd-standalone`): a review that stops short of a corrected solution.
CRITIQUE_STANDALONE = (
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
# teacher's prefix cache serves all but these few tokens. cgd-v2 asked for a standalone solution
# that never mentions the student; the paper asks for an improved answer that corrects the
# student's inaccuracies (REFINE below), so this text is only in `cgd-standalone`/`cgd-detailed`.
REFINE_STANDALONE = (
    "Now write a complete, standalone solution to the question, as it would appear in a "
    "textbook. Fix everything your review found, but do not mention the student, their answer, "
    "your review or any correction. Put the final answer in \\boxed{}."
)

SOLVE_SYSTEM = SYSTEM
SOLVE = (
    "<question>\n{{ question }}\n</question>\n\nSolve the question above. Reason step by step and "
    "put the final answer in \\boxed{}."
)

# The default (cgd-v3), after the paper's reference prompts in our own wording: the critique is a
# *detailed critique* of the student's answer (it may show the correct reasoning where the student
# went wrong) ending in our verdict line; the refinement is an *improved answer that corrects the
# student's inaccuracies*, so it may say what was wrong. Snapshots can still drop refined answers
# that talk about the student (filter `no_meta_commentary`), but that is no longer the default.
CRITIQUE = (
    _TAGGED + "Write a detailed critique of the student's answer to the question above. Go "
    "through the answer step by step: say which steps are correct, and for every error, missing "
    "or unjustified step and unclear explanation, say what is wrong and how to correct it. Then "
    "say whether the student's final answer is correct. Finally, " + _VERDICT_ASK
)
REFINE = (
    "Now, using your critique, write an improved answer to the question that corrects the "
    "inaccuracies in the student's answer. Give the complete reasoning, not only the "
    "corrections, and put the final answer in \\boxed{}."
)

DEFAULT_SOURCES = TemplateSources(
    system=SYSTEM, critique=CRITIQUE, refine=REFINE, solve_system=SOLVE_SYSTEM, solve=SOLVE
)
STANDALONE_SOURCES = TemplateSources(
    system=SYSTEM,
    critique=CRITIQUE_STANDALONE,
    refine=REFINE_STANDALONE,
    solve_system=SOLVE_SYSTEM,
    solve=SOLVE,
)

DEFAULT_TEMPLATE = "cgd"
TEMPLATES: dict[str, Template] = {
    "cgd": Template(name="cgd", version="cgd-v3", sources=DEFAULT_SOURCES),
    # The texts are exactly those of the former default, so they keep its version tag: calls
    # recorded as `cgd-v2` were made with these texts.
    "cgd-standalone": Template(name="cgd-standalone", version="cgd-v2", sources=STANDALONE_SOURCES),
    "cgd-detailed": Template(
        name="cgd-detailed",
        version="cgd-detailed-v1",
        sources=TemplateSources(
            system=SYSTEM,
            critique=CRITIQUE_DETAILED,
            refine=REFINE_STANDALONE,
            solve_system=SOLVE_SYSTEM,
            solve=SOLVE,
        ),
    ),
}


# Built-ins by version tag: a job pins the version it resolved at creation, and one created under
# `cgd` before the default changed (`cgd-v2`) must keep those texts when it resumes.
BUILTIN_VERSIONS: dict[str, Template] = {t.version: t for t in TEMPLATES.values()}


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
