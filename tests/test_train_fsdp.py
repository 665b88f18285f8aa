"""FSDP2 on two CPU processes (torchrun, gloo) against one process.

Checks: the 2-process loss curve matches a 1-process FSDP run of the same global batch; a
checkpoint written by 2 processes resumes in 1 process and continues like the uninterrupted
run; each rank holds about half of the parameter + optimizer bytes; the final export is a plain
Hugging Face model. Run directly by torchrun: ``torchrun --standalone --nproc_per_node 2
tests/test_train_fsdp.py CONFIG_JSON OUT_DIR``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

from cgd.train.config import TrainConfig  # noqa: E402
from cgd.train.loop import TrainRecipe  # noqa: E402
from cgd.train.parallel import local_bytes  # noqa: E402
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402


def run_and_dump(config: TrainConfig, out_dir: Path) -> dict:
    recipe = TrainRecipe(config)
    recipe.setup()
    try:
        recipe.train()
        rank = recipe.runtime.rank
        dump = {
            "history": recipe.history,
            "local_bytes": local_bytes(recipe.params, recipe.optimizer),
            "world_size": recipe.runtime.world_size,
        }
        (out_dir / f"dump_rank{rank}.json").write_text(json.dumps(dump))
        return dump
    finally:
        recipe.cleanup()


def _torchrun(config: TrainConfig, out_dir: Path, tmp_path: Path) -> None:
    config_path = tmp_path / f"{out_dir.name}.json"
    config_path.write_text(config.to_json())
    torchrun = Path(sys.executable).parent / "torchrun"
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", __file__]
    proc = subprocess.run(
        [*cmd, str(config_path), str(out_dir)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_fsdp_two_processes_match_one_and_resume_on_one(tmp_path, method):
    model = make_tiny_model(tmp_path / "tiny")
    export = write_synthetic_export(tmp_path / "train.jsonl", 24)
    base = dict(
        model_path=str(model),
        train_file=str(export),
        strategy="fsdp",
        method=method,
        lora_r=4,
        lora_dropout=0.0,
        max_length=256,
        batch_unit="tokens",
        tokens_per_step=512,  # 2 rows: one per rank, or two micro-batches in one process
        learning_rate=3e-3,
        max_steps=5,
        checkpoint_interval_steps=3,
        uncertainty_samples=0,
        export_dtype="float32",
        pack_window=16,
    )
    two, one, resumed = tmp_path / "two", tmp_path / "one", tmp_path / "resumed"
    for d in (two, one, resumed):
        d.mkdir()
    _torchrun(TrainConfig(**base, output_dir=str(two)), two, tmp_path)
    d0 = json.loads((two / "dump_rank0.json").read_text())
    d1 = json.loads((two / "dump_rank1.json").read_text())
    assert [m["loss"] for m in d0["history"]] == [m["loss"] for m in d1["history"]]
    ckpt = two / "checkpoints" / "step_000003"
    assert (ckpt / "sharded" / ".metadata").exists() and (ckpt / "training_state.pt").exists()
    assert (two / "final" / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(two / "final")

    torch.set_num_threads(2)
    single = run_and_dump(TrainConfig(**base, output_dir=str(one)), one)
    assert len(single["history"]) == len(d0["history"]) == 5
    for a, b in zip(d0["history"], single["history"], strict=True):
        assert a["tokens"] == b["tokens"] and a["supervised_tokens"] == b["supervised_tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)

    # Each rank holds ~1/2 of the parameters + AdamW state (shards are split by rows: the two
    # halves differ by at most one row per tensor).
    ratio = d0["local_bytes"] / single["local_bytes"]
    assert 0.45 < ratio < 0.56, ratio
    assert abs(d0["local_bytes"] - d1["local_bytes"]) / single["local_bytes"] < 0.05

    # A 2-process checkpoint resumes in 1 process and continues like the 2-process run.
    cont = run_and_dump(
        TrainConfig(**base, output_dir=str(resumed), resume_from=str(ckpt)), resumed
    )
    assert [m["step"] for m in cont["history"]] == [4, 5]
    for a, b in zip(d0["history"][3:], cont["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
        assert a["lr"] == b["lr"]


if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg = TrainConfig.model_validate_json(Path(sys.argv[1]).read_text())
    run_and_dump(cfg, Path(sys.argv[2]))
