"""The dict-returning client (``CgdClient``), kept for scripts written against it; the ``cgd`` team
CLI is built on it. New code uses the typed :class:`cgd.client.Client`, which returns the
server's own response models. Both share one transport (:mod:`cgd.client.base`).

```python
from cgd.client import CgdClient

with CgdClient() as api:  # CGD_API_URL / CGD_API_KEY from the environment
    ds = api.upload_dataset("gsm8k_train.jsonl", name="gsm8k")
    job = api.create_job({"dataset_id": ds["id"], "student": {...}, "teacher": {...}})
    api.wait_job(job["id"])
    for t in api.iter_triplets(job["id"], refined_correct=True):
        ...
    snap = api.create_snapshot(job_ids=[job["id"]], name="gsm8k-cgd-v1")
    api.export_snapshot(snap["id"], "train.jsonl", layout="messages")
```

Every method returns the API's JSON (dicts); lists come as pages ``{"data": [...],
"next_cursor": ...}`` from ``list_*`` and as item iterators that follow ``next_cursor`` from
``iter_*``. Any error answer raises :class:`CgdApiError` (``status``, ``kind``, ``detail``) parsed
from the API's ``{"error", "detail"}`` body; an unreachable API raises
:class:`CgdConnectionError` (a ``CgdApiError`` with ``status`` 0).

Retries (the project's one policy, :mod:`cgd.retry`: ``max_retries``, full-jitter exponential
backoff, ``Retry-After`` in seconds or as an HTTP-date honoured up to ``retry_after_max_s``) cover
502/503/504 answers and transport errors, but only where repeating the request cannot do the work
twice:

* ``GET``/``DELETE`` are idempotent: retried on those statuses and on any transport error
  (a ``DELETE`` whose first attempt's answer was lost and whose retry gets 404 counts as done).
* ``POST`` creates or changes something. It is retried after a *connect* error (the connection
  was never made, so the request was never sent), and otherwise only when it carries an
  ``Idempotency-Key``: the server then answers a repeat with the first result instead of doing
  the work again. A 503 or a read error on a POST without a key is raised, never repeated: the
  server may have committed the first attempt. ``upload_dataset`` and ``create_job`` send a
  fresh random key per call unless given one (those endpoints honour it), so they are safe to
  retry; snapshots, training runs, cancel and retry-failed are not retried past a connect error.
* 4xx answers are never retried: the request itself is wrong.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypedDict

from cgd.client.base import BaseClient, body_of, query
from cgd.client.base import idempotency_key as new_key
from cgd.client.errors import CgdApiError, CgdConnectionError, format_detail
from cgd.client.resources import poll
from cgd.client.transfer import (
    ExportResult,
    ProgressCallback,
    download,
    hub_dir,
    unpack_hub,
    upload_request,
)
from cgd.enums import (
    TERMINAL_JOB_STATUSES,
    ExportFormat,
    ExportLayout,
    ExportMode,
    ItemState,
    Split,
    VerdictFilter,
)

__all__ = [
    "CgdApiError",
    "CgdClient",
    "CgdConnectionError",
    "ExportResult",
    "Page",
    "TERMINAL_STATUSES",
    "format_detail",
]

# Jobs and runs end in the same three statuses.
TERMINAL_STATUSES = TERMINAL_JOB_STATUSES


def _poll(
    fetch: Callable[[], dict[str, Any]],
    poll_s: float,
    timeout_s: float | None,
    on_status: Callable[[dict[str, Any]], None] | None,
    done: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """:func:`cgd.client.resources.poll`, by default until the status is a terminal one."""
    finished = done or (lambda s: s["status"] in TERMINAL_STATUSES)
    return poll(fetch, finished, poll_s, timeout_s, on_status)


class Page(TypedDict):
    data: list[dict[str, Any]]
    next_cursor: str | None


class CgdClient(BaseClient):
    """The cgd REST API, answers as the API's JSON (dicts). ``api_url``/``api_key`` default to
    ``CGD_API_URL``/``CGD_API_KEY``; the other arguments are :class:`~cgd.client.base.BaseClient`'s
    (timeouts, retries). Use it as a context manager, or call :meth:`close`."""

    def __enter__(self) -> CgdClient:
        return self

    def _page(self, method: str, path: str, **kwargs: Any) -> Page:
        body = self._json(method, path, **kwargs)
        return Page(data=list(body["data"]), next_cursor=body.get("next_cursor"))

    def _paginate(
        self, path: str, page_size: int | None, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            q = query(**(params or {}), limit=page_size, cursor=cursor)
            page = self._json("GET", path, params=q)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- operations -----------------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz``: the API process is up."""
        return dict(self._json("GET", "/healthz"))

    def readyz(self) -> dict[str, Any]:
        """``GET /readyz``: ``{"status": "ok"|"unavailable", "checks": {...}}``; a 503 answer
        is returned (not raised), it is what the caller asked about."""
        response = self._send("GET", "/readyz", ok_statuses=(503,))
        return dict(response.json())

    # -- datasets -------------------------------------------------------------------------------

    def upload_dataset(
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
    ) -> dict[str, Any]:
        """``POST /v1/datasets``: streams the file from disk (never read into memory whole).

        ``file`` is a path or an open binary file (seekable, for retries). The format follows
        the file name (``.jsonl``, ``.jsonl.gz``, ``.csv``, ``.parquet``). A fresh
        ``Idempotency-Key`` is sent unless one is given, which makes retrying safe.
        ``progress(bytes_sent, total)`` is called as the file goes out. A bad row raises
        ``CgdApiError`` 422 ``InvalidDataset`` with ``.line`` and ``.reason``."""
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
            return dict(self._json("POST", "/v1/datasets", timeout=self.transfer, **kw))

    def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Page:
        return self._page("GET", "/v1/datasets", params=query(limit=limit, cursor=cursor))

    def iter_datasets(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/datasets", page_size)

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def list_items(
        self, dataset_id: str, limit: int | None = None, cursor: str | None = None
    ) -> Page:
        q = query(limit=limit, cursor=cursor)
        return self._page("GET", f"/v1/datasets/{dataset_id}/items", params=q)

    def iter_items(self, dataset_id: str, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate(f"/v1/datasets/{dataset_id}/items", page_size)

    def delete_dataset(self, dataset_id: str) -> None:
        self._send("DELETE", f"/v1/datasets/{dataset_id}")

    # -- prompt templates -----------------------------------------------------------------------

    def create_template(self, name: str, **parts: Any) -> dict[str, Any]:
        """``POST /v1/templates``: version 1 of a team template (``critique=``, ``refine=``,
        ``system=``, ``solve=``, ``solve_system=``, ``description=``; the rest keep ``cgd``)."""
        return dict(self._json("POST", "/v1/templates", json={"name": name, **parts}))

    def update_template(self, name: str, **parts: Any) -> dict[str, Any]:
        """``PUT /v1/templates/{name}``: the next version (jobs keep the version they pinned)."""
        return dict(self._json("PUT", f"/v1/templates/{name}", json=parts))

    def get_template(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = query(version=version)
        return dict(self._json("GET", f"/v1/templates/{name}", params=params))

    def list_templates(self, limit: int | None = None, cursor: str | None = None) -> Page:
        return self._page("GET", "/v1/templates", params=query(limit=limit, cursor=cursor))

    # -- generation jobs ------------------------------------------------------------------------

    def create_job(self, spec: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /v1/jobs`` with a dict or a ``cgd.generation.spec.JobSpec``; → ``{id, status,
        total_items}``. A fresh ``Idempotency-Key`` is sent unless one is given."""
        headers = {"Idempotency-Key": new_key(idempotency_key)}
        return dict(self._json("POST", "/v1/jobs", json=body_of(spec), headers=headers))

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Status: ``status``, ``counts``, ``by_stage``, ``progress``, ``items_per_s``,
        ``eta_s``, ``tokens``, ``errors``, …"""
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, limit: int | None = None, cursor: str | None = None) -> Page:
        return self._page("GET", "/v1/jobs", params=query(limit=limit, cursor=cursor))

    def iter_jobs(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/jobs", page_size)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def resume_job(self, job_id: str) -> dict[str, Any]:
        """Resumes a paused job now; → ``{id, status}`` (409 when it is not paused)."""
        return dict(self._json("POST", f"/v1/jobs/{job_id}/resume"))

    def delete_job(self, job_id: str) -> None:
        """Cancels the job and deletes it with its triplets (snapshots keep theirs)."""
        self._send("DELETE", f"/v1/jobs/{job_id}")

    def retry_failed(self, job_id: str) -> dict[str, Any]:
        """Re-runs the job's failed items from their last completed stage; → ``{id, retried}``."""
        return dict(self._json("POST", f"/v1/jobs/{job_id}/retry-failed"))

    def list_triplets(
        self,
        job_id: str,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        status: ItemState | str | None = None,
        verdict: VerdictFilter | str | None = None,
        initial_correct: bool | None = None,
        refined_correct: bool | None = None,
    ) -> Page:
        q = query(
            limit=limit,
            cursor=cursor,
            status=status,
            verdict=verdict,
            initial_correct=initial_correct,
            refined_correct=refined_correct,
        )
        return self._page("GET", f"/v1/jobs/{job_id}/triplets", params=q)

    def iter_triplets(
        self,
        job_id: str,
        page_size: int | None = None,
        *,
        status: ItemState | str | None = None,
        verdict: VerdictFilter | str | None = None,
        initial_correct: bool | None = None,
        refined_correct: bool | None = None,
    ) -> Iterator[dict[str, Any]]:
        filters = {
            "status": status,
            "verdict": verdict,
            "initial_correct": initial_correct,
            "refined_correct": refined_correct,
        }
        return self._paginate(f"/v1/jobs/{job_id}/triplets", page_size, filters)

    def wait_job(
        self,
        job_id: str,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Polls until the job is completed, failed or cancelled; returns the last status.
        Raises ``TimeoutError`` after ``timeout_s``."""
        return _poll(lambda: self.get_job(job_id), poll_s, timeout_s, on_status)

    # -- snapshots ------------------------------------------------------------------------------

    def create_snapshot(
        self,
        spec: Any = None,
        *,
        job_ids: list[str] | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """``POST /v1/snapshots``: the curation spec (dict or ``CurationSpec``) with
        ``job_ids``/``name`` filled in from the arguments when given. Small snapshots come
        back ``ready``; large ones ``building`` (see :meth:`wait_snapshot`)."""
        body = body_of(spec)
        if job_ids is not None:
            body["job_ids"] = list(job_ids)
        if name is not None:
            body["name"] = name
        return dict(self._json("POST", "/v1/snapshots", json=body))

    def get_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/snapshots/{snapshot_id}"))

    def list_snapshots(self, limit: int | None = None, cursor: str | None = None) -> Page:
        q = query(limit=limit, cursor=cursor)
        return self._page("GET", "/v1/snapshots", params=q)

    def iter_snapshots(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/snapshots", page_size)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._send("DELETE", f"/v1/snapshots/{snapshot_id}")

    def wait_snapshot(
        self,
        snapshot_id: str,
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Polls while the snapshot is ``building``; returns it ``ready`` or ``failed``."""
        return _poll(
            lambda: self.get_snapshot(snapshot_id),
            poll_s,
            timeout_s,
            on_status,
            done=lambda s: s["status"] != "building",
        )

    def snapshot_card(self, snapshot_id: str) -> dict[str, Any]:
        """The dataset card as JSON (its ``markdown`` key holds the rendered card)."""
        return dict(self._json("GET", f"/v1/snapshots/{snapshot_id}/card"))

    def snapshot_card_markdown(self, snapshot_id: str) -> str:
        q = {"format": "markdown"}
        return self._send("GET", f"/v1/snapshots/{snapshot_id}/card", params=q).text

    def export_snapshot(
        self,
        snapshot_id: str,
        path: str | os.PathLike[str],
        *,
        format: ExportFormat | str = ExportFormat.jsonl,
        layout: ExportLayout | str = ExportLayout.native,
        mode: ExportMode | str | None = None,
        split: Split | str = Split.all,
        progress: ProgressCallback | None = None,
        chunk_size: int = 1 << 20,
    ) -> ExportResult:
        """Streams ``GET /v1/snapshots/{id}/export`` to ``path`` (through ``path.part``, renamed
        when complete, so a broken download never leaves a truncated file under the name).
        ``progress(bytes_done, total_or_None)`` is called per chunk."""
        q = query(format=format, layout=layout, split=split, mode=mode)  # native takes no mode
        url = f"/v1/snapshots/{snapshot_id}/export"
        return download(self, url, q, Path(path), progress, chunk_size)

    def export_hub(
        self,
        snapshot_id: str,
        dest_dir: str | os.PathLike[str],
        *,
        mode: ExportMode | str = ExportMode.cgd,
        license: str = "other",
        progress: ProgressCallback | None = None,
    ) -> ExportResult:
        """Downloads ``GET /v1/snapshots/{id}/export-hub`` (a tar) and unpacks it into
        ``dest_dir`` (which must be absent or empty): a Hub dataset folder. ``path`` in the
        result is the folder."""
        dest, tar_path = hub_dir(dest_dir)
        url = f"/v1/snapshots/{snapshot_id}/export-hub"
        q = {"mode": mode, "license": license}
        return unpack_hub(tar_path, dest, download(self, url, q, tar_path, progress))

    # -- training runs --------------------------------------------------------------------------

    def create_run(self, spec: Any) -> dict[str, Any]:
        """``POST /v1/training-runs`` with a dict or a ``TrainingRunSpec``; → ``{id, status}``."""
        return dict(self._json("POST", "/v1/training-runs", json=body_of(spec)))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/training-runs/{run_id}"))

    def list_runs(self, limit: int | None = None, cursor: str | None = None) -> Page:
        q = query(limit=limit, cursor=cursor)
        return self._page("GET", "/v1/training-runs", params=q)

    def iter_runs(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/training-runs", page_size)

    def list_events(self, run_id: str, limit: int | None = None, cursor: str | None = None) -> Page:
        q = query(limit=limit, cursor=cursor)
        return self._page("GET", f"/v1/training-runs/{run_id}/events", params=q)

    def iter_events(self, run_id: str, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate(f"/v1/training-runs/{run_id}/events", page_size)

    def tail_events(
        self, run_id: str, *, poll_s: float = 2.0, page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Yields the run's events as they arrive (from the first), and returns once the run is
        completed, failed or cancelled and every event it wrote has been yielded."""
        cursor: str | None = None  # the cursor of the last page (its next one does not exist yet)
        seen = -1

        def drain() -> Iterator[dict[str, Any]]:
            nonlocal cursor, seen
            while True:
                page = self.list_events(run_id, limit=page_size, cursor=cursor)
                for event in page["data"]:
                    if int(event["id"]) > seen:
                        seen = int(event["id"])
                        yield event
                if not page["next_cursor"]:
                    return
                cursor = page["next_cursor"]

        while True:
            yield from drain()
            if self.get_run(run_id)["status"] in TERMINAL_STATUSES:
                yield from drain()  # what was written between the last page and the status
                return
            time.sleep(poll_s)

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/training-runs/{run_id}/cancel"))

    def wait_run(
        self,
        run_id: str,
        *,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Polls until the run is completed, failed or cancelled; returns it."""
        return _poll(lambda: self.get_run(run_id), poll_s, timeout_s, on_status)

    # -- experiments ----------------------------------------------------------------------------

    def create_experiment(self, spec: Any) -> dict[str, Any]:
        """``POST /v1/experiments``: one training run per (mode, seed); → the experiment."""
        return dict(self._json("POST", "/v1/experiments", json=body_of(spec)))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/experiments/{experiment_id}"))

    def iter_experiments(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/experiments", page_size)

    def cancel_experiment(self, experiment_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/experiments/{experiment_id}/cancel"))

    def experiment_report(self, experiment_id: str, format: str = "json") -> Any:
        """The report: a dict for ``json``, text for ``md`` (Markdown) and ``svg`` (a chart)."""
        path = f"/v1/experiments/{experiment_id}/report"
        if format == "json":
            return self._json("GET", path, params={"format": "json"})
        return self._send("GET", path, params={"format": format}).text

    def wait_experiment(
        self,
        experiment_id: str,
        *,
        poll_s: float = 5.0,
        timeout_s: float | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Polls until every run of the experiment has ended; returns the experiment."""
        return _poll(lambda: self.get_experiment(experiment_id), poll_s, timeout_s, on_status)
