"""Refined answers that talk about the student or the critique (meta-commentary).

A refined answer is a training target: the student learns to write it with only the question in
front of it at inference. "The student's mistake was…" or "As the critique notes…" in a target
teaches the student to refer to a conversation that will not exist. The default refine turn
(``cgd-v3``) follows the paper and asks for an answer that corrects the student's inaccuracies,
which may name them, so snapshots drop such answers only when asked (filter
``no_meta_commentary``, reason ``meta_commentary``).

Each pattern is named, and it counts only when the *question* does not match it too: a GSM8K
problem about "a student" may well have a refined answer about that student.
"""

from __future__ import annotations

import re

_I = re.IGNORECASE
META_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # "the student", "student's", "the students' answer"
    ("student", re.compile(r"\bstudents?(?:'s|')?(?![\w-])", _I)),
    # "the critique", "your review", "the feedback above" (a bare "review" is ordinary prose)
    (
        "critique",
        re.compile(
            r"\b(?:the|this|my|your|above|teacher's)\s+(?:critique|review|feedback)\b|"
            r"\bcritique\b",
            _I,
        ),
    ),
    # "the initial answer", "the original solution", "the previous attempt" (not "first": "the
    # first answer choice" is ordinary)
    (
        "earlier_answer",
        re.compile(
            r"\b(?:initial|original|previous|earlier)\s+"
            r"(?:answer|solution|attempt|response|work)\b",
            _I,
        ),
    ),
    # "Here is the corrected solution", "a revised version"
    (
        "correction",
        re.compile(
            r"\b(?:corrected|revised|improved|fixed)\s+(?:answer|solution|version|response)\b",
            _I,
        ),
    ),
    # "as noted above", "as pointed out in the review", "the teacher"
    (
        "reference_to_review",
        re.compile(r"\bas\s+(?:noted|pointed\s+out|mentioned|identified)\b|\bthe\s+teacher\b", _I),
    ),
)


def meta_commentary(answer: str | None, question: str | None = None) -> list[str]:
    """The names of the patterns ``answer`` matches and ``question`` does not (empty: clean)."""
    if not answer:
        return []
    question = question or ""
    return [
        name
        for name, pattern in META_PATTERNS
        if pattern.search(answer) and not pattern.search(question)
    ]
