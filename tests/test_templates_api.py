"""/v1/templates over the real API: versions, validation, team scope, and jobs pinning a version."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

CRITIQUE = (
    "<question>\n{{ question }}\n</question>\n\n<student_answer>\n{{ answer }}\n"
    "</student_answer>\n\nCheck units first. End with exactly `Conclusion: right` or "
    "`Conclusion: wrong`."
)


def _dataset(client: httpx.Client) -> str:
    rows = [{"question": "What is 2+2?", "answer": "#### 4"}]
    r = client.post(
        "/v1/datasets",
        files={"file": ("d.jsonl", "".join(json.dumps(x) + "\n" for x in rows).encode())},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _job(client: httpx.Client, dataset_id: str, template: str) -> httpx.Response:
    endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    body: dict[str, Any] = {
        "dataset_id": dataset_id,
        "student": endpoint,
        "teacher": endpoint,
        "template": template,
        "preflight": False,  # nothing serves this endpoint; no worker runs the job
    }
    return client.post("/v1/jobs", json=body)


def test_template_versions_and_jobs_pin_them(client: httpx.Client) -> None:
    r = client.post("/v1/templates", json={"name": "units", "critique": CRITIQUE})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["version"], v1["version_tag"], v1["builtin"]) == (1, "units@1", False)
    assert v1["refine"] == client.get("/v1/templates/cgd").json()["refine"]  # defaults kept
    assert client.post("/v1/templates", json={"name": "units"}).status_code == 409

    ds = _dataset(client)
    job1 = _job(client, ds, "units")
    assert job1.status_code == 202, job1.text
    r = client.put("/v1/templates/units", json={"critique": CRITIQUE.replace("units", "signs")})
    assert r.status_code == 200 and r.json()["version"] == 2
    job2 = _job(client, ds, "units").json()["id"]
    pinned = _job(client, ds, "units@1").json()["id"]
    versions = [
        client.get(f"/v1/jobs/{j}").json()["template_version"]
        for j in (job1.json()["id"], job2, pinned)
    ]
    assert versions == ["units@1", "units@2", "units@1"]
    assert "Check units" in client.get("/v1/templates/units?version=1").json()["critique"]
    assert "Check signs" in client.get("/v1/templates/units").json()["critique"]
    assert client.get("/v1/templates/units?version=99999999999").status_code == 422

    names = [t["name"] for t in client.get("/v1/templates").json()["data"]]
    assert names == ["cgd", "cgd-detailed", "cgd-standalone", "units"]
    page1 = client.get("/v1/templates", params={"limit": 2}).json()
    page2 = client.get("/v1/templates", params={"cursor": page1["next_cursor"]}).json()
    assert [t["name"] for t in page1["data"] + page2["data"]] == names
    assert page2["next_cursor"] is None

    for ref in ("nope", "units@9", "units@x", "units@99999999999"):
        r = _job(client, ds, ref)
        assert r.status_code == 422 and r.json()["detail"]["field"] == "template", r.text
    for j in (job1.json()["id"], job2, pinned):  # no worker here: leave nothing queued
        assert client.post(f"/v1/jobs/{j}/cancel").status_code == 200


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"critique": "{{ question }} {{ answer }}"}, "critique", "verdict line"),
        ({"solve": "{{ question.__class__.__mro__ }}"}, "solve", "Getattr"),
        ({"refine": "{{ secret }}"}, "refine", "unknown variable"),
        ({"name": "cgd"}, "name", "built-in"),
    ],
)
def test_invalid_templates_are_422_naming_the_part(
    client: httpx.Client, body: dict[str, str], field: str, reason: str
) -> None:
    r = client.post("/v1/templates", json={"name": "bad", **body})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["field"] == field and reason in detail["reason"], detail
    assert client.get("/v1/templates/bad").status_code == 404  # nothing half-written
    r = client.post("/v1/templates", json={"name": "Bad Name!"})
    assert r.status_code == 422 and "name" in r.text


def test_templates_are_team_scoped(client: httpx.Client, other_client: httpx.Client) -> None:
    assert client.post("/v1/templates", json={"name": "mine"}).status_code == 201
    assert other_client.get("/v1/templates/mine").status_code == 404
    assert other_client.put("/v1/templates/mine", json={}).status_code == 404
    assert "mine" not in [t["name"] for t in other_client.get("/v1/templates").json()["data"]]
    r = _job(other_client, _dataset(other_client), "mine")
    assert r.status_code == 422 and r.json()["detail"]["field"] == "template"
    # The other team may use the name for its own template.
    assert other_client.post("/v1/templates", json={"name": "mine"}).status_code == 201


def test_python_client_templates(client: httpx.Client) -> None:
    from cgd.client import CgdApiError, CgdClient

    key = client.headers["Authorization"].split()[1]
    with CgdClient(str(client.base_url), key) as api:
        assert api.create_template("viaclient", critique=CRITIQUE)["version_tag"] == "viaclient@1"
        assert api.update_template("viaclient", description="v2")["version"] == 2
        assert api.get_template("viaclient", version=1)["description"] is None
        assert "viaclient" in [t["name"] for t in api.list_templates()["data"]]
        with pytest.raises(CgdApiError) as exc:
            api.create_template("broken", critique="{{ question }}")
        assert exc.value.status == 422
