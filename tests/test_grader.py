"""Grader spellings (issue #12): scientific notation, plain-code numerics, units, percentages and
thousands separators; plus gold/rewrite/wrong checks over the bundled GSM8K sample and MATH-500.

Data: cgd/data (bundled, licenses in cgd/data/LICENSES.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from importlib import resources

import pytest

from cgd.answers import reference_answer
from cgd.verify import VerifierPool, fast_check, normalize_answer, parse_number
from cgd.verify.checks import for_math_verify
from cgd.verify.code import code_value, looks_like_code, to_latex


def _bundled(name: str) -> list[dict]:
    text = resources.files("cgd").joinpath("data", name).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _fast(pred: str, gold: str) -> bool | None:
    verdict = fast_check("math", rf"The answer is $\boxed{{{pred}}}$.", gold)
    assert verdict is not None, f"cheap checks left {pred!r} vs {gold!r} undecided"
    return verdict.correct


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    with VerifierPool(processes=1, timeout_s=10.0) as p:
        assert p.wait_ready(60)
        yield p


# -- scientific notation -------------------------------------------------------------------------

SCI_SPELLINGS = [
    "4.5e33",
    "4.5E33",
    "4.5E+33",
    "4.5e+33",
    r"4.5 \times 10^{33}",
    r"4.5\times10^{33}",
    r"4.5\cdot10^{33}",
    r"4.5 \cdot 10^{33}",
    "4.5*10**33",
    "4.5 * 10**(33)",
    "4.5 x 10^33",
    "4.5 x 10^{33}",
    "4.5×10^33",
    r"45 \times 10^{32}",
    "4500000000000000000000000000000000",
    r"4.5 \times 10^{33}\text{ erg}",
]


@pytest.mark.parametrize("gold", ["4.5e33", r"4.5 \times 10^{33}", "4.5*10**33"])
@pytest.mark.parametrize("pred", SCI_SPELLINGS)
def test_scientific_notation_spellings_are_equal(pred: str, gold: str) -> None:
    assert _fast(pred, gold) is True


@pytest.mark.parametrize(
    ("pred", "gold", "correct"),
    [
        ("4.6e33", "4.5e33", False),
        ("4.5e32", "4.5e33", False),
        (r"4.5 \times 10^{-33}", "4.5e33", False),
        ("-4.5e33", "4.5e33", False),
        ("1.6e-19", r"1.6 \times 10^{-19}", True),
        ("1.6E-19", "0.00000000000000000016", True),
        ("1.5e-3", "0.0015", True),
        ("2.5e2", "250", True),
        (r"10^{6}", "1000000", True),
        (r"10^{6}", "1e6", True),
        # Integer values are exact, however spelled: the 1e-4 tolerance is for fractions.
        ("4.48001e5", "448000", False),
        ("448001.0", "448000", False),
        ("4.48e5", "448000", True),
        # A value with a fractional part keeps the decimal tolerance.
        ("3.33333e-1", r"\frac{1}{3}", True),
    ],
)
def test_scientific_notation_values(pred: str, gold: str, correct: bool) -> None:
    assert _fast(pred, gold) is correct


def test_scientific_notation_parse_number() -> None:
    assert parse_number("4.5e33") == (Fraction(45) * 10**32, True)
    assert parse_number(normalize_answer(r"4.5 \times 10^{33}")) == (Fraction(45) * 10**32, True)
    assert parse_number("3e2") == (Fraction(300), False)
    assert parse_number("10^{33}") == (Fraction(10) ** 33, False)
    assert parse_number("1e999999999") is None  # no billion-digit integers
    assert parse_number("2e") is None  # 2·e, not scientific notation


def test_euler_e_still_means_e(pool: VerifierPool) -> None:
    assert pool.verify("math", r"\boxed{e}", "e").correct is True
    assert pool.verify("math", r"\boxed{2e}", "2e").correct is True
    assert pool.verify("math", r"\boxed{e^2}", "e^{2}").correct is True


def test_non_decimal_mantissa_goes_to_math_verify(pool: VerifierPool) -> None:
    verdict = pool.verify("math", r"\boxed{\frac{9}{2}\times 10^{33}}", "4.5e33")
    assert verdict.correct is True and verdict.reason == "math_verify"
    assert for_math_verify("4.5e33") == r"4.5\times10^{33}"


# -- plain-code numerics -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "correct"),
    [
        (r"-\frac{1}{3}", "-1./3", True),
        ("-0.3333", "-1./3", True),
        ("-1./3", "-1/3", True),
        ("1./3", "-1./3", False),
        ("0.8776", "np.arcsin(10/13)", True),
        ("0.88", "np.arcsin(10/13)", False),
        ("np.arcsin(10/13)", "np.arcsin(10/13)", True),
        ("numpy.arcsin(10/13)", "np.arcsin(10/13)", True),
        ("np.arcsin(10/12)", "np.arcsin(10/13)", False),
        (r"\sqrt{2}", "math.sqrt(2)", True),
        (r"\frac{99}{70}", "math.sqrt(2)", False),  # exact forms get no tolerance
        ("1.41421", "math.sqrt(2)", True),
        ("1000", "1_000", True),
        ("1_000_000", "1000000", True),
        ("1_000", "1001", False),
        ("1024", "2**10", True),
        ("1025", "2**10", False),
        (r"\frac{\pi}{2}", "np.pi/2", True),
        ("1152921504606846977", "2**60", False),  # exact integer arithmetic, no float blur
        ("1152921504606846976", "2**60", True),
        (r"\frac{1}{1000}", "10**-3", True),
        ("10", "math.comb(5, 2)", True),
    ],
)
def test_plain_code_numerics(pred: str, gold: str, correct: bool) -> None:
    assert _fast(pred, gold) is correct


def test_code_against_latex_function_uses_math_verify(pool: VerifierPool) -> None:
    for pred in (r"\arcsin(10/13)", r"\arcsin\left(\frac{10}{13}\right)"):
        verdict = pool.verify("math", rf"\boxed{{{pred}}}", "np.arcsin(10/13)")
        assert verdict.correct is True, verdict
    verdict = pool.verify("math", r"\boxed{\arccos(10/13)}", "np.arcsin(10/13)")
    assert verdict.correct is False


@pytest.mark.parametrize(
    "text",
    [
        "x+1",
        "e",
        "pi",
        "__import__('os')",
        "os.system(1)",
        "7//2",
        "7%2",
        "2^3",
        "(1,2)",
        "f(2)",
        "np.foo(1)",
        "9**9**9",
        "np.sqrt(-1)",
        "1/0",
        "np.log(0)",
        "True+1",
        "sqrt(x=2)",
        "()",
    ],
)
def test_code_evaluator_refuses(text: str) -> None:
    assert code_value(text) is None


def test_code_evaluator_values() -> None:
    assert code_value("-1./3") == (pytest.approx(-1 / 3), True)
    assert code_value("2**10") == (Fraction(1024), False)
    assert code_value("1_000") == (Fraction(1000), False)
    value, approximate = code_value("np.arcsin(10/13)")  # type: ignore[misc]
    assert value == pytest.approx(0.877636, rel=1e-5) and approximate is False
    assert looks_like_code("math.sqrt(2)") and not looks_like_code("12")


def test_code_to_latex() -> None:
    assert to_latex("np.arcsin(10/13)") == r"\arcsin(10/13)"
    assert to_latex("math.sqrt(2)/2") == r"\sqrt{2}/2"
    assert to_latex("2**(1/3)") == "2^{1/3}"
    assert to_latex("np.pi") == r"\pi"
    assert to_latex("4.5 x 10^33") == r"4.5\times10^{33}"
    assert to_latex(r"\frac{1}{2}") == r"\frac{1}{2}"  # LaTeX stays


# -- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "correct"),
    [
        ("18 dollars", "18", True),
        (r"18\text{ dollars}", "18", True),
        (r"18 \text{dollars}", "#### 18", True),
        ("18 dollars", r"18\text{ dollars}", True),
        ("19 dollars", "18", False),
        ("5 cm", "5", True),
        ("5cm", "5", True),
        (r"5\,\mathrm{m/s}", "5", True),
        (r"5 \mathrm{m/s}", r"5\text{ m/s}", True),
        ("9.8 m/s^2", "9.8", True),
        (r"864 \text{ inches}^2", "864", True),
        (r"15\mbox{ cm}^2", "15", True),
        ("5 m", "5", True),
        ("3 apples", "3", True),
        (r"\frac{\sqrt{3}}{2} meters", r"\frac{\sqrt3}{2}", True),
        (r"2\pi \text{ cm}", r"2\pi", True),
        (r"\$18.90", r"18.90 dollars", True),
        ("1,000 km", "1000", True),
    ],
)
def test_units(pred: str, gold: str, correct: bool) -> None:
    assert _fast(pred, gold) is correct


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("5m", "5m"),  # 5 times m: a single-letter unit needs a space
        ("3 ab", "3ab"),  # not a unit word
        ("2 pi", "2pi"),
        ("x cm", "xcm"),  # a unit follows a number, not a variable
        (r"5 \text{ and } 7", "5and7"),
        (r"\text{Evelyn}", "Evelyn"),
        ("18 dollars", "18"),
        (r"5\,\mathrm{m/s}", "5"),
    ],
)
def test_unit_stripping_is_conservative(text: str, normalized: str) -> None:
    assert normalize_answer(text) == normalized


def test_units_are_removed_for_math_verify(pool: VerifierPool) -> None:
    verdict = pool.verify("math", r"\boxed{x+1 \text{ cm}}", "1+x")
    assert verdict.correct is True
    assert for_math_verify(r"x + 1\,\mathrm{cm}") == "x + 1"


# -- percentages and thousands separators ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gold", "correct"),
    [
        (r"50\%", "50", True),  # X% equals X ...
        (r"50\%", "0.5", True),  # ... and X/100
        ("50", r"50\%", True),
        ("0.5", r"50\%", True),
        (r"\frac{1}{2}", "50%", True),
        ("50 percent", "0.5", True),
        (r"50\%", r"50\%", True),
        (r"5\%", "50", False),
        (r"5\%", "0.5", False),
        ("0.5", r"0.5\%", True),  # the rule is symmetric: 0.5% equals 0.5 and 0.005
        ("0.05", r"0.5\%", False),
        ("0.005", r"0.5\%", True),
        (r"12.5\%", r"\frac{1}{8}", True),
    ],
)
def test_percent_rule(pred: str, gold: str, correct: bool) -> None:
    assert _fast(pred, gold) is correct


@pytest.mark.parametrize(
    "pred",
    ["1,234,567", "1{,}234{,}567", r"1\,234\,567", "1 234 567", "1_234_567", r"1,\!234,\!567"],
)
def test_thousands_separators(pred: str) -> None:
    assert _fast(pred, "1234567") is True
    assert _fast(pred, "#### 1,234,568") is False


def test_a_list_is_not_a_number_with_separators() -> None:
    assert _fast("1,2", "12") is False


# -- over the bundled references ----------------------------------------------------------------


def _numeric_golds() -> list[str]:
    golds = [reference_answer(r["answer"]) for r in _bundled("gsm8k_sample.jsonl")]
    return [g for g in golds if g is not None]


def _sci(value: int) -> str:
    digits = str(abs(value)).rstrip("0") or "0"
    exponent = len(str(abs(value))) - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return ("-" if value < 0 else "") + f"{mantissa}e{exponent}"


def test_gsm8k_sample_golds_rewrites_and_wrong_answers() -> None:
    """Each GSM8K gold: itself, scientific notation, units, thousands separators and a
    fraction are accepted; the gold +1 in the same spellings is rejected."""
    golds = _numeric_golds()
    assert len(golds) == 256
    for gold_text in golds:
        reference = f"...\n#### {gold_text}"
        value = int(gold_text)
        accepted = [gold_text, _sci(value), f"{gold_text} dollars", rf"{gold_text}\text{{ cm}}"]
        accepted.append(rf"\frac{{{3 * value}}}{{3}}")
        if abs(value) >= 1000:
            accepted.append(f"{value:,}")
        for pred in accepted:
            assert _fast(pred, reference) is True, (pred, reference)
        wrong = value + 1
        for pred in (str(wrong), _sci(wrong), f"{wrong} dollars", f"{wrong:,}"):
            assert _fast(pred, reference) is False, (pred, reference)


def test_math500_golds_with_units_and_box_variants(pool: VerifierPool) -> None:
    finals = [reference_answer(r["answer"]) or "" for r in _bundled("math500.jsonl")]
    items = []
    for final in finals:
        items.append(("math", rf"$\boxed{{{final}}}$", final))
        items.append(("math", rf"\[\boxed{{\displaystyle {final}}}\]", final))
        if parse_number(normalize_answer(final)) is not None:
            items.append(("math", rf"\boxed{{{final} \text{{ cm}}}}", final))
            items.append(("math", rf"\boxed{{{final} dollars}}", final))
    verdicts = pool.verify_many(items)
    failures = [
        (item[1], v.reason) for item, v in zip(items, verdicts, strict=True) if not v.correct
    ]
    assert failures == []
