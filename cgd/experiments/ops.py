"""Experiments: one training run per (mode, seed) on one snapshot, through the runs machinery
(tokens, queueing, the sweeper and cancellation all apply to each), and the report built from
what those runs reported."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cgd.db.models import Experiment, ExperimentRun, TrainingRun, TrainingRunEvent, utcnow
from cgd.db.queries import team_newest_first, team_row
from cgd.enums import TERMINAL_RUN_STATUSES, ExportMode
from cgd.experiments.errors import ExperimentNotFound
from cgd.experiments.report import RunResult, build_report
from cgd.experiments.schemas import ExperimentOut, ExperimentRunOut, ExperimentSpec
from cgd.pagination import Page, created_page, decode_created_cursor
from cgd.runs import ops as runs
from cgd.runs.schemas import TrainingRunSpec
from cgd.settings import Settings
from cgd.tasks import Message, train_run_message


def create(
    session: Session, team_id: uuid.UUID, spec: ExperimentSpec, settings: Settings
) -> tuple[ExperimentOut, list[Message]]:
    """The experiment and its runs (validated as one: a bad mode or eval set creates none)."""
    created: list[tuple[ExportMode, int, uuid.UUID]] = []
    messages: list[Message] = []
    # The runs first: creating one checks the snapshot (the team's, ready, every mode
    # exportable) and the eval sets; any refusal rolls the whole request back.
    for mode in spec.modes:
        for seed in spec.seeds:
            run_spec = TrainingRunSpec(
                snapshot_id=spec.snapshot_id,
                base_model=spec.base_model,
                mode=mode,
                method=spec.method,
                hyperparams=spec.hyperparams.model_copy(update={"seed": seed}),
                eval=spec.eval,
                # Every run trains on the rows all compared modes can use: same N everywhere.
                common_modes=list(spec.modes),
            )
            run, token = runs.create_run(session, team_id, run_spec, settings)
            created.append((mode, seed, run.id))
            messages.append(train_run_message(str(run.id), token))
    exp = Experiment(
        team_id=team_id, snapshot_id=spec.snapshot_id, spec=spec.model_dump(mode="json")
    )
    session.add(exp)
    session.flush()
    for mode, seed, run_id in created:
        session.add(ExperimentRun(experiment_id=exp.id, run_id=run_id, mode=mode, seed=seed))
    session.flush()
    return public(session, exp), messages


def get_experiment(session: Session, team_id: uuid.UUID, experiment_id: uuid.UUID) -> Experiment:
    return team_row(
        session, Experiment, team_id, experiment_id, ExperimentNotFound, "experiment_id"
    )


def list_experiments(
    session: Session, team_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[ExperimentOut]:
    rows = team_newest_first(session, Experiment, team_id, limit + 1, decode_created_cursor(cursor))
    return created_page(rows, limit, lambda e: public(session, e))


def _runs(session: Session, exp: Experiment) -> list[tuple[ExperimentRun, TrainingRun]]:
    rows = session.execute(
        select(ExperimentRun, TrainingRun)
        .join(TrainingRun, TrainingRun.id == ExperimentRun.run_id)
        .where(ExperimentRun.experiment_id == exp.id)
        .order_by(TrainingRun.created_at, TrainingRun.id)
    )
    return [(link, run) for link, run in rows.tuples()]


def _status(exp: Experiment, statuses: list[str]) -> str:
    if any(s not in TERMINAL_RUN_STATUSES for s in statuses):
        return "running" if any(s == "running" for s in statuses) else "queued"
    if exp.cancelled_at is not None or all(s == "cancelled" for s in statuses):
        return "cancelled"
    return "failed" if any(s == "failed" for s in statuses) else "completed"


def public(session: Session, exp: Experiment) -> ExperimentOut:
    pairs = _runs(session, exp)
    return ExperimentOut(
        id=exp.id,
        snapshot_id=exp.snapshot_id,
        status=_status(exp, [run.status for _, run in pairs]),
        runs=[
            ExperimentRunOut(
                id=run.id, mode=link.mode, seed=link.seed, status=run.status, progress=run.progress
            )
            for link, run in pairs
        ],
        spec=exp.spec,
        created_at=exp.created_at,
    )


def cancel(session: Session, exp: Experiment) -> ExperimentOut:
    """Cancel every run that has not finished (finished runs keep their results)."""
    exp.cancelled_at = exp.cancelled_at or utcnow()
    for _, run in _runs(session, exp):
        if run.status not in TERMINAL_RUN_STATUSES:
            runs.cancel_run(session, run)
    session.flush()
    return public(session, exp)


def _latest_event(session: Session, run_id: uuid.UUID, kind: str, key: str) -> dict[str, Any]:
    """The newest event of ``kind`` whose data has ``key`` (validation evals have no
    ``problems``: the final eval event does)."""
    for data in session.scalars(
        select(TrainingRunEvent.data)
        .where(TrainingRunEvent.run_id == run_id, TrainingRunEvent.type == kind)
        .order_by(TrainingRunEvent.id.desc())
    ):
        if isinstance(data, dict) and key in data:
            return data
    return {}


def run_results(
    session: Session, pairs: list[tuple[ExperimentRun, TrainingRun]]
) -> list[RunResult]:
    results = []
    for link, run in pairs:
        wall = None
        if run.started_at is not None and run.finished_at is not None:
            wall = (run.finished_at - run.started_at).total_seconds()
        tokens = run.metrics.get("tokens_trained")
        results.append(
            RunResult(
                run_id=str(run.id),
                mode=link.mode,
                seed=link.seed,
                status=run.status,
                data=_latest_event(session, run.id, "data", "rows_sha256"),
                eval=_latest_event(session, run.id, "eval", "problems"),
                tokens_trained=tokens if isinstance(tokens, int) else None,
                wall_s=wall,
                uncertainty=run.eval.get("uncertainty"),
            )
        )
    return results


def report(session: Session, exp: Experiment) -> dict[str, Any]:
    # One read of the runs for both the report and the status (build_report compares against
    # cgd when the experiment has it, else against nothing).
    pairs = _runs(session, exp)
    out = build_report(run_results(session, pairs))
    status = _status(exp, [run.status for _, run in pairs])
    return {"experiment_id": str(exp.id), "status": status, **out}
