"""Tasks are thin adapters: ids in → a plain ``cgd`` function → results in Postgres."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis
from celery import signals

from cgd import snapshots
from cgd.generation import pipeline, store
from cgd.settings import get_settings
from services.worker.celery_app import celery_app, chunk_messages, send
from services.worker.runtime import get_runtime

log = logging.getLogger("cgd.worker")


@celery_app.task(name="cgd.generation.run_chunk", bind=True)
def run_chunk(self, job_id: str, chunk_no: int) -> str:  # type: ignore[no-untyped-def]
    settings = get_settings()
    runtime = get_runtime(settings)
    task_id = self.request.id or uuid.uuid4().hex
    outcome = runtime.run(
        pipeline.run_chunk(runtime.deps(task_id), uuid.UUID(job_id), int(chunk_no)),
        settings.chunk_time_limit_s,
    )
    log.info("run_chunk %s/%s: %s", job_id, chunk_no, outcome)
    return outcome


BUILD_SNAPSHOT = "cgd.curation.build_snapshot"


@celery_app.task(name=BUILD_SNAPSHOT)
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


# No Celery time limit: a training run takes as long as it takes (the solo pool could not
# enforce one anyway); a lost trainer is detected by its missing heartbeat instead.
@celery_app.task(name="cgd.train.run", time_limit=None, soft_time_limit=None)
def train_run(run_id: str, token: str) -> str:
    """One training run on this (GPU) host; progress goes to the API as events."""
    from services.worker.trainer import run_training_job

    return run_training_job(run_id, token, get_settings())


@celery_app.task(name="cgd.ops.ping")
def ping(token: str) -> None:
    """Proof of life: marks ``cgd:ping:<token>`` in the broker's Redis (tests, health checks)."""
    url = get_settings().broker_url
    if url and url.startswith("redis"):
        redis.Redis.from_url(url).set(f"cgd:ping:{token[:64]}", "1", ex=300)


def _sweep_forever(stop: threading.Event) -> None:
    """Re-enqueue chunks whose runner died (lease expired) or whose message was lost, and
    snapshot builds whose message was lost."""
    settings = get_settings()
    runtime = get_runtime(settings)
    while not stop.wait(settings.sweep_interval_s):
        try:
            refs = runtime.run_db_sync(lambda s: store.sweep(s, settings.requeue_after_s))
            if refs:
                log.info("sweeper re-enqueues %d chunk(s)", len(refs))
                send(celery_app, chunk_messages(refs))
            builds = runtime.run_db_sync(
                lambda s: snapshots.sweep_builds(
                    s, settings.requeue_after_s, settings.snapshot_build_lost_after_s
                )
            )
            if builds:
                log.info("sweeper re-enqueues %d snapshot build(s)", len(builds))
                send(celery_app, [(BUILD_SNAPSHOT, [b], "curation") for b in builds])
        except Exception as exc:  # the broker or database is down: try again next round
            log.warning("sweep failed: %s", exc)
            time.sleep(1)


_stop_sweeper = threading.Event()
# Set by `cgd worker` (generation workers own the database); the trainer talks to the API only.
RUN_SWEEPER = False


@signals.worker_ready.connect
def _start_sweeper(**_: object) -> None:
    if not RUN_SWEEPER:
        return
    threading.Thread(
        target=_sweep_forever, args=(_stop_sweeper,), name="cgd-sweeper", daemon=True
    ).start()


@signals.worker_shutdown.connect
def _stop(**_: object) -> None:
    _stop_sweeper.set()
