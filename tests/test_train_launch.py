"""The worker's side of training: events never block a step; one process per GPU via torchrun
(run here as 2 CPU processes), its events forwarded and a cancel delivered."""

from __future__ import annotations

import os
import threading
import time

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cgd.train.config import TrainConfig  # noqa: E402
from cgd.train.launch import NonBlockingEvents, gpu_list, train  # noqa: E402
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402


def test_events_do_not_block_and_keep_their_order():
    delivered, gate = [], threading.Event()

    def slow_post(kind, data):
        gate.wait(5)  # the API hangs until the gate opens
        delivered.append((kind, data["i"]))

    events = NonBlockingEvents(slow_post)
    t0 = time.perf_counter()
    for i in range(100):
        events("step", {"i": i})
    assert time.perf_counter() - t0 < 0.5  # nothing waited for the API
    gate.set()
    events.close()
    assert delivered == [("step", i) for i in range(100)]
    assert gpu_list(" 0, 1,") == ["0", "1"] and gpu_list(None) == []


@pytest.mark.slow
def test_one_process_per_gpu_forwards_events_and_cancels(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    export = write_synthetic_export(tmp_path / "train.jsonl", 24)
    config = TrainConfig(
        model_path=str(model),
        train_file=str(export),
        output_dir=str(tmp_path / "run"),
        max_length=256,
        samples_per_step=4,
        max_steps=50,
        uncertainty_samples=0,
        export_dtype="float32",
    )
    events = []
    stop = lambda: sum(k == "step" for k, _ in events) >= 2  # noqa: E731
    os.environ["OMP_NUM_THREADS"] = "1"
    result = train(config, on_event=lambda k, d: events.append((k, d)), should_stop=stop,
                   gpus="0,1")  # fmt: skip
    assert result["state"] == "cancelled" and 2 <= result["step"] < 50
    setup = next(d for k, d in events if k == "status")
    assert setup["world_size"] == 2
    steps = [d for k, d in events if k == "step"]
    assert [d["step"] for d in steps] == list(range(1, len(steps) + 1))
    assert all(d["samples"] == 4 for d in steps)
