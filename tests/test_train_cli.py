"""The trainer CLI end to end on a tiny model: tiny-model → inspect → train → eval."""

from __future__ import annotations

import json
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from cgd.train.cli import app  # noqa: E402

torch.set_num_threads(2)
runner = CliRunner()


def test_cli_tiny_inspect_train_eval(tmp_path, caplog):
    model, export, run = tmp_path / "m", tmp_path / "x.jsonl", tmp_path / "run"
    result = runner.invoke(app, ["tiny-model", str(model), "--synthetic-export", str(export)])
    assert result.exit_code == 0, result.output
    assert (model / "config.json").exists() and len(export.read_text().splitlines()) == 64

    result = runner.invoke(
        app, ["inspect", str(export), "--model", str(model), "--index", "1", "--ids"]
    )
    assert result.exit_code == 0, result.output
    assert "supervised (green)" in result.output and "\\boxed{" in result.output

    args = ["train", str(export), "--model", str(model), "--output-dir", str(run)]
    flags = (
        "--max-steps 2 --lr 1e-3 --eval-sets amc23 --set max_length=256 "
        "--set tokens_per_step=512 --set eval_limit=2 --set eval_max_new_tokens=3"
    )
    args += flags.split()
    caplog.set_level(logging.INFO, logger="cgd.train")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # Every one of the 64 rows trains (none held out), and the plan is logged before step 1:
    # a step takes the 64 samples (samples_per_step), so max_steps 2 makes two epochs.
    logged = [r.getMessage() for r in caplog.records if r.name == "cgd.train"]
    plan = next(i for i, m in enumerate(logged) if m.startswith("plan: "))
    first_step = next(i for i, m in enumerate(logged) if m.startswith("step 1/2"))
    assert plan < first_step
    assert logged[plan].startswith(
        "plan: 64 training rows, 0 validation rows, 2 epoch(s), 2 steps (1 per epoch), ~"
    )
    assert logged[plan].endswith("; max_steps 2 overrides epochs 1")
    config = json.loads((run / "config.json").read_text())
    assert config["max_length"] == 256 and config["eval_sets"] == ["amc23"]
    assert config["learning_rate"] == 1e-3
    assert (run / "eval" / "step_000002" / "amc23.jsonl").exists()
    assert (run / "final" / "model.safetensors").exists()

    result = runner.invoke(
        app,
        ["eval", str(run / "final"), "--sets", "amc23", "--limit", "2", "--max-new-tokens", "3",
         "--out-dir", str(tmp_path / "ev"), "--backend", "hf"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "ev" / "amc23.jsonl").read_text().splitlines()) == 2
