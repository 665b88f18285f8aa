"""Data parallelism: DDP (every rank holds everything) or FSDP2 (everything sharded).

FSDP2 (``torch.distributed.fsdp.fully_shard``) puts one shard unit on every transformer block
and one on the root (the SupervisedLoss wrapper: embeddings, final norm, lm_head), so a rank
holds 1/N of the fp32 weights, gradients and AdamW moments (~16 bytes per parameter / N) and
gathers one block at a time. Mixed precision: blocks compute in bf16 and gradients are reduced
in fp32. LoRA works unchanged: peft wraps the model first, frozen and trainable parameters are
sharded alike and only the trainable ones reach the optimizer.

Sharded checkpoints are written with torch.distributed.checkpoint (DCP): every rank writes its
shards, and a checkpoint loads on any number of ranks (DCP reshards on load).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from cgd.train.config import TrainConfig
from cgd.train.model import causal_lm
from cgd.train.runtime import Runtime

logger = logging.getLogger("cgd.train")


def decoder_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of a Llama/Qwen-style model (under peft too)."""
    return list(causal_lm(model).get_decoder().layers)


def shard(loss_module: nn.Module, model: nn.Module, config: TrainConfig, rt: Runtime) -> nn.Module:
    """FSDP2: one unit per block, then the root; returns the (now sharded) loss module."""
    mp = MixedPrecisionPolicy(
        # bf16 compute when the run is bf16-mixed; reductions always in fp32.
        param_dtype=rt.autocast_dtype,
        reduce_dtype=torch.float32,
    )
    kwargs: dict[str, Any] = dict(
        mp_policy=mp, reshard_after_forward=config.fsdp_reshard_after_forward
    )
    if config.fsdp_cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    for block in decoder_blocks(model):
        fully_shard(block, **kwargs)
    fully_shard(loss_module, **kwargs)
    return loss_module


def wrap(loss_module: nn.Module, model: nn.Module, config: TrainConfig, rt: Runtime) -> nn.Module:
    """The module the step runs: the loss module as is, under DDP, or sharded."""
    if config.strategy == "fsdp":
        return shard(loss_module, model, config, rt)
    if rt.distributed:
        return DistributedDataParallel(
            loss_module, device_ids=[rt.device] if rt.device.type == "cuda" else None
        )
    return loss_module


def compile_blocks(model: nn.Module) -> None:
    """torch.compile every block in place (after sharding: FSDP's hooks stay outside)."""
    for block in decoder_blocks(model):
        block.compile()


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm; returns it as a plain 0-d tensor (no host sync)."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def local_bytes(params: list[nn.Parameter], optimizer: torch.optim.Optimizer) -> int:
    """Bytes of parameters + optimizer state this rank holds (its shards under FSDP)."""

    def nbytes(t: torch.Tensor) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    total = sum(nbytes(p) for p in params)
    for state in optimizer.state.values():
        total += sum(nbytes(v) for v in state.values() if isinstance(v, torch.Tensor) and v.ndim)
    return total


def unsharded(module: nn.Module) -> Any:
    """Context for calling submodules directly (evaluation): gathers the root unit's weights."""
    import contextlib

    @contextlib.contextmanager
    def ctx() -> Any:
        if isinstance(module, FSDPModule):
            module.unshard()
            try:
                yield
            finally:
                module.reshard()
        else:
            yield

    return ctx()


# -- sharded checkpoints -------------------------------------------------------------------------


def save_sharded(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Every rank writes its shards of weights and optimizer state to ``path`` (DCP)."""
    model_sd, optim_sd = get_state_dict(module, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))  # type: ignore[attr-defined]


def load_sharded(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load a DCP checkpoint written on any number of ranks into this run's shards."""
    model_sd, optim_sd = get_state_dict(module, optimizer)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))  # type: ignore[attr-defined]
    set_state_dict(
        module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on rank 0's CPU (a collective: every rank calls it)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return cast(dict[str, torch.Tensor], get_model_state_dict(module, options=options))
