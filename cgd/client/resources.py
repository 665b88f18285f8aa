"""The blocking client's resources, one per endpoint group; each method is one request through
:class:`~cgd.client.base.BaseClient` and returns the server's own response model. The asyncio
twins, with the same methods, are in :mod:`cgd.client.async_resources`."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel

from cgd.client.base import BaseClient, body_of, query
from cgd.client.base import idempotency_key as new_key
from cgd.client.pages import SyncPage
from cgd.client.transfer import (
    ExportResult,
    ProgressCallback,
    download,
    hub_dir,
    unpack_hub,
    upload_request,
)
from cgd.datasets.schemas import DatasetOut, ItemOut
from cgd.enums import (
    TERMINAL_JOB_STATUSES,
    ExportFormat,
    ExportLayout,
    ExportMode,
    ItemState,
    Split,
    VerdictFilter,
)
from cgd.experiments.schemas import ExperimentOut
from cgd.jobs.schemas import (
    JobCancelled,
    JobCreated,
    JobResumed,
    JobRetried,
    JobStatusOut,
    TripletOut,
)
from cgd.runs.schemas import EventOut, RunCreated, RunOut
from cgd.snapshots.schemas import CardOut, SnapshotDetail, SnapshotOut
from cgd.templates.schemas import TemplateOut

__all__ = ["Datasets", "Experiments", "Jobs", "Runs", "Snapshots", "Templates"]

T = TypeVar("T", bound=BaseModel)
# Ids as the API spells them or as the response models hold them.
Id = str | uuid.UUID
S = TypeVar("S")

# Jobs, runs and experiments' runs end in the same three statuses.
TERMINAL = frozenset(str(s) for s in TERMINAL_JOB_STATUSES)


def poll(
    fetch: Callable[[], S],
    done: Callable[[S], bool],
    poll_s: float,
    timeout_s: float | None,
    on_status: Callable[[S], None] | None,
) -> S:
    """Fetches until ``done``; ``TimeoutError`` after ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        current = fetch()
        if on_status is not None:
            on_status(current)
        if done(current):
            return current
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"still {status_of(current)} after {timeout_s}s")
        time.sleep(poll_s)


def status_of(current: Any) -> Any:
    """The ``status`` of a response model or of the dict-returning client's answer."""
    if isinstance(current, dict):
        return current["status"]
    return getattr(current, "status", current)


def snapshot_body(spec: Any, job_ids: Sequence[Id] | None, name: str | None) -> dict[str, Any]:
    """The curation spec with ``job_ids``/``name`` from the arguments when given."""
    body = body_of(spec)
    if job_ids is not None:
        body["job_ids"] = [str(j) for j in job_ids]
    if name is not None:
        body["name"] = name
    return body


class Resource:
    def __init__(self, client: BaseClient) -> None:
        self._client = client

    def _list(self, model: type[T], path: str, **params: Any) -> SyncPage[T]:
        def fetch(cursor: str | None) -> Any:
            return self._client._json("GET", path, params=query(**params, cursor=cursor))

        return SyncPage(model, fetch(None), fetch)


class Datasets(Resource):
    """``/v1/datasets``."""

    def create(
        self,
        file: str | os.PathLike[str] | IO[bytes],
        *,
        name: str | None = None,
        prompt_field: str | None = None,
        reference_field: str | None = None,
        response_field: str | None = None,
        id_field: str | None = None,
        solution_field: str | None = None,
        idempotency_key: str | None = None,
        filename: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> DatasetOut:
        """Uploads a ``.jsonl``/``.jsonl.gz``/``.csv``/``.parquet`` file, streamed from disk.
        A bad row raises ``ValidationFailed`` with ``.line`` and ``.reason``."""
        fields = {
            "name": name,
            "prompt_field": prompt_field,
            "reference_field": reference_field,
            "response_field": response_field,
            "id_field": id_field,
            "solution_field": solution_field,
        }
        with upload_request(
            file, fields, idempotency_key=idempotency_key, filename=filename, progress=progress
        ) as kw:
            return self._client._request(
                DatasetOut, "POST", "/v1/datasets", timeout=self._client.transfer, **kw
            )

    def get(self, dataset_id: Id) -> DatasetOut:
        return self._client._request(DatasetOut, "GET", f"/v1/datasets/{dataset_id}")

    def list(self, *, limit: int | None = None) -> SyncPage[DatasetOut]:
        return self._list(DatasetOut, "/v1/datasets", limit=limit)

    def items(self, dataset_id: Id, *, limit: int | None = None) -> SyncPage[ItemOut]:
        return self._list(ItemOut, f"/v1/datasets/{dataset_id}/items", limit=limit)

    def delete(self, dataset_id: Id) -> None:
        self._client._send("DELETE", f"/v1/datasets/{dataset_id}")


class Jobs(Resource):
    """``/v1/jobs``: generation jobs and their triplets."""

    def create(self, spec: Any, *, idempotency_key: str | None = None) -> JobCreated:
        """A dict or a ``JobSpec``; a fresh ``Idempotency-Key`` unless one is given."""
        headers = {"Idempotency-Key": new_key(idempotency_key)}
        return self._client._request(
            JobCreated, "POST", "/v1/jobs", json=body_of(spec), headers=headers
        )

    def get(self, job_id: Id) -> JobStatusOut:
        return self._client._request(JobStatusOut, "GET", f"/v1/jobs/{job_id}")

    def list(self, *, limit: int | None = None) -> SyncPage[JobStatusOut]:
        return self._list(JobStatusOut, "/v1/jobs", limit=limit)

    def cancel(self, job_id: Id) -> JobCancelled:
        return self._client._request(JobCancelled, "POST", f"/v1/jobs/{job_id}/cancel")

    def resume(self, job_id: Id) -> JobResumed:
        """Resumes a paused job now (``Conflict`` when it is not paused)."""
        return self._client._request(JobResumed, "POST", f"/v1/jobs/{job_id}/resume")

    def retry_failed(self, job_id: Id) -> JobRetried:
        return self._client._request(JobRetried, "POST", f"/v1/jobs/{job_id}/retry-failed")

    def delete(self, job_id: Id) -> None:
        """Cancels the job and deletes it with its triplets (snapshots keep theirs)."""
        self._client._send("DELETE", f"/v1/jobs/{job_id}")

    def triplets(
        self,
        job_id: Id,
        *,
        limit: int | None = None,
        status: ItemState | str | None = None,
        verdict: VerdictFilter | str | None = None,
        initial_correct: bool | None = None,
        refined_correct: bool | None = None,
    ) -> SyncPage[TripletOut]:
        return self._list(
            TripletOut,
            f"/v1/jobs/{job_id}/triplets",
            limit=limit,
            status=status,
            verdict=verdict,
            initial_correct=initial_correct,
            refined_correct=refined_correct,
        )

    def wait(
        self,
        job_id: Id,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_status: Callable[[JobStatusOut], None] | None = None,
    ) -> JobStatusOut:
        """Polls until the job is completed, failed or cancelled; returns the last status."""
        return poll(
            lambda: self.get(job_id), lambda j: j.status in TERMINAL, poll_s, timeout_s, on_status
        )


class Snapshots(Resource):
    """``/v1/snapshots``: curated, immutable training sets and their exports."""

    def create(
        self, spec: Any = None, *, job_ids: Sequence[Id] | None = None, name: str | None = None
    ) -> SnapshotOut:
        """The curation spec (dict or ``CurationSpec``) with ``job_ids``/``name`` from the
        arguments when given; large snapshots come back ``building`` (see :meth:`wait`)."""
        body = snapshot_body(spec, job_ids, name)
        return self._client._request(SnapshotOut, "POST", "/v1/snapshots", json=body)

    def get(self, snapshot_id: Id) -> SnapshotDetail:
        return self._client._request(SnapshotDetail, "GET", f"/v1/snapshots/{snapshot_id}")

    def list(self, *, limit: int | None = None) -> SyncPage[SnapshotOut]:
        return self._list(SnapshotOut, "/v1/snapshots", limit=limit)

    def delete(self, snapshot_id: Id) -> None:
        self._client._send("DELETE", f"/v1/snapshots/{snapshot_id}")

    def card(self, snapshot_id: Id) -> CardOut:
        return self._client._request(CardOut, "GET", f"/v1/snapshots/{snapshot_id}/card")

    def wait(
        self,
        snapshot_id: Id,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_status: Callable[[SnapshotDetail], None] | None = None,
    ) -> SnapshotDetail:
        """Polls while the snapshot is ``building``; returns it ``ready`` or ``failed``."""
        return poll(
            lambda: self.get(snapshot_id),
            lambda s: s.status != "building",
            poll_s,
            timeout_s,
            on_status,
        )

    def export(
        self,
        snapshot_id: Id,
        path: str | os.PathLike[str],
        *,
        format: ExportFormat | str = ExportFormat.jsonl,
        layout: ExportLayout | str = ExportLayout.native,
        mode: ExportMode | str | None = None,
        split: Split | str = Split.all,
        progress: ProgressCallback | None = None,
    ) -> ExportResult:
        """Streams the export to ``path`` (through ``path.part``, renamed when complete)."""
        q = query(format=format, layout=layout, split=split, mode=mode)
        url = f"/v1/snapshots/{snapshot_id}/export"
        return download(self._client, url, q, Path(path), progress)

    def export_hub(
        self,
        snapshot_id: Id,
        dest_dir: str | os.PathLike[str],
        *,
        mode: ExportMode | str = ExportMode.cgd,
        license: str = "other",
        progress: ProgressCallback | None = None,
    ) -> ExportResult:
        """A Hub dataset folder in ``dest_dir`` (absent or empty)."""
        dest, tar = hub_dir(dest_dir)
        url = f"/v1/snapshots/{snapshot_id}/export-hub"
        res = download(self._client, url, query(mode=mode, license=license), tar, progress)
        return unpack_hub(tar, dest, res)


class Runs(Resource):
    """``/v1/training-runs``."""

    def create(self, spec: Any) -> RunCreated:
        """A dict or a ``TrainingRunSpec``."""
        return self._client._request(RunCreated, "POST", "/v1/training-runs", json=body_of(spec))

    def get(self, run_id: Id) -> RunOut:
        return self._client._request(RunOut, "GET", f"/v1/training-runs/{run_id}")

    def list(self, *, limit: int | None = None) -> SyncPage[RunOut]:
        return self._list(RunOut, "/v1/training-runs", limit=limit)

    def events(self, run_id: Id, *, limit: int | None = None) -> SyncPage[EventOut]:
        return self._list(EventOut, f"/v1/training-runs/{run_id}/events", limit=limit)

    def cancel(self, run_id: Id) -> RunOut:
        return self._client._request(RunOut, "POST", f"/v1/training-runs/{run_id}/cancel")

    def wait(
        self,
        run_id: Id,
        *,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        on_status: Callable[[RunOut], None] | None = None,
    ) -> RunOut:
        """Polls until the run is completed, failed or cancelled; returns it."""
        return poll(
            lambda: self.get(run_id), lambda r: r.status in TERMINAL, poll_s, timeout_s, on_status
        )


class Templates(Resource):
    """``/v1/templates``: the team's prompt templates, versioned."""

    def create(self, name: str, **parts: Any) -> TemplateOut:
        """Version 1 (``critique=``, ``refine=``, ``system=``, ``solve=``, ``solve_system=``,
        ``description=``; the rest keep ``cgd``'s)."""
        body = {"name": name, **parts}
        return self._client._request(TemplateOut, "POST", "/v1/templates", json=body)

    def update(self, name: str, **parts: Any) -> TemplateOut:
        """The next version (jobs keep the version they pinned)."""
        return self._client._request(TemplateOut, "PUT", f"/v1/templates/{name}", json=parts)

    def get(self, name: str, *, version: int | None = None) -> TemplateOut:
        params = query(version=version)
        return self._client._request(TemplateOut, "GET", f"/v1/templates/{name}", params=params)

    def list(self, *, limit: int | None = None) -> SyncPage[TemplateOut]:
        return self._list(TemplateOut, "/v1/templates", limit=limit)


class Experiments(Resource):
    """``/v1/experiments``: CGD against its baselines, one training run per (mode, seed)."""

    def create(self, spec: Any) -> ExperimentOut:
        return self._client._request(ExperimentOut, "POST", "/v1/experiments", json=body_of(spec))

    def get(self, experiment_id: Id) -> ExperimentOut:
        return self._client._request(ExperimentOut, "GET", f"/v1/experiments/{experiment_id}")

    def list(self, *, limit: int | None = None) -> SyncPage[ExperimentOut]:
        return self._list(ExperimentOut, "/v1/experiments", limit=limit)

    def cancel(self, experiment_id: Id) -> ExperimentOut:
        path = f"/v1/experiments/{experiment_id}/cancel"
        return self._client._request(ExperimentOut, "POST", path)

    def report(self, experiment_id: Id, *, format: str = "json") -> Any:
        """A dict for ``json``; text for ``md`` (Markdown) and ``svg`` (a chart)."""
        path = f"/v1/experiments/{experiment_id}/report"
        response = self._client._send("GET", path, params={"format": format})
        return response.json() if format == "json" else response.text

    def wait(
        self,
        experiment_id: Id,
        *,
        poll_s: float = 5.0,
        timeout_s: float | None = None,
        on_status: Callable[[ExperimentOut], None] | None = None,
    ) -> ExperimentOut:
        """Polls until every run of the experiment has ended."""
        return poll(
            lambda: self.get(experiment_id),
            lambda e: e.status in TERMINAL,
            poll_s,
            timeout_s,
            on_status,
        )
