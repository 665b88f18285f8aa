"""Answer normalisation and the numeric fast path (pure, no sympy)."""

from __future__ import annotations

import re
from fractions import Fraction

RELATIVE_TOLERANCE = 1e-4
_TOLERANCE = Fraction(1, 10_000)  # the same, exact

_SPACING_RE = re.compile(
    r"(?<!\\)\\[!,;: ]|\\q?quad\b|~|\\displaystyle\b|\\(?:big|Big|bigg|Bigg)[lr]?\b"
)
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right)(?![A-Za-z])\s*")
_DEGREES_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ\b|°|\\degree\b")
_UNIT_SUFFIX_RE = re.compile(
    # "5.4 \text{ cents}", "864 \mbox{ inches}^2", "\frac{270}7\text{ degrees}": a number (or a
    # closing brace/digit) followed by a text-mode word is a number with a unit.
    r"^(?P<value>.*?[\d}])\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z][A-Za-z\s.]*\}"
    r"(?:\s*\^\s*\{?\d\}?)?\s*$"
)
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_INT_RE = re.compile(r"^[-+]?\d+$")
_DECIMAL_RE = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_FRAC_RE = re.compile(
    r"^(?P<sign>[-+]?)\\frac(?:\{(?P<n>[-+]?\d+)\}|(?P<n1>\d))(?:\{(?P<d>\d+)\}|(?P<d1>\d))$"
)
_SLASH_RE = re.compile(r"^(?P<n>[-+]?\d+)/(?P<d>\d+)$")


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def normalize_answer(answer: str) -> str:
    """Canonical string form of a final answer, for equality checks only.

    Removes what never changes the value: math delimiters, LaTeX spacing, ``\\left``/``\\right``,
    ``\\dfrac``/``\\tfrac`` spelling, degrees, percent and dollar signs, text-mode units after a
    number, ``\\text{}`` wrappers, whitespace and a trailing period.
    """
    s = _strip_math_delimiters(answer)
    s = _SPACING_RE.sub("", s)
    s = _LEFT_RIGHT_RE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _DEGREES_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = s.replace("{,}", ",")
    unit = _UNIT_SUFFIX_RE.match(s)
    if unit is not None:
        s = unit.group("value")
    s = _TEXT_WRAP_RE.sub(r"\1", s)
    s = "".join(s.split())
    return s.rstrip(".")


def parse_number(normalized: str) -> tuple[Fraction, bool] | None:
    """(exact value, written as a decimal) of a normalised plain number or simple fraction.

    Integers (``1234``, ``1,234``), decimals (``-0.15``), ``\\frac{a}{b}``, ``\\frac12`` and
    ``a/b``; anything else (surds, expressions, tuples) is None and left to math-verify.
    """
    s = normalized
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    if _INT_RE.match(s):
        return Fraction(int(s)), False
    if _DECIMAL_RE.match(s):
        return Fraction(s), True
    m = _FRAC_RE.match(s) or _SLASH_RE.match(s)
    if m is None:
        return None
    groups = m.groupdict()
    numerator = int(groups.get("n") or groups.get("n1") or 0)
    denominator = int(groups.get("d") or groups.get("d1") or 0)
    if denominator == 0:
        return None
    value = Fraction(numerator, denominator)
    return (-value if groups.get("sign") == "-" else value), False


def _numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    (x, x_decimal), (y, y_decimal) = a, b
    if x == y:
        return True
    if not (x_decimal or y_decimal):
        # Integers and fractions are exact: 100000 vs 100001 must differ, though within 1e-4.
        return False
    return abs(x - y) <= _TOLERANCE * max(abs(x), abs(y))


def _has_percent(s: str) -> bool:
    return "%" in s
