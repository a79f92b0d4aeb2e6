"""Device choice and the torchrun process group, shared by every stage that runs on N processes.

`choose_device(device)`: '' / None → `cuda:<LOCAL_RANK>` when CUDA is present, else cpu; "cuda" → `cuda:<LOCAL_RANK>`;
anything else as given. `Dist.setup(device)` joins the torchrun process group when `WORLD_SIZE > 1` (NCCL on
CUDA, gloo on CPU) and `close()` ends it only if this call created it, so a group another stage joined first (e.g.
`teacher extract` inside `distill --extract-missing`) is reused rather than re-created on the same port.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor

from mocha.errors import ConfigError


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def global_rank() -> int:
    """This process's rank in the job (torchrun's RANK; 0 outside torchrun), readable before any group exists."""
    return int(os.environ.get("RANK", "0"))


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for `device` ('' / None: CUDA of this local rank if present, else cpu)."""
    text = str(device).strip() if device is not None else ""
    if not text or text == "auto":
        return torch.device(f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"device={text!r}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={text}: CUDA is not available on this machine; use device=cpu")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank()}")  # one GPU per torchrun rank
    return dev


_OPS = {"sum": tdist.ReduceOp.SUM, "max": tdist.ReduceOp.MAX}


@dataclass
class Dist:
    """This process's place in the job (rank, world size, device) and the few collectives the stages use.

    In a single process every collective is a no-op, so stage code is written once for both cases.
    """

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owned: bool = False  # this object initialised the process group (and must destroy it)

    @classmethod
    def setup(cls, device: str | torch.device | None = None) -> Dist:
        """Choose the device and join the torchrun process group when WORLD_SIZE > 1."""
        dev = choose_device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        owned = False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            owned = True
        if tdist.is_initialized():
            return cls(tdist.get_rank(), tdist.get_world_size(), dev, owned)
        return cls(0, 1, dev, owned)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes shared files and prints."""
        return self.rank == 0

    def all_reduce_(self, t: Tensor, op: str = "sum") -> Tensor:
        """In place over ranks (`op`: sum | max)."""
        if self.world > 1:
            tdist.all_reduce(t, op=_OPS[op])
        return t

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def broadcast_(self, t: Tensor, src: int = 0) -> Tensor:
        if self.world > 1:
            tdist.broadcast(t, src)
        return t

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """`obj` as rank `src` holds it, on every rank (picklable objects: paths, small dicts)."""
        if self.world == 1:
            return obj
        box = [obj if self.rank == src else None]
        tdist.broadcast_object_list(box, src)
        return box[0]

    def close(self) -> None:
        """End the process group if `setup` created it."""
        if self.owned and tdist.is_initialized():
            tdist.destroy_process_group()
            self.owned = False
