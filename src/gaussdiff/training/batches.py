"""Which images each training step takes: :class:`DataOrder` draws the indices of a step, and
:func:`stream_batches` decodes a streamed folder's batches ahead of the trainer in DataLoader workers.

Both are pure functions of the step (and the seed), so a resumed run sees exactly the batches an
uninterrupted one would, and a rank's share of a global batch is the same under any number of processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import torch
from torch import Tensor

from ..data.datasets import FolderImages, crop_places
from ..errors import DataError
from .distributed import Distributed


def generator_seed(seed: int) -> int:
    """A seed derived from ``--seed`` (``seed + 1``, ``seed * stride + epoch``) as torch's generators take it: a value
    in -2**63..2**64 - 1 unchanged (so that the draws of existing runs, and of their resumes, stay what they were),
    any other reduced modulo 2**64. ``--seed`` itself may be any 64-bit value, and one derived from such a seed can
    fall outside, where ``manual_seed`` raises an overflow instead of seeding."""
    return seed if -(2**63) <= seed < 2**64 else seed % 2**64


class DataOrder:
    """Which examples batch ``step`` takes: positions step*B..(step+1)*B of a stream of per-epoch
    permutations seeded by (seed, epoch). A pure function of the step, so a resumed run sees the data
    in the order an uninterrupted one would, and each epoch visits every example once."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self._perm: tuple[int, Tensor] | None = None

    def indices(self, step: int) -> Tensor:
        pos, end, parts = step * self.batch_size, (step + 1) * self.batch_size, []
        while pos < end:
            epoch, offset = divmod(pos, self.n)
            if self._perm is None or self._perm[0] != epoch:
                g = torch.Generator().manual_seed(generator_seed(self.seed * 1_000_003 + epoch))
                self._perm = (epoch, torch.randperm(self.n, generator=g))
            take = min(end - pos, self.n - offset)
            parts.append(self._perm[1][offset : offset + take])
            pos += take
        return torch.cat(parts)


class StepBatches(torch.utils.data.Dataset):
    """Item ``step``: this rank's part of global batch ``step`` of a streamed folder, decoded (``uint8 [b, C, S,
    S]``), or the one-line message of an image that could not be decoded. With ``crop_seed`` each image is cut
    where :func:`~gaussdiff.data.datasets.crop_places` puts it for (seed, step), drawn for the global batch."""

    def __init__(self, images: FolderImages, order: DataOrder, dist: Distributed, steps: int,
                 crop_seed: int | None = None) -> None:
        self.images, self.order, self.dist, self.steps, self.crop_seed = images, order, dist, steps, crop_seed

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Tensor | str:
        indices = self.order.indices(step)
        at = None if self.crop_seed is None else self.dist.part(crop_places(self.crop_seed, step, len(indices)))
        try:
            return self.images.read(self.dist.part(indices), at)
        except DataError as e:
            return str(e)


def default_workers() -> int:
    """One DataLoader process per CPU core beyond the first (the trainer keeps one), at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def ignore_interrupt(worker_id: int) -> None:
    """A DataLoader worker leaves SIGINT to the trainer, which stops at the end of its step with a checkpoint
    (:class:`~gaussdiff.training.control.StopSignals`): Ctrl-C reaches the terminal's whole process group and
    would otherwise end the workers at once, and the trainer with an error instead of a checkpoint. SIGTERM stays
    the workers' end: the DataLoader shuts down workers that outlive it with SIGTERM, and one that ignored it
    would keep the trainer's process from exiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stream_batches(images: FolderImages, order: DataOrder, dist: Distributed, start: int, steps: int,
                   workers: int | None, crop_seed: int | None = None) -> Iterator[Tensor | str]:
    """The batches of steps ``start``..``steps - 1`` in order, decoded ahead by ``workers`` processes (random crops
    from ``crop_seed``). The indices and crops are functions of the step: a resumed run continues with exactly the
    batches an uninterrupted one would see, reading nothing it already consumed."""
    workers = default_workers() if workers is None else workers
    # A generator of its own: a DataLoader's iterator otherwise seeds its workers with a draw from the global RNG,
    # which dropout draws from too (and which a checkpoint restores), so streaming would change the losses.
    loader = torch.utils.data.DataLoader(StepBatches(images, order, dist, steps, crop_seed), batch_size=None,
                                         sampler=range(start, steps), num_workers=workers,
                                         prefetch_factor=4 if workers else None, generator=torch.Generator(),
                                         worker_init_fn=ignore_interrupt)
    return iter(loader)
