"""What the team CLI's command modules share: the consoles, the ``--api-url``/``--api-key``
group callback, the API client for one command (API errors → message and exit code), output
helpers, progress bars, and the generic ``show``/``ls``/JSON-lines commands."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cgd.client import CgdApiError, CgdClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_API_ERROR = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], Any]]


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


def group(help_text: str) -> typer.Typer:
    """A command group that takes ``--api-url``/``--api-key`` before its commands."""
    return typer.Typer(no_args_is_help=True, help=help_text, callback=_connection)


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
def api_client(ctx: typer.Context) -> Iterator[CgdClient]:
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


@contextlib.contextmanager
def watching(keeps_going: str) -> Iterator[None]:
    """Ctrl-C while following a job or run: say that it ``keeps_going`` and exit 130."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"stopped watching; {keeps_going}")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def exit_for(status: str) -> typer.Exit:
    """The exit of ``watch``: 0 when the job or run completed, 1 otherwise."""
    return typer.Exit(EXIT_OK if status == "completed" else EXIT_FAILED)


# --- output helpers ----------------------------------------------------------------------------


def compact(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, separators=(", ", ": "))
    return str(value)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def quality_line(q: dict[str, Any] | None) -> str:
    """A job's or snapshot's quality numbers on one line (rates with their counts)."""
    if not q:
        return "quality -"
    c = q.get("counts") or {}
    line = (
        f"quality: accuracy {_pct(q.get('initial_accuracy'))} -> "
        f"{_pct(q.get('refined_accuracy'))}"
        f" ({c.get('initial_right', 0)} -> {c.get('refined_right', 0)}"
        f" of {c.get('verified', 0)})"
        f", fixed {_pct(q.get('fix_rate'))} ({c.get('fixed', 0)}/"
        f"{c.get('initially_wrong_judged', 0)})"
        f", broke {_pct(q.get('break_rate'))} ({c.get('broken', 0)}/"
        f"{c.get('initially_right_judged', 0)})"
        f", verdict agreement {_pct(q.get('verdict_agreement'))}"
        f" ('wrong' precision {_pct(q.get('wrong_verdict_precision'))}"
        f" recall {_pct(q.get('wrong_verdict_recall'))})"
        f", truncated {_pct(q.get('truncation_rate'))}"
    )
    if tokens := q.get("tokens_by_stage"):
        line += "; tokens " + ", ".join(
            f"{stage} {t['prompt']}+{t['completion']}" for stage, t in tokens.items()
        )
    return line


def print_json(obj: Any) -> None:
    out.print_json(json.dumps(obj, default=str), highlight=False)


def _emit(renderable: Any) -> None:
    """Prints a rich renderable without the trailing blanks rich pads table cells with."""
    with out.capture() as captured:
        out.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def print_fields(obj: Row, keys: list[str] | None = None) -> None:
    keys = [k for k in (keys or list(obj)) if k in obj]
    width = max((len(k) for k in keys), default=0)
    for key in keys:
        out.print(f"{key.ljust(width)}  {compact(obj[key])}")


def print_table(rows: list[Row], columns: list[Column]) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for title, _ in columns:
        table.add_column(title, no_wrap=True)
    for row in rows:
        table.add_row(*(compact(get(row)) for _, get in columns))
    _emit(table)


def take(it: Iterator[Row], limit: int) -> list[Row]:
    rows: list[Row] = []
    for row in it:
        if len(rows) >= limit:
            break
        rows.append(row)
    return rows


def when(value: Any) -> str:
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def elapsed(obj: Row) -> float | None:
    start, end = obj.get("started_at") or obj.get("created_at"), obj.get("finished_at")
    if not start or not end:
        return None
    try:
        return (
            datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))
        ).total_seconds()
    except ValueError:
        return None


def transfer_progress(bar: bool) -> Progress:
    """A transient upload/download bar on stderr (nothing when stderr is not a terminal)."""
    columns: list[ProgressColumn] = [TextColumn("{task.description}")]
    if bar:
        columns.append(BarColumn())
    columns += [DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


# --- specs -------------------------------------------------------------------------------------


def spec_option(help_text: str) -> Any:
    """The ``--spec FILE`` option of the ``create`` commands (read with :func:`load_spec`)."""
    return typer.Option(None, "--spec", exists=True, dir_okay=False, help=help_text)


def load_spec(path: Path | None) -> dict[str, Any]:
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


def set_given(target: dict[str, Any], values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Sets each ``(key, value)`` whose value is not None (flags override the spec); ``target``."""
    for key, value in values:
        if value is not None:
            target[key] = value
    return target


# --- the generic commands: show one, list many, JSON lines -------------------------------------


LIMIT = typer.Option(50, "--limit", "-n", help="Most rows to show")
AS_JSON = typer.Option(False, "--json", help="Machine-readable JSON output")


def show_one(
    ctx: typer.Context,
    fetch: Callable[[CgdClient], Row],
    as_json: bool,
    footer: Callable[[Row], str] | None = None,
) -> None:
    """``show``: one resource as ``key  value`` lines (and a ``footer`` line), or as JSON."""
    with api_client(ctx) as api:
        obj = fetch(api)
    if as_json:
        print_json(obj)
        return
    print_fields(obj)
    if footer is not None:
        out.print(footer(obj), highlight=False)


def list_rows(
    ctx: typer.Context,
    rows: Callable[[CgdClient], Iterator[Row]],
    limit: int,
    as_json: bool,
    columns: list[Column],
) -> None:
    """``ls``: the first ``limit`` resources as a table of ``columns``, or as a JSON list."""
    with api_client(ctx) as api:
        found = take(rows(api), limit)
    if as_json:
        print_json(found)
        return
    print_table(found, columns)


def json_lines(ctx: typer.Context, rows: Callable[[CgdClient], Iterator[Row]], limit: int) -> None:
    """The first ``limit`` rows (items, triplets, events) as JSON lines."""
    with api_client(ctx) as api:
        for row in take(rows(api), limit):
            out.print(json.dumps(row, default=str, ensure_ascii=False))
