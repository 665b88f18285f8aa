"""Training runs end to end: real API, a real `cgd trainer` Celery process, a tiny model on CPU.

The trainer downloads the snapshot over the API with the run's token, trains, evaluates and posts
events back; the API shows every step."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cgd.simulator import SimulatorProcess
from tests.conftest import data_file, registered_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tiny_model(api_server) -> Path:  # type: ignore[no-untyped-def]
    """The tiny model, written where the test API's CGD_BASE_MODELS registers ``tiny``."""
    from cgd.train.tiny import make_tiny_model

    path = registered_model(api_server, "tiny")
    if not (path / "config.json").exists():
        make_tiny_model(path)
    return path


@pytest.fixture
def snapshot_id(client, start_worker, tmp_path: Path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A ready snapshot: 8 GSM8K items, the dataset's own drafts as initial answers."""
    rows = [json.loads(x) for x in (data_file("gsm8k_train.jsonl")).read_text().splitlines()[:8]]
    for r in rows:
        r["draft"] = "I think the answer is \\boxed{1}."
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with SimulatorProcess(
        ["--port", "0", "--slots", "8", "--latency", "0.01", "--dataset", str(data)]
    ) as sim:
        start_worker()
        ds = client.post(
            "/v1/datasets",
            files={"file": ("d.jsonl", data.read_bytes())},
            data={"response_field": "draft"},
        ).json()["id"]
        job = client.post(
            "/v1/jobs",
            json={
                "dataset_id": ds,
                "student": None,
                "teacher": {"base_url": sim.base_url, "model": "teacher"},
            },
        ).json()["id"]
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.2)
    snap = client.post("/v1/snapshots", json={"job_ids": [job]})
    assert snap.status_code == 201, snap.text
    yield snap.json()["id"]


def run_body(snapshot_id: str, model: Path, **hp: Any) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot_id,
        "base_model": model.name,  # the registered name (the folder is named after it)
        "mode": "cgd",
        "method": "full",
        "hyperparams": {
            "learning_rate": 1e-3,
            "max_steps": 3,
            "tokens_per_step": 1024,
            "max_length": 512,
            "warmup_ratio": 0.0,
            **hp,
        },
        "eval": {"sets": ["math500"], "max_samples": 2, "max_new_tokens": 8},
    }


def wait_run(
    client: httpx.Client, run_id: str, until: Any = None, timeout_s: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = client.get(f"/v1/training-runs/{run_id}").json()
        assert "status" in run, run
        if until(run) if until else run["status"] in ("completed", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.3)


def events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return client.get(f"/v1/training-runs/{run_id}/events", params={"limit": 1000}).json()["data"]


@pytest.mark.slow
def test_trainer_drives_a_run_end_to_end(client, start_worker, snapshot_id, tiny_model) -> None:  # type: ignore[no-untyped-def]
    start_worker("trainer")
    # Evaluate on a bundled set and on an uploaded dataset of the team.
    eval_rows = "".join(
        json.dumps({"question": f"What is {i}+{i}?", "answer": f"#### {2 * i}"}) + "\n"
        for i in range(3)
    )
    eval_ds = client.post("/v1/datasets", files={"file": ("e.jsonl", eval_rows.encode())})
    eval_id = eval_ds.json()["id"]
    body = run_body(snapshot_id, tiny_model)
    # An uploaded set with its verifier kind spelled out.
    body["eval"]["sets"] = ["math500", f"dataset:{eval_id}:kind=math"]
    r = client.post("/v1/training-runs", json=body)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    run = wait_run(client, run_id)
    assert run["status"] == "completed", run
    assert run["progress"] == 1.0 and run["metrics"]["step"] == 3
    assert run["metrics"]["loss"] > 0 and run["metrics"]["supervised_tokens"] > 0
    assert 0.0 <= run["eval"]["math500"]["accuracy"] <= 1.0
    assert 0.0 <= run["eval"][f"dataset-{eval_id}"]["accuracy"] <= 1.0
    assert run["eval"]["math500"]["n"] == 2 and run["eval"][f"dataset-{eval_id}"]["n"] == 2
    # Every snapshot row trains: no validation split, so the uncertainty metric is skipped.
    snapshot = client.get(f"/v1/snapshots/{snapshot_id}").json()
    assert run["plan"]["train_rows"] == snapshot["num_items"] > 0
    assert run["plan"]["val_rows"] == 0 and run["plan"]["total_steps"] == 3
    assert "uncertainty" not in run["eval"]
    types = [e["type"] for e in events(client, run_id)]
    assert types.index("data") < types.index("step")  # the plan comes before the first step
    assert types.count("step") == 3 and "eval" in types and "artifact" in types
    assert [e["data"].get("status") for e in events(client, run_id) if e["type"] == "status"][
        0
    ] == "queued"
    model_path = Path(run["artifacts"]["model_path"])
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(model_path) is not None  # merged, loadable


@pytest.mark.slow
def test_the_validation_split_is_measured_never_trained_on(  # type: ignore[no-untyped-def]
    client, start_worker, snapshot_id, tiny_model
) -> None:
    """A snapshot with a validation split: the run trains on the train rows, counts the
    validation rows in its plan and measures refinement uncertainty on them."""
    start_worker("trainer")
    job_ids = client.get(f"/v1/snapshots/{snapshot_id}").json()["job_ids"]
    r = client.post("/v1/snapshots", json={"job_ids": job_ids, "split": {"val_fraction": 0.5}})
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["stats"]["val"] > 0 and snap["stats"]["train"] > 0, snap["stats"]
    r = client.post("/v1/training-runs", json=run_body(snap["id"], tiny_model, max_steps=2))
    assert r.status_code == 202, r.text
    run = wait_run(client, r.json()["id"])
    assert run["status"] == "completed", run
    plan = run["plan"]
    assert (plan["train_rows"], plan["val_rows"]) == (snap["stats"]["train"], snap["stats"]["val"])
    assert run["eval"]["uncertainty"]["uncertainty_samples"] == snap["stats"]["val"]


@pytest.mark.slow
def test_cancel_stops_at_the_next_step(client, start_worker, snapshot_id, tiny_model) -> None:  # type: ignore[no-untyped-def]
    start_worker("trainer")
    body = run_body(snapshot_id, tiny_model, max_steps=10_000)
    body["eval"] = {"sets": [], "max_new_tokens": 8}
    run_id = client.post("/v1/training-runs", json=body).json()["id"]
    wait_run(client, run_id, until=lambda r: r["metrics"].get("step", 0) >= 1)
    assert client.post(f"/v1/training-runs/{run_id}/cancel").status_code == 200
    run = wait_run(client, run_id, timeout_s=60)
    assert run["status"] == "cancelled" and run["metrics"]["step"] < 10_000
    assert client.post(f"/v1/training-runs/{run_id}/cancel").status_code == 409


def test_a_failing_run_says_why(client, start_worker, snapshot_id, api_server) -> None:  # type: ignore[no-untyped-def]
    start_worker("trainer")
    missing = registered_model(api_server, "x")  # registered, but nothing was ever written there
    assert not missing.exists()
    r = client.post("/v1/training-runs", json=run_body(snapshot_id, missing))
    assert r.status_code == 202, r.text
    run = wait_run(client, r.json()["id"], timeout_s=60)
    assert run["status"] == "failed" and str(missing) in run["error"], run


@pytest.mark.slow
def test_a_killed_trainer_leaves_the_run_failed(
    client, start_worker, snapshot_id, tiny_model
) -> None:  # type: ignore[no-untyped-def]
    trainer = start_worker("trainer")
    body = run_body(snapshot_id, tiny_model, max_steps=10_000)
    run_id = client.post("/v1/training-runs", json=body).json()["id"]
    wait_run(client, run_id, until=lambda r: r["metrics"].get("step", 0) >= 1)
    trainer.kill()
    # The generation worker the snapshot fixture started runs the sweeper, which fails the run
    # once its trainer is silent for CGD_TRAINER_LOST_AFTER_S (6 s in tests).
    run = wait_run(client, run_id, timeout_s=30)
    assert run["status"] == "failed" and "trainer lost" in run["error"]


def test_runs_are_team_scoped_and_tokens_are_per_run(
    client, other_client, snapshot_id, tiny_model, api_server
) -> None:  # type: ignore[no-untyped-def]
    assert (
        other_client.post("/v1/training-runs", json=run_body(snapshot_id, tiny_model)).status_code
        == 404
    )
    run_id = client.post("/v1/training-runs", json=run_body(snapshot_id, tiny_model)).json()["id"]
    r = client.delete(f"/v1/snapshots/{snapshot_id}")  # a run uses it
    assert r.status_code == 409 and r.json()["error"] == "SnapshotInUse", r.text
    for path in (f"/v1/training-runs/{run_id}", f"/v1/training-runs/{run_id}/events"):
        assert other_client.get(path).status_code == 404
    assert other_client.post(f"/v1/training-runs/{run_id}/cancel").status_code == 404
    # A team API key is not a run token, and neither is a made-up one.
    r = client.post(f"/v1/training-runs/{run_id}/events", json={"type": "step", "data": {}})
    assert r.status_code == 401
    r = httpx.get(
        f"{api_server.url}/v1/training-runs/{run_id}/data", headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    bad = run_body(snapshot_id, tiny_model)
    bad["eval"]["sets"] = ["gsm9k"]
    assert client.post("/v1/training-runs", json=bad).status_code == 422
    no_refs = client.post("/v1/datasets", files={"file": ("n.jsonl", b'{"question": "q"}\n')})
    bad["eval"]["sets"] = [f"dataset:{no_refs.json()['id']}"]
    assert client.post("/v1/training-runs", json=bad).status_code == 422  # no references
    theirs = other_client.post(
        "/v1/datasets", files={"file": ("o.jsonl", b'{"question": "q", "answer": "1"}\n')}
    )
    bad["eval"]["sets"] = [f"dataset:{theirs.json()['id']}"]
    assert client.post("/v1/training-runs", json=bad).status_code == 404  # another team's
    # A run token only opens the eval sets its own run names.
    r = httpx.get(
        f"{api_server.url}/v1/training-runs/{run_id}/eval-sets/{no_refs.json()['id']}",
        headers={"Authorization": "Bearer nope"},
    )
    assert r.status_code == 401
    assert client.post("/v1/training-runs", json={**bad, "method": "qlora"}).status_code == 422
    # Eval sets take a verifier kind and avg@k; bad options are a 422 naming the field. An
    # uploaded set's fields are mapped at upload.
    mine = client.post(
        "/v1/datasets",
        files={"file": ("m.jsonl", b'{"prompt": "q", "label": "B"}\n')},
        data={"reference_field": "label"},
    ).json()["id"]
    for sets in (["math500:kind=bogus"], [f"dataset:{mine}:answer=label"]):
        bad["eval"]["sets"] = sets
        r = client.post("/v1/training-runs", json=bad)
        field = r.json()["detail"]["field"]  # the model's check says body.…, the ops check not
        assert r.status_code == 422 and field in ("eval.sets", "body.eval.sets"), r.text
    good = run_body(snapshot_id, tiny_model)
    good["eval"]["sets"] = [f"dataset:{mine}:kind=choice", "aime24:k=4"]
    assert client.post("/v1/training-runs", json=good).status_code == 202


def test_parallelism_and_speed_fields_are_validated(client, snapshot_id, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """strategy, compile, micro_batch_rows, gradient_checkpointing: bad values are a 422 that
    names the field; good ones are kept in the run's spec."""
    for name, value in (
        ("strategy", "zero3"),
        ("compile", "maybe"),
        ("micro_batch_rows", 0),
        ("micro_batch_rows", 65),
        ("gradient_checkpointing", "yes please"),
    ):
        r = client.post(
            "/v1/training-runs", json=run_body(snapshot_id, tiny_model, **{name: value})
        )
        assert r.status_code == 422, (name, value, r.text)
        assert r.json()["detail"]["field"] == f"body.hyperparams.{name}", r.text
    fields = {
        "strategy": "fsdp",
        "compile": False,
        "micro_batch_rows": 2,
        "gradient_checkpointing": True,
    }
    r = client.post("/v1/training-runs", json=run_body(snapshot_id, tiny_model, **fields))
    assert r.status_code == 202, r.text
    spec = client.get(f"/v1/training-runs/{r.json()['id']}").json()["spec"]
    assert {k: spec["hyperparams"][k] for k in fields} == fields


@pytest.mark.slow
def test_fsdp_through_the_api_matches_one_process(  # type: ignore[no-untyped-def]
    client, start_worker, snapshot_id, tiny_model, tmp_path
) -> None:
    """A run with strategy fsdp on a trainer that owns two devices (two CPU processes over
    gloo here, via torchrun) has the loss curve of the same config in one process."""
    from cgd.train.config import TrainConfig
    from tests.test_train_fsdp import run_and_dump

    start_worker("trainer", CGD_TRAINER_GPUS="0,1")
    fields = {"strategy": "fsdp", "micro_batch_rows": 1, "gradient_checkpointing": True}
    body = run_body(snapshot_id, tiny_model, **fields)
    body["eval"]["sets"] = []
    r = client.post("/v1/training-runs", json=body)
    assert r.status_code == 202, r.text
    run = wait_run(client, r.json()["id"], timeout_s=400)
    assert run["status"] == "completed", run
    steps = [e["data"] for e in events(client, run["id"]) if e["type"] == "step"]
    out = Path(run["artifacts"]["model_path"]).parent
    config = TrainConfig.model_validate_json((out / "config.json").read_text())
    assert (config.strategy, config.gradient_checkpointing) == ("fsdp", True)
    single = tmp_path / "single"
    single.mkdir()
    local = run_and_dump(config.model_copy(update={"output_dir": str(single)}), single)
    assert [s["loss"] for s in steps] == pytest.approx(
        [m["loss"] for m in local["history"]], rel=1e-4
    )


@pytest.mark.slow
def test_common_modes_runs_train_on_the_same_rows_and_report_the_contract(  # type: ignore[no-untyped-def]
    client, start_worker, snapshot_id, tiny_model
) -> None:
    """Two runs of one experiment (cgd, sft) with common_modes: the same row set (rows_sha256)
    and the same number of steps; the events carry what the experiments report reads."""
    bad = run_body(snapshot_id, tiny_model)
    bad["common_modes"] = ["sft", "distill"]  # lacks the run's own mode (cgd)
    r = client.post("/v1/training-runs", json=bad)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "body.common_modes", r.text
    bad = run_body(snapshot_id, tiny_model)
    bad["eval"]["select_on"] = "no-such-set"
    r = client.post("/v1/training-runs", json=bad)
    assert r.status_code == 422 and r.json()["detail"]["field"] == "eval.select_on", r.text

    start_worker("trainer")
    data_events, runs = {}, {}
    for mode in ("cgd", "sft"):
        body = run_body(snapshot_id, tiny_model, seed=3, max_steps=None, epochs=1)
        body["mode"] = mode
        body["common_modes"] = ["cgd", "sft"]
        body["eval"]["sets"] = ["math500:k=2:n=3"]
        r = client.post("/v1/training-runs", json=body)
        assert r.status_code == 202, r.text
        run = wait_run(client, r.json()["id"])
        assert run["status"] == "completed", run
        assert run["spec"]["hyperparams"]["seed"] == 3
        runs[mode] = run
        evs = events(client, run["id"])
        (data_events[mode],) = [e["data"] for e in evs if e["type"] == "data"]
        steps = [e["data"] for e in evs if e["type"] == "step"]
        assert run["metrics"]["tokens_trained"] == sum(s["tokens"] for s in steps) > 0
        final = [e["data"] for e in evs if e["type"] == "eval" and "accuracy" in e["data"]][-1]
        assert final["problems"]["math500"]["k"] == 2 and final["selected"] is None
        assert len(final["problems"]["math500"]["samples"][0]) == 3
        assert "problems" not in json.dumps(run["eval"])  # the run row stays compact
        assert run["eval"]["math500"]["pass_at_k"] == final["pass_at_k"]["math500"]
        assert any(e["data"].get("kind") == "eval_dir" for e in evs if e["type"] == "artifact")
    cgd, sft = data_events["cgd"], data_events["sft"]
    assert cgd["rows_sha256"] == sft["rows_sha256"] and cgd["rows"] == sft["rows"] > 0
    assert cgd["total_steps"] == sft["total_steps"]
    assert set(cgd["truncated"]) == {"cgd", "sft"} and cgd["truncated"] == sft["truncated"]


def test_an_oversized_event_is_refused() -> None:
    """A trainer token cannot bloat the events table: an event's data is capped."""
    from pydantic import ValidationError

    from cgd.runs.schemas import MAX_EVENT_BYTES, EventIn

    ok = {"problems": {"s": {"ids": ["x"] * 1000, "correct": [True] * 1000}}}
    assert EventIn(type="eval", data=ok).data == ok
    with pytest.raises(ValidationError, match=f"at most {MAX_EVENT_BYTES}"):
        EventIn(type="eval", data={"blob": "x" * (MAX_EVENT_BYTES + 1)})
