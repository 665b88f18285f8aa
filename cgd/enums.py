"""Every enumeration the project exposes, defined once.

Routes, request/response schemas, the CLI, the client and the engines all use these; they are
``StrEnum`` so a member equals its string value (stored rows and JSON stay plain strings).
"""

from __future__ import annotations

from enum import StrEnum


class ExportMode(StrEnum):
    """What a training sample's input and target are (see docs/method.md)."""

    cgd = "cgd"
    sft = "sft"
    distill = "distill"
    cft = "cft"
    no_critique = "no-critique"


class ExportLayout(StrEnum):
    """How an exported row is shaped for a trainer."""

    native = "native"
    messages = "messages"
    prompt_completion = "prompt-completion"
    alpaca = "alpaca"
    sharegpt = "sharegpt"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"


class Split(StrEnum):
    """Which rows an export holds. ``val`` (the name before the Hub's ``validation``) is accepted
    as an alias of ``validation``."""

    train = "train"
    validation = "validation"
    all = "all"

    @classmethod
    def _missing_(cls, value: object) -> Split | None:
        return cls.validation if value == "val" else None


class ParquetCompression(StrEnum):
    snappy = "snappy"
    lz4 = "lz4"
    zstd = "zstd"
    none = "none"


class CardFormat(StrEnum):
    json = "json"
    markdown = "markdown"


class Verifier(StrEnum):
    """How answers are checked against the reference."""

    math = "math"
    choice = "choice"
    exact = "exact"
    none = "none"


class Truncation(StrEnum):
    """What happens to an answer cut at ``max_tokens`` (finish_reason=length)."""

    fail = "fail"
    retry_larger = "retry_larger"


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class Priority(StrEnum):
    """A job's priority among its own team's jobs (teams are served round-robin regardless)."""

    low = "low"
    normal = "normal"
    high = "high"


PRIORITY_RANK = {Priority.low: 0, Priority.normal: 1, Priority.high: 2}


class ItemState(StrEnum):
    """One item's progress through the pipeline; ``verified`` and ``failed`` are terminal."""

    pending = "pending"
    probed = "probed"
    critiqued = "critiqued"
    refined = "refined"
    verified = "verified"
    failed = "failed"


class VerdictFilter(StrEnum):
    """Triplet filter on the critique's verdict (``none``: no parsable verdict)."""

    right = "right"
    wrong = "wrong"
    none = "none"


class SnapshotStatus(StrEnum):
    building = "building"
    ready = "ready"
    failed = "failed"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class TrainMethod(StrEnum):
    full = "full"
    lora = "lora"


class EventType(StrEnum):
    """Training-run events the trainer posts."""

    status = "status"
    step = "step"
    eval = "eval"
    artifact = "artifact"
    data = "data"
    log = "log"


TERMINAL_JOB_STATUSES = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled})
TERMINAL_RUN_STATUSES = frozenset({RunStatus.completed, RunStatus.failed, RunStatus.cancelled})
