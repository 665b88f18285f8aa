"""Synthetic triplets for tests, benchmarks and demos (never for training)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

LINEAGE: dict[str, Any] = {
    "job_id": "job-1",
    "student": {"model": "student-model", "temperature": 0.0, "max_tokens": 4096},
    "teacher": {"model": "teacher-model", "temperature": 0.7, "max_tokens": 8192},
    "template": "cgd",
    "template_version": "cgd-v1",
    "verifier": "math",
    "teacher_solution": True,
}


def make_triplet(n: int = 0, **overrides: Any) -> dict[str, Any]:
    """A complete, verified triplet for item ``item-{n:06d}``; keyword arguments replace fields."""
    t: dict[str, Any] = {
        "triplet_id": f"trip-{n:06d}-0",
        "job_id": "job-1",
        "item_id": f"item-{n:06d}",
        "sample": 0,
        "prompt": f"Tom has {n} apples and buys 7 more at the market. How many apples now?",
        "reference": f"{n + 7}",
        "solution": None,
        "initial_response": f"Tom has {n} + 5 = {n + 5} apples. The answer is {n + 5}.",
        "critique": "The student added 5 instead of 7.\nConclusion: wrong",
        "verdict": "wrong",
        "refined_response": f"Tom has {n} + 7 = {n + 7} apples. \\boxed{{{n + 7}}}",
        "teacher_solution": f"{n} + 7 = {n + 7}, so Tom has \\boxed{{{n + 7}}} apples.",
        "initial_correct": False,
        "refined_correct": True,
        "status": "verified",
        "error": None,
        "truncated": False,
        "lineage": LINEAGE,
    }
    t.update(overrides)
    return t


# fmt: off
_WORDS = (
    "the", "a", "of", "to", "and", "in", "is", "that", "for", "it", "as", "with", "was", "on",
    "be", "by", "this", "are", "or", "at", "from", "which", "number", "sum", "product", "equation",
    "value", "find", "compute", "total", "apples", "train", "speed", "hours", "minutes",
    "triangle", "angle", "side", "length", "area", "circle", "radius", "integer", "prime",
    "divisible", "remainder", "fraction", "ratio", "percent", "price", "cost", "each", "more",
    "less", "than", "twice", "half", "step", "therefore", "so", "we", "get", "thus", "answer",
)
# fmt: on


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        w = rng.choice(_WORDS) if rng.random() < 0.85 else str(rng.randrange(10_000))
        words.append(w)
        size += len(w) + 1
    return " ".join(words)


def synthetic_triplets(
    n: int, prompt_chars: int = 300, answer_chars: int = 1000, pool: int = 2048, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """``n`` triplets with realistic text lengths, generated lazily.

    Texts come from a pool of ``pool`` random word sequences per field so generating them does not
    dominate an export benchmark; ids are unique per row.
    """
    rng = random.Random(seed)
    prompts = [_text(rng, prompt_chars) for _ in range(pool)]
    answers = [_text(rng, answer_chars) for _ in range(pool)]
    critiques = [_text(rng, answer_chars // 2) + "\nConclusion: wrong" for _ in range(pool)]
    for i in range(n):
        yield {
            "triplet_id": f"trip-{i:07d}",
            "job_id": "job-1",
            "item_id": f"item-{i // 2:07d}",
            "sample": i % 2,
            "prompt": prompts[(i // 2) % pool],
            "reference": str(i % 977),
            "initial_response": answers[i % pool],
            "critique": critiques[(i * 7) % pool],
            "verdict": "wrong",
            "refined_response": answers[(i * 13 + 1) % pool] + f" \\boxed{{{i % 977}}}",
            "teacher_solution": answers[(i * 17 + 3) % pool] + f" \\boxed{{{i % 977}}}",
            "initial_correct": False,
            "refined_correct": True,
            "status": "verified",
            "error": None,
            "truncated": False,
            "lineage": LINEAGE,
        }
