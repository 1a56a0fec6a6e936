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

from SSLAnomalyLib.core.reading.images import ReadError

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

    def gathered(self, value) -> list:
        """Every rank's `value` (any picklable), in rank order."""
        if self.world == 1:
            return [value]
        every = [None] * self.world
        dist.all_gather_object(every, value)
        return every

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def finish(self) -> None:
        """Wait for every rank, then leave the process group."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def refuse_other_normals(ranks: Ranks, folder, files: list[str], skipped: list[str]) -> None:
    """Each rank reads the normals itself; one that cannot read a file the others can (storage that
    differs between machines, a file's permissions) would draw other images under the same seeded
    draws and train the model on a mixture, without a word. Refused on every rank (ReadError, before
    any step), naming each file a rank lacks with its reason ("PATH: REASON" in `skipped`)."""
    read = ranks.gathered((files, skipped))
    every = sorted({f for kept, _ in read for f in kept})
    lacking = [f"rank {r}: " + next((s for s in left_out if s.startswith(f"{f}: ")), f"{f}: not found")
               for r, (kept, left_out) in enumerate(read) for f in every if f not in set(kept)]
    if lacking:
        more = f"; and {len(lacking) - 3} more" if len(lacking) > 3 else ""
        raise ReadError(folder, f"the {ranks.world} training processes did not read the same normals: "
                                f"{'; '.join(lacking[:3])}{more}; every process must read every file")
