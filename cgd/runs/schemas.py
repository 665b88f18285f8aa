"""Training-run request and response bodies."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cgd.enums import EventType, ExportMode, RunStatus, TrainMethod
from cgd.security.bounds import (
    MAX_EVAL_K,
    MAX_EVAL_SAMPLES,
    MAX_STEPS,
    MAX_TEMPERATURE,
    NewTokens,
    RequestModel,
    Seed,
    Steps,
)


class LoraSpec(RequestModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=65_536)


class Hyperparams(RequestModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(1e-6, gt=0, le=1.0, allow_inf_nan=False)
    epochs: int = Field(1, ge=1, le=100)
    max_steps: Steps | None = None
    tokens_per_step: int = Field(65536, ge=1, le=2**31 - 1)
    max_length: int = Field(4096, ge=16, le=1_048_576)
    warmup_ratio: float = Field(0.1, ge=0, lt=1, allow_inf_nan=False)
    lora: LoraSpec = LoraSpec()
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp",
        description="With several GPUs (CGD_TRAINER_GPUS): ddp replicates the model; fsdp "
        "shards parameters, gradients and optimizer state (for models that do not fit one GPU)",
    )
    compile: bool | None = Field(
        None, description="torch.compile the decoder blocks; null: on with CUDA, off on a CPU"
    )
    micro_batch_rows: int = Field(
        1, ge=1, le=64, description="Rows of max_length per forward pass (the rest accumulates)"
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30% more compute"
    )
    seed: Seed = Field(0, description="Seed of data order, initialisation and eval sampling")


class EvalSpec(RequestModel):
    model_config = ConfigDict(extra="forbid")
    sets: list[str] = Field(
        default_factory=lambda: ["math500"],
        description="Bundled sets (math500, amc23, aime24) or dataset:<id> of an uploaded one",
    )
    max_samples: int | None = Field(None, ge=1, le=10_000_000)
    max_new_tokens: NewTokens = 2048
    backend: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: transformers generate; vllm: the trained model served by vLLM on the "
        "trainer host (the paper's engine, the fast path on a GPU)",
    )
    select_on: str | None = Field(
        None,
        description="An eval set (same syntax as sets) used as validation set: evaluated every "
        "select_every_steps steps and at the end; the final sets are reported on the best "
        "step's weights (eval event `selected`)",
    )
    select_every_steps: int = Field(
        0, ge=0, le=MAX_STEPS, description="Validation interval for select_on (0: at the end only)"
    )

    @field_validator("sets")
    @classmethod
    def _sets_sampling_bounded(cls, sets: list[str]) -> list[str]:
        for spec in sets:
            _check_eval_sampling(spec)
        return sets

    @field_validator("select_on")
    @classmethod
    def _select_on_sampling_bounded(cls, spec: str | None) -> str | None:
        if spec is not None:
            _check_eval_sampling(spec)
        return spec


def _check_eval_sampling(spec: str) -> None:
    """An eval set's sampling options within sense: k (avg@k/pass@k) and n cost GPU time per
    problem, a temperature beyond 10 (or not a number) samples noise."""
    from cgd.curation.eval_sets import parse_eval_set

    parsed = parse_eval_set(spec)  # a ValueError names the set; pydantic makes it a 422
    if parsed.k > MAX_EVAL_K:
        raise ValueError(f"{spec!r}: k at most {MAX_EVAL_K}")
    if parsed.n is not None and parsed.n > MAX_EVAL_SAMPLES:
        raise ValueError(f"{spec!r}: n at most {MAX_EVAL_SAMPLES}")
    if not 0.0 <= parsed.temperature <= MAX_TEMPERATURE:  # False for NaN too
        raise ValueError(f"{spec!r}: temperature must be a number from 0 to {MAX_TEMPERATURE:g}")
    if not 0.0 < parsed.top_p <= 1.0:
        raise ValueError(f"{spec!r}: top_p must be a number in (0, 1]")


class TrainingRunSpec(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "snapshot_id": "5d0c4c8e-5b3a-4e0e-9a59-0d7f3c1e2b11",
                "base_model": "Qwen2.5-0.5B-Instruct",
                "mode": "cgd",
                "method": "full",
                "hyperparams": {"learning_rate": 1e-6, "epochs": 1},
                "eval": {"sets": ["math500"]},
            }
        },
    )
    snapshot_id: uuid.UUID
    base_model: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description="A registered base model (GET /v1/models) or run:<id> of a completed run "
        "of your team (to continue from it)",
    )
    mode: ExportMode = Field(ExportMode.cgd, description="What the model is trained to produce")
    method: TrainMethod = TrainMethod.full
    hyperparams: Hyperparams = Hyperparams()
    eval: EvalSpec = EvalSpec()
    common_modes: list[ExportMode] | None = Field(
        None,
        description="Train only on the rows every listed mode can use (so runs of several modes "
        "train on the identical rows); must include mode",
    )

    @field_validator("common_modes")
    @classmethod
    def _common_modes_include_mode(
        cls, value: list[ExportMode] | None, info: ValidationInfo
    ) -> list[ExportMode] | None:
        # Declared after `mode`, so the error is located at body.common_modes.
        if value is None:
            return None
        mode = info.data.get("mode")
        if not value:
            raise ValueError("list at least the run's mode, or leave common_modes out")
        if mode is not None and mode not in value:
            raise ValueError(f"must include the run's mode {ExportMode(mode).value!r}")
        return list(dict.fromkeys(value))  # no repeats


class RunCreated(BaseModel):
    id: uuid.UUID
    status: RunStatus


class RunPlan(BaseModel):
    """What the trainer will do, reported before its first step."""

    train_rows: int = Field(description="Rows trained on (every train-split row that fits)")
    val_rows: int = Field(description="Rows of the validation split (never trained on)")
    epochs: int = Field(
        description="Passes over the training rows; with max_steps, the passes those steps "
        "take (the last maybe partial)"
    )
    epochs_requested: int | None = None
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    total_steps: int
    tokens_per_step: int = Field(description="Mean tokens (prompt + target) of a step")


class RunOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": "0b7f6a0e-1c1d-4d52-8a0e-6f3f5b2f9c10",
                "snapshot_id": "5d0c4c8e-5b3a-4e0e-9a59-0d7f3c1e2b11",
                "status": "running",
                "progress": 0.4,
                "metrics": {"step": 40, "total_steps": 100, "loss": 0.61},
                "eval": {},
                "artifacts": {},
                "error": None,
                "cancel_requested": False,
                "spec": {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "mode": "cgd"},
                "created_at": "2026-11-27T23:41:00Z",
                "started_at": "2026-11-27T23:41:02Z",
                "finished_at": None,
            }
        }
    )

    id: uuid.UUID
    snapshot_id: uuid.UUID
    status: RunStatus
    progress: float = Field(description="Share of optimizer steps done, 0–1")
    metrics: dict[str, Any] = Field(description="The latest step event (step, loss, lr, …)")
    plan: RunPlan | None = Field(
        None, description="Rows, epochs and steps, once the trainer has read the data"
    )
    eval: dict[str, Any] = Field(description="Per eval set: accuracy, n, step")
    artifacts: dict[str, Any] = Field(description="model_path and other outputs")
    error: str | None
    cancel_requested: bool
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunClaim(BaseModel):
    """The run a trainer starts with the token it holds (None: nothing to start)."""

    run_id: uuid.UUID | None


class TrainerRunOut(RunOut):
    """A run as its trainer reads it (run token only)."""

    base_model_location: str = Field(description="A directory on the trainer host or a hub id")


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    type: EventType
    at: datetime
    data: dict[str, Any]


# An eval event carries per-problem verdicts (a few hundred KB for MATH-500 sampled 16 times);
# beyond this a trainer token could bloat the events table, so the event is refused.
MAX_EVENT_BYTES = 4 * 1024 * 1024


class EventIn(RequestModel):
    """What a trainer posts: status changes, step metrics, eval results, artifact paths."""

    model_config = ConfigDict(extra="forbid")
    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data", mode="before")
    @classmethod
    def _not_a_number_is_null(cls, data: Any) -> Any:
        # A diverged run's loss is NaN: reported as null (JSON and Postgres have no NaN), not
        # refused, so the trainer's event still lands.
        return _finite_or_none(data)

    @model_validator(mode="after")
    def _known_fields_typed(self) -> EventIn:
        # The fields the API reads must have the types it reads them as (a string step would
        # otherwise fail deep inside the handler).
        d = self.data
        size = len(json.dumps(d, separators=(",", ":"), default=str))
        if size > MAX_EVENT_BYTES:
            raise ValueError(f"data is {size} bytes as JSON; at most {MAX_EVENT_BYTES}")
        for name in ("step", "total_steps"):
            if name in d and (isinstance(d[name], bool) or not isinstance(d[name], int)):
                raise ValueError(f"data.{name} must be an integer")
        for name in ("status", "state", "error", "kind", "path"):
            if name in d and d[name] is not None and not isinstance(d[name], str):
                raise ValueError(f"data.{name} must be a string")
        if "plan" in d:  # stored on the run: checked here so a bad one is a 422, not a 500
            try:
                RunPlan.model_validate(d["plan"])
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"data.plan.{where}: {err['msg']}") from None
        for name in ("accuracy", "n"):
            value = d.get(name)
            if value is None:
                continue
            if not isinstance(value, dict) or not all(
                (isinstance(v, int | float) and not isinstance(v, bool))
                or (v is None and name == "n")
                for v in value.values()
            ):
                raise ValueError(f"data.{name} must map set names to numbers")
        return self


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


class EventAck(BaseModel):
    """The answer to a trainer's event: whether to stop."""

    cancel: bool
    status: RunStatus
