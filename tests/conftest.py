"""Test fixtures: a real Postgres database per run, a real API server process, real HTTP.

Tiers (markers declared in pyproject.toml):
- ``pytest``                      everything (what CI and the README run)
- ``pytest -m "not slow"``        skip full-dataset and end-to-end runs
- ``pytest -m integration``       only tests that start real processes (API server, Celery worker)
- ``pytest -m gpu``               GPU-only tests (skipped without CUDA)

Each run creates its own database ``cgd_test_<random>`` and drops it at the end, so runs never
collide. Each test makes its own team, which isolates its data from every other test's.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
BUNDLED_DATA = ROOT / "cgd" / "data"
PG_ADMIN_URL = os.environ.get("CGD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CGD_TEST_REDIS", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this test run; dropped afterwards."""
    name = f"cgd_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    from cgd.db.migrate import upgrade

    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url: str):  # type: ignore[no-untyped-def]
    from cgd.db.engine import make_engine

    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def sessionmaker_(engine):  # type: ignore[no-untyped-def]
    from cgd.db.engine import make_sessionmaker

    return make_sessionmaker(engine)


@dataclass
class ApiServer:
    url: str
    pid: int
    env: dict[str, str]


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s")


# Small limits so the limit paths are cheap to exercise.
TEST_LIMITS = {
    "CGD_MAX_UPLOAD_BYTES": str(60 * 1024**2),
    "CGD_MAX_LINE_BYTES": str(1024**2),
    "CGD_MAX_DECOMPRESSED_BYTES": str(64 * 1024**2),
    "CGD_MAX_DATASET_ITEMS": "200000",
}


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """A Redis database of its own for this run (indexes 1–15), flushed before use.

    Test runs side by side on one host (several checkouts, several developers) would share a
    database if each drew an index at random; each run claims one with a lease key in
    database 0 instead, and gives it back at the end."""
    import redis

    admin = redis.Redis.from_url(f"{REDIS_URL}/0")
    token = secrets.token_hex(8)
    indexes = list(range(1, 16))
    secrets.SystemRandom().shuffle(indexes)
    claimed = next(
        (i for i in indexes if admin.set(f"cgd-test-broker:{i}", token, nx=True, ex=3 * 3600)),
        None,
    )
    if claimed is None:
        pytest.fail("all 15 test Redis databases are claimed by other test runs")
    url = f"{REDIS_URL}/{claimed}"
    redis.Redis.from_url(url).flushdb()
    yield url
    if admin.get(f"cgd-test-broker:{claimed}") == token.encode():
        admin.delete(f"cgd-test-broker:{claimed}")


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# The scraper's credential for the API's /metrics (a team key is refused there).
METRICS_TOKEN = "test-metrics-token"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}

# Short leases and fast retries so failure scenarios play out in seconds.
WORKER_ENV = {
    "CGD_METRICS_TOKEN": METRICS_TOKEN,
    "CGD_LEASE_S": "4",
    "CGD_HEARTBEAT_S": "1",
    "CGD_SWEEP_INTERVAL_S": "1",
    "CGD_REQUEUE_AFTER_S": "5",
    "CGD_LLM_TIMEOUT_S": "3",
    "CGD_LLM_MAX_ATTEMPTS": "4",
    "CGD_LLM_BACKOFF_BASE_S": "0.05",
    "CGD_LLM_BACKOFF_MAX_S": "0.5",
    "CGD_MAX_INFLIGHT_PER_ENDPOINT": "64",
    "CGD_SNAPSHOT_INLINE_MAX": "150",  # larger snapshots go through the curation queue
    "CGD_TRAINER_HEARTBEAT_S": "1",
    "CGD_TRAINER_LOST_AFTER_S": "6",
    # Jobs call the loopback simulators (any port); nothing else is allowed.
    "CGD_ENDPOINT_ALLOWLIST": "http://127.0.0.1:*/",
    # Endpoint API keys are sealed with this (a fresh key per test run).
    "CGD_SECRET_KEY": os.environ.get("CGD_TEST_SECRET_KEY") or _fernet_key(),
}


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``cgd api`` on ``port`` with ``env``, its output in ``log`` (not waited for)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def admin(api_server: ApiServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``cgd admin ...`` on the API server's database; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "admin", *args],
        env=api_server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def api_server(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """A real ``cgd api`` process on a free port, on this run's database."""
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    models = tmp_path_factory.mktemp("models")
    env = {
        **os.environ,
        "CGD_DATABASE_URL": database_url,
        "CGD_BROKER_URL": broker_url,
        "CGD_HOME": str(tmp_path_factory.mktemp("home")),
        # Runs name these; a test that trains writes a model at the registered location
        # (registered_model).
        "CGD_BASE_MODELS": ",".join(
            [*(f"{n}={models / n}" for n in BASE_MODEL_NAMES), f"smollm2={_real_model_dir()}"]
        ),
        **TEST_LIMITS,
        **WORKER_ENV,
    }
    proc = start_api(env, port, log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/healthz", proc)
        yield ApiServer(url=url, pid=proc.pid, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


BASE_MODEL_NAMES = ("tiny", "m", "x")
# Every name the test API registers: the above, and the real 135M model (tests/test_real_vllm.py).
REGISTERED_MODEL_NAMES = (*BASE_MODEL_NAMES, "smollm2")


def _real_model_dir() -> Path:
    """Where `make vllm` converts the real 135M model (tests/test_real_vllm.py trains it)."""
    from cgd.train.real_model import default_dir

    return default_dir()


def registered_model(api_server: ApiServer, name: str) -> Path:
    """Where ``CGD_BASE_MODELS`` of the test API puts the base model ``name``."""
    from cgd.runs.base_models import registry
    from cgd.settings import Settings

    return Path(registry(Settings(base_models=api_server.env["CGD_BASE_MODELS"]))[name])


def make_key(sessionmaker_, team: str | None = None) -> str:  # type: ignore[no-untyped-def]
    from cgd.auth import create_key
    from cgd.db.engine import session_scope

    with session_scope(sessionmaker_) as session:
        _, key = create_key(session, team or f"team-{secrets.token_hex(6)}")
    return key


def _team_client(api_server: ApiServer, sessionmaker_) -> httpx.Client:  # type: ignore[no-untyped-def]
    key = make_key(sessionmaker_)
    return httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )


@pytest.fixture
def client(api_server: ApiServer, sessionmaker_) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """An HTTP client for a brand-new team on the live API server."""
    with _team_client(api_server, sessionmaker_) as c:
        yield c


@pytest.fixture
def other_client(api_server: ApiServer, sessionmaker_) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """A second team, for isolation tests."""
    with _team_client(api_server, sessionmaker_) as c:
        yield c


def data_file(name: str) -> Path:
    """A dataset shipped with the repo: ``tests/data/<name>``, else ``cgd/data/<name>``."""
    for folder in (TEST_DATA, BUNDLED_DATA):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{name} is in neither {TEST_DATA} nor {BUNDLED_DATA}")


class WorkerProcess:
    """A real ``cgd worker`` (Celery, threads pool) on this run's database and broker."""

    def __init__(
        self, env: dict[str, str], log: Path, command: str = "worker", args: tuple[str, ...] = ()
    ) -> None:
        self.env = env
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", command, *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            if "ready." in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise RuntimeError("worker did not become ready")

    def kill(self) -> None:
        """SIGKILL the whole process group: no warm shutdown, no acks, no cleanup."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(api_server: ApiServer, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    """Starts workers on demand; every one is SIGKILLed at the end of the test."""
    workers: list[WorkerProcess] = []

    def start(
        command: str = "worker", args: tuple[str, ...] = (), **extra_env: str
    ) -> WorkerProcess:
        log = tmp_path / f"{command}{len(workers)}.log"
        w = WorkerProcess(
            {**api_server.env, "CGD_API_URL": api_server.url, **extra_env}, log, command, args
        )
        workers.append(w)
        return w

    yield start
    for w in workers:
        w.kill()


@pytest.fixture
def no_leftovers(api_server: ApiServer, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """For tests that read state shared by every team (the fair order, the sweeper's counts, the
    broker's queues): earlier tests may leave open jobs and queued runs in the session's
    database, so cancel those and empty the queues before the test starts."""
    import redis
    from sqlalchemy import update

    from cgd.db.models import Job, TrainingRun, utcnow
    from cgd.enums import TERMINAL_RUN_STATUSES

    now = utcnow()
    with sessionmaker_() as s, s.begin():
        s.execute(
            update(Job)
            .where(Job.cancelled_at.is_(None), Job.finished_at.is_(None))
            .values(cancelled_at=now)
        )
        s.execute(
            update(TrainingRun)
            .where(TrainingRun.status.not_in(list(TERMINAL_RUN_STATUSES)))
            .values(status="cancelled", finished_at=now)
        )
    redis.Redis.from_url(api_server.env["CGD_BROKER_URL"]).delete("generation", "train")


def data_rows(name: str) -> list[dict]:  # type: ignore[type-arg]
    """The rows of a dataset shipped with the repo (see :func:`data_file`)."""
    import json

    with data_file(name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
