"""The README's server set-up, run as written against a PostgreSQL database that does not exist.

The block under "## Set-up on a server" is executed line for line by bash, with three
substitutions only: the database name (a fresh one, dropped afterwards), the API port (a free
one) and the Redis database (this run's own). Its first two lines (make a virtualenv, install the
project) are checked rather than run: the test already runs inside that installed environment,
whose ``bin`` comes first on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL, ROOT, free_port

pytestmark = pytest.mark.integration


def readme_setup_block() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set-up on a server", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's set-up section has no bash block"
    return block.group(1).strip().splitlines()


def _database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def test_readme_setup_walks_on_a_database_that_does_not_exist(
    broker_url: str, tmp_path: Path
) -> None:
    lines = readme_setup_block()
    venv, install = lines[0], lines[1]
    assert venv.startswith("python3 -m venv .venv")
    extras = re.search(r"pip install -e '\.\[([a-z,]+)\]'", install)
    assert extras, install
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(extras.group(1).split(",")) <= set(declared)

    name = f"cgd_readme_{secrets.token_hex(4)}"
    assert not _database_exists(name)
    port = free_port()
    script = "\n".join(lines[2:])
    for written in ("/cgd\n", ":8000/", "--port 8000 ", "redis://127.0.0.1:6379/0"):
        assert written in script, written
    script = (
        script.replace("/cgd\n", f"/{name}\n")
        .replace(":8000/", f":{port}/")
        .replace("--port 8000 ", f"--port {port} ")
        .replace("redis://127.0.0.1:6379/0", broker_url)
    )
    # The README leaves the API and the worker running; the script stops them when it ends.
    # `cgd datasets ls` reads CGD_API_URL, whose default names port 8000: point it at ours.
    wrapped = f"set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{script}\n"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CGD_") or k.startswith("CGD_TEST")
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["CGD_HOME"] = str(tmp_path / "home")
    env["CGD_API_URL"] = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        ["bash", "-c", wrapped],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the README's set-up did not finish in 180 s:\n{out}\n{err[-3000:]}")
    finally:
        # The script's trap stops the API and the worker with SIGTERM; one still shutting down
        # would go on taking run tokens from the session's broker queue for later tests (with
        # this database dropped, every token it took would die): none outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                existed = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.Error:
            existed = None
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err[-3000:]}"
    assert existed, "cgd migrate did not create the database"
    assert f"created database postgresql+psycopg://postgres@127.0.0.1:5432/{name}" in out
    assert '"status":"ok"' in out.replace(" ", "")  # /readyz: database and broker reachable
    assert "ID" in out and "NAME" in out  # `cgd datasets ls` answered with its (empty) table


def _migrate(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    env.update(CGD_DATABASE_URL=url, CGD_HOME=str(tmp_path / "home"))
    return subprocess.run(
        [str(Path(sys.executable).with_name("cgd")), "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_says_in_one_line_what_to_run_when_it_cannot_create(tmp_path: Path) -> None:
    role = f"cgd_nocreate_{secrets.token_hex(4)}"
    name = f"cgd_readme_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOCREATEDB')
    try:
        out = _migrate(f"postgresql+psycopg://{role}@127.0.0.1:5432/{name}", tmp_path)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # no traceback
    assert f"createdb -h 127.0.0.1 -U <admin user> {name}" in lines[0]
    assert not _database_exists(name)


def test_migrate_on_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    out = _migrate(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/cgd", tmp_path)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the PostgreSQL server" in lines[0], out.stderr
