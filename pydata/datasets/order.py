"""The order of an epoch and how ranks, workers and batches share it: pure functions.

An epoch's order is a pure function of ``(seed, epoch, sizes, shuffle settings)``, so every
rank computes it on its own, without coordination. Ranks read it *strided*: rank ``r`` of
``W`` takes ``order[start + r :: W]``. The trade-off: a rank's samples are scattered over the
whole order instead of forming one block, but the state of a loader is a single global count
(:func:`rank_share` explains why), and a resume on another world size continues the same order
with nothing repeated. Importing this module does not import torch.
"""

from __future__ import annotations

import itertools
import operator
import os
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "batch_slices",
    "consumed_after",
    "epoch_order",
    "num_batches",
    "per_rank_count",
    "rank_share",
    "resolve_rank_world",
    "shard_window_order",
    "worker_batches",
]

Order = npt.NDArray[np.int64]


def _as_int(name: str, value: int) -> int:
    """``value`` as an ``int`` (numpy integers accepted; bool and float refused)."""
    if isinstance(value, bool):
        msg = f"{name} must be an integer, got bool {value!r}"
        raise TypeError(msg)
    try:
        return operator.index(value)
    except TypeError:
        msg = f"{name} must be an integer, got {type(value).__name__} {value!r}"
        raise TypeError(msg) from None


def _check_int(name: str, value: int, minimum: int) -> int:
    """``value`` as an ``int``, at least ``minimum``."""
    number = _as_int(name, value)
    if number < minimum:
        msg = f"{name} must be >= {minimum}, got {number}"
        raise ValueError(msg)
    return number


def _generator(seed: int, epoch: int) -> np.random.Generator:
    seed = _check_int("seed", seed, 0)
    epoch = _check_int("epoch", epoch, 0)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, epoch))))


def epoch_order(num_samples: int, *, seed: int, epoch: int, shuffle: bool = True) -> Order:
    """The order in which an epoch visits samples ``0 .. num_samples - 1``.

    A pure function of its arguments: a ``PCG64`` generator seeded by
    ``SeedSequence((seed, epoch))`` draws a permutation. numpy guarantees the same stream for
    the same seed and calls on the same numpy build; across versions it keeps ``PCG64`` and
    ``SeedSequence`` fixed but may improve ``Generator`` algorithms such as ``permutation``
    (numpy's random compatibility policy, NEP 19). So an order is stable across numpy versions
    only as far as numpy guarantees that: resume on the numpy that started the run (pin it).

    Args:
        num_samples: Samples in the dataset (``>= 0``).
        seed: Run seed (``>= 0``), the same on every rank.
        epoch: Epoch number (``>= 0``).
        shuffle: If false, the identity order ``0 .. num_samples - 1``.

    Returns:
        A permutation of ``range(num_samples)``, as int64.

    Raises:
        ValueError: A negative count, seed or epoch.
        TypeError: An argument that is not an integer.

    Example:
        >>> epoch_order(5, seed=1, epoch=0, shuffle=False).tolist()
        [0, 1, 2, 3, 4]
        >>> sorted(epoch_order(5, seed=1, epoch=3).tolist())
        [0, 1, 2, 3, 4]
    """
    num_samples = _check_int("num_samples", num_samples, 0)
    rng = _generator(seed, epoch)
    if not shuffle:
        return np.arange(num_samples, dtype=np.int64)
    return rng.permutation(num_samples).astype(np.int64, copy=False)


def shard_window_order(
    shard_sizes: Sequence[int],
    *,
    seed: int,
    epoch: int,
    window_shards: int,
    shuffle: bool = True,
) -> Order:
    """An epoch order for streaming: shuffled shards, samples shuffled over a sliding window.

    Sample ids are global: shard ``s`` holds ids ``sum(shard_sizes[:s])`` up to
    ``sum(shard_sizes[:s + 1]) - 1``. The shards are put in a random order; the shard at
    position ``p`` spreads its samples at random over the stretch of the epoch between
    positions ``p`` and ``p + window_shards`` (in shard lengths). Each sample draws a slot
    ``p + k`` with ``k`` uniform in ``[0, window_shards)``; the order is the samples sorted by
    slot, shuffled within each slot (a counting sort: O(samples)).

    The window slides rather than jumps: at any point of the epoch at most ``window_shards``
    shards are started and not finished, so a reader keeps that many in its cache, and the
    epoch's first samples come from its first shard alone, which is the only download that
    the first batch waits for. A larger window mixes better and keeps more shards in the
    cache. Seeding and numpy-version stability are as in :func:`epoch_order`.

    Args:
        shard_sizes: Samples per shard, in index order (each ``>= 0``).
        seed: Run seed (``>= 0``).
        epoch: Epoch number (``>= 0``).
        window_shards: Shards whose samples mix at any one point (``>= 1``).
        shuffle: If false, the identity order (shards and samples in index order).

    Returns:
        A permutation of ``range(sum(shard_sizes))``, as int64.

    Raises:
        ValueError: A negative size, seed or epoch, or ``window_shards < 1``.
        TypeError: An argument that is not an integer.

    Example:
        >>> order = shard_window_order([2, 2, 2], seed=0, epoch=0, window_shards=1)
        >>> sorted(order.tolist()) == list(range(6))
        True
        >>> shard_window_order([2, 3], seed=0, epoch=0, window_shards=1, shuffle=False).tolist()
        [0, 1, 2, 3, 4]
    """
    sizes = np.array(
        [_check_int(f"shard_sizes[{i}]", s, 0) for i, s in enumerate(shard_sizes)], dtype=np.int64
    )
    window_shards = _check_int("window_shards", window_shards, 1)
    rng = _generator(seed, epoch)
    total = int(sizes.sum())
    if not shuffle:
        return np.arange(total, dtype=np.int64)
    shard_perm = rng.permutation(len(sizes))
    perm_sizes = sizes[shard_perm]
    first_id = np.cumsum(sizes) - sizes  # global id of each shard's first sample
    first_pos = np.cumsum(perm_sizes) - perm_sizes  # its position once the shards are permuted
    by_shard = np.repeat(first_id[shard_perm] - first_pos, perm_sizes)
    by_shard += np.arange(total, dtype=np.int64)  # the samples, shard after shard
    slots = np.repeat(np.arange(len(sizes), dtype=np.int64), perm_sizes)
    slots += rng.integers(0, window_shards, size=total, dtype=np.int64)
    order = by_shard[np.argsort(slots, kind="stable")]  # a radix sort for integer keys
    bounds = np.cumsum(np.bincount(slots, minlength=len(sizes) + window_shards))
    for begin, end in itertools.pairwise([0, *bounds.tolist()]):
        rng.shuffle(order[begin:end])  # in place: one slot at a time, O(total) overall
    return order


def per_rank_count(total: int, *, start: int, world_size: int) -> int:
    """How many samples each rank reads from ``order[start:]`` of an order of ``total``.

    Example:
        >>> per_rank_count(10, start=0, world_size=3)
        3
    """
    total = _check_int("total", total, 0)
    start = _check_int("start", start, 0)
    world_size = _check_int("world_size", world_size, 1)
    if start > total:
        msg = f"start ({start}) is past the end of the order ({total} samples)"
        raise ValueError(msg)
    return (total - start) // world_size


def rank_share(order: Order, *, start: int, rank: int, world_size: int) -> Order:
    """The samples of ``order[start:]`` that rank ``rank`` of ``world_size`` reads, in order.

    Rank ``r`` reads ``order[start + r :: world_size]``, cut to
    ``(len(order) - start) // world_size`` samples, so every rank reads the same number. Equal
    counts keep DDP from hanging: a rank with one batch more would wait forever in a collective
    that the others never join. The last ``(len(order) - start) % world_size`` samples are not
    read in this epoch; with shuffling they are a different tail each epoch.

    Strided shares make resuming exact: when every rank has consumed ``k`` samples, exactly
    ``order[start : start + k * world_size]`` has been consumed globally
    (:func:`consumed_after`). That count alone is the state; calling ``rank_share`` with it as
    ``start``, on any world size, continues the same order with nothing repeated.

    Args:
        order: The epoch order (one-dimensional).
        start: Samples of ``order`` already consumed globally (``0 <= start <= len(order)``).
        rank: This rank (``0 <= rank < world_size``).
        world_size: Number of ranks (``>= 1``).

    Returns:
        A view of ``order`` (strided, not a copy).

    Raises:
        ValueError: ``order`` is not one-dimensional, or ``start``, ``rank`` or
            ``world_size`` is out of range.

    Example:
        >>> rank_share(np.arange(7), start=0, rank=0, world_size=2).tolist()
        [0, 2, 4]
    """
    if order.ndim != 1:
        msg = f"order must be one-dimensional, got shape {order.shape}"
        raise ValueError(msg)
    count = per_rank_count(len(order), start=start, world_size=world_size)
    rank = _check_int("rank", rank, 0)
    if rank >= world_size:
        msg = f"rank must be < world_size ({world_size}), got {rank}"
        raise ValueError(msg)
    first = start + rank
    return order[first : first + count * world_size : world_size]


def consumed_after(start: int, per_rank_consumed: int, world_size: int) -> int:
    """The global position after each of ``world_size`` ranks consumed ``per_rank_consumed``.

    Pass the result as ``start`` to :func:`rank_share` to resume, on any world size.

    Example:
        >>> consumed_after(4, 3, 2)
        10
    """
    start = _check_int("start", start, 0)
    per_rank_consumed = _check_int("per_rank_consumed", per_rank_consumed, 0)
    world_size = _check_int("world_size", world_size, 1)
    return start + per_rank_consumed * world_size


def num_batches(count: int, batch_size: int, *, drop_last: bool) -> int:
    """Batches made from ``count`` samples; with ``drop_last`` only full ones.

    Example:
        >>> num_batches(10, 4, drop_last=False), num_batches(10, 4, drop_last=True)
        (3, 2)
    """
    count = _check_int("count", count, 0)
    batch_size = _check_int("batch_size", batch_size, 1)
    return count // batch_size if drop_last else -(-count // batch_size)


def batch_slices(count: int, batch_size: int, *, drop_last: bool) -> list[slice]:
    """Consecutive slices of ``batch_size`` over ``count`` samples (the last may be short).

    With ``drop_last`` a final partial batch is left out, and its samples are not consumed.

    Example:
        >>> batch_slices(5, 2, drop_last=False)
        [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    batches = num_batches(count, batch_size, drop_last=drop_last)
    return [slice(b * batch_size, min((b + 1) * batch_size, count)) for b in range(batches)]


def worker_batches(num_batches: int, worker: int, num_workers: int) -> range:
    """The batch numbers that worker ``worker`` of ``num_workers`` produces.

    Batch ``b`` goes to worker ``b % num_workers``: the round robin in which torch's
    DataLoader takes worker outputs, so the batches come back in order.

    Example:
        >>> list(worker_batches(7, 1, 3))
        [1, 4]
    """
    num_batches = _check_int("num_batches", num_batches, 0)
    num_workers = _check_int("num_workers", num_workers, 1)
    worker = _check_int("worker", worker, 0)
    if worker >= num_workers:
        msg = f"worker must be < num_workers ({num_workers}), got {worker}"
        raise ValueError(msg)
    return range(worker, num_batches, num_workers)


def _from_torch() -> tuple[int, int] | None:
    """``(rank, world_size)`` from torch.distributed if imported and initialised, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return int(dist.get_rank()), int(dist.get_world_size())


def _from_env(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        msg = f"environment variable {name}={text!r} is not an integer"
        raise ValueError(msg) from None


def resolve_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """This process's ``(rank, world_size)``.

    Each value comes from the first source that has it: the argument; ``torch.distributed``,
    if it is imported and initialised (this function never imports torch); the ``RANK`` and
    ``WORLD_SIZE`` environment variables (set by torchrun); the default ``(0, 1)``.

    Raises:
        ValueError: ``world_size < 1`` or a rank outside ``[0, world_size)``, or an
            environment variable that is not an integer; the message names the sources.

    Example:
        >>> resolve_rank_world(1, 4)
        (1, 4)
    """
    torch_values = _from_torch()
    rank_value, rank_source = _resolve("rank", rank, torch_values, 0)
    world_value, world_source = _resolve("world_size", world_size, torch_values, 1)
    if world_value < 1 or not 0 <= rank_value < world_value:
        msg = (
            f"need 0 <= rank < world_size, got rank={rank_value} (from {rank_source}) and "
            f"world_size={world_value} (from {world_source})"
        )
        raise ValueError(msg)
    return rank_value, world_value


def _resolve(
    name: str, value: int | None, torch_values: tuple[int, int] | None, default: int
) -> tuple[int, str]:
    """One of rank/world_size and where it came from (see :func:`resolve_rank_world`)."""
    if value is not None:
        return _as_int(name, value), "argument"
    if torch_values is not None:
        return torch_values[0 if name == "rank" else 1], "torch.distributed"
    env = name.upper()
    from_env = _from_env(env)
    if from_env is not None:
        return from_env, f"environment variable {env}"
    return default, "default"
