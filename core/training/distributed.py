"""Several processes, one run: torch.distributed as started by ``torchrun``.

ptrag writes no launcher and no communication layer: ``torchrun`` starts the processes and sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, :func:`setup` joins its process group (gloo on CPU, NCCL
on CUDA), and the engine uses torch's ``DistributedDataParallel`` and collectives. Without those
variables everything here is a no-op for a single process, so the same code runs both ways.

The rules the engine follows: rank 0 owns the run folder (it alone reads and writes it and the
others receive what they need from it), every rank takes part in every collective in the same
order, and every decision (early stop, best weights, errors) is made from all-reduced or broadcast
values so that the ranks never diverge.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as td

from ..errors import ConfigError, PtragError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """This rank's share of ``items``: every ``world_size``-th item from its rank on."""
        return items[self.rank::self.world_size]


SINGLE = Dist()


def from_env() -> Dist:
    """The place torchrun gave this process (a single process when it did not start it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"torchrun environment: {exc}; "
                          "start ptrag with torchrun or without these variables") from None
    return Dist(rank, world, local) if world > 1 else SINGLE


def current() -> Dist:
    """This process's place once :func:`setup` ran (a single process otherwise)."""
    if td.is_available() and td.is_initialized():
        return Dist(td.get_rank(), td.get_world_size(), from_env().local_rank)
    return SINGLE


def setup(device: str = "auto") -> Dist:
    """Join torchrun's process group once (idempotent): NCCL when this rank uses CUDA, else gloo.

    On CUDA each process takes the GPU of its ``LOCAL_RANK``.
    """
    dist = from_env()
    if not dist.enabled or td.is_initialized():
        return current() if dist.enabled else dist
    if not td.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(dist.local_rank % torch.cuda.device_count())
    td.init_process_group(backend="nccl" if cuda else "gloo")
    atexit.register(shutdown)
    return current()


def shutdown() -> None:
    if td.is_available() and td.is_initialized():
        td.destroy_process_group()


def device_for(dist: Dist, device: torch.device) -> torch.device:
    """The CUDA device of this rank (``cuda:LOCAL_RANK``); other devices unchanged."""
    if dist.enabled and device.type == "cuda":
        return torch.device("cuda", dist.local_rank % torch.cuda.device_count())
    return device


# --------------------------------------------------------------------------- collectives


def broadcast(value: T, dist: Dist, src: int = 0) -> T:
    """``value`` of rank ``src`` on every rank (any picklable object)."""
    if not dist.enabled:
        return value
    box = [value if dist.rank == src else None]
    td.broadcast_object_list(box, src=src)
    return box[0]


def gather(value: Any, dist: Dist) -> list[Any] | None:
    """Every rank's ``value`` as a list on rank 0 (in rank order); None on the other ranks."""
    if not dist.enabled:
        return [value]
    out = [None] * dist.world_size if dist.is_main else None
    td.gather_object(value, out, dst=0)
    return out


def all_sum(values: list[float], dist: Dist) -> list[float]:
    """Element-wise sum of a list of floats over the ranks (float64)."""
    if not dist.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if td.get_backend() == "nccl":
        t = t.cuda()
    td.all_reduce(t)
    return t.cpu().tolist()


def all_min(value: float, dist: Dist) -> float:
    """The smallest ``value`` over the ranks (float64)."""
    if not dist.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if td.get_backend() == "nccl":
        t = t.cuda()
    td.all_reduce(t, op=td.ReduceOp.MIN)
    return float(t.cpu()[0])


def barrier(dist: Dist) -> None:
    """Wait until every rank is here."""
    if dist.enabled:
        td.barrier()


def on_main(fn: Callable[[], T], dist: Dist) -> T:
    """Run ``fn`` on rank 0 only and give its result to every rank; a ptrag error raised there is
    raised on every rank (with the same one-line message), so all ranks stop together."""
    if not dist.enabled:
        return fn()
    outcome: tuple[str, Any]
    if dist.is_main:
        try:
            outcome = ("ok", fn())
        except PtragError as exc:
            outcome = ("error", exc)
        except Exception as exc:  # not ours: stop the others too, then re-raise here
            broadcast(("crash", f"rank 0 failed: {type(exc).__name__}: {exc}"), dist)
            raise
    else:
        outcome = ("", None)
    kind, payload = broadcast(outcome, dist)
    if kind == "error":
        raise payload
    if kind == "crash":
        raise RuntimeError(payload)
    return payload
