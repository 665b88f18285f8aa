"""Paired bootstrap intervals for comparing training modes on the same eval problems.

Every mode is evaluated on the same problems, so the honest interval for "mode A minus mode B"
resamples *problems* and computes both modes' accuracies on the same resample: the problems'
shared difficulty cancels out and the interval is much narrower than two independent intervals
would suggest. Pure Python (no numpy in the core install); seeded, so a report is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def significant(self) -> bool:
        """For a difference: its interval excludes 0."""
        return not self.contains(0.0)

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def paired_bootstrap(
    scores: Mapping[str, Sequence[float]],
    baseline: str | None,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[dict[str, Interval], dict[str, Interval]]:
    """Intervals for each mode's mean score and for each mode's difference from ``baseline``.

    ``scores[mode][i]`` is the score of problem ``i`` (0/1, or a mean over seeds); every mode
    must list the same problems in the same order. The point estimate is the plain mean on all
    problems; the interval is the percentile interval of the resampled means (differences use
    the same resampled problems for both modes)."""
    modes = list(scores)
    sizes = {len(scores[m]) for m in modes}
    if len(sizes) > 1:
        raise ValueError(f"paired_bootstrap: modes score different problem counts {sorted(sizes)}")
    if baseline is not None and baseline not in scores:
        raise ValueError(f"paired_bootstrap: baseline {baseline!r} is not among {modes}")
    n = sizes.pop() if sizes else 0
    means: dict[str, list[float]] = {m: [] for m in modes}
    diffs: dict[str, list[float]] = {m: [] for m in modes if m != baseline}
    rng = random.Random(seed)
    if n:
        for _ in range(resamples):
            idx = rng.choices(range(n), k=n)
            resampled = {m: sum(scores[m][i] for i in idx) / n for m in modes}
            for m in modes:
                means[m].append(resampled[m])
            if baseline is not None:
                for m in diffs:
                    diffs[m].append(resampled[m] - resampled[baseline])
    tail = (1.0 - confidence) / 2

    def interval(estimate: float, draws: list[float]) -> Interval:
        draws.sort()
        low, high = _percentile(draws, tail), _percentile(draws, 1.0 - tail)
        # A percentile interval can miss the point estimate when the resampled distribution is
        # very skewed (tiny sets); widen it to include the estimate rather than report nonsense.
        return Interval(estimate, min(low, estimate), max(high, estimate))

    per_mode = {m: interval(_mean(scores[m]), means[m]) for m in modes}
    differences: dict[str, Interval] = {}
    if baseline is not None:
        for m in diffs:
            estimate = _mean(scores[m]) - _mean(scores[baseline])
            differences[m] = interval(estimate, diffs[m])
    return per_mode, differences
