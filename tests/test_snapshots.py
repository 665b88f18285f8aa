"""Snapshots and exports over the real API, from triplets of a real job against the simulator."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cgd.simulator import SimulatorProcess
from tests.conftest import WorkerProcess, data_file, make_key

pytestmark = pytest.mark.integration

N_GSM8K = 60


@pytest.fixture(scope="module")
def finished_job(api_server, sessionmaker_, tmp_path_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """One job over GSM8K questions plus planted MATH-500 problems, exact and near duplicates."""
    tmp = tmp_path_factory.mktemp("snap")
    gsm = [json.loads(x) for x in (data_file("gsm8k_train.jsonl")).read_text().splitlines()]
    m500 = [json.loads(x) for x in (data_file("math500.jsonl")).read_text().splitlines()]
    rows = [{"question": r["question"], "answer": r["answer"]} for r in gsm[:N_GSM8K]]
    planted_math = [{"question": r["problem"], "answer": r["answer"]} for r in m500[:4]]
    exact_dups = [
        {"question": "  " + gsm[i]["question"].upper() + " ", "answer": gsm[i]["answer"]}
        for i in (3, 4)
    ]
    near_dups = []
    for i in (5, 6, 7):
        words = gsm[i]["question"].split()
        words[len(words) // 2] = "exactly"  # one word changed in the middle
        near_dups.append({"question": " ".join(words), "answer": gsm[i]["answer"]})
    rows += planted_math + exact_dups + near_dups
    data = tmp / "planted.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    refs = tmp / "refs.jsonl"
    refs.write_text(data.read_text())
    key = make_key(sessionmaker_)
    client = httpx.Client(
        base_url=api_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    )
    sim = SimulatorProcess(
        [
            "--port",
            "0",
            "--slots",
            "32",
            "--latency",
            "0.01",
            "--dataset",
            str(refs),
            "--no-verdict-rate",
            "0.15",
        ]
    )
    worker = WorkerProcess(api_server.env, tmp / "worker.log")
    try:
        ds = client.post("/v1/datasets", files={"file": ("planted.jsonl", data.read_bytes())})
        assert ds.status_code == 201, ds.text
        body = {
            "dataset_id": ds.json()["id"],
            # Sampled initial answers (greedy is the default; k samples need a temperature).
            "student": {"base_url": sim.base_url, "model": "student", "temperature": 0.7},
            "teacher": {"base_url": sim.base_url, "model": "teacher"},
            "samples_per_prompt": 2,
            "teacher_solution": True,  # every export mode, distill included, is available
        }
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{job_id}").json()["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        trips = client.get(f"/v1/jobs/{job_id}/triplets", params={"limit": 1000}).json()["data"]
        yield {
            "client": client,
            "job_id": job_id,
            "triplets": trips,
            "n_items": len(rows),
            "dataset_id": ds.json()["id"],
            "tmp": tmp,
            "job_body": body,
        }
    finally:
        worker.kill()
        sim.stop()
        client.close()


def snapshot(client: httpx.Client, job_id: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/snapshots", json={"job_ids": [job_id], **body})
    assert r.status_code == 201, r.text
    return r.json()


def test_every_filter_is_counted(finished_job) -> None:  # type: ignore[no-untyped-def]
    c, job, trips = finished_job["client"], finished_job["job_id"], finished_job["triplets"]
    total = len(trips)
    assert total == 2 * finished_job["n_items"]
    done = [t for t in trips if t["status"] == "verified"]
    plain = snapshot(c, job)
    assert plain["stats"]["input"] == total
    # No filter is on by default (meta_commentary was, before the cgd-v3 default template).
    assert plain["stats"]["dropped"] == {"incomplete": total - len(done)}
    assert plain["num_items"] == plain["stats"]["output"] == len(done)

    cases: list[tuple[dict[str, Any], str, int]] = [
        (
            {"refined_correct": True},
            "refined_correct",
            sum(t["refined_correct"] is not True for t in done),
        ),
        (
            {"initial_correct": False},
            "initial_correct",
            sum(t["initial_correct"] is not False for t in done),
        ),
        (
            {"verdict_agrees": True},
            "verdict_agrees",
            sum(t["verdict_agrees"] is not True for t in done),
        ),
        (
            {"require_boxed": True},
            "no_boxed",
            sum("\\boxed{" not in (t["refined_response"] or "") for t in done),
        ),
        ({"min_chars": 300}, "too_short", sum(len(t["refined_response"]) < 300 for t in done)),
        ({"max_chars": 300}, "too_long", sum(len(t["refined_response"]) > 300 for t in done)),
        ({"no_truncation": True}, "truncated", sum(bool(t["truncated"]) for t in done)),
    ]
    for filters, reason, expected in cases:
        snap = snapshot(c, job, filters=filters)
        assert snap["stats"]["dropped"][reason] == expected, (filters, snap["stats"])
        assert snap["num_items"] == len(done) - expected, filters
    # The paper's verdict-ratio ablation: no-verdict critiques can't be placed, the rest is
    # subsampled to right:wrong = 1:1.
    snap = snapshot(c, job, filters={"verdict_ratio": {"right": 1, "wrong": 1}})
    no_verdict = sum(t["verdict"] is None for t in done)
    assert snap["stats"]["dropped"]["no_verdict"] == no_verdict
    rows = export_jsonl(c, snap["id"], "native")
    right = sum(r["verdict"] == "right" for r in rows)
    assert right == len(rows) - right


def test_dedup_and_decontamination_on_planted_items(finished_job) -> None:  # type: ignore[no-untyped-def]
    c, job = finished_job["client"], finished_job["job_id"]
    snap = snapshot(
        c,
        job,
        dedup={"exact": True, "near_threshold": 0.7},
        decontaminate={"sets": ["math500"], "ngram": 13},
    )
    dropped = snap["stats"]["dropped"]
    done_items = {t["idx"] for t in finished_job["triplets"] if t["status"] == "verified"}
    planted_math = {N_GSM8K + i for i in range(4)} & done_items
    assert planted_math, "the planted MATH-500 items must have completed"
    assert dropped["contaminated"] == 2 * len(planted_math)  # two samples each
    contaminated = {d["item_id"] for d in snap["stats"]["contaminated"]}
    assert contaminated == {str(i) for i in planted_math}
    assert dropped["exact_duplicate"] >= 2 and dropped["near_duplicate"] >= 2
    full = c.get(f"/v1/snapshots/{snap['id']}").json()
    reasons = {d["reason"] for d in full["dropped"]}
    assert {"contaminated", "exact_duplicate", "near_duplicate"} <= reasons
    # One item per duplicate cluster survives, deterministically.
    again = snapshot(
        c,
        job,
        dedup={"exact": True, "near_threshold": 0.7},
        decontaminate={"sets": ["math500"], "ngram": 13},
    )
    assert again["content_hash"] == snap["content_hash"]


def test_content_hash_is_stable_and_split_keeps_samples_together(finished_job) -> None:  # type: ignore[no-untyped-def]
    c, job = finished_job["client"], finished_job["job_id"]
    a = snapshot(c, job, name="a", split={"val_fraction": 0.25, "seed": 1})
    b = snapshot(c, job, name="b", split={"val_fraction": 0.25, "seed": 1})
    other = snapshot(c, job, split={"val_fraction": 0.25, "seed": 2})
    assert a["content_hash"] == b["content_hash"] != other["content_hash"]
    assert a["stats"]["val"] > 0 and a["stats"]["train"] + a["stats"]["val"] == a["num_items"]
    rows = export_jsonl(c, a["id"], "native")
    split_of_item: dict[str, set[str]] = {}
    for r in rows:
        split_of_item.setdefault(r["item_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of_item.values())
    val = export_jsonl(c, a["id"], "native", split="validation")
    assert len(val) == a["stats"]["val"] and all(r["split"] == "validation" for r in val)
    assert export_jsonl(c, a["id"], "native", split="val") == val  # the old name, an alias
    # native holds every field: a mode there is refused, not silently ignored.
    r = c.get(f"/v1/snapshots/{a['id']}/export", params={"layout": "native", "mode": "sft"})
    assert r.status_code == 422 and r.json()["detail"]["field"] == "mode", r.text


def export_jsonl(
    c: httpx.Client, sid: str, layout: str, mode: str | None = None, split: str = "all"
) -> list[dict[str, Any]]:
    params = {"format": "jsonl", "layout": layout, "split": split}
    if mode is not None:
        params["mode"] = mode
    r = c.get(f"/v1/snapshots/{sid}/export", params=params)
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def test_training_exports_read_every_field_their_mode_needs(finished_job) -> None:  # type: ignore[no-untyped-def]
    """A training export reads only its mode's columns from the database; what it sends must
    equal the library's rows built from every field (the native export), mode by mode."""
    from cgd.curation.export import iter_export_rows
    from cgd.curation.formats import MODES

    c, job = finished_job["client"], finished_job["job_id"]
    snap = snapshot(c, job)
    native = export_jsonl(c, snap["id"], "native")
    for mode in MODES:
        for layout in ("messages", "alpaca"):
            for split in ("all", "validation"):
                sent = export_jsonl(c, snap["id"], layout, mode=mode, split=split)
                built = list(iter_export_rows(native, layout, mode, split))
                assert sent == built, (mode, layout, split)
                assert split != "all" or len(sent) > 0, (mode, layout)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_exports_load_in_datasets_row_for_row(finished_job, fmt: str) -> None:  # type: ignore[no-untyped-def]
    import datasets

    c, job, tmp = finished_job["client"], finished_job["job_id"], finished_job["tmp"]
    snap = snapshot(c, job, filters={"refined_correct": True})
    native = export_jsonl(c, snap["id"], "native")
    assert len(native) == snap["num_items"]
    for layout in ("native", "messages", "sharegpt", "prompt-completion", "alpaca"):
        for mode in ("cgd", "sft", "distill", "cft", "no-critique"):
            if layout == "native" and mode != "cgd":
                continue  # native carries every field and takes no mode
            params = {"format": fmt, "layout": layout}
            if layout != "native":
                params["mode"] = mode
            r = c.get(f"/v1/snapshots/{snap['id']}/export", params=params)
            assert r.status_code == 200, r.text
            path = tmp / f"{secrets.token_hex(4)}.{fmt}"
            path.write_bytes(r.content)
            loaded = datasets.load_dataset(
                "json" if fmt == "jsonl" else "parquet", data_files=str(path), split="train"
            )
            assert len(loaded) == len(native), (layout, mode)
            first, src = loaded[0], native[0]
            if layout == "messages":
                user, assistant = first["messages"]
                assert src["prompt"] in user["content"]
                target = {
                    "cgd": src["refined_response"],
                    # GSM8K's `#### n` becomes `\\boxed{n}`: every target ends in a box.
                    "sft": src["reference"].replace("#### ", "\\boxed{") + "}",
                    "distill": src["teacher_solution"],
                    "cft": src["critique"],
                    "no-critique": src["refined_response"],
                }[mode]
                assert assistant["content"] == target
                if mode == "cgd":
                    assert src["critique"] in user["content"]
                    assert src["initial_response"] in user["content"]
            elif layout == "prompt-completion":
                assert first["prompt"][0]["role"] == "user"
                assert first["completion"][0]["role"] == "assistant"
            elif layout == "sharegpt":
                human, gpt = first["conversations"]
                assert human["from"] == "human" and src["prompt"] in human["value"]
                assert gpt["from"] == "gpt" and gpt["value"]
            elif layout == "alpaca":
                assert src["prompt"] in first["instruction"] and first["output"]
            else:
                assert first["triplet_id"] == src["triplet_id"]


def test_card_lineage_and_listing(finished_job) -> None:  # type: ignore[no-untyped-def]
    c, job = finished_job["client"], finished_job["job_id"]
    snap = snapshot(c, job, name="gsm8k-cgd-v1", filters={"refined_correct": True})
    card = c.get(f"/v1/snapshots/{snap['id']}/card").json()
    assert card["content_hash"] == snap["content_hash"] and card["name"] == "gsm8k-cgd-v1"
    assert "Critique" in json.dumps(card["modes"]["cgd"])
    md = c.get(f"/v1/snapshots/{snap['id']}/card", params={"format": "markdown"}).text
    assert "gsm8k-cgd-v1" in md and snap["content_hash"] in md
    lineage = snap["lineage"][job]
    assert lineage["teacher"]["model"] == "teacher" and lineage["template_version"] == "cgd-v3"
    ids = [s["id"] for s in c.get("/v1/snapshots", params={"limit": 200}).json()["data"]]
    assert snap["id"] in ids
    assert c.delete(f"/v1/snapshots/{snap['id']}").status_code == 204
    assert c.get(f"/v1/snapshots/{snap['id']}").status_code == 404


def test_cross_team_and_bad_requests(finished_job, other_client) -> None:  # type: ignore[no-untyped-def]
    c, job = finished_job["client"], finished_job["job_id"]
    snap = snapshot(c, job)
    for path in (
        f"/v1/snapshots/{snap['id']}",
        f"/v1/snapshots/{snap['id']}/export",
        f"/v1/snapshots/{snap['id']}/card",
    ):
        assert other_client.get(path).status_code == 404
    assert other_client.delete(f"/v1/snapshots/{snap['id']}").status_code == 404
    assert other_client.get("/v1/snapshots").json()["data"] == []
    # Another team's job cannot feed a snapshot.
    assert other_client.post("/v1/snapshots", json={"job_ids": [job]}).status_code == 404
    assert c.post("/v1/snapshots", json={"job_ids": []}).status_code == 422
    assert (
        c.post("/v1/snapshots", json={"job_ids": [job], "filters": {"bogus": 1}}).status_code == 422
    )
    # CSV is not offered (no spreadsheet formula injection to neutralise); bad options are 422.
    for params in ({"layout": "csv"}, {"format": "csv"}, {"mode": "x"}, {"split": "test"}):
        bad = c.get(f"/v1/snapshots/{snap['id']}/export", params=params)
        assert bad.status_code == 422, params


def test_large_snapshot_builds_on_the_curation_queue(finished_job) -> None:  # type: ignore[no-untyped-def]
    """Over the inline limit (150 in tests) the request answers 202; the worker builds it."""
    c = finished_job["client"]
    body = {**finished_job["job_body"], "samples_per_prompt": 3}  # 207 triplets > 150
    job = c.post("/v1/jobs", json=body).json()["id"]
    deadline = time.monotonic() + 120
    while c.get(f"/v1/jobs/{job}").json()["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    r = c.post("/v1/snapshots", json={"job_ids": [job]})
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    assert r.json()["status"] == "building"
    assert c.get(f"/v1/snapshots/{sid}/export").status_code == 409
    deadline = time.monotonic() + 60
    while (snap := c.get(f"/v1/snapshots/{sid}").json())["status"] == "building":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert snap["status"] == "ready" and snap["num_items"] > 0


def test_parquet_compression_choices_load(finished_job) -> None:  # type: ignore[no-untyped-def]
    import io

    import pyarrow.parquet as pq

    c, job = finished_job["client"], finished_job["job_id"]
    snap = snapshot(c, job)
    for comp in ("snappy", "lz4", "zstd", "none"):
        r = c.get(
            f"/v1/snapshots/{snap['id']}/export",
            params={"format": "parquet", "layout": "messages", "compression": comp},
        )
        assert r.status_code == 200, r.text
        assert pq.read_table(io.BytesIO(r.content)).num_rows == snap["num_items"], comp
    bad = c.get(f"/v1/snapshots/{snap['id']}/export", params={"compression": "gzip9"})
    assert bad.status_code == 422


def test_sweeper_requeues_lost_builds_and_fails_dead_ones(sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    """A build whose message never arrived is sent again; one whose worker vanished fails.

    Rows and sweeps share one transaction that is rolled back: a live worker's own sweeper
    (another test's) never sees these rows, so it can't requeue or build them first."""
    from datetime import timedelta

    from cgd.auth import create_key
    from cgd.db.models import Snapshot, utcnow
    from cgd.snapshots import ops as snapshots

    with sessionmaker_() as s:
        team, _ = create_key(s, f"team-{secrets.token_hex(6)}")
        old = utcnow() - timedelta(hours=1)
        lost = Snapshot(
            team_id=team.id, status="building", job_ids=[], spec={}, build_enqueued_at=old
        )
        dead = Snapshot(
            team_id=team.id,
            status="building",
            job_ids=[],
            spec={},
            build_enqueued_at=old,
            build_started_at=utcnow() - timedelta(hours=7),
        )
        fresh = Snapshot(
            team_id=team.id, status="building", job_ids=[], spec={}, build_enqueued_at=utcnow()
        )
        s.add_all([lost, dead, fresh])
        s.flush()
        requeued = snapshots.sweep_builds(s, requeue_after_s=300, lost_after_s=6 * 3600)
        s.flush()
        assert str(lost.id) in requeued and str(fresh.id) not in requeued
        s.expire_all()
        assert s.get(Snapshot, dead.id).status == "failed"
        assert "build lost" in s.get(Snapshot, dead.id).error
        assert s.get(Snapshot, fresh.id).status == "building"
        # Once per interval: an immediate second sweep does not send it again.
        assert str(lost.id) not in snapshots.sweep_builds(s, 300, 6 * 3600)
        s.rollback()


def test_export_hub_over_the_api_and_cli(finished_job, api_server) -> None:  # type: ignore[no-untyped-def]
    """`cgd snapshots export-hub SNAPSHOT DIR` unpacks the API's tar into a folder that
    `datasets.load_dataset(DIR)` loads with both splits; the README has the quality numbers."""
    import os
    import subprocess
    import sys

    import datasets
    import yaml

    c, job, tmp = finished_job["client"], finished_job["job_id"], finished_job["tmp"]
    snap = snapshot(c, job, name="hub test", split={"val_fraction": 0.3, "seed": 0})
    dest = tmp / f"hub-{secrets.token_hex(4)}"
    env = {
        **os.environ,
        "CGD_API_URL": api_server.url,
        "CGD_API_KEY": c.headers["Authorization"].split()[1],
    }
    cmd = [sys.executable, "-m", "services.cli", "snapshots", "export-hub", snap["id"], str(dest)]
    done = subprocess.run([*cmd, "--license", "mit"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "README.md" in done.stdout and "dataset_info.json" in done.stdout
    ds = datasets.load_dataset(str(dest), cache_dir=str(tmp / "hf-cache"))
    assert ds["train"].num_rows == snap["stats"]["train"]
    assert ds["validation"].num_rows == snap["stats"]["val"] > 0
    readme = (dest / "README.md").read_text()
    meta = yaml.safe_load(readme.split("---\n", 2)[1])
    assert meta["license"] == "mit" and meta["pretty_name"] == "hub test"
    q = snap["stats"]["quality"]
    assert f"| refined accuracy | {100 * q['refined_accuracy']:.1f}% |" in readme
    info = json.loads((dest / "dataset_info.json").read_text())
    assert {e["formatting"] for e in info.values()} == {"alpaca", "sharegpt"}
    # A second export into the same (non-empty) folder is refused, not merged.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "not empty" in again.stderr
    # Bad arguments: 422 naming the field, before any byte is streamed.
    r = c.get(f"/v1/snapshots/{snap['id']}/export-hub", params={"license": "MIT License"})
    assert r.status_code == 422 and "license" in r.text
    r = c.get(f"/v1/snapshots/{snap['id']}/export-hub", params={"mode": "dpo"})
    assert r.status_code == 422 and "mode" in r.text
