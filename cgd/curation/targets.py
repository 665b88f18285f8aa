r"""Training targets end in a ``\boxed{}`` final answer where they have one to box.

The refine turn asks the teacher for ``\boxed{}``, but dataset references do not have one
(GSM8K ends its solutions with ``#### 18``, MATH's ``answer`` is a bare ``\frac{1}{2}``). Left
alone, a CGD-vs-SFT comparison would partly measure answer format. :func:`boxed_target` boxes the
final answer of every target that states one, and says what it did so the dataset card can count
it:

- ``kept``: the text already has a ``\boxed{}`` answer
- ``hashes``: GSM8K's final ``#### X`` line became ``\boxed{X}``
- ``bare``: the whole text is a bare math answer (one short line: a number, a LaTeX expression, a
  choice letter): it became ``\boxed{text}``
- ``appended``: ``The final answer is \boxed{X}.`` was added, X being the given answer (a
  dataset's short answer beside its solution) or the answer the text itself states ("the answer
  is 18") when that is a math answer
- ``free_form``: anything else (prose, or several lines that never state a math final answer):
  the text is unchanged. A box is never invented: taking the last number of a free-form answer
  turned an answer about photosynthesis into ``\boxed{2}``.

Older snapshots counted ``unboxed`` (no final answer found); the card still shows that count.
"""

from __future__ import annotations

import re

from cgd.answers import extract_boxed, extract_marked_answer, reference_answer

NOTES = ("kept", "hashes", "bare", "appended", "free_form")
_FINAL_HASHES_RE = re.compile(r"####[ \t]*(?P<ans>[^\n]+?)[ \t]*\Z")
BARE_MAX_CHARS = 80

_NUMBER = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?%?|-?\.\d+%?"
# A number with at most a short unit: "18", "-2.5", "3/4", "1,000", "12 cm", "5 m/s", "30%".
_NUMBER_WITH_UNIT_RE = re.compile(rf"^(?:{_NUMBER})(?:\s*[A-Za-z][A-Za-z/^0-9]{{0,5}})?$")
# `\frac`, `\text{ cm}`, `\sqrt`: LaTeX commands and text boxes are not prose words.
_LATEX_COMMAND_RE = re.compile(r"\\(?:text|mbox|mathrm|textbf)\{[^{}]*\}|\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")


def is_bare_answer(text: str) -> bool:
    """A short answer with no reasoning (one line, at most BARE_MAX_CHARS characters)."""
    stripped = text.strip()
    return "\n" not in stripped and len(stripped) <= BARE_MAX_CHARS


def _unwrapped(text: str) -> str:
    return text.strip().strip("$").strip().rstrip(".").strip()


def is_math_answer(text: str) -> bool:
    """A short one-line answer that is a number (unit allowed), a choice letter or a math
    expression: no word of two or more letters outside LaTeX commands. Prose ("Yes",
    "Photosynthesis makes sugar") is not."""
    bare = _unwrapped(text)
    if not bare or not is_bare_answer(bare):
        return False
    if _NUMBER_WITH_UNIT_RE.match(bare):
        return True
    return _WORD_RE.search(_LATEX_COMMAND_RE.sub(" ", bare)) is None


def boxed_target(text: str, answer: str | None = None) -> tuple[str, str]:
    """(``text``, ending in a boxed final answer where it has one, what was done: one of NOTES).

    ``answer`` is a known final answer (a dataset's short ``answer`` beside its ``solution``);
    given explicitly it is boxed whatever its kind, as long as it is one short line.
    """
    if extract_boxed(text) is not None:
        return text, "kept"
    body = text.rstrip()
    m = _FINAL_HASHES_RE.search(body)
    if m is not None:
        final = m.group("ans").strip().rstrip(".")
        return body[: m.start()] + f"\\boxed{{{final}}}", "hashes"
    given = reference_answer(answer) if answer is not None else None
    if given is not None and not is_bare_answer(given):
        given = None  # a paragraph is no final answer to box
    if is_bare_answer(body) and (body.strip() == given or (given is None and is_math_answer(body))):
        return f"\\boxed{{{_unwrapped(body)}}}", "bare"
    if given is not None:
        return f"{body}\n\nThe final answer is \\boxed{{{given}}}.", "appended"
    # Only an answer the text states itself, and only a math one: never its last number.
    stated = extract_marked_answer(body)
    if stated and is_math_answer(stated):
        return f"{body}\n\nThe final answer is \\boxed{{{_unwrapped(stated)}}}.", "appended"
    return text, "free_form"
