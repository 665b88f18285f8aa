"""A simulated OpenAI Batch API: ``/v1/files``, ``/v1/batches``, ``/v1/files/{id}/content``.

A batch is accepted at once and completes ``batch_delay_s`` seconds later; each line is answered
as ``/v1/chat/completions`` would answer it (same texts, same token counts), without holding a
slot. Output lines follow OpenAI's shape: ``{"id", "custom_id", "response": {"status_code",
"request_id", "body"}, "error"}``, in no particular order (the client maps ``custom_id`` back).
State lives in memory: a restarted simulator has forgotten its batches, as a real server would not.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from cgd.simulator.answers import classify
from cgd.simulator.config import DEFAULT_MODEL
from cgd.simulator.state import STATE, SimState

_CHAT = "/v1/chat/completions"


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _not_found(what: str) -> web.Response:
    return _json({"error": {"message": f"No such {what}", "type": "invalid_request_error"}}, 404)


async def upload_file(request: web.Request) -> web.Response:
    st = request.app[STATE]
    reader = await request.multipart()
    purpose, content = None, b""
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.read()).decode()
        elif part.name == "file":
            content = bytes(await part.read())
    if purpose != "batch" or not content:
        return _json({"error": {"message": "purpose=batch and a file are required"}}, 400)
    file_id = f"file-sim{next(st.ids):020x}"
    st.files[file_id] = content
    return _json(
        {"id": file_id, "object": "file", "bytes": len(content), "purpose": purpose,
         "created_at": int(time.time()), "filename": "input.jsonl"}
    )  # fmt: skip


async def file_content(request: web.Request) -> web.Response:
    st = request.app[STATE]
    content = st.files.get(request.match_info["file_id"])
    if content is None:
        return _not_found("file")
    return web.Response(body=content, content_type="application/jsonl")


async def create_batch(request: web.Request) -> web.Response:
    st = request.app[STATE]
    body = orjson.loads(await request.read())
    input_id = body.get("input_file_id")
    if input_id not in st.files:
        return _json({"error": {"message": f"input_file_id {input_id!r} not found"}}, 400)
    if body.get("endpoint") != _CHAT:
        return _json({"error": {"message": f"endpoint must be {_CHAT}"}}, 400)
    lines = [orjson.loads(x) for x in st.files[input_id].splitlines() if x.strip()]
    batch_id = f"batch_sim{next(st.ids):020x}"
    batch: dict[str, Any] = {
        "id": batch_id,
        "object": "batch",
        "endpoint": _CHAT,
        "input_file_id": input_id,
        "completion_window": body.get("completion_window", "24h"),
        "status": "in_progress",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": int(time.time()),
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "metadata": body.get("metadata") or {},
    }
    st.batches[batch_id] = batch
    st.stats.faults["batches_created"] += 1
    task = asyncio.get_running_loop().create_task(_run_batch(st, batch, lines))
    st.background.add(task)
    task.add_done_callback(st.background.discard)
    return _json(batch)


async def get_batch(request: web.Request) -> web.Response:
    batch = request.app[STATE].batches.get(request.match_info["batch_id"])
    return _json(batch) if batch is not None else _not_found("batch")


async def list_batches(request: web.Request) -> web.Response:
    data = sorted(request.app[STATE].batches.values(), key=lambda b: -int(b["created_at"]))
    return _json({"object": "list", "data": data, "has_more": False})


async def _run_batch(st: SimState, batch: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    await asyncio.sleep(st.config.batch_delay_s)
    out: list[bytes] = []
    for line in lines:
        body = line.get("body") or {}
        model = body.get("model") or DEFAULT_MODEL
        parsed = classify(body.get("messages") or [{"role": "user", "content": ""}])
        st.stats.by_stage_model[(parsed.stage, model)] += 1
        text = st.answerer.answer(parsed, model, body.get("seed"), st.config)
        completion = _completion_body(st, body, model, text)
        out.append(
            orjson.dumps(
                {
                    "id": f"batch_req_{next(st.ids):020x}",
                    "custom_id": line.get("custom_id"),
                    "response": {
                        "status_code": 200,
                        "request_id": completion["id"],
                        "body": completion,
                    },
                    "error": None,
                }
            )  # fmt: skip
        )
    out.reverse()  # the output order is not the input order
    file_id = f"file-sim{next(st.ids):020x}"
    st.files[file_id] = b"\n".join(out) + b"\n"
    batch.update(
        status="completed",
        output_file_id=file_id,
        completed_at=int(time.time()),
        request_counts={"total": len(lines), "completed": len(lines), "failed": 0},
    )


def _completion_body(st: SimState, body: dict[str, Any], model: str, text: str) -> dict[str, Any]:
    from cgd.simulator.app import _completion  # the one place a completion is shaped

    response = _completion(st, body, model, body.get("messages") or [], text, truncate=False)
    assert isinstance(response.body, bytes)
    payload: dict[str, Any] = orjson.loads(response.body)
    return payload


def add_batch_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", upload_file)
    app.router.add_get("/v1/files/{file_id}/content", file_content)
    app.router.add_post("/v1/batches", create_batch)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", get_batch)
