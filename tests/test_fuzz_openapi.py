"""Fuzz the live API from its own OpenAPI document (schemathesis): no input may cause a 5xx.

docs/reliability.md scenario 14. The caller's team has a dataset, so item/job endpoints see real ids
as well as random ones."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cgd.simulator import SimulatorProcess
from tests.conftest import make_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_no_server_errors_from_fuzzed_requests(  # type: ignore[no-untyped-def]
    api_server, sessionmaker_, start_worker, tmp_path: Path
) -> None:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("schemathesis is not installed (the dev extra installs it)")
    key = make_key(sessionmaker_)
    with SimulatorProcess(["--port", "0", "--latency", "0"]) as sim:
        worker = start_worker()  # only to finish the job a run trains on; gone before fuzzing
        ids = _existing_resources(api_server.url, key, sim.base_url)
        worker.stop()
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
    # Every operation of the document was tested (a new route is fuzzed without a change here).
    operations = _operations(api_server.url)
    assert f"Selected: {operations}/{operations}" in out.stdout, out.stdout[-4000:]
    assert f"Tested: {operations}" in out.stdout, out.stdout[-4000:]
    cases = re.search(r"(\d+) generated", out.stdout)
    assert cases is not None and int(cases.group(1)) >= 20 * operations, out.stdout[-4000:]
    assert "Stateful" in out.stdout, out.stdout[-4000:]  # the stateful phase did run
    print(f"{operations} operations, {cases.group(1)} test cases, 0 server errors")
    print(out.stdout[-3000:])  # the summary (operations, test cases) for docs/benchmarks.md


def _operations(url: str) -> int:
    doc = httpx.get(f"{url}/openapi.json", timeout=30).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sum(1 for item in doc["paths"].values() for m in item if m in methods)


def _existing_resources(url: str, key: str, sim: str) -> dict[str, str]:
    """A dataset, a (queued) job, a snapshot of it, a training run, an experiment and a
    template, for the caller's team: every path parameter of the API has a real value."""
    c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    dataset = c.post(
        "/v1/datasets",
        files={"file": ("d.jsonl", b'{"question": "What is 1+1?", "answer": "#### 2"}\n')},
    ).json()["id"]
    job = c.post(
        "/v1/jobs",
        json={"dataset_id": dataset, "student": {"base_url": sim, "model": "s"},
              "teacher": {"base_url": sim, "model": "t"}, "preflight": False},
    ).json()["id"]  # fmt: skip
    deadline = time.monotonic() + 120
    while c.get(f"/v1/jobs/{job}").json()["status"] != "completed":
        assert time.monotonic() < deadline, c.get(f"/v1/jobs/{job}").json()
        time.sleep(0.3)
    snap = c.post("/v1/snapshots", json={"job_ids": [job]}).json()["id"]
    # "m" is a base model the test API registers; no trainer runs these.
    run = c.post("/v1/training-runs", json={"snapshot_id": snap, "base_model": "m"})
    assert run.status_code == 202, run.text
    experiment = c.post(
        "/v1/experiments", json={"snapshot_id": snap, "base_model": "m", "modes": ["cgd"]}
    )
    assert experiment.status_code == 202, experiment.text
    template = c.post("/v1/templates", json={"name": "fuzzed"})
    assert template.status_code == 201, template.text
    return {
        "dataset_id": dataset,
        "job_id": job,
        "snapshot_id": snap,
        "run_id": run.json()["id"],
        "experiment_id": experiment.json()["id"],
        "name": "fuzzed",
    }
