"""``cgd jobs``: start generation jobs, follow them, cancel them, retry failed items."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
)
from rich.text import Text

from cgd.cli.common import (
    AS_JSON,
    LIMIT,
    Column,
    api_client,
    duration,
    elapsed,
    err,
    exit_for,
    group,
    json_lines,
    list_rows,
    load_spec,
    out,
    quality_line,
    set_given,
    show_one,
    spec_option,
    watching,
    when,
)
from cgd.client import TERMINAL_STATUSES, CgdClient
from cgd.enums import Truncation, Verifier

app = group("Generation jobs: create, watch, cancel, retry failed items (REST API).")

COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("STATUS", lambda r: r["status"]),
    ("DONE", lambda r: f"{r['counts']['completed'] + r['counts']['failed']}"),
    ("TOTAL", lambda r: r["counts"]["total"]),
    ("FAILED", lambda r: r["counts"]["failed"]),
    ("TEACHER", lambda r: (r.get("spec") or {}).get("teacher", {}).get("model")),
    ("DATASET", lambda r: r.get("dataset_id")),
    ("CREATED", lambda r: when(r["created_at"])),
]


def _endpoint(
    base: dict[str, Any] | None,
    url: str | None,
    model: str | None,
    api_key: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    return set_given(
        dict(base or {}),
        [
            ("base_url", url),
            ("model", model),
            ("api_key", api_key),
            ("temperature", temperature),
            ("max_tokens", max_tokens),
        ],
    )


@app.command("create")
def jobs_create(
    ctx: typer.Context,
    spec: Path | None = spec_option("Job spec (YAML/JSON); flags override it"),
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset id"),
    teacher_url: str | None = typer.Option(
        None, help="Teacher's OpenAI-compatible base URL (http://host:8000/v1)"
    ),
    teacher_model: str | None = typer.Option(None, help="Teacher model name"),
    teacher_api_key: str | None = typer.Option(
        None, envvar="CGD_TEACHER_API_KEY", show_default=False, help="Teacher endpoint key"
    ),
    teacher_temperature: float | None = typer.Option(None, help="Teacher temperature"),
    teacher_max_tokens: int | None = typer.Option(None, help="Teacher max_tokens"),
    student_url: str | None = typer.Option(
        None, help="Student's base URL (default: the teacher's)"
    ),
    student_model: str | None = typer.Option(None, help="Student model name"),
    student_api_key: str | None = typer.Option(
        None, envvar="CGD_STUDENT_API_KEY", show_default=False, help="Student endpoint key"
    ),
    student_temperature: float | None = typer.Option(None, help="Student temperature"),
    student_max_tokens: int | None = typer.Option(None, help="Student max_tokens"),
    no_student: bool = typer.Option(
        False, "--no-student", help="Use the dataset's responses as the initial answers"
    ),
    temperature: float | None = typer.Option(None, help="Temperature for student and teacher"),
    max_tokens: int | None = typer.Option(None, help="max_tokens for student and teacher"),
    verifier: Verifier | None = typer.Option(None, help="Answer checker [default: math]"),
    samples: int | None = typer.Option(None, help="Initial answers per prompt [default: 1]"),
    template: str | None = typer.Option(
        None,
        help="Prompt template: cgd, cgd-standalone, cgd-detailed, a team template, name@N "
        "[default: cgd]",
    ),
    teacher_solution: bool = typer.Option(
        False,
        "--teacher-solution",
        help="Also ask the teacher to answer each question directly (needed by mode distill)",
    ),
    truncation: Truncation | None = typer.Option(None, help="On finish_reason=length"),
    chunk_size: int | None = typer.Option(None, help="Items per worker task"),
    idempotency_key: str | None = typer.Option(
        None, help="Makes a repeated create return the first job"
    ),
) -> None:
    """Start a generation job (probe → critique → refine); prints the job id last."""
    body = load_spec(spec)
    if dataset is not None:
        body["dataset_id"] = dataset
    if not body.get("dataset_id"):
        raise typer.BadParameter("give --dataset (or dataset_id in --spec)", param_hint="--dataset")
    body["teacher"] = _endpoint(
        body.get("teacher"),
        teacher_url,
        teacher_model,
        teacher_api_key,
        teacher_temperature if teacher_temperature is not None else temperature,
        teacher_max_tokens if teacher_max_tokens is not None else max_tokens,
    )
    if not body["teacher"].get("base_url") or not body["teacher"].get("model"):
        raise typer.BadParameter(
            "give --teacher-url and --teacher-model (or teacher in --spec)",
            param_hint="--teacher-url",
        )
    if no_student:
        if student_url or student_model:
            raise typer.BadParameter("--no-student takes no --student-url/--student-model")
        body["student"] = None
    elif student_model or student_url or body.get("student"):
        student = _endpoint(
            body.get("student"),
            student_url,
            student_model,
            student_api_key,
            student_temperature if student_temperature is not None else temperature,
            student_max_tokens if student_max_tokens is not None else max_tokens,
        )
        student.setdefault("base_url", body["teacher"]["base_url"])
        if not student.get("model"):
            raise typer.BadParameter("give --student-model", param_hint="--student-model")
        body["student"] = student
    elif "student" not in body:
        raise typer.BadParameter(
            "give --student-model (and --student-url; default the teacher's) or --no-student",
            param_hint="--student-model",
        )
    set_given(
        body,
        [
            ("verifier", verifier.value if verifier else None),
            ("samples_per_prompt", samples),
            ("template", template),
            ("truncation", truncation.value if truncation else None),
            ("chunk_size", chunk_size),
            ("teacher_solution", True if teacher_solution else None),
        ],
    )
    with api_client(ctx) as api:
        job = api.create_job(body, idempotency_key=idempotency_key)
    total = job.get("total_items")
    out.print(f"job {job['status']}" + (f": {total} items" if total is not None else ""))
    out.print(job["id"])


# --- watch -------------------------------------------------------------------------------------


def _stage_line(status: dict[str, Any]) -> str:
    stages = status.get("by_stage") or {}
    return "  ".join(f"{k} {v}" for k, v in stages.items())


def _errors(errors: dict[str, Any], sep: str) -> str:
    return sep.join(f"{k}={v}" for k, v in errors.items())


def _job_line(status: dict[str, Any]) -> str:
    c = status["counts"]
    done = c["completed"] + c["failed"]
    errors = status.get("errors") or {}
    line = (
        f"{status['status']:<9} {done}/{c['total']} ({100 * status.get('progress', 0):.0f}%)  "
        f"{_stage_line(status)}  {status.get('items_per_s', 0)} items/s  "
        f"ETA {duration(status.get('eta_s'))}"
    )
    if errors:
        line += "  errors " + _errors(errors, ", ")
    if status.get("paused"):
        p = status["paused"]
        line += f"  paused: {p.get('endpoint')} failing ({p.get('error')})"
    return line


def _job_summary(status: dict[str, Any]) -> str:
    c, tokens = status["counts"], status.get("tokens") or {}
    took = elapsed(status)
    line = (
        f"job {status['id']} {status['status']}"
        f"{' in ' + duration(took) if took is not None else ''}: "
        f"{c['completed']}/{c['total']} completed, {c['failed']} failed; "
        f"tokens prompt {tokens.get('prompt', 0)} completion {tokens.get('completion', 0)}"
    )
    if status.get("errors"):
        line += "; errors " + _errors(status["errors"], ", ")
    if status.get("error"):
        line += f"; {status['error']}"
    return line + "\n" + quality_line(status.get("quality"))


class _Text:
    """A renderable whose text the watcher replaces on each poll."""

    def __init__(self) -> None:
        self.text = Text("")

    def __rich__(self) -> Text:
        return self.text


@app.command("watch")
def jobs_watch(
    ctx: typer.Context,
    job_id: str,
    interval: float = typer.Option(1.0, help="Seconds between polls"),
    log_every: float = typer.Option(
        10.0, help="Without a terminal: seconds between progress lines"
    ),
) -> None:
    """Follow a job until it ends: progress, stage counts, items/s, ETA, errors.
    Exit code 0 when it completed, 1 when it failed or was cancelled."""
    with api_client(ctx) as api:
        status = api.get_job(job_id)
        with watching("the job keeps running"):
            if err.is_terminal:
                status = _watch_live(api, job_id, status, interval)
            else:
                status = _watch_lines(api, job_id, status, interval, log_every)
    out.print(_job_summary(status))
    raise exit_for(status["status"])


def _watch_live(
    api: CgdClient, job_id: str, status: dict[str, Any], interval: float
) -> dict[str, Any]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[state]:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} items/s"),
        TextColumn("ETA {task.fields[eta]}"),
        TextColumn("[red]{task.fields[errors]}"),
    )
    task = progress.add_task(
        "job", total=status["counts"]["total"], state="", rate=0, eta="-", errors=""
    )
    stages = _Text()
    with Live(Group(progress, stages), console=err, refresh_per_second=4):
        while True:
            c = status["counts"]
            progress.update(
                task,
                total=c["total"],
                completed=c["completed"] + c["failed"],
                state=status["status"],
                rate=status.get("items_per_s", 0),
                eta=duration(status.get("eta_s")),
                errors=_errors(status.get("errors") or {}, " "),
            )
            stages.text = Text(
                _stage_line(status) + "\n" + quality_line(status.get("quality")), style="dim"
            )
            if status["status"] in TERMINAL_STATUSES:
                return status
            time.sleep(interval)
            status = api.get_job(job_id)


def _watch_lines(
    api: CgdClient, job_id: str, status: dict[str, Any], interval: float, log_every: float
) -> dict[str, Any]:
    last_line, last_at, last_state = "", 0.0, ""
    while True:
        line, now = _job_line(status), time.monotonic()
        state_changed = status["status"] != last_state
        if line != last_line and (state_changed or now - last_at >= log_every):
            err.print(line)
            last_line, last_at, last_state = line, now, status["status"]
        if status["status"] in TERMINAL_STATUSES:
            if line != last_line:
                err.print(line)
            return status
        time.sleep(interval)
        status = api.get_job(job_id)


# --- show, ls, cancel, retry, triplets ---------------------------------------------------------


@app.command("show")
def jobs_show(ctx: typer.Context, job_id: str, as_json: bool = AS_JSON) -> None:
    """Show a job's status, counts, tokens, errors, quality numbers and spec."""
    show_one(ctx, lambda api: api.get_job(job_id), as_json, footer=_quality_footer)


def _quality_footer(status: dict[str, Any]) -> str:
    return quality_line(status.get("quality"))


@app.command("ls")
def jobs_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's jobs, newest first."""
    list_rows(ctx, lambda api: api.iter_jobs(page_size=min(limit, 200)), limit, as_json, COLUMNS)


@app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job: calls in flight are aborted, finished items are kept."""
    with api_client(ctx) as api:
        res = api.cancel_job(job_id)
    out.print(f"job {res['id']} {res['status']}")


@app.command("resume")
def jobs_resume(ctx: typer.Context, job_id: str) -> None:
    """Resume a paused job now (it also resumes by itself once its endpoint answers)."""
    with api_client(ctx) as api:
        res = api.resume_job(job_id)
    out.print(f"job {res['id']} {res['status']}")


@app.command("delete")
def jobs_delete(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job and delete it with its triplets; snapshots built from it keep theirs."""
    with api_client(ctx) as api:
        api.delete_job(job_id)
    out.print(f"job {job_id} deleted")


@app.command("retry-failed")
def jobs_retry_failed(ctx: typer.Context, job_id: str) -> None:
    """Re-run the job's failed items, each from its last completed stage."""
    with api_client(ctx) as api:
        res = api.retry_failed(job_id)
    out.print(f"job {res['id']}: {res['retried']} failed items queued again")


@app.command("triplets")
def jobs_triplets(
    ctx: typer.Context,
    job_id: str,
    limit: int = typer.Option(10, "--limit", "-n", help="Most triplets to print"),
    status: str | None = typer.Option(
        None, help="pending|probed|critiqued|refined|verified|failed"
    ),
    verdict: str | None = typer.Option(None, help="right|wrong|none"),
    initial_correct: bool | None = typer.Option(
        None, "--initial-correct/--initial-wrong", show_default=False
    ),
    refined_correct: bool | None = typer.Option(
        None, "--refined-correct/--refined-wrong", show_default=False
    ),
) -> None:
    """Print the job's triplets as JSON lines, filtered."""
    json_lines(
        ctx,
        lambda api: api.iter_triplets(
            job_id,
            page_size=min(limit, 1000),
            status=status,
            verdict=verdict,
            initial_correct=initial_correct,
            refined_correct=refined_correct,
        ),
        limit,
    )
