r"""Training targets end in a ``\boxed{}`` final answer, whatever their source.

The refine turn asks the teacher for ``\boxed{}``, but dataset references do not have one
(GSM8K ends its solutions with ``#### 18``, MATH's ``answer`` is a bare ``\frac{1}{2}``). Left
alone, a CGD-vs-SFT comparison would partly measure answer format. :func:`boxed_target` makes
every target end in a box, and says what it had to do so the dataset card can count it:

- ``kept``: the text already has a ``\boxed{}`` answer
- ``hashes``: GSM8K's final ``#### X`` line became ``\boxed{X}``
- ``bare``: the whole text is a bare answer (one short line): it became ``\boxed{text}``
- ``appended``: ``The final answer is \boxed{X}.`` was added, X being the given answer or the
  text's own final answer (as the verifier extracts it)
- ``unboxed``: no final answer could be found; the text is unchanged
"""

from __future__ import annotations

import re

from cgd.answers import extract_boxed, extract_final_answer, reference_answer

NOTES = ("kept", "hashes", "bare", "appended", "unboxed")
_FINAL_HASHES_RE = re.compile(r"####[ \t]*(?P<ans>[^\n]+?)[ \t]*\Z")
BARE_MAX_CHARS = 80


def is_bare_answer(text: str) -> bool:
    """A short answer with no reasoning (one line, at most BARE_MAX_CHARS characters)."""
    stripped = text.strip()
    return "\n" not in stripped and len(stripped) <= BARE_MAX_CHARS


def boxed_target(text: str, answer: str | None = None) -> tuple[str, str]:
    """(``text`` ending in a boxed final answer, what was done: one of NOTES).

    ``answer`` is a known final answer (a dataset's short ``answer`` beside its ``solution``).
    """
    if extract_boxed(text) is not None:
        return text, "kept"
    body = text.rstrip()
    m = _FINAL_HASHES_RE.search(body)
    if m is not None:
        final = m.group("ans").strip().rstrip(".")
        return body[: m.start()] + f"\\boxed{{{final}}}", "hashes"
    if is_bare_answer(body) and (answer is None or reference_answer(answer) == body.strip()):
        bare = body.strip().strip("$").strip()
        if bare:
            return f"\\boxed{{{bare}}}", "bare"
    final = reference_answer(answer) if answer is not None else extract_final_answer(body)
    if final:
        return f"{body}\n\nThe final answer is \\boxed{{{final}}}.", "appended"
    return text, "unboxed"
