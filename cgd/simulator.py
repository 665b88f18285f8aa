"""A SIMULATED OpenAI-compatible LLM server (vLLM-like) for tests, benchmarks and dry runs.

Nothing here runs a model. The simulator answers ``POST /v1/chat/completions`` in vLLM's response
shape with deterministic, made-up text, so that the generation pipeline can be exercised end to
end without a GPU:

* **Capacity.** ``slots`` requests run at once; each holds its slot for ``latency_s`` seconds and
  the rest wait FIFO, as vLLM queues (it has no admission control, so nothing is rejected). The
  capacity is therefore ``slots / latency_s`` calls per second.
* **Stages.** The request's message structure (see :mod:`cgd.templates`) tells probe, critique and
  refine apart. With ``--dataset`` files it knows each question's reference final answer: a probe
  is right with probability ``accuracy`` (a stable hash of model, question and request seed), a
  critique's verdict is right iff the student's last ``\\boxed{}`` matches the reference, and a
  refine always ends in ``\\boxed{<reference>}``.
* **Faults.** 429 (with ``Retry-After``), 500, hangs, truncation, dropped connections and poison
  substrings, settable on the command line and at runtime through ``POST /sim/config``, so a test
  can start a 429 storm in the middle of a job.
* **Observability.** ``GET /sim/stats`` (counts, peak concurrency, duplicates, the sampling
  parameters of the last requests), ``POST /sim/reset``.

Run it with ``python -m cgd.simulator --port 8001 --slots 256 --latency 0.5 --dataset F``; it prints
``simulator listening on http://HOST:PORT`` when ready. In-process: ``async with
run_simulator(SimConfig(...)) as sim: sim.base_url``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import logging
import random
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from cgd.templates import extract_tagged

log = logging.getLogger("cgd.simulator")

Stage = Literal["probe", "critique", "refine", "other"]
DEFAULT_MODEL = "sim-model"
READY_PREFIX = "simulator listening on "

# Settings that shape the running server; they cannot change through POST /sim/config.
STARTUP_ONLY = frozenset({"host", "port", "slots", "datasets", "record_last"})


class SimConfig(BaseModel):
    """Everything the simulator does; the fault and answer fields can change at runtime."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    slots: int = Field(64, ge=1, description="Requests generated at once (K)")
    latency_s: float = Field(0.5, ge=0, description="Seconds each request holds a slot (L)")
    latency_jitter: float = Field(
        0.0, ge=0, le=1, description="Each latency is L*(1±jitter), uniform: the mean stays L"
    )
    datasets: list[Path] = Field(default_factory=list, description="JSONL files with references")
    served_models: list[str] = Field(
        default_factory=list, description="Model names accepted; empty accepts any (404 otherwise)"
    )
    accuracy: float = Field(0.5, ge=0, le=1, description="Probability a probe answer is right")
    no_verdict_rate: float = Field(0.0, ge=0, le=1, description="Critiques without a verdict")
    seed: int = Field(0, description="Seed of the fault RNG")
    rate_429: float = Field(0.0, ge=0, le=1)
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After sent with each 429")
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_hang: float = Field(0.0, ge=0, le=1, description="Requests that never answer")
    hang_s: float = Field(3600.0, ge=0, description="How long a hung request sleeps")
    rate_truncate: float = Field(0.0, ge=0, le=1, description="finish_reason=length, cut text")
    rate_drop: float = Field(0.0, ge=0, le=1, description="Connection closed, no response")
    poison: list[str] = Field(
        default_factory=list, description="Content substrings that always get a 500"
    )
    fault_stages: list[Stage] = Field(
        default_factory=list, description="Random faults only for these stages; empty = all"
    )
    fault_models: list[str] = Field(
        default_factory=list, description="Random faults only for these models; empty = all"
    )
    api_key: SecretStr | None = Field(None, description="If set, require this bearer token")
    record_last: int = Field(100, ge=0, description="Sampling parameters kept for /sim/stats")

    @model_validator(mode="after")
    def _rates_fit(self) -> SimConfig:
        total = self.rate_429 + self.rate_500 + self.rate_hang + self.rate_truncate + self.rate_drop
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:.3f} > 1")
        return self

    def public(self) -> dict[str, Any]:
        """JSON-able view for /sim/config; the API key is masked by SecretStr."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------
# Answers: references, stable hashing, normalisation


def _stable_unit(*parts: object) -> float:
    """A number in [0, 1) fixed by ``parts``; unlike hash() it is the same in every process."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _as_decimal(text: str) -> Decimal | None:
    cleaned = text.replace(",", "").replace("$", "").strip()
    try:
        value = Decimal(cleaned)
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _format_decimal(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{…}`` in ``text`` (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i = start + len("\\boxed{")
    depth = 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


_SPACE_RE = re.compile(r"\s+|\\[!,;: ]")


def normalise_answer(answer: str) -> str:
    """Simple normalisation so that ``1,000``, ``$1000.`` and ``1000.0`` compare equal."""
    s = answer.strip().strip("$").rstrip(".").strip()
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "")
    s = _SPACE_RE.sub("", s)
    number = _as_decimal(s)
    return _format_decimal(number) if number is not None else s


def final_answer(value: Any) -> str | None:
    """The final answer in a reference: GSM8K ``#### n``, a boxed solution, or a bare value."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _format_decimal(Decimal(str(value)))
    text = str(value)
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    boxed = last_boxed(text)
    return boxed.strip() if boxed is not None else text.strip()


_QUESTION_FIELDS = ("question", "prompt", "problem")
# `answer` first: MATH-500 has both, and its `answer` is the clean final answer.
_ANSWER_FIELDS = ("answer", "reference", "solution")


def load_references(paths: Iterable[Path]) -> dict[str, str]:
    """Map stripped question text to its reference final answer, from JSONL files."""
    refs: dict[str, str] = {}
    for path in paths:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = orjson.loads(line)
                question = next((row[k] for k in _QUESTION_FIELDS if row.get(k)), None)
                answer = next((row[k] for k in _ANSWER_FIELDS if row.get(k) is not None), None)
                final = final_answer(answer)
                if isinstance(question, str) and final:
                    refs[question.strip()] = final
        log.info("simulator loaded references from %s (%d questions so far)", path, len(refs))
    return refs


def wrong_answer(final: str) -> str:
    """A value that is clearly not ``final``: number + 1 when numeric."""
    number = _as_decimal(final)
    if number is not None:
        return _format_decimal(number + 1)
    return f"{final}+1"


# --------------------------------------------------------------------------------------------
# Stage detection and text generation


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    stage: Stage
    question: str
    student_answer: str | None = None


def classify(messages: list[dict[str, Any]]) -> ParsedRequest:
    """Tell probe / critique / refine apart by message structure (cgd.templates' contract)."""
    roles = [m.get("role") for m in messages]
    contents = [m.get("content") or "" for m in messages]
    if roles == ["user"]:
        return ParsedRequest("probe", contents[0].strip())
    if roles[:2] == ["system", "user"]:
        question = extract_tagged(contents[1], "question")
        answer = extract_tagged(contents[1], "student_answer")
        if question is not None and answer is not None:
            if len(roles) == 2:
                return ParsedRequest("critique", question.strip(), answer)
            if roles[2:] == ["assistant", "user"]:
                return ParsedRequest("refine", question.strip(), answer)
        if len(roles) == 2:
            # A system prompt plus the question (e.g. evaluation): answered like a probe.
            return ParsedRequest("probe", contents[1].strip())
    users = [c for r, c in zip(roles, contents, strict=True) if r == "user"]
    return ParsedRequest("other", users[-1].strip() if users else "")


_STEPS = (
    "We read the question carefully and list the quantities it gives.",
    "We write down the relationship between those quantities.",
    "We compute the intermediate values one at a time.",
    "We check the units and redo the arithmetic to be sure.",
    "We combine the intermediate results into the quantity asked for.",
    "A quick estimate confirms that the result has a sensible size.",
    "We make sure every condition in the question has been used.",
)
_REVIEW = (
    "The student identifies the relevant quantities correctly.",
    "The setup of the main relationship is stated clearly.",
    "Some intermediate steps are skipped and should be written out.",
    "The arithmetic in the middle steps needs to be checked line by line.",
    "The explanation would be easier to follow with units on each value.",
    "The final step should restate what the question asks for.",
)


def _pick(options: tuple[str, ...], count: int, *key: object) -> list[str]:
    start = int(_stable_unit("pick", *key) * len(options))
    return [options[(start + i) % len(options)] for i in range(count)]


def _solution(final: str, *key: object) -> str:
    steps = _pick(_STEPS, 3 + int(_stable_unit("len", *key) * 4), *key)
    lines = ["Let's solve this step by step."]
    lines += [f"Step {i}: {step}" for i, step in enumerate(steps, 1)]
    lines.append(f"Therefore, the final answer is \\boxed{{{final}}}.")
    return "\n".join(lines)


class Answerer:
    """Deterministic texts for each stage, given the known references."""

    def __init__(self, references: dict[str, str]) -> None:
        self.references = references

    def reference(self, question: str) -> str:
        known = self.references.get(question)
        # Unknown question: a made-up but stable reference, so probe and critique still agree.
        return known if known is not None else str(10 + int(_stable_unit("ref", question) * 990))

    def answer(self, parsed: ParsedRequest, model: str, seed: Any, cfg: SimConfig) -> str:
        if parsed.stage == "critique":
            return self._critique(parsed, model, cfg)
        reference = self.reference(parsed.question)
        if parsed.stage == "refine":
            return _solution(reference, "refine", model, parsed.question)
        right = _stable_unit("probe", model, parsed.question, seed) < cfg.accuracy
        final = reference if right else wrong_answer(reference)
        return _solution(final, "probe", model, parsed.question, seed)

    def _critique(self, parsed: ParsedRequest, model: str, cfg: SimConfig) -> str:
        student = parsed.student_answer or ""
        boxed = last_boxed(student)
        reference = self.reference(parsed.question)
        right = boxed is not None and normalise_answer(boxed) == normalise_answer(reference)
        lines = ["Let me check the student's solution step by step."]
        lines += _pick(_REVIEW, 3, "critique", model, parsed.question, student)
        if boxed is None:
            lines.append("The student never states a final answer in \\boxed{}.")
        elif right:
            lines.append(f"The final answer, {boxed}, is correct.")
        else:
            lines.append(
                f"The final answer, {boxed}, is not correct; the computation must be redone."
            )
        if _stable_unit("no-verdict", model, parsed.question, student) >= cfg.no_verdict_rate:
            lines.append(f"Conclusion: {'right' if right else 'wrong'}")
        return "\n".join(lines)


def count_tokens(text: str) -> int:
    """Rough, deterministic token count (4 characters a token, at least 1)."""
    return max(1, len(text) // 4)


def cut_to_tokens(text: str, tokens: int) -> str:
    return text[: max(0, tokens) * 4]


def apply_stop(text: str, stop: Any) -> str:
    """Cut at the first stop string, as vLLM does (the stop string itself is not returned)."""
    if not stop:
        return text
    for s in [stop] if isinstance(stop, str) else stop:
        idx = text.find(s) if isinstance(s, str) and s else -1
        if idx >= 0:
            text = text[:idx]
    return text


# --------------------------------------------------------------------------------------------
# State and statistics


@dataclass
class SimStats:
    requests_total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_stage_model: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    running: int = 0
    queued: int = 0
    inflight: int = 0
    max_running: int = 0
    max_inflight: int = 0
    duplicates: int = 0
    duplicate_examples: list[dict[str, str]] = field(default_factory=list)
    seen: set[bytes] = field(default_factory=set)
    recent: deque[dict[str, Any]] = field(default_factory=deque)

    def as_json(self) -> dict[str, Any]:
        by_stage: dict[str, dict[str, int]] = {}
        for (stage, model), n in self.by_stage_model.items():
            by_stage.setdefault(stage, {})[model] = n
        return {
            "requests_total": self.requests_total,
            "by_status": dict(self.by_status),
            "by_stage_model": by_stage,
            "faults": dict(self.faults),
            "finish_reasons": dict(self.finish_reasons),
            "running": self.running,
            "queued": self.queued,
            "inflight": self.inflight,
            "max_running": self.max_running,
            "max_inflight": self.max_inflight,
            "duplicates": self.duplicates,
            "duplicate_examples": self.duplicate_examples,
            "recent_requests": list(self.recent),
        }


class SimState:
    """Per-app state: config (replaceable at runtime), slots, fault RNG, statistics."""

    def __init__(self, config: SimConfig) -> None:
        self.startup_config = config
        self.config = config
        self.answerer = Answerer(load_references(config.datasets))
        self.slots = asyncio.Semaphore(config.slots)  # FIFO waiters, like vLLM's queue
        self.rng = random.Random(config.seed)
        self.latency_rng = random.Random(config.seed + 1)
        self.stats = self._fresh_stats()
        self.stopping = asyncio.Event()  # set on shutdown so hung requests end
        self.ids = itertools.count(1)
        self.started = time.time()

    def _fresh_stats(self, live: SimStats | None = None) -> SimStats:
        stats = SimStats(recent=deque(maxlen=self.config.record_last))
        if live is not None:
            # Requests still being served keep counting after a reset.
            stats.running, stats.queued, stats.inflight = live.running, live.queued, live.inflight
            stats.max_running, stats.max_inflight = live.running, live.inflight
        return stats

    def reset(self, restore_config: bool) -> None:
        if restore_config:
            self.config = self.startup_config
        self.rng = random.Random(self.config.seed)
        self.stats = self._fresh_stats(self.stats)

    def latency(self) -> float:
        """This request's generation time. Jitter keeps requests that started together from
        all finishing together, as real generation lengths vary."""
        base, jitter = self.config.latency_s, self.config.latency_jitter
        if not jitter:
            return base
        return base * (1.0 + jitter * (2.0 * self.latency_rng.random() - 1.0))

    def draw_fault(self, stage: str, model: str) -> str | None:
        cfg = self.config
        if cfg.fault_stages and stage not in cfg.fault_stages:
            return None
        if cfg.fault_models and model not in cfg.fault_models:
            return None
        rates = (
            ("429", cfg.rate_429),
            ("500", cfg.rate_500),
            ("hang", cfg.rate_hang),
            ("drop", cfg.rate_drop),
            ("truncate", cfg.rate_truncate),
        )
        if not any(rate for _, rate in rates):
            return None
        r = self.rng.random()
        for name, rate in rates:
            if r < rate:
                return name
            r -= rate
        return None


STATE: web.AppKey[SimState] = web.AppKey("cgd_sim_state", SimState)


# --------------------------------------------------------------------------------------------
# HTTP handlers


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
    try:
        await asyncio.sleep(st.latency())
    finally:
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
    messages = body["messages"]
    parsed = classify(messages)
    _record(st, raw, body, parsed.stage, model)

    contents = [m.get("content") or "" for m in messages]
    if any(p in c for p in cfg.poison for c in contents):
        st.stats.faults["poison"] += 1
        return _error(st, 500, "simulated poison request")
    fault = st.draw_fault(parsed.stage, model)
    if fault is not None and fault != "truncate":
        return await _fault_response(st, request, fault)

    text = st.answerer.answer(parsed, model, body.get("seed"), cfg)
    await _hold_slot(st)
    return _completion(st, body, model, messages, text, truncate=fault == "truncate")


def _completion(
    st: SimState,
    body: dict[str, Any],
    model: str,
    messages: list[dict[str, Any]],
    text: str,
    truncate: bool,
) -> web.Response:
    text = apply_stop(text, body.get("stop"))
    tokens = count_tokens(text)
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
                    "reasoning_content": None,
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
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/sim/stats", get_stats)
    app.router.add_get("/sim/config", get_config)
    app.router.add_post("/sim/config", post_config)
    app.router.add_post("/sim/reset", post_reset)
    app.on_shutdown.append(_on_shutdown)
    return app


# --------------------------------------------------------------------------------------------
# Serving: in-process, as a subprocess, and the CLI


@dataclass(frozen=True)
class RunningSimulator:
    url: str  # http://host:port
    app: web.Application

    @property
    def base_url(self) -> str:
        """OpenAI-style base URL (…/v1)."""
        return f"{self.url}/v1"

    @property
    def state(self) -> SimState:
        return self.app[STATE]


@asynccontextmanager
async def run_simulator(config: SimConfig) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator in the running event loop (port 0 picks a free port)."""
    app = build_app(config)
    # handler_cancellation: a request whose client went away stops holding its slot, as in vLLM.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port, backlog=4096, shutdown_timeout=2.0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield RunningSimulator(url=f"http://{host}:{port}", app=app)
    finally:
        await runner.cleanup()


class SimulatorProcess:
    """``python -m cgd.simulator`` as a child process; ``url`` is known once it is ready."""

    def __init__(self, args: list[str], ready_timeout_s: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "cgd.simulator", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.url = self._wait_ready(ready_timeout_s)
        # Keep draining stdout so the child can never block on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _wait_ready(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].strip()
        self.stop()
        raise RuntimeError(f"simulator did not become ready (exit code {self.proc.returncode})")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve(config: SimConfig) -> None:
    """Serve until SIGINT/SIGTERM; print the ready line once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config) as sim:
        log.info(
            "simulator ready: %d slots, %.3fs latency (capacity %.0f calls/s)",
            config.slots,
            config.latency_s,
            config.slots / config.latency_s if config.latency_s else float("inf"),
        )
        print(f"{READY_PREFIX}{sim.url}", flush=True)
        await stop.wait()
        log.info("simulator stopping")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cgd.simulator",
        description="SIMULATED OpenAI-compatible (vLLM-like) server for tests and benchmarks.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--slots", type=int, default=64, help="concurrent requests (K)")
    p.add_argument("--latency", type=float, default=0.5, help="seconds per request (L)")
    p.add_argument("--latency-jitter", type=float, default=0.0, help="L*(1±jitter), uniform")
    p.add_argument("--dataset", action="append", default=[], help="JSONL with references")
    p.add_argument("--served-model", action="append", default=[], help="accepted model names")
    p.add_argument("--accuracy", type=float, default=0.5)
    p.add_argument("--no-verdict-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds")
    p.add_argument("--rate-500", type=float, default=0.0)
    p.add_argument("--rate-hang", type=float, default=0.0)
    p.add_argument("--hang-s", type=float, default=3600.0)
    p.add_argument("--rate-truncate", type=float, default=0.0)
    p.add_argument("--rate-drop", type=float, default=0.0)
    p.add_argument("--poison", action="append", default=[], help="substring that always 500s")
    p.add_argument("--fault-stage", action="append", default=[], help="limit faults to a stage")
    p.add_argument("--fault-model", action="append", default=[], help="limit faults to a model")
    p.add_argument("--api-key", default=None, help="require this bearer token")
    p.add_argument("--record-last", type=int, default=100)
    p.add_argument("--log-level", default="INFO")
    return p


def config_from_args(ns: argparse.Namespace) -> SimConfig:
    return SimConfig(
        host=ns.host,
        port=ns.port,
        slots=ns.slots,
        latency_s=ns.latency,
        latency_jitter=ns.latency_jitter,
        datasets=[Path(d) for d in ns.dataset],
        served_models=ns.served_model,
        accuracy=ns.accuracy,
        no_verdict_rate=ns.no_verdict_rate,
        seed=ns.seed,
        rate_429=ns.rate_429,
        retry_after_s=ns.retry_after,
        rate_500=ns.rate_500,
        rate_hang=ns.rate_hang,
        hang_s=ns.hang_s,
        rate_truncate=ns.rate_truncate,
        rate_drop=ns.rate_drop,
        poison=ns.poison,
        fault_stages=ns.fault_stage,
        fault_models=ns.fault_model,
        api_key=ns.api_key,
        record_last=ns.record_last,
    )


def main(argv: list[str] | None = None) -> None:
    ns = _parser().parse_args(argv)
    logging.basicConfig(
        level=ns.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(ns)
    except ValidationError as exc:
        raise SystemExit(f"invalid simulator settings:\n{exc}") from None
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
