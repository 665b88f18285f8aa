"""Refinement uncertainty (docs/method.md, "Refinement uncertainty"; the definition is ours,
the paper's is not public).

H(cond) = mean over samples of (1/|ŷ|) Σ_t H(p(· | cond, ŷ_<t)), teacher-forced on the refined
answer ŷ, for cond = (x, y') (mode ``no-critique``) and cond = (x, y', c) (mode ``cgd``). The gap
H(x, y') − H(x, y', c) says how much the student uses the critique; training should lower both.
ŷ includes the end-of-turn token.

Reported first: the NLL gap NLL(ŷ | x, y') − NLL(ŷ | x, y', c), which needs the refined answer to
be *likely*, not just predicted with confidence: entropy also drops when the model becomes
confidently wrong. Measured on held-out rows (the validation split, or a slice of the export the
trainer never trains on), so it says how the student uses critiques it has not memorised.
"""

from __future__ import annotations

from typing import Any

import torch

from cgd.enums import ExportMode
from cgd.train.data import SampleBuilder, collate
from cgd.train.model import CausalLM, token_entropy_and_nll
from cgd.train.runtime import Runtime


@torch.no_grad()
def refinement_uncertainty(
    model: CausalLM,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    *,
    max_length: int,
    runtime: Runtime,
) -> dict[str, float]:
    """Mean per-token entropy and NLL of ŷ with and without the critique, over native ``rows``."""
    with_critique = SampleBuilder(tokenizer, max_length, mode="cgd", layout="native")
    without = SampleBuilder(tokenizer, max_length, mode=ExportMode.no_critique, layout="native")
    sums = {"entropy_with": 0.0, "entropy_without": 0.0, "nll_with": 0.0, "nll_without": 0.0}
    n = 0
    was_training = model.training
    model.eval()
    for row in rows:
        a, b = with_critique.build(row), without.build(row)
        if a is None or b is None:
            continue
        for key, sample in (("with", a), ("without", b)):
            batch = collate([[sample]], tokenizer.pad_token_id).to(runtime.device)
            with runtime.autocast():
                entropy, nll = token_entropy_and_nll(model, batch)  # (|ŷ|,), (|ŷ|,)
            sums[f"entropy_{key}"] += entropy.mean().item()
            sums[f"nll_{key}"] += nll.mean().item()
        n += 1
    model.train(was_training)
    if n == 0:
        return {"uncertainty_samples": 0}
    mean = {k: v / n for k, v in sums.items()}
    return {
        "nll_gap": mean["nll_without"] - mean["nll_with"],
        "nll_with_critique": mean["nll_with"],
        "nll_without_critique": mean["nll_without"],
        "entropy_gap": mean["entropy_without"] - mean["entropy_with"],
        "entropy_with_critique": mean["entropy_with"],
        "entropy_without_critique": mean["entropy_without"],
        "uncertainty_samples": n,
    }
