"""``cgd datasets``: upload prompt files, list and inspect them."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.filesize import decimal as fmt_bytes

from cgd.cli.common import (
    AS_JSON,
    LIMIT,
    Column,
    api_client,
    group,
    json_lines,
    list_rows,
    out,
    show_one,
    transfer_progress,
    when,
)

app = group("Datasets: upload prompt files, list and inspect them (REST API).")

COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("NAME", lambda r: r["name"]),
    ("ITEMS", lambda r: r["num_items"]),
    ("FORMAT", lambda r: r["format"]),
    ("SIZE", lambda r: fmt_bytes(int(r["size_bytes"]))),
    ("CREATED", lambda r: when(r["created_at"])),
]


@app.command("push")
def datasets_push(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help=".jsonl(.gz), .json, .csv, .parquet"
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
    solution_field: str | None = typer.Option(
        None,
        help="Worked-solution column kept beside a short reference answer; sft trains on it "
        "(default: `solution` when it is not the reference)",
    ),
    idempotency_key: str | None = typer.Option(
        None, help="Makes a repeated push return the first dataset instead of a new one"
    ),
) -> None:
    """Upload a dataset file (streamed from disk); prints the new dataset id last."""
    size = file.stat().st_size
    with api_client(ctx) as api, transfer_progress(bar=True) as progress:
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
            solution_field=solution_field,
            idempotency_key=idempotency_key,
            progress=on_progress,
        )
    fields = " ".join(f"{k}={v}" for k, v in (ds.get("fields") or {}).items() if v)
    out.print(
        f"dataset {ds['name']}: {ds['num_items']} items "
        f"({ds.get('format')}, {fmt_bytes(int(ds.get('size_bytes') or size))}) {fields}".rstrip()
    )
    out.print(ds["id"])


@app.command("ls")
def datasets_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's datasets, newest first."""
    list_rows(
        ctx, lambda api: api.iter_datasets(page_size=min(limit, 1000)), limit, as_json, COLUMNS
    )


@app.command("show")
def datasets_show(ctx: typer.Context, dataset_id: str, as_json: bool = AS_JSON) -> None:
    """Show one dataset: size, field mapping, stats."""
    show_one(ctx, lambda api: api.get_dataset(dataset_id), as_json)


@app.command("items")
def datasets_items(
    ctx: typer.Context, dataset_id: str, limit: int = typer.Option(10, "--limit", "-n")
) -> None:
    """Print the dataset's first items as JSON lines."""
    json_lines(ctx, lambda api: api.iter_items(dataset_id, page_size=min(limit, 1000)), limit)


@app.command("rm")
def datasets_rm(ctx: typer.Context, dataset_id: str) -> None:
    """Delete a dataset."""
    with api_client(ctx) as api:
        api.delete_dataset(dataset_id)
    out.print(f"deleted dataset {dataset_id}")
