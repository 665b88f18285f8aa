"""``cgd runs``: start training runs on snapshots, follow loss and eval, cancel them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cgd.cli.common import (
    AS_JSON,
    EXIT_FAILED,
    EXIT_USAGE,
    LIMIT,
    Column,
    api_client,
    compact,
    err,
    exit_for,
    group,
    json_lines,
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
from cgd.train.plan import plan_line

app = group("Training runs: start, watch loss and eval, cancel (REST API).")


def _fmt_num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("STATUS", lambda r: r["status"]),
    ("PROGRESS", lambda r: f"{100 * (r.get('progress') or 0):.0f}%"),
    ("STEP", lambda r: (r.get("metrics") or {}).get("step")),
    ("LOSS", lambda r: _fmt_num((r.get("metrics") or {}).get("loss", "-"))),
    ("BASE MODEL", lambda r: (r.get("spec") or {}).get("base_model")),
    ("SNAPSHOT", lambda r: r.get("snapshot_id")),
    ("CREATED", lambda r: when(r["created_at"])),
]


@app.command("create")
def runs_create(
    ctx: typer.Context,
    spec: Path | None = spec_option("Run spec (YAML/JSON); flags override it"),
    snapshot: str | None = typer.Option(None, "--snapshot", "-s", help="Snapshot id"),
    base_model: str | None = typer.Option(
        None, help="A registered base model (GET /v1/models) or run:<id> of your completed run"
    ),
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
    body = set_given(
        load_spec(spec),
        [
            ("snapshot_id", snapshot),
            ("base_model", base_model),
            ("mode", mode.value if mode else None),
            ("method", method.value if method else None),
        ],
    )
    if not body.get("snapshot_id") or not body.get("base_model"):
        raise typer.BadParameter(
            "give --snapshot and --base-model (or both in --spec)", param_hint="--snapshot"
        )
    hyper = set_given(
        dict(body.get("hyperparams") or {}),
        [
            ("learning_rate", lr),
            ("epochs", epochs),
            ("max_steps", max_steps),
            ("tokens_per_step", tokens_per_step),
            ("max_length", max_length),
            ("warmup_ratio", warmup_ratio),
        ],
    )
    lora = set_given(dict(hyper.get("lora") or {}), [("r", lora_r), ("alpha", lora_alpha)])
    if lora:
        hyper["lora"] = lora
    if hyper:
        body["hyperparams"] = hyper
    ev = dict(body.get("eval") or {})
    if no_eval:
        ev["sets"] = []
    elif eval_set:
        ev["sets"] = list(eval_set)
    set_given(ev, [("max_samples", eval_max_samples), ("max_new_tokens", eval_max_new_tokens)])
    if ev:
        body["eval"] = ev
    with api_client(ctx) as api:
        run = api.create_run(body)
    out.print(f"training run {run['status']}")
    out.print(run["id"])


# --- watch -------------------------------------------------------------------------------------


def _kv(data: dict[str, Any]) -> str:
    return "  ".join(
        f"{k} {_fmt_num(v) if not isinstance(v, dict | list) else compact(v)}"
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
        return f"eval @ step {data.get('step', '-')}: " + ("  ".join(parts) or compact(data))
    if kind == "status":
        state = data.get("status") or data.get("state")
        rest = {k: v for k, v in data.items() if k not in ("status", "state", "eval")}
        return f"status {state}" + (f"  {_kv(rest)}" if rest else "")
    if kind == "artifact":
        return f"artifact {data.get('kind', '')}: {data.get('path')}"
    if kind == "data" and isinstance(data.get("plan"), dict):
        # The plan before the first step; the data statistics follow on the next line.
        rest = {k: v for k, v in data.items() if k != "plan"}
        return plan_line(data["plan"]) + f"\n  data  {_kv(rest)}"
    return f"{kind}  {_kv(data)}"


def _run_summary(run: dict[str, Any]) -> str:
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
    return line


@app.command("watch")
def runs_watch(
    ctx: typer.Context,
    run_id: str,
    interval: float = typer.Option(2.0, help="Seconds between polls"),
) -> None:
    """Follow a training run: status, loss per logged step, eval results, artifacts, until it
    ends. Exit code 0 when it completed, 1 when it failed or was cancelled."""
    total_steps: int | None = None
    with api_client(ctx) as api:
        with watching("the run keeps going"):
            for event in api.tail_events(run_id, poll_s=interval):
                data = event.get("data") or {}
                if event["type"] == "log" and data.get("heartbeat"):
                    continue  # liveness for the API's sweeper, not news for a person
                if isinstance(data.get("total_steps"), int):
                    total_steps = data["total_steps"]
                out.print(f"{when(event.get('at'))}  {_event_line(event, total_steps)}")
        run = api.get_run(run_id)
    out.print(_run_summary(run))
    raise exit_for(run["status"])


# --- show, ls, events, cancel ------------------------------------------------------------------


@app.command("show")
def runs_show(ctx: typer.Context, run_id: str, as_json: bool = AS_JSON) -> None:
    """Show a training run: status, progress, metrics, eval, artifacts."""
    show_one(ctx, lambda api: api.get_run(run_id), as_json)


@app.command("ls")
def runs_ls(ctx: typer.Context, limit: int = LIMIT, as_json: bool = AS_JSON) -> None:
    """List the team's training runs, newest first."""
    list_rows(ctx, lambda api: api.iter_runs(page_size=min(limit, 200)), limit, as_json, COLUMNS)


@app.command("events")
def runs_events(
    ctx: typer.Context, run_id: str, limit: int = typer.Option(1000, "--limit", "-n")
) -> None:
    """Print the run's events as JSON lines (status, step, eval, artifact…)."""
    json_lines(ctx, lambda api: api.iter_events(run_id, page_size=min(limit, 1000)), limit)


@app.command("plot")
def runs_plot(
    ctx: typer.Context,
    run_id: str,
    output: Path = typer.Option(..., "--output", "-o", dir_okay=False, help="Image (.png/.svg)"),
) -> None:
    """Draw the run's loss, learning rate and eval accuracy per step into an image."""
    from cgd.runs.curves import plot, series

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        err.print("cgd runs plot needs matplotlib: pip install matplotlib")
        raise typer.Exit(EXIT_USAGE) from None
    with api_client(ctx) as api:
        curves = series(api.iter_events(run_id, page_size=1000))
    if not curves["loss"]:
        err.print(f"run {run_id} has no step events yet")
        raise typer.Exit(EXIT_FAILED)
    path = plot(curves, output, title=f"run {run_id}")
    last_step, last_loss = curves["loss"][-1]
    evals = ", ".join(f"{k} {v[-1][1]:.3f}" for k, v in curves["eval"].items())
    out.print(
        f"wrote {path}: {len(curves['loss'])} steps, last loss {last_loss:.4f} at step"
        f" {last_step}" + (f"; eval {evals}" if evals else "")
    )


@app.command("cancel")
def runs_cancel(ctx: typer.Context, run_id: str) -> None:
    """Cancel a training run; the trainer stops at its next step."""
    with api_client(ctx) as api:
        run = api.cancel_run(run_id)
    out.print(f"run {run['id']} {run['status']} (cancel requested)")
