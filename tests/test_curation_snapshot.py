"""curate(): content hash, train/val split, order independence."""

from __future__ import annotations

import random

from cgd.curation.snapshot import content_hash, curate
from cgd.curation.split import split_of
from cgd.curation.synthetic import make_triplet

SPEC = {
    "name": "snap",
    "filters": {"refined_correct": True, "no_truncation": True},
    "dedup": {"exact": True},
    "split": {"val_fraction": 0.25, "seed": 7},
}


def _rows(n_items: int = 200, samples: int = 3) -> list[dict]:
    rows = []
    for i in range(n_items):
        for s in range(samples):
            rows.append(
                make_triplet(
                    i,
                    sample=s,
                    triplet_id=f"t-{i:04d}-{s}",
                    refined_correct=(i + s) % 5 != 0,
                    verdict="right" if s == 1 else "wrong",
                )
            )
    return rows


def _selected_rows(rows: list[dict], result) -> list[dict]:
    splits = result.splits()
    return [dict(r, split=splits[r["triplet_id"]]) for r in rows if r["triplet_id"] in splits]


def test_content_hash_is_order_independent_and_reproducible() -> None:
    rows = _rows()
    a = curate(rows, SPEC)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    b = curate(iter(shuffled), SPEC)
    assert a.content_hash == b.content_hash
    assert a.selected == b.selected and a.stats == b.stats and a.dropped == b.dropped
    # Recomputable from the stored rows (e.g. by the API when verifying an export).
    selected = _selected_rows(rows, a)
    random.Random(2).shuffle(selected)
    assert content_hash(selected, SPEC) == a.content_hash
    assert len(a.content_hash) == 64


def test_content_hash_covers_options_and_content_but_not_the_name() -> None:
    rows = _rows()
    base = curate(rows, SPEC).content_hash
    renamed = dict(SPEC, name="other", job_ids=["job-1"])
    assert curate(rows, renamed).content_hash == base
    # Spelled differently, same options: explicit nulls and set order do not matter.
    a = curate(rows, {"decontaminate": {"sets": ["math500", "amc23"]}, "dedup": None})
    b = curate(rows, {"decontaminate": {"sets": ["amc23", "math500"], "ngram": None}})
    assert a.content_hash == b.content_hash
    # Any option change changes the hash, even when the selection is the same.
    other_seed = dict(SPEC, split={"val_fraction": 0.25, "seed": 8})
    assert curate(rows, other_seed).content_hash != base
    same_rows = dict(SPEC, filters={**SPEC["filters"], "max_chars": 10**6})
    r = curate(rows, same_rows)
    assert r.stats["output"] == curate(rows, SPEC).stats["output"]
    assert r.content_hash != base
    # A changed text changes the hash.
    edited = [dict(t) for t in rows]
    edited[1]["refined_response"] += " (edited)"
    assert curate(edited, SPEC).content_hash != base


def test_split_is_deterministic_and_keeps_samples_together() -> None:
    rows = _rows(n_items=400, samples=3)
    spec = {"split": {"val_fraction": 0.2, "seed": 3}}
    result = curate(rows, spec)
    by_item: dict[str, set[str]] = {}
    for s in result.selected:
        by_item.setdefault(s.item_id, set()).add(s.split)
    assert all(len(v) == 1 for v in by_item.values())
    val_items = sum(1 for v in by_item.values() if v == {"validation"})
    assert 0.12 * 400 < val_items < 0.28 * 400
    assert result.stats["val"] == 3 * val_items
    assert result.stats["train"] + result.stats["val"] == result.stats["output"] == 1200
    # Same seed, same split; another seed, another split.
    assert curate(rows, spec).selected == result.selected
    other = curate(rows, {"split": {"val_fraction": 0.2, "seed": 4}})
    assert [s.split for s in other.selected] != [s.split for s in result.selected]
    # Adding items never moves existing ones across (hash, not shuffle).
    bigger = curate(rows + [make_triplet(9999)], spec).splits()
    assert all(bigger[t] == s for t, s in result.splits().items())


def test_split_groups_identical_prompts_of_different_items() -> None:
    p = "A train travels 60 km in 1.5 hours. What is its average speed?"
    assert split_of(p, 0.5, 1) == split_of(
        "  a TRAIN travels 60 km in 1.5 hours. what is its average speed", 0.5, 1
    )
    assert split_of(p, 0.0) == "train" and split_of(p, 1.0) == "validation"


def test_repeated_triplets_are_counted_once() -> None:
    rows = _rows(n_items=10, samples=1)
    result = curate(rows + rows[:3], {})
    assert result.stats["input"] == 13
    assert result.stats["dropped"]["repeated_triplet"] == 3
    assert result.stats["output"] == 10


def test_lineage_of_contributing_jobs() -> None:
    lin2 = {"job_id": "job-2", "student": None, "teacher": {"model": "t2"}, "template": "cgd"}
    rows = [make_triplet(0), make_triplet(1, job_id="job-2", triplet_id="x", lineage=lin2)]
    rows.append(make_triplet(2, job_id="job-3", triplet_id="y", status="failed"))
    result = curate(rows, {})
    assert sorted(result.lineage) == ["job-1", "job-2"]  # job-3 contributed nothing
    assert result.lineage["job-2"] == lin2
