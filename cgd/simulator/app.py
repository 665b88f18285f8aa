"""HTTP handlers and the simulator's aiohttp application (:func:`build_app`)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from contextlib import suppress
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from cgd.simulator.answers import apply_stop, classify, count_tokens, cut_to_tokens
from cgd.simulator.batch import add_batch_routes
from cgd.simulator.config import DEFAULT_MODEL, STARTUP_ONLY, SimConfig
from cgd.simulator.state import STATE, SimState

log = logging.getLogger("cgd.simulator")


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


def _error(st: SimState, status: int, message: str, **headers: str) -> web.Response:
    st.stats.by_status[str(status)] += 1
    kind = {
        400: "BadRequestError",
        401: "AuthenticationError",
        404: "NotFoundError",
        429: "RateLimitError",
    }.get(status, "InternalServerError")
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return _json(body, status, headers or None)


def _parse_body(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if not isinstance(body, dict):
        return None, "request body must be a JSON object"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, "messages must be a non-empty list"
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return None, "each message needs a role"
        if not isinstance(m.get("content"), (str, type(None))):
            return None, "message content must be a string"
    if body.get("stream"):
        return None, "streaming is not supported by the simulator"
    if not isinstance(body.get("model", DEFAULT_MODEL), str):
        return None, "model must be a string"
    return body, ""


def _authorised(st: SimState, request: web.Request) -> bool:
    key = st.config.api_key
    if key is None:
        return True
    expected = f"Bearer {key.get_secret_value()}".encode()
    return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected)


def _record(st: SimState, raw: bytes, body: dict[str, Any], stage: str, model: str) -> None:
    stats = st.stats
    stats.by_stage_model[(stage, model)] += 1
    stats.max_request_bytes = max(stats.max_request_bytes, len(raw))
    chars = sum(len(m.get("content") or "") for m in body["messages"] if isinstance(m, dict))
    stats.max_prompt_chars = max(stats.max_prompt_chars, chars)
    # Byte-identical bodies: a retry, or a pipeline that sent the same call twice.
    digest = hashlib.blake2b(raw, digest_size=16).digest()
    if digest in stats.seen:
        stats.duplicates += 1
        if len(stats.duplicate_examples) < 20:
            stats.duplicate_examples.append({"stage": stage, "model": model, "key": digest.hex()})
    else:
        stats.seen.add(digest)
    if stats.recent.maxlen:
        params = {k: v for k, v in body.items() if k != "messages"}
        stats.recent.append({"stage": stage, "model": model, "params": params})


async def _hold_slot(st: SimState) -> None:
    """Wait FIFO for a slot, then hold it for the configured latency."""
    # Always go through st.stats: a reset may replace the object while we wait.
    st.stats.queued += 1
    try:
        await st.slots.acquire()
    finally:
        st.stats.queued -= 1
    st.stats.running += 1
    st.stats.max_running = max(st.stats.max_running, st.stats.running)
    ticket = object()
    st.running_started[ticket] = time.monotonic()
    try:
        await asyncio.sleep(st.latency())
    finally:
        st.engine_s += time.monotonic() - st.running_started.pop(ticket)
        st.stats.running -= 1
        st.slots.release()


async def _fault_response(st: SimState, request: web.Request, fault: str) -> web.Response:
    st.stats.faults[fault] += 1
    log.debug("simulator injecting fault %s", fault)
    if fault == "429":
        retry_after = st.config.retry_after_s
        header = str(int(retry_after)) if retry_after == int(retry_after) else f"{retry_after:g}"
        return _error(st, 429, "simulated rate limit", **{"Retry-After": header})
    if fault == "hang":
        # Never answers in practice: the client must give up. Shutdown wakes it.
        with suppress(TimeoutError):
            await asyncio.wait_for(st.stopping.wait(), timeout=st.config.hang_s)
        return _error(st, 503, "simulated hang ended")
    if fault == "drop":
        if request.transport is not None:
            request.transport.abort()  # RST, no status line: the client sees a disconnect
        return web.Response()
    return _error(st, 500, "simulated server error")


async def chat_completions(request: web.Request) -> web.Response:
    st = request.app[STATE]
    stats = st.stats
    stats.requests_total += 1
    stats.inflight += 1
    stats.max_inflight = max(stats.max_inflight, stats.inflight)
    try:
        return await _chat(st, request)
    finally:
        # The stats object may have been replaced by a reset; decrement the live one.
        st.stats.inflight -= 1


async def _chat(st: SimState, request: web.Request) -> web.Response:
    if not _authorised(st, request):
        return _error(st, 401, "invalid API key")
    raw = await request.read()
    body, problem = _parse_body(raw)
    if body is None:
        return _error(st, 400, problem)
    cfg = st.config
    model = body.get("model") or DEFAULT_MODEL
    if cfg.served_models and model not in cfg.served_models:
        return _error(st, 404, f"The model `{model}` does not exist.")
    rejected = [k for k in cfg.reject_params if k in body]
    if rejected:
        # As OpenAI answers max_tokens sent to a reasoning model.
        return _error(st, 400, f"Unsupported parameter: '{rejected[0]}' is not supported.")
    messages = body["messages"]
    parsed = classify(messages)
    _record(st, raw, body, parsed.stage, model)
    limit_headers = st.take_rate(cfg)
    if limit_headers is not None and limit_headers["x-ratelimit-remaining-requests"] == "-1":
        limit_headers["x-ratelimit-remaining-requests"] = "0"
        st.stats.faults["rpm"] += 1
        return _error(st, 429, "simulated requests-per-minute limit", **limit_headers)

    contents = [m.get("content") or "" for m in messages]
    if any(p in c for p in cfg.poison for c in contents):
        st.stats.faults["poison"] += 1
        return _error(st, 500, "simulated poison request")
    fault = st.draw_fault(parsed.stage, model)
    if fault is not None and fault != "truncate":
        return await _fault_response(st, request, fault)

    if cfg.max_waiting is not None and st.slots.locked() and st.stats.queued >= cfg.max_waiting:
        # A bounded queue (or a hosted API's admission control): no room to wait.
        st.stats.faults["queue_full"] += 1
        return _error(st, 429, "simulated queue full", **{"Retry-After": _seconds(cfg)})
    text = st.answerer.answer(parsed, model, body.get("seed"), cfg)
    await _hold_slot(st)
    response = _completion(st, body, model, messages, text, truncate=fault == "truncate")
    if limit_headers is not None:
        response.headers.update(limit_headers)
    return response


def _seconds(cfg: SimConfig) -> str:
    value = cfg.retry_after_s
    return str(int(value)) if value == int(value) else f"{value:g}"


def _completion(
    st: SimState,
    body: dict[str, Any],
    model: str,
    messages: list[dict[str, Any]],
    text: str,
    truncate: bool,
) -> web.Response:
    text = apply_stop(text, body.get("stop"))
    reasoning = None
    if st.config.reasoning:
        # A reasoning model thinks first; the thinking is not the answer.
        reasoning = "Thinking: the question asks for one quantity; checking each step twice."
    tokens = count_tokens(text) + (count_tokens(reasoning) if reasoning else 0)
    finish = "stop"
    if truncate:
        st.stats.faults["truncate"] += 1
        tokens = max(1, tokens // 2)
        text, finish = cut_to_tokens(text, tokens), "length"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and tokens > max_tokens:
        # Natural truncation: generation stopped at the token budget.
        tokens = max_tokens
        text, finish = cut_to_tokens(text, tokens), "length"
    prompt_tokens = max(1, sum(len(m.get("content") or "") for m in messages) // 4) + 3 * len(
        messages
    )
    st.stats.finish_reasons[finish] += 1
    st.stats.by_status["200"] += 1
    # What this server processed, as vLLM's own prompt/generation token counters count it.
    st.stats.tokens[(model, "prompt")] += prompt_tokens
    st.stats.tokens[(model, "completion")] += tokens
    payload = {
        "id": f"chatcmpl-sim{next(st.ids):024x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "reasoning_content": reasoning,
                    "tool_calls": [],
                },
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + tokens,
            "completion_tokens": tokens,
            "prompt_tokens_details": None,
        },
        "prompt_logprobs": None,
    }
    return _json(payload)


async def redirect_chat(request: web.Request) -> web.Response:
    target = request.query.get("to", "http://169.254.169.254/latest/meta-data/")
    return web.Response(status=307, headers={"Location": target})


async def noisy_error(request: web.Request) -> web.Response:
    return web.Response(status=400, text="bad\x1b[31m\r\nrequest " + "S" * 5000)


async def metrics(request: web.Request) -> web.Response:
    """vLLM's scheduler gauges (Prometheus text): what an adaptive client can watch."""
    st = request.app[STATE]
    if not st.config.serve_metrics:
        return web.Response(status=404, text="404: Not Found")
    model = (st.config.served_models or [DEFAULT_MODEL])[0]
    label = f'{{model_name="{model}"}}'
    # The batch size (slots) binds before the KV cache does, as with vLLM's max_num_seqs.
    kv = 0.8 * min(1.0, st.stats.running / st.config.slots)
    lines = [
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{label} {st.stats.running}",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{label} {st.stats.queued}",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{label} {kv:.4f}",
        # Tokens the engine processed: a nominal 50 tokens/s per running request.
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{label} {50.0 * st.engine_seconds():.1f}",
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def list_models(request: web.Request) -> web.Response:
    st = request.app[STATE]
    created = int(st.started)
    models = st.config.served_models or [DEFAULT_MODEL]
    data: list[dict[str, object]] = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": name,
            "parent": None,
            "max_model_len": 32768,
            "permission": [],
        }
        for name in models
    ]
    return _json({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    """OpenAI's ``GET /v1/models/{id}``: 200 for a model this server accepts (any, when
    ``served_models`` is empty), 404 otherwise."""
    st = request.app[STATE]
    name = request.match_info["model"]
    if st.config.served_models and name not in st.config.served_models:
        return _json({"error": {"message": f"model {name!r} not found", "code": 404}}, 404)
    return _json({"id": name, "object": "model", "created": int(st.started), "owned_by": "vllm"})


async def get_stats(request: web.Request) -> web.Response:
    st = request.app[STATE]
    payload = st.stats.as_json()
    payload.update(
        slots=st.config.slots, latency_s=st.config.latency_s, uptime_s=time.time() - st.started
    )
    return _json(payload)


async def get_config(request: web.Request) -> web.Response:
    return _json(request.app[STATE].config.public())


async def post_config(request: web.Request) -> web.Response:
    st = request.app[STATE]
    try:
        patch = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _json({"error": f"invalid JSON: {exc}"}, 400)
    if not isinstance(patch, dict):
        return _json({"error": "body must be a JSON object"}, 400)
    fixed = sorted(STARTUP_ONLY & patch.keys())
    if fixed:
        return _json({"error": f"cannot change at runtime: {fixed}"}, 400)
    try:
        new = SimConfig.model_validate({**st.config.model_dump(), **patch})
    except ValidationError as exc:
        return _json({"error": exc.errors(include_url=False, include_context=False)}, 400)
    st.config = new
    if "seed" in patch:
        st.rng = random.Random(new.seed)
    log.info("simulator config changed: %s", sorted(patch))
    return _json(new.public())


async def post_reset(request: web.Request) -> web.Response:
    st = request.app[STATE]
    st.reset(restore_config=request.query.get("config", "").lower() in ("1", "true", "yes"))
    return _json({"ok": True})


async def _on_shutdown(app: web.Application) -> None:
    app[STATE].stopping.set()


def build_app(config: SimConfig) -> web.Application:
    """The simulator's aiohttp application (serve it with :func:`run_simulator` or AppRunner)."""
    app = web.Application(client_max_size=64 * 1024**2)
    app[STATE] = SimState(config)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", retrieve_model)
    app.router.add_get("/metrics", metrics)
    add_batch_routes(app)
    app.router.add_post("/v1/chat/completions", chat_completions)
    # A misbehaving (or hostile) server: every call is redirected to ?to=<url> (security tests).
    app.router.add_post("/redirect/v1/chat/completions", redirect_chat)
    # A server that echoes a long body with control characters in its error.
    app.router.add_post("/noisy/v1/chat/completions", noisy_error)
    app.router.add_get("/sim/stats", get_stats)
    app.router.add_get("/sim/config", get_config)
    app.router.add_post("/sim/config", post_config)
    app.router.add_post("/sim/reset", post_reset)
    app.on_shutdown.append(_on_shutdown)
    return app
