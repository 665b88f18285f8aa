"""The README's main-job command: the whole loop on SQLite + the filesystem broker, no services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quickstart_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "quickstart",
            "--dir",
            str(tmp_path / "qs"),
            "--items",
            "16",
            "--train-steps",
            "3",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    root = tmp_path / "qs"
    assert (root / "home" / "cgd.sqlite3").exists()  # embedded database, no Postgres
    assert not os.environ.get("CGD_DATABASE_URL") or "CGD_DATABASE_URL" not in env
    rows = [json.loads(x) for x in (root / "exports" / "quickstart-messages.jsonl").open()]
    assert rows and all(r["messages"][1]["role"] == "assistant" for r in rows)
    native = (root / "exports" / "quickstart-native.jsonl").read_text().splitlines()
    assert len(native) == len(rows)
    assert "quickstart" in (root / "exports" / "quickstart-card.md").read_text()
    finals = list((root / "home" / "trainer").glob("*/out/final/config.json"))
    assert len(finals) == 1  # the trained tiny student, loadable by transformers
    assert "DRY RUN" in out.stdout and "trained model" in out.stdout


def test_quickstart_experiment_trains_every_mode_and_reports(tmp_path: Path) -> None:
    """`cgd quickstart --experiment`: the five modes on one snapshot, the same rows and steps,
    and the report written and printed (what `make experiment-real` runs on real parts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    root = tmp_path / "qs"
    args = ["quickstart", "--experiment", "--dir", root, "--items", "16", "--train-steps", "2"]
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((root / "exports" / "experiment-report.json").read_text())
    rows = report["sets"]["math500"]
    assert {r["mode"] for r in rows} == {"cgd", "no-critique", "distill", "sft", "cft"}
    assert report["fairness"]["same_rows"] and report["fairness"]["same_steps"]
    assert report["fairness"]["total_steps"] == [2]
    md = (root / "exports" / "experiment-report.md").read_text()
    assert md in out.stdout  # printed whole (no wrapping of the table)
    assert "A SMALL experiment" in out.stdout
