"""Experiments over the API with a real worker and trainer (tiny model): one run per (mode,
seed), the same rows and steps in every run, and a report whose numbers are those of the runs'
own eval files."""

from __future__ import annotations

import json
import os
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from cgd.experiments.report import NO_DIFFERENCE
from cgd.train.passk import mean_pass_at_k
from tests import test_training_runs
from tests.test_client_cli import cgd, last_line
from tests.test_training_runs import events, run_body

# The training-run tests' fixtures: a ready 8-row snapshot and a tiny local model.
snapshot_id = test_training_runs.snapshot_id
tiny_model = test_training_runs.tiny_model

pytestmark = pytest.mark.integration


def experiment_body(snapshot: str, model: Path, **extra: Any) -> dict[str, Any]:
    run = run_body(snapshot, model, max_steps=None, epochs=1)
    body = {
        "snapshot_id": snapshot,
        "base_model": run["base_model"],
        "hyperparams": run["hyperparams"],
        "eval": {**run["eval"], "sets": ["math500:k=2:n=3"], "max_samples": 4},
    }
    return {**body, **extra}


def _records(path: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_bad_experiments_get_a_4xx_and_create_nothing(client, other_client) -> None:  # type: ignore[no-untyped-def]
    snap = str(uuid.uuid4())
    cases = [
        ({"modes": ["cgd", "cgd"]}, "each mode at most once"),
        ({"seeds": []}, "seeds"),
        ({"seeds": list(range(5))}, "at most 20 training runs"),
        ({"modes": ["bogus"]}, "modes"),
        ({"hyperparams": {"learning_rate": -1}}, "learning_rate"),
    ]
    for extra, needle in cases:
        body = {"snapshot_id": snap, "base_model": "m", **extra}
        r = client.post("/v1/experiments", json=body)
        assert r.status_code == 422 and needle in r.text, (extra, r.text)
    r = client.post("/v1/experiments", json={"snapshot_id": snap, "base_model": "m"})
    assert r.status_code == 404 and "snapshot" in r.text
    assert client.get(f"/v1/experiments/{uuid.uuid4()}").status_code == 404
    assert client.get("/v1/experiments").json()["data"] == []
    assert other_client.get("/v1/experiments").json()["data"] == []


@pytest.mark.slow
def test_experiment_runs_every_mode_on_the_same_rows_and_reports_them(  # type: ignore[no-untyped-def]
    client, other_client, api_server, start_worker, snapshot_id, tiny_model, tmp_path
) -> None:
    # The snapshot's job wrote no teacher solutions, so distill (in the default modes) cannot
    # run: the whole experiment is refused and no run of it is left behind.
    r = client.post("/v1/experiments", json=experiment_body(snapshot_id, tiny_model))
    assert r.status_code in (409, 422) and "distill" in r.text, r.text
    assert client.get("/v1/training-runs").json()["data"] == []

    start_worker("trainer")
    # Through the CLI: a spec file for the shared settings, flags for modes and seeds.
    spec = tmp_path / "experiment.json"
    body = experiment_body(snapshot_id, tiny_model)
    spec.write_text(json.dumps({k: body[k] for k in ("hyperparams", "eval")}))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CGD_")},
        "CGD_API_URL": api_server.url,
        "CGD_API_KEY": client.headers["Authorization"].split()[1],
    }
    p = cgd(
        env, "experiments", "create", "--spec", spec, "--snapshot", snapshot_id,
        "--base-model", tiny_model.name, "--mode", "cgd", "--mode", "sft",
        "--seed", "0", "--seed", "1",
    )  # fmt: skip
    exp_id = last_line(p)
    assert "4 training runs" in p.stdout
    exp = client.get(f"/v1/experiments/{exp_id}").json()
    assert sorted((x["mode"], x["seed"]) for x in exp["runs"]) == [
        ("cgd", 0),
        ("cgd", 1),
        ("sft", 0),
        ("sft", 1),
    ]
    assert other_client.get(f"/v1/experiments/{exp_id}").status_code == 404
    assert other_client.get(f"/v1/experiments/{exp_id}/report").status_code == 404
    p = cgd(env, "experiments", "watch", exp_id, "--interval", "0.5", timeout=600)
    assert p.returncode == 0, (p.stdout, p.stderr)  # 0: every run completed
    assert "| cgd |" in p.stdout and "95% CI" in p.stdout  # the report, printed at the end
    exp = client.get(f"/v1/experiments/{exp_id}").json()
    assert exp["status"] == "completed", exp
    assert exp_id in cgd(env, "experiments", "ls").stdout
    out = tmp_path / "report.json"
    assert cgd(env, "experiments", "report", exp_id, "-f", "json", "-o", out).returncode == 0
    assert json.loads(out.read_text())["experiment_id"] == exp_id

    data, greedy, sampled = {}, {}, {}
    for run in exp["runs"]:
        full = client.get(f"/v1/training-runs/{run['id']}").json()
        assert full["spec"]["common_modes"] == ["cgd", "sft"]
        assert full["spec"]["hyperparams"]["seed"] == run["seed"]
        evs = events(client, run["id"])
        (data[run["id"]],) = [e["data"] for e in evs if e["type"] == "data"]
        (files,) = [e["data"]["files"] for e in evs if e["data"].get("kind") == "eval_dir"]
        greedy_file, sampled_file = files["math500"]
        greedy[(run["mode"], run["seed"])] = [r["correct"] for r in _records(greedy_file)]
        rows = _records(sampled_file)
        per_problem: dict[str, list[bool]] = {}
        for rec in rows:
            per_problem.setdefault(rec["id"], []).append(rec["correct"])
        sampled[(run["mode"], run["seed"])] = list(per_problem.values())
    # Identical rows and steps in every run (the point of an experiment).
    assert len({d["rows_sha256"] for d in data.values()}) == 1
    assert len({d["total_steps"] for d in data.values()}) == 1
    assert all(d["rows"] > 0 for d in data.values())

    report = client.get(f"/v1/experiments/{exp_id}/report").json()
    assert report["fairness"]["same_rows"] and report["fairness"]["same_steps"]
    rows = {r["mode"]: r for r in report["sets"]["math500"]}
    for mode in ("cgd", "sft"):
        seeds = [greedy[(mode, s)] for s in (0, 1)]
        n = len(seeds[0])
        assert rows[mode]["n"] == n == 4
        expected = sum(sum(map(float, s)) for s in seeds) / (2 * n)  # seeds averaged
        acc = rows[mode]["accuracy"]
        assert acc["estimate"] == pytest.approx(expected)
        assert acc["low"] <= acc["estimate"] <= acc["high"]
        pass_k = sum(mean_pass_at_k(sampled[(mode, s)], 2) for s in (0, 1)) / 2
        assert rows[mode]["pass_at_k"] == pytest.approx(pass_k)
        assert rows[mode]["k"] == 2
    diff = rows["sft"]["diff_vs_baseline"]
    assert diff["estimate"] == pytest.approx(
        rows["sft"]["accuracy"]["estimate"] - rows["cgd"]["accuracy"]["estimate"]
    )
    assert diff["low"] <= diff["estimate"] <= diff["high"]
    if diff["low"] <= 0 <= diff["high"]:
        assert rows["sft"]["verdict"] == NO_DIFFERENCE
    assert all(m["tokens_trained"] and m["wall_s"] for m in report["modes"].values())

    md = client.get(f"/v1/experiments/{exp_id}/report", params={"format": "md"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert "| cgd |" in md.text and "| sft |" in md.text and "Same training rows" in md.text
    svg = client.get(f"/v1/experiments/{exp_id}/report", params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    ET.fromstring(svg.text)
    assert (
        client.get(f"/v1/experiments/{exp_id}/report", params={"format": "pdf"}).status_code == 422
    )
    listed = client.get("/v1/experiments").json()["data"]
    assert [e["id"] for e in listed] == [exp_id]
    # Cancelling a finished experiment keeps its results.
    after = client.post(f"/v1/experiments/{exp_id}/cancel").json()
    assert all(r["status"] == "completed" for r in after["runs"])
