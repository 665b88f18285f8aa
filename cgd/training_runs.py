"""Training runs: the API side. A trainer (``cgd trainer``) does the work and reports back with
events over HTTP, authenticated by a per-run token; this module keeps the run's state from them.

A trainer that dies stops sending events: a running run whose heartbeat is older than
``CGD_TRAINER_LOST_AFTER_S`` is marked ``failed`` the next time anyone looks at it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from cgd.db.models import Snapshot, TrainingRun, TrainingRunEvent, utcnow
from cgd.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from cgd.settings import get_settings

TERMINAL = ("completed", "failed", "cancelled")


class TrainingRunNotFound(NotFound):
    """Training run not found."""


class TrainingRunFinished(Conflict):
    """The training run already finished."""


class LoraSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1)


class Hyperparams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(1e-6, gt=0, le=1.0)
    epochs: int = Field(1, ge=1, le=100)
    max_steps: int | None = Field(None, ge=1)
    tokens_per_step: int = Field(65536, ge=1)
    max_length: int = Field(4096, ge=16)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    lora: LoraSpec = LoraSpec()


class EvalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sets: list[str] = Field(default_factory=lambda: ["math500"])
    max_samples: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(2048, ge=1)


class TrainingRunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snapshot_id: uuid.UUID
    base_model: str = Field(..., min_length=1, description="A model id or a local path")
    mode: Literal["cgd", "sft", "distill", "cft", "no-critique"] = "cgd"
    method: Literal["full", "lora"] = "full"
    hyperparams: Hyperparams = Hyperparams()
    eval: EvalSpec = EvalSpec()


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["status", "step", "eval", "artifact", "data", "log"]
    data: dict[str, Any] = Field(default_factory=dict)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_run(
    session: Session, team_id: uuid.UUID, spec: TrainingRunSpec
) -> tuple[TrainingRun, str]:
    snap = session.get(Snapshot, spec.snapshot_id)
    if snap is None or snap.team_id != team_id:
        raise NotFound({"snapshot_id": str(spec.snapshot_id), "reason": "snapshot not found"})
    if snap.status != "ready":
        raise InvalidRequest({"field": "snapshot_id", "reason": f"snapshot is {snap.status}"})
    check_eval_sets(session, team_id, spec.eval.sets)
    token = secrets.token_urlsafe(32)
    run = TrainingRun(
        team_id=team_id,
        snapshot_id=snap.id,
        spec=spec.model_dump(mode="json"),
        status="queued",
        token_hash=_hash(token),
        metrics={},
        eval={},
        artifacts={},
    )
    session.add(run)
    session.flush()
    _add_event(session, run, "status", {"status": "queued"})
    return run, token


DATASET_PREFIX = "dataset:"


def check_eval_sets(session: Session, team_id: uuid.UUID, sets: list[str]) -> None:
    """Eval sets are bundled names or ``dataset:<id>`` of the team's datasets with references."""
    from cgd.curation.eval_sets import EVAL_SETS
    from cgd.datasets import get_dataset

    for name in sets:
        if name in EVAL_SETS:
            continue
        if not name.startswith(DATASET_PREFIX):
            raise InvalidRequest(
                {
                    "field": "eval.sets",
                    "reason": f"unknown set {name!r}: use one of {list(EVAL_SETS)} or "
                    "'dataset:<id>' for an uploaded dataset",
                }
            )
        try:
            dataset_id = uuid.UUID(name.removeprefix(DATASET_PREFIX))
        except ValueError:
            raise InvalidRequest(
                {"field": "eval.sets", "reason": f"bad dataset id in {name!r}"}
            ) from None
        dataset = get_dataset(session, team_id, dataset_id)
        if dataset.stats.get("share_with_reference", 0) < 1:
            raise InvalidRequest(
                {"field": "eval.sets", "reason": f"dataset {dataset_id} lacks references"}
            )


def eval_dataset_rows(session: Session, run: TrainingRun, dataset_id: uuid.UUID) -> list[Any]:
    """The items of an eval dataset the run's spec names (and only those datasets)."""
    from cgd.db.models import DatasetItem

    if f"{DATASET_PREFIX}{dataset_id}" not in run.spec.get("eval", {}).get("sets", []):
        raise NotFound({"dataset_id": str(dataset_id), "reason": "not an eval set of this run"})
    return list(
        session.execute(
            select(DatasetItem.item_id, DatasetItem.prompt, DatasetItem.reference)
            .where(DatasetItem.dataset_id == dataset_id)
            .order_by(DatasetItem.idx)
        ).tuples()
    )


def get_run(session: Session, team_id: uuid.UUID, run_id: uuid.UUID) -> TrainingRun:
    run = session.get(TrainingRun, run_id)
    if run is None or run.team_id != team_id:
        raise TrainingRunNotFound({"training_run_id": str(run_id)})
    check_liveness(session, run)
    return run


def run_for_token(session: Session, run_id: uuid.UUID, authorization: str | None) -> TrainingRun:
    """The run a trainer's ``Authorization: Bearer <run token>`` grants (only that one)."""
    scheme, _, token = (authorization or "").partition(" ")
    run = session.get(TrainingRun, run_id)
    expected = run.token_hash if run else _hash("no such run")
    if scheme.lower() != "bearer" or not hmac.compare_digest(expected, _hash(token.strip())):
        raise Unauthorized("invalid run token")
    assert run is not None
    return run


def check_liveness(session: Session, run: TrainingRun) -> None:
    """A running run whose trainer went silent is failed, not left ``running`` forever."""
    if run.status != "running" or run.heartbeat_at is None:
        return
    if utcnow() - run.heartbeat_at > timedelta(seconds=get_settings().trainer_lost_after_s):
        _finish(run, "failed", f"trainer lost: no event since {run.heartbeat_at.isoformat()}")
        _add_event(session, run, "status", {"status": "failed", "error": run.error})


def list_events(
    session: Session, run: TrainingRun, limit: int, after_id: int | None
) -> list[TrainingRunEvent]:
    q = select(TrainingRunEvent).where(TrainingRunEvent.run_id == run.id)
    if after_id is not None:
        q = q.where(TrainingRunEvent.id > after_id)
    return list(session.scalars(q.order_by(TrainingRunEvent.id).limit(limit)))


def cancel_run(session: Session, run: TrainingRun) -> None:
    if run.status in TERMINAL:
        raise TrainingRunFinished({"training_run_id": str(run.id), "status": run.status})
    run.cancel_requested_at = utcnow()
    if run.status == "queued":  # no trainer has it yet: the task will skip it
        _finish(run, "cancelled", None)
    _add_event(session, run, "status", {"status": run.status, "cancel_requested": True})
    session.flush()


def record_event(session: Session, run: TrainingRun, event: EventIn) -> dict[str, Any]:
    """Apply a trainer's event to the run; returns what the trainer needs to know (cancel)."""
    now = utcnow()
    run.heartbeat_at = now
    data = event.data
    if run.status in TERMINAL and event.type == "status":
        return {"cancel": True, "status": run.status}  # a late trainer: ignore, tell it to stop
    if event.type == "status":
        _apply_status(run, data, now)
    elif event.type == "step":
        run.metrics = {k: v for k, v in data.items() if isinstance(v, int | float | str)}
        total = run.metrics.get("total_steps")  # every step event says how many there are
        if isinstance(total, int) and total > 0:
            run.progress = min(1.0, float(data.get("step", 0)) / total)
    elif event.type == "eval":
        merged = dict(run.eval)
        sizes = data.get("n") or {}
        for name, acc in (data.get("accuracy") or {}).items():
            merged[name] = {"accuracy": acc, "n": sizes.get(name), "step": data.get("step")}
        if "uncertainty" in data:
            merged["uncertainty"] = data["uncertainty"]
        run.eval = merged
    elif event.type == "artifact":
        artifacts = dict(run.artifacts)
        kind = str(data.get("kind", "artifact"))
        artifacts["model_path" if kind == "model" else kind] = data.get("path")
        run.artifacts = artifacts
    _add_event(session, run, event.type, data)
    session.flush()
    return {"cancel": run.cancel_requested_at is not None, "status": run.status}


def _apply_status(run: TrainingRun, data: dict[str, Any], now: Any) -> None:
    state = data.get("status") or data.get("state")
    if state == "running":
        run.status = "running"
        run.started_at = run.started_at or now
    elif state in ("finished", "completed"):
        _finish(run, "completed", None)
        run.progress = 1.0
    elif state == "cancelled":
        _finish(run, "cancelled", None)
    elif state == "failed":
        _finish(run, "failed", str(data.get("error") or "trainer reported a failure")[:4000])


def _finish(run: TrainingRun, status: str, error: str | None) -> None:
    run.status = status
    run.error = error
    run.finished_at = utcnow()


def _add_event(session: Session, run: TrainingRun, kind: str, data: dict[str, Any]) -> None:
    session.add(TrainingRunEvent(run_id=run.id, type=kind, data=data))


def public(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "snapshot_id": str(run.snapshot_id),
        "status": run.status,
        "progress": round(run.progress, 4),
        "metrics": run.metrics,
        "eval": run.eval,
        "artifacts": run.artifacts,
        "error": run.error,
        "cancel_requested": run.cancel_requested_at is not None,
        "spec": run.spec,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
