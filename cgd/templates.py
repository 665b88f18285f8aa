"""Prompt templates for the three CGD calls (probe, critique, refine), versioned and named.

The version string is stored with every generation so a snapshot can say exactly which wording
produced it. Refine is a *continuation* of the critique conversation: its messages are the
critique request's messages, the critique itself as the assistant turn, and one short user turn.
The teacher server's prefix cache then serves everything but that last turn.

Question and student answer are wrapped in tags so that the teacher (and our simulator) can tell
them apart from instructions even when they contain headings of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Message = dict[str, str]

CRITIQUE_SYSTEM = (
    "You are a meticulous teacher reviewing a student's solution. Check every step of the "
    "reasoning and the final result. Point out each error, each missing or unjustified step, and "
    "anything unclear, and say how to fix it. Do not write a full corrected solution yet."
)

CRITIQUE_USER = (
    "<question>\n{question}\n</question>\n\n"
    "<student_answer>\n{answer}\n</student_answer>\n\n"
    "Review the student's answer to the question above. After your review, finish with one line "
    "that is exactly `Conclusion: right` if the final answer is correct, or exactly "
    "`Conclusion: wrong` if it is not."
)

# Kept short on purpose: everything before it is shared with the critique request, so the
# teacher's prefix cache serves all but these few tokens.
REFINE_USER = (
    "Now write the improved, complete solution yourself, fixing what your critique found. "
    "Put the final answer in \\boxed{}."
)

# What the trained student sees (docs/method.md "Training format"); used by exports and training.
CGD_TRAIN_INSTRUCTION = (
    "Below are a question, a student's initial answer and a teacher's critique of it. Using the "
    "initial answer and the critique, write an improved, complete answer to the question."
)

EVAL_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Template:
    name: str
    version: str

    def probe(self, question: str) -> list[Message]:
        # The reference release: the question is the only user turn.
        return [{"role": "user", "content": question}]

    def critique(self, question: str, answer: str) -> list[Message]:
        return [
            {"role": "system", "content": CRITIQUE_SYSTEM},
            {"role": "user", "content": CRITIQUE_USER.format(question=question, answer=answer)},
        ]

    def refine(self, question: str, answer: str, critique: str) -> list[Message]:
        return [
            *self.critique(question, answer),
            {"role": "assistant", "content": critique},
            {"role": "user", "content": REFINE_USER},
        ]


TEMPLATES: dict[str, Template] = {"cgd": Template(name="cgd", version="cgd-v1")}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"unknown template {name!r}; known: {sorted(TEMPLATES)}") from None


# `Conclusion: right` / `**Conclusion:** Wrong.` / `conclusion - correct` … the last one wins.
_VERDICT_RE = re.compile(r"conclusion\W{0,6}\s*(right|wrong|correct|incorrect)\b", re.IGNORECASE)
_VERDICT_MAP = {"right": "right", "correct": "right", "wrong": "wrong", "incorrect": "wrong"}


def parse_verdict(critique: str) -> str | None:
    """The critique's verdict, ``"right"``/``"wrong"``, or ``None`` when it has no verdict line."""
    matches = _VERDICT_RE.findall(critique or "")
    if not matches:
        return None
    return _VERDICT_MAP[matches[-1].lower()]


_TAG_RE = {
    tag: re.compile(rf"<{tag}>\n(.*?)\n</{tag}>", re.DOTALL)
    for tag in ("question", "student_answer")
}


def extract_tagged(text: str, tag: str) -> str | None:
    """The text inside ``<tag>…</tag>`` of a critique prompt (used by the simulator)."""
    m = _TAG_RE[tag].search(text)
    return m.group(1) if m else None
