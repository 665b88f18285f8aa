"""Batch mode: a chunk's calls of one stage go to an endpoint's OpenAI Batch API at once.

Hosted APIs answer a batch within a window (24 h) at about half the price per token. A chunk
with a batch-mode endpoint runs stage by stage (probe → critique → refine; a stage whose
endpoint is online is called as usual, all its items at once), then verifies:

1. The stage's requests become one JSONL file (``custom_id`` = ``idx:sample:stage``), uploaded
   to ``/files``; ``/batches`` creates the batch with ``metadata.cgd_key`` = job:chunk:stage.
2. The batch id is stored (``generation_batches``) as soon as the server accepts it. A runner
   that dies while it waits is replaced by one that finds the row and resumes polling; if it
   died between creating the batch and storing the id, the new runner finds the batch by its
   ``cgd_key`` in the server's list. A finished batch is never submitted again.
3. Polling every ``poll_s`` updates the row (shown in the job status), while the chunk's lease
   is renewed as for any chunk.
4. The output file is downloaded and each line mapped back by ``custom_id``; results are written
   like online ones (idempotent inserts keyed by job, item, sample, stage). Only once they are
   committed is the row marked ``stored``.

An answer cut at the token budget fails its item (``truncated``): there is no larger retry in
batch mode. Lines that errored or are missing fail their items with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from cgd.db.bulk import insert_ignore
from cgd.db.models import GenerationBatch, utcnow
from cgd.generation.store import StageResult, WorkItem
from cgd.llm_client import CallResult, EndpointConfig, LLMError
from cgd.outbound import AsyncOutbound, OutboundRefused, ResponseTooLarge, describe
from cgd.retry import RetryPolicy, Transient, parse_retry_after
from cgd.templates import parse_verdict
from cgd.templates.core import PromptTooLong

if TYPE_CHECKING:
    from cgd.generation.pipeline import ChunkRun

log = logging.getLogger("cgd.generation.batch")

STAGES = ("probe", "critique", "refine")
_STATE_AFTER = {"probe": "probed", "critique": "critiqued", "refine": "refined"}
_FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_CHAT = "/v1/chat/completions"


def uses_batch(run: ChunkRun) -> bool:
    spec = run.spec
    return spec.teacher.mode == "batch" or (
        spec.student is not None and spec.student.mode == "batch"
    )


class _HttpError(Transient):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s)
        self.status = status
        self.retryable = status == 429 or status >= 500


class BatchApi:
    """The few Batch API calls, each under the project's retry policy, each through the
    guarded outbound client (the URL checked per request, no redirects, bounded answers)."""

    def __init__(
        self, outbound: AsyncOutbound, policy: RetryPolicy, timeout_s: float = 600.0
    ) -> None:
        self.outbound = outbound
        self.policy = policy
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10.0)

    async def _call(self, endpoint: EndpointConfig, method: str, path: str, **kwargs: Any) -> bytes:
        headers = {}
        secret = None
        if endpoint.api_key is not None:
            secret = endpoint.api_key.get_secret_value()
            headers["Authorization"] = f"Bearer {secret}"
        url = endpoint.base_url.rstrip("/") + path
        async for attempt in self.policy.async_retrying(
            retry_if=lambda e: isinstance(e, aiohttp.ClientError) or getattr(e, "retryable", False)
        ):
            with attempt:
                try:
                    reply = await self.outbound.request(
                        method, url, headers=headers, timeout=self.timeout, **kwargs
                    )
                except (OutboundRefused, ResponseTooLarge) as exc:
                    raise _HttpError(0, f"{type(exc).__name__}: {exc}") from None
                if reply.status != 200:
                    wait = parse_retry_after(reply.headers.get("Retry-After"))
                    raise _HttpError(reply.status, describe(reply, secret), wait)
                return reply.body
        raise AssertionError("unreachable")

    async def upload(self, endpoint: EndpointConfig, content: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename="input.jsonl", content_type="application/jsonl")
        return str(orjson.loads(await self._call(endpoint, "POST", "/files", data=form))["id"])

    async def create(self, endpoint: EndpointConfig, file_id: str, key: str) -> dict[str, Any]:
        body = {"input_file_id": file_id, "endpoint": _CHAT, "completion_window": "24h",
                "metadata": {"cgd_key": key}}  # fmt: skip
        raw = await self._call(endpoint, "POST", "/batches", json=body)
        return dict(orjson.loads(raw))

    async def find(self, endpoint: EndpointConfig, key: str) -> dict[str, Any] | None:
        """A batch created under ``key`` (before a crash lost its id), if the server has one."""
        raw = await self._call(endpoint, "GET", "/batches", params={"limit": "100"})
        for batch in orjson.loads(raw).get("data") or []:
            if (batch.get("metadata") or {}).get("cgd_key") == key:
                return dict(batch)
        return None

    async def get(self, endpoint: EndpointConfig, batch_id: str) -> dict[str, Any]:
        return dict(orjson.loads(await self._call(endpoint, "GET", f"/batches/{batch_id}")))

    async def content(self, endpoint: EndpointConfig, file_id: str) -> bytes:
        return await self._call(endpoint, "GET", f"/files/{file_id}/content")


# -- one stage ------------------------------------------------------------------------------------


def stage_request(
    run: ChunkRun, item: WorkItem, stage: str
) -> tuple[EndpointConfig, list[dict[str, str]]]:
    """The endpoint and messages of ``stage`` for ``item`` (its earlier stages are done)."""
    q, template = item.prompt, run.template
    if stage == "probe":
        return run.student_for(item.sample), template.probe(q)
    initial = item.done["probe"].text if "probe" in item.done else (item.response or "")
    if stage == "critique":
        return run.spec.teacher, template.critique(q, initial)
    return run.spec.teacher, template.refine(q, initial, item.done["critique"].text)


def _ready(run: ChunkRun, item: WorkItem, stage: str) -> bool:
    if item.state == "failed" or stage in item.done:
        return False
    if stage == "probe":
        return run.spec.student is not None
    if stage == "critique":
        return "probe" in item.done or (run.spec.student is None and item.response is not None)
    return "critique" in item.done


def _record(run: ChunkRun, item: WorkItem, stage: str, result: CallResult) -> None:
    item.state = _STATE_AFTER[stage]
    fields: dict[str, Any] = {}
    if stage != "probe":
        fields["verdict"] = parse_verdict(item.done["critique"].text)
    run.writer.add(item, run.generation_row(item, stage, result), **fields)


async def _online(run: ChunkRun, item: WorkItem, stage: str) -> None:
    try:
        endpoint, messages = stage_request(run, item, stage)
        result = await run.call(item, stage, endpoint, messages)
    except PromptTooLong as exc:  # nothing was sent
        run.fail(item, "prompt_too_long", str(exc))
        return
    except LLMError as exc:
        run.fail(item, exc.kind, str(exc), truncated=exc.kind == "truncated")
        return
    _record(run, item, stage, result)


async def run_batch_chunk(run: ChunkRun, todo: list[WorkItem]) -> None:
    """Every stage for every item of the chunk, stage by stage; then ``run.process`` verifies."""
    client = run.deps.client
    api = BatchApi(client.outbound, client.retry, client.timeout_s)
    await run_stages(run, todo, api, run.deps.batch_poll_s)


async def run_stages(run: ChunkRun, todo: list[WorkItem], api: BatchApi, poll_s: float) -> None:
    for stage in STAGES:
        items = [i for i in todo if _ready(run, i, stage)]
        endpoint = run.spec.teacher if stage != "probe" else run.spec.student
        if endpoint is None:
            continue
        if endpoint.mode == "batch":
            await _batch_stage(run, items, stage, api, poll_s)
        elif items:
            await asyncio.gather(*(_online(run, i, stage) for i in items))
    await asyncio.gather(*(run.process(i) for i in todo if i.state != "failed"))


async def _batch_stage(
    run: ChunkRun, items: list[WorkItem], stage: str, api: BatchApi, poll_s: float
) -> None:
    job_id, chunk_no = run.work.job_id, run.work.chunk_no
    row = await run.deps.run_db(lambda s: _load(s, job_id, chunk_no, stage))
    if row is not None and row["status"] == "stored":
        for item in items:  # its results were written; one without any has no answer
            run.fail(item, "batch", "no result for this item in the stored batch")
        return
    if row is None and not items:
        return
    by_id = {f"{i.idx}:{i.sample}:{stage}": i for i in items}
    endpoint = run.spec.teacher if stage != "probe" else run.spec.student
    assert endpoint is not None
    key = f"{job_id}:{chunk_no}:{stage}"
    if row is None:
        batch = await api.find(endpoint, key)
        if batch is None:
            lines = []
            for custom_id, item in list(by_id.items()):
                try:
                    ep, messages = stage_request(run, item, stage)
                except PromptTooLong as exc:  # fails alone; the rest of the batch goes
                    run.fail(item, "prompt_too_long", str(exc))
                    del by_id[custom_id]
                    continue
                body = {**ep.request_params(), "messages": messages}
                lines.append({"custom_id": custom_id, "method": "POST", "url": _CHAT, "body": body})
            if not lines:
                return  # every item failed before a request was built
            content = b"\n".join(orjson.dumps(x) for x in lines) + b"\n"
            file_id = await api.upload(endpoint, content)
            batch = await api.create(endpoint, file_id, key)
        row = _row(job_id, chunk_no, stage, batch)
        await run.deps.run_db(lambda s: insert_ignore(s, GenerationBatch, [row]))
        where = {"job_id": str(job_id), "chunk": chunk_no, "stage": stage}
        log.info("batch submitted", extra={**where, "batch_id": row["batch_id"]})
    batch_id = str(row["batch_id"])
    batch = await api.get(endpoint, batch_id)
    while batch.get("status") not in _FINAL:
        await _save(run, job_id, chunk_no, stage, batch)
        await asyncio.sleep(poll_s)
        batch = await api.get(endpoint, batch_id)
    await _save(run, job_id, chunk_no, stage, batch)
    answered: set[str] = set()
    if batch.get("output_file_id"):
        raw = await api.content(endpoint, str(batch["output_file_id"]))
        for line in raw.splitlines():
            if line.strip():
                answered.add(_apply_line(run, by_id, stage, endpoint, orjson.loads(line)))
    for custom_id, item in by_id.items():
        if custom_id not in answered:
            run.fail(item, "batch", f"batch {batch_id} ended {batch.get('status')} without it")
    await run.writer.flush()  # results committed before the batch counts as stored
    await run.deps.run_db(
        lambda s: s.execute(
            update(GenerationBatch)
            .where(*_batch_key(job_id, chunk_no, stage))
            .values(status="stored", updated_at=utcnow())
        )  # fmt: skip
    )


def _apply_line(
    run: ChunkRun,
    by_id: dict[str, WorkItem],
    stage: str,
    endpoint: EndpointConfig,
    line: dict[str, Any],
) -> str:
    custom_id = str(line.get("custom_id"))
    item = by_id.get(custom_id)
    if item is None:
        return custom_id  # not ours, or already done before a restart
    response = line.get("response") or {}
    if line.get("error") or response.get("status_code") != 200:
        err = line.get("error") or {"message": f"status {response.get('status_code')}"}
        run.fail(item, "batch", f"batch line failed: {str(err)[:200]}")
        return custom_id
    body = response.get("body") or {}
    try:
        message = body["choices"][0]["message"]
        finish = body["choices"][0].get("finish_reason") or "stop"
        usage = body.get("usage") or {}
    except (KeyError, IndexError, TypeError):
        run.fail(item, "bad_response", "malformed batch result")
        return custom_id
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    item.prompt_tokens += prompt_tokens
    item.completion_tokens += completion_tokens
    # A truncated batch answer fails its item (no larger retry in batch mode).
    outcome = "failed" if finish == "length" else "kept"
    run.writer.usage(stage, outcome, prompt_tokens, completion_tokens)
    if finish == "length":
        run.fail(item, "truncated", "finish_reason=length in batch mode", truncated=True)
        return custom_id
    text = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    item.done[stage] = StageResult(text, finish)
    result = CallResult(
        text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, latency_s=0.0, total_s=0.0, attempts=1,
        request_params={**stage_request(run, item, stage)[0].request_params(), "batch": True},
        billed=(prompt_tokens, completion_tokens),
        model=body.get("model"), response_id=body.get("id"),
        reasoning=reasoning if isinstance(reasoning, str) else None,
    )  # fmt: skip
    _record(run, item, stage, result)
    return custom_id


def _row(job_id: Any, chunk_no: int, stage: str, batch: dict[str, Any]) -> dict[str, Any]:
    counts = batch.get("request_counts") or {}
    now = utcnow()
    return {
        "job_id": job_id, "chunk_no": chunk_no, "stage": stage, "batch_id": batch["id"],
        "input_file_id": batch.get("input_file_id") or "", "status": batch.get("status") or "",
        "output_file_id": batch.get("output_file_id"), "requests": int(counts.get("total") or 0),
        "completed": int(counts.get("completed") or 0), "failed": int(counts.get("failed") or 0),
        "created_at": now, "updated_at": now,
    }  # fmt: skip


def _batch_key(job_id: Any, chunk_no: int, stage: str) -> tuple[ColumnElement[bool], ...]:
    """The row of one (job, chunk, stage) batch."""
    return (
        GenerationBatch.job_id == job_id,
        GenerationBatch.chunk_no == chunk_no,
        GenerationBatch.stage == stage,
    )


def _load(session: Session, job_id: Any, chunk_no: int, stage: str) -> dict[str, Any] | None:
    b = session.scalar(select(GenerationBatch).where(*_batch_key(job_id, chunk_no, stage)))
    return None if b is None else {"batch_id": b.batch_id, "status": b.status}


async def _save(
    run: ChunkRun, job_id: Any, chunk_no: int, stage: str, batch: dict[str, Any]
) -> None:
    row = _row(job_id, chunk_no, stage, batch)
    values = {k: row[k] for k in ("status", "output_file_id", "requests", "completed", "failed")}
    await run.deps.run_db(
        lambda s: s.execute(
            update(GenerationBatch)
            .where(*_batch_key(job_id, chunk_no, stage), GenerationBatch.status != "stored")
            .values(**values, updated_at=utcnow())
        )  # fmt: skip
    )
