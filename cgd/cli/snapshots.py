"""``cgd snapshots``: curate finished jobs into snapshots, export them as training files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.filesize import decimal as fmt_bytes

from cgd.cli.common import (
    AS_JSON,
    EXIT_FAILED,
    EXIT_USAGE,
    LIMIT,
    Column,
    api_client,
    err,
    group,
    list_rows,
    load_spec,
    out,
    print_json,
    quality_line,
    show_one,
    spec_option,
    transfer_progress,
    when,
)
from cgd.enums import ExportFormat as Format
from cgd.enums import ExportLayout as Layout
from cgd.enums import ExportMode as Mode
from cgd.enums import Split

app = group("Snapshots: curate finished jobs, export training files (REST API).")

COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("NAME", lambda r: r.get("name")),
    ("STATUS", lambda r: r["status"]),
    ("ITEMS", lambda r: r.get("num_items")),
    ("JOBS", lambda r: len(r.get("job_ids") or [])),
    ("HASH", lambda r: (r.get("content_hash") or "")[:12] or None),
    ("CREATED", lambda r: when(r["created_at"])),
]


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


@app.command("create")
def snapshots_create(
    ctx: typer.Context,
    job: list[str] = typer.Option(None, "--job", "-j", help="A finished job's id (repeatable)"),
    spec: Path | None = spec_option("Curation spec (YAML/JSON)"),
    name: str | None = typer.Option(None, help="Snapshot name"),
    wait: bool = typer.Option(True, help="Wait while a large snapshot is being built"),
    interval: float = typer.Option(1.0, help="Seconds between polls while building"),
) -> None:
    """Curate finished jobs into an immutable snapshot; prints the snapshot id last.
    Exit code 1 when building it failed."""
    body = load_spec(spec)
    if not job and not body.get("job_ids"):
        raise typer.BadParameter("give --job (or job_ids in --spec)", param_hint="--job")
    with api_client(ctx) as api:
        snap = api.create_snapshot(body, job_ids=list(job) if job else None, name=name)
        if wait and snap["status"] == "building":
            with err.status(f"building snapshot {snap['id']}…", spinner="dots"):
                snap = api.wait_snapshot(snap["id"], poll_s=interval)
    out.print(_snapshot_summary(snap))
    out.print(snap["id"])
    if snap["status"] == "failed":
        raise typer.Exit(EXIT_FAILED)


@app.command("export")
def snapshots_export(
    ctx: typer.Context,
    snapshot_id: str,
    output: Path = typer.Option(..., "--output", "-o", dir_okay=False, help="File to write"),
    fmt: Format = typer.Option(Format.jsonl, "--format", help="File format"),
    layout: Layout = typer.Option(Layout.native, help="Row layout"),
    mode: Mode | None = typer.Option(
        None, help="Training mode the rows are shaped for (default cgd; not for layout native)"
    ),
    split: Split = typer.Option(Split.all, help="Which split"),
) -> None:
    """Download a snapshot as a training file (streamed to disk)."""
    with api_client(ctx) as api, transfer_progress(bar=False) as progress:
        task = progress.add_task(f"exporting {snapshot_id}", total=None)
        res = api.export_snapshot(
            snapshot_id,
            output,
            format=fmt.value,
            layout=layout.value,
            mode=mode.value if mode is not None else None,
            split=split.value,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    rows = ""
    if fmt is Format.jsonl:
        with open(res["path"], "rb") as f:
            rows = f", {sum(1 for _ in f)} rows"
    out.print(
        f"wrote {res['path']} ({fmt_bytes(res['bytes'])}{rows}; "
        f"{layout.value}/{mode.value if mode else '-'}/{split.value}; "
        f"content hash {res['content_hash'] or '-'})"
    )


@app.command("export-hub")
def snapshots_export_hub(
    ctx: typer.Context,
    snapshot_id: str,
    dest: Path = typer.Argument(..., file_okay=False, help="Folder to create (absent or empty)"),
    mode: Mode = typer.Option(Mode.cgd, help="Training mode the rows are shaped for"),
    license: str = typer.Option("other", help="Hub license id for README.md (e.g. mit)"),
) -> None:
    """Write the snapshot as a Hugging Face Hub dataset folder: data/{train,validation}-*.parquet,
    README.md with YAML metadata and quality numbers, dataset_info.json for LLaMA-Factory."""
    if dest.exists() and any(dest.iterdir()):
        err.print(f"{dest} is not empty: give a new or empty folder")
        raise typer.Exit(EXIT_USAGE)
    with api_client(ctx) as api, transfer_progress(bar=False) as progress:
        task = progress.add_task(f"exporting {snapshot_id}", total=None)
        res = api.export_hub(
            snapshot_id,
            dest,
            mode=mode.value,
            license=license,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    out.print(f"wrote {res['path']}: {', '.join(files)} (content hash {res['content_hash']})")


@app.command("show")
def snapshots_show(ctx: typer.Context, snapshot_id: str, as_json: bool = AS_JSON) -> None:
    """Show a snapshot: status, stats, quality numbers, lineage."""
    show_one(
        ctx,
        lambda api: api.get_snapshot(snapshot_id),
        as_json,
        footer=lambda snap: quality_line((snap.get("stats") or {}).get("quality")),
    )


@app.command("card")
def snapshots_card(ctx: typer.Context, snapshot_id: str, as_json: bool = AS_JSON) -> None:
    """Print the snapshot's dataset card (Markdown; --json for the data behind it)."""
    with api_client(ctx) as api:
        if as_json:
            print_json(api.snapshot_card(snapshot_id))
            return
        text = api.snapshot_card_markdown(snapshot_id)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command("ls")
def snapshots_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's snapshots, newest first."""
    list_rows(
        ctx, lambda api: api.iter_snapshots(page_size=min(limit, 200)), limit, as_json, COLUMNS
    )


@app.command("rm")
def snapshots_rm(ctx: typer.Context, snapshot_id: str) -> None:
    """Delete a snapshot."""
    with api_client(ctx) as api:
        api.delete_snapshot(snapshot_id)
    out.print(f"deleted snapshot {snapshot_id}")
