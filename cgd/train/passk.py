"""Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

From ``n`` samples of a problem of which ``c`` are correct, the probability that at least one of
``k`` samples drawn without replacement is correct is ``1 - C(n-c, k) / C(n, k)``. Averaged over
problems this estimates pass@k without the upward bias of "any of exactly k samples", and lets
``n > k`` samples reduce its variance. Pure functions: the experiments report imports them.
"""

from __future__ import annotations

from collections.abc import Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct among ``n`` samples."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: c={c} must be between 0 and n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: k={k} must be between 1 and n={n}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i): the ratio of binomials without big integers.
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_pass_at_k(samples: Sequence[Sequence[bool]], k: int) -> float:
    """pass@k averaged over problems, each given as its list of per-sample verdicts."""
    if not samples:
        return float("nan")
    return sum(pass_at_k(len(s), sum(bool(x) for x in s), k) for s in samples) / len(samples)


def avg_at_k(samples: Sequence[Sequence[bool]]) -> float:
    """Mean accuracy over all samples of every problem (avg@k), problems weighted equally."""
    if not samples:
        return float("nan")
    return sum(sum(bool(x) for x in s) / max(1, len(s)) for s in samples) / len(samples)
