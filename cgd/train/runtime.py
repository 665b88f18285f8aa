"""Device, precision, seeds and the process group: everything about *where* training runs.

One process per GPU under ``torchrun`` (NCCL), or one or more CPU processes (gloo) for tests. The
same code path serves both; a single process without torchrun's environment skips the process
group entirely.
"""

from __future__ import annotations

import os
import random
import resource
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    param_dtype: torch.dtype  # dtype of the weights the optimizer updates
    autocast_dtype: torch.dtype | None  # bf16 on GPU (mixed precision), None: no autocast

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> torch.autocast:
        """Autocast context for forward passes (a disabled one when autocast_dtype is None)."""
        return torch.autocast(
            device_type=self.device.type,
            dtype=self.autocast_dtype or torch.bfloat16,
            enabled=self.autocast_dtype is not None,
        )


def init_runtime(precision: str, process_group: bool = False) -> Runtime:
    """Join the process group when launched by torchrun, pick the device and the dtypes.

    ``process_group``: also make a group of one for a single process (FSDP needs one).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        # TF32 matmuls for the fp32 parts (optimizer-side math, fp32 fallbacks): ~free accuracy.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo", device_id=device if cuda else None
        )
    elif process_group and not dist.is_initialized():
        # A group of one in memory: no rendezvous, no port.
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            store=dist.HashStore(),  # type: ignore[attr-defined]
            rank=0,
            world_size=1,
        )
    if precision == "auto":
        precision = "bf16-mixed" if cuda else "fp32"
    param_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    autocast_dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    return Runtime(device, rank, world_size, param_dtype, autocast_dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state() -> dict[str, Any]:
    """This process's RNG states (saved per rank in checkpoints for exact resume)."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def all_reduce_sum(values: list[float], runtime: Runtime) -> list[float]:
    """Sum a few scalars over ranks (one collective); identity in a single process."""
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()


def memory_gib(runtime: Runtime) -> float:
    """Peak memory: CUDA allocator peak on GPU, process max RSS on CPU (GiB)."""
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
