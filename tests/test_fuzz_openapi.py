"""Fuzz the live API from its own OpenAPI document (schemathesis): no input may cause a 5xx.

docs/reliability.md scenario 14. The caller's team has a dataset, so item/job endpoints see real ids
as well as random ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_no_server_errors_from_fuzzed_requests(api_server, sessionmaker_, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("schemathesis is not installed (the dev extra installs it)")
    key = make_key(sessionmaker_)
    ids = _existing_resources(api_server.url, key)
    # Real ids for every path parameter, so each operation also reaches its logic (not only 404).
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n" + "".join(f'"path.{name}" = "{value}"\n' for name, value in ids.items())
    )
    out = subprocess.run(
        [
            binary,
            "--config-file",
            str(config),
            "run",
            f"{api_server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error",
            # Every phase, stateful included: links between operations are inferred from
            # Location headers and from ids in responses (schemathesis 4), so jobs, snapshots
            # and items are also called with ids that exist.
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--report",
            "ndjson",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert "generated" in out.stdout
    assert "Stateful" in out.stdout, out.stdout[-4000:]  # the stateful phase did run
    print(out.stdout[-3000:])  # the summary (operations, test cases) for docs/benchmarks.md


def _existing_resources(url: str, key: str) -> dict[str, str]:
    """A dataset, a (queued) job, a snapshot of it and a training run, for the caller's team."""
    c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    dataset = c.post(
        "/v1/datasets",
        files={"file": ("d.jsonl", b'{"question": "What is 1+1?", "answer": "#### 2"}\n')},
    ).json()["id"]
    sim = "http://127.0.0.1:9/v1"  # allowed by the test allow-list; no worker runs the job
    job = c.post(
        "/v1/jobs",
        json={"dataset_id": dataset, "student": {"base_url": sim, "model": "s"},
              "teacher": {"base_url": sim, "model": "t"}, "preflight": False},
    ).json()["id"]  # fmt: skip
    snap = c.post("/v1/snapshots", json={"job_ids": [job], "allow_partial": True}).json()["id"]
    return {"dataset_id": dataset, "job_id": job, "snapshot_id": snap}
