"""The embedded quickstart: the whole loop on one machine with no services installed.

SQLite instead of Postgres, kombu's filesystem transport instead of Redis, the SIMULATED
OpenAI-compatible server instead of vLLM, a tiny random-init model on the CPU instead of a real
student. Everything else is the production code path: the API, a Celery generation worker and a
Celery trainer run as separate processes and talk over real HTTP and a real Celery transport.

    cgd quickstart [--dir ./cgd-quickstart] [--items 64] [--train-steps 20]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _wait(client: httpx.Client, path: str, done: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not finish in {timeout_s:.0f}s: {body}")
        time.sleep(0.3)


def run(root: Path, items: int, train_steps: int, keep: bool = False) -> dict[str, Path]:
    root = root.resolve()
    if root.exists() and not keep:
        shutil.rmtree(root)
    for sub in ("logs", "exports", "home"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CGD_")}
    api_port, sim_port = _free_port(), _free_port()
    env.update(
        CGD_HOME=str(root / "home"),  # SQLite file, broker folder, trainer runs
        CGD_API_URL=f"http://127.0.0.1:{api_port}",
        CGD_WORKER_CONCURRENCY="2",
        # Jobs may call the local simulator and nothing else.
        CGD_ENDPOINT_ALLOWLIST=f"http://127.0.0.1:{sim_port}/",
        CGD_SWEEP_INTERVAL_S="2",
        CGD_TRAINER_DIR=str(root / "home" / "trainer"),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    stack = Stack(root, env)
    sample = root / "exports" / "gsm8k_sample.jsonl"
    lines = resources.files("cgd.data").joinpath("gsm8k_sample.jsonl").read_text().splitlines()
    sample.write_text("\n".join(lines[:items]) + "\n")
    try:
        console.rule("[bold]cgd quickstart[/] (embedded: SQLite + filesystem broker, CPU)")
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
        client = httpx.Client(
            base_url=env["CGD_API_URL"], headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
        return _loop(client, root, sample, sim_port, items, train_steps)
    finally:
        stack.stop()


def _loop(
    client: httpx.Client, root: Path, sample: Path, sim_port: int, items: int, train_steps: int
) -> dict[str, Path]:
    with open(sample, "rb") as f:
        ds = client.post("/v1/datasets", files={"file": ("gsm8k_sample.jsonl", f)})
    ds.raise_for_status()
    console.print(f"dataset: {items} GSM8K prompts uploaded (id {ds.json()['id']})")
    sim = f"http://127.0.0.1:{sim_port}/v1"
    console.print(
        f"[yellow]DRY RUN[/]: student and teacher are the SIMULATED server at {sim}. For real "
        "generations point `base_url` at a vLLM or other OpenAI-compatible server, e.g. "
        '{"base_url": "http://gpu-host:8000/v1", "model": "Qwen/Qwen2.5-7B-Instruct"}.'
    )
    job = client.post(
        "/v1/jobs",
        json={
            "dataset_id": ds.json()["id"],
            "student": {"base_url": sim, "model": "student", "temperature": 0.0},
            "teacher": {"base_url": sim, "model": "teacher", "temperature": 0.0},
            "verifier": "math",
            "chunk_size": 32,
        },
    )
    job.raise_for_status()
    job_id = job.json()["id"]
    status = _watch_job(client, job_id, items)
    console.print(
        f"job {job_id}: {status['status']}, {status['counts']['completed']} triplets, "
        f"{status['items_per_s']} items/s"
    )
    snap = client.post(
        "/v1/snapshots",
        json={
            "name": "quickstart",
            "job_ids": [job_id],
            "filters": {"refined_correct": True},
            "dedup": {"exact": True},
            "decontaminate": {"sets": ["math500", "amc23", "aime24"]},
            "split": {"val_fraction": 0.1, "seed": 0},
        },
    )
    snap.raise_for_status()
    snap_body = snap.json()
    if snap.status_code == 202:
        snap_body = _wait(
            client,
            f"/v1/snapshots/{snap_body['id']}",
            lambda b: b["status"] != "building",
            300,
            "snapshot",
        )
    sid = snap_body["id"]
    console.print(f"snapshot {sid}: {snap_body['num_items']} triplets, stats {snap_body['stats']}")
    outputs = {"database": root / "home" / "cgd.sqlite3", "logs": root / "logs"}
    for layout in ("messages", "native"):
        path = root / "exports" / f"quickstart-{layout}.jsonl"
        params = {"layout": layout} | ({"mode": "cgd"} if layout != "native" else {})
        with (
            client.stream("GET", f"/v1/snapshots/{sid}/export", params=params) as r,
            open(path, "wb") as f,
        ):
            r.raise_for_status()
            for chunk in r.iter_bytes():
                f.write(chunk)
        outputs[f"export ({layout})"] = path
    card = root / "exports" / "quickstart-card.md"
    card.write_text(client.get(f"/v1/snapshots/{sid}/card", params={"format": "markdown"}).text)
    outputs["dataset card"] = card
    model = root / "tiny-model"
    from cgd.train.tiny import make_tiny_model

    make_tiny_model(model)
    console.print(f"student: a tiny random-init model at {model} (stands in for a real one)")
    run = client.post(
        "/v1/training-runs",
        json={
            "snapshot_id": sid,
            "base_model": str(model),
            "mode": "cgd",
            "method": "full",
            "hyperparams": {
                "learning_rate": 1e-3,
                "max_steps": train_steps,
                "tokens_per_step": 2048,
                "max_length": 1024,
                "warmup_ratio": 0.1,
            },
            "eval": {"sets": ["math500"], "max_samples": 8, "max_new_tokens": 32},
        },
    )
    run.raise_for_status()
    final = _watch_run(client, run.json()["id"], train_steps)
    if final["status"] != "completed":
        raise RuntimeError(f"training run {final['status']}: {final.get('error')}")
    outputs["trained model"] = Path(final["artifacts"]["model_path"])
    if final["artifacts"].get("eval_samples"):
        outputs["eval log"] = Path(final["artifacts"]["eval_samples"])
    acc = final["eval"].get("math500", {}).get("accuracy")
    console.print(
        f"training: loss {final['metrics'].get('loss'):.3f} after "
        f"{final['metrics'].get('step')} steps; MATH-500 (8 problems) accuracy {acc}"
    )
    console.rule("[bold green]done[/]")
    for name, path in outputs.items():
        console.print(f"{name:>16}: {path}")
    return outputs


def _watch_job(client: httpx.Client, job_id: str, total: int) -> dict[str, Any]:
    with Progress(
        TextColumn("generation"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("", total=total)
        while True:
            s = client.get(f"/v1/jobs/{job_id}").json()
            stages = ", ".join(f"{k} {v}" for k, v in s["by_stage"].items() if v)
            bar.update(
                task, completed=s["counts"]["completed"] + s["counts"]["failed"], description=stages
            )
            if s["status"] in ("completed", "failed", "cancelled"):
                return s  # type: ignore[no-any-return]
            time.sleep(0.3)


def _watch_run(client: httpx.Client, run_id: str, steps: int) -> dict[str, Any]:
    with Progress(
        TextColumn("training"), BarColumn(), TextColumn("{task.description}"),
        TimeElapsedColumn(), console=console,
    ) as bar:  # fmt: skip
        task = bar.add_task("", total=steps)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            r = client.get(f"/v1/training-runs/{run_id}").json()
            loss = r["metrics"].get("loss")
            bar.update(
                task,
                completed=r["metrics"].get("step", 0),
                description=f"{r['status']}" + (f", loss {loss:.3f}" if loss else ""),
            )
            if r["status"] in ("completed", "failed", "cancelled"):
                return r  # type: ignore[no-any-return]
            time.sleep(0.5)
    raise RuntimeError("training did not finish in 30 minutes")
