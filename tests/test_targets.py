"""Issue 12: boxed targets in every mode, sft on worked solutions, meta-commentary filter,
solution-field detection, and the target counts a card shows."""

from __future__ import annotations

import pytest

from cgd.curation.card import build_card, render_markdown
from cgd.curation.filters import Filters, first_failure, row_filters
from cgd.curation.formats import missing_field, target, target_with_note
from cgd.curation.meta import meta_commentary
from cgd.curation.synthetic import LINEAGE, make_triplet
from cgd.curation.target_stats import TargetStats
from cgd.curation.targets import boxed_target
from cgd.datasets.ingest import FieldMap

GSM8K_ANSWER = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = 72.\n#### 72"


@pytest.mark.parametrize(
    ("text", "answer", "expected", "note"),
    [
        ("So x = 3, and \\boxed{3}.", None, "So x = 3, and \\boxed{3}.", "kept"),
        (GSM8K_ANSWER, None, GSM8K_ANSWER.replace("#### 72", "\\boxed{72}"), "hashes"),
        ("\\frac{1}{2}", None, "\\boxed{\\frac{1}{2}}", "bare"),
        ("$18$", None, "\\boxed{18}", "bare"),
        ("We add.\nThe answer is 18.", None, "We add.\nThe answer is 18.\n\n"
         "The final answer is \\boxed{18}.", "appended"),
        ("Halve it: one half.\nDone.", "\\frac{1}{2}", "Halve it: one half.\nDone.\n\n"
         "The final answer is \\boxed{\\frac{1}{2}}.", "appended"),
        ("We cannot tell.\nNo value.", None, "We cannot tell.\nNo value.", "free_form"),
        ("The answer is 18.", None, "The answer is 18.\n\nThe final answer is \\boxed{18}.",
         "appended"),  # one line but prose: its stated answer is boxed, not the whole line
        ("Plants make sugar from light.\nThey need 2 inputs.", None,
         "Plants make sugar from light.\nThey need 2 inputs.", "free_form"),  # no last number
        ("Paris", None, "Paris", "free_form"),
        ("Paris", "Paris", "\\boxed{Paris}", "bare"),  # given explicitly: boxed
        ("12 cm", None, "\\boxed{12 cm}", "bare"),
    ],
)  # fmt: skip
def test_boxed_target(text: str, answer: str | None, expected: str, note: str) -> None:
    assert boxed_target(text, answer) == (expected, note)


def test_every_answer_mode_ends_in_a_box_and_sft_prefers_the_solution() -> None:
    t = make_triplet(
        3,
        reference="\\frac{1}{2}",
        solution="Half of one is one half, so the answer is $\\boxed{\\frac{1}{2}}$.",
        refined_response="We add 3 and 7 to get 10.\nThe answer is 10.",
        teacher_solution="3 + 7 = 10\n#### 10",
    )
    assert target("sft", t) == t["solution"]  # the worked solution, not the bare answer
    assert target("cgd", t).endswith("\\boxed{10}.") and target("no-critique", t) == target(
        "cgd", t
    )
    assert target("distill", t) == "3 + 7 = 10\n\\boxed{10}"
    assert target("cft", t) == t["critique"]  # a critique: its verdict line, no box
    # No solution: the reference is the target (boxed); no reference either: sft is skipped.
    bare = make_triplet(4)
    assert target_with_note("sft", bare) == ("\\boxed{11}", "bare")
    assert missing_field("sft", make_triplet(5, reference=None)) == "reference"
    assert missing_field("distill", make_triplet(5, teacher_solution=None)) == "teacher_solution"


def test_card_counts_added_boxes_and_warns_on_bare_sft_targets() -> None:
    stats = TargetStats()
    rows = [make_triplet(i) for i in range(3)]  # bare references
    rows.append(make_triplet(9, reference=GSM8K_ANSWER))
    rows.append(make_triplet(10, solution="Ten it is.\nSo \\boxed{17}.", reference="17"))
    for r in rows:
        stats.observe(r)
    counts = stats.result()
    assert counts["sft"] == {"rows": 5, "bare": 3, "hashes": 1, "kept": 1}
    assert counts["sft_source"] == {"bare_answer": 3, "reference": 1, "solution": 1}
    assert counts["cgd"] == {"rows": 5, "kept": 5}
    lineage = {"job-1": LINEAGE, "job-2": {**LINEAGE, "teacher_solution": False}}
    card = build_card(
        name="t",
        spec={},
        stats={"output": 5, "targets": counts},
        content_hash="x",
        lineage=lineage,
    )
    assert any("3 of 5 sft targets are bare answers" in w for w in card["warnings"])
    assert any("distill is unavailable" in w and "job-2" in w for w in card["warnings"])
    md = render_markdown(card)
    assert "> **Warning:** 3 of 5 sft targets" in md and "| `sft` | 5 | 1 | 1 | 3 | 0 | 0 |" in md


# Refined answers that talk about the student or the critique, and ones that do not.
META = [
    ("The student's mistake was in step 2. The correct sum is \\boxed{10}.", ["student"]),
    ("As the critique points out, 3 + 7 = 10, so \\boxed{10}.", ["critique"]),
    ("Here is the corrected solution: 3 + 7 = \\boxed{10}.", ["correction"]),
    ("The initial answer added 5 instead of 7; 3 + 7 = \\boxed{10}.", ["earlier_answer"]),
    ("As noted above, we must add 7: \\boxed{10}.", ["reference_to_review"]),
    ("Following your review, I recompute: \\boxed{10}.", ["critique"]),
]
CLEAN = [
    "We add 3 and 7 to get \\boxed{10}.",
    "First, we review the formula for the area of a circle: A = \\pi r^2 = \\boxed{4\\pi}.",
    "The first answer choice is too small, so the answer is \\boxed{C}.",
]


@pytest.mark.parametrize(("text", "hits"), META)
def test_meta_commentary_is_found(text: str, hits: list[str]) -> None:
    assert meta_commentary(text, "Tom has 3 apples and buys 7 more. How many?") == hits


@pytest.mark.parametrize("text", CLEAN)
def test_plain_solutions_are_not_meta_commentary(text: str) -> None:
    assert meta_commentary(text, "What is the area?") == []


def test_a_question_about_a_student_may_have_an_answer_about_one() -> None:
    q = "A student reads 12 pages a day. How many pages does the student read in 5 days?"
    assert meta_commentary("The student reads 12 * 5 = \\boxed{60} pages.", q) == []


def test_meta_commentary_filter_is_off_by_default_and_on_when_asked() -> None:
    chatty = make_triplet(1, refined_response=META[0][0])
    assert first_failure(chatty, row_filters(Filters())) is None
    on = row_filters(Filters(no_meta_commentary=True))
    assert first_failure(chatty, on) == "meta_commentary"
    assert first_failure(make_triplet(2), on) is None
    assert first_failure(chatty, row_filters(Filters(no_meta_commentary=False))) is None
    assert first_failure(chatty, row_filters(Filters(no_meta_commentary=None))) is None


@pytest.mark.parametrize(
    ("first", "reference", "solution"),
    [
        ({"problem": "q", "answer": "1/2", "solution": "s"}, "answer", "solution"),  # MATH
        ({"question": "q", "answer": "... #### 72"}, "answer", None),  # GSM8K: answer only
        ({"problem": "q", "solution": "s"}, "solution", None),  # solution is the reference
    ],
)
def test_default_fields_keep_answer_and_solution(
    first: dict[str, str], reference: str, solution: str | None
) -> None:
    fields = FieldMap()
    fields.resolve(first, 1)
    assert (fields.reference_field, fields.solution_field) == (reference, solution)
