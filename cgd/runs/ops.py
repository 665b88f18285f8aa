"""Training-run operations: the API side. A trainer (``cgd trainer``) does the work and reports
back with events over HTTP, authenticated by a per-run token; this module keeps the run's state
from them.

A trainer that dies stops sending events: the worker's sweeper marks a running run whose
heartbeat is older than ``CGD_TRAINER_LOST_AFTER_S`` ``failed`` (:func:`sweep_lost`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from cgd import metrics
from cgd.db.models import Snapshot, TrainingRun, TrainingRunEvent, utcnow
from cgd.db.queries import team_newest_first, team_row
from cgd.enums import TERMINAL_RUN_STATUSES as TERMINAL
from cgd.errors import InvalidRequest, NotFound, Unauthorized
from cgd.pagination import Page, created_page, decode_created_cursor, decode_cursor, page
from cgd.quotas import check_new_run
from cgd.runs import base_models
from cgd.runs.errors import TrainingRunFinished, TrainingRunNotFound
from cgd.runs.schemas import EventAck, EventIn, EventOut, RunOut, RunPlan, TrainingRunSpec
from cgd.settings import Settings
from cgd.snapshots.ops import check_mode
from cgd.tasks import Message, train_run_message


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(
    session: Session, team_id: uuid.UUID, spec: TrainingRunSpec, settings: Settings
) -> tuple[RunOut, list[Message]]:
    """The run and its message for the trainer (the message carries the run's token)."""
    run, token = create_run(session, team_id, spec, settings)
    return public(run), [train_run_message(str(run.id), token)]


def list_runs(session: Session, team_id: uuid.UUID, limit: int, cursor: str | None) -> Page[RunOut]:
    rows = team_newest_first(
        session, TrainingRun, team_id, limit + 1, decode_created_cursor(cursor)
    )
    return created_page(rows, limit, public)


def create_run(
    session: Session, team_id: uuid.UUID, spec: TrainingRunSpec, settings: Settings
) -> tuple[TrainingRun, str]:
    base_models.resolve(session, team_id, spec.base_model, settings)
    check_new_run(session, team_id, settings)
    snap = session.get(Snapshot, spec.snapshot_id)
    if snap is None or snap.team_id != team_id:
        raise NotFound({"snapshot_id": str(spec.snapshot_id), "reason": "snapshot not found"})
    if snap.status != "ready":
        raise InvalidRequest({"field": "snapshot_id", "reason": f"snapshot is {snap.status}"})
    if snap.num_items == 0:
        raise InvalidRequest({"field": "snapshot_id", "reason": "snapshot has no rows to train on"})
    for mode in dict.fromkeys([spec.mode, *(spec.common_modes or [])]):
        check_mode(snap, mode)
    check_eval_sets(session, team_id, spec.eval.sets)
    if spec.eval.select_on is not None:
        check_eval_sets(session, team_id, [spec.eval.select_on], field="eval.select_on")
    token = secrets.token_urlsafe(32)
    run = TrainingRun(
        team_id=team_id,
        snapshot_id=snap.id,
        spec=spec.model_dump(mode="json"),
        status="queued",
        token_hash=_hash(token),
        enqueued_at=utcnow(),
        metrics={},
        eval={},
        artifacts={},
    )
    session.add(run)
    session.flush()
    _add_event(session, run, "status", {"status": "queued"})
    return run, token


DATASET_PREFIX = "dataset:"


def check_eval_sets(
    session: Session, team_id: uuid.UUID, sets: list[str], field: str = "eval.sets"
) -> None:
    """Eval sets are ``SOURCE[:key=value...]`` (verifier kind, avg@k: see
    :func:`cgd.curation.eval_sets.parse_eval_set`) where SOURCE is a bundled set or
    ``dataset:<id>`` of one of the team's datasets with references (its field mapping is the
    one given at upload)."""
    from cgd.curation.eval_sets import EVAL_SETS, parse_eval_set
    from cgd.datasets.ops import get_dataset

    for name in sets:
        try:
            spec = parse_eval_set(name)
        except ValueError as exc:
            raise InvalidRequest({"field": field, "reason": str(exc)}) from None
        source = spec.source
        if source in EVAL_SETS:
            continue
        if source.startswith(DATASET_PREFIX) and (spec.question_field or spec.answer_field):
            raise InvalidRequest(
                {
                    "field": field,
                    "reason": f"{name!r}: an uploaded dataset's fields are mapped when it is "
                    "uploaded (prompt_field, reference_field); drop question=/answer=",
                }
            )
        if not source.startswith(DATASET_PREFIX):
            raise InvalidRequest(
                {
                    "field": field,
                    "reason": f"unknown set {source!r}: use one of {list(EVAL_SETS)} or "
                    "'dataset:<id>' for an uploaded dataset",
                }
            )
        dataset = get_dataset(session, team_id, _eval_dataset_id(source))
        if dataset.stats.get("share_with_reference", 0) < 1:
            raise InvalidRequest(
                {"field": field, "reason": f"dataset {dataset.id} lacks references"}
            )


def _eval_dataset_id(source: str) -> uuid.UUID:
    try:
        return uuid.UUID(source.removeprefix(DATASET_PREFIX))
    except ValueError:
        raise InvalidRequest(
            {"field": "eval.sets", "reason": f"bad dataset id in {source!r}"}
        ) from None


def eval_dataset_rows(session: Session, run: TrainingRun, dataset_id: uuid.UUID) -> list[Any]:
    """The items of an eval dataset the run's spec names (and only those datasets)."""
    from cgd.curation.eval_sets import parse_eval_set
    from cgd.db.models import DatasetItem

    spec_eval = run.spec.get("eval", {})
    named = [*spec_eval.get("sets", []), *filter(None, [spec_eval.get("select_on")])]
    sources = {parse_eval_set(s).source for s in named}
    if f"{DATASET_PREFIX}{dataset_id}" not in sources:
        raise NotFound({"dataset_id": str(dataset_id), "reason": "not an eval set of this run"})
    return list(
        session.execute(
            select(DatasetItem.item_id, DatasetItem.prompt, DatasetItem.reference)
            .where(DatasetItem.dataset_id == dataset_id)
            .order_by(DatasetItem.idx)
        ).tuples()
    )


def get_run(session: Session, team_id: uuid.UUID, run_id: uuid.UUID) -> TrainingRun:
    return team_row(session, TrainingRun, team_id, run_id, TrainingRunNotFound, "training_run_id")


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def run_for_token(session: Session, run_id: uuid.UUID, authorization: str | None) -> TrainingRun:
    """The run a trainer's ``Authorization: Bearer <run token>`` grants (only that one)."""
    token = _bearer(authorization)
    run = session.get(TrainingRun, run_id)
    expected = run.token_hash if run else _hash("no such run")
    if token is None or not hmac.compare_digest(expected, _hash(token)):
        raise Unauthorized("invalid run token")
    assert run is not None
    if run.status in TERMINAL:
        # A token is good for the life of its run only: afterwards it can neither read the
        # data nor rewrite the run's results.
        raise Unauthorized({"reason": f"run token expired: the run is {run.status}"})
    return run


# Serialises claims (pg_advisory_xact_lock key): a claim reads every team's queue to pick one run.
CLAIM_LOCK = 0x636764_7275  # "cgd", "ru"


def queued_run_for_token(session: Session, authorization: str | None) -> TrainingRun:
    """The queued run a message's token belongs to now (claims move tokens between runs)."""
    token = _bearer(authorization)
    run = None
    if token is not None:
        run = session.scalar(
            select(TrainingRun).where(
                TrainingRun.status == "queued", TrainingRun.token_hash == _hash(token)
            )
        )
    if run is None:
        raise Unauthorized("invalid run token, or its run is no longer queued")
    return run


def claim(session: Session, run: TrainingRun) -> TrainingRun | None:
    """The run a trainer holding ``run``'s message starts: the next one round-robin by team
    (the team served least recently first, never-served teams before all; its oldest queued run),
    not necessarily ``run`` itself. Messages are interchangeable tickets: when another run is
    chosen, the two swap tokens, so the message still in the queue now starts ``run`` and every
    queued run keeps exactly one message. None when ``run`` is no longer waiting."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
    session.refresh(run)
    if run.status != "queued" or run.cancel_requested_at is not None:
        return None
    served = (
        select(TrainingRun.team_id, func.max(TrainingRun.started_at).label("at"))
        .where(TrainingRun.started_at.is_not(None))
        .group_by(TrainingRun.team_id)
        .subquery()
    )
    chosen = session.scalars(
        select(TrainingRun)
        .outerjoin(served, served.c.team_id == TrainingRun.team_id)
        .where(TrainingRun.status == "queued", TrainingRun.cancel_requested_at.is_(None))
        .order_by(served.c.at.asc().nulls_first(), TrainingRun.created_at, TrainingRun.id)
        .limit(1)
    ).one()
    if chosen.id != run.id:
        run.token_hash, chosen.token_hash = chosen.token_hash, run.token_hash
        run.enqueued_at, chosen.enqueued_at = chosen.enqueued_at, run.enqueued_at
    now = utcnow()
    chosen.status = "running"
    chosen.started_at = now
    chosen.heartbeat_at = now
    _add_event(session, chosen, "status", {"status": "running", "phase": "claimed"})
    session.flush()
    return chosen


def sweep_lost(session: Session, lost_after_s: float) -> list[str]:
    """Fail running runs whose trainer went silent (no event for ``lost_after_s``), so none is
    left ``running`` forever. Called by the worker's sweeper; reads never write."""
    cutoff = utcnow() - timedelta(seconds=lost_after_s)
    runs = list(
        session.scalars(
            select(TrainingRun)
            .where(TrainingRun.status == "running", TrainingRun.heartbeat_at < cutoff)
            .limit(1000)
            .with_for_update(skip_locked=True)
        )
    )
    for run in runs:
        assert run.heartbeat_at is not None
        _finish(run, "failed", f"trainer lost: no event since {run.heartbeat_at.isoformat()}")
        _add_event(session, run, "status", {"status": "failed", "error": run.error})
    session.flush()
    return [str(r.id) for r in runs]


def resend_unsent(session: Session, requeue_after_s: float) -> list[Message]:
    """Messages for queued runs no trainer has taken after ``requeue_after_s``. Call only when
    the train queue is empty: then their message was lost (broker restart, or never sent), not
    waiting. Each gets a fresh token (the lost one dies with its message)."""
    stale = utcnow() - timedelta(seconds=requeue_after_s)
    runs = list(
        session.scalars(
            select(TrainingRun)
            .where(
                TrainingRun.status == "queued",
                TrainingRun.cancel_requested_at.is_(None),
                TrainingRun.started_at.is_(None),
                TrainingRun.heartbeat_at.is_(None),
                or_(
                    TrainingRun.enqueued_at < stale,
                    and_(TrainingRun.enqueued_at.is_(None), TrainingRun.created_at < stale),
                ),
            )
            .limit(100)
            .with_for_update(skip_locked=True)
        )
    )
    messages = []
    for run in runs:
        token = secrets.token_urlsafe(32)
        run.token_hash = _hash(token)
        run.enqueued_at = utcnow()
        messages.append(train_run_message(str(run.id), token))
    session.flush()
    return messages


def list_events(
    session: Session, run: TrainingRun, limit: int, cursor: str | None
) -> Page[EventOut]:
    after = decode_cursor(cursor, (int,))
    q = select(TrainingRunEvent).where(TrainingRunEvent.run_id == run.id)
    if after is not None:
        q = q.where(TrainingRunEvent.id > after[0])
    rows = list(session.scalars(q.order_by(TrainingRunEvent.id).limit(limit + 1)))
    return page(rows, limit, lambda e: (e.id,), EventOut.model_validate)


def cancel_run(session: Session, run: TrainingRun) -> None:
    if run.status in TERMINAL:
        raise TrainingRunFinished({"training_run_id": str(run.id), "status": run.status})
    run.cancel_requested_at = utcnow()
    if run.status == "queued":  # no trainer has it yet: the task will skip it
        _finish(run, "cancelled", None)
    _add_event(session, run, "status", {"status": run.status, "cancel_requested": True})
    session.flush()


def record_event(session: Session, run: TrainingRun, event: EventIn) -> EventAck:
    """Apply a trainer's event to the run; returns what the trainer needs to know (cancel)."""
    now = utcnow()
    run.heartbeat_at = now
    data = event.data
    if run.status in TERMINAL and event.type == "status":
        return EventAck(cancel=True, status=run.status)  # a late trainer: ignore, tell it to stop
    if event.type == "status":
        _apply_status(run, data, now)
    elif event.type == "step":
        run.metrics = {k: v for k, v in data.items() if isinstance(v, int | float | str)}
        metrics.training_step(str(run.id), data)
        total = run.metrics.get("total_steps")  # every step event says how many there are
        if isinstance(total, int) and total > 0:
            run.progress = min(1.0, float(data.get("step", 0)) / total)
    elif event.type == "eval":
        merged = dict(run.eval)
        sizes = data.get("n") or {}
        for name, acc in (data.get("accuracy") or {}).items():
            entry: dict[str, Any] = {
                "accuracy": acc,
                "n": sizes.get(name),
                "step": data.get("step"),
            }
            # Scalars only: per-problem verdicts (`problems`) stay in the event, so the run row
            # stays small however large the eval sets are.
            for key in ("avg_at_k", "pass_at_k", "no_answer"):
                value = (data.get(key) or {}).get(name)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    entry[key] = value
            merged[name] = entry
        if "uncertainty" in data:
            merged["uncertainty"] = data["uncertainty"]
        if "selected" in data:
            merged["selected"] = data["selected"]
        if "select_on" in data:  # a validation score of checkpoint selection
            merged["validation"] = {
                "on": data["select_on"],
                "step": data.get("step"),
                "accuracy": data.get("validation_accuracy"),
            }
        run.eval = merged
    elif event.type == "data" and isinstance(data.get("plan"), dict):
        run.plan = RunPlan.model_validate(data["plan"]).model_dump()
    elif event.type == "artifact":
        artifacts = dict(run.artifacts)
        kind = str(data.get("kind", "artifact"))
        artifacts["model_path" if kind == "model" else kind] = data.get("path")
        run.artifacts = artifacts
    _add_event(session, run, event.type, data)
    session.flush()
    return EventAck(cancel=run.cancel_requested_at is not None, status=run.status)


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
    metrics.training_finished(str(run.id))
    run.status = status
    run.error = error
    run.finished_at = utcnow()


def _add_event(session: Session, run: TrainingRun, kind: str, data: dict[str, Any]) -> None:
    session.add(TrainingRunEvent(run_id=run.id, type=kind, data=data))


def public(run: TrainingRun) -> RunOut:
    return RunOut.model_validate(
        {
            "id": run.id,
            "snapshot_id": run.snapshot_id,
            "status": run.status,
            "progress": round(run.progress, 4),
            "metrics": run.metrics,
            "plan": run.plan,
            "eval": run.eval,
            "artifacts": run.artifacts,
            "error": run.error,
            "cancel_requested": run.cancel_requested_at is not None,
            "spec": run.spec,
            "created_at": run.created_at,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
    )
