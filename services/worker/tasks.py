"""Tasks are thin adapters: ids in → a plain ``cgd`` function → results in Postgres.

Nothing here runs on import: :func:`build_worker_app` builds the Celery app and registers the
tasks under the names of the task contract (:mod:`cgd.tasks`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis
from celery import Celery, signals

from cgd import tasks as contract
from cgd.generation import dispatch, pipeline
from cgd.generation.breaker import breaker_key, probe
from cgd.jobs import pause
from cgd.runs import ops as runs
from cgd.settings import Settings, get_settings
from cgd.snapshots import ops as snapshots
from services.worker.celery_app import make_celery, queue_depth, send
from services.worker.runtime import get_runtime

log = logging.getLogger("cgd.worker")


def run_next_chunk(app: Celery, task_id: str | None) -> str:
    """One token: run the next chunk in fair order; pass the token on while work remains.

    A chunk whose calls all wait on a silent server gives its slot back while it keeps running
    (``CGD_STALL_YIELD_S``; at most ``CGD_MAX_STALLED_CHUNKS`` per process): this task ends
    ``yielded`` and passes its token on, so another team's work runs in the slot instead of
    queueing behind sockets that wait."""
    settings = get_settings()
    runtime = get_runtime(settings)
    ended = threading.Event()
    yielded = threading.Event()

    def on_stall() -> bool:
        if not runtime.take_stalled_slot():
            return False
        yielded.set()
        ended.set()
        return True

    deps = runtime.deps(task_id or uuid.uuid4().hex, on_stall)
    future = runtime.submit(pipeline.run_next(deps), settings.chunk_time_limit_s)

    def finished(_: object) -> None:
        if yielded.is_set():
            runtime.release_stalled_slot()
        ended.set()

    future.add_done_callback(finished)
    ended.wait()
    outcome = future.result() if future.done() and not yielded.is_set() else "yielded"
    if outcome != "idle":
        # A successor token keeps this slot's share of the work going; it dies (idle) when
        # nothing is left. Tokens are generic, so its place in the FIFO queue favours nobody.
        send(app, contract.run_tokens(1))
    log.info("run token: %s", outcome)
    return outcome


def build_snapshot(snapshot_id: str) -> str:
    """Curate a large snapshot off the request path; failures are visible on the snapshot."""
    runtime = get_runtime(get_settings())
    sid = uuid.UUID(snapshot_id)
    if not runtime.run_db_sync(lambda s: snapshots.start_build(s, sid)):
        return "skipped"  # already built (a repeated message) or deleted
    try:
        snap = runtime.run_db_sync(lambda s: snapshots.build(s, sid))
        return snap.status
    except Exception as exc:
        log.exception("snapshot %s failed", snapshot_id)
        reason = f"{type(exc).__name__}: {exc}"
        runtime.run_db_sync(lambda s: snapshots.mark_failed(s, sid, reason))
        return "failed"


def train_run(run_id: str, token: str | None) -> str:
    """One training run on this (GPU) host; progress goes to the API as events."""
    from services.worker.trainer import run_training_job

    if not token:
        log.error("training run %s: the message carries no run token; skipped", run_id)
        return "skipped"
    return run_training_job(run_id, token, get_settings())


def ping(token: str) -> None:
    """Proof of life: marks ``cgd:ping:<token>`` in the broker's Redis (tests, health checks)."""
    url = get_settings().broker_url
    if url and url.startswith("redis"):
        redis.Redis.from_url(url).set(f"cgd:ping:{token[:64]}", "1", ex=300)


def build_worker_app(settings: Settings) -> Celery:
    """The worker's Celery app with every task of the contract registered."""
    app = make_celery(settings)

    @app.task(name=contract.RUN_CHUNK, bind=True)
    def _run_chunk(self, *_: object) -> str:  # type: ignore[no-untyped-def]
        return run_next_chunk(app, self.request.id)

    app.task(name=contract.BUILD_SNAPSHOT)(build_snapshot)

    # No Celery time limit: a training run takes as long as it takes (the solo pool could not
    # enforce one anyway); a lost trainer is detected by its missing heartbeat instead.
    @app.task(name=contract.TRAIN_RUN, bind=True, time_limit=None, soft_time_limit=None)
    def _train_run(self, run_id: str) -> str:  # type: ignore[no-untyped-def]
        # The token is a message header (never an argument: Celery logs arguments).
        return train_run(run_id, getattr(self.request, contract.RUN_TOKEN_HEADER, None))

    app.task(name=contract.PING)(ping)
    return app


def sweep_once(app: Celery, settings: Settings) -> None:
    """One round of the sweeper: keep run tokens in the queue while chunks can be claimed (a
    runner died, a message was lost); re-send snapshot builds and training runs whose message
    was lost; fail runs whose trainer went silent; probe the endpoints of paused jobs."""
    runtime = get_runtime(settings)
    waiting = queue_depth(app, contract.GENERATION_QUEUE)
    claimable = runtime.run_db_sync(dispatch.claimable_chunks)
    # Tokens already waiting will each claim a chunk: never re-send for work that has one.
    missing = min(claimable, settings.dispatch_tokens) - (waiting or 0)
    if missing > 0:
        log.info("sweeper sends %d run token(s) for %d claimable chunk(s)", missing, claimable)
        send(app, contract.run_tokens(missing))
    builds = runtime.run_db_sync(
        lambda s: snapshots.sweep_builds(
            s, settings.requeue_after_s, settings.snapshot_build_lost_after_s
        )
    )
    if builds:
        log.info("sweeper re-enqueues %d snapshot build(s)", len(builds))
        send(app, [contract.build_snapshot_message(b) for b in builds])
    if queue_depth(app, contract.TRAIN_QUEUE) == 0:
        unsent = runtime.run_db_sync(lambda s: runs.resend_unsent(s, settings.requeue_after_s))
        if unsent:
            log.info("sweeper re-sends %d training run(s) whose message was lost", len(unsent))
            send(app, unsent)
    lost = runtime.run_db_sync(lambda s: runs.sweep_lost(s, settings.trainer_lost_after_s))
    if lost:
        log.info("sweeper failed %d training run(s) whose trainer went silent", len(lost))
    probe_paused(app, settings)


def probe_paused(app: Celery, settings: Settings) -> None:
    """Resume paused jobs whose failing endpoint answers a tiny call again."""
    runtime = get_runtime(settings)
    due = runtime.run_db_sync(lambda s: pause.due_for_probe(s, settings.breaker_probe_interval_s))
    for job in due:
        errors = [
            e
            for e in (
                probe(c, settings.preflight_timeout_s, runtime.guard, shape)
                for c, shape in job.endpoints
            )
            if e
        ]
        jid = job.job_id
        if errors:
            runtime.run_db_sync(lambda s, j=jid, e=errors[0]: pause.probe_failed(s, j, e))  # type: ignore[misc]
            continue
        if runtime.run_db_sync(lambda s, j=jid: pause.resume_by_id(s, j)):  # type: ignore[misc]
            for c, _ in job.endpoints:
                runtime.breaker.reset(breaker_key(job.team_id, c))
            log.info("job %s resumed: its endpoint answers again", jid)
            send(app, contract.run_tokens(settings.dispatch_tokens))


def _sweep_forever(app: Celery, stop: threading.Event) -> None:
    settings = get_settings()
    while not stop.wait(settings.sweep_interval_s):
        try:
            sweep_once(app, settings)
        except Exception as exc:  # the broker or database is down: try again next round
            log.warning("sweep failed: %s", exc)
            time.sleep(1)


_stop_sweeper = threading.Event()


def start_sweeper(app: Celery) -> None:
    """Run the sweeper in this worker once it is ready (generation workers own the database;
    the trainer talks to the API only and runs none)."""

    @signals.worker_ready.connect(weak=False)
    def _start(**_: object) -> None:
        threading.Thread(
            target=_sweep_forever, args=(app, _stop_sweeper), name="cgd-sweeper", daemon=True
        ).start()

    @signals.worker_shutdown.connect(weak=False)
    def _stop(**_: object) -> None:
        _stop_sweeper.set()
