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
    assert not any("failed" in x for x in lines), lines


@pytest.mark.slow
def test_a_failing_loop_fails_the_bench():
    """A loop that raises is printed as failed in its row and the bench exits 1."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    args = ["--shape", "tiny", "--device", "cpu", "--steps", "1", "--warmup-steps", "0"]
    args += ["--tokens-per-step", "1024", "--loops", "stock,ours", "--attn", "no-such-kernel"]
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [x for x in proc.stdout.splitlines() if x.startswith("| cgd.train")]
    assert rows and "failed" in rows[0]
    assert "FAILED: tiny ours" in proc.stderr


def test_gpu_check_refuses_a_visible_gpu_without_cuda(tmp_path):
    """gpu_check.sh never takes its CPU branch when a GPU is visible (here: the fake signal)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch has CUDA here")
    script = BENCH.parent / "gpu_check.sh"
    env = os.environ | {"CGD_GPU_VISIBLE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        ["bash", str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "a GPU is visible but torch" in proc.stderr and "has no CUDA" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written
