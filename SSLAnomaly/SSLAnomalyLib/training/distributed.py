"""Training in several processes started by `torchrun` (one per GPU, or a few on a CPU machine).

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; `Ranks.start` joins the process group they name
(nccl on GPUs, each process on its own GPU; gloo on CPUs). A plain `sslanomaly train` is one rank
of one, and none of this costs it anything. Rank 0 alone writes checkpoints, judges them, fits the
reference and writes the model folder; the others wait at a barrier and leave cleanly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

WAIT = timedelta(hours=3)  # how long ranks wait for rank 0 to judge a checkpoint or fit the model folder


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str = "auto") -> "Ranks":
        """This process's place, joining the process group when torchrun started several."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        ranks = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        gpu = device != "cpu" and torch.cuda.is_available()
        if gpu:
            torch.cuda.set_device(ranks.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if gpu else "gloo", timeout=WAIT)
        return ranks

    def device(self, requested: str) -> str:
        """The device this rank trains on: its own GPU under nccl."""
        if self.world > 1 and requested != "cpu" and torch.cuda.is_available():
            return f"cuda:{self.local_rank}"
        return requested

    def shard(self, items):
        """This rank's share of a batch drawn alike on every rank."""
        return items[self.rank::self.world]

    def most(self, value: float) -> float:
        """The largest of every rank's `value` (the time a step took), so all ranks stop together."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64,
                         device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def finish(self) -> None:
        """Wait for every rank, then leave the process group."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
