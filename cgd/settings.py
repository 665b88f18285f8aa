"""Settings from the environment (prefix ``CGD_``); one cached instance per process."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path.home() / ".cgd"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CGD_", extra="ignore")

    home: Path = Field(DEFAULT_HOME, description="Where embedded state lives (SQLite, broker)")
    database_url: str | None = Field(
        None, description="postgresql+psycopg://… ; unset = embedded SQLite file under home"
    )
    broker_url: str | None = Field(None, description="redis://… ; unset = embedded broker")
    api_url: str = Field("http://127.0.0.1:8000", description="API base URL (clients)")
    api_key: str | None = Field(None, description="API key (clients); never logged")

    # Upload limits.
    max_upload_bytes: int = Field(2 * 1024**3, description="Largest accepted upload")
    max_line_bytes: int = Field(8 * 1024**2, description="Largest accepted JSONL/CSV line")
    max_json_depth: int = Field(64, description="Deepest accepted nesting in a JSON row")
    max_parquet_columns: int = Field(1024, description="Most columns a Parquet file may declare")
    max_parquet_row_group_bytes: int = Field(
        256 * 1024**2,
        description="Largest uncompressed row group a Parquet file may declare (a page is "
        "decompressed whole: this bounds the API's memory per upload)",
    )
    max_decompressed_bytes: int = Field(
        4 * 1024**3, description="Most bytes an upload may decode to (gzip, Parquet pages)"
    )
    max_dataset_items: int = Field(5_000_000, description="Most rows one dataset may hold")
    max_prompt_chars: int = Field(
        128_000,
        ge=1,
        description="Longest prompt (all messages of one LLM request, in characters) a job may "
        "send: rendering stops there, a job whose rows exceed it is refused at creation and an "
        "item that exceeds it later fails; nothing longer leaves the worker",
    )
    upload_tmp_dir: Path | None = Field(None, description="Spool directory for uploads")

    # Generation.
    max_inflight_per_endpoint: int = Field(
        1024, description="Ceiling of the adaptive in-flight bound per endpoint (all workers)"
    )
    adaptive_concurrency: bool = Field(
        True, description="Learn each endpoint's in-flight bound; false = always the ceiling"
    )
    llm_timeout_s: float = Field(600.0, description="Per-request timeout for LLM calls")
    llm_max_attempts: int = Field(5, description="Attempts per LLM call (transient errors)")
    llm_backoff_base_s: float = Field(0.5, description="First retry delay (jittered, doubling)")
    llm_backoff_max_s: float = Field(30.0, description="Longest retry delay")
    batch_poll_s: float = Field(30.0, description="How often a Batch API batch is polled")
    worker_concurrency: int = Field(4, description="Chunks one worker process runs at once")
    worker_metrics_port: int | None = Field(
        None,
        description="Port on which a worker (or trainer) process serves Prometheus metrics "
        "(cgd_llm_*); unset: not served. One port per process.",
    )
    worker_metrics_addr: str = Field(
        "127.0.0.1",
        description="Address the worker's metrics port listens on (they name endpoint URLs and "
        "models): loopback unless an operator opens it, e.g. 0.0.0.0 on a private network",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token the API's /metrics requires; unset: /metrics is refused",
    )
    base_models: str = Field(
        "",
        description="Base models runs may train: comma-separated name=location (a local "
        "directory on the trainer host or a hub id); a run names one, or run:<id> of its "
        "team's completed run",
    )
    chunk_time_limit_s: float = Field(3 * 3600.0, description="Hard limit for one chunk task")
    lease_s: float = Field(60.0, description="A chunk runner's lease; renewed while it works")
    heartbeat_s: float = Field(10.0, description="How often a runner renews its lease")
    sweep_interval_s: float = Field(15.0, description="How often the sweeper looks for chunks")
    requeue_after_s: float = Field(
        300.0, description="Re-enqueue a chunk whose message has not been picked up this long"
    )
    verify_processes: int = Field(1, description="math-verify worker processes per worker")
    verify_timeout_s: float = Field(5.0, description="Hard timeout for one verification")
    snapshot_inline_max: int = Field(
        20_000, description="Snapshots of up to this many triplets are built in the request"
    )
    trainer_dir_override: Path | None = Field(
        None,
        alias="CGD_TRAINER_DIR",
        description="Where the trainer keeps data, checkpoints, models (default CGD_HOME/trainer)",
    )
    snapshot_build_lost_after_s: float = Field(
        6 * 3600.0, description="A snapshot still building after this long is failed"
    )
    trainer_heartbeat_s: float = Field(30.0, description="How often a trainer says it is alive")
    trainer_lost_after_s: float = Field(
        900.0, description="A running run with no trainer event for this long is failed"
    )
    key_cache_ttl_s: float = Field(
        10.0,
        description="How long the API trusts a checked API key without asking the database "
        "(a revoked key stops working within this time)",
    )
    # Fair dispatch (docs/scheduling.md).
    team_max_running_chunks: int = Field(
        8, ge=1, description="Chunks of one team running at once, deployment-wide"
    )
    team_max_inflight_per_endpoint: int | None = Field(
        None,
        ge=1,
        description="In-flight calls of one team per endpoint, per worker process; unset = the "
        "endpoint's whole window (set it below CGD_MAX_INFLIGHT_PER_ENDPOINT to keep room for "
        "other teams)",
    )
    dispatch_tokens: int = Field(
        16, ge=1, description="Run tokens queued at most at once (about the worker slots)"
    )
    # Circuit breaker and preflight.
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failed calls to an endpoint that pause its jobs"
    )
    breaker_probe_interval_s: float = Field(
        30.0, description="How often the sweeper probes the endpoint of a paused job"
    )
    preflight_timeout_s: float = Field(5.0, description="Preflight check of each endpoint")
    # Hung servers and stalled chunks (docs/scheduling.md, "Hung servers").
    hang_suspect_s: float = Field(
        5.0,
        gt=0,
        description="Seconds a server with calls outstanding may go without answering any "
        "before it is checked for a hang (GET /models; progress on its /metrics)",
    )
    hang_probe_timeout_s: float = Field(
        3.0, gt=0, description="How long a suspect server has to answer GET {base_url}/models"
    )
    hang_probes: int = Field(
        2, ge=1, description="Unanswered GET /models in a row that declare a server hung"
    )
    hang_after_s: float = Field(
        20.0,
        gt=0,
        description="Seconds with calls outstanding, no answer and no token progress on the "
        "server's /metrics that declare it hung (servers whose /metrics we may read)",
    )
    stall_yield_s: float = Field(
        5.0,
        gt=0,
        description="A chunk whose calls have all waited this long without an answer gives its "
        "worker slot to other work (it keeps running)",
    )
    max_stalled_chunks: int = Field(
        16, ge=0, description="Chunks per worker process that may wait without a slot"
    )
    max_response_bytes: int = Field(
        64 * 1024**2, ge=1024, description="Largest answer read from a team's endpoint"
    )
    # Quotas per team (defaults; `cgd admin set-quota` overrides per team).
    quota_queued_jobs: int = Field(1000, description="Jobs not yet finished, per team")
    quota_stored_items: int = Field(
        100_000_000, description="Job items (prompts × samples) kept, per team"
    )
    quota_inflight_items: int = Field(20_000_000, description="Items of unfinished jobs, per team")
    quota_datasets: int = Field(1000, ge=0, description="Datasets kept, per team")
    quota_stored_bytes: int = Field(
        50 * 1024**3, ge=0, description="Bytes of uploaded datasets kept, per team"
    )
    quota_snapshots: int = Field(1000, ge=0, description="Snapshots kept, per team")
    quota_template_versions: int = Field(
        1000, ge=0, description="Prompt-template versions kept (all names together), per team"
    )
    quota_queued_runs: int = Field(
        32,
        ge=0,
        description="Training runs queued or running at once, per team (an experiment of up to "
        "20 runs fits)",
    )
    quota_retry_after_s: int = Field(60, description="Retry-After sent with a 429 over quota")
    # Retention (`cgd admin gc`); 0 keeps forever.
    job_retention_days: float = Field(0, description="Delete finished jobs older than this")
    dataset_retention_days: float = Field(
        0, description="Delete datasets older than this that no job uses any more"
    )
    endpoint_allowlist: str = Field(
        "",
        description="Comma-separated endpoint URL prefixes jobs may call (host:* = any port); "
        "empty (the default) allows none; * allows all (logged as a warning at start)",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key that encrypts endpoint API keys at rest "
        "(cgd admin gen-secret makes one); never logged",
    )
    max_json_bytes: int = Field(1024**2, description="Largest accepted JSON request body")

    @property
    def trainer_dir(self) -> Path:
        return self.trainer_dir_override or self.home / "trainer"

    @property
    def visibility_timeout_s(self) -> float:
        # Redis redelivers unacked messages after this: it must exceed the longest task.
        return self.chunk_time_limit_s + 600.0

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'cgd.sqlite3'}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
