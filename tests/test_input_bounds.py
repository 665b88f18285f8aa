"""Issue 26, parts 3 and 7, over the real API: every hostile input is a 4xx naming its field,
and prompts are bounded by CGD_MAX_PROMPT_CHARS from job creation to the last request.

Real API process, Postgres, Redis; the prompt-cap worker test runs a real Celery worker against
the simulator and asserts on what the simulator received.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cgd.simulator import SimulatorProcess
from cgd.templates.builtin import DEFAULT_SOURCES

pytestmark = pytest.mark.integration

ROW_CHARS = 40_000  # the rows: ~40 KB each
NO_SUCH = str(uuid.uuid4())  # bodies are refused before any id is looked up


@pytest.fixture
def dataset(client: httpx.Client) -> str:
    return _upload(client, 3, 20)


def _upload(client: httpx.Client, n: int, chars: int) -> str:
    rows = "".join(
        json.dumps({"question": f"Q{i}: " + "x" * chars + f" What is {i}+1?", "answer": str(i + 1)})
        + "\n"
        for i in range(n)
    )
    r = client.post("/v1/datasets", files={"file": ("d.jsonl", rows.encode())})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _job(dataset_id: str, **over: Any) -> dict[str, Any]:
    endpoint = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    body: dict[str, Any] = {
        "dataset_id": dataset_id,
        "student": dict(endpoint),
        "teacher": dict(endpoint),
        "preflight": False,  # nothing serves this endpoint; no worker runs the job
    }
    for key, value in over.items():
        role, _, name = key.partition("__")
        if name:
            body[role][name] = value
        else:
            body[key] = value
    return body


def _refused(r: httpx.Response, field: str, *words: str) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert detail["field"] == field, detail
    for word in words:
        assert word in detail["reason"], detail
    return dict(detail)


# --- part 7: every hostile input of the issue --------------------------------------------------


@pytest.mark.parametrize(
    ("over", "field", "why"),
    [
        ({"student__seed": 10**30}, "body.student.seed", "64 bits"),
        ({"student__max_tokens": 10**30}, "body.student.max_tokens", "64 bits"),
        ({"teacher__max_tokens": 10**30}, "body.teacher.max_tokens", "64 bits"),
        ({"teacher__max_tokens": 2**40}, "body.teacher.max_tokens", "at most"),
        ({"student__seed": 2**63 - 1}, "body.student.seed", "samples"),  # seed + sample overflows
        ({"student__stop": ["ok", "a\x00b"]}, "body.student.stop.1", "NUL"),
        ({"teacher__extra": {"top_k": float("inf")}}, "body.teacher.extra.top_k", "finite"),
        ({"teacher__extra": {"k\x00": 1}}, "body.teacher.extra.k\ufffd", "NUL"),
        ({"template": "cgd\x00"}, "body.template", "NUL"),
        ({"template": "cgd\ud800"}, "body.template", "unicode"),  # pydantic's own str check
        ({"teacher__extra": {"x": "a\ud800"}}, "body.teacher.extra.x", "surrogate"),
        ({"student__model": "m\x00"}, "body.student.model", "NUL"),
    ],
)
def test_hostile_job_fields_are_422_naming_the_field(
    client: httpx.Client, dataset: str, over: dict[str, Any], field: str, why: str
) -> None:
    r = client.post("/v1/jobs", content=_dumps(_job(dataset, **over)), headers=_JSON)
    _refused(r, field, why)


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ('{"job_ids": [], "split": {"seed": 1%s}}' % ("0" * 30), "body.split.seed", "less than"),
        ('{"filters": {"min_chars": 1%s}}' % ("0" * 30), "body.filters.min_chars", "less than"),
        (
            '{"filters": {"verdict_ratio": {"right": 1e999, "wrong": 1}}}',
            "body.filters.verdict_ratio.right",
            "finite",
        ),
        ('{"filters": {"verdict_ratio": {"right": NaN, "wrong": 1}}}',
         "body.filters.verdict_ratio.right", "finite"),
        ('{"name": "a\\u0000b"}', "body.name", "control"),
    ],
)  # fmt: skip
def test_hostile_snapshot_fields_are_422(
    client: httpx.Client, body: str, field: str, why: str
) -> None:
    _refused(client.post("/v1/snapshots", content=body, headers=_JSON), field, why)


@pytest.mark.parametrize(
    ("over", "field", "why"),
    [
        ({"eval": {"sets": ["math500:k=65"]}}, "body.eval.sets", "k at most 64"),
        ({"eval": {"sets": ["math500:k=1000000000"]}}, "body.eval.sets", "k at most 64"),
        ({"eval": {"sets": ["math500:k=4:n=100000"]}}, "body.eval.sets", "n at most"),
        ({"eval": {"max_new_tokens": 32_769}}, "body.eval.max_new_tokens", "32768"),
        ({"hyperparams": {"max_steps": 10_000_001}}, "body.hyperparams.max_steps", "10000000"),
        ({"hyperparams": {"max_steps": 10**30}}, "body.hyperparams.max_steps", "10000000"),
        ({"hyperparams": {"learning_rate": 0}}, "body.hyperparams.learning_rate", "greater"),
        ({"hyperparams": {"learning_rate": float("nan")}}, "body.hyperparams.learning_rate", ""),
        ({"base_model": "m\x00"}, "body.base_model", ""),
        ({"eval": {"sets": ["math500"], "select_on": "amc23:temperature=nan"}},
         "body.eval.select_on", "temperature"),
    ]
    + [
        ({"eval": {"sets": [f"math500:k=4:temperature={t}"]}}, "body.eval.sets", "temperature")
        for t in ("nan", "inf", "-1", "11")
    ],
)  # fmt: skip
def test_hostile_run_fields_are_422(
    client: httpx.Client, over: dict[str, Any], field: str, why: str
) -> None:
    body = {"snapshot_id": NO_SUCH, "base_model": "m", **over}
    _refused(client.post("/v1/training-runs", content=_dumps(body), headers=_JSON), field, why)
    body = {"snapshot_id": NO_SUCH, "base_model": "m", "modes": ["cgd"], **over}
    _refused(client.post("/v1/experiments", content=_dumps(body), headers=_JSON), field, why)


def test_sane_bounds_still_accepted_up_to_the_limit(client: httpx.Client) -> None:
    """The bounds are not off by one: the limits themselves pass validation (the run is then
    refused for its unknown snapshot, a 404, not a 422)."""
    body = {
        "snapshot_id": NO_SUCH,
        "base_model": "m",
        "hyperparams": {"max_steps": 10_000_000, "learning_rate": 1.0},
        "eval": {"sets": ["math500:k=64:temperature=10"], "max_new_tokens": 32_768},
    }
    r = client.post("/v1/training-runs", json=body)
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_nul_in_path_parameters_is_422(client: httpx.Client, method: str) -> None:
    body = None if method != "PUT" else json.dumps({"critique": DEFAULT_SOURCES.critique})
    r = client.request(method, "/v1/templates/a%00b", content=body, headers=_JSON)
    if method == "DELETE":  # no such route: 405, still a 4xx and no database call
        assert r.status_code == 405, r.text
        return
    _refused(r, "path.name", "NUL")


def test_nul_in_query_parameters_is_422(client: httpx.Client) -> None:
    _refused(client.get("/v1/jobs", params={"cursor": "a\x00b"}), "query.cursor", "NUL")


def test_lone_surrogate_in_a_template_is_422(client: httpx.Client) -> None:
    body = '{"name": "sur", "description": "a\\ud800b"}'
    _refused(client.post("/v1/templates", content=body, headers=_JSON), "body.description")


@pytest.mark.parametrize("name", ["lipsum", "cycler", "joiner", "namespace", "self", "range"])
def test_jinja_globals_are_refused_at_creation(client: httpx.Client, name: str) -> None:
    refine = DEFAULT_SOURCES.refine + "{{ " + name + " }}"
    r = client.post("/v1/templates", json={"name": f"g-{name}", "refine": refine})
    detail = _refused(r, "refine", name)
    assert "unknown variable" in detail["reason"]


# --- part 3: bounded prompts -------------------------------------------------------------------

# The amplifier: the question 100 times in the critique request.
LOOPING = DEFAULT_SOURCES.critique + "\n" + "{{ question }}" * 100
# The same, only once there is an answer: it passes the check at creation (answers are
# empty there) and amplifies in the worker.
LOOPING_LATER = (
    DEFAULT_SOURCES.critique + "\n{% if answer %}" + "{{ question }}" * 100 + "{% endif %}"
)


def test_a_looping_template_is_refused_at_creation(client: httpx.Client) -> None:
    dataset = _upload(client, 64, ROW_CHARS)
    r = client.post("/v1/templates", json={"name": "loop", "critique": LOOPING})
    assert r.status_code == 201, r.text
    started = time.monotonic()
    r = client.post("/v1/jobs", json=_job(dataset, template="loop"))
    elapsed = time.monotonic() - started
    detail = _refused(r, "template", "CGD_MAX_PROMPT_CHARS", "row")
    assert detail["setting"] == "CGD_MAX_PROMPT_CHARS"
    assert 1 <= detail["line"] <= 64 and detail["item_id"]
    assert elapsed < 5, elapsed  # each render stops at the cap
    # The built-in template on the same rows fits.
    assert client.post("/v1/jobs", json=_job(dataset)).status_code == 202


def test_a_row_longer_than_the_cap_is_refused_naming_it(client: httpx.Client) -> None:
    r = client.post(
        "/v1/datasets",
        files={"file": ("d.jsonl", (json.dumps({"question": "q" * 130_000}) + "\n").encode())},
    )
    assert r.status_code == 201, r.text
    detail = _refused(client.post("/v1/jobs", json=_job(r.json()["id"])), "dataset_id")
    assert (detail["line"], detail["setting"]) == (1, "CGD_MAX_PROMPT_CHARS")


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(["--port", "0", "--slots", "64", "--latency", "0.01"]) as s:
        yield s


def test_items_over_the_cap_fail_and_nothing_over_it_is_sent(
    client: httpx.Client, sim: SimulatorProcess, start_worker: Any
) -> None:
    cap = 100_000
    dataset = _upload(client, 64, ROW_CHARS)
    r = client.post("/v1/templates", json={"name": "later", "critique": LOOPING_LATER})
    assert r.status_code == 201, r.text
    endpoint = {"base_url": sim.base_url, "model": "m"}
    body = _job(dataset, template="later", student=endpoint, teacher=endpoint)
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text  # the answer is empty at creation: it fits
    job = r.json()["id"]

    worker = start_worker(CGD_MAX_PROMPT_CHARS=str(cap))
    rss_start = _rss_kib(worker.proc.pid)
    status = _wait(client, job)
    peak = _peak_kib(worker.proc.pid)

    assert status["counts"]["failed"] == 64, status
    assert status["errors"] == {"prompt_too_long": 64}, status
    rows = client.get(f"/v1/jobs/{job}/triplets", params={"limit": 100}).json()["data"]
    assert {"CGD_MAX_PROMPT_CHARS" in (t["error"] or "") for t in rows} == {True}
    stats = httpx.get(f"{sim.url}/sim/stats").json()
    # The probes (40 KB questions) were sent; no critique was: each would be 4 MB.
    assert stats["by_stage_model"].get("probe", {}).get("m") == 64, stats["by_stage_model"]
    assert "critique" not in stats["by_stage_model"], stats["by_stage_model"]
    assert 0 < stats["max_prompt_chars"] <= cap, stats["max_prompt_chars"]
    assert stats["max_request_bytes"] < 2 * cap, stats["max_request_bytes"]
    # Unbounded, 64 renders of 4 MB each grew the worker by hundreds of MB (issue 26: 546 MB).
    grown_mib = (peak - rss_start) / 1024
    print(f"worker peak RSS grew {grown_mib:.1f} MiB (start {rss_start / 1024:.1f} MiB)")
    assert grown_mib < 100, grown_mib


def _wait(client: httpx.Client, job: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job}").json()
        if status["status"] in ("completed", "failed", "cancelled"):
            return dict(status)
        time.sleep(0.3)
    raise AssertionError(f"job did not finish: {status}")


def _proc_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def _rss_kib(pid: int) -> int:
    return _proc_kib(pid, "VmRSS")


def _peak_kib(pid: int) -> int:
    return _proc_kib(pid, "VmHWM")


_JSON = {"content-type": "application/json"}


def _dumps(body: dict[str, Any]) -> bytes:
    # json.dumps writes inf as Infinity (Python's json, which FastAPI parses with, reads it
    # back); lone surrogates pass as \\ud800 escapes.
    return json.dumps(body).encode()


def test_a_diverged_runs_nan_loss_is_reported_as_null_not_refused() -> None:
    from cgd.runs.schemas import EventIn

    event = EventIn.model_validate_json('{"type": "step", "data": {"step": 7, "loss": NaN}}')
    assert event.data == {"step": 7, "loss": None}
    with pytest.raises(ValueError, match="64 bits"):
        EventIn.model_validate({"type": "step", "data": {"step": 7, "tokens": 10**30}})
