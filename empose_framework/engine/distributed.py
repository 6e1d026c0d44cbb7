"""Multi-process training under torchrun: process group from the environment, one device per rank.

`torchrun --nproc-per-node N` sets RANK, WORLD_SIZE and LOCAL_RANK; with WORLD_SIZE > 1 the engine
joins a process group (nccl on CUDA, gloo on CPU), wraps the estimator in DistributedDataParallel and
lets only rank 0 write files. Each rank takes a disjoint share of every step's data (see `train.py`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from empose_framework.errors import EmposeError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(spec: str, info: DistInfo) -> torch.device:
    """`auto` -> CUDA when available (one GPU per local rank under torchrun), else CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EmposeError(
                f"recipe: device: '{spec}' was asked for but this torch ({torch.__version__}) sees no CUDA device. "
                "Use `--set device=cpu` (or `auto`, which falls back to the CPU)."
            )
        if spec == "cuda":
            return torch.device("cuda", info.local_rank % torch.cuda.device_count())
    return torch.device(spec)


def init(device_spec: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group if there is one; returns the rank info and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device_spec, info)
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_flag(value: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when it is true on any rank (Ctrl-C reaches each torchrun worker)."""
    if not info.enabled:
        return value
    t = torch.tensor([int(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
