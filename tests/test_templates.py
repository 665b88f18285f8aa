"""Prompt templates: refine extends the critique conversation; verdicts parse robustly."""

from __future__ import annotations

import pytest

from cgd.templates import TEMPLATES, extract_tagged, get_template, parse_verdict


def test_refine_extends_the_critique_conversation() -> None:
    t = get_template("cgd")
    critique = t.critique("What is 2+2?", "It is 5.")
    refine = t.refine("What is 2+2?", "It is 5.", "Wrong sum.\nConclusion: wrong")
    assert refine[: len(critique)] == critique  # identical prefix: the server's cache serves it
    assert refine[len(critique)] == {
        "role": "assistant",
        "content": "Wrong sum.\nConclusion: wrong",
    }
    assert refine[-1]["role"] == "user" and len(refine) == len(critique) + 2
    assert t.probe("What is 2+2?") == [{"role": "user", "content": "What is 2+2?"}]
    assert extract_tagged(critique[1]["content"], "question") == "What is 2+2?"
    assert extract_tagged(critique[1]["content"], "student_answer") == "It is 5."
    assert TEMPLATES["cgd"].version == "cgd-v2"  # v2: neutral system prompt, standalone refine


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("All good.\nConclusion: right", "right"),
        ("Conclusion: wrong", "wrong"),
        ("**Conclusion:** Wrong.", "wrong"),
        ("conclusion - correct", "right"),
        ("Conclusion: incorrect", "wrong"),
        ("Conclusion: right\n...on reflection...\nConclusion: wrong", "wrong"),  # last one wins
        ("The conclusion is unclear.", None),
        ("", None),
        ("The answer is right.", None),  # no verdict line
    ],
)
def test_parse_verdict(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


def test_unknown_template() -> None:
    with pytest.raises(KeyError):
        get_template("nope")
