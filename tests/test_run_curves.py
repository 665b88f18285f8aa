"""Training curves where people look: `cgd runs plot RUN -o loss.png` from a run's events, and
the training gauges on the API's /metrics while it runs. A test stands in for the trainer: it
posts step and eval events with the run's token, as the trainer does over HTTP."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cgd.runs.curves import series
from tests.conftest import METRICS_AUTH
from tests.test_training_runs import run_body
from tests.test_training_runs import snapshot_id as snapshot_id  # noqa: F401  (fixture)
from tests.test_training_runs import tiny_model as tiny_model  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

STEPS = [(s, 2.0 / s, 1e-3 * min(1.0, s / 3)) for s in range(1, 9)]  # (step, loss, lr)


def start_run(client: httpx.Client, sessionmaker_, snapshot: str, model: Any) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A queued run whose trainer token this test knows (the real one travels in the task
    message, to a trainer no test runs here)."""
    from cgd.db.models import TrainingRun
    from cgd.runs.ops import _hash

    run_id = client.post("/v1/training-runs", json=run_body(snapshot, model)).json()["id"]
    token = secrets.token_urlsafe(16)
    with sessionmaker_.begin() as s:
        s.get(TrainingRun, uuid.UUID(run_id)).token_hash = _hash(token)
    return run_id, token


def post(api: str, run_id: str, token: str, type_: str, data: dict[str, Any]) -> None:
    r = httpx.post(
        f"{api}/v1/training-runs/{run_id}/events",
        json={"type": type_, "data": data},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text


def feed(api: str, run_id: str, token: str, finish: bool = True) -> None:
    post(api, run_id, token, "status", {"status": "running"})
    for step, loss, lr in STEPS:
        data = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "total_steps": 8,
            "tokens_per_s": 100.0 * step,
        }
        post(api, run_id, token, "step", data)
        post(api, run_id, token, "log", {"heartbeat": True})  # what the trainer sends too
        if step % 4 == 0:
            post(api, run_id, token, "eval", {"step": step, "accuracy": {"math500": step / 10}})
    if finish:
        post(api, run_id, token, "status", {"status": "finished"})


def gauge(api: str, name: str, run_id: str) -> float | None:
    text = httpx.get(f"{api}/metrics", headers=METRICS_AUTH).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels.get("run") == run_id:
                return float(s.value)
    return None


def test_series_orders_steps_and_keeps_eval_sets_apart() -> None:
    events = [
        {"type": "step", "data": {"step": 2, "loss": 1.0, "lr": 0.1}},
        {"type": "step", "data": {"step": 1, "loss": 2.0, "lr": 0.05}},
        {"type": "eval", "data": {"step": 2, "accuracy": {"a": 0.5, "b": 0.25}}},
        {"type": "status", "data": {"status": "running"}},
        {"type": "step", "data": {"loss": 9.0}},  # no step: ignored
    ]
    assert series(events) == {
        "loss": [(1, 2.0), (2, 1.0)],
        "lr": [(1, 0.05), (2, 0.1)],
        "eval": {"a": [(2, 0.5)], "b": [(2, 0.25)]},
    }


@pytest.mark.slow
def test_runs_plot_and_training_gauges(  # type: ignore[no-untyped-def]
    client,
    api_server,
    sessionmaker_,
    snapshot_id,  # noqa: F811
    tiny_model,  # noqa: F811
    tmp_path,
) -> None:
    run_id, token = start_run(client, sessionmaker_, snapshot_id, tiny_model)
    feed(api_server.url, run_id, token, finish=False)
    assert gauge(api_server.url, "cgd_training_loss", run_id) == pytest.approx(2.0 / 8)
    assert gauge(api_server.url, "cgd_training_tokens_per_second", run_id) == 800.0
    post(api_server.url, run_id, token, "status", {"status": "finished"})
    assert gauge(api_server.url, "cgd_training_loss", run_id) is None  # a finished run's go

    env = {
        **os.environ,
        "CGD_API_URL": api_server.url,
        "CGD_API_KEY": client.headers["Authorization"].split()[1],
    }
    out = tmp_path / "loss.png"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "runs", "plot", run_id, "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "8 steps, last loss 0.2500 at step 8; eval math500 0.800" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
