"""Final-answer extraction: unit edge cases and every reference of the real evaluation sets."""

from __future__ import annotations

import pytest

from cgd.answers import (
    extract_boxed,
    extract_choice,
    extract_final_answer,
    extract_last_number,
    extract_marked_answer,
    reference_answer,
)
from tests.conftest import data_rows

_rows = data_rows


# -- extract_boxed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (
            r"nested \boxed{\left\{ 1, \frac{2}{3} \right\}} done",
            r"\left\{ 1, \frac{2}{3} \right\}",
        ),
        (r"first \boxed{1} then \boxed{2} finally \boxed{3}", "3"),
        (r"\fbox{7}", "7"),
        (r"the answer: $\boxed 5$", "5"),
        (r"\boxed 5.", "5"),
        (r"\boxed{\text{(C)}}", r"\text{(C)}"),
        (r"escaped \boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{ 12 }", "12"),
        # Empty boxes are mentions of the format, not answers.
        (r"\boxed{4} and put it in \boxed{}", "4"),
        # Truncated output: the last box never closes, do not fall back to an older one.
        (r"\boxed{3} but actually \boxed{\frac{1}{", None),
        ("no box here", None),
        ("", None),
        (None, None),
        (r"\boxedx{3}", None),
        (r"\boxed{5} then \boxedx{3}", "5"),
        (r"\boxed{1} then \fbox{2}", "2"),
        (r"\fbox{1} then \boxed{2}", "2"),
        (r"\boxed{4} then \fboxy{9}", "4"),
        (r"\boxed{a}b}", "a"),
        (r"\boxed{x \} y}", r"x \} y"),
        (r"\boxed{4}", "4"),
        ("\\boxed", None),
    ],
)
def test_extract_boxed(text: str | None, expected: str | None) -> None:
    assert extract_boxed(text) == expected


# -- extract_final_answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"We get 3 and then \boxed{4}. Also 5.", "4"),
        ("So the answer is 3.5.", "3.5"),
        (r"Therefore, the final answer is $\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
        ("Final answer: 17", "17"),
        ("**Final Answer:** 17", "17"),
        ("Natalia sold 48 clips.\n#### 72", "72"),
        ("blah\n#### 1,234", "1,234"),
        ("The answer is 12 apples.\nWait, the answer is 13.", "13"),
        ("we get 12 and then 1,000,000 apples", "1000000"),
        ("x = -3.25 finally", "-3.25"),
        ("ratio 3/4", "3/4"),
        ("no digits at all", None),
        (r"truncated \boxed{12", None),
        ("", None),
    ],
)
def test_extract_final_answer(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


def test_marked_answer_has_no_number_fallback() -> None:
    assert extract_marked_answer("just 12 and 13") is None
    assert extract_marked_answer(r"\boxed{x} and the answer is 5") == "x"


def test_last_number_keeps_lists_apart() -> None:
    assert extract_last_number("1,2 and 3,456") == "3456"
    assert extract_last_number("values 1, 2") == "2"
    assert extract_last_number("the 5th of 7") == "7"


# -- reference_answer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Half of 48 is 24.\n#### 1,234", "1234"),
        ("#### 72", "72"),
        ("#### -5", "-5"),
        (r"Thus the area is $\boxed{\frac{14}{3}}$.", r"\frac{14}{3}"),
        (r"  \left( 3, \frac{\pi}{2} \right) ", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\text{Evelyn}", r"\text{Evelyn}"),
        (27.0, "27.0"),
        (204, "204"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_reference_answer(reference: str | float | None, expected: str | None) -> None:
    assert reference_answer(reference) == expected


def test_reference_answer_math500_is_already_final() -> None:
    rows = _rows("math500.jsonl")
    assert len(rows) == 500
    for row in rows:
        assert reference_answer(row["answer"]) == row["answer"].strip()


def test_reference_answer_gsm8k_is_a_plain_number() -> None:
    rows = _rows("gsm8k_train.jsonl")
    for row in rows:
        final = reference_answer(row["answer"])
        assert final is not None
        assert "," not in final, row["answer"][-40:]
        float(final)  # a plain number once separators are gone


def test_reference_answer_competition_sets() -> None:
    for name in ("amc23.jsonl", "aime24.jsonl"):
        for row in _rows(name):
            final = reference_answer(row["answer"])
            assert final is not None
            float(final)


# -- extract_choice --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thus the answer is (C).", "C"),
        ("the answer is C", "C"),
        ("Answer: D", "D"),
        ("ANSWER: (b) no", None),  # lower-case letters are not choices
        (r"So \boxed{B}", "B"),
        (r"So \boxed{\text{(E)}}", "E"),
        (r"\boxed{(J)}", "J"),
        ("The answer is option F", "F"),
        ("I compared (A) and (B); the best is (B)", "B"),
        ("After all that, G", "G"),
        ("The answer is A because it is smallest", "A"),
        ("I think so", None),  # "I" as a pronoun is not a choice
        ("A number of options remain", None),
        ("nothing to see", None),
        ("", None),
        ("K is not a choice", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected
