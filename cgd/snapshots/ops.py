"""Snapshot operations: curate the triplets of finished jobs into an immutable, exportable
selection.

The pure curation logic lives in ``cgd.curation``; this module feeds it from the database (one
streamed pass to select, one to copy the selected rows) and serves exports back out of it.
Functions that take a ``Session`` only ``flush()``; the request boundary commits.
"""

from __future__ import annotations

import contextlib
import queue
import tempfile
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from cgd.curation.card import build_card, render_markdown
from cgd.curation.export import (
    NATIVE_FIELDS,
    ExportStats,
    fields_for,
    iter_export_rows,
    iter_jsonl_bytes,
    iter_parquet_bytes,
)
from cgd.curation.extra_columns import ExtraColumnsSeen
from cgd.curation.filters import CurationSpec
from cgd.curation.hub import iter_tar, write_hub_folder
from cgd.curation.snapshot import curate
from cgd.curation.target_stats import TargetStats
from cgd.db.bulk import is_postgres
from cgd.db.models import (
    DatasetItem,
    Generation,
    Job,
    JobItem,
    Snapshot,
    SnapshotRow,
    TrainingRun,
    utcnow,
)
from cgd.db.queries import team_newest_first, team_row
from cgd.errors import InvalidRequest, NotFound
from cgd.generation.spec import JobSpec
from cgd.jobs.quality import quality_dict, snapshot_quality
from cgd.pagination import Page, created_page, decode_created_cursor
from cgd.snapshots.errors import (
    JobUnfinished,
    ModeUnavailable,
    SnapshotInUse,
    SnapshotNotFound,
    SnapshotNotReady,
)
from cgd.snapshots.schemas import CardOut, SnapshotDetail, SnapshotOut
from cgd.tasks import Message, build_snapshot_message

_COPY_BATCH = 1000


def create(
    session: Session, team_id: uuid.UUID, spec: CurationSpec, inline_max: int
) -> tuple[SnapshotOut, list[Message]]:
    """Build a small snapshot now; queue a larger one (``inline_max`` input rows) on the
    curation queue. Returns the snapshot and the messages to send after the commit: none when
    it was built inline."""
    jobs = validate_inputs(session, team_id, spec)
    snap = new_snapshot(session, team_id, spec)
    if input_size(session, jobs) > inline_max:
        snap.build_enqueued_at = utcnow()
        session.flush()
        return SnapshotOut.model_validate(snap), [build_snapshot_message(str(snap.id))]
    build(session, snap.id)
    return SnapshotOut.model_validate(snap), []


def list_snapshots(
    session: Session, team_id: uuid.UUID, limit: int, cursor: str | None
) -> Page[SnapshotOut]:
    rows = team_newest_first(session, Snapshot, team_id, limit + 1, decode_created_cursor(cursor))
    return created_page(rows, limit, SnapshotOut.model_validate)


def detail(snap: Snapshot) -> SnapshotDetail:
    return SnapshotDetail.model_validate(snap)


def validate_inputs(session: Session, team_id: uuid.UUID, spec: CurationSpec) -> list[Job]:
    """The spec's jobs (all the caller's) and decontamination datasets must exist: else 404."""
    if not spec.job_ids:
        raise InvalidRequest({"field": "job_ids", "reason": "name at least one job"})
    jobs = []
    for raw in spec.job_ids:
        job = _team_job(session, team_id, raw)
        jobs.append(job)
    if not spec.allow_partial:
        _check_finished(session, jobs)
    for raw in spec.decontaminate.dataset_ids or ():
        _team_dataset_id(session, team_id, raw)
    return jobs


def _check_finished(session: Session, jobs: list[Job]) -> None:
    """A job still queued or running would give a snapshot of whatever happens to be done now
    (nothing, for a job that never ran): refuse unless the caller asks for that."""
    from cgd.jobs.ops import job_statuses

    for job, status in zip(jobs, job_statuses(session, jobs), strict=True):
        if status.status in ("queued", "running"):
            raise JobUnfinished(
                {
                    "reason": f"job {job.id} is {status.status}; wait for it to finish or send "
                    '"allow_partial": true',
                    "field": "job_ids",
                    "job_id": str(job.id),
                    "status": status.status,
                }
            )


def _team_job(session: Session, team_id: uuid.UUID, raw: str) -> Job:
    try:
        job = session.get(Job, uuid.UUID(str(raw)))
    except ValueError:
        job = None
    if job is None or job.team_id != team_id:
        raise NotFound({"job_id": str(raw), "reason": "job not found"})
    return job


def _team_dataset_id(session: Session, team_id: uuid.UUID, raw: str) -> uuid.UUID:
    from cgd.datasets.ops import get_dataset

    try:
        dataset_id = uuid.UUID(str(raw))
    except ValueError:
        raise NotFound({"dataset_id": str(raw), "reason": "dataset not found"}) from None
    return get_dataset(session, team_id, dataset_id).id


def input_size(session: Session, jobs: list[Job]) -> int:
    return int(
        session.scalar(select(func.count()).where(JobItem.job_id.in_([j.id for j in jobs]))) or 0
    )


def new_snapshot(session: Session, team_id: uuid.UUID, spec: CurationSpec) -> Snapshot:
    snap = Snapshot(
        team_id=team_id,
        name=spec.name,
        status="building",
        job_ids=[str(j) for j in spec.job_ids or ()],
        spec=spec.model_dump(mode="json"),
        stats={},
        lineage={},
    )
    session.add(snap)
    session.flush()
    return snap


def job_lineage(job: Job) -> dict[str, Any]:
    spec = JobSpec.model_validate(job.spec)
    public = spec.public()
    return {
        "job_id": str(job.id),
        "dataset_id": str(job.dataset_id),
        "student": public["student"],
        "teacher": public["teacher"],
        "verifier": spec.verifier,
        "samples_per_prompt": spec.samples_per_prompt,
        "template": spec.template,
        "template_version": job.template_version,
        "teacher_solution": spec.teacher_solution,
    }


def iter_triplets(
    session: Session, jobs: list[Job], prefix_items: bool
) -> Iterator[dict[str, Any]]:
    """Every (item, sample) of the jobs as a triplet dict, streamed from the database."""
    lineages = {j.id: job_lineage(j) for j in jobs}
    datasets = {j.id: j.dataset_id for j in jobs}
    g_probe, g_crit, g_ref, g_solve = (aliased(Generation) for _ in range(4))

    def gen_join(g: Any, stage: str) -> Any:
        return and_(
            g.job_id == JobItem.job_id,
            g.idx == JobItem.idx,
            g.sample == JobItem.sample,
            g.stage == stage,
        )

    for job in jobs:
        q = (
            select(
                JobItem,
                DatasetItem.item_id,
                DatasetItem.prompt,
                DatasetItem.reference,
                DatasetItem.solution,
                DatasetItem.response,
                DatasetItem.extra,
                g_probe.text,
                g_crit.text,
                g_ref.text,
                g_solve.text,
            )
            .join(
                DatasetItem,
                and_(DatasetItem.dataset_id == datasets[job.id], DatasetItem.idx == JobItem.idx),
            )
            .outerjoin(g_probe, gen_join(g_probe, "probe"))
            .outerjoin(g_crit, gen_join(g_crit, "critique"))
            .outerjoin(g_ref, gen_join(g_ref, "refine"))
            .outerjoin(g_solve, gen_join(g_solve, "solve"))
            .where(JobItem.job_id == job.id)
            .order_by(JobItem.idx, JobItem.sample)
            .execution_options(yield_per=2000)
        )
        for (
            ji,
            item_id,
            prompt,
            reference,
            solution,
            response,
            extra,
            probe,
            crit,
            ref,
            solve,
        ) in session.execute(q):
            yield {
                "triplet_id": f"{job.id}:{ji.idx}:{ji.sample}",
                "job_id": str(job.id),
                "item_id": f"{job.dataset_id}/{item_id}" if prefix_items else item_id,
                "sample": ji.sample,
                "prompt": prompt,
                "reference": reference,
                "solution": solution,
                "initial_response": probe if probe is not None else response,
                "critique": crit,
                "verdict": ji.verdict,
                "refined_response": ref,
                "teacher_solution": solve,
                "initial_correct": ji.initial_correct,
                "refined_correct": ji.refined_correct,
                "status": ji.state,
                "error": ji.error,
                "truncated": ji.truncated,
                "lineage": lineages[job.id],
                "extra": extra,
            }


def _decontam_texts(session: Session, spec: CurationSpec) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for raw in spec.decontaminate.dataset_ids or ():
        out[raw] = list(
            session.scalars(
                select(DatasetItem.prompt).where(DatasetItem.dataset_id == uuid.UUID(raw))
            )
        )
    return out


def build(session: Session, snapshot_id: uuid.UUID) -> Snapshot:
    """Curate and copy the rows in; the snapshot is ``ready`` (or ``failed``) afterwards."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is None:
        raise SnapshotNotFound({"snapshot_id": str(snapshot_id)})
    if snap.status == "ready":
        return snap  # a redelivered build task: already done
    spec = CurationSpec.model_validate(snap.spec)
    jobs = [_team_job(session, snap.team_id, j) for j in snap.job_ids]
    prefix = len({j.dataset_id for j in jobs}) > 1  # item ids are only unique per dataset
    result = curate(iter_triplets(session, jobs, prefix), spec, _decontam_texts(session, spec))
    splits = result.splits()
    session.execute(delete(SnapshotRow).where(SnapshotRow.snapshot_id == snap.id))
    batch: list[dict[str, Any]] = []
    pos = 0
    targets = TargetStats()
    extra = ExtraColumnsSeen()
    for t in iter_triplets(session, jobs, prefix):
        split = splits.get(t["triplet_id"])
        if split is None:
            continue
        targets.observe(t)
        extra.observe(t["extra"])
        batch.append(_row(snap.id, pos, t, split))
        pos += 1
        if len(batch) >= _COPY_BATCH:
            session.execute(insert(SnapshotRow), batch)
            batch.clear()
    if batch:
        session.execute(insert(SnapshotRow), batch)
    snap.num_items = pos
    session.flush()
    # Over the selected rows: what a model trained on this snapshot sees.
    snap.stats = {
        **result.stats,
        "targets": targets.result(),
        "quality": quality_dict(snapshot_quality(session, snap.id)),
        # The dataset's own columns, in every export of the snapshot (schema_for).
        "extra_columns": extra.result(),
    }
    snap.dropped = result.dropped
    snap.lineage = {str(k): v for k, v in result.lineage.items()}
    snap.content_hash = result.content_hash
    snap.status = "ready"
    snap.finished_at = utcnow()
    session.flush()
    return snap


def _row(snapshot_id: uuid.UUID, pos: int, t: dict[str, Any], split: str) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot_id,
        "pos": pos,
        "split": split,
        **{k: t[k] for k in _ROW_FIELDS},
    }


# Every native field but the two an export adds (split comes from the row, lineage from the job),
# and the dataset's own columns.
_ROW_FIELDS = (*(f for f in NATIVE_FIELDS if f not in ("split", "lineage")), "extra")


def start_build(session: Session, snapshot_id: uuid.UUID) -> bool:
    """Record that a worker picked the build up; False when there is nothing (left) to build."""
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or snap.status != "building":
        return False
    snap.build_started_at = utcnow()
    return True


def sweep_builds(session: Session, requeue_after_s: float, lost_after_s: float) -> list[str]:
    """Snapshots to build again (their message never reached a worker); builds whose worker
    went away are marked failed rather than left ``building`` forever."""
    now = utcnow()
    for snap in session.scalars(
        select(Snapshot).where(
            Snapshot.status == "building",
            Snapshot.build_started_at < now - timedelta(seconds=lost_after_s),
        )
    ):
        snap.status = "failed"
        started = snap.build_started_at.isoformat() if snap.build_started_at else "?"
        snap.error = f"build lost: no result since {started}"
        snap.finished_at = now
    stale = list(
        session.scalars(
            select(Snapshot).where(
                Snapshot.status == "building",
                Snapshot.build_started_at.is_(None),
                Snapshot.build_enqueued_at < now - timedelta(seconds=requeue_after_s),
            )
        )
    )
    for snap in stale:
        snap.build_enqueued_at = now  # once per interval, not once per sweep
    return [str(s.id) for s in stale]


def mark_failed(session: Session, snapshot_id: uuid.UUID, error: str) -> None:
    snap = session.get(Snapshot, snapshot_id)
    if snap is not None and snap.status != "ready":
        snap.status = "failed"
        snap.error = error[:2000]
        snap.finished_at = utcnow()


def get_snapshot(session: Session, team_id: uuid.UUID, snapshot_id: uuid.UUID) -> Snapshot:
    return team_row(session, Snapshot, team_id, snapshot_id, SnapshotNotFound, "snapshot_id")


def delete_snapshot(session: Session, snap: Snapshot) -> None:
    runs = list(
        session.scalars(select(TrainingRun.id).where(TrainingRun.snapshot_id == snap.id).limit(10))
    )
    if runs:
        raise SnapshotInUse(
            {"snapshot_id": str(snap.id), "training_run_ids": [str(r) for r in runs]}
        )
    session.execute(delete(SnapshotRow).where(SnapshotRow.snapshot_id == snap.id))
    session.delete(snap)
    session.flush()


# Modes whose target comes from an optional job stage: the job option that produces it.
_MODE_NEEDS = {"distill": "teacher_solution"}


def exportable(
    session: Session, team_id: uuid.UUID, snapshot_id: uuid.UUID, mode: str | None
) -> Snapshot:
    """The team's snapshot, ready, and holding what ``mode`` trains on (``None``: the native
    rows, which carry every field): what every export, file or Hub folder, starts from."""
    snap = get_snapshot(session, team_id, snapshot_id)
    if snap.status != "ready":
        raise SnapshotNotReady({"snapshot_id": str(snap.id), "status": snap.status})
    if mode is not None:
        check_mode(snap, mode)
    return snap


def download_name(snap: Snapshot, tag: str, suffix: str) -> str:
    return f"{(snap.name or 'snapshot').replace('/', '_')}-{tag}.{suffix}"


def check_mode(snap: Snapshot, mode: str) -> None:
    """Refuse a mode whose targets the snapshot's jobs never produced (rather than export an
    empty file or train on nothing): ``distill`` needs jobs run with ``teacher_solution``."""
    option = _MODE_NEEDS.get(str(mode))
    if option is None:
        return
    lacking = sorted(j for j, lin in snap.lineage.items() if not (lin or {}).get(option))
    if lacking:
        raise ModeUnavailable(
            {
                "reason": f"mode {mode} trains on the teacher's direct answers, but job(s) "
                f"{', '.join(lacking)} of snapshot {snap.id} ran without "
                f'"{option}": true; run a job with it and build a new snapshot',
                "snapshot_id": str(snap.id),
                "mode": str(mode),
                "field": option,
                "job_ids": lacking,
            }
        )


def card_out(snap: Snapshot) -> CardOut:
    data, markdown = card(snap)
    return CardOut.model_validate({**data, "markdown": markdown})


def card(snap: Snapshot) -> tuple[dict[str, Any], str]:
    if snap.status != "ready" or snap.content_hash is None:
        raise SnapshotNotReady({"snapshot_id": str(snap.id), "status": snap.status})
    data = build_card(
        name=snap.name,
        spec=snap.spec,
        stats=snap.stats,
        content_hash=snap.content_hash,
        lineage=snap.lineage,
    )
    return data, render_markdown(data)


_EXPORT_COLUMNS = (*_ROW_FIELDS, "split")


def stream_export(
    factory: sessionmaker[Session],
    snapshot_id: uuid.UUID,
    *,
    format: str = "jsonl",
    layout: str = "native",
    mode: str | None = None,
    split: str = "all",
    compression: str = "snappy",
) -> Iterator[bytes]:
    """The export file's bytes, produced as they are sent. It opens its own session because an
    HTTP stream outlives the request's unit of work; a snapshot deleted meanwhile ends it."""
    with factory() as session:
        snap = session.get(Snapshot, snapshot_id)
        if snap is None:
            return
        fields = fields_for(layout, mode)
        extra = extra_columns(snap)
        rows = iter_export_rows(
            iter_rows(session, snap, fields), layout, mode, split, ExportStats(), extra
        )
        if format == "parquet":
            yield from iter_parquet_bytes(rows, layout, compression=compression, extra=extra)
        else:
            yield from iter_jsonl_bytes(rows)


def stream_hub_tar(
    factory: sessionmaker[Session], snapshot_id: uuid.UUID, *, mode: str, license: str
) -> Iterator[bytes]:
    """A tar of the snapshot's Hub folder (``cgd.curation.hub``). The folder is written to a
    temporary directory first (a tar header needs each file's size), then streamed from disk."""
    with factory() as session, tempfile.TemporaryDirectory(prefix="cgd-hub-") as tmp:
        snap = session.get(Snapshot, snapshot_id)
        if snap is None:
            return
        data, _ = card(snap)
        folder = Path(tmp)
        write_hub_folder(lambda: iter_rows(session, snap), folder, data, mode, license)
        session.rollback()  # nothing more to read: give the connection back while sending
        stamp = int((snap.finished_at or snap.created_at).timestamp())
        yield from iter_tar(folder, mtime=stamp)


def extra_columns(snap: Snapshot) -> dict[str, str]:
    """The snapshot's extra columns and their kinds (none for one built before they were kept)."""
    return dict((snap.stats or {}).get("extra_columns") or {})


def iter_rows(
    session: Session, snap: Snapshot, fields: tuple[str, ...] | None = None
) -> Iterator[dict[str, Any]]:
    """The snapshot's rows in order, as triplet dicts (what the export layouts read): every
    field and the job's lineage, or only ``fields`` (no lineage) when given.

    Plain column tuples from a server-side cursor; on Postgres straight from the driver: ORM
    objects, and even SQLAlchemy's row processing, cost more than the whole JSONL encoding.
    """
    columns = (
        _EXPORT_COLUMNS if fields is None else tuple(f for f in _EXPORT_COLUMNS if f in fields)
    )
    lineage = snap.lineage if fields is None else None
    for values in _row_tuples(session, snap.id, columns):
        row = dict(zip(columns, values, strict=True))
        if lineage is not None:
            row["lineage"] = lineage.get(row["job_id"])
        yield row


def _prefetched(fetch: Any, depth: int = 2) -> Iterator[list[Any]]:
    """Batches from ``fetch()`` (until an empty one), read by a thread one or two batches
    ahead: the driver waits on the network without the GIL while this thread encodes."""
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                batch = fetch()
                out.put(batch)
                if not batch:
                    return
        except BaseException as exc:
            out.put(exc)

    thread = threading.Thread(target=run, name="export-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            batch = out.get()
            if isinstance(batch, BaseException):
                raise batch
            if not batch:
                return
            yield batch
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting to put, then let it finish
            with contextlib.suppress(queue.Empty):
                out.get(timeout=0.1)
        thread.join()


def _row_tuples(
    session: Session, snapshot_id: uuid.UUID, names: tuple[str, ...]
) -> Iterator[tuple[Any, ...]]:
    if is_postgres(session):
        conn: Any = session.connection().connection.driver_connection
        with conn.cursor(name=f"export_{snapshot_id.hex}") as cur:
            cur.itersize = 5000
            cur.execute(
                f"SELECT {', '.join(names)} FROM snapshot_rows WHERE snapshot_id = %s ORDER BY pos",
                (snapshot_id,),
            )
            for batch in _prefetched(lambda: cur.fetchmany(2000)):
                yield from batch
        return
    columns = [getattr(SnapshotRow, c) for c in names]
    q = (
        select(*columns)
        .where(SnapshotRow.snapshot_id == snapshot_id)
        .order_by(SnapshotRow.pos)
        .execution_options(yield_per=5000)
    )
    yield from session.execute(q).tuples()
