"""Verifiers: real references self-check/cross-check, unit cases, the pool's hard timeout,
threads and asyncio."""

from __future__ import annotations

import asyncio
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from fractions import Fraction

import pytest

from cgd.answers import extract_boxed, reference_answer
from cgd.verify import (
    REASON_NO_ANSWER,
    REASON_NO_REFERENCE,
    REASON_TIMEOUT,
    Verdict,
    VerifierPool,
    _MathJob,
    _run_job,
    check,
    constant_value,
    fast_check,
    normalize_answer,
    parse_number,
)
from tests.conftest import data_rows

_rows = data_rows


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    with VerifierPool(processes=2, timeout_s=10.0) as p:
        assert p.wait_ready(60)
        yield p


# -- real references -------------------------------------------------------------------------


def _value_key(answer: str) -> object:
    """What a final answer denotes, coarsely: used only to pick a genuinely different reference.

    "x=5" names 5, "1,-2" and "-2,1" are the same set of solutions, and numbers compare by value.
    """
    norm = re.sub(r"^[a-zA-Z]=", "", normalize_answer(answer))
    number = parse_number(norm)
    if number is not None:
        return number[0]
    if not re.search(r"[()\[\]{}]", norm):
        return tuple(sorted(norm.split(",")))
    return norm


def _wrong_partner(finals: list[str], i: int) -> str:
    """The next reference (cyclically) whose final answer differs in string and in value."""
    key = _value_key(finals[i])
    for step in range(1, len(finals)):
        other = finals[(i + step) % len(finals)]
        if normalize_answer(other) != normalize_answer(finals[i]) and _value_key(other) != key:
            return other
    raise AssertionError("all references are equal")


def _self_and_cross(pool: VerifierPool, references: list[str | float]) -> None:
    finals = [reference_answer(r) for r in references]
    assert all(f is not None for f in finals)
    right = [
        ("math", f"Reasoning...\nSo the answer is \\boxed{{{f}}}.", r)
        for f, r in zip(finals, references, strict=True)
    ]
    wrong = [
        ("math", f"Reasoning...\n\\boxed{{{_wrong_partner(finals, i)}}}", r)  # type: ignore[arg-type]
        for i, r in enumerate(references)
    ]
    verdicts = pool.verify_many(right + wrong)
    self_fail = [(v.extracted, v.reason) for v in verdicts[: len(right)] if v.correct is not True]
    cross_fail = [
        (v.extracted, v.reference, v.reason)
        for v in verdicts[len(right) :]
        if v.correct is not False
    ]
    assert self_fail == []
    assert cross_fail == []


def test_math500_references(pool: VerifierPool) -> None:
    rows = _rows("math500.jsonl")
    _self_and_cross(pool, [row["answer"] for row in rows])


def test_gsm8k_references_sample(pool: VerifierPool) -> None:
    rows = _rows("gsm8k_train.jsonl")
    sample = random.Random(0).sample(rows, 500)
    _self_and_cross(pool, [row["answer"] for row in sample])


def test_competition_references(pool: VerifierPool) -> None:
    for name in ("amc23.jsonl", "aime24.jsonl"):
        _self_and_cross(pool, [row["answer"] for row in _rows(name)])


def test_amc_float_reference_accepts_integer_answer() -> None:
    assert fast_check("math", r"\boxed{27}", 27.0) == Verdict(True, "27", "27.0", "numeric")


# -- math verifier unit cases ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        (r"\boxed{1,234}", "#### 1234", True),
        (r"\boxed{1234}", "Thus...\n#### 1,234", True),
        (r"\boxed{\$1,234.00}", "#### 1,234", True),
        (r"\boxed{0.5}", r"\frac{1}{2}", True),
        (r"\boxed{\dfrac{14}{3}}", r"\frac{14}{3}", True),
        (r"\boxed{4.66667}", r"\frac{14}{3}", True),  # within relative 1e-4
        (r"\boxed{4.66}", r"\frac{14}{3}", False),
        (r"\boxed{100001}", "100000", False),  # integers are exact, tolerance is for decimals
        (r"\boxed{90}", r"90^\circ", True),
        (r"\boxed{10080}", r"10,\!080", True),
        (r"\boxed{5.4}", r"5.4 \text{ cents}", True),
        (r"\boxed{864}", r"864 \mbox{ inches}^2", True),
        (r"\boxed{Evelyn}", r"\text{Evelyn}", True),
        (r"\boxed{evelyn}", r"\text{Evelyn}", True),  # prose in \text{} ignores case
        (r"\boxed{X}", "x", False),  # variables do not
        (
            r"\boxed{\begin{pmatrix} 1 \\ -2 \end{pmatrix}}",
            r"\begin{pmatrix}1\\-2\end{pmatrix}",
            True,
        ),
        (r"\boxed{\left(3,\frac{\pi}{2}\right)}", r"\left( 3, \frac{\pi}{2} \right)", True),
        ("The answer is 72.", "#### 72", True),
        ("I think it's 71", "#### 72", False),
        (r"\boxed{(-1,6)}", r"11,\! 111,\! 111,\! 100", False),  # a number is no tuple
    ],
)
def test_math_fast_path(response: str, reference: str, correct: bool) -> None:
    verdict = fast_check("math", response, reference)
    assert verdict is not None, "expected the cheap checks to decide"
    assert verdict.correct is correct


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        (r"\boxed{x^2 + 2x + 1}", r"(x+1)^2", True),
        (r"\boxed{\sin x}", r"\cos x", False),
        (r"\boxed{(1, 2)}", r"(2, 1)", False),
        (r"\boxed{\left(\frac{1}{2}, \sqrt{2}\right)}", r"(0.5, \sqrt 2)", True),
        (r"\boxed{x=5}", "5", True),
        (r"\boxed{\sin^2 x + \cos^2 x}", "1", True),
    ],
)
def test_math_needs_math_verify(
    pool: VerifierPool, response: str, reference: str, correct: bool
) -> None:
    assert fast_check("math", response, reference) is None
    verdict = pool.verify("math", response, reference)
    assert verdict.correct is correct
    assert verdict.reason == "math_verify"
    # The in-process entry point agrees (pytest runs tests in the main thread).
    assert check("math", response, reference).correct is correct


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"3\sqrt{13}", 3 * 13**0.5),
        (r"-\frac{\pi}{6}", -3.141592653589793 / 6),
        ("6-5i", 6 - 5j),
        (r"\frac12", 0.5),
        (r"\frac{270}7", 270 / 7),
        (r"11\sqrt2", 11 * 2**0.5),
        ("2^{10}", 1024),
        (r"\sqrt[3]{8}", 2),
        (r"2\cdot3", 6),
        (r"\pi^2", 3.141592653589793**2),
        ("(3)", 3),
        # Not constants, or not unambiguous ones: left to math-verify.
        (r"1\frac{4}{5}", None),  # mixed number or product?
        ("2^10", None),  # LaTeX reads 2^1 0
        ("x+1", None),
        ("e", None),
        (r"\frac{1}{0}", None),
        ("10^{20}", None),  # too large to compare as floats
        ("(1,2)", None),
        ("", None),
    ],
)
def test_constant_value(text: str, value: complex | None) -> None:
    result = constant_value(text)
    if value is None:
        assert result is None
    else:
        assert result is not None and abs(result - value) < 1e-9


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        (r"\frac{1}{\sqrt3}", r"\frac{\sqrt{3}}{3}", True),
        ("1.41421", r"\sqrt2", True),  # a decimal gets the 1e-4 tolerance
        (r"\sqrt{2}", r"\frac{99}{70}", False),  # exact forms do not (they differ by 5e-5)
        ("2^{20}", "1048577", False),
        ("x^2+1", "5", False),
        ("(1,2)", r"\sqrt2", False),
        ("Evelyn", "42", False),
        ("6+9i", "6", False),
    ],
)
def test_constant_fast_path(response: str, reference: str, correct: bool) -> None:
    verdict = fast_check("math", rf"\boxed{{{response}}}", reference)
    assert verdict is not None and verdict.reason == "evaluated"
    assert verdict.correct is correct


@pytest.mark.parametrize(
    ("response", "reference"), [("x=5", "5"), (r"1\frac{4}{5}", r"\frac{9}{5}")]
)
def test_constant_fast_path_leaves_the_doubtful(response: str, reference: str) -> None:
    assert fast_check("math", rf"\boxed{{{response}}}", reference) is None


def test_cheap_checks_agree_with_math_verify() -> None:
    """Every pair the cheap checks decide, math-verify decides the same way (MATH-500 sample:
    random cross pairs, and each solution's own boxed spelling against the answer field)."""
    rows = _rows("math500.jsonl")
    rng = random.Random(7)
    pairs = [(rows[rng.randrange(len(rows))]["answer"], row["answer"]) for row in rows[::2]]
    pairs += [(extract_boxed(row["solution"]) or "", row["answer"]) for row in rows[1::4]]
    decided = 0
    disagreements = []
    for pred, gold in pairs:
        verdict = fast_check("math", rf"\boxed{{{pred}}}", gold)
        if verdict is None or verdict.reason == "string_match":
            continue
        decided += 1
        by_math_verify, _ = _run_job(_MathJob("math", pred, gold), 10.0)
        if by_math_verify is not verdict.correct:
            disagreements.append((pred, gold, verdict.correct, by_math_verify))
    assert decided > 200
    assert disagreements == []


def test_math_missing_parts(pool: VerifierPool) -> None:
    assert pool.verify("math", "no digits here", "5") == Verdict(False, None, "5", REASON_NO_ANSWER)
    assert pool.verify("math", r"\boxed{5}", None) == Verdict(None, "5", None, REASON_NO_REFERENCE)
    assert pool.verify("math", r"\boxed{5}", "  ").reason == REASON_NO_REFERENCE
    assert pool.verify("math", None, "5").reason == REASON_NO_ANSWER


def test_check_keeps_an_outer_alarm_armed() -> None:
    """check() borrows SIGALRM; a host timer (pytest-timeout uses one) must survive it."""
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        assert check("math", r"\boxed{x^2+2x+1}", "(x+1)^2").correct is True
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < remaining <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def test_check_refuses_math_verify_off_the_main_thread() -> None:
    outcome: dict[str, object] = {}

    def run() -> None:
        # The cheap checks are fine anywhere...
        outcome["fast"] = check("math", r"\boxed{1,234}", "#### 1234")
        # ...math-verify is not (signal.alarm).
        try:
            check("math", r"\boxed{x^2+2x+1}", "(x+1)^2")
        except RuntimeError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert outcome["fast"] == Verdict(True, "1,234", "1234", "numeric")
    assert isinstance(outcome["error"], RuntimeError)


def test_normalize_and_parse_number() -> None:
    assert normalize_answer(r"$\$32,\!348$") == "32,348"
    assert parse_number("32,348") == (Fraction(32348), False)
    assert parse_number(r"-\frac{3}{4}") == (Fraction(-3, 4), False)
    assert parse_number(r"\frac12") == (Fraction(1, 2), False)
    assert parse_number("1,-2") is None
    assert parse_number("0.15") == (Fraction(15, 100), True)
    assert parse_number(r"\frac{1}{0}") is None


# -- choice / exact / none -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "reference", "correct"),
    [
        ("The answer is (C).", "C", True),
        (r"\boxed{C}", "(C)", True),
        ("Answer: B", "C", False),
        ("so the answer is c", "C", None),  # no choice letter found -> no_answer, not correct
        ("The answer is (C).", r"\text{(C)}", True),
    ],
)
def test_choice(response: str, reference: str, correct: bool | None) -> None:
    verdict = check("choice", response, reference)
    if correct is None:
        assert verdict.correct is False
        assert verdict.reason == REASON_NO_ANSWER
    else:
        assert verdict.correct is correct


def test_choice_without_reference() -> None:
    assert check("choice", "(A)", None).correct is None
    assert check("choice", "(A)", "").reason == REASON_NO_REFERENCE


def test_exact() -> None:
    assert check("exact", "  Paris ", "paris").correct is True
    assert check("exact", r"The capital is... \boxed{Paris}", "Paris").correct is True
    assert check("exact", "The answer is New   York.", "new york").correct is True
    assert check("exact", "Lyon", "Paris").correct is False
    assert check("exact", "", "Paris").reason == REASON_NO_ANSWER
    assert check("exact", "Paris", None).correct is None


def test_none_is_never_decided(pool: VerifierPool) -> None:
    assert check("none", r"\boxed{5}", "5").correct is None
    assert pool.verify("none", r"\boxed{5}", "5").correct is None


def test_unknown_kind_is_an_error(pool: VerifierPool) -> None:
    with pytest.raises(ValueError):
        check("regex", "x", "y")
    with pytest.raises(ValueError):
        pool.verify("_sleep", "1", "x")  # test kinds are off unless the pool enables them


# -- pool: timeouts, threads, asyncio --------------------------------------------------------


@pytest.fixture(scope="module")
def test_pool() -> Iterator[VerifierPool]:
    with VerifierPool(processes=1, timeout_s=1.0, enable_test_kinds=True) as p:
        assert p.wait_ready(60)
        yield p


def test_soft_timeout_keeps_the_worker(test_pool: VerifierPool) -> None:
    kills = test_pool.kills
    started = time.monotonic()
    verdict = test_pool.verify("_sleep", "30", "x")
    assert verdict.correct is None and verdict.reason == REASON_TIMEOUT
    assert time.monotonic() - started < 3.0
    assert test_pool.kills == kills  # the worker's own timer fired; nobody was killed


def test_hard_timeout_kills_and_recovers(test_pool: VerifierPool) -> None:
    """A job that ignores signals is cut by the parent, and the jobs queued behind it (same
    chunk, one worker) still complete on the replacement worker."""
    kills = test_pool.kills
    started = time.monotonic()
    verdicts = test_pool.verify_many(
        [
            ("_hang", "60", "x"),
            ("math", r"\boxed{x^2+2x+1}", "(x+1)^2"),
            ("math", r"\boxed{3}", "#### 3"),
        ]
    )
    assert verdicts[0].correct is None and verdicts[0].reason == REASON_TIMEOUT
    assert verdicts[1].correct is True and verdicts[2].correct is True
    assert test_pool.kills == kills + 1
    # ~1 s hard timeout plus the replacement's start-up (spawn + imports) on a busy machine.
    assert time.monotonic() - started < 20.0
    assert test_pool.verify("math", r"\boxed{\sqrt{4}}", "2").correct is True


def test_hard_timeout_does_not_wait_for_the_stuck_job(test_pool: VerifierPool) -> None:
    started = time.monotonic()
    verdict = test_pool.verify("_hang", "60", "x")
    assert verdict.reason == REASON_TIMEOUT
    assert time.monotonic() - started < 3.0


def test_pool_from_non_main_threads() -> None:
    """Created and used from threads (as in a Celery thread-pool worker)."""
    results: list[object] = []

    def run() -> None:
        try:
            with VerifierPool(processes=1, timeout_s=10.0) as p:
                inner: list[Verdict] = []
                workers = [
                    threading.Thread(
                        target=lambda: inner.append(
                            p.verify("math", r"\boxed{x^2+2x+1}", "(x+1)^2")
                        )
                    )
                    for _ in range(3)
                ]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                results.extend(inner)
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert [getattr(r, "correct", r) for r in results] == [True, True, True]


def test_async_does_not_block_the_loop(test_pool: VerifierPool) -> None:
    async def main() -> tuple[list[Verdict], int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        verdicts = await test_pool.averify_many(
            [("_sleep", "0.5", "x"), ("math", r"\boxed{x^2+2x+1}", "(x+1)^2"), ("math", "5", "5")]
        )
        task.cancel()
        return verdicts, ticks

    verdicts, ticks = asyncio.run(main())
    assert [v.correct for v in verdicts] == [True, True, True]
    assert ticks >= 10  # the loop kept running while the pool worked


def test_closed_pool_rejects_work() -> None:
    p = VerifierPool(processes=1, timeout_s=5.0)
    p.close()
    with pytest.raises(RuntimeError):
        p.verify("math", r"\boxed{x^2+2x+1}", "(x+1)^2")
    p.close()  # idempotent
