"""The embedded quickstart: the whole loop on one machine with no services installed.

SQLite instead of Postgres, kombu's filesystem transport instead of Redis, the SIMULATED
OpenAI-compatible server instead of vLLM, a tiny random-init model on the CPU instead of a real
student. Everything else is the production code path: the API, a Celery generation worker and a
Celery trainer run as separate processes and talk over real HTTP and a real Celery transport.

    cgd quickstart [--dir ./cgd-quickstart] [--items 64] [--train-steps 20]

``--real`` runs the same loop on real parts: a real vLLM (CPU build, its own virtualenv) serves
the real SmolLM2-135M-Instruct as the student; the teacher is that same server, any
OpenAI-compatible server (``--teacher-url``), or the simulator as an "oracle" that always knows
the reference answer (``--oracle-teacher``: what a strong teacher's data looks like); training is
a short real CPU fine-tune of the 135M student, evaluated on a few bundled problems.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from cgd.client import Client
from cgd.experiments.schemas import ExperimentOut
from cgd.jobs.schemas import JobStatusOut
from cgd.local_vllm import VllmServer, free_port, start_vllm
from cgd.runs.schemas import RunOut

console = Console()


@dataclass
class Stack:
    """The processes of the quickstart; stopped in reverse order at the end."""

    root: Path
    env: dict[str, str]
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def cgd(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.root / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - lives with the proc
        proc = subprocess.Popen(
            [sys.executable, "-m", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.procs.append((name, proc))
        return proc

    def wait_log(self, name: str, text: str, timeout_s: float = 120) -> None:
        path = self.root / "logs" / f"{name}.log"
        deadline = time.monotonic() + timeout_s
        proc = dict(self.procs)[name]
        while text not in path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {path}")
            time.sleep(0.2)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.procs):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class RealOptions:
    """What ``--real`` changes: the student (and maybe the teacher) is a real vLLM server."""

    teacher_url: str | None = None  # another OpenAI-compatible server for the teacher
    teacher_model: str | None = None
    oracle_teacher: bool = False  # the simulator, which knows every reference answer
    method: str = "full"  # or lora
    max_tokens: int = 192  # per call: a 135M model rambles, and a 2-core CPU makes ~20-80 tokens/s


# The name the quickstart registers its student under (CGD_BASE_MODELS of the API it starts).
BASE_MODEL_NAME = "quickstart-student"


@dataclass
class Models:
    """The endpoints a job calls, the model the trainer fine-tunes, and how to say what they are."""

    student: dict[str, Any]
    teacher: dict[str, Any]
    base_model: str
    banner: str
    filters: dict[str, Any]
    hyperparams: dict[str, Any]
    eval: dict[str, Any]
    template: str = "cgd"  # the job's prompt template


def run(
    root: Path,
    items: int,
    train_steps: int,
    keep: bool = False,
    real: RealOptions | None = None,
    experiment: bool = False,
) -> dict[str, Path]:
    root = root.resolve()
    if root.exists() and not keep:
        shutil.rmtree(root)
    for sub in ("logs", "exports", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    api_port, sim_port, vllm_port = free_port(), free_port(), free_port()
    allowed = [f"http://127.0.0.1:{sim_port}/", f"http://127.0.0.1:{vllm_port}/"]
    if real is not None and real.teacher_url:
        allowed.append(real.teacher_url.rstrip("/") + "/")
    env.update(
        CGD_HOME=str(root / "home"),  # SQLite file, broker folder, trainer runs
        CGD_API_URL=f"http://127.0.0.1:{api_port}",
        CGD_WORKER_CONCURRENCY="2",
        # Jobs may call the local simulator, the local vLLM (--real) and a named teacher only.
        CGD_ENDPOINT_ALLOWLIST=",".join(allowed),
        CGD_SWEEP_INTERVAL_S="2",
        CGD_TRAINER_DIR=str(root / "home" / "trainer"),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(root, env)
    sample = root / "exports" / "gsm8k_sample.jsonl"
    lines = resources.files("cgd.data").joinpath("gsm8k_sample.jsonl").read_text().splitlines()
    sample.write_text("\n".join(lines[:items]) + "\n")
    vllm: VllmServer | None = None
    real_dir = Path()
    try:
        title = "real vLLM + real 135M student" if real else "embedded: SQLite + filesystem broker"
        console.rule(f"[bold]cgd quickstart[/] ({title}, CPU)")
        if real is not None:
            console.print(
                "[bold]--real[/]: fetches and converts the model once, starts vLLM (about a "
                "minute), generates, fine-tunes and evaluates on this CPU: about 5-10 minutes."
            )
            vllm, real_dir = _start_real_student(root, vllm_port)
        # The API trains registered base models only: register the one this loop fine-tunes.
        student_dir = real_dir if real is not None else root / "tiny-model"
        env["CGD_BASE_MODELS"] = f"{BASE_MODEL_NAME}={student_dir}"
        stack.cgd("migrate")
        key = stack.cgd("admin", "create-key", "--team", "quickstart").strip().splitlines()[-1]
        console.print(f"database: {root / 'home' / 'cgd.sqlite3'} (migrated)")
        stack.start(
            "simulator", "cgd.simulator", "--port", str(sim_port), "--slots", "32",
            "--latency", "0.05", "--dataset", str(sample),
        )  # fmt: skip
        stack.start("api", "services.cli", "api", "--port", str(api_port))
        stack.start("worker", "services.cli", "worker")
        stack.start("trainer", "services.cli", "trainer")
        stack.wait_log("simulator", "listening on")
        stack.wait_log("api", "Application startup complete")
        stack.wait_log("worker", "ready.")
        stack.wait_log("trainer", "ready.")
        console.print(f"API, generation worker and trainer are up (logs in {root / 'logs'})")
        sim = f"http://127.0.0.1:{sim_port}/v1"
        models = (
            _real_models(sim, vllm, real_dir, real)
            if vllm and real
            else _simulated_models(sim, root)
        )
        with Client(env["CGD_API_URL"], key, timeout=120) as client:
            return _loop(client, root, sample, models, items, train_steps, experiment)
    finally:
        stack.stop()
        if vllm is not None:
            vllm.stop()


def _start_real_student(root: Path, port: int) -> tuple[VllmServer, Path]:
    from cgd.train.real_model import SERVED_NAME, ensure_real_model

    model_dir = ensure_real_model(progress=lambda line: console.print(line))
    with console.status(f"starting vLLM (CPU) for {SERVED_NAME} on port {port}"):
        t0 = time.monotonic()
        server = start_vllm(
            model_dir, port=port, served_name=SERVED_NAME, log=root / "logs" / "vllm.log"
        )
    console.print(f"vLLM serves {SERVED_NAME} at {server.url} (up in {time.monotonic() - t0:.0f}s)")
    return server, model_dir


def _simulated_models(sim: str, root: Path) -> Models:
    model = root / "tiny-model"  # registered as BASE_MODEL_NAME in run()
    from cgd.train.tiny import make_tiny_model

    make_tiny_model(model)
    return Models(
        student={"base_url": sim, "model": "student", "temperature": 0.0},
        teacher={"base_url": sim, "model": "teacher", "temperature": 0.0},
        base_model=BASE_MODEL_NAME,
        banner=(
            f"[yellow]DRY RUN[/]: student and teacher are the SIMULATED server at {sim}. For real "
            "generations point `base_url` at a vLLM or other OpenAI-compatible server, e.g. "
            '{"base_url": "http://gpu-host:8000/v1", "model": "Qwen/Qwen2.5-7B-Instruct"}; '
            "`cgd quickstart --real` runs this loop on a real vLLM and a real model."
        ),
        filters={"refined_correct": True},
        hyperparams={
            "learning_rate": 1e-3,
            "tokens_per_step": 2048,
            "max_length": 1024,
            "warmup_ratio": 0.1,
        },
        eval={"sets": ["math500"], "max_samples": 8, "max_new_tokens": 32},
    )


def _real_models(sim: str, vllm: VllmServer, model_dir: Path, real: RealOptions) -> Models:
    budget = {"temperature": 0.0, "max_tokens": real.max_tokens}
    student = {"base_url": vllm.url, "model": vllm.model, **budget}
    template = "cgd"
    if real.oracle_teacher:
        teacher = {"base_url": sim, "model": "teacher", **budget}
        who = f"the SIMULATED oracle at {sim} (it knows every reference answer)"
    elif real.teacher_url:
        teacher = {"base_url": real.teacher_url, "model": real.teacher_model, **budget}
        who = f"{real.teacher_model} at {real.teacher_url}"
    else:
        teacher = dict(student)
        # The 135M model cannot finish the default (paper's) detailed critique: greedy, it loops
        # past 768 tokens (measured); the shorter former template gets it to a verdict line.
        template = "cgd-standalone"
        who = (
            "the same real 135M model (a weak teacher: use --teacher-url or --oracle-teacher), "
            f"with the {template} template (it cannot finish the default detailed critique)"
        )
    return Models(
        student=student,
        teacher=teacher,
        base_model=BASE_MODEL_NAME,
        banner=f"[green]REAL[/]: student {vllm.model} on vLLM at {vllm.url}; teacher {who}",
        # A weak teacher's refinements are rarely right: keep every completed triplet unless the
        # oracle teaches (then, as in the paper, only refinements that reach the reference).
        filters={
            "refined_correct": True if real.oracle_teacher else None,
            "no_meta_commentary": False,
        },
        hyperparams={
            "learning_rate": 1e-5,
            "tokens_per_step": 4096,
            "max_length": 1024,
            "warmup_ratio": 0.0,
        }
        | ({"lora": {"r": 16, "alpha": 32}} if real.method == "lora" else {}),
        eval={"sets": ["math500"], "max_samples": 8, "max_new_tokens": 192},
        template=template,
    )


def _loop(
    client: Client,
    root: Path,
    sample: Path,
    models: Models,
    items: int,
    train_steps: int,
    experiment: bool = False,
) -> dict[str, Path]:
    ds = client.datasets.create(sample)
    console.print(f"dataset: {items} GSM8K prompts uploaded (id {ds.id})")
    console.print(models.banner)
    job = client.jobs.create(
        {
            "dataset_id": ds.id,
            "student": models.student,
            "teacher": models.teacher,
            "verifier": "math",
            "template": models.template,
            "chunk_size": 32,
            # The distill baseline trains on the teacher's own solution: ask for it.
            "teacher_solution": experiment,
        }
    )
    job_id = str(job.id)
    status = _watch_job(client, job_id, items)
    quality = status.quality
    console.print(
        f"job {job_id}: {status.status}, {status.counts.completed} triplets, "
        f"{status.counts.failed} failed {status.errors or ''}, "
        f"{status.items_per_s} items/s; tokens {status.tokens.model_dump()}; student accuracy "
        f"{quality.initial_accuracy}, refined accuracy {quality.refined_accuracy}"
    )
    created = client.snapshots.create(
        {
            "name": "quickstart",
            "job_ids": [job_id],
            "filters": models.filters,
            "dedup": {"exact": True},
            "decontaminate": {"sets": ["math500", "amc23", "aime24"]},
            "split": {"val_fraction": 0.1, "seed": 0},
        }
    )
    snap = client.snapshots.wait(created.id, poll_s=0.3, timeout_s=300)  # large: built queued
    sid = str(snap.id)
    stats = snap.stats
    dropped = {k: v for k, v in stats.get("dropped", {}).items() if v}
    console.print(
        f"snapshot {sid}: {snap.num_items} triplets of {stats.get('input')} "
        f"(dropped: {dropped or 'none'}; train {stats.get('train')}, val {stats.get('val')})"
    )
    outputs = {"database": root / "home" / "cgd.sqlite3", "logs": root / "logs"}
    for layout in ("messages", "native"):
        path = root / "exports" / f"quickstart-{layout}.jsonl"
        mode = "cgd" if layout != "native" else None  # the native layout takes no mode
        client.snapshots.export(sid, path, layout=layout, mode=mode)
        outputs[f"export ({layout})"] = path
    card = root / "exports" / "quickstart-card.md"
    card.write_text(client.snapshots.card(sid).markdown)
    outputs["dataset card"] = card
    if snap.num_items == 0:
        raise RuntimeError(f"the snapshot kept no triplet to train on: {snap.stats}")
    console.print(f"student to fine-tune: {models.base_model}")
    if experiment:
        outputs |= _experiment(client, root, sid, models, train_steps)
        console.rule("[bold green]done[/]")
        for name, path in outputs.items():
            console.print(f"{name:>16}: {path}")
        return outputs
    run = client.runs.create(
        {
            "snapshot_id": sid,
            "base_model": models.base_model,
            "mode": "cgd",
            "method": "lora" if "lora" in models.hyperparams else "full",
            "hyperparams": {"max_steps": train_steps, **models.hyperparams},
            "eval": models.eval,
        }
    )
    final = _watch_run(client, str(run.id), train_steps)
    if final.status != "completed":
        raise RuntimeError(f"training run {final.status}: {final.error}")
    outputs["trained model"] = Path(final.artifacts["model_path"])
    if final.artifacts.get("eval_samples"):
        outputs["eval log"] = Path(final.artifacts["eval_samples"])
    acc = final.eval.get("math500", {}).get("accuracy")
    n = final.eval.get("math500", {}).get("n")
    console.print(
        f"training: loss {final.metrics.get('loss'):.3f} after "
        f"{final.metrics.get('step')} steps; MATH-500 ({n} problems) accuracy {acc}"
    )
    console.rule("[bold green]done[/]")
    for name, path in outputs.items():
        console.print(f"{name:>16}: {path}")
    return outputs


def _experiment(
    client: Client, root: Path, snapshot_id: str, models: Models, train_steps: int
) -> dict[str, Path]:
    """Every mode on the snapshot (same rows, same steps), then the comparison report."""
    exp = client.experiments.create(
        {
            "snapshot_id": snapshot_id,
            "base_model": models.base_model,
            "method": "lora" if "lora" in models.hyperparams else "full",
            "hyperparams": {"max_steps": train_steps, **models.hyperparams},
            "eval": models.eval,
        }
    )
    console.print(
        f"experiment {exp.id}: {len(exp.runs)} training runs "
        f"({', '.join(x.mode for x in exp.runs)}), {train_steps} steps each"
    )
    console.print(
        "[yellow]A SMALL experiment[/]: a few triplets, a few steps per mode and a handful of "
        "eval problems, so its intervals are wide. The paper-scale request (a 7B student on a "
        "GPU host) is in docs/method.md, under Experiments."
    )
    with Progress(
        TextColumn("experiment"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("", total=len(exp.runs))

        def show(e: ExperimentOut) -> None:
            done = [x for x in e.runs if x.status in ("completed", "failed", "cancelled")]
            active = [f"{x.mode} {100 * x.progress:.0f}%" for x in e.runs if x.status == "running"]
            bar.update(task, completed=len(done), description=", ".join(active))

        try:
            exp = client.experiments.wait(exp.id, poll_s=1, timeout_s=3600, on_status=show)
        except TimeoutError:
            raise RuntimeError("the experiment did not finish in an hour") from None
    paths = {}
    for fmt, suffix in (("md", "md"), ("json", "json"), ("svg", "svg")):
        path = root / "exports" / f"experiment-report.{suffix}"
        report = client.experiments.report(exp.id, format=fmt)
        path.write_text(report if isinstance(report, str) else json.dumps(report))
        paths[f"report ({fmt})"] = path
    console.print(f"experiment {exp.status}")
    console.print(paths["report (md)"].read_text(), markup=False, highlight=False, soft_wrap=True)
    if exp.status != "completed":
        failed = [x.model_dump(mode="json") for x in exp.runs if x.status != "completed"]
        raise RuntimeError(f"experiment {exp.status}: runs not completed {failed}")
    return paths


def _watch_job(client: Client, job_id: str, total: int) -> JobStatusOut:
    with Progress(
        TextColumn("generation"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("", total=total)

        def show(s: JobStatusOut) -> None:
            stages = ", ".join(f"{k} {v}" for k, v in s.by_stage.items() if v)
            bar.update(task, completed=s.counts.completed + s.counts.failed, description=stages)

        return client.jobs.wait(job_id, poll_s=0.3, on_status=show)


def _watch_run(client: Client, run_id: str, steps: int) -> RunOut:
    with Progress(
        TextColumn("training"), BarColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("", total=steps)

        def show(r: RunOut) -> None:
            loss = r.metrics.get("loss")
            bar.update(
                task,
                completed=r.metrics.get("step", 0),
                description=f"{r.status}" + (f", loss {loss:.3f}" if loss else ""),
            )

        try:
            return client.runs.wait(run_id, poll_s=0.5, timeout_s=1800, on_status=show)
        except TimeoutError:
            raise RuntimeError("training did not finish in 30 minutes") from None
