"""SQLAlchemy 2 typed models.

Portable to SQLite (the embedded default): generic types with Postgres variants (JSONB), no
server-side functions that SQLite lacks. Tables are created only by Alembic migrations.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cgd.enums import ItemState

# Stable constraint names so migrations are reproducible on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
BigIntType = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are UTC and always come back timezone-aware (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When a chunk of this team's was last handed out: the fair dispatcher's round-robin order.
    last_dispatch_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TeamQuota(Base):
    """An operator's per-team overrides of the quota defaults (null = the setting's default)."""

    __tablename__ = "team_quotas"

    team_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    queued_jobs: Mapped[int | None] = mapped_column(Integer)
    stored_items: Mapped[int | None] = mapped_column(BigIntType)
    inflight_items: Mapped[int | None] = mapped_column(BigIntType)
    team_max_running_chunks: Mapped[int | None] = mapped_column(Integer)


class ApiKey(Base):
    """Only a hash of the secret is stored; ``key_id`` (public) finds the row in O(1)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("team_id", "idempotency_key"),
        Index("ix_datasets_team_created", "team_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(300))
    format: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str | None] = mapped_column(String(500))
    num_items: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigIntType, default=0)
    content_hash: Mapped[str] = mapped_column(String(64))
    # The mapping actually used (defaults resolved), so a reader knows where each column came from.
    fields: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DatasetItem(Base):
    """One prompt. ``idx`` is the 0-based row position; ``item_id`` the user-facing id."""

    __tablename__ = "dataset_items"
    __table_args__ = (UniqueConstraint("dataset_id", "item_id"),)

    # No foreign key on purpose: Postgres checks one with a trigger per row, which made COPY of a
    # 1M-row upload three times slower. Items are written only in the transaction that creates
    # their dataset and deleted with it (cgd.datasets.delete_dataset).
    dataset_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    item_id: Mapped[str] = mapped_column(String(500))
    line: Mapped[int] = mapped_column(Integer)  # where it came from in the upload (1-based)
    prompt: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    # A worked solution when the source has one besides a short answer (MATH's `solution`).
    solution: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


# --- prompt templates --------------------------------------------------------------------------


class PromptTemplate(Base):
    """One version of a team's template. Rows are never edited: an update adds a version, and
    a job points at the version it was created with."""

    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("team_id", "name", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    sources: Mapped[dict[str, str]] = mapped_column(JSONType)  # part name -> Jinja source
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- generation jobs ---------------------------------------------------------------------------

# Item state machine: pending → probed → critiqued → refined → verified | failed(reason).
ITEM_STATES: tuple[str, ...] = tuple(ItemState)
TERMINAL_STATES: tuple[str, ...] = (ItemState.verified, ItemState.failed)
STAGES = ("probe", "critique", "refine", "solve")  # solve: the optional teacher_solution call


class Job(Base):
    """A dataset turned into CGD triplets. Its status is derived from item states (see
    ``cgd.jobs.ops.job_status``); only cancellation and job-level errors are stored."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("team_id", "idempotency_key"),
        Index("ix_jobs_team_created", "team_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)  # validated JobSpec, secrets included
    template_version: Mapped[str] = mapped_column(String(50))
    # The team template version the job pinned at creation (null: a built-in template).
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("prompt_templates.id"))
    total_items: Mapped[int] = mapped_column(Integer)  # dataset items × samples
    num_chunks: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)  # a job-level failure, if any
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=1)  # PRIORITY_RANK of spec.priority
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Circuit breaker: set while the job waits for a failing endpoint (see generation.breaker).
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    pause_endpoint: Mapped[str | None] = mapped_column(String(500))
    pause_error: Mapped[str | None] = mapped_column(Text)
    pause_probed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobChunk(Base):
    """A slice of a job's items, the unit of work of one task. The lease tells whether a live
    runner holds it; the fair dispatcher (generation.dispatch) hands out chunks nobody holds.
    Item rows are written when the chunk first runs, not when the job is created."""

    __tablename__ = "job_chunks"
    __table_args__ = (Index("ix_job_chunks_status", "status"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    start_idx: Mapped[int] = mapped_column(Integer)  # dataset idx range [start_idx, end_idx)
    end_idx: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|done
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobItem(Base):
    """One (dataset item, sample) of a job and where it stands."""

    __tablename__ = "job_items"
    __table_args__ = (Index("ix_job_items_job_state", "job_id", "state"),)

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sample: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    verdict: Mapped[str | None] = mapped_column(String(10))  # critique's: right|wrong|None
    initial_answer: Mapped[str | None] = mapped_column(Text)  # extracted final answers
    refined_answer: Mapped[str | None] = mapped_column(Text)
    initial_correct: Mapped[bool | None] = mapped_column()
    refined_correct: Mapped[bool | None] = mapped_column()
    verdict_agrees: Mapped[bool | None] = mapped_column()
    truncated: Mapped[bool] = mapped_column(default=False)  # any stage hit finish_reason=length
    error_kind: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # failed runs of this item
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class JobItemCount(Base):
    """Item counts per (job, bucket of 256 idx, state, error kind, truncated), maintained by a
    Postgres trigger on ``job_items`` in the same transaction as every item write, so a job's
    status sums a few rows instead of scanning millions. Buckets keep concurrent chunks of one
    job from all queueing on one counter row."""

    __tablename__ = "job_item_counts"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(20), primary_key=True)
    error_kind: Mapped[str] = mapped_column(String(40), primary_key=True)  # "" = none
    truncated: Mapped[bool] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(BigIntType, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigIntType, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigIntType, default=0)


class JobUsage(Base):
    """Tokens a job's calls made the servers process, per stage and outcome: ``kept`` (the
    answer used), ``retried`` (answered attempts retried, e.g. truncated then re-asked with a
    larger budget) and ``failed`` (answered attempts of calls that failed). Added to by the
    worker in the transaction of the item writes they belong to."""

    __tablename__ = "job_usage"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    prompt_tokens: Mapped[int] = mapped_column(BigIntType, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigIntType, default=0)


class JobRetry(Base):
    """Attempts of a job's calls that were retried, per stage and reason (the error kind, or
    ``truncated``)."""

    __tablename__ = "job_retries"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True)
    n: Mapped[int] = mapped_column(BigIntType, default=0)


class Generation(Base):
    """One completed LLM call. The primary key (job, item, sample, stage) makes the write
    idempotent: a re-delivered task can never store (or bill) a completed call twice."""

    __tablename__ = "generations"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sample: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(10), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(20))
    model: Mapped[str | None] = mapped_column(String(300))
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)  # sampling params, no messages
    template_version: Mapped[str] = mapped_column(String(50))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_s: Mapped[float] = mapped_column(default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A reasoning model's reasoning_content, kept apart from `text` (the answer, which is what
    # is verified and trained on): never part of a training target.
    reasoning: Mapped[str | None] = mapped_column(Text)


class GenerationBatch(Base):
    """One Batch API submission: a chunk's calls of one stage. Persisted as soon as the server
    accepts it, so a runner that dies while it waits resumes polling instead of resubmitting."""

    __tablename__ = "generation_batches"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    chunk_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(10), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(200))
    input_file_id: Mapped[str] = mapped_column(String(200))
    output_file_id: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(30))  # the server's, then "stored" once written
    requests: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- snapshots ---------------------------------------------------------------------------------


class Snapshot(Base):
    """An immutable, curated selection of triplets. Rows are copied in, never edited."""

    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_team_created", "team_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="building")  # building|ready|failed
    job_ids: Mapped[list[str]] = mapped_column(JSONType)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the curation options
    num_items: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    dropped: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When the build was (last) queued and when a curation worker picked it up: the sweeper
    # re-enqueues a build whose message never arrived and fails one whose worker went away.
    build_enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    build_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SnapshotRow(Base):
    """One selected triplet, copied with what an export needs (the native layout's fields)."""

    __tablename__ = "snapshot_rows"

    # No foreign key: rows are bulk-copied in the transaction that finishes their snapshot and
    # deleted with it (a per-row FK trigger would slow large snapshots down).
    snapshot_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    pos: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    triplet_id: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str] = mapped_column(String(40))
    item_id: Mapped[str] = mapped_column(String(600))
    sample: Mapped[int] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(10))
    prompt: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(Text)
    solution: Mapped[str | None] = mapped_column(Text)
    initial_response: Mapped[str | None] = mapped_column(Text)
    critique: Mapped[str | None] = mapped_column(Text)
    verdict: Mapped[str | None] = mapped_column(String(10))
    refined_response: Mapped[str | None] = mapped_column(Text)
    teacher_solution: Mapped[str | None] = mapped_column(Text)
    initial_correct: Mapped[bool | None] = mapped_column()
    refined_correct: Mapped[bool | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    truncated: Mapped[bool] = mapped_column(default=False)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the item's own columns


# --- training runs -------------------------------------------------------------------------------


class TrainingRun(Base):
    """A fine-tune of a student on a snapshot, driven by a trainer that reports over the API."""

    __tablename__ = "training_runs"
    __table_args__ = (Index("ix_training_runs_team_created", "team_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    snapshot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("snapshots.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    token_hash: Mapped[str] = mapped_column(String(64))  # the trainer's per-run token
    # When the run's message was (last) sent: the sweeper re-sends one that was lost.
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress: Mapped[float] = mapped_column(default=0.0)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # latest step
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # the trainer's, before step 1
    eval: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TrainingRunEvent(Base):
    __tablename__ = "training_run_events"
    __table_args__ = (Index("ix_training_run_events_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntType, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("training_runs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Experiment(Base):
    """Several training runs on one snapshot, one per (mode, seed), compared in one report."""

    __tablename__ = "experiments"
    __table_args__ = (Index("ix_experiments_team_created", "team_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    snapshot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("snapshots.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ExperimentRun(Base):
    """Which training run is which (mode, seed) of an experiment."""

    __tablename__ = "experiment_runs"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(20))
    seed: Mapped[int] = mapped_column(Integer)
