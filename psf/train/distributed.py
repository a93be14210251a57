"""Several processes (GPUs) training one model with PyTorch's DistributedDataParallel, launched by torchrun.

    torchrun --nproc_per_node 4 -m psf.cli.main train DATA -o model.pt --device cuda

Every process loads the data and draws the same global batches (the run's generator is seeded alike on all of
them); process r trains on every world-th item of each batch, DDP averages the gradients, so the networks stay
identical. Process 0 alone prints, evaluates and writes model.pt. CUDA uses NCCL, the CPU gloo (how the tests
run it: 2 processes on one machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This process' part of a global batch of indices."""
        return idx if self.size == 1 else idx[self.rank :: self.size]

    def wrap(self, module: torch.nn.Module, device: str) -> torch.nn.Module:
        """The module under DDP (gradients averaged across processes at backward), or itself alone."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if str(device).startswith("cuda") else None
        return DistributedDataParallel(module, device_ids=ids)


SINGLE = World()


def launched() -> bool:
    """True inside a torchrun launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str) -> tuple[World, str]:
    """Join torchrun's process group (once); returns this process' World and its device (cuda -> cuda:LOCAL_RANK)."""
    if not launched():
        return SINGLE, device
    import torch.distributed as dist

    if str(device).startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size()), device


def replicas_identical(modules: list[torch.nn.Module]) -> bool:
    """True when every process holds the same parameters (what DDP promises): compares a checksum across processes."""
    import torch.distributed as dist

    total = torch.stack([sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(m.parameters())) for m in modules])
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def leave() -> None:
    """Leave the process group, after collecting garbage: a DDP wrapper caught in a reference cycle would
    otherwise be freed at interpreter exit, after the group is gone, and its reducer's gloo work could then
    abort the process ("terminate called without an active exception")."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
