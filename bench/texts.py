"""Realistic text for benchmarks: varied words (a Zipf-distributed vocabulary of ~20,000 made-up
words, numbers and LaTeX bits), every row unique, and model answers in the forms they take.

Repeated sentences or a pool of a few thousand texts flatter Parquet (dictionary encoding and
compression then see the same strings again and again) and the verifier (short, clean answers);
these do not.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

_SYLLABLES = [a + b for a in "bcdfghklmnprstvwz" for b in ("a", "e", "i", "o", "u", "ou", "ai")]


def vocabulary(size: int = 20_000, seed: int = 0) -> tuple[list[str], list[float]]:
    """``size`` distinct made-up words and their cumulative Zipf weights (s = 1.1)."""
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((1, 2, 2, 3, 3, 4)))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    ordered[:40] = ["the", "a", "of", "to", "and", "is", "we", "so", "then", "that", "for",
                    "with", "as", "by", "each", "=", "+", "-", "\\frac{1}{2}", "x", "y", "n",
                    "total", "number", "step", "answer", "therefore", "let", "find", "value",
                    "sum", "product", "since", "which", "gives", "equals", "more", "less",
                    "twice", "half"]  # fmt: skip
    weights = [1.0 / (rank + 1) ** 1.1 for rank in range(size)]
    return ordered, list(itertools.accumulate(weights))


class TextGen:
    """Texts cut at random offsets from one long stream of Zipf-sampled words and numbers
    (300,000 words, ~2 MB): every row differs, no string repeats, and it is fast enough that the
    generator does not dominate a benchmark."""

    def __init__(self, seed: int = 0, stream_words: int = 300_000) -> None:
        self.rng = random.Random(seed)
        words, cum = vocabulary(seed=seed)
        stream = self.rng.choices(words, cum_weights=cum, k=stream_words)
        for i in range(4, stream_words, 9):
            stream[i] = str(self.rng.randrange(100_000))
        for i in range(0, stream_words, 23):
            stream[i] += "."
        self.stream = stream

    def text(self, chars: int) -> str:
        """About ``chars`` characters (~6.5 characters a word)."""
        n = max(1, chars // 6)
        start = self.rng.randrange(len(self.stream) - n)
        return " ".join(self.stream[start : start + n])


def realistic_triplets(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` unique triplets of ~3 KB (prompt ~300 chars, answers ~1,000, critique ~600)."""
    from cgd.curation.synthetic import LINEAGE

    gen = TextGen(seed)
    for i in range(n):
        final = str(gen.rng.randrange(1000))
        yield {
            "triplet_id": f"trip-{i:07d}", "job_id": "job-1", "item_id": f"item-{i:07d}",
            "sample": 0, "prompt": gen.text(300), "reference": final,
            "initial_response": gen.text(1000) + f" \\boxed{{{int(final) + 1}}}",
            "critique": gen.text(600) + "\nConclusion: wrong", "verdict": "wrong",
            "refined_response": gen.text(1000) + f" \\boxed{{{final}}}",
            "initial_correct": False, "refined_correct": True, "status": "verified",
            "error": None, "truncated": False, "lineage": LINEAGE,
        }  # fmt: skip


def answer_mix(final: str, wrong: str, gen: TextGen) -> tuple[str, bool | None]:
    """A model's answer to a question whose final answer is ``final``, in one of the forms
    answers really take, and whether it is right (None: it states no answer)."""
    body = gen.text(gen.rng.choice((300, 800, 1500)))
    r = gen.rng.random()
    if r < 0.35:
        return f"{body}\nTherefore, the final answer is $\\boxed{{{final}}}$.", True
    if r < 0.55:
        return f"{body}\nTherefore, the final answer is $\\boxed{{{wrong}}}$.", False
    if r < 0.65:  # the same answer written differently
        variant = final.replace("\\frac", "\\dfrac").replace(" ", "")
        return f"{body}\nSo the answer is $\\boxed{{ {variant} }}$.", True
    if r < 0.75:  # an intermediate box, then the final one
        return f"{body} so $\\boxed{{{wrong}}}$ is not it. {body[:200]} \\boxed{{{final}}}", True
    if r < 0.85:  # no box
        return f"{body}\nThe answer is {final}.", True
    if r < 0.92:  # GSM8K's style
        return f"{body}\n#### {wrong}", False
    return body, None  # cut off before any answer
