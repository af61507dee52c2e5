"""What each training step is fed: the epoch's order and the step's augmentation seed, derived
from (seed, epoch) and (seed, step); batches sliced from a split in that order, each process's
contiguous share of every global batch; and the check that the global batch splits over them.

Separate from :mod:`mtlbench.engine.trainer` because the benchmarks and tests feed bare training
loops the very same batches; nothing here knows of models, losses or weightings.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from mtlbench.data.datasets import DenseDataset
from mtlbench.errors import MtlbenchError


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63)


def step_seed(seed: int, step: int) -> int:
    """The augmentation seed of one global batch of an epoch."""
    return (seed * 6_364_136_223_846_793_005 + step * 1_442_695_040_888_963_407) % (2**63)


def batches(dataset: DenseDataset, batch_size: int, shuffle: bool, seed: int,
            drop_last: bool = False, part: tuple[int, int] = (0, 1)) -> Iterator[dict[str, Tensor]]:
    """Raw batches by slicing the split's arrays; the order depends only on ``seed``.

    ``part = (rank, world)`` yields this rank's contiguous share of each batch (``batch_size``
    divisible by ``world``).
    """
    n = len(dataset)
    order = (torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle
             else torch.arange(n))
    order = order.to(dataset.device)  # once per epoch: a copy per batch would wait for the GPU
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    rank, world = part
    share = batch_size // world
    for s in range(0, stop, batch_size):
        idx = order[s:s + batch_size]
        yield dataset.batch(idx[rank * share:(rank + 1) * share] if world > 1 else idx)


def check_world(batch_size: int, frames: int, world: int) -> None:
    """The global batch splits evenly over ``world`` processes, and the train split fills one."""
    if world == 1:
        return
    if batch_size % world:
        raise MtlbenchError(f"train.batch_size {batch_size} is the global batch and must split evenly over the "
                            f"{world} processes: use a multiple of {world}")
    if frames < batch_size:
        raise MtlbenchError(f"the train split has {frames} frames, fewer than the global batch {batch_size}: "
                            f"use a smaller train.batch_size or more data")
