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
# Degrees after a number ("30^\circ"); after a symbol "^{\circ}" is a label, not a unit:
# E^{\circ} (a standard potential) is not E.
_DEGREES_RE = re.compile(r"(?<=[\d.)])\s*(?:\^\s*\{?\s*\\circ\s*\}?|\\circ\b)|°|\\degree\b")
# A unit after a number: "18 dollars", "5 cm", "5\\,\\mathrm{m/s}", "9.8 m/s^2",
# "864 \\mbox{ inches}^2", "\\frac{270}7\\text{ degrees}". A unit is a text-mode group or a bare
# word, with an optional exponent; several are joined by "/", "\\cdot", "*" or spaces. Bare words
# are checked by _unit_words_ok (a single letter is only a unit when it is a known one and set
# apart by a space).
_UNIT_TEXT = r"\\(?:text|mbox|mathrm|textrm|rm|textnormal|operatorname)\s*\{\s*[A-Za-z][^{}]*\}"
_UNIT_ATOM = rf"(?:{_UNIT_TEXT}|[A-Za-z]+)(?:\s*\^\s*(?:\{{\s*-?\d+\s*\}}|-?\d))?"
_UNIT_SEP = r"(?:\s*(?:/|\\cdot|\*)\s*|\s+)"
_UNIT_RE = re.compile(
    rf"^(?P<value>.*?(?:[\d}})]|\\pi))(?P<space>\s*)(?P<tail>{_UNIT_ATOM}(?:{_UNIT_SEP}{_UNIT_ATOM})*)"
    r"\s*\.?$"
)
_BARE_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]+")
_TEXT_GROUP_RE = re.compile(_UNIT_TEXT)
# Units that may follow a number without a space ("5cm", "60mph"); single letters need one.
_KNOWN_UNITS = frozenset(
    """m s g h l L J N W V K Pa Hz kHz MHz GHz eV keV MeV
    cm mm km nm um dm ft in yd mi mph kph kmh kg mg lb lbs oz hr hrs min mins sec secs ms ns us
    mL ml cL dL kL kW kJ kN kPa atm mol cal kcal sq cu deg rad bps""".split()
)
# Bare words that are mathematics, not units ("2 pi", "3 sqrt", "5 and").
_NOT_UNITS = frozenset(
    """pi e i sqrt sin cos tan cot csc arcsin arccos arctan sinh cosh tanh log ln lg exp and or
    not if mod gcd lcm max det arg dim ker inf sup lim times cdot div pm mp choose over frac
    infty approx le ge ne neq leq geq to np math sympy""".split()
)
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_INT_RE = re.compile(r"^[-+]?\d+$")
_DECIMAL_RE = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_FRAC_RE = re.compile(
    r"^(?P<sign>[-+]?)\\frac(?:\{(?P<n>[-+]?\d+)\}|(?P<n1>\d))(?:\{(?P<d>\d+)\}|(?P<d1>\d))$"
)
_SLASH_RE = re.compile(r"^(?P<n>[-+]?\d+)/(?P<d>\d+)$")


_SCI_MANTISSA = r"(?P<m>[-+]?(?:\d+(?:\.\d*)?|\.\d+))"


def _exponent(name: str) -> str:
    return rf"(?P<{name}>[-+]?\d+)"


# Scientific notation, after normalize_answer (no whitespace): 4.5e33, 4.5E+33, 4.5\times10^{33},
# 4.5\cdot10^{33}, 4.5*10**33, 4.5x10^33, 4.5×10^{33}, and 10^{33} alone. With an explicit
# mantissa, "10^33" is read as 10 to the 33rd (as typed in plain text), not LaTeX's 10^3·3.
_SCI_RES = (
    re.compile(rf"^{_SCI_MANTISSA}[eE]{_exponent('e1')}$"),
    re.compile(
        rf"^{_SCI_MANTISSA}(?:\\times|\\cdot|\\ast|[*xX×·])10"
        rf"(?:\^\{{{_exponent('e1')}\}}|\^{_exponent('e2')}|\*\*\(?{_exponent('e3')}\)?)$"
    ),
    re.compile(rf"^(?P<s>[-+]?)10(?:\^\{{{_exponent('e1')}\}}|\*\*\(?{_exponent('e2')}\)?)$"),
)
_MAX_EXPONENT = 400  # 1e999999999 must not build a billion-digit integer
# Python-style digit grouping: 1_000, 1_000_000 (exactly three digits a group, so that the
# base-subscript "12_3" is not read as 123).
_UNDERSCORE_RE = re.compile(r"^[-+]?\d{1,3}(?:_\d{3})+(?:\.\d+)?$")


def _strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def _unit_words_ok(space: str, tail: str) -> bool:
    """Whether the bare words of a unit tail are units (see _UNIT_RE), not mathematics."""
    bare = _TEXT_GROUP_RE.sub(" ", tail)
    words = _BARE_WORD_RE.findall(bare)
    for position, word in enumerate(words):
        if word in _NOT_UNITS or word.casefold() in _NOT_UNITS:
            return False
        if word in _KNOWN_UNITS:
            if len(word) == 1 and position == 0 and not space and bare.lstrip() == bare:
                return False  # "5m" may be 5 times m; "5 m" is five metres
            continue
        # An unknown word is a unit or a counted noun ("18 dollars", "3 apples") when it is a
        # word (3+ letters) set apart from the number.
        if len(word) < 3 or (position == 0 and not space and bare.lstrip() == bare):
            return False
    return True


_MACRO_NAME_RE = re.compile(r"\\[A-Za-z]+")


def _has_symbol(value: str) -> bool:
    """Whether ``value`` has a letter outside macro names and text groups (a variable)."""
    return (
        re.search(r"[A-Za-z]", _MACRO_NAME_RE.sub(" ", _TEXT_GROUP_RE.sub(" ", value))) is not None
    )


def strip_unit(answer: str) -> str:
    """``answer`` without a unit after its value ("18 dollars" -> "18"); else unchanged.

    Works on text that still has its spaces (spacing macros turned into spaces).
    """
    m = _UNIT_RE.match(answer)
    if m is None:
        return answer
    tail = m.group("tail")
    if _BARE_WORD_RE.search(_TEXT_GROUP_RE.sub(" ", tail)) and _has_symbol(m.group("value")):
        # After an expression in symbols a bare letter is one more factor, not a unit: in
        # "\\frac{m_1}{m_2} g" the g is gravity, and dropping it would make "... s" equal.
        return answer
    if _TEXT_GROUP_RE.match(tail) is None and not _unit_words_ok(m.group("space"), tail):
        return answer
    if _TEXT_GROUP_RE.match(tail) is not None and not _unit_words_ok(" ", tail):
        return answer
    return m.group("value").rstrip()


def _light_normalize(answer: str) -> str:
    """Delimiters, spacing macros (as spaces), \\left/\\right, \\dfrac, degrees, %, $ and units."""
    s = _strip_math_delimiters(answer)
    s = _SPACING_RE.sub(" ", s)
    s = _LEFT_RIGHT_RE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _DEGREES_RE.sub(" ", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    s = s.replace("{,}", ",")
    return strip_unit(s.strip())


def normalize_answer(answer: str) -> str:
    """Canonical string form of a final answer, for equality checks only.

    Removes what never changes the value: math delimiters, LaTeX spacing, ``\\left``/``\\right``,
    ``\\dfrac``/``\\tfrac`` spelling, degrees, percent and dollar signs, a unit after a number
    (text-mode or bare: "5 \\text{cm}", "18 dollars", "9.8 m/s^2"), ``\\text{}`` wrappers,
    whitespace and a trailing period.
    """
    s = _light_normalize(answer)
    s = _TEXT_WRAP_RE.sub(r"\1", s)
    s = "".join(s.split())
    return s.rstrip(".")


def _scientific(s: str) -> tuple[Fraction, bool] | None:
    for regex in _SCI_RES:
        m = regex.match(s)
        if m is None:
            continue
        groups = m.groupdict()
        exponent_text = next(v for k, v in groups.items() if k.startswith("e") and v is not None)
        exponent = int(exponent_text)
        if abs(exponent) > _MAX_EXPONENT:
            return None
        mantissa_text = groups.get("m")
        if mantissa_text is None:
            mantissa, decimal = Fraction(-1 if groups.get("s") == "-" else 1), False
        else:
            mantissa, decimal = Fraction(mantissa_text), "." in mantissa_text
        return mantissa * Fraction(10) ** exponent, decimal
    return None


def parse_number(normalized: str) -> tuple[Fraction, bool] | None:
    """(exact value, written as a decimal) of a normalised plain number or simple fraction.

    Integers (``1234``, ``1,234``, ``1_234``), decimals (``-0.15``), scientific notation
    (``4.5e33``, ``4.5\\times10^{33}``, ``4.5*10**33``; a decimal mantissa counts as a decimal),
    ``\\frac{a}{b}``, ``\\frac12`` and ``a/b``; anything else (surds, expressions, tuples) is
    None and left to the evaluators or math-verify.
    """
    s = normalized
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    elif _UNDERSCORE_RE.match(s):
        s = s.replace("_", "")
    if _INT_RE.match(s):
        return Fraction(int(s)), False
    if _DECIMAL_RE.match(s):
        return Fraction(s), True
    m = _FRAC_RE.match(s) or _SLASH_RE.match(s)
    if m is None:
        return _scientific(s)
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
    if x.denominator == 1 and y.denominator == 1:
        # So are integer values however they are spelled: 448001.0 and 4.48001e5 are 448001,
        # not an approximation of 448000. The tolerance is for values with a fractional part.
        return False
    return abs(x - y) <= _TOLERANCE * max(abs(x), abs(y))


_PERCENT_RE = re.compile(r"%|\bpercent\b")


def _has_percent(s: str) -> bool:
    return _PERCENT_RE.search(s) is not None
