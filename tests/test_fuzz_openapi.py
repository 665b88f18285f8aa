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
    httpx.post(
        f"{api_server.url}/v1/datasets",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("d.jsonl", b'{"question": "What is 1+1?", "answer": "#### 2"}\n')},
    ).raise_for_status()
    out = subprocess.run(
        [
            binary,
            "run",
            f"{api_server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {key}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:]
    assert "generated" in out.stdout
