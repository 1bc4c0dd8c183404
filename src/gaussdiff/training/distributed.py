"""Many processes, one run: ``torchrun`` and DistributedDataParallel, and the few collectives the trainers and
the sharded sampler need.

gaussdiff reads torchrun's protocol (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``
or the rendezvous it set up) and nothing else: without torchrun there is one process and nothing
changes. The backend follows the device: NCCL on CUDA, gloo on CPU. Every collective has a deadline
(:attr:`Distributed.timeout_s`), so a rank that dies or hangs ends the job with an error instead of
leaving the others waiting forever; torchrun's agent then stops every rank (or restarts them all with
``--max-restarts``, and the run resumes from its last checkpoint).

Each rank holds the same replicated state (weights, optimizer, EMA, generators); only the examples of
a batch are split, so N ranks compute what one process computes, up to the order of a sum.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import ConfigError

DEFAULT_TIMEOUT_S = 1800
"""A collective waits this long for the slowest rank: longer than any preview or checkpoint rank 0 makes
while the others wait, short enough that a hung rank does not hold a cluster for hours."""


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher speaking its protocol) started this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def restarted_by_torchrun() -> bool:
    """Whether torchrun's agent restarted this worker after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: rank ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    comm_device: str = "cpu"
    """Where collectives run: the rank's GPU under NCCL, the CPU under gloo."""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, pictures and checkpoints."""
        return self.rank == 0

    @staticmethod
    def start(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
        """Join the job torchrun launched (once per process), or return the single-process default.

        ``device`` is what the user asked for; under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``
        (see :meth:`device_for`).
        """
        if not launched_by_torchrun():
            return Distributed()
        world_size = int(os.environ["WORLD_SIZE"])
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        me = Distributed(rank, world_size, local_rank, timeout_s)
        if device.type == "cuda":
            me = Distributed(rank, world_size, local_rank, timeout_s, str(me.device_for(device)))
        if world_size > 1 and not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(me.device_for(device))
            backend = "nccl" if device.type == "cuda" else "gloo"
            timeout = timedelta(seconds=timeout_s)
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            if attempt == "0":
                dist.init_process_group(backend, timeout=timeout)
            else:
                # The store torchrun's agent keeps outlives a restart, and the process group's keys are the same
                # in every attempt: without a prefix per attempt, the ranks restarted after a failure read the
                # dead ranks' addresses and hang connecting to them.
                shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
                store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                      is_master=rank == 0 and not shared, timeout=timeout)
                dist.init_process_group(backend, store=dist.PrefixStore(f"gaussdiff/attempt-{attempt}", store),
                                        rank=rank, world_size=world_size, timeout=timeout)
        return me

    def device_for(self, device: torch.device) -> torch.device:
        """Each rank's own GPU (``cuda:LOCAL_RANK``); a CPU stays the CPU."""
        if device.type == "cuda" and self.active:
            if self.local_rank >= torch.cuda.device_count():
                raise ConfigError(f"rank {self.rank} has local rank {self.local_rank}, but this machine has "
                                  f"{torch.cuda.device_count()} GPU(s): lower --nproc_per_node")
            return torch.device("cuda", self.local_rank)
        return device

    def share(self, batch_size: int, what: str = "--batch-size") -> int:
        """Each rank's part of a global batch; a global batch the ranks cannot share evenly is an error."""
        if batch_size % self.world_size:
            raise ConfigError(f"{what} {batch_size} is the global batch: it must divide among the {self.world_size} "
                              f"processes")
        return batch_size // self.world_size

    def part(self, x: Tensor) -> Tensor:
        """This rank's contiguous slice of a global batch ``[B, ...]`` (B divisible by the world size)."""
        b = len(x) // self.world_size
        return x[self.rank * b : (self.rank + 1) * b]

    # -- collectives (each the identity for one process) ----------------------------------------

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, x: Tensor) -> Tensor:
        """Every rank's equal-sized ``[b, ...]`` concatenated in rank order: the global batch ``[N b, ...]``."""
        if not self.active:
            return x
        y = x.to(self.comm_device).contiguous()
        parts = [torch.empty_like(y) for _ in range(self.world_size)]
        dist.all_gather(parts, y)
        return torch.cat(parts).to(x.device)

    def sum(self, x: Tensor) -> Tensor:
        if not self.active:
            return x
        y = x.to(self.comm_device, copy=True)
        dist.all_reduce(y)
        return y.to(x.device)

    def any(self, flag: bool) -> bool:
        """Whether any rank raised ``flag`` (so that every rank takes the same branch)."""
        if not self.active:
            return flag
        return bool(self.sum(torch.tensor([int(flag)])).item())

    def same_everywhere(self, x: Tensor) -> bool:
        """Whether ``x`` (a fingerprint) is equal on every rank."""
        if not self.active:
            return True
        return bool((self.gather(x[None]) == x).all().item())

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (any size), in rank order, on every rank. Pickled between the job's own
        processes only: nothing read from disk passes through here."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self, finished: bool = False) -> None:
        """Leave the job. ``finished`` (every rank got here): meet at a barrier first, so that no rank tears down
        its process group while another still talks to it (gloo then aborts the late one at exit)."""
        if self.active and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()


@contextlib.contextmanager
def joined(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Distributed]:
    """The job torchrun launched, for a command's duration (one process without torchrun): left with a barrier
    when the command finishes, at once when it fails."""
    me = Distributed.start(device, timeout_s)
    try:
        yield me
    except BaseException:
        me.close()
        raise
    me.close(finished=True)


def fingerprint(module: torch.nn.Module) -> Tensor:
    """A float64 [2] summary of a module's weights (sum and sum of squares): ranks whose replicas agree bit for
    bit have equal fingerprints, and a drift anywhere changes them."""
    total = torch.zeros(2, dtype=torch.float64)
    for p in module.state_dict().values():
        if p.is_floating_point():
            q = p.detach().double().cpu()
            total += torch.stack([q.sum(), (q * q).sum()])
    return total
