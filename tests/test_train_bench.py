"""The throughput benchmark runs end to end on CPU with a tiny shape (it is meant for GPUs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_throughput.py"


@pytest.mark.slow
def test_train_throughput_bench_tiny_cpu():
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    args = ["--shape", "tiny", "--device", "cpu", "--steps", "1", "--warmup-steps", "0"]
    args += ["--tokens-per-step", "1024"]
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [x for x in proc.stdout.splitlines() if x.startswith("| ")]
    assert lines[0].startswith("| loop | real tokens/s | MFU")
    assert any("stock loop" in x for x in lines) and any("cgd.train packed" in x for x in lines)
