"""Per-triplet filters, verdict ratio and the spec model (cgd.curation.filters via curate)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cgd.curation.filters import CurationSpec, VerdictRatio, verdict_quota
from cgd.curation.snapshot import curate
from cgd.curation.synthetic import make_triplet

# Off explicitly where a test counts other steps exactly (it is off by default since cgd-v3, and
# these tests must not depend on that default).
OFF = {"no_meta_commentary": False}


def _ids(result) -> set[str]:
    return {s.triplet_id for s in result.selected}


def _check_totals(result) -> None:
    stats = result.stats
    assert stats["input"] == stats["output"] + sum(stats["dropped"].values())
    assert stats["output"] == stats["train"] + stats["val"] == len(result.selected)
    assert len(result.dropped) == sum(stats["dropped"].values())


def test_empty_spec_keeps_completed_and_drops_incomplete() -> None:
    rows = [make_triplet(i) for i in range(5)]
    rows += [
        make_triplet(10, status="failed", error="teacher timeout", refined_response=None),
        make_triplet(11, status="pending", refined_response=None),
        make_triplet(12, status="verified", refined_response=""),
        make_triplet(13, status="critiqued"),
    ]
    result = curate(rows, {})
    # No filter is on by default (meta_commentary was, before the cgd-v3 refine turn).
    assert result.stats["dropped"] == {"incomplete": 4}
    assert _ids(result) == {f"trip-{i:06d}-0" for i in range(5)}
    assert result.stats["train"] == 5 and result.stats["val"] == 0
    _check_totals(result)


@pytest.mark.parametrize(
    ("filters", "planted", "reason"),
    [
        ({"no_truncation": True}, {"truncated": True}, "truncated"),
        ({"refined_correct": True}, {"refined_correct": False}, "refined_correct"),
        ({"refined_correct": True}, {"refined_correct": None}, "refined_correct"),
        ({"initial_correct": False}, {"initial_correct": True}, "initial_correct"),
        ({"verdict_agrees": True}, {"verdict": "right"}, "verdict_agrees"),  # initial is wrong
        ({"verdict_agrees": True}, {"verdict": None}, "verdict_agrees"),
        ({"require_boxed": True}, {"refined_response": "It is 12."}, "no_boxed"),
        ({"min_chars": 20}, {"refined_response": "\\boxed{1}"}, "too_short"),
        ({"max_chars": 100}, {"refined_response": "x" * 101 + "\\boxed{1}"}, "too_long"),
    ],
)
def test_each_filter_counts_its_drops(filters: dict, planted: dict, reason: str) -> None:
    rows = [make_triplet(i) for i in range(6)] + [
        make_triplet(100 + i, **planted) for i in range(3)
    ]
    result = curate(rows, {"filters": {**filters, **OFF}})
    assert result.stats["dropped"] == {"incomplete": 0, reason: 3}
    assert _ids(result) == {f"trip-{i:06d}-0" for i in range(6)}
    assert {d["reason"] for d in result.dropped} == {reason}
    assert {d["item_id"] for d in result.dropped} == {f"item-{100 + i:06d}" for i in range(3)}
    _check_totals(result)


def test_false_keeps_the_other_side() -> None:
    rows = [
        make_triplet(0),
        make_triplet(1, refined_correct=False),
        make_triplet(2, truncated=True),
    ]
    result = curate(rows, {"filters": {"refined_correct": False, "no_truncation": False, **OFF}})
    assert _ids(result) == {"trip-000001-0"}  # no_truncation=false is "off", not "only truncated"
    assert result.stats["dropped"] == {"incomplete": 0, "refined_correct": 2}


def test_a_triplet_is_counted_under_the_first_failing_step_only() -> None:
    bad = make_triplet(1, truncated=True, refined_correct=False, refined_response="no box")
    result = curate(
        [make_triplet(0), bad],
        {
            "filters": {
                "no_truncation": True,
                "refined_correct": True,
                "require_boxed": True,
                **OFF,
            }
        },
    )
    assert result.stats["dropped"] == {
        "incomplete": 0,
        "truncated": 1,
        "refined_correct": 0,
        "no_boxed": 0,
    }


def test_verdict_agrees_false_keeps_disagreements() -> None:
    rows = [
        make_triplet(0, verdict="wrong", initial_correct=False),  # agrees
        make_triplet(1, verdict="right", initial_correct=True),  # agrees
        make_triplet(2, verdict="right", initial_correct=False),  # disagrees
        make_triplet(3, verdict="wrong", initial_correct=None),  # unknown
    ]
    result = curate(rows, {"filters": {"verdict_agrees": False}})
    assert _ids(result) == {"trip-000002-0"}
    assert result.stats["dropped"]["verdict_agrees"] == 3


@pytest.mark.parametrize(
    ("right", "wrong", "kept_right", "kept_wrong"),
    [(100, 0, 30, 0), (0, 100, 0, 70), (50, 50, 30, 30), (30, 70, 30, 70), (25, 75, 23, 70)],
)
def test_verdict_ratio(right: int, wrong: int, kept_right: int, kept_wrong: int) -> None:
    rows = [make_triplet(i, verdict="right", initial_correct=True) for i in range(30)]
    rows += [make_triplet(100 + i, verdict="wrong") for i in range(70)]
    rows += [make_triplet(500 + i, verdict=None) for i in range(4)]
    result = curate(rows, {"filters": {"verdict_ratio": {"right": right, "wrong": wrong}}})
    by_id = {r["triplet_id"]: r["verdict"] for r in rows}
    verdicts = [by_id[s.triplet_id] for s in result.selected]
    assert verdicts.count("right") == kept_right
    assert verdicts.count("wrong") == kept_wrong
    dropped = result.stats["dropped"]
    assert dropped["no_verdict"] == 4
    assert dropped["verdict_ratio"] == 100 - kept_right - kept_wrong
    _check_totals(result)
    # The subsample is a function of the ids, not of the input order.
    again = curate(
        list(reversed(rows)), {"filters": {"verdict_ratio": {"right": right, "wrong": wrong}}}
    )
    assert again.selected == result.selected


def test_verdict_quota_exact_fractions() -> None:
    assert verdict_quota(10, 20, VerdictRatio(right=1, wrong=2)) == (10, 20)
    assert verdict_quota(10, 20, VerdictRatio(right=0.5, wrong=0.5)) == (10, 10)
    assert verdict_quota(0, 20, VerdictRatio(right=1, wrong=1)) == (0, 0)


def test_spec_validation() -> None:
    contract_body = {
        "name": "gsm8k-cgd-v1",
        "job_ids": ["j1"],
        "filters": {
            "refined_correct": True,
            "initial_correct": None,
            "verdict_agrees": None,
            "no_truncation": True,
            "require_boxed": False,
            "min_chars": None,
            "max_chars": None,
            "verdict_ratio": None,
        },
        "dedup": {"exact": True, "near_threshold": None},
        "decontaminate": {"sets": ["math500", "amc23", "aime24"], "dataset_ids": [], "ngram": 13},
        "split": {"val_fraction": 0.0, "seed": 0},
    }
    spec = CurationSpec.model_validate(contract_body)
    assert spec.decontaminate.sets == ["aime24", "amc23", "math500"]  # canonical order
    assert CurationSpec.model_validate({"dedup": None}).dedup.exact is None
    for bad in (
        {"filters": {"refined_corect": True}},  # typo must not silently disable a filter
        {"filters": {"verdict_ratio": {"right": 0, "wrong": 0}}},
        {"filters": {"min_chars": 10, "max_chars": 5}},
        {"dedup": {"near_threshold": 1.5}},
        {"decontaminate": {"sets": ["gsm8k"]}},
        {"split": {"val_fraction": -0.1}},
    ):
        with pytest.raises(ValidationError):
            CurationSpec.model_validate(bad)
