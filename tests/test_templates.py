"""Prompt templates: refine extends the critique conversation; verdicts parse robustly."""

from __future__ import annotations

import pytest

from cgd.templates import TEMPLATES, extract_tagged, get_template, parse_verdict
from cgd.templates.builtin import DEFAULT_SOURCES
from cgd.templates.core import (
    PromptTooLong,
    Template,
    TemplateSourceError,
    TemplateSources,
    prompt_chars,
    validate_sources,
)

VERDICTS = " End with `Conclusion: right` or `Conclusion: wrong`."


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
    assert TEMPLATES["cgd"].version == "cgd-v3"  # v3: the paper's critique and refinement
    assert TEMPLATES["cgd-standalone"].version == "cgd-v2"  # the former default, unchanged


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("All good.\nConclusion: right", "right"),
        ("Conclusion: wrong", "wrong"),
        ("**Conclusion:** Wrong.", "wrong"),
        ("conclusion - correct", "right"),
        ("Conclusion: incorrect", "wrong"),
        ("Conclusion: right\n...on reflection...\nConclusion: wrong", "wrong"),  # last line wins
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


# --- issue 12: standalone refine, teacher_solution, the second built-in, sandboxed team texts ---


def test_refine_asks_for_a_standalone_solution_under_a_neutral_system_prompt() -> None:
    for name in ("cgd-standalone", "cgd-detailed"):
        t = get_template(name)
        refine = t.refine("Q?", "A.", "C.\nConclusion: wrong")
        system, last = refine[0]["content"], refine[-1]["content"]
        assert "student" not in system.lower() and "critique" not in system.lower()
        assert "standalone" in last and "do not mention the student" in last
        assert "\\boxed{}" in last
    solve = get_template("cgd").solve("What is 2+2?")
    assert [m["role"] for m in solve] == ["system", "user"]
    assert extract_tagged(solve[1]["content"], "question") == "What is 2+2?"
    assert extract_tagged(solve[1]["content"], "student_answer") is None


def test_detailed_template_asks_for_a_step_by_step_critique_with_the_verdict_line() -> None:
    critique = get_template("cgd-detailed").critique("Q?", "A.")[1]["content"]
    assert "step by step" in critique and "correct reasoning" in critique
    assert "`Conclusion: right`" in critique and "`Conclusion: wrong`" in critique
    assert "Do not write a full corrected solution" not in critique


def test_values_are_never_rendered_as_template_code() -> None:
    t = get_template("cgd")
    q = "What is {{ 7*7 }} and {% if true %}x{% endif %}?"
    assert extract_tagged(t.critique(q, "{{ answer }}")[1]["content"], "question") == q


def _sources(**over: str) -> TemplateSources:
    return TemplateSources(**{**DEFAULT_SOURCES.as_dict(), **over})


@pytest.mark.parametrize(
    ("part", "source", "reason"),
    [
        ("critique", "{{ question }} {{ answer }} {{ secret }}" + VERDICTS, "unknown variable"),
        ("critique", "{{ question }} Conclusion: right / Conclusion: wrong", "must use ['answer']"),
        ("critique", "{{ question }} {{ answer }} end with a verdict", "verdict line"),
        ("critique", "{{ question }} {{ answer }" + VERDICTS, "syntax error"),
        ("critique", "{% for i in range(9) %}{{ question }}{% endfor %}{{ answer }}" + VERDICTS,
         "For is not allowed"),
        ("critique", "{{ question.__class__ }}{{ answer }}" + VERDICTS, "Getattr is not allowed"),
        ("critique", "{{ question }}{{ answer }}{{ lipsum() }}" + VERDICTS, "Call is not allowed"),
        ("critique", "{{ question * 99999 }}{{ answer }}" + VERDICTS, "Mul is not allowed"),
        ("critique", "{% include 'x' %}{{ question }}{{ answer }}" + VERDICTS, "Include"),
        ("critique", "{{ question | format('x') }}{{ answer }}" + VERDICTS, "filter 'format'"),
        ("critique", "{% if false %}{{ question }}{% endif %}{{ answer }}" + VERDICTS,
         "does not show 'question'"),
        ("system", "You review {{ answer }}.", "unknown variable"),
        ("solve", "Solve it.", "must use ['question']"),
        ("refine", "x" * 20_001, "longer than"),
    ],
)  # fmt: skip
def test_team_template_validation(part: str, source: str, reason: str) -> None:
    with pytest.raises(TemplateSourceError) as exc:
        validate_sources(_sources(**{part: source}))
    assert exc.value.part == part and reason in exc.value.reason, exc.value.reason


def test_a_valid_team_template_renders_with_filters_and_conditions() -> None:
    t = Template(
        name="mine",
        version="mine@1",
        sources=_sources(
            critique="Q: {{ question | trim }}\nA: {{ answer }}\n{% if answer is string %}"
            "ok{% endif %}" + VERDICTS,
            refine="Rewrite {{ 'it' ~ '!' }}",
        ),
    )
    assert t.critique("  2+2?  ", "4")[1]["content"].startswith("Q: 2+2?\nA: 4\nok")
    assert t.refine("q", "a", "c")[-1]["content"] == "Rewrite it!"
    for builtin in TEMPLATES.values():
        validate_sources(builtin.sources)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% if question %}" * 1100 + "{{ question }}{{ answer }}", "nested too deeply"),
        ("{{ " + "(" * 6000 + "question" + ")" * 6000 + " }}", "nested too deeply"),
        ("{{ question }}\x00{{ answer }}" + VERDICTS, "NUL"),
    ],
)
def test_hostile_sources_are_refused_not_crashed(source: str, reason: str) -> None:
    with pytest.raises(TemplateSourceError) as exc:
        validate_sources(_sources(critique=source))
    assert reason in exc.value.reason


def test_the_simulator_tells_every_stage_apart() -> None:
    from cgd.simulator.answers import classify

    for name in TEMPLATES:
        t = get_template(name)
        stages = [
            classify(t.probe("Q?")).stage,
            classify(t.critique("Q?", "A")).stage,
            classify(t.refine("Q?", "A", "C")).stage,
            classify(t.solve("Q?")).stage,
        ]
        assert stages == ["probe", "critique", "refine", "solve"]


@pytest.mark.parametrize(
    "name", ["lipsum", "cycler", "joiner", "namespace", "self", "range", "dict", "loop"]
)
def test_jinja_globals_are_unknown_variables(name: str) -> None:
    sources = _with(refine=DEFAULT_SOURCES.refine + "{{ " + name + " }}")
    with pytest.raises(TemplateSourceError, match=f"unknown variable.*{name}"):
        validate_sources(sources)


def _with(**parts: str) -> TemplateSources:
    return TemplateSources(**{**DEFAULT_SOURCES.as_dict(), **parts})


def test_rendering_stops_at_the_cap_with_bounded_memory() -> None:
    """The question 1000 times (40 MB uncapped) raises once 128k characters are out; the
    render never holds more than the cap."""
    import tracemalloc

    looping = _with(critique=DEFAULT_SOURCES.critique + "{{ question }}" * 1000)
    t = Template(name="loop", version="loop@1", sources=looping).with_cap(128_000)
    question = "q" * 40_000
    tracemalloc.start()
    try:
        with pytest.raises(PromptTooLong, match="critique prompt is longer than CGD_MAX_PROMPT"):
            t.critique(question, "a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak  # the pieces up to the cap (~128 KB), not 40 MB


def test_the_cap_counts_every_message_of_a_request() -> None:
    t = get_template("cgd")
    refine = t.refine("q" * 1000, "a" * 1000, "c" * 1000)
    total = prompt_chars(refine)
    assert prompt_chars(t.with_cap(total).refine("q" * 1000, "a" * 1000, "c" * 1000)) == total
    with pytest.raises(PromptTooLong, match="refine prompt"):  # the critique is one of them
        t.with_cap(total - 1).refine("q" * 1000, "a" * 1000, "c" * 1000)
    with pytest.raises(PromptTooLong, match="probe prompt"):
        t.with_cap(999).probe("q" * 1000)
    with pytest.raises(PromptTooLong, match="solve prompt"):
        t.with_cap(1000).solve("q" * 1000)
    assert t.max_chars is None and t.with_cap(5).max_chars == 5  # a copy; the original uncapped
