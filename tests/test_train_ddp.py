"""Two CPU processes (torchrun, gloo) run the same trainer code as one GPU process per rank.

Checks: both ranks end with bit-identical weights, and the 2-process loss curve equals a
1-process run of the same global batch (the loss is normalised by the global token count).
Run directly by torchrun: ``torchrun --standalone --nproc_per_node 2 tests/test_train_ddp.py
CONFIG_JSON OUT_DIR``.
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
from cgd.train.tiny import make_tiny_model, write_synthetic_export  # noqa: E402


def run_and_dump(config: TrainConfig, out_dir: Path) -> list[dict]:
    recipe = TrainRecipe(config)
    recipe.setup()
    try:
        recipe.train()
        rank = recipe.runtime.rank
        flat = torch.cat([p.detach().flatten() for p in recipe.model.parameters()])
        torch.save(flat, out_dir / f"params_rank{rank}.pt")
        (out_dir / f"history_rank{rank}.json").write_text(json.dumps(recipe.history))
        return recipe.history
    finally:
        recipe.cleanup()


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(tmp_path):
    model = make_tiny_model(tmp_path / "tiny")
    export = write_synthetic_export(tmp_path / "train.jsonl", 24)
    base = dict(
        model_path=str(model),
        train_file=str(export),
        max_length=256,
        batch_unit="tokens",
        tokens_per_step=512,  # 2 rows: one per rank, or two micro-batches in one process
        learning_rate=3e-3,
        max_steps=4,
        uncertainty_samples=0,
        export_dtype="float32",
        pack_window=16,
    )
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp_dir.mkdir()
    single_dir.mkdir()
    config_path = tmp_path / "ddp.json"
    config_path.write_text(TrainConfig(**base, output_dir=str(ddp_dir)).to_json())
    torchrun = Path(sys.executable).parent / "torchrun"
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        __file__,
        str(config_path),
        str(ddp_dir),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    p0, p1 = torch.load(ddp_dir / "params_rank0.pt"), torch.load(ddp_dir / "params_rank1.pt")
    assert torch.equal(p0, p1)
    h0 = json.loads((ddp_dir / "history_rank0.json").read_text())
    h1 = json.loads((ddp_dir / "history_rank1.json").read_text())
    assert [m["loss"] for m in h0] == [m["loss"] for m in h1]
    assert h0[0]["tokens"] > 256  # the step's tokens were counted over both ranks

    torch.set_num_threads(2)
    single = run_and_dump(TrainConfig(**base, output_dir=str(single_dir)), single_dir)
    for a, b in zip(h0, single, strict=True):
        assert a["tokens"] == b["tokens"] and a["supervised_tokens"] == b["supervised_tokens"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    torch.testing.assert_close(p0, torch.load(single_dir / "params_rank0.pt"), atol=1e-5, rtol=1e-4)


if __name__ == "__main__":
    torch.set_num_threads(1)
    cfg = TrainConfig.model_validate_json(Path(sys.argv[1]).read_text())
    run_and_dump(cfg, Path(sys.argv[2]))
