"""The web dashboard at /ui/ in a real headless browser (Playwright driving Debian's chromium;
`make test` installs both): sign in, watch a running job advance, filter and open a triplet
(escaped text, rendered LaTeX), a snapshot's drop reasons, a run's loss curve. Screenshots of
each page go to ``test-artifacts/ui/`` (or ``$CGD_TEST_ARTIFACTS/ui``) for a person to look at."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cgd.simulator import SimulatorProcess
from tests import test_training_runs
from tests.conftest import ROOT, data_file
from tests.test_run_curves import feed, post, start_run
from tests.test_training_runs import tiny_model as tiny_model  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = Path(os.environ.get("CGD_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"
XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
LATEX_QUESTION = f"{XSS} What is $\\frac{{1}}{{2}} + \\frac{{1}}{{2}}$?"
# Math as models and datasets often write it: no $ delimiters at all.
BARE_QUESTION = "BARE-MATH Halve one: is \\frac{1}{2} the same as \\boxed{\\frac{1}{2}}?"
BARE_REFERENCE = "\\frac{1}{2}"
CURRENCY_QUESTION = "CURRENCY A pen costs $5 and a book costs $12. What do both cost?"
POISON = "POISON-ROW"  # the simulator answers 500 to every call about it: the item fails
WINDOW = 1280


def chromium() -> str | None:
    return (
        os.environ.get("CGD_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    exe = chromium()
    if exe is None:
        pytest.skip("no chromium: `make test` installs it (scripts/tools.sh)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.errors = []  # console errors (CSP violations show up here) and uncaught exceptions
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def dataset_file(tmp_path: Path, n: int) -> Path:
    gsm = [json.loads(x) for x in data_file("gsm8k_train.jsonl").read_text().splitlines()[:n]]
    rows = [{"question": LATEX_QUESTION, "answer": "#### 1"}]
    rows += [{"question": BARE_QUESTION, "answer": BARE_REFERENCE}]
    rows += [{"question": f"{POISON}: what is 2 + 2?", "answer": "#### 4"}]
    rows += [{"question": CURRENCY_QUESTION, "answer": "#### 17"}]
    rows += [{"question": r["question"], "answer": r["answer"]} for r in gsm]
    path = tmp_path / "ui.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def assert_fits(page: Any, name: str) -> None:
    """No wider than a 1280-px window: nothing on the page scrolls sideways."""
    page.set_viewport_size({"width": WINDOW, "height": 1000})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WINDOW, (name, width)
    shot(page, f"{name}-1280")


def sign_in(page: Any, api: str, key: str) -> None:
    page.goto(f"{api}/ui/")
    page.wait_for_selector("form.signin")
    page.fill("#api-key", "cgd_not_a_key")
    page.click("button[type=submit]")
    page.wait_for_selector("form.signin .error")
    shot(page, "01-signin")
    page.fill("#api-key", key)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Jobs')")


def test_dashboard_end_to_end(  # type: ignore[no-untyped-def]
    page,
    api_server,
    client,
    start_worker,
    sessionmaker_,
    tiny_model,
    tmp_path,  # noqa: F811
) -> None:
    api = api_server.url
    key = client.headers["Authorization"].split()[1]
    # The page itself: strict CSP, nothing inline, nothing from elsewhere.
    r = httpx.get(f"{api}/ui/")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert all("src=" in tag for tag in r.text.split("<script")[1:])  # no inline script

    sign_in(page, api, key)
    assert page.evaluate("sessionStorage.getItem('cgd.apiKey')") == key

    data = dataset_file(tmp_path, 40)
    sim = SimulatorProcess(
        ["--port", "0", "--slots", "2", "--latency", "0.15", "--dataset", str(data)]
        + ["--poison", POISON]
    )
    try:
        start_worker()
        ds = client.post("/v1/datasets", files={"file": ("ui.jsonl", data.read_bytes())})
        assert ds.status_code == 201, ds.text
        page.goto(f"{api}/ui/#/datasets")
        page.wait_for_selector("td:has-text('ui.jsonl'), td:has-text('ui')")
        shot(page, "02-datasets")
        body = {
            "dataset_id": ds.json()["id"],
            "student": {"base_url": sim.base_url, "model": "student"},
            "teacher": {"base_url": sim.base_url, "model": "teacher"},
            "chunk_size": 10,
        }
        job_id = client.post("/v1/jobs", json=body).json()["id"]

        # Live progress: the page's own count goes up while the job runs.
        page.goto(f"{api}/ui/#/jobs/{job_id}")
        done = page.locator("#job-done")
        done.wait_for()
        page.wait_for_function(
            "() => +document.querySelector('#job-done').dataset.done > 0", timeout=60_000
        )
        first = int(done.get_attribute("data-done"))
        shot(page, "03-job-running")
        page.wait_for_function(
            f"() => +document.querySelector('#job-done').dataset.done > {first}", timeout=60_000
        )
        page.wait_for_selector("#job-status [data-status=completed]", timeout=120_000)
    finally:
        sim.stop()
    status = client.get(f"/v1/jobs/{job_id}").json()
    quality = page.locator("#quality").inner_text()
    assert f"{100 * status['quality']['initial_accuracy']:.1f}%" in quality
    assert "fix rate" in quality
    shot(page, "04-job-completed")

    # Triplet browser: a filter narrows the list; the planted triplet stays text, math renders.
    page.select_option("#triplet-filters select[name=initial_correct]", "false")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#triplet-list tbody tr')].every("
        "r => r.cells[3].textContent.includes('wrong'))"
    )
    n_wrong = page.locator("#triplet-list tbody tr").count()
    wrong_api = client.get(
        f"/v1/jobs/{job_id}/triplets", params={"initial_correct": "false", "limit": 50}
    ).json()["data"]
    assert n_wrong == len(wrong_api)
    page.select_option("#triplet-filters select[name=initial_correct]", "")
    page.wait_for_function(
        f"() => document.querySelectorAll('#triplet-list tbody tr').length > {n_wrong}"
    )
    page.locator("#triplet-list tbody tr", has_text="window.__pwned").first.click()
    detail = page.locator("#triplet-detail")
    detail.locator("#t-refined").wait_for()
    assert "<script>window.__pwned = 1</script>" in detail.locator("#t-question").inner_text()
    assert detail.locator("script, img").count() == 0
    assert detail.locator("#t-question math").count() == 1  # KaTeX rendered the fraction
    assert page.evaluate("window.__pwned") is None
    assert detail.locator("#t-critique").inner_text().strip()
    shot(page, "05-triplet")

    # Bare LaTeX (no $) renders too: in the question, the reference and the list.
    bare_row = page.locator("#triplet-list tbody tr", has_text="BARE-MATH")
    assert bare_row.locator("math").count() >= 1
    bare_row.first.click()
    detail.locator("#t-question", has_text="BARE-MATH").wait_for()
    question = detail.locator("#t-question")
    assert question.locator("math").count() == 2  # \frac{1}{2} and \boxed{\frac{1}{2}}
    assr = question.locator("math annotation").all_text_contents()
    assert any("\\boxed" in a for a in assr), assr
    assert "\\frac" not in question.inner_text()  # nothing left raw
    assert detail.locator("#t-reference math").count() == 1
    shot(page, "05b-bare-math")
    # Prices are not math: two $ with a space before the second one stay text.
    money = page.locator("#triplet-list tbody tr", has_text="CURRENCY")
    assert money.locator("math").count() == 0
    assert "costs $5 and a book costs $12" in money.inner_text()

    # A failed item is listed as failed, with its error kind, before it is opened.
    failed_row = page.locator("#triplet-list tbody tr", has_text=POISON)
    assert failed_row.locator("[data-status=failed]").inner_text() == "failed (server_error)"
    assert "none" not in failed_row.inner_text()
    failed_row.click()
    assert "server_error" in detail.locator("#t-error").inner_text()
    assert_fits(page, "05c-job")
    page.set_viewport_size({"width": 1400, "height": 1000})

    # Snapshot: drop reasons.
    snap = client.post(
        "/v1/snapshots",
        json={
            "name": "ui snapshot",
            "job_ids": [job_id],
            "filters": {"initial_correct": False},
            "split": {"val_fraction": 0.3},
        },
    ).json()
    page.goto(f"{api}/ui/#/snapshots/{snap['id']}")
    page.wait_for_selector("#drop-reasons")
    reasons = page.locator("#drop-reasons").inner_text()
    for reason, n in snap["stats"]["dropped"].items():
        assert reason in reasons and str(n) in reasons
    shot(page, "06-snapshot")
    assert_fits(page, "06-snapshot")

    # Run: the loss curve from its step events.
    run_id, token = start_run(client, sessionmaker_, snap["id"], tiny_model)
    # What made the run page 2,633 px wide: an event with long values, printed as one line of
    # JSON. A path with no space in it, a long message and nested fields.
    long_path = "/" + "/".join(f"checkpoints-{i:03d}" for i in range(60))
    words = " ".join(["the trainer says something long"] * 40)
    post(api, run_id, token, "log", {"message": words, "path": long_path, "config": {"a": 1}})
    feed(api, run_id, token)
    page.goto(f"{api}/ui/#/runs/{run_id}")
    loss = page.locator("svg[data-chart=loss] path[data-series=loss]")
    loss.wait_for()
    assert loss.get_attribute("d").count("L") == 7  # 8 steps
    assert page.locator("svg[data-chart='eval accuracy'] path[data-series=math500]").count() == 1
    assert '"heartbeat"' not in page.locator("main").inner_text()  # liveness, not news
    shot(page, "07-run")
    # Events fit the window, and show their fields, not a line of JSON.
    assert_fits(page, "07-run")
    assert page.locator("ul.fields .field", has_text="path").count() == 1
    assert '"path":' not in page.locator("main").inner_text()

    for name in ("jobs", "snapshots", "runs"):
        page.goto(f"{api}/ui/#/{name}")
        page.wait_for_selector("main table")
        shot(page, f"08-{name}")

    # No CSP violation, no script error; the one 401 is the wrong key tried at sign-in.
    assert [e for e in page.errors if "status of 401" not in e] == []
    page.click("#signout")
    page.wait_for_selector("form.signin")
    assert page.evaluate("sessionStorage.getItem('cgd.apiKey')") is None


def test_ui_headers_and_no_remote_assets(api_server) -> None:  # type: ignore[no-untyped-def]
    """Every file under /ui carries the CSP; no page references another origin."""
    for path in ("/ui/", "/ui/app.css", "/ui/js/main.js", "/ui/vendor/katex/katex.min.js"):
        r = httpx.get(f"{api_server.url}{path}")
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert r.headers["x-content-type-options"] == "nosniff"
    ui = Path(__file__).resolve().parents[1] / "services" / "api" / "ui"
    for f in [*ui.glob("*.*"), *ui.glob("js/**/*.js")]:
        text = f.read_text().replace("http://www.w3.org/2000/svg", "")  # the SVG namespace
        assert "http://" not in text and "https://" not in text, f
        assert ".innerHTML" not in text, f  # data enters the page as text nodes only
    r = httpx.get(f"{api_server.url}/ui/../pyproject.toml")
    assert r.status_code == 404


snapshot_id = test_training_runs.snapshot_id  # fixture: a ready 8-row snapshot


def _finish_like_a_trainer(api: str, run_id: str, token: str, correct: list[bool]) -> None:
    """What a trainer posts for an experiment's run (the real trainer is tested in
    tests/test_experiments.py; here the page is)."""
    post(api, run_id, token, "status", {"status": "running"})
    post(api, run_id, token, "data", {"rows": 8, "rows_sha256": "f" * 64, "total_steps": 2})
    post(
        api,
        run_id,
        token,
        "step",
        {"step": 2, "total_steps": 2, "loss": 0.5, "tokens_trained": 900},
    )
    ids = [f"p{i}" for i in range(len(correct))]
    problems = {"ids": ids, "correct": correct, "no_answer": [False] * len(ids), "k": 1}
    acc = sum(correct) / len(correct)
    final = {"step": 2, "accuracy": {"math500": acc}, "n": {"math500": len(ids)}}
    post(api, run_id, token, "eval", {**final, "problems": {"math500": problems}})
    post(api, run_id, token, "status", {"status": "finished"})


def test_experiment_page_shows_runs_side_by_side_with_table_and_chart(  # type: ignore[no-untyped-def]
    page, api_server, client, sessionmaker_, snapshot_id, tiny_model
) -> None:
    from cgd.db.models import TrainingRun
    from cgd.runs.ops import _hash

    api = api_server.url
    body = {"snapshot_id": snapshot_id, "base_model": tiny_model.name, "modes": ["cgd", "sft"]}
    exp = client.post("/v1/experiments", json=body).json()
    sign_in(page, api, client.headers["Authorization"].split()[1])
    page.goto(f"{api}/ui/#/experiments/{exp['id']}")
    page.wait_for_selector("#same-rows")
    assert "No finished run yet" in page.locator("main").inner_text()
    outcomes = {"cgd": [True] * 30 + [False] * 10, "sft": [True] * 12 + [False] * 28}
    for run in exp["runs"]:
        token = secrets.token_urlsafe(16)
        with sessionmaker_.begin() as s:
            s.get(TrainingRun, uuid.UUID(run["id"])).token_hash = _hash(token)
        _finish_like_a_trainer(api, run["id"], token, outcomes[run["mode"]])
    page.wait_for_selector("#report table", timeout=30_000)
    report = page.locator("#report").inner_text()
    assert "75.0 [" in report and "30.0 [" in report and "-45.0 [" in report
    assert "worse than cgd" in report
    assert page.locator("#same-rows").inner_text().endswith("yes")
    bars = page.locator("#experiment-chart svg rect.bar")
    assert bars.count() == 2 and bars.first.get_attribute("data-set") == "math500"
    shot(page, "09-experiment")
    assert_fits(page, "09-experiment")
    page.goto(f"{api}/ui/#/experiments")
    page.wait_for_selector(f"main a[href='#/experiments/{exp['id']}']")
    shot(page, "10-experiments")
    assert [e for e in page.errors if "status of 401" not in e] == []  # 401: sign-in's wrong key
