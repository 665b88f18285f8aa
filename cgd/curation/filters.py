"""The snapshot request (``CurationSpec``) and the per-triplet filters.

Every key is optional; ``null``/absent turns that step off. The steps run in this fixed order and
each drop is counted under its reason name (``stats["dropped"][reason]``); a triplet is counted
once, under the first step that drops it:

 0. ``repeated_triplet`` a triplet id seen before in the input (e.g. a job listed twice)
 1. ``incomplete``      always on: status is not a finished one or there is no refined answer
 2. ``truncated``       filters.no_truncation: some stage hit ``finish_reason=length``
 3. ``refined_correct`` filters.refined_correct: verifier result of the refined answer != wanted
 4. ``initial_correct`` filters.initial_correct: verifier result of the initial answer != wanted
 5. ``verdict_agrees``  filters.verdict_agrees: (teacher verdict == verifier on the initial answer)
                        != wanted
 6. ``no_boxed``        filters.require_boxed: the refined answer has no ``\\boxed{}``
 7. ``meta_commentary`` filters.no_meta_commentary: the refined answer talks about the student,
                        the critique or an earlier answer (``cgd.curation.meta``)
 8. ``too_short``       filters.min_chars: refined answer shorter than that many characters
 9. ``too_long``        filters.max_chars: refined answer longer than that many characters
10. ``contaminated``    decontaminate: the prompt shares an n-gram with an eval set / extra texts
11. ``exact_duplicate`` dedup.exact: another item has the same normalised prompt
12. ``near_duplicate``  dedup.near_threshold: another item's prompt is MinHash-similar
13. ``no_verdict``      filters.verdict_ratio: the critique has no verdict, so it cannot be placed
14. ``verdict_ratio``   filters.verdict_ratio: subsampled to the right:wrong ratio
then the train/val split. 1-9 look at one triplet; 10-12 at prompts; 13-14 at the remaining set.
Every enabled step shows in ``stats["dropped"]``, with 0 when it dropped nothing.
No filter is on when absent. ``no_meta_commentary`` was on by default while the refine turn asked
for a standalone solution; the default template (``cgd-v3``) follows the paper and asks for an
improved answer that corrects the student's inaccuracies, which may name them, so dropping such
answers is now a choice (``true``), not the default. The dataset card lists every step and its
setting, defaults included (``cgd.curation.card.curation_steps``).
``refined_correct``/``initial_correct``/``verdict_agrees`` set to ``true`` keep the triplets where
the condition holds and ``false`` those where it does not; an unknown value (``null``
correctness, no verdict) passes neither. ``no_truncation``/``require_boxed`` are switches:
``false`` is off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, field_validator, model_validator

from cgd.answers import extract_boxed
from cgd.curation.eval_sets import EVAL_SETS
from cgd.curation.meta import meta_commentary
from cgd.security.bounds import Count, FiniteFloat, Int64, RequestModel
from cgd.security.names import CONTROL_CHARS as _CONTROL

# Item states that mean "all three calls done" (the worker ends in `verified`; `refined` is the
# last state before verification and is final when the job's verifier is "none").
COMPLETED_STATUSES = frozenset({"verified", "refined"})

EvalSetName = Literal["math500", "amc23", "aime24"]
# The Literal must list exactly the bundled sets; checked at import so the two cannot drift.
assert set(get_args(EvalSetName)) == set(EVAL_SETS)


class _Strict(RequestModel):
    # Unknown keys are a client mistake (a typo would silently turn a filter off).
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerdictRatio(_Strict):
    """Right:wrong proportion of teacher verdicts, e.g. ``{"right": 30, "wrong": 70}``."""

    right: FiniteFloat = Field(ge=0)
    wrong: FiniteFloat = Field(ge=0)

    @model_validator(mode="after")
    def _not_both_zero(self) -> VerdictRatio:
        if self.right + self.wrong <= 0:
            raise ValueError("verdict_ratio needs right + wrong > 0")
        return self


class Filters(_Strict):
    refined_correct: bool | None = None
    initial_correct: bool | None = None
    verdict_agrees: bool | None = None
    no_truncation: bool | None = None
    require_boxed: bool | None = None
    no_meta_commentary: bool | None = None
    min_chars: Count | None = None
    max_chars: Count | None = None
    verdict_ratio: VerdictRatio | None = None


class Dedup(_Strict):
    exact: bool | None = None
    near_threshold: float | None = Field(default=None, gt=0, le=1)
    num_perm: int | None = Field(default=None, ge=16, le=1024)


class Decontaminate(_Strict):
    sets: list[EvalSetName] | None = None
    # Other datasets' prompts; the API resolves them and passes their texts to `curate`.
    dataset_ids: list[str] | None = None
    ngram: int | None = Field(default=None, ge=1, le=64)

    @field_validator("sets", "dataset_ids")
    @classmethod
    def _as_sorted_set(cls, v: list[str] | None) -> list[str] | None:
        # Order and repeats carry no meaning; canonical form keeps the content hash stable.
        return sorted(set(v)) if v is not None else None


class Split(_Strict):
    val_fraction: float | None = Field(default=None, ge=0, le=1)
    seed: Int64 | None = None


MAX_JOB_IDS = 100


class CurationSpec(_Strict):
    """Body of ``POST /v1/snapshots``; ``name``/``job_ids`` name the inputs, the rest curates."""

    name: str | None = Field(None, max_length=300)
    job_ids: list[str] | None = Field(
        None,
        description=f"Jobs whose triplets are curated (duplicates ignored; at most {MAX_JOB_IDS})",
    )
    allow_partial: bool = Field(
        False, description="Build even when a job is still queued or running (else 409)"
    )
    # Shared default instances are safe: every section is frozen.
    filters: Filters = Filters()
    dedup: Dedup = Dedup()
    decontaminate: Decontaminate = Decontaminate()
    split: Split = Split()

    @model_validator(mode="before")
    @classmethod
    def _null_sections_are_off(cls, data: Any) -> Any:
        # `"dedup": null` means "off", same as absent.
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or _CONTROL.search(value)):
            raise ValueError("name must be non-blank, without control characters")
        return value

    @field_validator("job_ids")
    @classmethod
    def _dedup_job_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unique = list(dict.fromkeys(value))  # the same job twice would count its rows twice
        if len(unique) > MAX_JOB_IDS:
            raise ValueError(f"at most {MAX_JOB_IDS} distinct jobs per snapshot")
        return unique

    @model_validator(mode="after")
    def _min_le_max(self) -> CurationSpec:
        f = self.filters
        if f.min_chars is not None and f.max_chars is not None and f.min_chars > f.max_chars:
            raise ValueError("filters.min_chars must not exceed filters.max_chars")
        return self

    def options(self) -> dict[str, Any]:
        """The curation options as canonical JSON-able data (what the content hash covers)."""
        return self.model_dump(mode="json", exclude={"name", "job_ids", "allow_partial"})


RowFilter = tuple[str, Callable[[Mapping[str, Any]], bool]]


def _is_completed(t: Mapping[str, Any]) -> bool:
    return t.get("status") in COMPLETED_STATUSES and bool(t.get("refined_response"))


def _verdict_agrees(t: Mapping[str, Any]) -> bool | None:
    verdict, initial_ok = t.get("verdict"), t.get("initial_correct")
    if verdict is None or initial_ok is None:
        return None
    return bool((verdict == "right") == bool(initial_ok))


def row_filters(f: Filters) -> list[RowFilter]:
    """The enabled per-triplet steps (1-9 above) as (reason, keep-predicate), in order."""
    steps: list[RowFilter] = [("incomplete", _is_completed)]
    if f.no_truncation:
        steps.append(("truncated", lambda t: not t.get("truncated")))
    if f.refined_correct is not None:
        want_r = f.refined_correct
        steps.append(("refined_correct", lambda t: t.get("refined_correct") is want_r))
    if f.initial_correct is not None:
        want_i = f.initial_correct
        steps.append(("initial_correct", lambda t: t.get("initial_correct") is want_i))
    if f.verdict_agrees is not None:
        want_a = f.verdict_agrees
        steps.append(("verdict_agrees", lambda t: _verdict_agrees(t) is want_a))
    if f.require_boxed:
        steps.append(("no_boxed", lambda t: extract_boxed(t.get("refined_response")) is not None))
    if f.no_meta_commentary:
        steps.append(
            (
                "meta_commentary",
                lambda t: not meta_commentary(t.get("refined_response"), t.get("prompt")),
            )
        )
    if f.min_chars is not None:
        lo = f.min_chars
        steps.append(("too_short", lambda t: len(t.get("refined_response") or "") >= lo))
    if f.max_chars is not None:
        hi = f.max_chars
        steps.append(("too_long", lambda t: len(t.get("refined_response") or "") <= hi))
    return steps


def first_failure(t: Mapping[str, Any], steps: list[RowFilter]) -> str | None:
    """The reason of the first step that drops ``t``, or ``None`` when it passes them all."""
    for reason, keep in steps:
        if not keep(t):
            return reason
    return None


def verdict_quota(n_right: int, n_wrong: int, ratio: VerdictRatio) -> tuple[int, int]:
    """How many right/wrong-verdict triplets to keep: the largest set with exactly that ratio.

    As the reference release's ratio utility (100:0 ... 0:100): the scarcer side is kept whole and
    the other side is cut to match. Exact fractions so 1/3 : 2/3 does not lose a row to rounding.
    """
    a, b = Fraction(str(ratio.right)), Fraction(str(ratio.wrong))
    limits = []
    if a > 0:
        limits.append(Fraction(n_right) * (a + b) / a)
    if b > 0:
        limits.append(Fraction(n_wrong) * (a + b) / b)
    total = int(min(limits))
    keep_right = min(n_right, round(total * a / (a + b)))
    keep_wrong = min(n_wrong, total - keep_right)
    return keep_right, keep_wrong
