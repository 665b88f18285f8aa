"""Experiment request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cgd.enums import ExportMode, TrainMethod
from cgd.runs.schemas import EvalSpec, Hyperparams
from cgd.security.bounds import RequestModel, Seed

# The paper's comparison: CGD against its four baselines (docs/method.md).
DEFAULT_MODES = [
    ExportMode.cgd,
    ExportMode.no_critique,
    ExportMode.distill,
    ExportMode.sft,
    ExportMode.cft,
]
# Bounded cost: one request may start at most this many training runs.
MAX_RUNS = 20


class ExperimentSpec(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "snapshot_id": "5d0c4c8e-5b3a-4e0e-9a59-0d7f3c1e2b11",
                "base_model": "Qwen2.5-Math-7B",
                "modes": [m.value for m in DEFAULT_MODES],
                "seeds": [0, 1, 2],
                "hyperparams": {"learning_rate": 1e-6, "epochs": 1},
                "eval": {"sets": ["math500", "amc23:k=8", "aime24:k=8"]},
            }
        },
    )
    snapshot_id: uuid.UUID
    base_model: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description="A registered base model (GET /v1/models) or run:<id> of a completed run "
        "of your team",
    )
    modes: list[ExportMode] = Field(
        default_factory=lambda: list(DEFAULT_MODES),
        min_length=1,
        description="Training modes to compare; every run trains on the rows all of them can use",
    )
    seeds: list[Seed] = Field(
        default_factory=lambda: [0], min_length=1, description="One run per mode and seed"
    )
    method: TrainMethod = TrainMethod.full
    hyperparams: Hyperparams = Hyperparams()
    eval: EvalSpec = EvalSpec()

    @model_validator(mode="after")
    def _bounded(self) -> ExperimentSpec:
        if len(set(self.modes)) != len(self.modes):
            raise ValueError("modes: each mode at most once")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: each seed at most once")
        if any(s < 0 or s > 2**31 - 1 for s in self.seeds):
            raise ValueError("seeds: each between 0 and 2147483647")
        if len(self.modes) * len(self.seeds) > MAX_RUNS:
            raise ValueError(f"modes × seeds: at most {MAX_RUNS} training runs per experiment")
        return self


class ExperimentRunOut(BaseModel):
    id: uuid.UUID
    mode: str
    seed: int
    status: str
    progress: float


class ExperimentOut(BaseModel):
    id: uuid.UUID
    snapshot_id: uuid.UUID
    status: str = Field(
        description="queued | running | completed | failed (a run failed; the others' results "
        "still report) | cancelled"
    )
    runs: list[ExperimentRunOut]
    spec: dict[str, Any]
    created_at: datetime
