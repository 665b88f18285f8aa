"""The simulator as a child process (:class:`SimulatorProcess`), for tests and benchmarks."""

from __future__ import annotations

import selectors
import subprocess
import sys
import threading
import time

from cgd.simulator.config import READY_PREFIX


class SimulatorProcess:
    """``python -m cgd.simulator`` as a child process; ``url`` is known once it is ready."""

    def __init__(self, args: list[str], ready_timeout_s: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "cgd.simulator", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.url = self._wait_ready(ready_timeout_s)
        # Keep draining stdout so the child can never block on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _wait_ready(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].strip()
        self.stop()
        raise RuntimeError(f"simulator did not become ready (exit code {self.proc.returncode})")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
