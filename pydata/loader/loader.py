"""Loader: pydata's own batch loader, without worker processes.

Producer threads (``num_threads``) take the batches of this rank's share of the epoch order in
turn and have the compiled core gather/decode each whole batch, with the GIL released, straight
into a reusable slot; ready slots travel to the consumer through a ``RingBuffer`` and are handed
out in order. No per-sample Python runs in the hot path, and the data is never pickled or copied
between processes. Whole batches in parallel beat splitting each batch over threads: no hand-off
or join inside a batch, and one producer's Python overlaps another's copy (benchmarks/README.md). The trade-off against DataLoader workers: Python-level per-sample work (augmentations
written per sample) does not parallelise here; batch transforms (:mod:`pydata.loader.transforms`)
do, on the assembled batch and on the device when there is one.

The order is a pure function of (seed, epoch) and the state is one global count
(:mod:`pydata.datasets.order`), so ``state_dict``/``load_state_dict`` resume exactly, also with a
different ``num_threads`` or world size.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch

from pydata._core import RingBuffer
from pydata.datasets import order as orders
from pydata.datasets.batch import to_torch
from pydata.errors import AuditError, ClosedError, CorruptDataError, WaitTimeoutError
from pydata.format.batch_reader import BatchReader
from pydata.format.ragged import Ragged
from pydata.loader.slots import Slot, SlotPool
from pydata.loader.stats import LoaderStats
from pydata.loader.transforms import BatchTransform, apply_transforms, batch_generator

__all__ = ["Loader"]

_WAIT_SLICE = 0.1  # seconds; every wait re-checks that the other side is alive


class Loader:
    """Iterates dicts of batched tensors from a pydata dataset.

    Args:
        dataset: A :class:`pydata.MemoryMappedDataset` or :class:`pydata.StreamingDataset`
            (anything with ``batch_reader(fields)`` and ``epoch_order(epoch, seed=, shuffle=)``).
        batch_size: Samples per batch.
        shuffle: Shuffle the order every epoch.
        seed: Seed of the order (and of the transforms' randomness).
        drop_last: Leave out a final partial batch.
        fields: Fields to load (default: the dataset's).
        num_threads: Threads assembling batches, each a whole batch at a time (default:
            ``PYDATA_NUM_THREADS``, else the usable cores).
        prefetch: Batches assembled ahead of the consumer.
        pin_memory: Page-lock the batch buffers (default: when CUDA is available).
        device: Copy batches there (``"cuda"``: on a side stream, non-blocking).
        transforms: Batch transforms, applied in order on the device.
        rank, world_size: This rank's place (default: torch.distributed, else RANK/WORLD_SIZE,
            else 0 of 1). Ranks get disjoint, equal shares of every epoch.
        on_corrupt: ``"raise"`` or ``"skip"`` (a damaged sample is left out of its batch,
            counted in ``stats()`` and recorded in the state).
        audit: Check at the end of every epoch that each sample of this rank's share arrived
            exactly once (raises :class:`pydata.errors.AuditError` otherwise).

    Example:
        >>> loader = Loader(MemoryMappedDataset("data/train"), batch_size=256)  # doctest: +SKIP
        >>> for batch in loader:                                               # doctest: +SKIP
        ...     train_step(batch["image"], batch["label"])
    """

    EPOCH_KEY = "epoch"
    CONSUMED_KEY = "consumed"
    SEED_KEY = "seed"
    SAMPLES_KEY = "num_samples"
    SKIPPED_KEY = "skipped"

    def __init__(self, dataset: Any, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, fields: Sequence[str] | None = None,
                 num_threads: int | None = None, prefetch: int = 4, pin_memory: bool | None = None,
                 device: str | torch.device | None = None, transforms: Sequence[BatchTransform] = (),
                 *, rank: int | None = None, world_size: int | None = None,
                 on_corrupt: Literal["raise", "skip"] = "raise", audit: bool = False) -> None:
        if batch_size < 1 or prefetch < 1 or (num_threads is not None and num_threads < 1):
            msg = f"batch_size, prefetch and num_threads must be >= 1, got {batch_size}, {prefetch}, {num_threads}"
            raise ValueError(msg)
        if on_corrupt not in ("raise", "skip"):
            msg = f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}"
            raise ValueError(msg)
        self.dataset = dataset
        self.reader: BatchReader = dataset.batch_reader(fields)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.num_threads, self.prefetch = num_threads, prefetch
        self.device = torch.device(device) if device is not None else None
        cuda = self.device is not None and self.device.type == "cuda"
        self.pin_memory = bool(torch.cuda.is_available() or cuda) if pin_memory is None else pin_memory
        self.transforms = list(transforms)
        self.rank, self.world_size = orders.resolve_rank_world(rank, world_size)
        self.on_corrupt, self.audit = on_corrupt, audit
        self.epoch, self.consumed = 0, 0
        self.skipped: list[int] = []
        self._pool = SlotPool(self.reader, batch_size, pin_memory=self.pin_memory)
        # Batches are assembled in parallel, each by one producer thread on one core thread:
        # no hand-off or join inside a batch, and one producer's Python runs while another's
        # copy runs without the GIL.
        self._producers = num_threads if num_threads is not None else _default_producers()
        self._threads_per_batch = 1
        self._stats = LoaderStats()
        self._order_cache: tuple[int, np.ndarray[Any, Any]] | None = None

    # -- order and state ---------------------------------------------------------------------

    def _order(self) -> np.ndarray[Any, Any]:
        if self._order_cache is None or self._order_cache[0] != self.epoch:
            order = self.dataset.epoch_order(self.epoch, seed=self.seed, shuffle=self.shuffle)
            self._order_cache = (self.epoch, order)
        return self._order_cache[1]

    def _share(self) -> np.ndarray[Any, Any]:
        return orders.rank_share(self._order(), start=self.consumed, rank=self.rank,
                                 world_size=self.world_size)

    def __len__(self) -> int:
        """Batches left in this epoch for this rank (all of them at the start of an epoch)."""
        return orders.num_batches(len(self._share()), self.batch_size, drop_last=self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` from its beginning (epochs also advance by themselves)."""
        self.epoch, self.consumed, self.skipped = int(epoch), 0, []

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: the epoch and the samples consumed globally (all ranks)."""
        return {self.EPOCH_KEY: self.epoch, self.CONSUMED_KEY: self.consumed, self.SEED_KEY: self.seed,
                self.SAMPLES_KEY: self.reader.samples, self.SKIPPED_KEY: list(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state`` (any ``num_threads`` or world size).

        Raises:
            ValueError: The state belongs to another dataset size or seed (both named).
        """
        for key, mine in ((self.SAMPLES_KEY, self.reader.samples), (self.SEED_KEY, self.seed)):
            if state.get(key) != mine:
                msg = f"loader state has {key}={state.get(key)!r}, this loader has {mine!r}"
                raise ValueError(msg)
        self.epoch, self.consumed = int(state[self.EPOCH_KEY]), int(state[self.CONSUMED_KEY])
        self.skipped = list(state.get(self.SKIPPED_KEY, []))
        orders.per_rank_count(self.reader.samples, start=self.consumed, world_size=self.world_size)

    def stats(self) -> dict[str, float]:
        """Throughput of the current or last epoch: samples/s, bytes/s, the seconds and fraction
        of time the consumer waited, the producer's busy fraction, and samples skipped."""
        return self._stats.summary()

    # -- iteration ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        share = self._share()
        slices = orders.batch_slices(len(share), self.batch_size, drop_last=self.drop_last)
        plan = getattr(self.reader, "plan", None)
        if plan is not None:  # a streaming reader prefetches and evicts along the known batches
            plan([share[part] for part in slices])
        start = self.consumed
        ready = RingBuffer(self.prefetch)
        work = _Work(share, slices, ready, self.prefetch)
        producers = [threading.Thread(target=self._produce, args=(work,), name=f"pydata-loader-{i}",
                                      daemon=True) for i in range(min(self._producers, max(len(slices), 1)))]
        self._stats.start(skipped=len(self.skipped), producers=len(producers))
        delivered: list[np.ndarray[Any, Any]] = []
        for producer in producers:
            producer.start()
        try:
            for number in range(len(slices)):
                slot = self._next_ready(work, number, producers)
                if slot.error is not None:
                    raise slot.error
                assert slot.indices is not None
                batch = self._hand_out(slot)
                work.room.release()
                self._advance(slot, start, number, slices)
                if self.audit:
                    delivered.append(slot.indices.copy())
                yield batch
            self._end_epoch(share[: slices[-1].stop if slices else 0], delivered)
        finally:
            work.stop.set()
            ready.close()
            for producer in producers:
                producer.join()
            self._pool.release_unclaimed()
            self._stats.stop()

    def _advance(self, slot: Slot, start: int, number: int, slices: list[slice]) -> None:
        per_rank = slices[number].stop
        self.consumed = orders.consumed_after(start, per_rank, self.world_size)
        self.skipped.extend(slot.skipped)

    def _end_epoch(self, expected: np.ndarray[Any, Any], delivered: list[np.ndarray[Any, Any]]) -> None:
        if self.audit:
            self._audit(expected, delivered)
        self.set_epoch(self.epoch + 1)

    def _next_ready(self, work: _Work, number: int, producers: list[threading.Thread]) -> Slot:
        """Batch ``number``: producers finish batches out of order, so later ones wait aside."""
        waited = time.perf_counter()
        while number not in work.early:
            try:
                slot = self._pool[work.ready.pop(timeout=_WAIT_SLICE)]
                work.early[slot.number] = slot
            except WaitTimeoutError:
                if not any(p.is_alive() for p in producers):
                    msg = "the loader's producer threads stopped without delivering a batch"
                    raise RuntimeError(msg) from None
        self._stats.waited(time.perf_counter() - waited)
        return work.early.pop(number)

    def _hand_out(self, slot: Slot) -> dict[str, Any]:
        assert slot.indices is not None
        n = len(slot.indices)
        arrays: dict[str, Any] = dict(slot.hand_out(n))
        arrays.update(slot.lists)
        batch = to_torch(self.reader.fields, {name: arrays[name] for name in self.reader.fields})
        if self.device is not None:
            batch = self._to_device(slot, batch)
        if self.transforms:
            generator = batch_generator(self.seed, self.epoch, slot.number)
            batch = apply_transforms(batch, self.transforms, generator)
        self._stats.delivered(n, slot.nbytes, skipped=len(slot.skipped))
        return batch

    def _to_device(self, slot: Slot, batch: dict[str, Any]) -> dict[str, Any]:
        assert self.device is not None
        if self.device.type != "cuda":
            return {k: v.to(self.device) if isinstance(v, (torch.Tensor, Ragged)) else v for k, v in batch.items()}
        stream = self._copy_stream()
        with torch.cuda.stream(stream):
            moved = {k: v.to(self.device, non_blocking=True) if isinstance(v, (torch.Tensor, Ragged)) else v
                     for k, v in batch.items()}
            slot.event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            slot.event.record(stream)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        for value in moved.values():
            for tensor in (value.values, value.offsets) if isinstance(value, Ragged) else (value,):
                if isinstance(tensor, torch.Tensor):
                    tensor.record_stream(torch.cuda.current_stream(self.device))
        return moved

    def _copy_stream(self) -> Any:
        stream = getattr(self, "_stream", None)
        if stream is None:
            stream = self._stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        return stream

    # -- producer ----------------------------------------------------------------------------

    def _produce(self, work: _Work) -> None:
        """One producer thread: takes the next batch number, fills a slot, hands it over."""
        while not work.stop.is_set():
            if not work.room.acquire(timeout=_WAIT_SLICE):
                continue
            number = work.take()
            if number is None:
                return
            slot = self._pool.acquire()
            began = time.perf_counter()
            self._fill(slot, number, work.share[work.slices[number]])
            self._stats.produced(time.perf_counter() - began)
            while not work.stop.is_set():
                try:
                    work.ready.push(slot.id, timeout=_WAIT_SLICE)
                    break
                except WaitTimeoutError:
                    continue
                except ClosedError:
                    return
            if slot.error is not None:
                return

    def _fill(self, slot: Slot, number: int, indices: np.ndarray[Any, Any]) -> None:
        slot.number, slot.error, slot.skipped = number, None, []
        try:
            good = np.ascontiguousarray(indices, dtype=np.int64)
            try:
                batch = self._read(slot, good)
            except CorruptDataError:
                bad, reason = self._find_corrupt(good)
                if self.on_corrupt == "raise":
                    msg = f"sample {bad[0] if bad else '?'} is damaged: {reason}"
                    raise CorruptDataError(msg) from None
                slot.skipped = [int(i) for i in bad]
                good = good[~np.isin(good, bad)]
                batch = self._read(slot, good)
            slot.indices = good
            slot.lists = {k: v for k, v in batch.items() if not isinstance(v, np.ndarray)}
            slot.nbytes = sum(v.nbytes for v in batch.values() if isinstance(v, (np.ndarray, Ragged)))
        except BaseException as exc:  # delivered to the consumer, which re-raises it
            slot.error = _with_context(exc, number, indices)

    def _read(self, slot: Slot, indices: np.ndarray[Any, Any]) -> dict[str, Any]:
        n = len(indices)
        out = {name: arr[:n] for name, arr in slot.arrays.items()}
        return self.reader.read_batch(indices, out, threads=self._threads_per_batch)

    def _find_corrupt(self, indices: np.ndarray[Any, Any]) -> tuple[list[int], str]:
        """The samples of a failed batch that fail alone (data-determined, so deterministic),
        and the first one's error message."""
        bad: list[int] = []
        reason = "the batch failed to decode"
        for index in indices.tolist():
            try:
                self.reader.read_batch([index])
            except CorruptDataError as exc:
                reason = str(exc) if not bad else reason
                bad.append(index)
        return bad, reason

    def _audit(self, expected: np.ndarray[Any, Any], delivered: list[np.ndarray[Any, Any]]) -> None:
        got = np.concatenate(delivered) if delivered else np.zeros(0, np.int64)
        counts = np.bincount(got, minlength=self.reader.samples)
        duplicates = np.flatnonzero(counts > 1)
        wanted = np.zeros(self.reader.samples, dtype=bool)
        wanted[expected] = True
        wanted[np.asarray(self.skipped, dtype=np.int64)] = False
        missing = np.flatnonzero(wanted & (counts == 0))
        unexpected = np.flatnonzero(~wanted & (counts > 0))
        if duplicates.size or missing.size or unexpected.size:
            msg = (f"epoch {self.epoch}, rank {self.rank}: delivery audit failed: duplicates "
                   f"{duplicates[:20].tolist()}, missing {missing[:20].tolist()}, not in this rank's "
                   f"share {unexpected[:20].tolist()}")
            raise AuditError(msg)

    def __repr__(self) -> str:
        return (f"Loader(samples={self.reader.samples}, batch_size={self.batch_size}, epoch={self.epoch}, "
                f"rank={self.rank}/{self.world_size}, fields={list(self.reader.fields)})")


def _default_producers() -> int:
    """PYDATA_NUM_THREADS if set (as for the core's pool), else the cores this process may use."""
    env = os.environ.get("PYDATA_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    getaffinity = getattr(os, "sched_getaffinity", None)
    return len(getaffinity(0)) if getaffinity is not None else (os.cpu_count() or 1)


class _Work:
    """What the producers of one iteration share: the batches and the next one to take."""

    def __init__(self, share: np.ndarray[Any, Any], slices: list[slice], ready: RingBuffer,
                 prefetch: int) -> None:
        self.share, self.slices, self.ready = share, slices, ready
        self.stop = threading.Event()
        # Batches taken but not yet handed out: at most `prefetch`, however producers race.
        self.room = threading.Semaphore(prefetch)
        self.early: dict[int, Slot] = {}  # consumer side: batches that arrived before their turn
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.slices):
                return None
            self._next += 1
            return self._next - 1


def _with_context(exc: BaseException, number: int, indices: np.ndarray[Any, Any]) -> BaseException:
    """Adds the batch and its samples to a producer error's message."""
    note = f"(in batch {number} of the epoch, samples {indices[:8].tolist()}{'...' if len(indices) > 8 else ''})"
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    return exc
