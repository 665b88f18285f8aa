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
from cgd.generation import pipeline, store
from cgd.runs import ops as runs
from cgd.settings import Settings, get_settings
from cgd.snapshots import ops as snapshots
from services.worker.celery_app import make_celery, send
from services.worker.runtime import get_runtime

log = logging.getLogger("cgd.worker")


def run_chunk(task_id: str | None, job_id: str, chunk_no: int) -> str:
    settings = get_settings()
    runtime = get_runtime(settings)
    outcome = runtime.run(
        pipeline.run_chunk(
            runtime.deps(task_id or uuid.uuid4().hex), uuid.UUID(job_id), int(chunk_no)
        ),
        settings.chunk_time_limit_s,
    )
    log.info("run_chunk %s/%s: %s", job_id, chunk_no, outcome)
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
    def _run_chunk(self, job_id: str, chunk_no: int) -> str:  # type: ignore[no-untyped-def]
        return run_chunk(self.request.id, job_id, chunk_no)

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
    """One round of the sweeper: re-enqueue chunks whose runner died (lease expired) or whose
    message was lost, snapshot builds whose message was lost; fail runs whose trainer went
    silent (status reads never write, so this is where a lost trainer is noticed)."""
    runtime = get_runtime(settings)
    refs = runtime.run_db_sync(lambda s: store.sweep(s, settings.requeue_after_s))
    if refs:
        log.info("sweeper re-enqueues %d chunk(s)", len(refs))
        send(app, contract.chunk_messages(refs))
    builds = runtime.run_db_sync(
        lambda s: snapshots.sweep_builds(
            s, settings.requeue_after_s, settings.snapshot_build_lost_after_s
        )
    )
    if builds:
        log.info("sweeper re-enqueues %d snapshot build(s)", len(builds))
        send(app, [contract.build_snapshot_message(b) for b in builds])
    lost = runtime.run_db_sync(lambda s: runs.sweep_lost(s, settings.trainer_lost_after_s))
    if lost:
        log.info("sweeper failed %d training run(s) whose trainer went silent", len(lost))


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
