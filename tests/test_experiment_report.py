"""The experiment report: paired bootstrap intervals, unbiased pass@k, and honest wording."""

from __future__ import annotations

import math
import random
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from cgd.experiments.report import NO_DIFFERENCE, RunResult, build_report, to_markdown, to_svg
from cgd.experiments.stats import paired_bootstrap


def _run(mode: str, seed: int, correct: list[bool], **extra: Any) -> RunResult:
    ids = [f"p{i}" for i in range(len(correct))]
    problems = {"ids": ids, "correct": correct, "no_answer": [False] * len(correct), "k": 1}
    problems.update(extra.pop("problems", {}))
    return RunResult(
        run_id=f"{mode}-{seed}",
        mode=mode,
        seed=seed,
        status="completed",
        data={"rows": 40, "rows_sha256": "abc", "total_steps": 5, "dropped": {}},
        eval={"problems": {"math500": problems}},
        tokens_trained=1000,
        wall_s=3.0,
        **extra,
    )


def test_intervals_contain_the_estimate_and_identical_modes_do_not_differ() -> None:
    rng = random.Random(1)
    a = [float(rng.random() < 0.5) for _ in range(60)]
    per_mode, diffs = paired_bootstrap({"cgd": a, "sft": list(a)}, "cgd", resamples=500)
    for iv in per_mode.values():
        assert iv.low <= iv.estimate <= iv.high
        assert iv.estimate == pytest.approx(sum(a) / len(a))
    # Same answers on the same problems: every paired resample differs by exactly 0.
    assert diffs["sft"].as_dict() == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    assert not diffs["sft"].significant


def test_pairing_makes_a_consistent_small_gain_significant() -> None:
    """B solves everything A solves plus 6 more of 200 problems. Unpaired, two ~±7-point
    intervals overlap completely; paired, the difference's interval excludes 0."""
    rng = random.Random(2)
    a = [float(rng.random() < 0.5) for _ in range(200)]
    b = list(a)
    flipped = [i for i, x in enumerate(a) if x == 0][:6]
    for i in flipped:
        b[i] = 1.0
    per_mode, diffs = paired_bootstrap({"cgd": b, "sft": a}, "cgd", resamples=1000)
    assert per_mode["cgd"].low < per_mode["sft"].high  # the separate intervals overlap
    d = diffs["sft"]
    assert d.estimate == pytest.approx(-6 / 200)
    assert d.high < 0 and d.significant


def test_report_equals_recomputation_and_words_ties_honestly() -> None:
    rng = random.Random(3)
    base = [rng.random() < 0.6 for _ in range(50)]
    runs = [
        _run("cgd", 0, base),
        _run("cgd", 1, [not x if i < 5 else x for i, x in enumerate(base)]),
        _run("sft", 0, [not x if i % 10 == 0 else x for i, x in enumerate(base)]),
        _run("distill", 0, [True] * 50),
        RunResult("x", "cft", 0, "failed"),
    ]
    report = build_report(runs, resamples=500)
    rows = {r["mode"]: r for r in report["sets"]["math500"]}
    # Seeds average per problem before the mean: cgd = mean of the two runs' accuracies.
    cgd_expected = (
        sum(runs[0].eval["problems"]["math500"]["correct"])
        + sum(runs[1].eval["problems"]["math500"]["correct"])
    ) / 100
    assert rows["cgd"]["accuracy"]["estimate"] == pytest.approx(cgd_expected)
    assert rows["cgd"]["seeds"] == [0, 1] and rows["cgd"]["verdict"] == "baseline"
    sft_acc = sum(runs[2].eval["problems"]["math500"]["correct"]) / 50
    assert rows["sft"]["accuracy"]["estimate"] == pytest.approx(sft_acc)
    assert rows["sft"]["diff_vs_baseline"]["estimate"] == pytest.approx(sft_acc - cgd_expected)
    for r in rows.values():
        acc = r["accuracy"]
        assert acc["low"] <= acc["estimate"] <= acc["high"]
    assert rows["sft"]["verdict"] == NO_DIFFERENCE  # 5 flips either way among 50: a tie
    assert rows["distill"]["verdict"] == "better than cgd"
    assert report["runs_not_completed"] == [
        {"run_id": "x", "mode": "cft", "seed": 0, "status": "failed"}
    ]
    assert report["fairness"]["same_rows"] and report["fairness"]["same_steps"]
    md = to_markdown(report)
    assert NO_DIFFERENCE in md and "| distill |" in md and "Same training rows" in md
    svg = ET.fromstring(to_svg(report))
    assert len(svg.findall("{http://www.w3.org/2000/svg}rect")) >= 3


def test_sampled_sets_report_unbiased_pass_at_k() -> None:
    """Two problems, n = 5 samples, k = 2: pass@2 = mean of 1 - C(n-c,2)/C(n,2)."""
    samples = [[True, False, False, True, False], [False] * 5]
    run = _run("cgd", 0, [True, False], problems={"samples": samples, "k": 2})
    row = build_report([run], resamples=100)["sets"]["math500"][0]
    closed = (1 - math.comb(3, 2) / math.comb(5, 2) + 0.0) / 2
    assert row["pass_at_k"] == pytest.approx(closed)  # 0.35, not "any of 2" on one draw
    assert row["avg_at_k"] == pytest.approx((2 / 5 + 0) / 2)


def test_different_rows_or_steps_are_flagged() -> None:
    a = _run("cgd", 0, [True, False])
    b = _run("sft", 0, [True, True])
    b.data = {**b.data, "rows_sha256": "other", "total_steps": 6}
    report = build_report([a, b], resamples=50)
    assert not report["fairness"]["same_rows"] and not report["fairness"]["same_steps"]
    assert "Same training rows in every run: NO" in to_markdown(report)


def test_modes_scoring_different_problem_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="different problem counts"):
        paired_bootstrap({"cgd": [1.0, 0.0], "sft": [1.0]}, "cgd")


def test_a_malformed_eval_leaves_its_set_out_instead_of_failing() -> None:
    """The report reads what trainers posted; a broken event must not break the report."""
    good = _run("cgd", 0, [True, False])
    bad = _run("sft", 0, [True, False])
    bad.eval["problems"]["math500"] = {"ids": ["p0"], "correct": [True, False]}  # lengths differ
    assert build_report([good, bad], resamples=10)["sets"] == {}
    odd = _run("cgd", 0, [True], problems={"samples": [[True]], "k": 4})  # fewer samples than k
    row = build_report([odd], resamples=10)["sets"]["math500"][0]
    assert row["pass_at_k"] is None and row["accuracy"]["estimate"] == 1.0
