"""Job request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cgd.enums import ItemState, JobStatus
from cgd.generation.spec import JobSpec

__all__ = [
    "JobCancelled",
    "JobPause",
    "JobCounts",
    "JobCreated",
    "JobResumed",
    "JobRetried",
    "JobSpec",
    "JobStatusOut",
    "RetryCounts",
    "TokenCounts",
    "TripletOut",
]


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


class JobCreated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "118858f4-ddce-4feb-8fdb-0119cad6cc7f",
                "status": "queued",
                "total_items": 200,
            }
        }
    )

    id: uuid.UUID
    status: JobStatus
    total_items: int = Field(description="Dataset items × samples_per_prompt")


class JobCounts(BaseModel):
    total: int
    completed: int = Field(description="Items verified (all stages done)")
    failed: int
    pending: int = Field(description="Items not yet terminal")


class TokenCounts(BaseModel):
    """Every answered attempt of the job's calls: what the servers processed for it."""

    prompt: int
    completion: int
    by_stage: dict[str, dict[str, StageTokens]] = Field(
        default_factory=dict,
        description="stage -> outcome -> tokens; outcomes: kept (the answer used), retried "
        "(answered attempts that were retried, e.g. truncated) and failed (attempts of calls "
        "that failed)",
    )


class RetryCounts(BaseModel):
    total: int = Field(description="Attempts retried so far")
    by_reason: dict[str, int] = Field(
        description="Per reason: the error kind (server_error, rate_limited, timeout, ...) or "
        "truncated (retried with a larger budget)"
    )
    by_stage: dict[str, int] = Field(description="Per stage (probe, critique, refine, solve)")


class JobPause(BaseModel):
    """Why a job is paused: its endpoint kept failing (see docs/scheduling.md)."""

    endpoint: str | None = Field(description="The failing endpoint (base URL, no credentials)")
    error: str | None = Field(description="The last error seen from it")
    at: datetime | None = Field(description="When the job was paused")


class BatchOut(BaseModel):
    """One stage of one chunk sent through the Batch API, as last polled."""

    chunk: int
    stage: str
    batch_id: str
    status: str = Field(description="The server's batch status, then `stored` once written")
    requests: int
    completed: int
    failed: int
    updated_at: datetime


class JobStatusOut(BaseModel):
    """Everything derived from the job's item rows, so it is right after any crash."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "118858f4-ddce-4feb-8fdb-0119cad6cc7f",
                "dataset_id": "b2824380-ff7a-4e27-990d-f5cdeaa92cc9",
                "status": "running",
                "counts": {"total": 200, "completed": 48, "failed": 0, "pending": 152},
                "by_stage": {
                    "pending": 0,
                    "probed": 0,
                    "critiqued": 152,
                    "refined": 0,
                    "verified": 48,
                    "failed": 0,
                },
                "progress": 0.24,
                "items_per_s": 10.16,
                "eta_s": 15.0,
                "tokens": {
                    "prompt": 151392,
                    "completion": 53020,
                    "by_stage": {
                        "probe": {"kept": {"prompt": 9120, "completion": 14850}},
                        "critique": {"kept": {"prompt": 61200, "completion": 19340}},
                        "refine": {
                            "kept": {"prompt": 79400, "completion": 17580},
                            "retried": {"prompt": 1672, "completion": 1250},
                        },
                    },
                },
                "retries": {
                    "total": 7,
                    "by_reason": {"server_error": 6, "truncated": 1},
                    "by_stage": {"probe": 3, "critique": 2, "refine": 2},
                },
                "errors": {},
                "truncated": 0,
                "quality": {
                    "initial_accuracy": 0.625,
                    "refined_accuracy": 0.875,
                    "fix_rate": 0.7778,
                    "break_rate": 0.0333,
                    "verdict_agreement": 0.8125,
                    "wrong_verdict_precision": 0.7368,
                    "wrong_verdict_recall": 0.7778,
                    "truncation_rate": 0.0,
                    "counts": {"verified": 48, "initial_right": 30, "initial_judged": 48},
                    "tokens_by_stage": {
                        "probe": {"prompt": 9120, "completion": 14850},
                        "critique": {"prompt": 61200, "completion": 19340},
                        "refine": {"prompt": 81072, "completion": 18830},
                    },
                },
                "template_version": "cgd-v1",
                "spec": {"dataset_id": "b2824380-ff7a-4e27-990d-f5cdeaa92cc9"},
                "error": None,
                "created_at": "2026-11-27T23:38:30Z",
                "started_at": "2026-11-27T23:38:30Z",
                "finished_at": None,
                "cancelled_at": None,
            }
        }
    )

    id: uuid.UUID
    dataset_id: uuid.UUID
    status: JobStatus
    counts: JobCounts
    by_stage: dict[ItemState, int] = Field(description="Items per pipeline state")
    progress: float = Field(description="Share of items terminal, 0–1")
    items_per_s: float
    eta_s: float | None = Field(description="Seconds left at the current rate, while running")
    tokens: TokenCounts
    retries: RetryCounts = Field(description="Attempts of the job's calls retried so far")
    errors: dict[str, int] = Field(description="Failed items per error kind")
    truncated: int = Field(description="Items with an answer cut at max_tokens")
    quality: Quality = Field(
        description="Accuracy before/after refinement, fix and break rates, verdict agreement, "
        "truncation rate and tokens per stage (see docs/observability.md)"
    )
    template_version: str
    spec: dict[str, Any] = Field(description="The job spec as submitted, API keys masked")
    error: str | None = Field(description="Why the whole job failed, if it did")
    paused: JobPause | None = Field(None, description="Set while the job is paused")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    batches: list[BatchOut] = Field(
        default_factory=list, description="Batch API submissions (endpoints in batch mode)"
    )


class JobCancelled(BaseModel):
    id: uuid.UUID
    status: JobStatus


class JobResumed(BaseModel):
    id: uuid.UUID
    status: JobStatus


class JobRetried(BaseModel):
    id: uuid.UUID
    retried: int = Field(description="Failed items put back to pending")


class TripletOut(BaseModel):
    """One (prompt, initial answer, critique, refined answer) with its verification."""

    item_id: str
    idx: int
    sample: int = Field(description="Which of the samples_per_prompt initial answers")
    prompt: str
    reference: str | None
    solution: str | None = Field(None, description="The dataset's worked solution, if any")
    initial_response: str | None
    critique: str | None
    verdict: str | None = Field(description="right, wrong, or null when none was parsable")
    refined_response: str | None
    teacher_solution: str | None = Field(
        None, description="The teacher's direct answer (jobs with teacher_solution: true)"
    )
    initial_answer: str | None = Field(description="The final answer extracted for verification")
    refined_answer: str | None
    initial_correct: bool | None
    refined_correct: bool | None
    verdict_agrees: bool | None = Field(description="Whether the verdict matches the verifier")
    truncated: bool
    status: ItemState
    error: str | None
    error_kind: str | None
    extra: dict[str, Any] | None = Field(
        None,
        description="The dataset row's other columns (id, source, difficulty, …), as uploaded",
    )
