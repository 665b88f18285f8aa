"""Decontamination against the bundled eval sets, and the eval sets themselves."""

from __future__ import annotations

import json

import pytest

from cgd.curation.decontam import NgramIndex, build_index
from cgd.curation.eval_sets import EVAL_SETS, load_eval_set
from cgd.curation.snapshot import curate
from cgd.curation.synthetic import make_triplet
from tests.conftest import data_file

GSM8K = data_file("gsm8k_train.jsonl")


@pytest.fixture(scope="module")
def gsm8k() -> list[str]:
    with GSM8K.open() as f:
        return [json.loads(line)["question"] for _, line in zip(range(1000), f, strict=False)]


@pytest.fixture(scope="module")
def index() -> NgramIndex:
    return build_index(EVAL_SETS)


def test_eval_sets_load_in_one_shape() -> None:
    sizes = {name: len(load_eval_set(name)) for name in EVAL_SETS}
    assert sizes == {"math500": 500, "amc23": 40, "aime24": 30}
    for name in EVAL_SETS:
        rows = load_eval_set(name)
        assert all(set(r) == {"id", "problem", "answer"} for r in rows)
        assert all(isinstance(v, str) and v for r in rows for v in r.values())
        assert len({r["id"] for r in rows}) == len(rows)
    assert load_eval_set("amc23")[0]["answer"] == "27"  # stored as 27.0
    assert load_eval_set("math500")[0]["id"] == "test/precalculus/807.json"
    with pytest.raises(KeyError):
        load_eval_set("gsm8k")


def test_no_false_positive_on_gsm8k(index: NgramIndex, gsm8k: list[str]) -> None:
    assert len(gsm8k) == 1000
    assert [q for q in gsm8k if index.matches(q)] == []


def test_planted_math500_problems_are_caught(index: NgramIndex, gsm8k: list[str]) -> None:
    math = load_eval_set("math500")
    long_math = [r["problem"] for r in math if len(r["problem"].split()) >= 20][:10]
    planted = {
        "verbatim": long_math[0],
        "wrapped": "Solve this problem carefully.\n\n" + long_math[1] + "\n\nShow your work.",
        "respaced": "  ".join(long_math[2].upper().split()),
        "tail_only": "Here is a question. " + " ".join(long_math[3].split()[-15:]),
        "short_problem_embedded": "Homework 3: Compute $\\dbinom{31}{28}$. Explain each step.",
        "short_problem_exact": "Simplify $\\sqrt{242}$.",
        "aime": load_eval_set("aime24")[0]["problem"],
    }
    rows = [make_triplet(i, prompt=q) for i, q in enumerate(gsm8k)]
    for n, (name, prompt) in enumerate(planted.items()):
        rows.append(make_triplet(5000 + n, item_id=f"planted-{name}", prompt=prompt))
        # A second sample of the same item is dropped too.
        rows.append(
            make_triplet(
                5000 + n, item_id=f"planted-{name}", prompt=prompt, sample=1, triplet_id=f"s-{name}"
            )
        )
    result = curate(rows, {"decontaminate": {"sets": ["math500", "amc23", "aime24"]}})
    assert result.stats["dropped"]["contaminated"] == 2 * len(planted)
    assert result.stats["output"] == 1000
    listed = {c["item_id"]: c["sets"] for c in result.stats["contaminated"]}
    expected = {f"planted-{name}": ["math500"] for name in planted}
    expected["planted-aime"] = ["aime24"]
    assert listed == expected


def test_ngram_size_and_short_prompts() -> None:
    idx = NgramIndex(n=13)
    idx.add("other", ["one two three four five six seven eight nine ten eleven twelve thirteen"])
    assert idx.matches(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen"
    )
    assert not idx.matches("one two three four five six seven eight nine ten eleven twelve")
    small = NgramIndex(n=5)
    small.add("other", ["one two three four five six seven eight nine ten eleven twelve thirteen"])
    assert small.matches("x y seven eight nine ten eleven z")
    # Shorter than n: equality of the whole normalised text.
    idx.add("short", ["What is 2+2?", "Solve for x"])
    assert idx.matches("what is 2 + 2") == ["short"]
    assert idx.matches("Solve for x.") == ["short"]
    # ... and a short text (>= 4 words) inside a longer prompt; 3-word texts are too generic.
    assert idx.matches("Quick one: what is 2+2? Answer fast.") == ["short"]
    assert idx.matches("Please solve for x in the equation") == []
    assert idx.matches("") == []


def test_extra_texts_from_another_dataset(gsm8k: list[str]) -> None:
    other = gsm8k[:50]
    rows = [make_triplet(i, prompt=q) for i, q in enumerate(gsm8k[:200])]
    spec = {"decontaminate": {"sets": ["math500"], "dataset_ids": ["ds-9"]}}
    result = curate(rows, spec, extra_texts={"ds-9": other})
    assert result.stats["dropped"]["contaminated"] == 50
    assert {tuple(c["sets"]) for c in result.stats["contaminated"]} == {("ds-9",)}
    with pytest.raises(ValueError, match="ds-9"):
        curate(rows, spec)  # the caller must supply the texts of every dataset id
