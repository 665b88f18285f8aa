"""A synchronous Python client for the cgd REST API (v1); the ``cgd`` team CLI is built on it.

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

import contextlib
import io
import os
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypedDict, cast
from urllib.parse import unquote

import httpx

from cgd.enums import (
    TERMINAL_JOB_STATUSES,
    ExportFormat,
    ExportLayout,
    ExportMode,
    ItemState,
    Split,
    VerdictFilter,
)
from cgd.retry import RetryPolicy, Transient, parse_retry_after

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
# (bytes done, total bytes or None when the server does not say)
ProgressCallback = Callable[[int, int | None], None]

_RETRY_STATUSES = frozenset({502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "PUT"})
# Errors raised before a single byte of the request left this machine.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class _Again(Transient):
    """An attempt worth repeating: the transport error, or the transient answer, it ended in."""

    def __init__(
        self,
        error: httpx.TransportError | None = None,
        response: httpx.Response | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(type(error).__name__ if error else "transient answer", retry_after_s)
        self.error = error
        self.response = response


class Page(TypedDict):
    data: list[dict[str, Any]]
    next_cursor: str | None


class ExportResult(TypedDict):
    path: str
    bytes: int
    content_hash: str | None
    filename: str | None


# --- errors ------------------------------------------------------------------------------------


def format_detail(detail: Any) -> str:
    """The API's ``detail`` as one readable line (line/field/reason first when present)."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(format_detail(d) for d in detail)
    if isinstance(detail, Mapping):
        parts: list[str] = []
        if detail.get("line") is not None:
            parts.append(f"line {detail['line']}")
        if detail.get("field") is not None:
            parts.append(f"field {detail['field']}")
        rest = {k: v for k, v in detail.items() if k not in ("line", "field", "reason")}
        where = ", ".join(parts)
        reason = detail.get("reason")
        text = f"{where}: {reason}" if where and reason else (where or str(reason or ""))
        if rest:
            extra = ", ".join(f"{k}={v}" for k, v in rest.items())
            text = f"{text} ({extra})" if text else extra
        return text
    return str(detail)


class CgdApiError(Exception):
    """An error answer from the API: HTTP ``status``, the error ``kind`` (``InvalidDataset``,
    ``JobNotFound``, …) and its ``detail`` (for ``InvalidDataset``: ``{"line", "reason"}``)."""

    def __init__(self, status: int, kind: str, detail: Any = None, *, method: str = "") -> None:
        self.status = status
        self.kind = kind
        self.detail = detail
        self.method = method
        super().__init__(status, kind, detail)

    @property
    def line(self) -> int | None:
        """The 1-based line of a rejected upload (422 InvalidDataset), when the API names it."""
        if isinstance(self.detail, Mapping) and isinstance(self.detail.get("line"), int):
            return int(self.detail["line"])
        return None

    @property
    def reason(self) -> str | None:
        if isinstance(self.detail, Mapping) and self.detail.get("reason") is not None:
            return str(self.detail["reason"])
        return None

    @property
    def hint(self) -> str | None:
        """What to do about it, for people."""
        if self.status == 401:
            return "check CGD_API_KEY (or --api-key)"
        if self.status == 0:
            return "check CGD_API_URL (or --api-url) and that the API is running"
        if self.status == 404:
            return "check the id; another team's resources answer 404 too"
        if self.status == 413:
            return "the upload is over the server's size limits"
        return None

    def __str__(self) -> str:
        text = format_detail(self.detail)
        head = f"{self.status} {self.kind}" if self.status else self.kind
        return f"{head}: {text}" if text else head


class CgdConnectionError(CgdApiError):
    """The API could not be reached (refused, DNS, timeouts, dropped connection)."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(0, "ConnectionError", f"cannot reach {url}: {type(cause).__name__}")
        self.url = url
        self.cause = cause


def _error_from(response: httpx.Response) -> CgdApiError:
    kind, detail = f"HTTP{response.status_code}", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and "error" in body:
        kind, detail = str(body["error"]), body.get("detail")
    else:
        detail = response.text[:500] or response.reason_phrase
    return CgdApiError(response.status_code, kind, detail, method=response.request.method)


# --- uploads -----------------------------------------------------------------------------------


class _ProgressFile(io.RawIOBase):
    """Wraps an open binary file so httpx streams it in chunks and we see how far it got.
    httpx seeks to 0 before every attempt, which resets the count for a retried upload."""

    def __init__(self, raw: IO[bytes], total: int, progress: ProgressCallback | None) -> None:
        super().__init__()
        self._raw = raw
        self._total = total
        self._progress = progress
        self.name = getattr(raw, "name", "upload")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:  # lets httpx size the part with fstat (Content-Length)
        return self._raw.fileno()

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._raw.read(-1 if size is None else size)
        if self._progress is not None and chunk:
            self._progress(self._raw.tell(), self._total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        pos = self._raw.seek(offset, whence)
        if self._progress is not None and pos == 0:
            self._progress(0, self._total)
        return pos

    def tell(self) -> int:
        return self._raw.tell()


# --- the client --------------------------------------------------------------------------------


def _body(spec: Any) -> dict[str, Any]:
    """A request body from a dict or a pydantic model (secrets revealed for the wire)."""
    if spec is None:
        return {}
    stored = getattr(spec, "stored", None)  # JobSpec: the API keys, not their masks
    if callable(stored):
        return dict(stored())
    dump = getattr(spec, "model_dump", None)
    if callable(dump):
        return dict(dump(mode="json"))
    if isinstance(spec, Mapping):
        return dict(spec)
    raise TypeError(f"expected a dict or a pydantic model, got {type(spec).__name__}")


def _params(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kw.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


class CgdClient:
    """The cgd REST API. ``api_url``/``api_key`` default to ``CGD_API_URL``/``CGD_API_KEY``.

    ``timeout`` is the per-request timeout in seconds (uploads and exports get a longer read
    timeout, ``transfer_timeout``); ``max_retries`` and ``backoff_s`` shape the retries
    described in the module docstring. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        api_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        *,
        transfer_timeout: float = 1800.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        retry_after_max_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if api_url is None or api_key is None:
            from cgd.settings import get_settings

            settings = get_settings()
            api_url = api_url or os.environ.get("CGD_API_URL") or settings.api_url
            api_key = api_key or os.environ.get("CGD_API_KEY") or settings.api_key
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.transfer_timeout = transfer_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.retry = RetryPolicy(
            max_attempts=max_retries + 1,
            backoff_base_s=backoff_s,
            backoff_max_s=max_backoff_s,
            retry_after_max_s=retry_after_max_s,
        )
        headers = {"User-Agent": "cgd-client/1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.api_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CgdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the key
        return f"CgdClient(api_url={self.api_url!r})"

    # -- transport ------------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        ok_statuses: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """One logical request, with the retries the module docstring describes (the project's
        one retry policy, :mod:`cgd.retry`). The request is rebuilt for every attempt (a streamed
        upload rewinds its file)."""
        headers = kwargs.get("headers") or {}
        repeatable = method in _IDEMPOTENT_METHODS or any(
            k.lower() == "idempotency-key" for k in headers
        )
        lost_answer = False
        response: httpx.Response | None = None
        try:
            for attempt in self.retry.retrying(sleep=time.sleep):
                with attempt:
                    request = self._http.build_request(method, path, **kwargs)
                    try:
                        response = self._http.send(request, stream=stream)
                    except httpx.TransportError as exc:
                        # Never sent: always safe. Sent but no answer: only when repeatable.
                        if not (isinstance(exc, _NOT_SENT_ERRORS) or repeatable):
                            raise CgdConnectionError(self.api_url, exc) from exc
                        lost_answer = lost_answer or not isinstance(exc, _NOT_SENT_ERRORS)
                        raise _Again(error=exc) from exc
                    if response.status_code in _RETRY_STATUSES and repeatable:
                        response.read()  # kept for the error should this be the last attempt
                        response.close()
                        wait = parse_retry_after(response.headers.get("retry-after"))
                        raise _Again(response=response, retry_after_s=wait)
        except _Again as last:
            if last.error is not None:
                raise CgdConnectionError(self.api_url, last.error) from last.error
            response = last.response
        assert response is not None
        status = response.status_code
        if status == 404 and method == "DELETE" and lost_answer:
            return response  # the first attempt did it; only its answer was lost
        if status >= 400 and status not in ok_statuses:
            if stream:
                response.read()
                response.close()
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _page(self, method: str, path: str, **kwargs: Any) -> Page:
        body = self._json(method, path, **kwargs)
        return Page(data=list(body["data"]), next_cursor=body.get("next_cursor"))

    def _paginate(
        self, path: str, page_size: int | None, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            q = _params(**(params or {}), limit=page_size, cursor=cursor)
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
        fields = _params(
            name=name,
            prompt_field=prompt_field,
            reference_field=reference_field,
            response_field=response_field,
            id_field=id_field,
            solution_field=solution_field,
        )
        key = idempotency_key or f"cgd-client-{uuid.uuid4()}"
        timeout = httpx.Timeout(self.timeout, read=self.transfer_timeout)
        with contextlib.ExitStack() as stack:
            if isinstance(file, str | os.PathLike):
                fh: IO[bytes] = stack.enter_context(open(file, "rb"))
            else:
                fh = file
            total = fh.seek(0, os.SEEK_END)
            fh.seek(0)
            upload_name = filename or Path(str(getattr(fh, "name", "upload.jsonl"))).name
            wrapped = cast(IO[bytes], _ProgressFile(fh, total, progress))
            return dict(
                self._json(
                    "POST",
                    "/v1/datasets",
                    files={"file": (upload_name, wrapped, "application/octet-stream")},
                    data=fields,
                    headers={"Idempotency-Key": key},
                    timeout=timeout,
                )
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def list_datasets(self, limit: int | None = None, cursor: str | None = None) -> Page:
        return self._page("GET", "/v1/datasets", params=_params(limit=limit, cursor=cursor))

    def iter_datasets(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/datasets", page_size)

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def list_items(
        self, dataset_id: str, limit: int | None = None, cursor: str | None = None
    ) -> Page:
        q = _params(limit=limit, cursor=cursor)
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
        params = _params(version=version)
        return dict(self._json("GET", f"/v1/templates/{name}", params=params))

    def list_templates(self, limit: int | None = None, cursor: str | None = None) -> Page:
        return self._page("GET", "/v1/templates", params=_params(limit=limit, cursor=cursor))

    # -- generation jobs ------------------------------------------------------------------------

    def create_job(self, spec: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """``POST /v1/jobs`` with a dict or a ``cgd.generation.spec.JobSpec``; → ``{id, status,
        total_items}``. A fresh ``Idempotency-Key`` is sent unless one is given."""
        key = idempotency_key or f"cgd-client-{uuid.uuid4()}"
        return dict(
            self._json("POST", "/v1/jobs", json=_body(spec), headers={"Idempotency-Key": key})
        )

    def get_job(self, job_id: str) -> dict[str, Any]:
        """Status: ``status``, ``counts``, ``by_stage``, ``progress``, ``items_per_s``,
        ``eta_s``, ``tokens``, ``errors``, …"""
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def list_jobs(self, limit: int | None = None, cursor: str | None = None) -> Page:
        return self._page("GET", "/v1/jobs", params=_params(limit=limit, cursor=cursor))

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
        q = _params(
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
        return self._wait(lambda: self.get_job(job_id), poll_s, timeout_s, on_status)

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
        body = _body(spec)
        if job_ids is not None:
            body["job_ids"] = list(job_ids)
        if name is not None:
            body["name"] = name
        return dict(self._json("POST", "/v1/snapshots", json=body))

    def get_snapshot(self, snapshot_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/snapshots/{snapshot_id}"))

    def list_snapshots(self, limit: int | None = None, cursor: str | None = None) -> Page:
        q = _params(limit=limit, cursor=cursor)
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
        return self._wait(
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
        q = {"format": format, "layout": layout, "split": split}
        if mode is not None:  # layout native takes none
            q["mode"] = mode
        url = f"/v1/snapshots/{snapshot_id}/export"
        return self._download(url, q, Path(path), progress, chunk_size)

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
        dest = Path(dest_dir)
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        tar_path = dest / ".cgd-hub.tar"
        url = f"/v1/snapshots/{snapshot_id}/export-hub"
        res = self._download(url, {"mode": mode, "license": license}, tar_path, progress, 1 << 20)
        try:
            with tarfile.open(tar_path) as tar:
                tar.extractall(dest, filter="data")  # no absolute paths, links or ../ escapes
        finally:
            tar_path.unlink(missing_ok=True)
        return ExportResult(
            path=str(dest),
            bytes=res["bytes"],
            content_hash=res["content_hash"],
            filename=res["filename"],
        )

    def _download(
        self,
        url: str,
        q: dict[str, Any],
        dest: Path,
        progress: ProgressCallback | None,
        chunk_size: int,
    ) -> ExportResult:
        part = dest.with_name(dest.name + ".part")
        timeout = httpx.Timeout(self.timeout, read=self.transfer_timeout)
        response = self._send("GET", url, params=q, stream=True, timeout=timeout)
        done = 0
        try:
            total = int(response.headers["content-length"])
        except (KeyError, ValueError):
            total = None
        try:
            with open(part, "wb") as out:
                if progress is not None:
                    progress(0, total)
                for chunk in response.iter_bytes(chunk_size):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            part.replace(dest)
        except httpx.TransportError as exc:
            part.unlink(missing_ok=True)
            raise CgdConnectionError(self.api_url, exc) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            response.close()
        filename = None
        disposition = response.headers.get("content-disposition", "")
        if "filename*=UTF-8''" in disposition:  # RFC 6266: the exact name, percent-encoded
            filename = unquote(disposition.split("filename*=UTF-8''", 1)[1].split(";", 1)[0])
        elif 'filename="' in disposition:
            filename = disposition.split('filename="', 1)[1].split('"', 1)[0]
        return ExportResult(
            path=str(dest),
            bytes=done,
            content_hash=response.headers.get("x-content-hash") or None,
            filename=filename,
        )

    # -- training runs --------------------------------------------------------------------------

    def create_run(self, spec: Any) -> dict[str, Any]:
        """``POST /v1/training-runs`` with a dict or a ``TrainingRunSpec``; → ``{id, status}``."""
        return dict(self._json("POST", "/v1/training-runs", json=_body(spec)))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/training-runs/{run_id}"))

    def list_runs(self, limit: int | None = None, cursor: str | None = None) -> Page:
        q = _params(limit=limit, cursor=cursor)
        return self._page("GET", "/v1/training-runs", params=q)

    def iter_runs(self, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paginate("/v1/training-runs", page_size)

    def list_events(self, run_id: str, limit: int | None = None, cursor: str | None = None) -> Page:
        q = _params(limit=limit, cursor=cursor)
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
        return self._wait(lambda: self.get_run(run_id), poll_s, timeout_s, on_status)

    # -- experiments ----------------------------------------------------------------------------

    def create_experiment(self, spec: Any) -> dict[str, Any]:
        """``POST /v1/experiments``: one training run per (mode, seed); → the experiment."""
        return dict(self._json("POST", "/v1/experiments", json=_body(spec)))

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
        return self._wait(lambda: self.get_experiment(experiment_id), poll_s, timeout_s, on_status)

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _wait(
        fetch: Callable[[], dict[str, Any]],
        poll_s: float,
        timeout_s: float | None,
        on_status: Callable[[dict[str, Any]], None] | None,
        done: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        finished = done or (lambda s: s["status"] in TERMINAL_STATUSES)
        while True:
            current = fetch()
            if on_status is not None:
                on_status(current)
            if finished(current):
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"still {current['status']} after {timeout_s}s")
            time.sleep(poll_s)
