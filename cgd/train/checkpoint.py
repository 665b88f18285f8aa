"""Checkpoints that resume exactly, and the final export.

Layout of ``<output_dir>/checkpoints/step_000123/``:
- ``model/``: fp32 master weights (full fine-tune) or the LoRA adapter (peft), ``save_pretrained``
  format, plus the tokenizer, so a checkpoint can be evaluated as it is;
- ``training_state.pt``: optimizer, scheduler, step, data position (rank 0; DDP keeps them
  identical on every rank);
- ``rng_rank<r>.pt``: every rank's RNG states (dropout must continue identically);
- ``config.json``: the TrainConfig of the run.

Under FSDP (``strategy=fsdp``) weights and optimizer state are sharded, so instead of ``model/``
and the optimizer in ``training_state.pt`` every rank writes its shards to ``sharded/``
(torch.distributed.checkpoint); it loads on any number of ranks. ``model/`` then holds only the
tokenizer; the full model is written once, at the end, to ``final/``.

``<output_dir>/final/``: a plain transformers model (LoRA merged into the weights) in
``export_dtype``, loadable by ``AutoModelForCausalLM.from_pretrained`` and by vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

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
    sharded_module: torch.nn.Module | None = None,
) -> Path:
    """``sharded_module``: the FSDP root; weights and optimizer go to ``sharded/`` (DCP)."""
    if runtime.is_main:
        path.mkdir(parents=True, exist_ok=True)
        if sharded_module is None:
            model.save_pretrained(str(path / "model"))
        tokenizer.save_pretrained(path / "model")
        state = {
            "step": step,
            "scheduler": scheduler.state_dict(),
            "data": data_state,
        }
        if sharded_module is None:
            state["optimizer"] = optimizer.state_dict()
        torch.save(state, path / "training_state.pt")
        (path / "config.json").write_text(config.to_json())
    barrier(runtime)  # the directory exists before other ranks write into it
    if sharded_module is not None:
        from cgd.train.parallel import save_sharded

        save_sharded(path / "sharded", sharded_module, optimizer)
    torch.save(rng_state(), path / f"rng_rank{runtime.rank}.pt")
    barrier(runtime)
    return path


def load_training_state(path: str | Path, runtime: Runtime) -> dict[str, Any]:
    """Optimizer/scheduler/data state of a checkpoint; also restores this rank's RNG states."""
    path = Path(path)
    state = torch.load(path / "training_state.pt", map_location=runtime.device, weights_only=False)
    rng = path / f"rng_rank{runtime.rank}.pt"
    if rng.exists():
        set_rng_state(torch.load(rng, weights_only=False))
    else:  # resumed on more ranks than were saved: a new rank gets a fresh, distinct stream
        torch.manual_seed(state["step"] * 1_000_003 + runtime.rank)
    return cast(dict[str, Any], state)


def export_final(model: CausalLM, tokenizer: Any, path: Path, dtype: torch.dtype) -> Path:
    """Write a plain transformers model (LoRA merged). Consumes ``model``: it is merged/cast."""
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = model.to(dtype)  # type: ignore[arg-type]
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(path)
    return path
