"""Running the trainer from a long-lived process (the trainer worker): one process per GPU it
owns, and progress reported without ever blocking a training step.

- ``NonBlockingEvents`` puts events on a queue that a thread delivers (HTTP with retries may take
  seconds); a step only appends to the queue. ``close()`` delivers what is left.
- ``train(config, gpus=…)``: with one GPU (or none) the recipe runs in this process; with
  several, ``torchrun --standalone --nproc_per_node N`` starts one process per GPU and rank 0
  writes its events to a JSON-lines file that this process follows and forwards; a cancel
  becomes a file the ranks poll. ``CGD_TRAINER_GPUS`` (e.g. ``0,1,2,3``) names the GPUs.

Run by torchrun as ``python -m cgd.train.launch CONFIG_JSON EVENTS_JSONL CANCEL_FILE``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cgd.train.config import TrainConfig

logger = logging.getLogger("cgd.train")
EventHook = Callable[[str, dict[str, Any]], None]


class NonBlockingEvents:
    """``__call__`` enqueues; a daemon thread calls ``deliver`` in order."""

    def __init__(self, deliver: EventHook, max_queued: int = 10_000) -> None:
        self.deliver = deliver
        self.queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(max_queued)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((kind, data))
        except queue.Full:  # the API is down for long: drop step metrics, never wait
            logger.warning("event queue full; %s event dropped", kind)

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self.deliver(*item)
            except Exception:  # noqa: BLE001 - reporting must never stop training
                logger.exception("event %s not delivered", item[0])

    def close(self, timeout_s: float = 60) -> None:
        self.queue.put(None)
        self.thread.join(timeout_s)


def gpu_list(spec: str | None) -> list[str]:
    """``"0,1,2"`` → ["0", "1", "2"]; empty or None → []."""
    return [g.strip() for g in (spec or "").split(",") if g.strip()]


def train(
    config: TrainConfig,
    *,
    on_event: EventHook | None = None,
    should_stop: Callable[[], bool] | None = None,
    gpus: str | None = None,
    poll_s: float = 0.5,
) -> dict[str, Any]:
    """Train in this process (≤ 1 GPU) or in one torchrun process per GPU; same result dict."""
    from cgd.train.loop import run_training

    devices = gpu_list(gpus)
    if len(devices) <= 1:
        if devices:
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[0]
        return run_training(config, on_event=on_event, should_stop=should_stop)

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path, events_path, cancel_path = (
        out / "launch_config.json",
        out / "events.jsonl",
        out / "cancel",
    )
    config_path.write_text(config.to_json())
    events_path.write_text("")
    cancel_path.unlink(missing_ok=True)
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", str(len(devices))]
    cmd += ["-m", "cgd.train.launch", str(config_path), str(events_path), str(cancel_path)]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ",".join(devices)}
    proc = subprocess.Popen(cmd, env=env)
    result: dict[str, Any] = {"state": "failed"}
    with events_path.open("rb") as events:
        while True:
            exited = proc.poll() is not None
            while (line := events.readline()).endswith(b"\n"):  # each complete line so far
                kind, data = json.loads(line)
                if kind == "status" and "state" in data and data["state"] != "running":
                    result = data
                if on_event is not None:
                    on_event(kind, data)
            events.seek(-len(line), os.SEEK_CUR)  # a partial line: read it again next time
            if exited:
                break
            if should_stop is not None and should_stop():
                cancel_path.touch()
            time.sleep(poll_s)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with {proc.returncode}")
    return result


def _rank_main(config_path: str, events_path: str, cancel_path: str) -> None:
    from cgd.train.loop import run_training

    config = TrainConfig.model_validate_json(Path(config_path).read_text())
    rank0 = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(level=logging.INFO if rank0 else logging.WARNING)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        with open(events_path, "a") as f:  # one whole line per write: the parent reads lines
            f.write(json.dumps([kind, data]) + "\n")

    run_training(
        config,
        on_event=on_event if rank0 else None,
        should_stop=lambda: Path(cancel_path).exists(),
    )


if __name__ == "__main__":
    _rank_main(*sys.argv[1:4])
