"""``create_dataloader``: a standard ``torch.utils.data.DataLoader`` with tuned defaults.

For users who want torch's own DataLoader rather than :class:`pydata.Loader`. The defaults are
what a pydata dataset needs to keep a GPU fed: a batch is fetched with one ``__getitems__`` call
and unwrapped by :func:`pydata.collate` without a per-sample copy; workers are started once
(persistent), keep four batches in flight each, and are forked on Linux. The trade-off of fork
is that it copies the parent's state cheaply but is unsafe after CUDA or third-party threads
start work in the parent; pydata's own thread pool resets itself in a forked child, and the
workers never touch CUDA. Pass ``multiprocessing_context="forkserver"`` (or ``"spawn"``) when the
parent holds other threads or resources that must not be forked.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pydata.datasets.batch import collate
from pydata.loader.sampler import EpochSampler

__all__ = ["create_dataloader", "default_num_workers"]


def default_num_workers() -> int:
    """Worker processes to start by default: the cores this process may run on, less one for
    the main (training) process, and at least 0.

    The usable cores come from ``os.sched_getaffinity(0)``, so a job pinned to a CPU set (taskset,
    cgroup cpusets, SLURM) counts its own cores, not the machine's; where it is missing (macOS)
    ``os.cpu_count()`` is used.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    cores = len(getaffinity(0)) if getaffinity is not None else (os.cpu_count() or 1)
    return max(cores - 1, 0)


def create_dataloader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int | None = None,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int | None = None,
    sampler: Sampler[Any] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    **kwargs: Any,
) -> DataLoader[Any]:
    """A ``torch.utils.data.DataLoader`` over ``dataset`` with defaults tuned for pydata.

    Batches are fetched in one call through the dataset's ``__getitems__`` (as
    :class:`pydata.MemoryMappedDataset` provides) and collated by :func:`pydata.collate`, so a
    batch arrives as a dict of batched tensors (lists for variable-shape, bytes and str fields).

    Args:
        dataset: A map-style dataset; one with ``__getitems__`` is read a batch at a time.
        batch_size: Samples per batch (>= 1).
        shuffle: Visit samples in a random order, drawn from ``seed``. Ignored when ``sampler``
            is given: the sampler decides the order.
        seed: Seeds the order (and the ``torch.Generator`` that seeds the workers), so the
            same seed gives the same order in every run.
        num_workers: Worker processes; default :func:`default_num_workers` (usable cores - 1).
            0 loads in the main process.
        drop_last: Drop the last batch when it is smaller than ``batch_size``.
        pin_memory: Copy batches into page-locked memory for faster host-to-GPU copies; default
            ``torch.cuda.is_available()``.
        persistent_workers: Keep workers alive between epochs; default: when there are workers.
        prefetch_factor: Batches each worker keeps in flight; default 4 with workers, and must
            stay None without them.
        sampler: A sampler of indices; replaces the default :class:`pydata.loader.sampler.EpochSampler`
            (pydata's epoch order, split into disjoint, equal rank shares; it moves to the next
            epoch on every iteration, or call ``loader.sampler.set_epoch(e)``).
        rank, world_size: For the default sampler: this rank's place (default:
            torch.distributed, else RANK/WORLD_SIZE, else 0 of 1).
        **kwargs: Passed to ``DataLoader``; for example ``collate_fn`` (default
            :func:`pydata.collate`), ``worker_init_fn``, ``timeout``, or
            ``multiprocessing_context`` (default ``"fork"`` on Linux with workers, else torch's).

    Returns:
        The DataLoader.

    Raises:
        ValueError: ``batch_size`` < 1 or ``num_workers`` < 0; DataLoader's own checks (such
            as ``prefetch_factor`` without workers).

    Example:
        >>> loader = create_dataloader(dataset, 256, num_workers=4)       # doctest: +SKIP
        >>> for batch in loader:                                          # doctest: +SKIP
        ...     images, labels = batch["image"], batch["label"]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive int, got {batch_size!r}"
        raise ValueError(msg)
    workers = default_num_workers() if num_workers is None else num_workers
    if workers < 0:
        msg = f"num_workers must be >= 0, got {workers}"
        raise ValueError(msg)
    generator = torch.Generator()
    generator.manual_seed(seed)
    kwargs.setdefault("collate_fn", collate)
    if workers > 0 and sys.platform.startswith("linux"):
        kwargs.setdefault("multiprocessing_context", "fork")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler if sampler is not None else EpochSampler(
            len(dataset), shuffle=shuffle, seed=seed, rank=rank, world_size=world_size),  # type: ignore[arg-type]
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=workers > 0 if persistent_workers is None else persistent_workers,
        prefetch_factor=(4 if workers > 0 else None) if prefetch_factor is None else prefetch_factor,
        generator=generator,
        **kwargs,
    )
