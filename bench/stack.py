"""What every benchmark needs: a throwaway Postgres database (migrated, with an API key), a
Redis broker database and a real `cgd api` process on them, torn down afterwards; and the API
process's peak RSS."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis

PG_ADMIN = os.environ.get("CGD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("CGD_BENCH_REDIS", "redis://127.0.0.1:6379")


@dataclass
class Stack:
    db_url: str  # for psycopg
    env: dict[str, str]  # for `cgd …` processes on this database
    key: str
    base: str = ""  # the API's URL once started
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def api_pid(self) -> int:
        return self.procs[0].pid

    def cgd(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with proc
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args], env=self.env, stdout=out, stderr=out
        )
        self.procs.append(proc)
        return proc

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=timeout
        )


@contextmanager
def bench_stack(port: int, **env: str) -> Iterator[Stack]:
    """A migrated throwaway database, a Redis broker database of its own (flushed; unless
    ``CGD_BROKER_URL`` is given), an API key, and `cgd api` on ``port``. Redis, as deployed:
    the embedded folder broker polls, which would add its latency to every dispatch."""
    if "CGD_BROKER_URL" not in env:
        env["CGD_BROKER_URL"] = f"{REDIS}/{1 + secrets.randbelow(15)}"
        redis.Redis.from_url(env["CGD_BROKER_URL"]).flushdb()
    db = f"cgd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{db}"
    full_env = {k: v for k, v in os.environ.items() if k != "CGD_BROKER_URL"}
    full_env.update(
        {
            "CGD_DATABASE_URL": db_url.replace("postgresql://", "postgresql+psycopg://"),
            "CGD_HOME": tempfile.mkdtemp(),
            "CGD_LOG_LEVEL": "WARNING",
            "CGD_ENDPOINT_ALLOWLIST": "http://127.0.0.1:*/",  # the loopback simulators, any port
            **env,
        }
    )
    stack = Stack(db_url=db_url, env=full_env, key="")
    try:
        stack.cgd("migrate")
        stack.key = stack.cgd("admin", "create-key", "--team", "bench").strip().splitlines()[-1]
        stack.start("api", "--port", str(port))
        stack.base = f"http://127.0.0.1:{port}"
        wait_http(f"{stack.base}/healthz")
        yield stack
    finally:
        for p in stack.procs:
            p.terminate()
        for p in stack.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0).
    Path(f"/proc/{pid}/clear_refs").write_text("5")
