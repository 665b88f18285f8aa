"""Prometheus metrics: a real worker serves cgd_llm_* on CGD_WORKER_METRICS_PORT and they match
what the job stored; the API serves cgd_job_items and cgd_queue_depth; training gauges follow a
run's step events and go away when it ends."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from cgd import metrics
from tests.conftest import METRICS_AUTH, free_port
from tests.test_jobs import create_job, job_body, upload_slice, wait_job
from tests.test_jobs import gsm8k_slice as gsm8k_slice  # noqa: F401  (fixture)
from tests.test_jobs import simulator as simulator  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)] of one scrape."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    text = httpx.get(url, headers=METRICS_AUTH, timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(
        v
        for lab, v in samples.get(name, [])
        if all(lab.get(k) == want for k, want in labels.items())
    )


def test_worker_serves_llm_metrics_matching_the_job(  # type: ignore[no-untyped-def]
    client,
    start_worker,
    simulator,  # noqa: F811
    gsm8k_slice,  # noqa: F811
) -> None:
    sim = simulator("--slots", "16", "--latency", "0.01", "--rate-truncate", "0.3",
                    "--fault-stage", "refine", "--seed", "3")  # fmt: skip
    port = free_port()
    start_worker(CGD_WORKER_METRICS_PORT=str(port))
    ds = upload_slice(client, gsm8k_slice, 20)
    body = job_body(ds, sim)
    # Credentials must never reach a label (a URL with user info is refused at submission:
    # tests/test_security.py; an API key travels beside the URL).
    body["teacher"]["api_key"] = "s3cret"
    job_id = create_job(client, body)
    status = wait_job(client, job_id)
    assert status["counts"]["failed"] > 0 and status["errors"].get("truncated")
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "s3cret" not in text and "user:" not in text
    m = scrape(f"http://127.0.0.1:{port}/metrics")
    req = "cgd_llm_requests_total"
    q = status["quality"]
    assert total(m, req, stage="probe", outcome="ok") == 20
    assert total(m, req, stage="critique", outcome="ok") == 20
    failed = status["counts"]["failed"]
    assert total(m, req, stage="refine", outcome="ok") == 20 - failed
    assert total(m, req, stage="refine", outcome="truncated") == failed
    # Every call is timed once; kept tokens match the stored calls per stage; every outcome
    # (kept, retried, failed) matches the job's own usage, and they add up to its totals.
    by_stage = status["tokens"]["by_stage"]
    for stage in ("probe", "critique", "refine"):
        assert total(m, "cgd_llm_request_duration_seconds_count", stage=stage) == total(
            m, req, stage=stage
        )
        for kind in ("prompt", "completion"):
            kept = total(m, "cgd_llm_tokens_total", stage=stage, kind=kind, outcome="kept")
            assert kept == q["tokens_by_stage"][stage][kind], (stage, kind)
            for outcome in ("kept", "retried", "failed"):
                seen = total(m, "cgd_llm_tokens_total", stage=stage, kind=kind, outcome=outcome)
                assert seen == by_stage[stage].get(outcome, {}).get(kind, 0), (stage, outcome)
    for kind in ("prompt", "completion"):
        assert total(m, "cgd_llm_tokens_total", kind=kind) == status["tokens"][kind]
    # The truncated refine answers failed (tokens counted) after being retried once each.
    assert total(m, "cgd_llm_tokens_total", stage="refine", outcome="failed") > 0
    assert status["retries"]["by_reason"]["truncated"] >= failed > 0
    assert (
        total(m, "cgd_llm_retries_total", stage="refine", reason="truncated")
        == (status["retries"]["by_reason"]["truncated"])
    )
    # The endpoint label is the URL alone; the model is its own label, on every LLM series.
    for name in (req, "cgd_llm_tokens_total", "cgd_llm_retries_total", "cgd_llm_inflight"):
        labels = [lab for lab, _ in m[name]]
        assert {lab["endpoint"] for lab in labels} == {sim.base_url}, name
        assert {lab["model"] for lab in labels} <= {"student", "teacher"}, name
    assert {lab["model"] for lab, _ in m[req]} == {"student", "teacher"}
    assert all(v == 0 for _, v in m["cgd_llm_inflight"])  # nothing left in flight


def test_api_serves_job_items_and_queue_depth(  # type: ignore[no-untyped-def]
    client,
    api_server,
    simulator,  # noqa: F811
    gsm8k_slice,  # noqa: F811
) -> None:
    """No worker runs: the new job's items wait as pending and its chunks wait in Redis."""
    sim = simulator("--latency", "0.01")
    ds = upload_slice(client, gsm8k_slice, 30)
    create_job(client, job_body(ds, sim, chunk_size=10))
    deadline = time.monotonic() + 15  # the API caches these counts for up to 10 s
    while True:
        m = scrape(f"{api_server.url}/metrics")
        pending = total(m, "cgd_job_items", state="pending")
        depth = total(m, "cgd_queue_depth", queue="generation")
        if pending >= 30 and depth >= 3:
            break
        assert time.monotonic() < deadline, (pending, depth)
        time.sleep(1)
    assert {lab["queue"] for lab, _ in m["cgd_queue_depth"]} == {"generation", "curation", "train"}
    assert "cgd_http_requests_total" in m


def test_training_gauges_follow_step_events() -> None:
    metrics.training_step("run-1", {"step": 3, "loss": 1.25, "tokens_per_s": 900.0, "x": "y"})
    assert REGISTRY.get_sample_value("cgd_training_loss", {"run": "run-1"}) == 1.25
    assert REGISTRY.get_sample_value("cgd_training_tokens_per_second", {"run": "run-1"}) == 900.0
    metrics.training_finished("run-1")
    assert REGISTRY.get_sample_value("cgd_training_loss", {"run": "run-1"}) is None
    metrics.training_finished("run-1")  # twice is fine


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    """docker/grafana-dashboard.json parses and every cgd_* series it queries is one we export."""
    import json
    import re
    from pathlib import Path

    from prometheus_client.metrics import MetricWrapperBase

    from services.api import metrics as api_metrics

    root = Path(__file__).resolve().parents[1]
    dash = json.loads((root / "docker" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", m)
        for e in exprs
        for m in re.findall(r"cgd_\w+", e)
    }
    wrappers = [*vars(metrics).values(), *vars(api_metrics).values()]
    exported = {f.name for m in wrappers if isinstance(m, MetricWrapperBase) for f in m.describe()}
    exported |= {"cgd_job_items", "cgd_queue_depth"}  # StateCollector, read at scrape time
    assert {"cgd_llm_requests", "cgd_llm_request_duration_seconds"} <= exported
    assert used <= exported, used - exported
    assert api_metrics.STATE_CACHE_S <= 15
