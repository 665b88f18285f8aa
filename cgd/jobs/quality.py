"""How good a job's (or a snapshot's) triplets are: accuracy before and after refinement, how
often the refinement fixed or broke an answer, whether the critique's verdict agrees with the
verifier, truncation, and tokens per stage.

Counted by the database in one aggregate per table (``quality_counts`` for job items,
``snapshot_quality`` for snapshot rows, ``stage_tokens`` for generations), then turned into rates
by ``rates``. Rates are over *verified* triplets (every stage done) whose fields the rate needs:
an answer the verifier could not judge (``correct`` null, e.g. verifier ``none``) counts in no
rate, so a rate is ``None`` when nothing could be judged. Truncation is over finished items
(verified or failed), since a truncated answer usually fails the item.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from cgd.db.models import STAGES, Generation, JobItem, SnapshotRow

# Count names, in the order of the aggregate's columns. Each is "how many triplets ...".
COUNT_NAMES: tuple[str, ...] = (
    "finished",  # are verified or failed
    "truncated",  # finished with an answer cut at max_tokens
    "verified",  # have every stage done and were verified
    "initial_judged",  # verified, initial answer judged by the verifier
    "initial_right",  # ... and judged correct
    "refined_judged",
    "refined_right",
    "initially_wrong_judged",  # initial wrong, refined judged: fix-rate denominator
    "fixed",  # initial wrong -> refined right
    "initially_right_judged",  # initial right, refined judged: break-rate denominator
    "broken",  # initial right -> refined wrong
    "verdict_judged",  # a right/wrong verdict and a judged initial answer
    "verdict_agrees",  # verdict matches the verifier on the initial answer
    "wrong_verdicts",  # verdict "wrong" on a judged initial answer
    "wrong_verdicts_true",  # ... that was indeed wrong (precision numerator)
    "initially_wrong",  # verified with a wrong initial answer (recall denominator)
)


class StageTokens(BaseModel):
    prompt: int
    completion: int


class Quality(BaseModel):
    """Rates in [0, 1] (4 decimals) or ``None`` when nothing could be judged; ``counts`` holds
    every numerator and denominator."""

    initial_accuracy: float | None = Field(description="Initial answers judged correct")
    refined_accuracy: float | None = Field(description="Refined answers judged correct")
    fix_rate: float | None = Field(description="Initially wrong answers the refinement fixed")
    break_rate: float | None = Field(description="Initially right answers the refinement broke")
    verdict_agreement: float | None = Field(
        description="Critique verdicts (right/wrong) that match the verifier on the initial answer"
    )
    wrong_verdict_precision: float | None = Field(
        description="Verdicts 'wrong' given to answers that were wrong"
    )
    wrong_verdict_recall: float | None = Field(
        description="Wrong initial answers the critique called 'wrong'"
    )
    truncation_rate: float | None = Field(description="Finished items with a truncated answer")
    counts: dict[str, int] = Field(description="The numerators and denominators of the rates")
    tokens_by_stage: dict[str, StageTokens] | None = Field(
        None, description="Tokens billed per stage (probe, critique, refine); jobs only"
    )


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def rates(counts: dict[str, int], tokens: dict[str, StageTokens] | None = None) -> Quality:
    c = {name: int(counts.get(name, 0)) for name in COUNT_NAMES}
    return Quality(
        initial_accuracy=_ratio(c["initial_right"], c["initial_judged"]),
        refined_accuracy=_ratio(c["refined_right"], c["refined_judged"]),
        fix_rate=_ratio(c["fixed"], c["initially_wrong_judged"]),
        break_rate=_ratio(c["broken"], c["initially_right_judged"]),
        verdict_agreement=_ratio(c["verdict_agrees"], c["verdict_judged"]),
        wrong_verdict_precision=_ratio(c["wrong_verdicts_true"], c["wrong_verdicts"]),
        wrong_verdict_recall=_ratio(c["wrong_verdicts_true"], c["initially_wrong"]),
        truncation_rate=_ratio(c["truncated"], c["finished"]),
        counts=c,
        tokens_by_stage=tokens,
    )


def _count_columns(
    state: Any, initial: Any, refined: Any, verdict: Any, truncated: Any
) -> list[ColumnElement[int]]:
    verified = state == "verified"
    init_known = initial.is_not(None)
    ref_known = refined.is_not(None)
    init_right = initial.is_(True)
    init_wrong = initial.is_(False)
    said_wrong = verdict == "wrong"
    finished = or_(verified, state == "failed")
    conds: dict[str, ColumnElement[bool]] = {
        "finished": finished,
        "truncated": and_(finished, truncated.is_(True)),
        "verified": verified,
        "initial_judged": and_(verified, init_known),
        "initial_right": and_(verified, init_right),
        "refined_judged": and_(verified, ref_known),
        "refined_right": and_(verified, refined.is_(True)),
        "initially_wrong_judged": and_(verified, init_wrong, ref_known),
        "fixed": and_(verified, init_wrong, refined.is_(True)),
        "initially_right_judged": and_(verified, init_right, ref_known),
        "broken": and_(verified, init_right, refined.is_(False)),
        # The pipeline's verdict_agrees, derived so snapshot rows (which do not keep it) count
        # the same way: the verdict says right exactly when the verifier does.
        "verdict_judged": and_(verified, init_known, verdict.in_(("right", "wrong"))),
        "verdict_agrees": and_(
            verified,
            or_(and_(verdict == "right", init_right), and_(said_wrong, init_wrong)),
        ),
        "wrong_verdicts": and_(verified, said_wrong, init_known),
        "wrong_verdicts_true": and_(verified, said_wrong, init_wrong),
        "initially_wrong": and_(verified, init_wrong),
    }
    return [func.count().filter(conds[name]) for name in COUNT_NAMES]


def quality_counts(
    session: Session, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """The counts of each job, from one scan of their items."""
    ids = list(job_ids)
    out: dict[uuid.UUID, dict[str, int]] = {j: dict.fromkeys(COUNT_NAMES, 0) for j in ids}
    if not ids:
        return out
    cols = _count_columns(
        JobItem.state,
        JobItem.initial_correct,
        JobItem.refined_correct,
        JobItem.verdict,
        JobItem.truncated,
    )
    q = select(JobItem.job_id, *cols).where(JobItem.job_id.in_(ids)).group_by(JobItem.job_id)
    for job_id, *values in session.execute(q):
        out[job_id] = dict(zip(COUNT_NAMES, (int(v) for v in values), strict=True))
    return out


def stage_tokens(
    session: Session, job_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict[str, StageTokens]]:
    """Prompt and completion tokens per stage of each job (completed calls only)."""
    ids = list(job_ids)
    out: dict[uuid.UUID, dict[str, StageTokens]] = {
        j: {s: StageTokens(prompt=0, completion=0) for s in STAGES} for j in ids
    }
    if not ids:
        return out
    q = (
        select(
            Generation.job_id,
            Generation.stage,
            func.coalesce(func.sum(Generation.prompt_tokens), 0),
            func.coalesce(func.sum(Generation.completion_tokens), 0),
        )
        .where(Generation.job_id.in_(ids))
        .group_by(Generation.job_id, Generation.stage)
    )
    for job_id, stage, prompt, completion in session.execute(q):
        out[job_id][stage] = StageTokens(prompt=int(prompt), completion=int(completion))
    return out


def job_quality(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Quality]:
    ids = list(job_ids)
    counts = quality_counts(session, ids)
    tokens = stage_tokens(session, ids)
    return {j: rates(counts[j], tokens[j]) for j in ids}


def snapshot_quality(session: Session, snapshot_id: uuid.UUID) -> Quality:
    """The quality of the rows a snapshot selected (one scan of its rows)."""
    cols = _count_columns(
        SnapshotRow.status,
        SnapshotRow.initial_correct,
        SnapshotRow.refined_correct,
        SnapshotRow.verdict,
        SnapshotRow.truncated,
    )
    values = session.execute(select(*cols).where(SnapshotRow.snapshot_id == snapshot_id)).one()
    return rates(dict(zip(COUNT_NAMES, (int(v) for v in values), strict=True)))


def quality_dict(q: Quality) -> dict[str, Any]:
    return q.model_dump(mode="json", exclude_none=False)
