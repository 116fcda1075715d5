"""StreamingDataset: train from shards in an object store without copying the dataset first.

Shards are fetched by background threads into a node-wide cache (:class:`ShardCache`: one
download per shard per node, verified against the index's CRC-32C), then read through the same
mmap + gather path as :class:`pydata.MemoryMappedDataset`. The epoch order shuffles shards, then
samples over a window of ``shuffle_window`` shards that slides along them
(:func:`shard_window_order`), so a reader needs only a few shards at a time and the first batch
waits for one shard: the trade-off is a less thorough shuffle than a global
permutation, bought for a bounded cache. Ranks take strided, equal shares of that order and
DataLoader workers take whole batches of their rank's share in turn, so every sample is read
exactly once per epoch and the state is one global count (:mod:`pydata.datasets.order`).

It yields whole batches (dicts of batched tensors): use it with ``DataLoader(ds,
batch_size=None, num_workers=k)`` or iterate it directly. With ``per_sample=True`` it yields the
same batches' samples one by one, for ``DataLoader(ds, batch_size=batch_size)``: the DataLoader
then collates exactly the batches of the batched mode, so the worker split and resume are the
same (per-sample Python and the collate copy are what that costs).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from pydata.datasets import order as orders
from pydata.datasets.batch import to_torch
from pydata.datasets.cache import ShardCache
from pydata.datasets.remote import fetch_index
from pydata.datasets.store import S3ClientKind
from pydata.format.batch_reader import BatchReader
from pydata.format.reader import ShardReader

__all__ = ["StreamingDataset"]

_OPEN_SHARDS = 16  # mapped shards kept open per process (a map is cheap; an open fd is not free)
_HORIZON = 256  # upcoming shard uses that eviction looks at; anything later counts as "furthest"


class StreamingDataset(IterableDataset[dict[str, Any]]):
    """Batches of a dataset of shards under any fsspec URL (``s3://``, ``gs://``, ``file://``,
    ``memory://``).

    Args:
        remote: The dataset's URL (the directory holding ``index.json``).
        local: The node-wide cache directory (default: one per remote under the temp dir).
        cache_limit: Most bytes the cache may hold (default: no limit).
        shuffle: Shuffle shards, then samples over a sliding window of ``shuffle_window`` shards.
        seed: Seed of the order.
        shuffle_window: Shards whose samples mix at any one point of the epoch.
        prefetch_shards: Shards downloaded ahead of the one being read.
        storage_options: Passed to fsspec (e.g. ``{"client_kwargs": {"endpoint_url": ...}}``).
        ragged: Batch a tensor field of varying shape as one :class:`pydata.Ragged` instead of
            a list of tensors (as for :class:`pydata.MemoryMappedDataset`).
        s3_client: How ``s3://`` is read: ``"auto"`` (botocore's client, which reads bodies on
            the download threads, unless a storage option needs s3fs), ``"botocore"`` or
            ``"fsspec"`` (s3fs).
        part_bytes: The size of one ranged GET (default 64 MiB, so a default 64 MiB shard is
            one GET). Smaller parts spread the shard a reader waits for over the connections:
            worth it where each connection is slower than the disk (cloud object storage, where
            8-16 MiB is usual).
        batch_size: Samples per yielded batch (keyword-only, required: batches are assembled in
            one call each, and DataLoader workers and resume count in whole batches).
        per_sample: Yield the samples of those batches one at a time (give the DataLoader the
            same ``batch_size``).
        fields: Fields to read (default: all).
        drop_last: Leave out a final partial batch of each worker.
        rank, world_size: Default: torch.distributed, else RANK/WORLD_SIZE, else 0 of 1.

    Raises:
        pydata.errors.RemoteError: The index cannot be fetched (names the URL and the cause).
        ValueError: ``cache_limit`` is too small for the shards read at once.
    """

    EPOCH_KEY = "epoch"
    CONSUMED_KEY = "consumed"
    SEED_KEY = "seed"
    SAMPLES_KEY = "num_samples"

    def __init__(self, remote: str, local: str | os.PathLike[str] | None = None,
                 cache_limit: int | None = None, shuffle: bool = True, seed: int = 0,
                 shuffle_window: int = 4, prefetch_shards: int = 2,
                 storage_options: Mapping[str, Any] | None = None, *, batch_size: int,
                 per_sample: bool = False, fields: Sequence[str] | None = None,
                 drop_last: bool = False, rank: int | None = None, world_size: int | None = None,
                 ragged: bool = False, s3_client: S3ClientKind = "auto",
                 part_bytes: int | None = None) -> None:
        if batch_size < 1 or shuffle_window < 1 or prefetch_shards < 0:
            msg = (f"batch_size and shuffle_window must be >= 1 and prefetch_shards >= 0, got "
                   f"{batch_size}, {shuffle_window}, {prefetch_shards}")
            raise ValueError(msg)
        self.remote = remote.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.index = fetch_index(self.remote, self.storage_options, s3_client=s3_client)
        self.field_names = list(fields) if fields is not None else list(self.index.schema)
        for name in self.field_names:
            if name not in self.index.schema:
                msg = f"field {name!r} is not in the dataset; it has {list(self.index.schema)}"
                raise KeyError(msg)
        self.batch_size, self.per_sample, self.shuffle, self.seed = batch_size, per_sample, shuffle, seed
        self.ragged = ragged
        self.shuffle_window, self.prefetch_shards, self.drop_last = shuffle_window, prefetch_shards, drop_last
        self.rank, self.world_size = orders.resolve_rank_world(rank, world_size)
        self.cache = ShardCache(self.remote, local, self.index, cache_limit=cache_limit,
                                storage_options=self.storage_options, s3_client=s3_client,
                                part_bytes=part_bytes)
        # A window's shards, the next ones prefetched, and one being replaced.
        self.cache.check_limit(min(shuffle_window + prefetch_shards + 1, len(self.index.shards)))
        sizes = np.array([s.samples for s in self.index.shards], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(sizes)])
        self.epoch, self.consumed = 0, 0
        self._iteration_start = 0  # where the current (or last) iteration began, globally
        self._open: OrderedDict[int, ShardReader] = OrderedDict()
        self._open_lock = threading.Lock()

    def __len__(self) -> int:
        """Batches (samples, with ``per_sample``) this rank reads in a whole epoch, over all its
        DataLoader workers."""
        count = orders.per_rank_count(self.index.samples, start=0, world_size=self.world_size)
        batches = orders.num_batches(count, self.batch_size, drop_last=self.drop_last)
        return min(count, batches * self.batch_size) if self.per_sample else batches

    # -- order and state ---------------------------------------------------------------------

    def epoch_order(self, epoch: int, *, seed: int | None = None,
                    shuffle: bool | None = None) -> np.ndarray[Any, Any]:
        """The global sample order of ``epoch`` (``seed`` and ``shuffle`` default to this
        dataset's): shards shuffled, then samples over a sliding window of ``shuffle_window``
        shards."""
        return orders.shard_window_order([s.samples for s in self.index.shards],
                                         seed=self.seed if seed is None else seed, epoch=epoch,
                                         window_shards=self.shuffle_window,
                                         shuffle=self.shuffle if shuffle is None else shuffle)

    def batch_reader(self, fields: Sequence[str] | None = None) -> StreamingBatchReader:
        """What :class:`pydata.Loader` reads this dataset through."""
        return StreamingBatchReader(self, list(fields) if fields is not None else self.field_names)

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` from its beginning (call it before each epoch, in the main
        process: DataLoader workers receive a copy of this object when an epoch starts)."""
        self.epoch, self.consumed, self._iteration_start = int(epoch), 0, 0

    def state_dict(self, batches_consumed: int | None = None) -> dict[str, Any]:
        """The resume point: the epoch and the samples consumed globally (all ranks).

        Args:
            batches_consumed: Batches this rank consumed since the epoch (or the last
                ``load_state_dict``) started (with ``per_sample``, the DataLoader's batches of
                ``batch_size``). Needed with DataLoader workers, whose progress the main process
                cannot see; without workers the dataset counts by itself.
        """
        consumed = self.consumed
        if batches_consumed is not None:
            per_rank = min(batches_consumed * self.batch_size,
                           orders.per_rank_count(self.index.samples, start=self._iteration_start,
                                                 world_size=self.world_size))
            consumed = orders.consumed_after(self._iteration_start, per_rank, self.world_size)
        return {self.EPOCH_KEY: self.epoch, self.CONSUMED_KEY: consumed, self.SEED_KEY: self.seed,
                self.SAMPLES_KEY: self.index.samples}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues from ``state``, on any number of workers or ranks.

        Raises:
            ValueError: The state belongs to another dataset size or seed.
        """
        for key, mine in ((self.SAMPLES_KEY, self.index.samples), (self.SEED_KEY, self.seed)):
            if state.get(key) != mine:
                msg = f"dataset state has {key}={state.get(key)!r}, this dataset has {mine!r}"
                raise ValueError(msg)
        self.epoch, self.consumed = int(state[self.EPOCH_KEY]), int(state[self.CONSUMED_KEY])
        self._iteration_start = self.consumed

    # -- iteration ---------------------------------------------------------------------------

    def _worker_batches(self) -> list[np.ndarray[Any, Any]]:
        """This rank's and this DataLoader worker's batches of the rest of the epoch."""
        share = orders.rank_share(self.epoch_order(self.epoch), start=self.consumed, rank=self.rank,
                                  world_size=self.world_size)
        slices = orders.batch_slices(len(share), self.batch_size, drop_last=self.drop_last)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return [share[slices[b]] for b in orders.worker_batches(len(slices), worker, workers)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._iteration_start = start = self.consumed
        info = get_worker_info()
        if info is not None:  # the node's workers hold shards at once, each a little ahead
            self.cache.check_limit(min(self.shuffle_window + self.prefetch_shards + info.num_workers,
                                       len(self.index.shards)))
        batches = self._worker_batches()
        reader = self.batch_reader()
        reader.plan(batches)  # the known future that prefetching and eviction follow
        per_rank = 0
        for indices in batches:
            batch = to_torch(reader.fields, reader.read_batch(indices))
            for item in _samples(batch, len(indices)) if self.per_sample else (batch,):
                per_rank += 1 if self.per_sample else len(indices)
                if info is None:  # a worker's progress is the consumer's to report
                    self.consumed = orders.consumed_after(start, per_rank, self.world_size)
                yield item
        if info is None:
            self.set_epoch(self.epoch + 1)

    def _read(self, indices: np.ndarray[Any, Any], shards: list[int], future: np.ndarray[Any, Any],
              out: Mapping[str, np.ndarray[Any, Any]] | None = None, fields: Sequence[str] | None = None,
              threads: int | None = None, ahead: Sequence[int] = ()) -> dict[str, Any]:
        """Reads ``indices`` (numpy values) once their ``shards`` are local, holding them meanwhile;
        then starts prefetching ``ahead``. Not before: a shard that a reader waits for, here or in
        another process of the node, gets the bandwidth to itself."""
        held = []
        try:  # held shards are never evicted, by any process, while this batch reads them
            for s in shards:
                self.cache.acquire(s)
                held.append(s)
            readers = []
            for s in shards:
                self.cache.ensure(s, future=future[:_HORIZON].tolist())
                readers.append(self._reader(s))
            if ahead:
                self.cache.prefetch(ahead)
            reader = BatchReader(readers, self.index.schema, fields or self.field_names, ragged=self.ragged)
            local = np.empty_like(indices)
            for position, s in enumerate(shards):
                mine = (indices >= self._starts[s]) & (indices < self._starts[s + 1])
                local[mine] = indices[mine] - self._starts[s] + reader.starts[position]
            return reader.read_batch(local, out, threads=threads)
        finally:
            for s in held:
                self.cache.release(s)

    def shards_of(self, indices: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The shards holding ``indices``, ascending."""
        return np.unique(np.searchsorted(self._starts, indices, side="right") - 1)

    def _reader(self, shard: int) -> ShardReader:
        with self._open_lock:  # the Loader's producer threads read concurrently
            reader = self._open.get(shard)
            if reader is None:
                entry = self.index.shards[shard]
                reader = ShardReader(Path(self.cache.path(shard)), entry, self.index.schema)
                self._open[shard] = reader
                while len(self._open) > _OPEN_SHARDS:
                    self._open.popitem(last=False)  # its maps close once no batch reads them
            else:
                self._open.move_to_end(shard)
            return reader

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # maps are re-opened in the worker
        del state["_open_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"StreamingDataset('{self.remote}', samples={self.index.samples}, "
                f"batch_size={self.batch_size}, rank={self.rank}/{self.world_size})")


def _samples(batch: Mapping[str, Any], count: int) -> Iterator[dict[str, Any]]:
    """The rows of a batch, one dict each (views of the batch's tensors)."""
    for i in range(count):
        yield {name: values[i] for name, values in batch.items()}


def _first_uses(uses: np.ndarray[Any, Any], count: int) -> list[int]:
    """The first ``count`` distinct shards in ``uses``, in order of first use."""
    seen: list[int] = []
    for s in map(int, uses):  # lazily: stops after `count` distinct shards
        if s not in seen:
            seen.append(s)
            if len(seen) == count:
                break
    return seen


class StreamingBatchReader:
    """How :class:`pydata.Loader` reads a StreamingDataset: any batch of the planned epoch, its
    shards made local (and held while read), with prefetching and eviction along the plan.
    Safe to call from several producer threads."""

    def __init__(self, dataset: StreamingDataset, fields: Sequence[str]) -> None:
        self.dataset = dataset
        self._shapes = BatchReader([], dataset.index.schema, fields, ragged=dataset.ragged)
        self.fields = self._shapes.fields
        self.samples = dataset.index.samples
        self._uses = np.zeros(0, np.int64)
        self._offset: dict[int, int] = {}  # a batch's first sample -> where its shard uses begin

    def allocate(self, n: int) -> dict[str, np.ndarray[Any, Any]]:
        return self._shapes.allocate(n)

    def plan(self, batches: Sequence[np.ndarray[Any, Any]]) -> None:
        """The batches about to be read, in order (a sample appears once per epoch, so its
        first sample names a batch)."""
        shard_of = [self.dataset.shards_of(b) for b in batches]
        self._uses = np.concatenate(shard_of).astype(np.int64) if shard_of else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum([len(s) for s in shard_of])]).astype(np.int64)
        self._offset = {int(b[0]): int(starts[k]) for k, b in enumerate(batches) if len(b)}

    def read_batch(self, indices: Any, out: Mapping[str, np.ndarray[Any, Any]] | None = None,
                   *, threads: int | None = None) -> dict[str, Any]:
        idx = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and not (0 <= idx.min() and idx.max() < self.samples):
            msg = f"sample indices must lie in [0, {self.samples})"
            raise IndexError(msg)
        shards = [int(s) for s in self.dataset.shards_of(idx)]
        offset = self._offset.get(int(idx[0])) if idx.size else None
        future = self._uses[offset:] if offset is not None else np.asarray(shards, np.int64)
        ahead = _first_uses(future, len(shards) + self.dataset.prefetch_shards)
        return self.dataset._read(idx, shards, future, out, list(self.fields), threads, ahead)
