"""Issue 23 (departures 1, 2, 5): the default prompts follow the paper, targets never get an
invented box, and the verdict is read from the verdict line only."""

from __future__ import annotations

import pytest

from cgd.curation.card import build_card, render_markdown
from cgd.curation.filters import CurationSpec
from cgd.curation.snapshot import curate
from cgd.curation.synthetic import LINEAGE, make_triplet
from cgd.curation.target_stats import TargetStats
from cgd.curation.targets import boxed_target
from cgd.templates import TEMPLATES, get_template, parse_verdict
from cgd.templates.core import VERDICT_LINES

# --- 1. default prompts ------------------------------------------------------------------------


def test_default_template_asks_for_a_detailed_critique_and_an_improved_answer() -> None:
    t = get_template("cgd")
    assert t.version == "cgd-v3"
    critique = t.critique("What is 2+2?", "It is 5.")[1]["content"]
    assert "detailed critique of the student's answer" in critique
    assert "Do not write a full corrected solution" not in critique
    assert all(f"`{line}`" in critique for line in VERDICT_LINES)
    refine = t.refine("What is 2+2?", "It is 5.", "Wrong sum.\nConclusion: wrong")[-1]["content"]
    assert "improved answer" in refine and "corrects the inaccuracies in the student's" in refine
    # The old instruction never to mention the student is gone from the default.
    assert "standalone" not in refine and "do not mention the student" not in refine
    assert "\\boxed{}" in refine


def test_the_former_default_stays_available_under_its_own_name() -> None:
    old = get_template("cgd-standalone")
    assert old.version == "cgd-v2"  # the very texts earlier `cgd` jobs recorded as cgd-v2
    refine = old.refine("Q?", "A.", "C.\nConclusion: wrong")[-1]["content"]
    assert "standalone" in refine and "do not mention the student" in refine
    assert "Do not write a full corrected solution" in old.critique("Q?", "A.")[1]["content"]
    # A job pinned to cgd-v2 before the default changed resumes with the cgd-v2 texts.
    from cgd.templates.builtin import BUILTIN_VERSIONS

    assert BUILTIN_VERSIONS["cgd-v2"] is old and BUILTIN_VERSIONS["cgd-v3"] is TEMPLATES["cgd"]


def test_a_job_created_under_the_old_default_resumes_with_its_texts() -> None:
    from sqlalchemy.orm import Session

    from cgd.db.models import Job
    from cgd.templates.ops import template_for_job

    # A built-in needs no database row, so no session is opened.
    with Session() as session:
        old = Job(template_id=None, template_version="cgd-v2", spec={"template": "cgd"})
        assert template_for_job(session, old) is get_template("cgd-standalone")
        new = Job(template_id=None, template_version="cgd-v3", spec={"template": "cgd"})
        assert template_for_job(session, new) is get_template("cgd")


def test_meta_commentary_filter_is_off_by_default_but_stated_on_the_card() -> None:
    chatty = make_triplet(1, refined_response="The student's mistake was 5; 3 + 7 = \\boxed{10}.")
    rows = [chatty, make_triplet(2)]
    plain = curate(rows, {})
    assert len(plain.selected) == 2 and "meta_commentary" not in plain.stats["dropped"]
    strict = curate(rows, {"filters": {"no_meta_commentary": True}})
    assert strict.stats["dropped"]["meta_commentary"] == 1

    card = build_card(
        name="t", spec={}, stats=plain.stats, content_hash="x", lineage={"job-1": LINEAGE}
    )
    steps = {s["step"]: s for s in card["filters"]}
    assert steps["meta_commentary"] == {
        "step": "meta_commentary",
        "option": "filters.no_meta_commentary",
        "setting": None,
        "applied": False,
        "default": True,
    }
    assert steps["incomplete"]["applied"] and steps["repeated_triplet"]["applied"]
    assert all(
        not s["applied"] for n, s in steps.items() if n not in ("incomplete", "repeated_triplet")
    )
    md = render_markdown(card)
    assert "| meta_commentary | `filters.no_meta_commentary` | null (default) | no |" in md
    asked = build_card(
        name="t",
        spec=CurationSpec(filters={"no_meta_commentary": True, "min_chars": 5}),  # type: ignore[arg-type]
        stats=strict.stats,
        content_hash="x",
        lineage={},
    )
    on = {s["step"]: s for s in asked["filters"]}
    assert on["meta_commentary"]["applied"] and not on["meta_commentary"]["default"]
    assert on["too_short"]["setting"] == 5 and on["too_short"]["applied"]
    assert "| meta_commentary | `filters.no_meta_commentary` | true | yes |" in render_markdown(
        asked
    )


# --- 2. no invented boxes -----------------------------------------------------------------------

PHOTOSYNTHESIS = (
    "Photosynthesis turns light energy into chemical energy.\n"
    "Plants take in water and carbon dioxide, and release oxygen in 2 stages."
)


@pytest.mark.parametrize(
    ("text", "answer", "note"),
    [
        (PHOTOSYNTHESIS, None, "free_form"),  # was `\boxed{2}` (its last number)
        ("Yes, because the set is closed.\nIt contains 3 points.", None, "free_form"),
        ("The answer is that the cell divides.\nMitosis has 4 phases.", None, "free_form"),
        ("Mitochondria", None, "free_form"),  # a one-line prose answer is no math answer
    ],
)
def test_free_form_answers_are_never_boxed(text: str, answer: str | None, note: str) -> None:
    assert boxed_target(text, answer) == (text, note)


def test_numbers_stated_answers_and_given_references_are_still_boxed() -> None:
    assert boxed_target("42") == ("\\boxed{42}", "bare")
    assert boxed_target("-2.5") == ("\\boxed{-2.5}", "bare")
    assert boxed_target("We add.\nSo the answer is 7.") == (
        "We add.\nSo the answer is 7.\n\nThe final answer is \\boxed{7}.",
        "appended",
    )
    # A reference given explicitly is boxed even when it is not a number.
    assert boxed_target(PHOTOSYNTHESIS, "light to chemical energy")[1] == "appended"


def test_free_form_targets_are_counted_and_shown_on_the_card() -> None:
    stats = TargetStats()
    stats.observe(make_triplet(1, refined_response=PHOTOSYNTHESIS))
    stats.observe(make_triplet(2))
    counts = stats.result()
    assert counts["cgd"] == {"rows": 2, "kept": 1, "free_form": 1}
    card = build_card(name="t", spec={}, stats={"targets": counts}, content_hash="x", lineage={})
    assert any(w.startswith("1 cgd targets are free-form answers") for w in card["warnings"])
    md = render_markdown(card)
    assert "| mode | rows | kept | hashes | bare | appended | free_form |" in md
    assert "| `cgd` | 2 | 1 | 0 | 0 | 0 | 1 |" in md
    # A card of an older snapshot still shows its `unboxed` count.
    legacy = {"cgd": {"rows": 1, "unboxed": 1}}
    old = build_card(name="t", spec={}, stats={"targets": legacy}, content_hash="x", lineage={})
    assert "| `cgd` | 1 | 0 | 0 | 0 | 0 | 0 | 1 |" in render_markdown(old)


# --- 5. verdict parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Step 2 is off.\nConclusion: The answer is wrong", "wrong"),  # was None
        ("Conclusion: wrong, although step 1 is correct as stated", "wrong"),
        # The second "conclusion, correct" made the old last-match parser say right.
        ("Conclusion: wrong (the student's conclusion, correct as stated, has the wrong sign)",
         "wrong"),
        ("Conclusion: The final answer is correct.", "right"),
        ("**Conclusion:** Wrong", "wrong"),
        ("**Conclusion**: Correct.", "right"),
        ("Conclusion: right.", "right"),
        ("conclusion: wrong", "wrong"),
        ("Conclusion - Right", "right"),
        ("Conclusion: not correct", "wrong"),
        ("Conclusion: The student's answer isn't right.", "wrong"),
        ("Conclusion: nothing wrong here, the answer holds.", "right"),
        ("> Conclusion: `wrong`", "wrong"),
        ("**Conclusion:**\nWrong.", "wrong"),  # the label alone, the verdict on the next line
        # A quoted verdict mid-text does not count; the last verdict line does.
        ('The student ended with "Conclusion: right", but 2+2=4.\nConclusion: wrong', "wrong"),
        ("Conclusion: right\nOn reflection, step 3 fails.\nConclusion: wrong", "wrong"),
        ("Conclusion: wrong\nEverything else is right.", "wrong"),  # later text is no verdict
        ("The sum is wrong: 3 is not 4. Conclusion: wrong", "wrong"),  # one-paragraph critique
        # Ambiguous or missing: None.
        ("Looks fine.\nConclusion: right / Conclusion: wrong", None),  # the instruction echoed
        ("Conclusion: right or wrong, hard to say", None),
        ("Conclusion: partially correct", None),
        ("Conclusion: correct?", None),
        ("Conclusion: unclear", None),
        ("The answer is wrong.", None),
        ("In conclusion, the answer is right. More text follows.", None),
    ],
)  # fmt: skip
def test_verdict_is_read_from_the_verdict_line(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


def test_simulator_critiques_parse_to_their_verdict() -> None:
    from cgd.simulator.answers import Answerer, classify
    from cgd.simulator.config import SimConfig

    answerer = Answerer({"What is 2+2?": "4"})
    cfg = SimConfig(no_verdict_rate=0.0)
    t = get_template("cgd")
    for answer, want in (("So \\boxed{4}.", "right"), ("So \\boxed{5}.", "wrong")):
        parsed = classify(t.critique("What is 2+2?", answer))
        assert parse_verdict(answerer.answer(parsed, "teacher", 0, cfg)) == want
