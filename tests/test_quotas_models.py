"""Issue 26, parts 2 and 6: no path or model taken from a request (eval-set names, the base-model
registry, run:<id>), and per-team quotas on every stored resource with a fair training queue.

Real API process, real Postgres; rows a trainer would write (a completed run) are set directly.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_security import _ready_snapshot, _team_id

# --- eval-set names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../../../elsewhere/x", "/tmp/x", "..", ".hidden", "a/b", "a" * 65, "", "x\x00y", "é"],
)
def test_eval_set_name_must_be_a_plain_file_name(name: str) -> None:
    from cgd.curation.eval_sets import parse_eval_set

    with pytest.raises(ValueError, match="name must match"):
        parse_eval_set(f"math500:name={name}")


def test_eval_set_names_that_are_plain_file_names_pass() -> None:
    from cgd.curation.eval_sets import parse_eval_set

    for name in ("a", "math500-greedy", "v1.2_b", "A" * 64):
        assert parse_eval_set(f"math500:name={name}").name == name


def test_evaluation_writes_only_inside_its_folder(tmp_path: Path) -> None:
    """The trainer checks where it writes, whatever the spec it was given: a name that slipped
    past validation still cannot leave the output folder (and nothing is generated first)."""
    from cgd.curation.eval_sets import EvalSet
    from cgd.train.evaluate import evaluate_set

    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    calls: list[Any] = []

    def generate(prompts: list[str], sampling: Any) -> list[str]:
        calls.append(sampling)
        return ["\\boxed{1}"] * len(prompts)

    for name in ("../../escaped", "/tmp/escaped-cgd", "sub/../../escaped"):
        with pytest.raises(ValueError, match="outside"):
            evaluate_set(EvalSet(source="math500", name=name), None, generate, out_dir=out)
    assert calls == [] and not list(tmp_path.rglob("escaped*"))
    assert not Path("/tmp/escaped-cgd.jsonl").exists()


# --- base models -------------------------------------------------------------------------------


def _run_body(snapshot: uuid.UUID, base_model: str, **extra: Any) -> dict[str, Any]:
    return {"snapshot_id": str(snapshot), "base_model": base_model, "eval": {"sets": []}, **extra}


def _completed_run(client: httpx.Client, sessionmaker_, model_path: str) -> str:  # type: ignore[no-untyped-def]
    """A run of the client's team that a trainer finished, its model at ``model_path``."""
    from cgd.db.models import TrainingRun

    snap = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, client))
    r = client.post("/v1/training-runs", json=_run_body(snap, "m"))
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    with sessionmaker_.begin() as s:
        run = s.get(TrainingRun, uuid.UUID(run_id))
        run.status = "completed"
        run.artifacts = {"model_path": model_path}
    return str(run_id)


@pytest.mark.integration
def test_eval_set_traversal_is_a_422_naming_the_field(client, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    snap = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, client))
    for field, value in (
        ("sets", ["math500:name=../../../../elsewhere/x"]),
        ("select_on", "math500:name=../x"),
    ):
        body = _run_body(snap, "m", eval={"sets": [], field: value})
        r = client.post("/v1/training-runs", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["detail"]["field"].endswith(f"eval.{field}"), r.text


@pytest.mark.integration
def test_base_model_is_a_registered_name_or_an_own_completed_run(  # type: ignore[no-untyped-def]
    client, other_client, sessionmaker_, api_server
) -> None:
    snap = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, client))
    theirs = _completed_run(other_client, sessionmaker_, "/srv/other-team/model")
    mine_queued = client.post("/v1/training-runs", json=_run_body(snap, "m")).json()["id"]
    refused = [
        "../../etc/passwd",
        "/etc",
        str(Path(api_server.env["CGD_HOME"])),  # a directory that exists
        "Qwen/Qwen2.5-0.5B-Instruct",  # a hub id nobody registered
        "not-registered",
        f"run:{theirs}",  # another team's trained model
        f"run:{uuid.uuid4()}",  # no such run
        f"run:{mine_queued}",  # not completed
        "run:../../etc",
        "M",
    ]
    bodies = []
    for name in refused:
        r = client.post("/v1/training-runs", json=_run_body(snap, name))
        assert r.status_code == 422, (name, r.text)
        bodies.append(r.content)
    # One answer whatever the cause: nothing about paths, existence or ownership leaks.
    assert len(set(bodies)) == 1, set(bodies)
    detail = httpx.Response(422, content=bodies[0]).json()["detail"]
    assert detail["field"] == "base_model" and "/v1/models" in detail["reason"]
    ok = client.post("/v1/training-runs", json=_run_body(snap, "tiny"))
    assert ok.status_code == 202, ok.text


@pytest.mark.integration
def test_run_id_continues_from_the_teams_own_model(client, sessionmaker_, api_server) -> None:  # type: ignore[no-untyped-def]
    from cgd.db.models import TrainingRun
    from cgd.runs.ops import _hash

    done = _completed_run(client, sessionmaker_, "/var/lib/cgd/trainer/x/out/final")
    snap = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, client))
    r = client.post("/v1/training-runs", json=_run_body(snap, f"run:{done}"))
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert client.get(f"/v1/training-runs/{run_id}").json()["spec"]["base_model"] == f"run:{done}"
    # The trainer (and only it) gets the location the name resolves to.
    with sessionmaker_.begin() as s:
        s.get(TrainingRun, uuid.UUID(run_id)).token_hash = _hash("t0ken")
    spec = httpx.get(
        f"{api_server.url}/v1/training-runs/{run_id}/spec",
        headers={"Authorization": "Bearer t0ken"},
    ).json()
    assert spec["base_model_location"] == "/var/lib/cgd/trainer/x/out/final"
    registered = client.get(f"/v1/training-runs/{done}").json()
    assert "base_model_location" not in registered


@pytest.mark.integration
def test_models_lists_the_registered_names_in_pages(client, api_server) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import REGISTERED_MODEL_NAMES

    assert httpx.get(f"{api_server.url}/v1/models").status_code == 401
    first = client.get("/v1/models", params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = client.get("/v1/models", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    names = [m["name"] for m in first["data"] + rest["data"]]
    assert names == sorted(REGISTERED_MODEL_NAMES) and rest["next_cursor"] is None
    # Names only: where a model lives is the operator's business.
    assert all(set(m) == {"name"} for m in first["data"] + rest["data"])
    bad = client.get("/v1/models", params={"cursor": "garbage"})
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "cursor"


def test_registry_refuses_malformed_entries() -> None:
    from cgd.runs.base_models import registry
    from cgd.settings import Settings

    assert registry(Settings(base_models=" a=/m/a , b=org/b ")) == {"a": "/m/a", "b": "org/b"}
    for bad in ("a", "a=", "../x=/m", "a=/m,a=/n", "run:1=/m"):
        with pytest.raises(ValueError, match="CGD_BASE_MODELS"):
            registry(Settings(base_models=bad))


# --- quotas on stored resources -----------------------------------------------------------------

QUOTAS = {
    "CGD_QUOTA_DATASETS": "2",
    "CGD_QUOTA_STORED_BYTES": "1000",
    "CGD_QUOTA_SNAPSHOTS": "1",
    "CGD_QUOTA_TEMPLATE_VERSIONS": "2",
    "CGD_QUOTA_QUEUED_RUNS": "1",
    "CGD_QUOTA_RETRY_AFTER_S": "7",
}


@pytest.fixture(scope="module")
def small_quota_api(api_server, tmp_path_factory: pytest.TempPathFactory) -> Any:  # type: ignore[no-untyped-def]
    """A second API process on the same database with tiny per-team quotas."""
    from tests.conftest import _wait_http, free_port, start_api

    port = free_port()
    proc = start_api({**api_server.env, **QUOTAS}, port, tmp_path_factory.mktemp("q") / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/healthz", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _team(url: str, sessionmaker_) -> httpx.Client:  # type: ignore[no-untyped-def]
    from tests.conftest import make_key

    key = make_key(sessionmaker_)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _over(r: httpx.Response, setting: str) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == "7"
    assert r.json()["detail"]["quota"] == setting and setting in r.json()["detail"]["reason"]


def _upload(c: httpx.Client, size: int) -> httpx.Response:
    row = b'{"question": "q", "pad": "' + b"x" * (size - 29) + b'"}\n'
    assert len(row) == size
    return c.post("/v1/datasets", files={"file": ("d.jsonl", row)})


@pytest.mark.integration
def test_dataset_and_stored_bytes_quotas(small_quota_api, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    a, b = _team(small_quota_api, sessionmaker_), _team(small_quota_api, sessionmaker_)
    first = _upload(a, 100)
    assert first.status_code == 201, first.text
    assert _upload(a, 100).status_code == 201
    _over(_upload(a, 100), "CGD_QUOTA_DATASETS")
    assert _upload(b, 100).status_code == 201  # another team still creates
    # Deleting frees room: the count is back under, but 100 + 950 bytes is over.
    assert a.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
    _over(_upload(a, 950), "CGD_QUOTA_STORED_BYTES")
    assert _upload(a, 800).status_code == 201


@pytest.mark.integration
def test_template_version_quota(small_quota_api, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    a, b = _team(small_quota_api, sessionmaker_), _team(small_quota_api, sessionmaker_)
    assert a.post("/v1/templates", json={"name": "t"}).status_code == 201
    assert a.put("/v1/templates/t", json={}).status_code == 200
    _over(a.put("/v1/templates/t", json={}), "CGD_QUOTA_TEMPLATE_VERSIONS")
    _over(a.post("/v1/templates", json={"name": "u"}), "CGD_QUOTA_TEMPLATE_VERSIONS")
    assert b.post("/v1/templates", json={"name": "t"}).status_code == 201


@pytest.mark.integration
def test_snapshot_quota(small_quota_api, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    a, b = _team(small_quota_api, sessionmaker_), _team(small_quota_api, sessionmaker_)
    snap = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, a))  # the team's one snapshot
    body = {"job_ids": [str(uuid.uuid4())]}
    _over(a.post("/v1/snapshots", json=body), "CGD_QUOTA_SNAPSHOTS")
    # Team b is under its quota: its request goes on to the job lookup (no such job).
    assert b.post("/v1/snapshots", json=body).status_code == 404
    # Deleting frees room: a's request now gets as far as b's did.
    assert a.delete(f"/v1/snapshots/{snap}").status_code == 204
    assert a.post("/v1/snapshots", json=body).status_code == 404


@pytest.mark.integration
def test_queued_run_quota(small_quota_api, sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    a, b = _team(small_quota_api, sessionmaker_), _team(small_quota_api, sessionmaker_)
    snap_a = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, a))
    snap_b = _ready_snapshot(sessionmaker_, _team_id(sessionmaker_, b))
    queued = a.post("/v1/training-runs", json=_run_body(snap_a, "m"))
    assert queued.status_code == 202, queued.text
    _over(a.post("/v1/training-runs", json=_run_body(snap_a, "m")), "CGD_QUOTA_QUEUED_RUNS")
    assert b.post("/v1/training-runs", json=_run_body(snap_b, "m")).status_code == 202
    # A cancelled run holds no place in the queue.
    assert a.post(f"/v1/training-runs/{queued.json()['id']}/cancel").status_code == 200
    assert a.post("/v1/training-runs", json=_run_body(snap_a, "m")).status_code == 202


# --- the trainer's queue: round-robin by team ---------------------------------------------------


@pytest.mark.integration
def test_trainer_claims_runs_round_robin_by_team(api_server, sessionmaker_, no_leftovers) -> None:  # type: ignore[no-untyped-def]
    """Team a queues three runs, then team b two; trainers take the messages first-in first-out,
    yet the runs start a, b, a, b, a (each claim answers the run the fair order picks)."""
    from cgd.db.engine import session_scope
    from cgd.runs.ops import create_run
    from cgd.runs.schemas import TrainingRunSpec
    from cgd.settings import Settings

    settings = Settings(base_models="m=/nowhere")
    queued: list[tuple[str, str, str]] = []  # (team, run id, token) in message order
    for team, n in (("a", 3), ("b", 2)):
        client = _team(api_server.url, sessionmaker_)
        team_id = _team_id(sessionmaker_, client)
        for _ in range(n):
            snap = _ready_snapshot(sessionmaker_, team_id)
            spec = TrainingRunSpec.model_validate(_run_body(snap, "m"))
            with session_scope(sessionmaker_) as s:
                run, token = create_run(s, team_id, spec, settings)
                queued.append((team, str(run.id), token))
    team_of = {run_id: team for team, run_id, _ in queued}
    order = []
    for _, _, token in queued:
        r = httpx.post(
            f"{api_server.url}/v1/training-runs/claim",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        claimed = r.json()["run_id"]
        order.append(team_of[claimed])
        # The token now opens the claimed run (the trainer reports on it with that token).
        spec = httpx.get(
            f"{api_server.url}/v1/training-runs/{claimed}/spec",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert spec.status_code == 200 and spec.json()["status"] == "running", spec.text
    assert order == ["a", "b", "a", "b", "a"]
    # Each run started once: five claims, five distinct runs, nothing left queued.
    with sessionmaker_() as s:
        from cgd.db.models import TrainingRun

        statuses = {s.get(TrainingRun, uuid.UUID(r)).status for _, r, _ in queued}
    assert statuses == {"running"}
