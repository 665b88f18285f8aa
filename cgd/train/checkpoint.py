"""Checkpoints that resume exactly, and the final export.

Layout of ``<output_dir>/checkpoints/step_000123/``:
- ``model/``: fp32 master weights (full fine-tune) or the LoRA adapter (peft), ``save_pretrained``
  format, plus the tokenizer, so a checkpoint can be evaluated as it is;
- ``training_state.pt``: optimizer, scheduler, step, data position (rank 0; DDP keeps them
  identical on every rank);
- ``rng_rank<r>.pt``: every rank's RNG states (dropout must continue identically);
- ``config.json``: the TrainConfig of the run.

``<output_dir>/final/``: a plain transformers model (LoRA merged into the weights) in
``export_dtype``, loadable by ``AutoModelForCausalLM.from_pretrained`` and by vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from cgd.train.config import TrainConfig
from cgd.train.model import CausalLM
from cgd.train.runtime import Runtime, barrier, rng_state, set_rng_state


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"step_{step:06d}"


def save_checkpoint(
    path: Path,
    *,
    model: CausalLM,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    data_state: dict[str, int],
    step: int,
    config: TrainConfig,
    runtime: Runtime,
) -> Path:
    if runtime.is_main:
        path.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(path / "model"))
        tokenizer.save_pretrained(path / "model")
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "data": data_state,
        }
        torch.save(state, path / "training_state.pt")
        (path / "config.json").write_text(config.to_json())
    barrier(runtime)  # the directory exists before other ranks write into it
    torch.save(rng_state(), path / f"rng_rank{runtime.rank}.pt")
    barrier(runtime)
    return path


def load_training_state(path: str | Path, runtime: Runtime) -> dict[str, Any]:
    """Optimizer/scheduler/data state of a checkpoint; also restores this rank's RNG states."""
    path = Path(path)
    state = torch.load(path / "training_state.pt", map_location=runtime.device, weights_only=False)
    set_rng_state(torch.load(path / f"rng_rank{runtime.rank}.pt", weights_only=False))
    return state


def export_final(model: CausalLM, tokenizer: Any, path: Path, dtype: torch.dtype) -> Path:
    """Write a plain transformers model (LoRA merged). Consumes ``model``: it is merged/cast."""
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = model.to(dtype)  # type: ignore[arg-type]
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(path)
    return path
