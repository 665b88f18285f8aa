"""Answer verifiers (``math``, ``choice``, ``exact``, ``none``) and a process pool for math-verify.

Grading follows docs/METHOD.md (Evaluation): the response's final answer (last ``\\boxed{}``,
then fallbacks, see :mod:`cgd.answers`) is compared with the reference's final answer by
symbolic/numeric equivalence, numbers with a relative tolerance of 1e-4.

``math`` runs cheap, pure checks first in the caller: normalised string equality, numeric
equality, and a small evaluator for constant expressions (surds, pi, fractions, complex numbers)
that also proves polynomial-like expressions different by evaluating them at sample points.
Only what they cannot decide goes to math-verify (tests check that they agree with it on
MATH-500 pairs). math-verify's own timeouts use ``signal.alarm``, which only works in a
process's main thread (docs/RELIABILITY.md), and some sympy operations can run for minutes
inside C code where no signal gets through. So:

* :func:`check` is the pure, single-process entry point; it refuses to run math-verify outside
  the main thread.
* :class:`VerifierPool` runs math-verify in ``spawn``-ed worker processes, each item under a soft
  per-item timer in the worker and a hard deadline in the parent, which kills and replaces a
  stuck worker. It may be used from any thread and from asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, NamedTuple

from cgd.answers import (
    extract_choice,
    extract_final_answer,
    extract_marked_answer,
    reference_answer,
)

__all__ = [
    "KINDS",
    "Verdict",
    "VerifierPool",
    "TEST_KINDS",
    "check",
    "constant_value",
    "fast_check",
    "normalize_answer",
    "parse_number",
]

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("math", "choice", "exact", "none")
# Test-only kinds, honoured by a pool created with enable_test_kinds=True: `_sleep` sleeps
# float(response) seconds (interruptible: exercises the soft timer), `_hang` blocks SIGALRM and
# sleeps (exercises the parent's hard kill).
TEST_KINDS: tuple[str, ...] = ("_sleep", "_hang")

RELATIVE_TOLERANCE = 1e-4
_TOLERANCE = Fraction(1, 10_000)  # the same, exact

# Verdict.reason values. Failures/unknowns: no_reference, no_answer, timeout, worker_died, error,
# unverified (kind "none"). Decisions name the path that made them.
REASON_NO_REFERENCE = "no_reference"
REASON_NO_ANSWER = "no_answer"
REASON_TIMEOUT = "timeout"
REASON_WORKER_DIED = "worker_died"
REASON_ERROR = "error"
REASON_UNVERIFIED = "unverified"
REASON_STRING = "string_match"
REASON_NUMERIC = "numeric"
REASON_EVALUATED = "evaluated"  # decided by the expression evaluator (see constant_value)
REASON_MATH_VERIFY = "math_verify"
REASON_CHOICE = "choice"
REASON_EXACT = "exact"


class Verdict(NamedTuple):
    """Outcome of one verification. ``correct`` is None when it could not be decided."""

    correct: bool | None
    extracted: str | None
    reference: str | None
    reason: str | None = None


class _MathJob(NamedTuple):
    """What the math-verify stage needs: the two final-answer strings (or a test kind's args)."""

    kind: str
    extracted: str
    reference: str


# --------------------------------------------------------------------------------------------
# Normalisation and the numeric fast path (pure, no sympy)
# --------------------------------------------------------------------------------------------

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


# -- constant expressions: a tiny evaluator for what most non-numeric answers are ------------------
#
# Surds, pi, fractions and complex numbers ("3\\sqrt{13}", "-\\frac{\\pi}{6}", "6-5i") are the
# bulk of what numbers cannot decide, and math-verify spends ~10-50 ms parsing each with ANTLR.
# A constant evaluates to a complex float here. The same evaluator, given sample values for
# letters, shows that "x^2+1" is not 5 and not "x^2+2" (they differ at the sample point); that
# two expressions agree there proves nothing, so that is left to math-verify.
# Anything it does not know (functions, relations, subscripts, ambiguous spellings) makes it
# give up and leaves the pair to math-verify.

_TOKEN_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+|\\[A-Za-z]+|[-+*/^(){}\[\]]|[A-Za-z]")
# Beyond this, float noise (relative 1e-12) could blur integers 1 apart: let math-verify decide.
_MAX_MAGNITUDE = 1e10
# Two exact spellings ("\\sqrt{2}", "\\frac{99}{70}") may differ by little more than float noise;
# the METHOD's 1e-4 tolerance is for answers written as decimals (approximations).
_EXACT_TOLERANCE = 1e-12
# "Is this expression in x really not the constant c?" must survive float noise in identities
# such as (x+1)^2-x^2-2x, hence a looser bound; genuinely varying values differ far more.
_VARIES_TOLERANCE = 1e-9
_MULTIPLY = {"*", "\\cdot", "\\times"}
_ATOM_START = {"\\pi", "\\sqrt", "\\frac", "(", "{", "i"}
_COLLECTION_RE = re.compile(r"[,;]|\\cup|\\cap|\\begin\{|^\\\{")


class _NotConstant(Exception):
    """The expression is not one this evaluator understands."""


class _ConstParser:
    """Recursive descent over LaTeX tokens: + - * / ^, \\cdot, \\times, \\frac, \\sqrt, \\pi,
    i, parentheses/braces, implicit multiplication, and letters bound in ``variables``."""

    def __init__(self, tokens: list[str], variables: dict[str, complex] | None = None) -> None:
        self.tokens = list(tokens)  # argument() may split a token: never touch the caller's
        self.variables = variables or {}
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _NotConstant(f"expected {expected!r}, got {token!r}")
        self.pos += 1
        return token

    def parse(self) -> complex:
        value = self.expr()
        if self.peek() is not None:
            raise _NotConstant(f"trailing {self.peek()!r}")
        return value

    def expr(self) -> complex:
        value = self.unary()
        while self.peek() in ("+", "-"):
            op = self.take()
            value = _guard(value + self.unary() if op == "+" else value - self.unary())
        return value

    def unary(self) -> complex:
        if self.peek() in ("+", "-"):
            sign = -1 if self.take() == "-" else 1
            return sign * self.unary()
        return self.term()

    def starts_atom(self, token: str | None) -> bool:
        return token is not None and (
            _is_number(token) or token in _ATOM_START or token in self.variables
        )

    def term(self) -> complex:
        last_was_number = _is_number(self.peek())
        value = self.power()
        while True:
            token = self.peek()
            if token in _MULTIPLY:
                self.take()
                value = _guard(value * self.power())
            elif token == "/":
                self.take()
                value = _guard(value / self.power())
            elif self.starts_atom(token):
                if last_was_number and (token == "\\frac" or _is_number(token)):
                    # "1\\frac{4}{5}" is a mixed number (9/5) to some, a product to others.
                    raise _NotConstant("ambiguous number juxtaposition")
                value = _guard(value * self.power())
            else:
                return value
            last_was_number = False

    def power(self) -> complex:
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        token = self.peek()
        if token == "{":
            exponent = self.group()
        elif token is not None and (
            (_is_number(token) and len(token) == 1) or token in self.variables
        ):
            exponent = self.atom()
        else:
            raise _NotConstant("unbraced exponent")  # "2^10" means 2^1 * 0 in LaTeX
        if abs(exponent) > 64:
            raise _NotConstant("exponent too large")
        if base == 0 and exponent.real <= 0:
            raise _NotConstant("0 to a non-positive power")
        return _guard(base**exponent)

    def atom(self) -> complex:
        token = self.take()
        if _is_number(token):
            return _guard(complex(float(token)))
        if token == "\\pi":
            return complex(math.pi)
        if token == "i":
            return 1j
        if token in self.variables:
            return self.variables[token]
        if token in ("(", "{"):
            value = self.expr()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            numerator = self.argument()
            denominator = self.argument()
            if denominator == 0:
                raise _NotConstant("division by zero")
            return _guard(numerator / denominator)
        if token == "\\sqrt":
            return self.sqrt()
        raise _NotConstant(f"unsupported {token!r}")

    def sqrt(self) -> complex:
        index = 2.0
        if self.peek() == "[":
            self.take()
            index = self.expr().real
            self.take("]")
        radicand = self.argument()
        if radicand.imag == 0 and radicand.real >= 0:
            return complex(radicand.real ** (1 / index))
        if index == 2 and radicand.imag == 0:
            return 1j * math.sqrt(-radicand.real)
        raise _NotConstant("root of a negative or complex number")  # real vs principal root

    def argument(self) -> complex:
        """A macro argument: a braced group, or one character ("\\frac12", "\\sqrt2")."""
        token = self.peek()
        if token == "{":
            return self.group()
        if token is not None and _is_number(token):
            self.pos += 1
            if len(token) > 1:  # "\\frac12": the argument is "1", "2" is the next one
                self.tokens.insert(self.pos, token[1:])
            return complex(float(token[0]))
        if token in ("\\pi", "i") or token in self.variables:
            return self.atom()
        raise _NotConstant("unsupported macro argument")

    def group(self) -> complex:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value


def _is_number(token: str | None) -> bool:
    return token is not None and (token[0].isdigit() or token[0] == ".")


def _guard(value: complex) -> complex:
    if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(value) > _MAX_MAGNITUDE:
        raise _NotConstant("too large for a float comparison")
    return value


def _tokens(normalized: str) -> list[str] | None:
    tokens = _TOKEN_RE.findall(normalized)
    # Characters the tokenizer does not know ("=", ",", "_", "!", "|", ...) mean: not for us.
    return tokens if tokens and "".join(tokens) == normalized else None


def _evaluate(tokens: list[str], variables: dict[str, complex] | None = None) -> complex | None:
    try:
        return _ConstParser(tokens, variables).parse()
    except (_NotConstant, ZeroDivisionError, OverflowError, ValueError):
        return None


def constant_value(normalized: str) -> complex | None:
    """Value of a normalised constant ("3\\sqrt{13}", "\\frac{\\pi}{6}", "1+2i"), else None."""
    tokens = _tokens(normalized)
    return None if tokens is None else _evaluate(tokens)


def _sample_value(letter: str, point: int) -> complex:
    """A generic, deterministic value for a variable (golden-ratio spacing, in [0.3, 1.7])."""
    return complex(0.3 + ((ord(letter) * 0.6180339887498949 * point) % 1.0) * 1.4)


def _differ_somewhere(norm_a: str, norm_b: str) -> bool:
    """True when two expressions are shown to differ: at some sample point of their letters
    they take different values. False means "cannot tell" (unknown syntax, or equal there)."""
    tokens_a, tokens_b = _tokens(norm_a), _tokens(norm_b)
    if tokens_a is None or tokens_b is None:
        return False
    letters = {t for t in tokens_a + tokens_b if len(t) == 1 and t.isalpha() and t != "i"}
    if not letters - {"e"}:
        return False  # no letter but e, which may well be Euler's number: math-verify decides
    for point in (1, 2):
        # e as Euler's number: values that still differ differ under either reading of e.
        variables = {x: (complex(math.e) if x == "e" else _sample_value(x, point)) for x in letters}
        a, b = _evaluate(tokens_a, variables), _evaluate(tokens_b, variables)
        if a is None or b is None:
            return False
        if abs(a - b) > _VARIES_TOLERANCE * max(abs(a), abs(b), 1.0):
            return True
    return False


def _constants_close(a: complex, b: complex, approximate: bool) -> bool:
    tolerance = RELATIVE_TOLERANCE if approximate else _EXACT_TOLERANCE
    return abs(a - b) <= max(tolerance * max(abs(a), abs(b)), 1e-12)


def _evaluated_decision(norm_pred: str, norm_gold: str) -> bool | None:
    """Decide by evaluation: equal constants, or expressions that differ somewhere (only
    "different" is certain for expressions in variables). None when math-verify must."""
    pred, gold = constant_value(norm_pred), constant_value(norm_gold)
    if pred is not None and gold is not None:
        return _constants_close(pred, gold, approximate="." in norm_pred + norm_gold)
    if pred is not None or gold is not None:
        other = norm_gold if pred is not None else norm_pred
        if _COLLECTION_RE.search(other):
            return False  # a constant is no tuple/interval/set/matrix/list
    if _differ_somewhere(norm_pred, norm_gold):
        return False
    return None


def _math_fast(extracted: str, gold: str) -> tuple[bool, str] | None:
    """(correct, reason) when the cheap checks decide, None when math-verify must."""
    norm_pred, norm_gold = normalize_answer(extracted), normalize_answer(gold)
    if norm_pred == norm_gold and norm_pred:
        return True, REASON_STRING
    # Words in \\text{} are prose ("\\text{Evelyn}"): case does not matter there, as in
    # math-verify; outside \\text{}, "X" and "x" are different variables.
    if _TEXT_WRAP_RE.search(extracted + gold) and norm_pred.casefold() == norm_gold.casefold():
        return True, REASON_STRING
    # "15%" vs "0.15" is a question of convention math-verify knows better; skip numbers then.
    if _has_percent(extracted) or _has_percent(gold):
        return None
    pred_num, gold_num = parse_number(norm_pred), parse_number(norm_gold)
    if pred_num is not None and gold_num is not None:
        return _numbers_equal(pred_num, gold_num), REASON_NUMERIC
    if pred_num is not None or gold_num is not None:
        other = norm_gold if pred_num is not None else norm_pred
        if _COLLECTION_RE.search(other):  # a number is no tuple/interval/set/matrix/list
            return False, REASON_NUMERIC
    decided = _evaluated_decision(norm_pred, norm_gold)
    return None if decided is None else (decided, REASON_EVALUATED)


def _normalize_exact(s: str) -> str:
    # "exact" is string equality up to surrounding whitespace, inner runs of whitespace and case.
    return " ".join(s.split()).casefold()


def _choice_reference(reference: str) -> str | None:
    text = reference.strip()
    if len(text) == 1 and text.upper() in "ABCDEFGHIJ":
        return text.upper()
    return extract_choice(text)


def _prepare(kind: str, response: str | None, reference: Any) -> Verdict | _MathJob:
    """Run everything but math-verify: a final Verdict, or the job math-verify must decide."""
    if kind not in KINDS:
        raise ValueError(f"unknown verifier kind {kind!r}; expected one of {KINDS}")
    response = response or ""
    if kind == "none":
        return Verdict(None, extract_final_answer(response), _as_text(reference), REASON_UNVERIFIED)
    if kind == "choice":
        return _check_choice(response, reference)
    if kind == "exact":
        return _check_exact(response, reference)
    gold = reference_answer(reference)
    extracted = extract_final_answer(response)
    if gold is None:
        return Verdict(None, extracted, None, REASON_NO_REFERENCE)
    if extracted is None:
        return Verdict(False, None, gold, REASON_NO_ANSWER)
    decided = _math_fast(extracted, gold)
    if decided is not None:
        return Verdict(decided[0], extracted, gold, decided[1])
    return _MathJob("math", extracted, gold)


def _as_text(reference: Any) -> str | None:
    if reference is None:
        return None
    text = str(reference).strip()
    return text or None


def _check_choice(response: str, reference: Any) -> Verdict:
    ref_text = _as_text(reference)
    gold = _choice_reference(ref_text) if ref_text else None
    extracted = extract_choice(response)
    if gold is None:
        return Verdict(None, extracted, ref_text, REASON_NO_REFERENCE)
    if extracted is None:
        return Verdict(False, None, gold, REASON_NO_ANSWER)
    return Verdict(extracted == gold, extracted, gold, REASON_CHOICE)


def _check_exact(response: str, reference: Any) -> Verdict:
    gold = _as_text(reference)
    # A marked answer if there is one, else the whole response: "exact" tasks often answer bare.
    extracted = extract_marked_answer(response) or (response.strip() or None)
    if gold is None:
        return Verdict(None, extracted, None, REASON_NO_REFERENCE)
    if extracted is None:
        return Verdict(False, None, gold, REASON_NO_ANSWER)
    return Verdict(_normalize_exact(extracted) == _normalize_exact(gold), extracted, gold, "exact")


def fast_check(kind: str, response_text: str | None, reference: Any) -> Verdict | None:
    """The Verdict when the cheap, signal-free checks decide; None when math-verify must.

    Safe in any thread. Raises ValueError for an unknown kind.
    """
    prepared = _prepare(kind, response_text, reference)
    return prepared if isinstance(prepared, Verdict) else None


# --------------------------------------------------------------------------------------------
# math-verify stage (runs in a process's main thread only)
# --------------------------------------------------------------------------------------------


class _SoftTimeout(BaseException):
    """Raised by our SIGALRM timer. A BaseException so that math-verify's and sympy's broad
    ``except Exception`` handlers cannot swallow it (math-verify would turn it into False)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _SoftTimeout in this (main) thread after ``seconds`` of wall time.

    A timer already armed by the host (pytest-timeout, a supervisor) is re-armed afterwards
    with its remaining time, so borrowing SIGALRM does not cancel it.
    """

    def _on_alarm(signum: int, frame: Any) -> None:
        raise _SoftTimeout()

    started = time.monotonic()
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_delay > 0:
            remaining = outer_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001), outer_interval)


def _load_math_verify() -> tuple[Any, Any]:
    """Import math-verify with its own signal timeouts disabled (we time the whole item)."""
    import math_verify
    import math_verify.grader
    import math_verify.parser

    # We pass timeout=None on purpose; skip its once-per-process "timeout disabled" warning.
    for module in (math_verify.grader, math_verify.parser):
        if hasattr(module, "TIMEOUT_WARNING_SHOWN"):
            module.TIMEOUT_WARNING_SHOWN = True
    return math_verify.parse, math_verify.verify


def _math_verify_equal(extracted: str, gold: str) -> bool:
    parse, verify = _load_math_verify()
    # Both strings are already final answers; boxing them makes math-verify's extractor take
    # them whole instead of hunting for an expression inside.
    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
    pred_parsed = parse("\\boxed{" + extracted + "}", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _run_test_kind(job: _MathJob) -> bool:
    if job.kind == "_hang":
        # Block the soft timer's signal so only the parent's hard kill can end this.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(float(job.extracted))
    return True


def _run_job(
    job: _MathJob, budget_s: float, enable_test_kinds: bool = False
) -> tuple[bool | None, str]:
    """(correct, reason) for a math-verify job, under a soft wall-clock budget."""
    try:
        with _time_limit(budget_s):
            if job.kind in TEST_KINDS and enable_test_kinds:
                return _run_test_kind(job), REASON_MATH_VERIFY
            return _math_verify_equal(job.extracted, job.reference), REASON_MATH_VERIFY
    except _SoftTimeout:
        return None, REASON_TIMEOUT
    except Exception:  # math-verify swallows its own errors; anything else is a bug to log
        logger.exception("math-verify failed on %r vs %r", job.extracted, job.reference)
        return None, REASON_ERROR


def _require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "math-verify needs a process's main thread (signal.alarm); use VerifierPool "
            "from other threads"
        )


def check(
    kind: str, response_text: str | None, reference: Any, *, timeout_s: float = 5.0
) -> Verdict:
    """Verify ``response_text`` against ``reference`` in this process.

    Cheap checks run anywhere; when math-verify is needed this must be the main thread
    (RuntimeError otherwise, use :class:`VerifierPool`). ``timeout_s`` is a soft, signal-based
    limit: it cannot interrupt C code, which only a pool's hard timeout can.
    """
    prepared = _prepare(kind, response_text, reference)
    if isinstance(prepared, Verdict):
        return prepared
    _require_main_thread()
    correct, reason = _run_job(prepared, timeout_s)
    return Verdict(correct, prepared.extracted, prepared.reference, reason)


# --------------------------------------------------------------------------------------------
# Worker process
# --------------------------------------------------------------------------------------------

# One answer of each common shape. ANTLR's parser builds its prediction (DFA) cache lazily, so a
# cold worker parses ~2x slower; paying ~1 s of CPU once per worker start is worth it.
_WARM_UP_ANSWERS = (
    r"\frac{1}{2}",
    r"(x+1)^2",
    r"x^3 - 2x^2 + 5",
    r"\left( 2, \frac{\pi}{3} \right)",
    r"[-1, 4)",
    r"(-\infty, 2) \cup (3, \infty)",
    r"\{1, -2\}",
    r"3, 5",
    r"y = 2x - 1",
    r"\begin{pmatrix} 1 \\ -2 \end{pmatrix}",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
    r"2\sqrt{3} + 1",
    r"\sin x",
    r"\text{yes}",
    r"12_3",
    r"3 \pm \sqrt{2}",
    r"\frac{a+b}{2}",
    r"-\frac{\sqrt{5}}{5}",
    r"1 - 2i",
    r"x \in [0, 1]",
    r"10^\circ",
    r"p^2 q",
)


def _warm_up() -> None:
    """Parse and compare one answer of each shape (see _WARM_UP_ANSWERS)."""
    started = time.monotonic()
    answers = _WARM_UP_ANSWERS
    for pred, gold in zip(answers, answers[1:] + answers[:1], strict=True):
        _run_job(_MathJob("math", pred, gold), 30.0)
    logger.debug("verifier worker warmed up in %.2fs", time.monotonic() - started)


_MSG_READY = "ready"
_MSG_RESULT = "result"


def _worker_main(
    conn: multiprocessing.connection.Connection, soft_timeout_s: float, enable_test_kinds: bool
) -> None:
    """Worker loop: receive a chunk of jobs, send one result per job, in order.

    One message per result lets the parent know which job is running (the one after the last
    result), so its hard deadline is per job, not per chunk.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _load_math_verify()
    _warm_up()
    conn.send((_MSG_READY,))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for job in chunk:
            correct, reason = _run_job(_MathJob(*job), soft_timeout_s, enable_test_kinds)
            conn.send((_MSG_RESULT, correct, reason))


# --------------------------------------------------------------------------------------------
# Parent side of the pool
# --------------------------------------------------------------------------------------------


class _Batch:
    """Results of one verify_many call; resolved by the dispatcher thread."""

    def __init__(self, size: int) -> None:
        self.results: list[Verdict | None] = [None] * size
        self.remaining = size
        self.future: concurrent.futures.Future[list[Verdict]] = concurrent.futures.Future()

    def resolve(self, index: int, verdict: Verdict) -> None:
        self.results[index] = verdict
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():  # done: cancelled by an awaiter
            self.future.set_result(list(self.results))  # type: ignore[arg-type]

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass
class _Task:
    batch: _Batch
    index: int
    job: _MathJob

    def resolve(self, correct: bool | None, reason: str) -> None:
        self.batch.resolve(
            index=self.index,
            verdict=Verdict(correct, self.job.extracted, self.job.reference, reason),
        )


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    ready: bool = False
    inflight: collections.deque[_Task] = field(default_factory=collections.deque)
    # When the job at the head of `inflight` started (as far as the parent can tell).
    job_started: float = 0.0


def _default_processes() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(2, cpus))


class VerifierPool:
    """Verifies answers; math-verify runs in worker processes under a hard per-item timeout.

    Cheap checks run inline in the caller; the rest is queued to ``processes`` workers (a
    ``spawn`` context by default, so a pool can be created from any thread, e.g. a Celery
    worker's). A job running longer than ``timeout_s`` gets ``Verdict(correct=None,
    reason="timeout")``: usually from the worker's own timer, and if that cannot fire (C code),
    the parent kills the worker and starts a replacement. Thread-safe; see :meth:`averify_many`
    for asyncio.
    """

    def __init__(
        self,
        processes: int | None = None,
        timeout_s: float = 5.0,
        *,
        chunk_size: int = 16,
        mp_context: str = "spawn",
        enable_test_kinds: bool = False,
        max_start_failures: int = 3,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.processes = processes or _default_processes()
        self.timeout_s = timeout_s
        # The worker's soft timer fires first so that normally nobody is killed; the parent's
        # deadline (timeout_s) is the backstop for code that ignores signals.
        self._soft_timeout_s = timeout_s * 0.8
        self._chunk_size = max(1, chunk_size)
        self._ctx = multiprocessing.get_context(mp_context)
        self._enable_test_kinds = enable_test_kinds
        self._max_start_failures = max_start_failures
        self._start_failures = 0
        self._inbox: collections.deque[list[_Task]] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._pending: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._closed = False  # close() was called
        self._accepting = True  # False once the dispatcher stops; guarded by _inbox_lock
        self._broken: BaseException | None = None
        self._all_ready = threading.Event()
        self.kills = 0  # workers killed for exceeding the hard timeout (for logs and tests)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        for _ in range(self.processes):
            self._workers.append(self._spawn())
        self._thread = threading.Thread(target=self._run, name="verifier-pool", daemon=True)
        self._thread.start()

    # -- public API ---------------------------------------------------------------------------

    def verify(self, kind: str, response: str | None, reference: Any) -> Verdict:
        """Verify one response (blocks until decided, at most about ``timeout_s`` of work)."""
        return self.verify_many([(kind, response, reference)])[0]

    def verify_many(self, items: Sequence[tuple[str, str | None, Any]]) -> list[Verdict]:
        """Verify many (kind, response, reference) items; results in input order."""
        return self._submit(items).result()

    async def averify_many(self, items: Sequence[tuple[str, str | None, Any]]) -> list[Verdict]:
        """Like :meth:`verify_many`, without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        if len(items) > 32:
            # The inline cheap checks are pure Python; keep long batches off the loop.
            future = await loop.run_in_executor(None, self._submit, items)
        else:
            future = self._submit(items)
        return await asyncio.wrap_future(future)

    async def averify(self, kind: str, response: str | None, reference: Any) -> Verdict:
        """Like :meth:`verify`, for asyncio."""
        return (await self.averify_many([(kind, response, reference)]))[0]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker has started (imports done); True if they have."""
        self._all_ready.wait(timeout)
        # The event is also set when the dispatcher stops, to release waiters promptly.
        return self._all_ready.is_set() and self._broken is None and not self._closed

    def worker_pids(self) -> list[int]:
        """PIDs of the current worker processes (for monitoring and benchmarks)."""
        return [w.process.pid for w in list(self._workers) if w.process.pid is not None]

    def close(self) -> None:
        """Stop the workers; unfinished submissions fail with RuntimeError."""
        if self._closed:
            return
        self._closed = True
        self._wake()
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- submission (caller threads) ----------------------------------------------------------

    def _submit(
        self, items: Sequence[tuple[str, str | None, Any]]
    ) -> concurrent.futures.Future[list[Verdict]]:
        if self._closed:
            raise RuntimeError("VerifierPool is closed")
        batch = _Batch(len(items))
        tasks: list[_Task] = []
        for index, (kind, response, reference) in enumerate(items):
            prepared = self._prepare(kind, response, reference)
            if isinstance(prepared, Verdict):
                batch.resolve(index, prepared)
            else:
                tasks.append(_Task(batch, index, prepared))
        if len(items) == 0:
            batch.future.set_result([])
        if tasks:
            with self._inbox_lock:
                accepted = self._accepting
                if accepted:
                    self._inbox.append(tasks)
            if not accepted:
                batch.fail(self._stopped_error())
            else:
                self._wake()
        return batch.future

    def _stopped_error(self) -> RuntimeError:
        if self._broken is not None:
            return RuntimeError(f"VerifierPool is broken: {self._broken!r}")
        return RuntimeError("VerifierPool is closed")

    def _prepare(self, kind: str, response: str | None, reference: Any) -> Verdict | _MathJob:
        if kind in TEST_KINDS and self._enable_test_kinds:
            return _MathJob(kind, str(response), str(reference))
        return _prepare(kind, response, reference)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # full pipe: a wake-up is pending
            os.write(self._wake_w, b"x")

    # -- dispatcher thread --------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(child_conn, self._soft_timeout_s, self._enable_test_kinds),
            name="cgd-verifier",
            daemon=True,  # never outlive the parent
        )
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn)

    def _run(self) -> None:
        try:
            while not self._closed:
                self._take_inbox()
                self._assign()
                self._wait_and_handle()
                self._enforce_deadlines()
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            logger.exception("verifier pool dispatcher crashed")
            self._broken = exc
        finally:
            self._shutdown()

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            while self._inbox:
                self._pending.extend(self._inbox.popleft())

    def _assign(self) -> None:
        idle = [w for w in self._workers if w.ready and not w.inflight]
        for position, worker in enumerate(idle):
            # Drop jobs nobody waits for any more (an awaiting coroutine was cancelled).
            while self._pending and self._pending[0].batch.future.done():
                self._pending.popleft()
            if not self._pending:
                return
            # Spread what is pending over the idle workers, in chunks to amortise IPC.
            share = math.ceil(len(self._pending) / (len(idle) - position))
            size = min(self._chunk_size, max(1, share))
            chunk = [self._pending.popleft() for _ in range(min(size, len(self._pending)))]
            self._send(worker, chunk)

    def _send(self, worker: _Worker, chunk: list[_Task]) -> None:
        worker.inflight.extend(chunk)
        worker.job_started = time.monotonic()
        try:
            worker.conn.send([tuple(task.job) for task in chunk])
        except OSError:  # it died while idle: nothing of the chunk ran, so requeue it all
            logger.error("verifier worker pid %s is gone; replacing it", worker.process.pid)
            self._replace(worker)

    def _next_wait(self) -> float | None:
        busy = [w.job_started for w in self._workers if w.inflight]
        if not busy:
            return None
        return max(0.0, min(busy) + self.timeout_s - time.monotonic())

    def _wait_and_handle(self) -> None:
        by_conn = {w.conn: w for w in self._workers}
        by_sentinel = {w.process.sentinel: w for w in self._workers}
        waitables: list[Any] = [self._wake_r, *by_conn, *by_sentinel]
        for ready in multiprocessing.connection.wait(waitables, timeout=self._next_wait()):
            if ready == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            elif ready in by_conn:
                self._drain(by_conn[ready])
            elif ready in by_sentinel and by_sentinel[ready] in self._workers:
                worker = by_sentinel[ready]
                self._drain(worker)
                if worker in self._workers:
                    self._on_worker_death(worker)

    def _drain(self, worker: _Worker) -> None:
        """Handle every message the worker has sent so far."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                self._on_message(worker, message)
        except (EOFError, OSError):
            if worker in self._workers:
                self._on_worker_death(worker)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        if message[0] == _MSG_READY:
            worker.ready = True
            self._start_failures = 0
            if all(w.ready for w in self._workers):
                self._all_ready.set()
            return
        _, correct, reason = message
        task = worker.inflight.popleft()
        task.resolve(correct, reason)
        worker.job_started = time.monotonic()  # the next job in the chunk starts now

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if not worker.inflight or now - worker.job_started < self.timeout_s:
                continue
            self._drain(worker)  # results may be waiting unread: never kill a finished job
            if worker not in self._workers or not worker.inflight:
                continue
            if time.monotonic() - worker.job_started >= self.timeout_s:
                self._kill_stuck(worker)

    def _kill_stuck(self, worker: _Worker) -> None:
        stuck = worker.inflight.popleft()
        logger.warning(
            "verification exceeded %.1fs hard timeout; killing worker pid %s (%r vs %r)",
            self.timeout_s,
            worker.process.pid,
            stuck.job.extracted[:80],
            stuck.job.reference[:80],
        )
        self.kills += 1
        stuck.resolve(None, REASON_TIMEOUT)
        self._replace(worker)

    def _on_worker_death(self, worker: _Worker) -> None:
        if not worker.ready:
            self._start_failures += 1
            logger.error("verifier worker pid %s died during start-up", worker.process.pid)
        if worker.inflight:
            crashed = worker.inflight.popleft()
            logger.error(
                "verifier worker pid %s died on %r", worker.process.pid, crashed.job.extracted[:80]
            )
            crashed.resolve(None, REASON_WORKER_DIED)
        if self._start_failures >= self._max_start_failures:
            raise RuntimeError(f"verifier workers failed to start {self._start_failures} times")
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill ``worker``, requeue its unstarted jobs first in line, start a new worker."""
        self._workers.remove(worker)
        self._pending.extendleft(reversed(worker.inflight))
        worker.inflight.clear()
        self._stop_process(worker, graceful=False)
        self._all_ready.clear()
        self._workers.append(self._spawn())

    @staticmethod
    def _stop_process(worker: _Worker, *, graceful: bool) -> None:
        # A worker still importing would only read the stop message once ready: kill it.
        if graceful and worker.ready:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
            worker.process.join(timeout=1.0)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5.0)
        worker.conn.close()

    def _shutdown(self) -> None:
        with self._inbox_lock:
            self._accepting = False
        self._take_inbox()
        error = self._stopped_error()
        for worker in self._workers:
            for task in worker.inflight:
                task.batch.fail(error)
        for task in self._pending:
            task.batch.fail(error)
        self._pending.clear()
        for worker in self._workers:
            self._stop_process(worker, graceful=True)
        self._workers.clear()
        self._all_ready.set()
