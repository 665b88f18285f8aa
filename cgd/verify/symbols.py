"""Every symbol of two answers renamed to a plain placeholder, so that the parser keeps each one.

math-verify's LaTeX parser misreads physics notation: ``E_{1}`` does not parse at all (and
math-verify then grades whatever fragment does, such as ``2/3``), ``\\gamma`` becomes Euler's
constant, ``I`` the imaginary unit, capitals fold to lower case (``T`` is ``t``) and primes
vanish (``v'`` is ``v``). Renaming each distinct symbol (a letter or Greek letter with its accent,
subscript, primes and marks such as ``^{*}`` or ``^{\\circ}``; a ``\\mathrm{}``/``\\text{}`` group,
which math-verify would otherwise drop as a unit; a concentration ``[\\mathrm{A}]``; a whole
derivative ``\\frac{d v}{d t}``) to a plain letter (``x_{k}`` past 23 of them), with one table for
both answers, gives the parser names it reads faithfully; a parse then accounts for the whole
answer exactly when every placeholder of that answer appears in it (:func:`placeholder_names`).

Renaming only ever makes two answers *less* likely to be equal: a placeholder is a free symbol,
so an identity that holds for it holds for whatever the symbol meant. Left as they are: ``e``,
``i`` and ``d`` standing alone or in ``\\mathrm{}`` (Euler's number, the imaginary unit, a
differential), ``\\pi``, function macros (``\\sin``) and environment names. A unit after the
whole answer (``k_B T \\text{ J}``, set apart by a space) is removed first, as math-verify would.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from cgd.answers import matching_brace

# Greek letters are variables in physics (\gamma the Lorentz factor, \Delta a change); \pi and
# \Pi (a product) are not renamed. Variant spellings name the same letter.
_GREEK = frozenset(
    """alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron rho sigma
    tau upsilon phi chi psi omega Gamma Delta Theta Lambda Xi Sigma Upsilon Phi Psi Omega hbar
    ell""".split()
)
_VARIANTS = {
    "varepsilon": "epsilon",
    "vartheta": "theta",
    "varphi": "phi",
    "varrho": "rho",
    "varsigma": "sigma",
}
# Macros whose argument makes a different symbol: \vec{v} is not v, \dot{x} is not x.
_ACCENTS = frozenset(
    """vec hat bar dot ddot tilde overline widehat widetilde overrightarrow check breve mathbf
    boldsymbol bm mathcal mathscr mathfrak""".split()
)
# Text-mode groups: a symbol each (\mathrm{H}, \text{p}), except \mathrm{d}, \mathrm{e}, \mathrm{i}.
_TEXT_GROUPS = frozenset("text mathrm textrm rm mbox operatorname textnormal textit mathit".split())
_ENVIRONMENT = frozenset(("begin", "end"))
_KEPT_LETTERS = frozenset("dei")
# Placeholders: every lower-case letter but the kept ones (all other letters are renamed, so
# none of these can clash with a letter left in the text).
_PLACEHOLDER_LETTERS = "abcfghjklmnopqrstuvwxyz"
_MACRO_RE = re.compile(r"\\([A-Za-z]+)")
_MACRO_TAIL_RE = re.compile(r"\\[A-Za-z]+$")
_ROOT_INDEX_TAIL_RE = re.compile(r"\\sqrt\s*$")  # \sqrt[n]{x}: n is an index, not a species
_TWO_ARGUMENT_TAIL_RE = re.compile(r"\\(?:[dt]?frac|binom)\s*$")
_PRIME_RE = re.compile(r"\s*(?:'|\^\s*\{\s*((?:\\prime\s*)+)\}|\^\s*\\prime\b)")
# Superscripts that label a symbol rather than raise it to a power: P^{*}, E^{\circ}, G^{\ddagger}.
_MARK = r"\*|\\(?:circ|ominus|ddagger|dagger|star)\b"
_MARK_RE = re.compile(rf"\s*\^\s*(?:\{{\s*({_MARK})\s*\}}|({_MARK}))")
# A concentration or a bracketed species: [\mathrm{A}], [S], [\mathrm{A}^{-}] (no operator inside).
_SPECIES_RE = re.compile(
    r"\[\s*((?:\\(?:mathrm|text|rm)\s*\{[^{}]*\}|[A-Za-z])+(?:\s*\^\s*(?:\{[^{}]*\}|[-+]))?)\s*\]"
)
# A unit after the whole answer, set apart by a space: "k_B T \text{ J}", "v \, \mathrm{m/s}".
_UNIT_GROUP = r"\\(?:text|mathrm|mbox|textrm)\s*\{[^{}]*\}(?:\s*\^\s*(?:\{\s*-?\d+\s*\}|-?\d))?"
_TRAILING_UNIT_RE = re.compile(
    rf"(?<=[\w}})])(?:\s|\\[,;: ]|~)+{_UNIT_GROUP}(?:\s*(?:\\cdot|/)?\s*{_UNIT_GROUP})*\s*$"
)
_SUBSCRIPT_RE = re.compile(r"\s*_\s*")
_TEXT_WRAP_RE = re.compile(r"\\(?:" + "|".join(sorted(_TEXT_GROUPS)) + r")\s*")
# The start of a derivative's numerator and denominator: d, \mathrm{d}, \text{d} or \partial,
# not a subscripted d (\frac{d_1}{d_2} is a ratio of two lengths).
_DIFFERENTIAL_RE = re.compile(
    r"^\s*(?:d|\\(?:mathrm|text|rm)\s*\{\s*d\s*\}|\\partial)(?![_A-Za-z])"
)
_DIFFERENTIAL_LETTER_RE = re.compile(r"^\s*d(?=[A-Za-z])")  # "dv", "dt"


class Renamed(NamedTuple):
    """The answers with symbols replaced, and the placeholder names each one uses."""

    texts: list[str]
    placeholders: list[frozenset[str]]


def _group_end(text: str, start: int) -> int:
    """Index just past the balanced ``{...}`` group at ``start`` (after spaces); -1 if none."""
    pos = start
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text) or text[pos] != "{":
        return -1
    close = matching_brace(text, pos)
    return close + 1 if close != -1 else -1


def _argument_end(text: str, start: int) -> int:
    """Index past a macro argument at ``start``: a braced group, a macro or one character."""
    end = _group_end(text, start)
    if end != -1:
        return end
    pos = start
    while pos < len(text) and text[pos].isspace():
        pos += 1
    if pos >= len(text):
        return -1
    macro = _MACRO_RE.match(text, pos)
    return macro.end() if macro else pos + 1


def _squash(fragment: str) -> str:
    """A spelling-independent key: text wrappers, braces and spaces removed."""
    return "".join(_TEXT_WRAP_RE.sub("", fragment).replace("{", "").replace("}", "").split())


def _decorations(text: str, pos: int) -> tuple[int, str]:
    """(end, key suffix) of what follows a symbol's base at ``pos``: one subscript, primes and
    marks, in any order."""
    subscript = ""
    marks = ""
    while True:
        prime = _PRIME_RE.match(text, pos)
        if prime is not None:
            marks += "'" * (prime.group(1).count("\\prime") if prime.group(1) else 1)
            pos = prime.end()
            continue
        mark = _MARK_RE.match(text, pos)
        if mark is not None:
            marks += "^" + (mark.group(1) or mark.group(2))
            pos = mark.end()
            continue
        sub = _SUBSCRIPT_RE.match(text, pos)
        if sub is not None and not subscript:
            end = _argument_end(text, sub.end())
            if end == -1:
                break
            macro = _MACRO_RE.match(text, sub.end())
            if macro is not None and macro.group(1) in _TEXT_GROUPS:
                end = _group_end(text, macro.end())  # _\mathrm{B}: the macro and its group
                if end == -1:
                    break
            subscript = _squash(text[sub.end() : end]) or "_"
            pos = end
            continue
        break
    return pos, (f"_{subscript}" if subscript else "") + marks


def _derivative_end(text: str, pos: int) -> int:
    """Index past ``\\frac{d ...}{d ...}`` (or ∂) starting at ``pos``; -1 if it is not one."""
    macro = _MACRO_RE.match(text, pos)
    if macro is None or macro.group(1) not in ("frac", "dfrac", "tfrac"):
        return -1
    numerator_end = _group_end(text, macro.end())
    if numerator_end == -1:
        return -1
    denominator_end = _group_end(text, numerator_end)
    if denominator_end == -1:
        return -1
    numerator = text[macro.end() : numerator_end].strip()[1:-1]
    denominator = text[numerator_end:denominator_end].strip()[1:-1]
    for part in (numerator, denominator):
        if not (_DIFFERENTIAL_RE.match(part) or _DIFFERENTIAL_LETTER_RE.match(part)):
            return -1
    return denominator_end


def _base(text: str, pos: int) -> tuple[str, int] | None:
    """(key, end) of the symbol starting at ``pos`` before its decorations; None if none does.
    A key of "" marks something to copy unchanged up to ``end``."""
    char = text[pos]
    if char == "[" and not _ROOT_INDEX_TAIL_RE.search(text, 0, pos):
        species = _SPECIES_RE.match(text, pos)
        return ("[" + _squash(species.group(1)) + "]", species.end()) if species else None
    if char.isascii() and char.isalpha():
        return char, pos + 1
    if char != "\\":
        return None
    derivative_end = _derivative_end(text, pos)
    if derivative_end != -1:
        return "D:" + _squash(text[pos:derivative_end]), derivative_end
    macro = _MACRO_RE.match(text, pos)
    if macro is None:
        return "", pos + 2  # "\,", "\{", "\\"
    name = _VARIANTS.get(macro.group(1), macro.group(1))
    if name in _GREEK:
        return name, macro.end()
    if name in _ACCENTS:
        end = _argument_end(text, macro.end())
    elif name in _TEXT_GROUPS or name in _ENVIRONMENT:
        end = _group_end(text, macro.end())
    else:
        return "", macro.end()  # \sin, \frac, \pi, \left: copied, their arguments scanned
    if end == -1:
        return "", macro.end()
    content = _squash(text[macro.end() : end])
    if name in _ENVIRONMENT or (name in _TEXT_GROUPS and content in _KEPT_LETTERS):
        return "", end
    return f"{'text' if name in _TEXT_GROUPS else name}({content})", end


def symbol_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, key) of every symbol in ``text``; equal keys name the same symbol."""
    spans: list[tuple[int, int, str]] = []
    pos = 0
    while pos < len(text):
        start = pos
        found = _base(text, pos)
        if found is None:
            pos += 1
            continue
        base, pos = found
        if not base:
            continue
        pos, suffix = _decorations(text, pos)
        if base in _KEPT_LETTERS and not suffix:
            continue
        spans.append((start, pos, base + suffix))
    return spans


def without_trailing_unit(text: str) -> str:
    """``text`` without a unit group after the whole answer ("k_B T \\text{ J}")."""
    return _TRAILING_UNIT_RE.sub("", text)


def _after_first_argument(tail: str) -> bool:
    """Whether ``tail`` ends with ``\\frac{...}`` or ``\\binom{...}``: a second argument follows."""
    if not tail.endswith("}"):
        return False
    depth = 0
    for index in range(len(tail) - 1, -1, -1):
        depth += {"}": 1, "{": -1}.get(tail[index], 0)
        if depth == 0:
            return _TWO_ARGUMENT_TAIL_RE.search(tail[:index]) is not None
    return False


def _placeholder_name(number: int) -> str:
    """The placeholder's LaTeX: a plain lower-case letter (the parser reads ``x_{0}`` four times
    slower than ``a``), then ``x_{k}``."""
    if number < len(_PLACEHOLDER_LETTERS):
        return _PLACEHOLDER_LETTERS[number]
    return f"x_{{{number - len(_PLACEHOLDER_LETTERS)}}}"


def _placeholder(number: int, before: str) -> str:
    """The placeholder, spaced (so that "\\sin\\theta" does not become the macro "\\sina"), and
    braced where it is a macro's argument or an exponent ("\\frac\\alpha\\beta", "e^\\theta");
    nowhere else, since the parser reads a braced group alone as a set."""
    tail = before.rstrip()
    if tail and (
        tail[-1] in "^_"
        or (tail[-1].isalpha() and _MACRO_TAIL_RE.search(tail))
        or _after_first_argument(tail)
    ):
        return f" {{{_placeholder_name(number)}}} "
    return f" {_placeholder_name(number)} "


def with_placeholders(texts: list[str]) -> Renamed:
    """``texts`` with each symbol replaced by a placeholder, one numbering for all of them."""
    numbers: dict[str, int] = {}
    renamed: list[str] = []
    used: list[frozenset[str]] = []
    for text in map(without_trailing_unit, texts):
        pieces: list[str] = []
        names: set[str] = set()
        last = 0
        for start, end, key in symbol_spans(text):
            number = numbers.setdefault(key, len(numbers))
            before = text[last:start]
            pieces += [before, _placeholder(number, "".join(pieces) + before)]
            names.add(_placeholder_name(number).replace("{", "").replace("}", ""))
            last = end
        pieces.append(text[last:])
        renamed.append("".join(pieces))
        used.append(frozenset(names))
    return Renamed(renamed, used)


def placeholder_names(free_symbol_names: set[str]) -> set[str]:
    """The parser's symbol names in the spelling of :func:`with_placeholders` (``x_{10}`` is
    named ``x_{10}``, ``x_{1}`` is named ``x_1``)."""
    return {name.replace("{", "").replace("}", "") for name in free_symbol_names}
