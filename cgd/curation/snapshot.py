"""Curate triplets into a snapshot: filter, decontaminate, dedup, rebalance, split, hash.

``curate`` reads the triplets once, keeping only a small tuple per surviving triplet and one
prompt per item, so it can be fed a database cursor. Step order and reason names: see
``cgd.curation.filters``. The result depends only on the set of input triplets and the spec,
never on their order: every tie is broken by ids.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from cgd.curation.decontam import DEFAULT_NGRAM, NgramIndex, build_index
from cgd.curation.dedup import DEFAULT_NUM_PERM, exact_duplicates, near_duplicates
from cgd.curation.export import native_row
from cgd.curation.filters import CurationSpec, first_failure, row_filters, verdict_quota
from cgd.curation.split import TRAIN, VAL, split_of
from cgd.curation.text import prompt_key

Triplet = Mapping[str, Any]


class Selected(NamedTuple):
    triplet_id: str
    item_id: str
    sample: int
    split: str


@dataclass
class CurationResult:
    selected: list[Selected]  # sorted by (item_id, sample, triplet_id)
    stats: dict[str, Any]  # {"input", "dropped": {reason: n}, "output", "train", "val", ...}
    dropped: list[dict[str, Any]]  # one per dropped triplet: ids, reason and what matched
    content_hash: str
    lineage: dict[str, Any]  # job_id -> lineage of the jobs that contributed selected rows

    def splits(self) -> dict[str, str]:
        return {s.triplet_id: s.split for s in self.selected}


class _Row(NamedTuple):
    triplet_id: str
    item_id: str
    sample: int
    verdict: str | None
    job_id: str | None
    digest: str


class _Drops:
    """Counts per reason (enabled steps show with 0) and one listing entry per dropped triplet."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.listing: list[dict[str, Any]] = []

    def enable(self, *reasons: str) -> None:
        for reason in reasons:
            self.counts[reason] += 0

    def add(self, row: Triplet | _Row, reason: str, **detail: Any) -> None:
        tid: Any
        item: Any
        if isinstance(row, _Row):
            tid, item = row.triplet_id, row.item_id
        else:
            tid, item = row.get("triplet_id"), row.get("item_id")
        self.counts[reason] += 1
        self.listing.append({"triplet_id": tid, "item_id": item, "reason": reason, **detail})

    def sorted_listing(self) -> list[dict[str, Any]]:
        return sorted(
            self.listing, key=lambda d: (str(d["item_id"]), str(d["triplet_id"]), d["reason"])
        )


def _canonical(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def _row_digest(t: Triplet) -> str:
    # The split is not part of the row digest: curate knows it only at the end.
    row = native_row(t)
    del row["split"]
    if t.get("extra"):  # the dataset's own columns are exported too (absent: hashes as before)
        row["extra"] = t["extra"]
    return hashlib.sha256(_canonical(row)).hexdigest()


def _combine(spec: CurationSpec, lines: Iterable[tuple[str, str, str]]) -> str:
    h = hashlib.sha256(_canonical(spec.options()))
    for triplet_id, split, digest in sorted(lines):
        h.update(f"\n{triplet_id}\t{split}\t{digest}".encode())
    return h.hexdigest()


def content_hash(rows: Iterable[Triplet], spec: CurationSpec | Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of the selected rows (with their ``split``) and the options.

    Independent of row order; the snapshot ``name`` and ``job_ids`` are not part of it (the rows
    are). Holds one short line per row, not the rows.
    """
    spec = _as_spec(spec)
    lines = [(r["triplet_id"], r.get("split") or TRAIN, _row_digest(r)) for r in rows]
    return _combine(spec, lines)


def _as_spec(spec: CurationSpec | Mapping[str, Any]) -> CurationSpec:
    return spec if isinstance(spec, CurationSpec) else CurationSpec.model_validate(spec)


def curate(
    triplets: Iterable[Triplet],
    spec: CurationSpec | Mapping[str, Any],
    extra_texts: Mapping[str, Iterable[str]] | None = None,
) -> CurationResult:
    """Select the triplets of a snapshot.

    ``extra_texts`` maps a label to more texts to decontaminate against (the API passes the
    prompts of ``decontaminate.dataset_ids`` here, one label per dataset id).
    """
    spec = _as_spec(spec)
    steps = row_filters(spec.filters)
    drops = _Drops()
    drops.enable(*(reason for reason, _ in steps))

    index = _decontam_index(spec, extra_texts)
    if index is not None:
        drops.enable("contaminated")
    contamination: dict[str, list[str]] = {}  # prompt key -> matching sources
    contaminated_items: dict[str, list[str]] = {}

    n_input = 0
    seen: set[str] = set()
    rows: list[_Row] = []
    prompts: dict[str, str] = {}  # item_id -> prompt (smallest, should items disagree)
    lineage: dict[Any, Any] = {}  # job_id -> lineage
    for t in triplets:
        n_input += 1
        tid = t["triplet_id"]
        if tid in seen:  # the same job listed twice, say
            drops.add(t, "repeated_triplet")
            continue
        seen.add(tid)
        reason = first_failure(t, steps)
        if reason is not None:
            drops.add(t, reason)
            continue
        prompt = t.get("prompt") or ""
        if index is not None:
            key = prompt_key(prompt)
            if key not in contamination:
                contamination[key] = index.matches(prompt)
            if sets := contamination[key]:
                drops.add(t, "contaminated", sets=sets)
                contaminated_items[t["item_id"]] = sets
                continue
        item_id = t["item_id"]
        prompts[item_id] = min(prompts.get(item_id, prompt), prompt)
        job_id = t.get("job_id")
        if job_id not in lineage:
            lineage[job_id] = t.get("lineage")
        verdict = t.get("verdict")
        sample = int(t.get("sample") or 0)
        rows.append(_Row(tid, item_id, sample, verdict, job_id, _row_digest(t)))

    rows = _dedup(rows, prompts, spec, drops)
    if spec.filters.verdict_ratio is not None:
        rows = _rebalance(rows, spec, drops)

    val_fraction = spec.split.val_fraction or 0.0
    seed = spec.split.seed or 0
    item_split = {r.item_id: split_of(prompts[r.item_id], val_fraction, seed) for r in rows}
    rows.sort(key=lambda r: (r.item_id, r.sample, r.triplet_id))
    selected = [Selected(r.triplet_id, r.item_id, r.sample, item_split[r.item_id]) for r in rows]

    n_val = sum(1 for s in selected if s.split == VAL)
    stats: dict[str, Any] = {
        "input": n_input,
        "dropped": dict(drops.counts),  # in step order
        "output": len(selected),
        "train": len(selected) - n_val,
        "val": n_val,
        "items": len(item_split),
    }
    if index is not None:
        stats["contaminated"] = [
            {"item_id": i, "sets": s} for i, s in sorted(contaminated_items.items())
        ]
    used_jobs = {r.job_id for r in rows}
    return CurationResult(
        selected=selected,
        stats=stats,
        dropped=drops.sorted_listing(),
        content_hash=_combine(
            spec, ((r.triplet_id, item_split[r.item_id], r.digest) for r in rows)
        ),
        lineage={
            j: lin
            for j, lin in sorted(lineage.items(), key=lambda kv: str(kv[0]))
            if j in used_jobs
        },
    )


def _decontam_index(
    spec: CurationSpec, extra_texts: Mapping[str, Iterable[str]] | None
) -> NgramIndex | None:
    dc = spec.decontaminate
    missing = sorted(set(dc.dataset_ids or ()) - set(extra_texts or {}))
    if missing:
        raise ValueError(f"decontaminate.dataset_ids without texts in extra_texts: {missing}")
    if not dc.sets and not extra_texts:
        return None
    return build_index(dc.sets or (), dict(extra_texts or {}), dc.ngram or DEFAULT_NGRAM)


def _dedup(
    rows: list[_Row], prompts: dict[str, str], spec: CurationSpec, drops: _Drops
) -> list[_Row]:
    dd = spec.dedup
    live = {r.item_id: prompts[r.item_id] for r in rows}
    dup_of: dict[str, tuple[str, str]] = {}  # item -> (reason, kept item)
    if dd.exact:
        drops.enable("exact_duplicate")
        for item, kept in exact_duplicates(live).items():
            dup_of[item] = ("exact_duplicate", kept)
    if dd.near_threshold is not None:
        drops.enable("near_duplicate")
        remaining = {i: p for i, p in live.items() if i not in dup_of}
        num_perm = dd.num_perm or DEFAULT_NUM_PERM
        for item, kept in near_duplicates(remaining, dd.near_threshold, num_perm).items():
            dup_of[item] = ("near_duplicate", kept)
    if not dup_of:
        return rows
    out = []
    for r in rows:
        if r.item_id in dup_of:
            reason, kept = dup_of[r.item_id]
            drops.add(r, reason, kept_item_id=kept)
        else:
            out.append(r)
    return out


def _rebalance(rows: list[_Row], spec: CurationSpec, drops: _Drops) -> list[_Row]:
    """Subsample to the right:wrong verdict ratio; a hash of the triplet id picks who stays."""
    assert spec.filters.verdict_ratio is not None
    drops.enable("no_verdict", "verdict_ratio")
    by_verdict: dict[str, list[_Row]] = {"right": [], "wrong": []}
    for r in rows:
        if r.verdict in by_verdict:
            by_verdict[r.verdict].append(r)
        else:
            drops.add(r, "no_verdict")
    quota = dict(
        zip(
            ("right", "wrong"),
            verdict_quota(
                len(by_verdict["right"]), len(by_verdict["wrong"]), spec.filters.verdict_ratio
            ),
            strict=True,
        )
    )
    out = []
    for verdict, group in by_verdict.items():
        group.sort(
            key=lambda r: hashlib.sha256(f"verdict_ratio\x00{r.triplet_id}".encode()).digest()
        )
        out.extend(group[: quota[verdict]])
        for r in group[quota[verdict] :]:
            drops.add(r, "verdict_ratio")
    return out
