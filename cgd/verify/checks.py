"""Verifier kinds, verdicts, the cheap checks (:func:`fast_check`) and :func:`check`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, NamedTuple

from cgd.answers import (
    extract_choice,
    extract_final_answer,
    extract_marked_answer,
    reference_answer,
)
from cgd.enums import Verifier
from cgd.verify.code import code_value, to_latex
from cgd.verify.evaluate import (
    _COLLECTION_RE,
    _MAX_MAGNITUDE,
    _constants_close,
    _evaluated_decision,
    constant_value,
)
from cgd.verify.normalize import (
    _SPACING_RE,
    _TEXT_WRAP_RE,
    _has_percent,
    _numbers_equal,
    normalize_answer,
    parse_number,
    strip_unit,
)
from cgd.verify.symbols import placeholder_names, with_placeholders

logger = logging.getLogger("cgd.verify")

KINDS: tuple[str, ...] = tuple(Verifier)
# Test-only kinds, honoured by a pool created with enable_test_kinds=True: `_sleep` sleeps
# float(response) seconds (interruptible: exercises the soft timer), `_hang` blocks SIGALRM and
# sleeps (exercises the parent's hard kill).
TEST_KINDS: tuple[str, ...] = ("_sleep", "_hang")

# Verdict.reason values. Failures/unknowns: no_reference, no_answer, timeout, worker_died, error,
# unparsed, unverified (kind "none"). Decisions name the path that made them.
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
# math-verify could not read one of the answers whole, with every symbol kept: undecided, since
# grading a fragment could call a wrong answer right (cgd.verify.symbols).
REASON_UNPARSED = "unparsed"


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


_PROSE_RE = re.compile(r"^[A-Za-z0-9(),.;:'!?-]+$")  # a normalised answer in words (no spaces)
_Value = tuple[Fraction | complex, bool]  # (value, written as/with a decimal: approximate)


def _value_of(normalized: str) -> _Value | None:
    """The value of a normalised answer that is a number, a code expression or a constant."""
    number = parse_number(normalized)
    if number is not None:
        return number
    code = code_value(normalized)
    if code is not None:
        value, approximate = code
        return (value if isinstance(value, Fraction) else complex(value)), approximate
    constant = constant_value(normalized)
    if constant is not None:
        return constant, "." in normalized
    return None


def _values_equal(a: _Value, b: _Value) -> bool | None:
    """Whether two values are equal (numbers: exact or decimal tolerance; others: see
    _constants_close). None when floats cannot tell (large values written exactly)."""
    (x, x_approx), (y, y_approx) = a, b
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return _numbers_equal((x, x_approx), (y, y_approx))
    approximate = x_approx or y_approx
    try:
        cx, cy = complex(x), complex(y)
    except OverflowError:
        return None
    if not approximate and max(abs(cx), abs(cy)) > _MAX_MAGNITUDE:
        return None  # float noise could blur exact values 1 apart: let math-verify decide
    return _constants_close(cx, cy, approximate)


def _percent_decision(pred: _Value, gold: _Value, pred_pct: bool, gold_pct: bool) -> bool | None:
    """The percent rule: "X%" equals X and X/100 (both readings are common); two percentages,
    or two plain numbers, compare as they are."""
    if pred_pct == gold_pct:
        return _values_equal(pred, gold)
    percent, other = (pred, gold) if pred_pct else (gold, pred)
    as_written = _values_equal(percent, other)
    if as_written:
        return True
    value, approximate = percent
    as_fraction = (value / 100, approximate)
    as_ratio = _values_equal(as_fraction, other)
    if as_ratio:
        return True
    return None if as_written is None or as_ratio is None else False


def _math_fast(extracted: str, gold: str) -> tuple[bool, str] | None:
    """(correct, reason) when the cheap checks decide, None when math-verify must."""
    norm_pred, norm_gold = normalize_answer(extracted), normalize_answer(gold)
    pred_pct, gold_pct = _has_percent(extracted), _has_percent(gold)
    if norm_pred == norm_gold and norm_pred and pred_pct == gold_pct:
        return True, REASON_STRING
    # Words in \\text{} are prose ("\\text{Evelyn}"): case does not matter there, as in
    # math-verify; in mathematics "X" and "x" are different variables, and so are "k_{\\mathrm{B}}T"
    # and "k_{\\mathrm{B}}t", hence prose only (no subscript, power or macro left).
    if (
        _TEXT_WRAP_RE.search(extracted + gold)
        and _PROSE_RE.match(norm_pred)
        and _PROSE_RE.match(norm_gold)
        and norm_pred.casefold() == norm_gold.casefold()
    ):
        return True, REASON_STRING
    pred_num, gold_num = parse_number(norm_pred), parse_number(norm_gold)
    if pred_pct or gold_pct:
        pred_value, gold_value = _value_of(norm_pred), _value_of(norm_gold)
        if pred_value is None or gold_value is None:
            return None
        decided = _percent_decision(pred_value, gold_value, pred_pct, gold_pct)
        return None if decided is None else (decided, REASON_NUMERIC)
    if pred_num is not None and gold_num is not None:
        return _numbers_equal(pred_num, gold_num), REASON_NUMERIC
    # Numbers, code ("np.arcsin(10/13)", "-1./3") and constants ("3\\sqrt{13}") by value.
    pred_value, gold_value = _value_of(norm_pred), _value_of(norm_gold)
    if pred_value is not None and gold_value is not None:
        equal = _values_equal(pred_value, gold_value)
        return None if equal is None else (equal, REASON_EVALUATED)
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


def for_math_verify(answer: str) -> str:
    """What math-verify is given for a final answer: the answer without a unit after its value,
    with plain-text scientific notation and code spellings rewritten as LaTeX (math-verify
    reads "4.5e33" as 4.5·e·33 and "np.arcsin" as a product of variables)."""
    spaced = _SPACING_RE.sub(" ", answer).strip()
    without_unit = strip_unit(spaced)
    return to_latex(without_unit if without_unit != spaced else answer)


@functools.lru_cache(maxsize=256)
def _parse_whole(latex: str, placeholders: frozenset[str]) -> Any | None:
    """The sympy reading of the whole of ``latex`` (placeholders in), or None when the parser
    cannot read all of it, drops a placeholder or misreads a part as infinite or undefined.

    math-verify's ``parse`` would instead fall back to any fragment it can read (for
    ``\\frac{4}{3} E_{1}+\\frac{2}{3} E_{2}`` the fragment ``2/3``), and a fragment of a wrong
    answer can equal the same fragment of the right one.
    """
    import sympy
    from math_verify.grader import should_treat_as_complex
    from math_verify.parser import LatexExtractionConfig, latex2sympy, normalize_latex

    # What math-verify does with a \boxed{} group, less its fragment fallbacks and its unit
    # removal, which drops a trailing "h", "m", "s" or "t" whatever it is (a unit after the
    # answer is gone already, see cgd.verify.symbols).
    config = dataclasses.replace(
        LatexExtractionConfig().normalization_config, boxed="last", units=False
    )
    normalized = normalize_latex("\\boxed{" + latex + "}", config=config)
    try:
        parsed = latex2sympy(
            normalized,
            is_real=not should_treat_as_complex(normalized),
            convert_degrees=False,
            normalization_config=None,
        )
    except Exception:  # the parser's errors are all plain Exceptions: "cannot read it whole"
        return None
    if not isinstance(parsed, sympy.Basic | sympy.MatrixBase):
        return None
    names = placeholder_names({str(symbol) for symbol in parsed.free_symbols})
    if not placeholders <= names:
        return None
    if parsed.has(sympy.zoo, sympy.nan) and "\\infty" not in latex:
        return None
    return parsed


def _math_verify_equal(extracted: str, gold: str) -> bool | None:
    """Whether math-verify finds the two answers equal, each read whole with every symbol kept
    (see cgd.verify.symbols); None when either cannot be read whole."""
    _, verify = _load_math_verify()
    # The gold is numbered first, so that its renamed text, and its cached parse, is the same
    # whatever the response (many responses are graded against one reference).
    renamed = with_placeholders([for_math_verify(gold), for_math_verify(extracted)])
    gold_parsed = _parse_whole(renamed.texts[0], renamed.placeholders[0])
    pred_parsed = _parse_whole(renamed.texts[1], renamed.placeholders[1])
    if pred_parsed is None or gold_parsed is None:
        return None
    return bool(verify([gold_parsed], [pred_parsed], timeout_seconds=None))


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
            equal = _math_verify_equal(job.extracted, job.reference)
            return equal, (REASON_MATH_VERIFY if equal is not None else REASON_UNPARSED)
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
