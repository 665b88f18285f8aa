"""The asyncio pipeline that runs one chunk: every item moves through its stages on its own.

An item's critique starts as soon as its probe is back and its refine right after its critique;
the only bound on concurrency is the LLM client's per-endpoint in-flight window. Results are
written in small batches (one transaction per batch) by a background writer, so the event loop
never waits on the database and Postgres sees few, larger transactions.

A re-run of a chunk resumes each item from its last completed stage: completed calls are loaded
from the database and never repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from cgd.db.models import TERMINAL_STATES, utcnow
from cgd.generation import batch, dispatch, store
from cgd.generation.breaker import Breaker, BreakerKey, TeamLimits, breaker_key, probe_shapes
from cgd.generation.concurrency import Priority
from cgd.generation.store import ChunkWork, StageResult, WorkItem
from cgd.llm_client import (
    RETRY_REASONS,
    CallResult,
    EndpointConfig,
    LLMClient,
    LLMError,
    Observer,
    safe_url,
)
from cgd.metrics import CallRecord, endpoint_label, llm_call
from cgd.settings import get_settings
from cgd.templates import Template, parse_verdict
from cgd.templates.core import PromptTooLong, prompt_chars
from cgd.verify import Verdict, VerifierPool

log = logging.getLogger("cgd.generation")
# A chunk's first few items jump its queue at their later stages (a waiting refine of theirs goes
# before the chunk's waiting probes), so the first triplets are done after a few latencies, not
# after every probe of the chunk. Only a few: an item's stages run one after another, so were
# every item taken depth first, the last items of a job would start late and leave the server
# idle while they finish.
_LEADING_ITEMS = 4
_DEPTH = {"probe": 0, "critique": 1, "refine": 2, "solve": 3}
T = TypeVar("T")
RunDb = Callable[[Callable[[Session], T]], Awaitable[T]]


class UnwrittenGate:
    """Completed calls not yet committed (queued in a writer or in its flush), counted over
    every chunk of a process; above ``limit`` no new call starts until a flush lands. What a
    crash repeats is then at most the calls in flight plus ``limit``. Without it a slow flush
    let items run on through their next stages uncommitted (a SIGKILL under load repeated 252
    calls with 64 in flight). All users run on the process's one event loop."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.count = 0
        self._changed = asyncio.Event()

    def add(self, n: int) -> None:
        self.count += n

    def done(self, n: int) -> None:
        self.count -= n
        self._changed.set()

    async def room(self) -> None:
        while self.count >= self.limit:
            self._changed.clear()
            await self._changed.wait()


@dataclass
class PipelineDeps:
    client: LLMClient
    run_db: RunDb[Any]  # runs fn(session) in a worker thread, in one committed transaction
    owner: str  # lease owner id: host/pid/task
    verifier: VerifierPool  # math-verify needs a main thread: always through the pool
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    flush_interval_s: float = 0.5  # idle wake-up; results themselves are flushed at once
    # Completed calls not yet committed: the worker passes one gate shared by its chunks.
    unwritten: UnwrittenGate = field(default_factory=UnwrittenGate)
    breaker: Breaker | None = None  # per process: pauses jobs whose endpoint is down
    team_limits: TeamLimits | None = None  # per process: a team's in-flight calls per endpoint
    team_max_running_chunks: int = 8
    batch_poll_s: float = 30.0  # how often a Batch API batch is polled (batch-mode endpoints)
    # No request longer than this leaves the worker (CGD_MAX_PROMPT_CHARS).
    max_prompt_chars: int = field(default_factory=lambda: get_settings().max_prompt_chars)
    # A chunk whose calls have all waited this long without an answer calls ``on_stall`` (the
    # worker frees its slot for other work if it may; True = freed, so it asks only once).
    stall_yield_s: float = 5.0
    on_stall: Callable[[], bool] | None = None


class _Stopped(Exception):
    """The chunk was cancelled or its lease was lost: leave the item where it is."""


class _Writer:
    """Batches generation rows and item updates; flushes them in one transaction each."""

    def __init__(self, deps: PipelineDeps, job_id: uuid.UUID) -> None:
        self.deps = deps
        self.job_id = job_id
        self.generations: list[dict[str, Any]] = []
        self.updates: dict[tuple[int, int], dict[str, Any]] = {}
        # Deltas since the last flush, added to the job's usage rows in the same transaction as
        # the items they belong to: (stage, outcome) -> [prompt, completion]; (stage, reason)
        # -> retried attempts.
        self.tokens: dict[tuple[str, str], list[int]] = {}
        self.retries: dict[tuple[str, str], int] = {}
        self.gate = deps.unwritten
        self._wake = asyncio.Event()
        self._closed = False
        self._task = asyncio.create_task(self._loop())

    def add(self, item: WorkItem, generation: dict[str, Any] | None, **fields: Any) -> None:
        if generation is not None:
            self.generations.append(generation)
            self.gate.add(1)
        self.updates[(item.idx, item.sample)] = _item_row(self.job_id, item, fields)
        # Group commit: flush as soon as the previous flush is done. Under load, whatever
        # arrived meanwhile shares one transaction; a completed call is never left unwritten
        # for longer than one transaction (a crash repeats at most those calls).
        self._wake.set()

    def usage(self, stage: str, outcome: str, prompt: int, completion: int) -> None:
        if prompt or completion:
            row = self.tokens.setdefault((stage, outcome), [0, 0])
            row[0] += prompt
            row[1] += completion

    def retry(self, stage: str, reason: str) -> None:
        self.retries[(stage, reason)] = self.retries.get((stage, reason), 0) + 1

    async def _loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.deps.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self.generations and not self.updates and not self.tokens and not self.retries:
            return
        gens, ups = self.generations, list(self.updates.values())
        usage = store.UsageDelta(self.job_id, self.tokens, self.retries)
        self.generations, self.updates, self.tokens, self.retries = [], {}, {}, {}
        try:
            await self._write(gens, ups, usage)
        finally:
            self.gate.done(len(gens))

    async def _write(
        self, gens: list[dict[str, Any]], ups: list[dict[str, Any]], usage: store.UsageDelta
    ) -> None:
        delay = 0.5
        while True:
            try:
                await self.deps.run_db(lambda s: store.write_results(s, gens, ups, usage))
                return
            except (OperationalError, InterfaceError) as exc:  # database down: keep the batch
                log.warning("result write failed, retrying in %.1fs: %s", delay, _short(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except IntegrityError:  # the job was deleted under us: nothing left to write to
                log.info("job %s is gone; dropping %d result(s)", self.job_id, len(ups))
                return

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        try:
            await self._task
            await self.flush()
        finally:
            # Rows a failed flush loop never took must not hold the process's gate shut (a
            # flush gives back its own rows whatever happens to them).
            if self.generations:
                self.gate.done(len(self.generations))
                self.generations = []


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _item_row(job_id: uuid.UUID, item: WorkItem, fields: dict[str, Any]) -> dict[str, Any]:
    row = {
        "k_job": job_id,
        "k_idx": item.idx,
        "k_sample": item.sample,
        "state": item.state,
        "verdict": None,
        "initial_answer": None,
        "refined_answer": None,
        "initial_correct": None,
        "refined_correct": None,
        "verdict_agrees": None,
        "truncated": item.truncated,
        "error_kind": None,
        "error": None,
        "failures": item.failures,
        "prompt_tokens": item.prompt_tokens,
        "completion_tokens": item.completion_tokens,
        "updated_at": utcnow(),
    }
    row.update(fields)
    return row


class ChunkRun:
    def __init__(self, deps: PipelineDeps, work: ChunkWork) -> None:
        self.deps = deps
        self.work = work
        self.spec = work.spec
        # Capped: rendering stops at the cap, so a template that repeats a long question
        # cannot fill the worker's memory (PromptTooLong fails the item instead).
        self.template: Template = work.template.with_cap(deps.max_prompt_chars)
        self.stop = asyncio.Event()
        self.stop_reason: str | None = None
        # The priority of this chunk's calls at an endpoint's window: oldest chunk first, then
        # its leading items' later stages, then first come first served.
        self.started = time.monotonic()
        self.todo = [i for i in work.items if i.state not in TERMINAL_STATES]
        self.leading = {(i.idx, i.sample) for i in self.todo[:_LEADING_ITEMS]}
        self.writer = _Writer(deps, work.job_id)
        self._students: dict[int, EndpointConfig] = {}
        self.pause: tuple[str, str] | None = None  # (endpoint, last error) when the breaker opened
        self._labels: dict[str, str] = {}  # base_url -> metrics label
        # The breaker counts per (team, server, model); its probe uses our prompt shape. One
        # observer per key, made once (every call passes it).
        self._probes: dict[BreakerKey, list[dict[str, str]]] = {
            breaker_key(work.team_id, cfg): shape
            for cfg, shape in probe_shapes(self.spec, self.template)
        }
        self._observers: dict[BreakerKey, Observer] = {}
        # Calls in flight and when one last ended (or the chunk started): a chunk whose calls
        # all wait on a silent server is not work that moves (ChunkRun.stalled).
        self.inflight = 0
        self.moved_at = time.monotonic()

    def on_breaker_open(self, endpoint: str, error: str) -> None:
        """An endpoint of ours is down: stop now, leave items as they are, pause the job."""
        if self.stop.is_set():
            return
        self.pause = (endpoint, error)
        self.stop_reason = "paused"
        self.stop.set()

    def watch_breaker(self, on: bool) -> None:
        breaker = self.deps.breaker
        if breaker is None:
            return
        for key in self._probes:
            if on:
                breaker.subscribe(key, self.on_breaker_open)
            else:
                breaker.unsubscribe(key, self.on_breaker_open)

    def student_for(self, sample: int) -> EndpointConfig:
        """Each sample gets its own seed (when one is set), so k samples really differ."""
        assert self.spec.student is not None
        if sample not in self._students:
            cfg = self.spec.student
            if cfg.seed is not None:
                cfg = cfg.model_copy(update={"seed": cfg.seed + sample})
            self._students[sample] = cfg
        return self._students[sample]

    async def call(
        self, item: WorkItem, stage: str, endpoint: EndpointConfig, messages: list[dict[str, str]]
    ) -> CallResult:
        if prompt_chars(messages) > self.deps.max_prompt_chars:
            # The template is capped already; this holds for any other way messages are built.
            raise PromptTooLong(stage, self.deps.max_prompt_chars)
        await self.writer.gate.room()
        if self.stop.is_set():
            raise _Stopped
        label = self._labels.get(endpoint.base_url)
        if label is None:
            label = self._labels[endpoint.base_url] = endpoint_label(endpoint.base_url)
        async with llm_call(label, endpoint.model, stage) as rec:
            reasons = RETRY_REASONS.set(rec.retries)
            try:
                depth = _DEPTH[stage] if (item.idx, item.sample) in self.leading else 0
                result = await self._chat(endpoint, messages, (self.started, -depth))
            except LLMError as exc:  # truncated answers were still billed: count them
                rec.tokens["failed"] = (exc.prompt_tokens or 0, exc.completion_tokens or 0)
                self._count(item, stage, rec)
                # The item's error names the stage and the endpoint it could not get an answer
                # from.
                exc.args = (f"{stage} at {safe_url(endpoint.base_url)}: {exc}",)
                raise
            finally:
                RETRY_REASONS.reset(reasons)
            # Answered attempts before the kept one (a truncated answer retried with a larger
            # budget) are what the call billed beyond the kept answer's own usage.
            billed_p, billed_c = result.billed
            kept = (result.prompt_tokens, result.completion_tokens)
            rec.tokens["kept"] = kept
            rec.tokens["retried"] = (billed_p - kept[0], billed_c - kept[1])
            self._count(item, stage, rec)
        item.done[stage] = StageResult(result.text, result.finish_reason)
        return result

    def _count(self, item: WorkItem, stage: str, rec: CallRecord) -> None:
        """The item counts every answered attempt (what the server processed; the stored
        generation row keeps the kept answer's own usage); the job's usage rows count them by
        stage and outcome, with the reasons of the retried attempts."""
        for outcome, (prompt, completion) in rec.tokens.items():
            item.prompt_tokens += prompt
            item.completion_tokens += completion
            self.writer.usage(stage, outcome, prompt, completion)
        for reason in rec.retries:
            self.writer.retry(stage, reason)

    async def _chat(
        self, endpoint: EndpointConfig, messages: list[dict[str, str]], priority: Priority
    ) -> CallResult:
        self.inflight += 1
        try:
            return await self._chat_limited(endpoint, messages, priority)
        finally:
            self.inflight -= 1
            self.moved_at = time.monotonic()

    async def _chat_limited(
        self, endpoint: EndpointConfig, messages: list[dict[str, str]], priority: Priority
    ) -> CallResult:
        client, truncation = self.deps.client, self.spec.truncation
        observer = self._observer(endpoint)
        limits = self.deps.team_limits
        if limits is None:
            return await client.chat(endpoint, messages, truncation, priority, observer)
        async with limits.slot(self.work.team_id, endpoint.key):
            if self.stop.is_set():
                raise _Stopped
            return await client.chat(endpoint, messages, truncation, priority, observer)

    def _observer(self, endpoint: EndpointConfig) -> Observer | None:
        breaker = self.deps.breaker
        if breaker is None:
            return None
        key = breaker_key(self.work.team_id, endpoint)
        observe = self._observers.get(key)
        if observe is None:
            shape = self._probes.get(key)

            def observe(ep: EndpointConfig, kind: str | None, message: str, attempt: int) -> None:
                breaker.record(key, ep, kind, message, attempt, shape)

            self._observers[key] = observe
        return observe

    def stalled(self, after_s: float) -> bool:
        """Calls in flight and none answered for ``after_s``: this chunk only waits."""
        return self.inflight > 0 and time.monotonic() - self.moved_at >= after_s

    async def watch_stall(self) -> None:
        """Offer this chunk's worker slot to other work once it only waits (once)."""
        on_stall, after_s = self.deps.on_stall, self.deps.stall_yield_s
        if on_stall is None:
            return
        while not self.stop.is_set():
            await asyncio.sleep(min(1.0, after_s / 2))
            if self.stalled(after_s) and on_stall():
                log.info(
                    "chunk stalled: its slot goes to other work",
                    extra={"job_id": str(self.work.job_id), "chunk": self.work.chunk_no},
                )
                return

    def generation_row(self, item: WorkItem, stage: str, result: CallResult) -> dict[str, Any]:
        return {
            "job_id": self.work.job_id,
            "idx": item.idx,
            "sample": item.sample,
            "stage": stage,
            "text": result.text,
            "finish_reason": result.finish_reason,
            "model": result.model,
            "request": result.request_params,
            "template_version": self.work.template_version,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "latency_s": round(result.latency_s, 4),
            "attempts": result.attempts,
            "created_at": utcnow(),
            "reasoning": result.reasoning,
        }

    async def process(self, item: WorkItem) -> None:
        try:
            await self._stages(item)
        except _Stopped:
            return
        except LLMError as exc:
            if self.stop.is_set():
                return  # the breaker opened (or the chunk stopped): the item keeps its attempts
            self._fail(item, exc.kind, str(exc), truncated=exc.kind == "truncated")
        except PromptTooLong as exc:  # nothing was sent: the request would pass the cap
            self._fail(item, "prompt_too_long", f"{exc}; the job's rows or answers are too long")
        except Exception as exc:  # a poison item must never take the chunk down with it
            log.exception("item %s/%s failed unexpectedly", item.idx, item.sample)
            self._fail(item, "internal", f"{type(exc).__name__}: {exc}")

    def _fail(self, item: WorkItem, kind: str, message: str, truncated: bool = False) -> None:
        item.state = "failed"
        item.failures += 1
        item.truncated = item.truncated or truncated
        self.writer.add(item, None, error_kind=kind, error=message[:2000])

    fail = _fail  # for cgd.generation.batch

    async def _stages(self, item: WorkItem) -> None:
        q = item.prompt
        # 1. probe (or the dataset's own answer)
        if "probe" in item.done:
            initial = item.done["probe"].text
        elif self.spec.student is None:
            if item.response is None:
                raise LLMError("client_error", "no initial response in the dataset", 0)
            initial = item.response
        else:
            res = await self.call(
                item, "probe", self.student_for(item.sample), self.template.probe(q)
            )
            initial = res.text
            item.state = "probed"
            self.writer.add(item, self.generation_row(item, "probe", res))
        # 2. critique
        if "critique" in item.done:
            critique = item.done["critique"].text
            verdict = parse_verdict(critique)
        else:
            messages = self.template.critique(q, initial)
            res = await self.call(item, "critique", self.spec.teacher, messages)
            critique = res.text
            verdict = parse_verdict(critique)
            item.state = "critiqued"
            self.writer.add(item, self.generation_row(item, "critique", res), verdict=verdict)
        # 3. refine: a continuation of the critique conversation (shared prefix)
        if "refine" in item.done:
            refined = item.done["refine"].text
        else:
            messages = self.template.refine(q, initial, critique)
            res = await self.call(item, "refine", self.spec.teacher, messages)
            refined = res.text
            item.state = "refined"
            self.writer.add(item, self.generation_row(item, "refine", res), verdict=verdict)
        if self.spec.teacher_solution:
            await self._teacher_solution(item, verdict)
        # 4. verify
        initial_v, refined_v = await self._verify(initial, refined, item.reference)
        agrees = None
        if verdict is not None and initial_v.correct is not None:
            agrees = (verdict == "right") == initial_v.correct
        item.state = "verified"
        self.writer.add(
            item,
            None,
            verdict=verdict,
            initial_answer=initial_v.extracted,
            refined_answer=refined_v.extracted,
            initial_correct=initial_v.correct,
            refined_correct=refined_v.correct,
            verdict_agrees=agrees,
        )

    async def _teacher_solution(self, item: WorkItem, verdict: str | None) -> None:
        """The optional ``solve`` stage: the teacher answers the question directly, with no
        student answer or critique in sight (the target of the distilled-SFT baseline)."""
        if "solve" in item.done:
            return
        messages = self.template.solve(item.prompt)
        res = await self.call(item, "solve", self.spec.teacher, messages)
        self.writer.add(item, self.generation_row(item, "solve", res), verdict=verdict)

    async def _verify(
        self, initial: str, refined: str, reference: str | None
    ) -> tuple[Verdict, Verdict]:
        kind = self.spec.verifier
        pairs = [(kind, initial, reference), (kind, refined, reference)]
        a, b = await self.deps.verifier.averify_many(pairs)
        return a, b

    async def heartbeat(self) -> None:
        """Renew the lease and watch for cancellation until the chunk ends."""
        job_id, chunk_no, owner = self.work.job_id, self.work.chunk_no, self.deps.owner
        while not self.stop.is_set():
            await asyncio.sleep(self.deps.heartbeat_s)
            try:
                kept = await self.deps.run_db(
                    lambda s: store.extend_lease(s, job_id, chunk_no, owner, self.deps.lease_s)
                )
                cancelled = await self.deps.run_db(lambda s: store.is_cancelled(s, job_id))
            except Exception as exc:
                log.warning("heartbeat failed: %s", _short(exc))
                continue
            if cancelled or not kept:
                self.stop_reason = "cancelled" if cancelled else "lease lost"
                self.stop.set()


async def run_next(deps: PipelineDeps) -> str:
    """Claim the next chunk in fair order (:mod:`cgd.generation.dispatch`) and run it.
    Returns ``idle`` when nothing may run now, else what happened to the chunk."""
    owner = deps.owner
    claimed = await deps.run_db(
        lambda s: dispatch.claim_next(s, owner, deps.lease_s, deps.team_max_running_chunks)
    )
    if claimed is None:
        return "idle"
    return await run_claimed(deps, *claimed)


async def run_chunk(deps: PipelineDeps, job_id: uuid.UUID, chunk_no: int) -> str:
    """Run one given chunk to the end (whoever asks for it by name: tests, tools)."""
    owner = deps.owner
    claimed = await deps.run_db(
        lambda s: store.claim_chunk(s, job_id, chunk_no, owner, deps.lease_s)
    )
    if not claimed:
        log.info("chunk %s/%s is done or held by a live runner; skipping", job_id, chunk_no)
        return "skipped"
    return await run_claimed(deps, job_id, chunk_no)


async def run_claimed(deps: PipelineDeps, job_id: uuid.UUID, chunk_no: int) -> str:
    """Run a chunk whose lease ``deps.owner`` holds. Returns done|partial|cancelled|paused|…"""
    owner = deps.owner
    work = await deps.run_db(lambda s: store.load_chunk(s, job_id, chunk_no))
    if work is None:
        await deps.run_db(lambda s: store.release_chunk(s, job_id, chunk_no, owner))
        return "cancelled"
    run = ChunkRun(deps, work)
    todo = run.todo
    started = time.monotonic()
    log.info(
        "chunk started",
        extra={"job_id": str(job_id), "chunk": chunk_no, "items": len(todo)},
    )
    run.watch_breaker(True)
    beat = asyncio.create_task(run.heartbeat())
    stall = asyncio.create_task(run.watch_stall())
    if batch.uses_batch(run):  # stage by stage through the Batch API (cgd.generation.batch)
        tasks = [asyncio.create_task(batch.run_batch_chunk(run, todo))]
    else:
        tasks = [asyncio.create_task(run.process(i)) for i in todo]
    stopped = asyncio.create_task(run.stop.wait())
    try:
        all_done: asyncio.Future[Any] = asyncio.gather(*tasks)
        await asyncio.wait([all_done, stopped], return_when=asyncio.FIRST_COMPLETED)
        if run.stop.is_set():
            # Cancelled or lease lost: abort calls in flight and those waiting for a slot, so no
            # new call goes out. Results already received are flushed below.
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        stopped.cancel()
        run.watch_breaker(False)
        run.stop.set()
        beat.cancel()
        stall.cancel()
        await run.writer.close()
    if run.pause is not None:
        endpoint, error = run.pause
        await deps.run_db(lambda s: store.pause_job(s, job_id, endpoint, error))
        log.warning("job %s paused: %s is failing (%s)", job_id, endpoint, error)
    if run.stop_reason is not None:
        await deps.run_db(lambda s: store.release_chunk(s, job_id, chunk_no, owner))
        log.info("chunk stopped: %s", run.stop_reason, extra={"job_id": str(job_id)})
        return run.stop_reason
    finished = await deps.run_db(lambda s: store.finish_chunk(s, job_id, chunk_no, owner))
    log.info(
        "chunk finished",
        extra={
            "job_id": str(job_id),
            "chunk": chunk_no,
            "items": len(todo),
            "seconds": round(time.monotonic() - started, 2),
        },
    )
    return "done" if finished else "partial"
