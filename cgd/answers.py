"""Final-answer extraction from model responses and dataset references.

Pure string functions (regexes and a brace scanner, no sympy) so they are cheap enough to run
inline anywhere, including an asyncio loop or a thread of a Celery worker.

Conventions (see docs/method.md, Evaluation): the answer is the last ``\\boxed{}``; fallbacks are
"the answer is X", "final answer: X", GSM8K's ``#### X`` and finally the last number.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

__all__ = [
    "extract_boxed",
    "extract_choice",
    "extract_final_answer",
    "reference_answer",
]

_ASCII_LETTERS = frozenset(string.ascii_letters)

# "the answer is X", "the final answer is X", "final answer: X", "answer: X" (X ends at a
# sentence end or line end). A period followed by a digit is a decimal point, not a sentence end.
_MARKED_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:final\s+)?answer\s+is|\bfinal\s+answer\s*[:=]|\banswer\s*:)"
    r"[ \t]*[:=]?[ \t]*(?P<ans>[^\n]+?)[ \t]*(?=\.(?!\d)|\n|$)",
    re.IGNORECASE,
)
# GSM8K's reference/answer convention: `#### 1,234`.
_HASHES_RE = re.compile(r"####[ \t]*(?P<ans>[^\n]+?)[ \t]*(?=\n|$)")

# A number: thousands-separated (1,234,567.5), plain (-12.5), a leading-dot decimal (.5) or a
# simple fraction (3/4). Thousands groups must be exactly three digits so "1,2" stays a list.
_NUMBER_RE = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)(?![\w])"
)
_THOUSANDS_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")

_CHOICE_LETTERS = "ABCDEFGHIJ"
# A bare choice letter, optionally in parentheses/brackets or `\text{}`, optionally followed by
# ")" or "." and the option text ("C", "(C)", "C)", "\text{(C)}", "C. 42").
_CHOICE_ALONE_RE = re.compile(
    r"^\s*(?:\\text(?:bf)?\{)?\s*[(\[]?\s*(?P<c>[A-J])\s*[)\]]?\s*\}?\s*(?:[.:)]\s*.*)?$",
    re.DOTALL,
)
_CHOICE_MARKED_RE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:option\s+|choice\s+)?[:=]?\s*"
    r"(?:\\text(?:bf)?\{)?\s*[(\[]?\s*(?P<c>(?-i:[A-J]))(?![\w'])",
    re.IGNORECASE,  # the keywords are case-insensitive, the letter is not ("answer is a ...")
)
_CHOICE_PAREN_RE = re.compile(r"[(\[](?P<c>[A-J])[)\]]")
# "A" and "I" are also English words; as standalone letters they only count when not followed by
# a lower-case word ("I think", "A number").
_CHOICE_STANDALONE_RE = re.compile(
    r"(?<![\w\\])(?:(?P<c>[B-HJ])|(?P<word>[AI])(?!\s+[a-z]))(?![\w'])"
)


def _box_content(text: str, start: int) -> str | None:
    """Argument of the box command whose name ends at ``start``.

    Returns "" for an empty box and None when the braces never close (truncated output).
    """
    i = start
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":
        # `\boxed 5`: the argument runs to the next whitespace or math delimiter.
        m = re.match(r"[^\s$]+", text[i:])
        return m.group(0).rstrip(".,;") if m else None
    close = text.find("}", i + 1)
    if close >= 0:
        inner = text[i + 1 : close]
        if "{" not in inner and "\\" not in inner:  # the usual `\boxed{42}`: no nesting to scan
            return inner.strip()
    j = matching_brace(text, i)
    return text[i + 1 : j].strip() if j >= 0 else None


def matching_brace(text: str, open_at: int) -> int:
    """Index of the ``}`` that closes the ``{`` at ``open_at``; -1 when it never closes."""
    depth = 0
    j = open_at
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            j += 2  # `\{`, `\}` and `\\` are escapes, never structural braces
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _box_ends_backwards(text: str) -> Iterator[int]:
    """Where each box command's name ends, last one first. Searched from the end: the answer's
    box is usually the last thing in a long text, and a regex scan of the whole text was ~15% of
    the export's main thread (py-spy, docs/benchmarks.md)."""
    end = len(text)
    while True:
        # `\fbox` is rare: look for it only after the last `\boxed` (a full scan otherwise).
        boxed = text.rfind("\\boxed", 0, end)
        fbox = text.rfind("\\fbox", boxed + 1, end)
        start, name_end = (fbox, fbox + 5) if fbox >= 0 else (boxed, boxed + 6)
        if start < 0:
            return
        if name_end == len(text) or text[name_end] not in _ASCII_LETTERS:
            yield name_end  # a whole command: `\boxedx` is some other macro
        end = start


def _last_box(text: str) -> tuple[bool, str | None]:
    """(a non-empty box was found, its content); content is None when the box never closes."""
    for box_end in _box_ends_backwards(text):
        content = _box_content(text, box_end)
        if content is None:
            return True, None
        if content:
            return True, content
    return False, None


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``) in ``text``.

    Empty boxes (``\\boxed{}``, usually a mention of the format) are skipped. If the last
    non-empty box never closes, the response was cut inside its answer, so the result is None
    rather than some earlier, superseded box.
    """
    if not text:
        return None
    return _last_box(text)[1]


def _clean_marked(ans: str) -> str | None:
    """Trim math delimiters/punctuation around a marked answer; unwrap a box inside it."""
    boxed = extract_boxed(ans)
    if boxed is not None:
        return boxed
    ans = ans.strip().strip("*").strip()  # markdown bold: "**Answer:** 42"
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
            ans = ans[len(left) : len(ans) - len(right)].strip()
            break
    ans = ans.rstrip(".,;").strip()
    return ans or None


def extract_marked_answer(text: str | None) -> str | None:
    """Last boxed answer, else the last explicitly marked one ("the answer is", "####" ...)."""
    if not text:
        return None
    found_box, boxed = _last_box(text)
    if found_box:
        # A box that never closes means truncated output: no fallback may guess from its debris.
        return boxed
    best: tuple[int, str] | None = None
    for regex in (_MARKED_RE, _HASHES_RE):
        for m in regex.finditer(text):
            if best is None or m.start() > best[0]:
                best = (m.start(), m.group("ans"))
    if best is None:
        return None
    return _clean_marked(best[1])


def extract_last_number(text: str | None) -> str | None:
    """The last number in ``text`` (thousands separators removed), or None."""
    if not text:
        return None
    matches = _NUMBER_RE.findall(text)
    if not matches:
        return None
    return _strip_thousands(matches[-1])


def extract_final_answer(text: str | None) -> str | None:
    """The final answer of a response: last box, then marked answers, then the last number.

    None when there is none, or when the last box never closes (the output was truncated).
    """
    if not text:
        return None
    found_box, boxed = _last_box(text)
    if found_box:
        return boxed
    marked = extract_marked_answer(text)
    if marked is not None:
        return marked
    return extract_last_number(text)


def _strip_thousands(s: str) -> str:
    return s.replace(",", "") if _THOUSANDS_RE.match(s) else s


def reference_answer(reference: str | float | None) -> str | None:
    """Final answer of a dataset reference.

    GSM8K ``...#### 1,234`` gives ``1234``; a reference with ``\\boxed{}`` gives its content;
    anything else (MATH-500's ``answer`` field, AMC's ``27.0``) is already final and is returned
    stripped. Numbers (JSON floats/ints) are accepted as such.
    """
    if reference is None:
        return None
    if isinstance(reference, bool):  # bool is an int subclass; never a math reference
        return str(reference)
    if isinstance(reference, int | float):
        return repr(reference)
    text = reference.strip()
    if not text:
        return None
    hashes = list(_HASHES_RE.finditer(text))
    if hashes:
        return _strip_thousands(hashes[-1].group("ans").strip().rstrip("."))
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    return text


def _choice_of(fragment: str | None) -> str | None:
    if not fragment:
        return None
    m = _CHOICE_ALONE_RE.match(fragment)
    return m.group("c") if m else None


def extract_choice(text: str | None) -> str | None:
    """Multiple-choice letter A-J of a response.

    Priority: a letter in the last box, then "answer is (C)" / "Answer: C", then the last
    parenthesised letter "(C)", then the last standalone capital letter A-J.
    """
    if not text:
        return None
    boxed = _choice_of(extract_boxed(text))
    if boxed is not None:
        return boxed
    marked = list(_CHOICE_MARKED_RE.finditer(text))
    if marked:
        return str(marked[-1].group("c")).upper()
    parenthesised = _CHOICE_PAREN_RE.findall(text)
    if parenthesised:
        return str(parenthesised[-1])
    standalone = list(_CHOICE_STANDALONE_RE.finditer(text))
    if standalone:
        last = standalone[-1]
        return last.group("c") or last.group("word")
    return None


# Exposed for the verifier's tests and other callers needing the letter set.
CHOICE_LETTERS = _CHOICE_LETTERS
