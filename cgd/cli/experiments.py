"""``cgd experiments``: every mode (and seed) trained on one snapshot, and the comparison
report with paired intervals."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from cgd.cli.common import (
    AS_JSON,
    LIMIT,
    Column,
    api_client,
    exit_for,
    group,
    list_rows,
    load_spec,
    out,
    set_given,
    show_one,
    spec_option,
    watching,
    when,
)
from cgd.enums import ExportMode as Mode
from cgd.enums import TrainMethod as Method

app = group("Experiments: all modes on one snapshot, one comparison report (REST API).")

COLUMNS: list[Column] = [
    ("ID", lambda e: e["id"]),
    ("STATUS", lambda e: e["status"]),
    ("RUNS", lambda e: len(e["runs"])),
    ("DONE", lambda e: sum(r["status"] == "completed" for r in e["runs"])),
    ("MODES", lambda e: ",".join(dict.fromkeys(r["mode"] for r in e["runs"]))),
    ("CREATED", lambda e: when(e["created_at"])),
]


@app.command("create")
def experiments_create(
    ctx: typer.Context,
    spec: Path | None = spec_option("Experiment spec (YAML/JSON); flags override it"),
    snapshot: str | None = typer.Option(None, "--snapshot", "-s", help="Snapshot id"),
    base_model: str | None = typer.Option(
        None, help="A registered base model (GET /v1/models) or run:<id> of your completed run"
    ),
    mode: list[Mode] = typer.Option(
        None, "--mode", help="A mode to compare (repeatable) [default: all five]"
    ),
    seed: list[int] = typer.Option(None, "--seed", help="A seed (repeatable) [default: 0]"),
    method: Method | None = typer.Option(None, help="full or lora [default: full]"),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate [default: 1e-6]"),
    max_steps: int | None = typer.Option(None, help="Stop every run after this many steps"),
    eval_set: list[str] = typer.Option(None, "--eval-set", help="Eval set (repeatable)"),
    eval_max_samples: int | None = typer.Option(None, help="Eval at most this many per set"),
) -> None:
    """Start one training run per (mode, seed); prints the experiment id last."""
    body = set_given(
        load_spec(spec),
        [
            ("snapshot_id", snapshot),
            ("base_model", base_model),
            ("method", method.value if method else None),
            ("modes", [m.value for m in mode] if mode else None),
            ("seeds", list(seed) if seed else None),
        ],
    )
    if not body.get("snapshot_id") or not body.get("base_model"):
        raise typer.BadParameter(
            "give --snapshot and --base-model (or both in --spec)", param_hint="--snapshot"
        )
    hyper = set_given(
        dict(body.get("hyperparams") or {}), [("learning_rate", lr), ("max_steps", max_steps)]
    )
    if hyper:
        body["hyperparams"] = hyper
    ev = set_given(
        dict(body.get("eval") or {}),
        [("sets", list(eval_set) if eval_set else None), ("max_samples", eval_max_samples)],
    )
    if ev:
        body["eval"] = ev
    with api_client(ctx) as api:
        exp = api.create_experiment(body)
    out.print(f"experiment {exp['status']}: {len(exp['runs'])} training runs")
    out.print(exp["id"])


def _progress_line(exp: dict[str, Any]) -> str:
    runs = ", ".join(
        f"{r['mode']}/{r['seed']} {r['status']} {100 * (r.get('progress') or 0):.0f}%"
        for r in exp["runs"]
    )
    return f"experiment {exp['id']} {exp['status']}: {runs}"


@app.command("watch")
def experiments_watch(
    ctx: typer.Context,
    experiment_id: str,
    interval: float = typer.Option(5.0, help="Seconds between polls"),
) -> None:
    """Follow the runs until all ended, then print the report. Exit 0 when all completed."""
    last = ""
    with api_client(ctx) as api:

        def show(exp: dict[str, Any]) -> None:
            nonlocal last
            line = _progress_line(exp)
            if line != last:
                out.print(f"{datetime.now():%H:%M:%S}  {line}")
                last = line

        with watching("the experiment keeps going"):
            exp = api.wait_experiment(experiment_id, poll_s=interval, on_status=show)
        out.print(
            api.experiment_report(experiment_id, "md"),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    raise exit_for(exp["status"])


@app.command("report")
def experiments_report(
    ctx: typer.Context,
    experiment_id: str,
    format: str = typer.Option("md", "--format", "-f", help="md, json or svg"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file"),
) -> None:
    """The comparison report: accuracy with 95% intervals, differences vs cgd, pass@k."""
    if format not in ("md", "json", "svg"):
        raise typer.BadParameter("md, json or svg", param_hint="--format")
    with api_client(ctx) as api:
        report = api.experiment_report(experiment_id, format)
    if format == "json":
        import json

        report = json.dumps(report, indent=1)
    if output is not None:
        output.write_text(report)
        out.print(f"wrote {output}")
    else:
        out.print(report, markup=False, highlight=False, soft_wrap=True)


@app.command("show")
def experiments_show(ctx: typer.Context, experiment_id: str, as_json: bool = AS_JSON) -> None:
    """Show an experiment: status and every run's mode, seed, status, progress."""
    show_one(ctx, lambda api: api.get_experiment(experiment_id), as_json)


@app.command("ls")
def experiments_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's experiments, newest first."""
    list_rows(
        ctx, lambda api: api.iter_experiments(page_size=min(limit, 200)), limit, as_json, COLUMNS
    )


@app.command("cancel")
def experiments_cancel(ctx: typer.Context, experiment_id: str) -> None:
    """Cancel the runs that have not finished; finished runs keep their results."""
    with api_client(ctx) as api:
        exp = api.cancel_experiment(experiment_id)
    out.print(_progress_line(exp))
