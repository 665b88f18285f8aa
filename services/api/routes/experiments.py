"""/v1/experiments: the paper's comparison in one request. One training run per (mode, seed) on
one snapshot, the same rows and steps for every run, and a report with paired intervals."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from cgd.datasets.errors import DatasetNotFound
from cgd.errors import InvalidRequest, NotFound
from cgd.experiments import ops
from cgd.experiments.errors import ExperimentNotFound
from cgd.experiments.report import to_markdown, to_svg
from cgd.experiments.schemas import ExperimentOut, ExperimentSpec
from cgd.pagination import Page
from cgd.snapshots.errors import ModeUnavailable
from services.api.deps import SessionDep, SettingsDep, TeamDep
from services.api.errors import JSONBody, error_responses

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


class ReportFormat(StrEnum):
    json = "json"
    md = "md"
    svg = "svg"


@router.post(
    "",
    status_code=202,
    response_model=ExperimentOut,
    responses=error_responses(NotFound, DatasetNotFound, InvalidRequest, ModeUnavailable),
)
def create_experiment(
    request: Request,
    spec: ExperimentSpec,
    session: SessionDep,
    team_id: TeamDep,
    settings: SettingsDep,
) -> JSONBody:
    """Start one training run per (mode, seed) on a ready snapshot. Every run trains on the
    rows all listed modes can use, with the same hyperparameters, steps and evaluation."""
    exp, messages = ops.create(session, team_id, spec, settings)
    request.state.outbox.extend(messages)
    return JSONBody(exp.model_dump(mode="json"), status_code=202)


@router.get("", response_model=Page[ExperimentOut], responses=error_responses(InvalidRequest))
def list_experiments(
    session: SessionDep,
    team_id: TeamDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> Page[ExperimentOut]:
    """The team's experiments, newest first."""
    return ops.list_experiments(session, team_id, limit, cursor)


@router.get(
    "/{experiment_id}", response_model=ExperimentOut, responses=error_responses(ExperimentNotFound)
)
def get_experiment(
    session: SessionDep, team_id: TeamDep, experiment_id: uuid.UUID
) -> ExperimentOut:
    """One experiment: its status and every run's mode, seed, status and progress."""
    return ops.public(session, ops.get_experiment(session, team_id, experiment_id))


@router.post(
    "/{experiment_id}/cancel",
    response_model=ExperimentOut,
    responses=error_responses(ExperimentNotFound),
)
def cancel_experiment(
    session: SessionDep, team_id: TeamDep, experiment_id: uuid.UUID
) -> ExperimentOut:
    """Cancel the runs that have not finished; finished runs keep their results."""
    return ops.cancel(session, ops.get_experiment(session, team_id, experiment_id))


@router.get(
    "/{experiment_id}/report",
    responses={
        **error_responses(ExperimentNotFound),
        200: {
            "description": "The report: JSON (format=json), a Markdown table (md), a chart (svg)",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/markdown": {"schema": {"type": "string"}},
                "image/svg+xml": {"schema": {"type": "string"}},
            },
        },
    },
)
def experiment_report(
    session: SessionDep,
    team_id: TeamDep,
    experiment_id: uuid.UUID,
    format: ReportFormat = ReportFormat.json,
) -> Response:
    """Per mode and eval set: accuracy with a 95% paired-bootstrap interval, the difference vs
    cgd with its own interval ("no significant difference" when it contains 0), avg@k and
    unbiased pass@k, tokens trained, wall time, the uncertainty gap, and whether every run
    trained on the same rows for the same steps. JSON, Markdown or an SVG chart."""
    data = ops.report(session, ops.get_experiment(session, team_id, experiment_id))
    if format == ReportFormat.md:
        return Response(to_markdown(data), media_type="text/markdown; charset=utf-8")
    if format == ReportFormat.svg:
        return Response(to_svg(data), media_type="image/svg+xml")
    return JSONBody(data)
