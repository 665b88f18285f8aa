"""The team side of the ``cgd`` command line: datasets, generation jobs, snapshots and training
runs over the REST API (built on :mod:`cgd.client`). Mounted on the ``cgd`` app by
:func:`mount`::

    cgd datasets push FILE [--name --prompt-field --reference-field --response-field --id-field]
    cgd datasets ls | show ID | items ID | rm ID
    cgd jobs create --dataset ID --teacher-url URL --teacher-model M
                    [--student-url URL --student-model M | --no-student] [--spec job.yaml] …
    cgd jobs watch ID | show ID | ls | cancel ID | retry-failed ID | triplets ID
    cgd snapshots create --job ID [--job ID] [--spec curation.yaml] [--name N]
    cgd snapshots export ID -o FILE [--format jsonl|parquet --layout … --mode … --split …]
    cgd snapshots show ID | card ID | ls | rm ID
    cgd runs create --snapshot ID --base-model M [--mode --method --lr --max-steps …]
    cgd runs watch ID | show ID | ls | events ID | cancel ID

Connection: ``--api-url``/``--api-key`` after the group name (``cgd jobs --api-url URL ls``) or
the environment, ``CGD_API_URL`` (default ``http://127.0.0.1:8000``) and ``CGD_API_KEY``.

Output: results on stdout, progress bars and messages on stderr. ``create``/``push`` print the
new id as the last stdout line (``ID=$(cgd datasets push f.jsonl | tail -1)``); ``ls``/``show``
take ``--json`` for machine-readable output.

Exit codes:

* 0 — success (``watch``: the job/run completed)
* 1 — the job, run or snapshot ended ``failed`` or ``cancelled``
* 2 — usage error (bad options, unreadable spec file)
* 3 — the API refused the request (4xx: 401 bad key, 404 unknown id, 409, 413, 422 invalid)
* 4 — the API is unreachable or answered 5xx
* 130 — interrupted (Ctrl-C); a watched job or run keeps going
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.filesize import decimal as fmt_bytes
from rich.live import Live
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from cgd.client import TERMINAL_STATUSES, CgdApiError, CgdClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (pipes, CI logs): wide lines instead of wrapping at 80 columns.
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(
        stderr=stderr,
        width=200 if wide else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
    )


out = _console(stderr=False)
err = _console(stderr=True)


# --- connection and errors ---------------------------------------------------------------------


def _connection(
    ctx: typer.Context,
    api_url: str | None = typer.Option(
        None, "--api-url", envvar="CGD_API_URL", help="API base URL", show_default=False
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="CGD_API_KEY", help="API key", show_default=False
    ),
) -> None:
    ctx.obj = {"api_url": api_url, "api_key": api_key}


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(no_args_is_help=True, help=help_text, callback=_connection)


datasets_app = _group("Datasets: upload prompt files, list and inspect them (REST API).")
jobs_app = _group("Generation jobs: create, watch, cancel, retry failed items (REST API).")
snapshots_app = _group("Snapshots: curate finished jobs, export training files (REST API).")
runs_app = _group("Training runs: start, watch loss and eval, cancel (REST API).")


def mount(app: typer.Typer) -> None:
    """Adds the ``datasets``, ``jobs``, ``snapshots`` and ``runs`` groups to ``app``."""
    app.add_typer(datasets_app, name="datasets")
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(snapshots_app, name="snapshots")
    app.add_typer(runs_app, name="runs")


def _exit_code(exc: CgdApiError) -> int:
    return EXIT_API_ERROR if 400 <= exc.status < 500 else EXIT_UNREACHABLE


def _report(exc: CgdApiError) -> None:
    if exc.status == 401:
        err.print(f"error: the API refused the key ({exc}); check CGD_API_KEY (or --api-key)")
    elif exc.status == 404:
        err.print(f"error: not found ({exc})")
    elif exc.status == 422:
        err.print(f"error: invalid request ({exc})")
    else:
        err.print(f"error: {exc}")
    if exc.hint and exc.status not in (401,):
        err.print(f"hint: {exc.hint}")


@contextlib.contextmanager
def _api(ctx: typer.Context) -> Iterator[CgdClient]:
    """A client for one command; API errors become a message and an exit code."""
    obj = ctx.obj or {}
    client = CgdClient(api_url=obj.get("api_url"), api_key=obj.get("api_key"))
    try:
        yield client
    except CgdApiError as exc:
        _report(exc)
        raise typer.Exit(_exit_code(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        client.close()


# --- output helpers ----------------------------------------------------------------------------


def _compact(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def _print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, default=str), highlight=False)


def _emit(renderable: Any) -> None:
    """Prints a rich renderable without the trailing blanks rich pads table cells with."""
    with out.capture() as captured:
        out.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _print_fields(obj: dict[str, Any], keys: list[str] | None = None) -> None:
    keys = [k for k in (keys or list(obj)) if k in obj]
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        out.print(f"{key.ljust(width)}  {_compact(obj[key])}")


def _print_table(rows: list[dict[str, Any]], columns: list[tuple[str, Any]]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for title, _ in columns:
        table.add_column(title, no_wrap=True)
    for row in rows:
        table.add_row(*(_compact(get(row)) for _, get in columns))
    _emit(table)


def _take(it: Iterator[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for row in it:
        if len(rows) >= limit:
            break
        rows.append(row)
    return rows


def _when(value: Any) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _elapsed(obj: dict[str, Any]) -> float | None:
    start, end = obj.get("started_at") or obj.get("created_at"), obj.get("finished_at")
    if not start or not end:
        return None
    try:
        return (
            datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
        ).total_seconds()
    except ValueError:
        return None


def _load_spec(path: Path | None) -> dict[str, Any]:
    """A YAML or JSON spec file as a dict (exit 2 when it is unreadable or not a mapping)."""
    if path is None:
        return {}
    import yaml

    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--spec") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{path} must hold a mapping", param_hint="--spec")
    return data


LIMIT = typer.Option(50, "--limit", "-n", help="Most rows to show")
AS_JSON = typer.Option(False, "--json", help="Machine-readable JSON output")


# --- datasets ----------------------------------------------------------------------------------


@datasets_app.command("push")
def datasets_push(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help=".jsonl, .jsonl.gz, .csv, .parquet"
    ),
    name: str | None = typer.Option(None, help="Dataset name (default: the file name)"),
    prompt_field: str | None = typer.Option(
        None, help="Prompt column (default: first of prompt/question/problem)"
    ),
    reference_field: str | None = typer.Option(
        None, help="Reference answer column (default: first of answer/reference/solution)"
    ),
    response_field: str | None = typer.Option(
        None, help="Column with pre-existing initial answers (for jobs with --no-student)"
    ),
    id_field: str | None = typer.Option(None, help="Column with stable item ids"),
    idempotency_key: str | None = typer.Option(
        None, help="Makes a repeated push return the first dataset instead of a new one"
    ),
) -> None:
    """Upload a dataset file (streamed from disk); prints the new dataset id last."""
    size = file.stat().st_size
    with _api(ctx) as api:
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        with progress:
            task = progress.add_task(f"uploading {file.name}", total=size)

            def on_progress(done: int, total: int | None) -> None:
                progress.update(task, completed=done)
                if done >= size:
                    progress.update(task, description="server is checking the rows")

            ds = api.upload_dataset(
                file,
                name=name,
                prompt_field=prompt_field,
                reference_field=reference_field,
                response_field=response_field,
                id_field=id_field,
                idempotency_key=idempotency_key,
                progress=on_progress,
            )
    fields = " ".join(f"{k}={v}" for k, v in (ds.get("fields") or {}).items() if v)
    out.print(
        f"dataset {ds['name']}: {ds['num_items']} items "
        f"({ds.get('format')}, {fmt_bytes(int(ds.get('size_bytes') or size))}) {fields}".rstrip()
    )
    out.print(ds["id"])


@datasets_app.command("ls")
def datasets_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's datasets, newest first."""
    with _api(ctx) as api:
        rows = _take(api.iter_datasets(page_size=min(limit, 1000)), limit)
    if as_json:
        _print_json(rows)
        return
    _print_table(
        rows,
        [
            ("ID", lambda r: r["id"]),
            ("NAME", lambda r: r["name"]),
            ("ITEMS", lambda r: r["num_items"]),
            ("FORMAT", lambda r: r["format"]),
            ("SIZE", lambda r: fmt_bytes(int(r["size_bytes"]))),
            ("CREATED", lambda r: _when(r["created_at"])),
        ],
    )


@datasets_app.command("show")
def datasets_show(ctx: typer.Context, dataset_id: str, as_json: bool = AS_JSON) -> None:
    """Show one dataset: size, field mapping, stats."""
    with _api(ctx) as api:
        ds = api.get_dataset(dataset_id)
    if as_json:
        _print_json(ds)
        return
    _print_fields(ds)


@datasets_app.command("items")
def datasets_items(
    ctx: typer.Context, dataset_id: str, limit: int = typer.Option(10, "--limit", "-n")
) -> None:
    """Print the dataset's first items as JSON lines."""
    with _api(ctx) as api:
        for item in _take(api.iter_items(dataset_id, page_size=min(limit, 1000)), limit):
            out.print(json.dumps(item, default=str, ensure_ascii=False))


@datasets_app.command("rm")
def datasets_rm(ctx: typer.Context, dataset_id: str) -> None:
    """Delete a dataset."""
    with _api(ctx) as api:
        api.delete_dataset(dataset_id)
    out.print(f"deleted dataset {dataset_id}")


# --- jobs --------------------------------------------------------------------------------------


class Verifier(StrEnum):
    math = "math"
    choice = "choice"
    exact = "exact"
    none = "none"


class Truncation(StrEnum):
    fail = "fail"
    retry_larger = "retry_larger"


def _endpoint(
    base: dict[str, Any] | None,
    url: str | None,
    model: str | None,
    api_key: str | None,
    temperature: float | None,
    max_tokens: int | None,
) -> dict[str, Any]:
    cfg = dict(base or {})
    for key, value in (
        ("base_url", url),
        ("model", model),
        ("api_key", api_key),
        ("temperature", temperature),
        ("max_tokens", max_tokens),
    ):
        if value is not None:
            cfg[key] = value
    return cfg


@jobs_app.command("create")
def jobs_create(
    ctx: typer.Context,
    spec: Path | None = typer.Option(
        None, "--spec", exists=True, dir_okay=False, help="Job spec (YAML/JSON); flags override it"
    ),
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
    template: str | None = typer.Option(None, help="Prompt template [default: cgd]"),
    truncation: Truncation | None = typer.Option(None, help="On finish_reason=length"),
    chunk_size: int | None = typer.Option(None, help="Items per worker task"),
    idempotency_key: str | None = typer.Option(
        None, help="Makes a repeated create return the first job"
    ),
) -> None:
    """Start a generation job (probe → critique → refine); prints the job id last."""
    body = _load_spec(spec)
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
    for key, value in (
        ("verifier", verifier.value if verifier else None),
        ("samples_per_prompt", samples),
        ("template", template),
        ("truncation", truncation.value if truncation else None),
        ("chunk_size", chunk_size),
    ):
        if value is not None:
            body[key] = value
    with _api(ctx) as api:
        job = api.create_job(body, idempotency_key=idempotency_key)
    total = job.get("total_items")
    out.print(f"job {job['status']}" + (f": {total} items" if total is not None else ""))
    out.print(job["id"])


def _stage_line(status: dict[str, Any]) -> str:
    stages = status.get("by_stage") or {}
    return "  ".join(f"{k} {v}" for k, v in stages.items())


def _job_line(status: dict[str, Any]) -> str:
    c = status["counts"]
    done = c["completed"] + c["failed"]
    errors = status.get("errors") or {}
    line = (
        f"{status['status']:<9} {done}/{c['total']} ({100 * status.get('progress', 0):.0f}%)  "
        f"{_stage_line(status)}  {status.get('items_per_s', 0)} items/s  "
        f"ETA {_duration(status.get('eta_s'))}"
    )
    if errors:
        line += "  errors " + ", ".join(f"{k}={v}" for k, v in errors.items())
    return line


def _job_summary(status: dict[str, Any]) -> str:
    c, tokens = status["counts"], status.get("tokens") or {}
    line = (
        f"job {status['id']} {status['status']}"
        f"{' in ' + _duration(_elapsed(status)) if _elapsed(status) is not None else ''}: "
        f"{c['completed']}/{c['total']} completed, {c['failed']} failed; "
        f"tokens prompt {tokens.get('prompt', 0)} completion {tokens.get('completion', 0)}"
    )
    if status.get("errors"):
        line += "; errors " + ", ".join(f"{k}={v}" for k, v in status["errors"].items())
    if status.get("error"):
        line += f"; {status['error']}"
    return line


class _Text:
    """A renderable whose text the watcher replaces on each poll."""

    def __init__(self) -> None:
        self.text = Text("")

    def __rich__(self) -> Text:
        return self.text


@jobs_app.command("watch")
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
    with _api(ctx) as api:
        status = api.get_job(job_id)
        try:
            if err.is_terminal:
                status = _watch_live(api, job_id, status, interval)
            else:
                status = _watch_lines(api, job_id, status, interval, log_every)
        except KeyboardInterrupt:
            err.print("stopped watching; the job keeps running")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    out.print(_job_summary(status))
    raise typer.Exit(EXIT_OK if status["status"] == "completed" else EXIT_FAILED)


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
            errors = status.get("errors") or {}
            progress.update(
                task,
                total=c["total"],
                completed=c["completed"] + c["failed"],
                state=status["status"],
                rate=status.get("items_per_s", 0),
                eta=_duration(status.get("eta_s")),
                errors=" ".join(f"{k}={v}" for k, v in errors.items()),
            )
            stages.text = Text(_stage_line(status), style="dim")
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


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str, as_json: bool = AS_JSON) -> None:
    """Show a job's status, counts, tokens, errors and spec."""
    with _api(ctx) as api:
        status = api.get_job(job_id)
    if as_json:
        _print_json(status)
        return
    _print_fields(status)


@jobs_app.command("ls")
def jobs_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's jobs, newest first."""
    with _api(ctx) as api:
        rows = _take(api.iter_jobs(page_size=min(limit, 200)), limit)
    if as_json:
        _print_json(rows)
        return
    _print_table(
        rows,
        [
            ("ID", lambda r: r["id"]),
            ("STATUS", lambda r: r["status"]),
            ("DONE", lambda r: f"{r['counts']['completed'] + r['counts']['failed']}"),
            ("TOTAL", lambda r: r["counts"]["total"]),
            ("FAILED", lambda r: r["counts"]["failed"]),
            ("TEACHER", lambda r: (r.get("spec") or {}).get("teacher", {}).get("model")),
            ("DATASET", lambda r: r.get("dataset_id")),
            ("CREATED", lambda r: _when(r["created_at"])),
        ],
    )


@jobs_app.command("cancel")
def jobs_cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job: calls in flight are aborted, finished items are kept."""
    with _api(ctx) as api:
        res = api.cancel_job(job_id)
    out.print(f"job {res['id']} {res['status']}")


@jobs_app.command("retry-failed")
def jobs_retry_failed(ctx: typer.Context, job_id: str) -> None:
    """Re-run the job's failed items, each from its last completed stage."""
    with _api(ctx) as api:
        res = api.retry_failed(job_id)
    out.print(f"job {res['id']}: {res['retried']} failed items queued again")


@jobs_app.command("triplets")
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
    with _api(ctx) as api:
        it = api.iter_triplets(
            job_id,
            page_size=min(limit, 1000),
            status=status,  # type: ignore[arg-type]
            verdict=verdict,  # type: ignore[arg-type]
            initial_correct=initial_correct,
            refined_correct=refined_correct,
        )
        for row in _take(it, limit):
            out.print(json.dumps(row, default=str, ensure_ascii=False))


# --- snapshots ---------------------------------------------------------------------------------


class Format(StrEnum):
    jsonl = "jsonl"
    parquet = "parquet"


class Layout(StrEnum):
    native = "native"
    messages = "messages"
    prompt_completion = "prompt-completion"
    alpaca = "alpaca"


class Mode(StrEnum):
    cgd = "cgd"
    sft = "sft"
    distill = "distill"
    cft = "cft"
    no_critique = "no-critique"


class Split(StrEnum):
    train = "train"
    val = "val"
    all = "all"


def _snapshot_summary(snap: dict[str, Any]) -> str:
    stats = snap.get("stats") or {}
    dropped = {k: v for k, v in (stats.get("dropped") or {}).items() if v}
    parts = [f"snapshot {snap.get('name') or snap['id']} {snap['status']}"]
    if snap.get("num_items") is not None:
        parts.append(f": {snap['num_items']} items")
    if stats:
        parts.append(
            f" (input {stats.get('input', '-')}, train {stats.get('train', '-')}, "
            f"val {stats.get('val', '-')}"
            + (", dropped " + ", ".join(f"{k}={v}" for k, v in dropped.items()) if dropped else "")
            + ")"
        )
    if snap.get("content_hash"):
        parts.append(f" hash {str(snap['content_hash'])[:16]}")
    if snap.get("error"):
        parts.append(f"; {snap['error']}")
    return "".join(parts)


@snapshots_app.command("create")
def snapshots_create(
    ctx: typer.Context,
    job: list[str] = typer.Option(None, "--job", "-j", help="A finished job's id (repeatable)"),
    spec: Path | None = typer.Option(
        None, "--spec", exists=True, dir_okay=False, help="Curation spec (YAML/JSON)"
    ),
    name: str | None = typer.Option(None, help="Snapshot name"),
    wait: bool = typer.Option(True, help="Wait while a large snapshot is being built"),
    interval: float = typer.Option(1.0, help="Seconds between polls while building"),
) -> None:
    """Curate finished jobs into an immutable snapshot; prints the snapshot id last.
    Exit code 1 when building it failed."""
    body = _load_spec(spec)
    if not job and not body.get("job_ids"):
        raise typer.BadParameter("give --job (or job_ids in --spec)", param_hint="--job")
    with _api(ctx) as api:
        snap = api.create_snapshot(body, job_ids=list(job) if job else None, name=name)
        if wait and snap["status"] == "building":
            with err.status(f"building snapshot {snap['id']}…", spinner="dots"):
                snap = api.wait_snapshot(snap["id"], poll_s=interval)
    out.print(_snapshot_summary(snap))
    out.print(snap["id"])
    if snap["status"] == "failed":
        raise typer.Exit(EXIT_FAILED)


@snapshots_app.command("export")
def snapshots_export(
    ctx: typer.Context,
    snapshot_id: str,
    output: Path = typer.Option(..., "--output", "-o", dir_okay=False, help="File to write"),
    fmt: Format = typer.Option(Format.jsonl, "--format", help="File format"),
    layout: Layout = typer.Option(Layout.native, help="Row layout"),
    mode: Mode = typer.Option(Mode.cgd, help="Training mode the rows are shaped for"),
    split: Split = typer.Option(Split.all, help="Which split"),
) -> None:
    """Download a snapshot as a training file (streamed to disk)."""
    with _api(ctx) as api:
        progress = Progress(
            TextColumn("{task.description}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        with progress:
            task = progress.add_task(f"exporting {snapshot_id}", total=None)
            res = api.export_snapshot(
                snapshot_id,
                output,
                format=fmt.value,  # type: ignore[arg-type]
                layout=layout.value,  # type: ignore[arg-type]
                mode=mode.value,  # type: ignore[arg-type]
                split=split.value,  # type: ignore[arg-type]
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    rows = ""
    if fmt is Format.jsonl:
        with open(res["path"], "rb") as f:
            rows = f", {sum(1 for _ in f)} rows"
    out.print(
        f"wrote {res['path']} ({fmt_bytes(res['bytes'])}{rows}; "
        f"{layout.value}/{mode.value}/{split.value}; content hash {res['content_hash'] or '-'})"
    )


@snapshots_app.command("show")
def snapshots_show(ctx: typer.Context, snapshot_id: str, as_json: bool = AS_JSON) -> None:
    """Show a snapshot: status, stats, lineage."""
    with _api(ctx) as api:
        snap = api.get_snapshot(snapshot_id)
    if as_json:
        _print_json(snap)
        return
    _print_fields(snap)


@snapshots_app.command("card")
def snapshots_card(ctx: typer.Context, snapshot_id: str, as_json: bool = AS_JSON) -> None:
    """Print the snapshot's dataset card (Markdown; --json for the data behind it)."""
    with _api(ctx) as api:
        if as_json:
            _print_json(api.snapshot_card(snapshot_id))
            return
        text = api.snapshot_card_markdown(snapshot_id)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@snapshots_app.command("ls")
def snapshots_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's snapshots, newest first."""
    with _api(ctx) as api:
        rows = _take(api.iter_snapshots(page_size=min(limit, 200)), limit)
    if as_json:
        _print_json(rows)
        return
    _print_table(
        rows,
        [
            ("ID", lambda r: r["id"]),
            ("NAME", lambda r: r.get("name")),
            ("STATUS", lambda r: r["status"]),
            ("ITEMS", lambda r: r.get("num_items")),
            ("JOBS", lambda r: len(r.get("job_ids") or [])),
            ("HASH", lambda r: (r.get("content_hash") or "")[:12] or None),
            ("CREATED", lambda r: _when(r["created_at"])),
        ],
    )


@snapshots_app.command("rm")
def snapshots_rm(ctx: typer.Context, snapshot_id: str) -> None:
    """Delete a snapshot."""
    with _api(ctx) as api:
        api.delete_snapshot(snapshot_id)
    out.print(f"deleted snapshot {snapshot_id}")


# --- training runs -----------------------------------------------------------------------------


class Method(StrEnum):
    full = "full"
    lora = "lora"


@runs_app.command("create")
def runs_create(
    ctx: typer.Context,
    spec: Path | None = typer.Option(
        None, "--spec", exists=True, dir_okay=False, help="Run spec (YAML/JSON); flags override it"
    ),
    snapshot: str | None = typer.Option(None, "--snapshot", "-s", help="Snapshot id"),
    base_model: str | None = typer.Option(None, help="Model id or a path on the trainer host"),
    mode: Mode | None = typer.Option(None, help="Training mode [default: cgd]"),
    method: Method | None = typer.Option(None, help="full or lora [default: full]"),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate [default: 1e-6]"),
    epochs: int | None = typer.Option(None, help="Epochs [default: 1]"),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps"),
    tokens_per_step: int | None = typer.Option(None, help="Tokens per optimizer step"),
    max_length: int | None = typer.Option(None, help="Longest sequence in tokens"),
    warmup_ratio: float | None = typer.Option(None, help="Warm-up fraction of the steps"),
    lora_r: int | None = typer.Option(None, help="LoRA rank"),
    lora_alpha: int | None = typer.Option(None, help="LoRA alpha"),
    eval_set: list[str] = typer.Option(
        None, "--eval-set", help="Eval set (repeatable; math500, amc23, aime24)"
    ),
    no_eval: bool = typer.Option(False, "--no-eval", help="No eval sets"),
    eval_max_samples: int | None = typer.Option(None, help="Eval at most this many per set"),
    eval_max_new_tokens: int | None = typer.Option(None, help="Eval generation length"),
) -> None:
    """Start a training run on a snapshot; prints the run id last."""
    body = _load_spec(spec)
    fields: list[tuple[str, Any]] = [
        ("snapshot_id", snapshot),
        ("base_model", base_model),
        ("mode", mode.value if mode else None),
        ("method", method.value if method else None),
    ]
    for key, value in fields:
        if value is not None:
            body[key] = value
    if not body.get("snapshot_id") or not body.get("base_model"):
        raise typer.BadParameter(
            "give --snapshot and --base-model (or both in --spec)", param_hint="--snapshot"
        )
    hyper = dict(body.get("hyperparams") or {})
    overrides: list[tuple[str, Any]] = [
        ("learning_rate", lr),
        ("epochs", epochs),
        ("max_steps", max_steps),
        ("tokens_per_step", tokens_per_step),
        ("max_length", max_length),
        ("warmup_ratio", warmup_ratio),
    ]
    for key, value in overrides:
        if value is not None:
            hyper[key] = value
    lora = dict(hyper.get("lora") or {})
    if lora_r is not None:
        lora["r"] = lora_r
    if lora_alpha is not None:
        lora["alpha"] = lora_alpha
    if lora:
        hyper["lora"] = lora
    if hyper:
        body["hyperparams"] = hyper
    ev = dict(body.get("eval") or {})
    if no_eval:
        ev["sets"] = []
    elif eval_set:
        ev["sets"] = list(eval_set)
    if eval_max_samples is not None:
        ev["max_samples"] = eval_max_samples
    if eval_max_new_tokens is not None:
        ev["max_new_tokens"] = eval_max_new_tokens
    if ev:
        body["eval"] = ev
    with _api(ctx) as api:
        run = api.create_run(body)
    out.print(f"training run {run['status']}")
    out.print(run["id"])


def _fmt_num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _kv(data: dict[str, Any]) -> str:
    return "  ".join(
        f"{k} {_fmt_num(v) if not isinstance(v, dict | list) else _compact(v)}"
        for k, v in data.items()
    )


def _event_line(event: dict[str, Any], total_steps: int | None) -> str:
    kind, data = event["type"], event.get("data") or {}
    if kind == "step":
        step = data.get("step")
        head = f"step {step}/{total_steps}" if total_steps else f"step {step}"
        keys = ("loss", "lr", "grad_norm", "tokens_per_s", "memory_gib")
        return head + "".join(f"  {k} {_fmt_num(data[k])}" for k in keys if k in data)
    if kind == "eval":
        acc = data.get("accuracy") or {}
        parts = [f"{name} {_fmt_num(v)}" for name, v in acc.items()]
        if isinstance(data.get("uncertainty"), dict):
            parts.append("uncertainty: " + _kv(data["uncertainty"]))
        return f"eval @ step {data.get('step', '-')}: " + ("  ".join(parts) or _compact(data))
    if kind == "status":
        state = data.get("status") or data.get("state")
        rest = {k: v for k, v in data.items() if k not in ("status", "state", "eval")}
        return f"status {state}" + (f"  {_kv(rest)}" if rest else "")
    if kind == "artifact":
        return f"artifact {data.get('kind', '')}: {data.get('path')}"
    return f"{kind}  {_kv(data)}"


@runs_app.command("watch")
def runs_watch(
    ctx: typer.Context,
    run_id: str,
    interval: float = typer.Option(2.0, help="Seconds between polls"),
) -> None:
    """Follow a training run: status, loss per logged step, eval results, artifacts, until it
    ends. Exit code 0 when it completed, 1 when it failed or was cancelled."""
    total_steps: int | None = None
    with _api(ctx) as api:
        try:
            for event in api.tail_events(run_id, poll_s=interval):
                data = event.get("data") or {}
                if isinstance(data.get("total_steps"), int):
                    total_steps = data["total_steps"]
                line = f"{_when(event.get('at'))}  {_event_line(event, total_steps)}"
                out.print(line)
        except KeyboardInterrupt:
            err.print("stopped watching; the run keeps going")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        run = api.get_run(run_id)
    metrics = run.get("metrics") or {}
    line = f"run {run['id']} {run['status']}"
    if metrics.get("step") is not None:
        line += f" at step {metrics['step']}"
    if metrics.get("loss") is not None:
        line += f", loss {_fmt_num(metrics['loss'])}"
    accs = {
        k: v["accuracy"]
        for k, v in (run.get("eval") or {}).items()
        if isinstance(v, dict) and "accuracy" in v
    }
    if accs:
        line += "; eval " + ", ".join(f"{k} {_fmt_num(v)}" for k, v in accs.items())
    if (run.get("artifacts") or {}).get("model_path"):
        line += f"; model {run['artifacts']['model_path']}"
    if run.get("error"):
        line += f"; error: {run['error']}"
    out.print(line)
    raise typer.Exit(EXIT_OK if run["status"] == "completed" else EXIT_FAILED)


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: str, as_json: bool = AS_JSON) -> None:
    """Show a training run: status, progress, metrics, eval, artifacts."""
    with _api(ctx) as api:
        run = api.get_run(run_id)
    if as_json:
        _print_json(run)
        return
    _print_fields(run)


@runs_app.command("ls")
def runs_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's training runs, newest first."""
    with _api(ctx) as api:
        rows = _take(api.iter_runs(page_size=min(limit, 200)), limit)
    if as_json:
        _print_json(rows)
        return
    _print_table(
        rows,
        [
            ("ID", lambda r: r["id"]),
            ("STATUS", lambda r: r["status"]),
            ("PROGRESS", lambda r: f"{100 * (r.get('progress') or 0):.0f}%"),
            ("STEP", lambda r: (r.get("metrics") or {}).get("step")),
            ("LOSS", lambda r: _fmt_num((r.get("metrics") or {}).get("loss", "-"))),
            ("BASE MODEL", lambda r: (r.get("spec") or {}).get("base_model")),
            ("SNAPSHOT", lambda r: r.get("snapshot_id")),
            ("CREATED", lambda r: _when(r["created_at"])),
        ],
    )


@runs_app.command("events")
def runs_events(
    ctx: typer.Context, run_id: str, limit: int = typer.Option(1000, "--limit", "-n")
) -> None:
    """Print the run's events as JSON lines (status, step, eval, artifact…)."""
    with _api(ctx) as api:
        for event in _take(api.iter_events(run_id, page_size=min(limit, 1000)), limit):
            out.print(json.dumps(event, default=str, ensure_ascii=False))


@runs_app.command("cancel")
def runs_cancel(ctx: typer.Context, run_id: str) -> None:
    """Cancel a training run; the trainer stops at its next step."""
    with _api(ctx) as api:
        run = api.cancel_run(run_id)
    out.print(f"run {run['id']} {run['status']} (cancel requested)")
