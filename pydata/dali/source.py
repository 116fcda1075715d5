"""What a DALI pipeline reads from a pydata dataset: the Loader's batches, and sources for them.

:class:`EpochPlan` is the Loader's plan (:mod:`pydata.datasets.order`): the dataset's epoch
order, this shard's strided, equal share of it, cut into batches, so ``shard_id/num_shards``
reads exactly what the Loader's ``rank/world_size`` reads. The sources are *stateless* functions
of DALI's ``(epoch_idx, iteration)`` or ``(epoch_idx, idx_in_epoch)``, as DALI's parallel
workers require: each process reads bytes through the dataset's own ``batch_reader`` (the
compiled gather/decode), and random crops and flips are keyed on ``(seed, epoch, sample)``
(:class:`Augment`) instead of DALI's generators. The trade-off: the augmentation is a hash per
sample rather than DALI's RNG, and in exchange a sample is augmented the same way in batch or
per-sample mode, on any number of shards, on CPU or GPU, and after a resume.

This module does not import DALI or torch (a picklable source must not need them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pydata.datasets import order as orders

__all__ = ["Augment", "BatchSource", "EpochPlan", "SampleSource", "transport_dtype"]

Offsets = npt.NDArray[np.int64]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def transport_dtype(storage: npt.DTypeLike) -> np.dtype[Any]:
    """The dtype a field crosses DALI in: its storage dtype, except that unsigned integers wider
    than a byte (bfloat16 is stored as uint16) travel as the signed type of the same size,
    because DALI's torch iterator has no unsigned types but uint8; the bits are unchanged."""
    dtype = np.dtype(storage)
    if dtype.kind == "u" and dtype.itemsize > 1:
        return np.dtype(f"{dtype.byteorder}i{dtype.itemsize}")
    return dtype


class EpochPlan:
    """The batches one pipeline reads, epoch after epoch, as the Loader would.

    DALI numbers epochs from the pipeline's start (``epoch_idx``); epoch ``epoch_idx`` of the
    plan is dataset epoch ``epoch + epoch_idx``, and only the first one starts at ``start``
    (a resume), the later ones at 0.

    Args:
        dataset: Anything with ``batch_reader(fields)``, ``epoch_order(epoch, seed=,
            shuffle=)`` and ``len()`` (:class:`pydata.MemoryMappedDataset`,
            :class:`pydata.StreamingDataset`).
        batch_size: Samples per batch.
        seed, shuffle, drop_last: As for :class:`pydata.Loader`.
        shard_id, num_shards: This pipeline's share, as the Loader's ``rank, world_size``.
        epoch: The dataset epoch of ``epoch_idx`` 0.
        start: Samples of that epoch already consumed globally (by all shards).
    """

    def __init__(self, dataset: Any, batch_size: int, *, seed: int, shuffle: bool, drop_last: bool,
                 shard_id: int, num_shards: int, epoch: int = 0, start: int = 0) -> None:
        if batch_size < 1:
            msg = f"batch_size must be >= 1, got {batch_size}"
            raise ValueError(msg)
        self.dataset, self.batch_size = dataset, batch_size
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.shard_id, self.num_shards = shard_id, num_shards
        self.epoch, self.start = epoch, start
        self._cache: tuple[int, list[np.ndarray[Any, Any]]] | None = None

    def dataset_epoch(self, epoch_idx: int) -> int:
        """The dataset epoch that DALI's ``epoch_idx`` reads."""
        return self.epoch + epoch_idx

    def batches(self, epoch_idx: int) -> list[npt.NDArray[np.int64]]:
        """The sample indices of every batch of ``epoch_idx``, in order (the last may be short)."""
        if self._cache is None or self._cache[0] != epoch_idx:
            epoch = self.dataset_epoch(epoch_idx)
            order = self.dataset.epoch_order(epoch, seed=self.seed, shuffle=self.shuffle)
            share = orders.rank_share(order, start=self.start if epoch_idx == 0 else 0,
                                      rank=self.shard_id, world_size=self.num_shards)
            slices = orders.batch_slices(len(share), self.batch_size, drop_last=self.drop_last)
            self._cache = (epoch_idx, [np.ascontiguousarray(share[s]) for s in slices])
        return self._cache[1]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # an epoch's order is recomputed in each worker, not shipped
        return state


@dataclass(frozen=True)
class Augment:
    """A random crop and horizontal flip per sample, drawn from ``(seed, epoch, sample)``.

    Each sample's draw is a SplitMix64 hash of its index under a key derived from ``(seed,
    epoch)``: a pure function, vectorised, the same in every process and after a resume.

    Attributes:
        height, width: The stored image size.
        crop: The crop ``(height, width)``, or None for no crop.
        flip: Probability of mirroring a sample left-right.
    """

    height: int
    width: int
    crop: tuple[int, int] | None = None
    flip: float = 0.0

    def __post_init__(self) -> None:
        crop_h, crop_w = self.size
        if not (0 < crop_h <= self.height and 0 < crop_w <= self.width):
            msg = f"crop {self.crop} must be positive and fit in the {self.height}x{self.width} image"
            raise ValueError(msg)
        if not 0.0 <= self.flip <= 1.0:
            msg = f"flip must be a probability in [0, 1], got {self.flip}"
            raise ValueError(msg)

    @property
    def size(self) -> tuple[int, int]:
        """The output ``(height, width)``: the crop's, or the image's without a crop."""
        return self.crop if self.crop is not None else (self.height, self.width)

    @property
    def active(self) -> bool:
        """Whether the pipeline needs per-sample crop or flip inputs at all."""
        return self.crop is not None or self.flip > 0.0

    def draw(self, seed: int, epoch: int,
             indices: Any) -> tuple[Offsets, Offsets, npt.NDArray[np.bool_]]:
        """``(top, left, flipped)`` of every sample in ``indices`` in epoch ``epoch``: the crop's
        corner in the stored image, and whether the crop is then mirrored."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        crop_h, crop_w = self.size
        top = _offset(_uniform(seed, epoch, 0, idx), self.height - crop_h)
        left = _offset(_uniform(seed, epoch, 1, idx), self.width - crop_w)
        return top, left, _uniform(seed, epoch, 2, idx) < self.flip

    def dali_inputs(self, seed: int, epoch: int, indices: Any) -> list[np.ndarray[Any, Any]]:
        """``crop_pos_y``, ``crop_pos_x`` (float32, normalised) and ``mirror`` (int32) for
        ``fn.crop_mirror_normalize``, which places a crop at ``round(pos * (size - crop))``."""
        top, left, flipped = self.draw(seed, epoch, indices)
        crop_h, crop_w = self.size
        pos_y = top / max(self.height - crop_h, 1)
        pos_x = left / max(self.width - crop_w, 1)
        return [pos_y.astype(np.float32), pos_x.astype(np.float32), flipped.astype(np.int32)]


def _offset(uniform: npt.NDArray[np.float64], room: int) -> Offsets:
    """Offsets ``0 .. room``, equally likely, from uniform ``[0, 1)`` numbers."""
    return np.minimum((uniform * (room + 1)).astype(np.int64), room)


def _uniform(seed: int, epoch: int, stream: int,
             indices: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Uniform ``[0, 1)`` numbers, one per index: SplitMix64 of the index under a key.

    Arrays only: numpy wraps uint64 overflow silently for arrays (the arithmetic relies on it).
    """
    key = np.random.SeedSequence((seed, epoch, stream)).generate_state(1, np.uint64)
    x = indices.astype(np.uint64) * _GOLDEN + key
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    uniform: npt.NDArray[np.float64] = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return uniform  # the top 53 bits: as many as a double's mantissa holds


class _Source:
    """What both sources share: the plan, the fields, the augmentation, and a reader per process."""

    def __init__(self, plan: EpochPlan, fields: Sequence[str], augment: Augment | None = None) -> None:
        self.plan, self.fields = plan, list(fields)
        self.augment = augment if augment is not None and augment.active else None
        self._reader: Any = None
        self._planned = -1  # the epoch_idx the streaming reader was told about

    @property
    def num_outputs(self) -> int:
        """Fields, then ``crop_pos_y``, ``crop_pos_x``, ``mirror`` when augmenting."""
        return len(self.fields) + (3 if self.augment is not None else 0)

    def _batches(self, epoch_idx: int) -> list[npt.NDArray[np.int64]]:
        batches = self.plan.batches(epoch_idx)
        if self._reader is None:
            self._reader = self.plan.dataset.batch_reader(self.fields)
        plan = getattr(self._reader, "plan", None)
        if plan is not None and self._planned != epoch_idx:
            plan(batches)  # a streaming reader prefetches and evicts shards along the epoch
            self._planned = epoch_idx
        return batches

    def _read(self, epoch_idx: int, indices: npt.NDArray[np.int64]) -> list[np.ndarray[Any, Any]]:
        batch = self._reader.read_batch(indices)
        arrays = [batch[name].view(transport_dtype(batch[name].dtype)) for name in self.fields]
        if self.augment is not None:
            epoch = self.plan.dataset_epoch(epoch_idx)
            arrays += self.augment.dali_inputs(self.plan.seed, epoch, indices)
        return arrays

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"], state["_planned"] = None, -1  # each process opens its own shards
        return state


class BatchSource(_Source):
    """A batch source for ``fn.external_source(batch=True, batch_info=True)``.

    Called with DALI's ``BatchInfo``, it returns one batched array per output (the last batch
    of an epoch may be short) and raises ``StopIteration`` after the epoch's last batch.
    """

    def __call__(self, info: Any) -> list[np.ndarray[Any, Any]]:
        batches = self._batches(int(info.epoch_idx))
        if info.iteration >= len(batches):
            raise StopIteration
        return self._read(int(info.epoch_idx), batches[info.iteration])


class SampleSource(_Source):
    """A per-sample source for ``fn.external_source(parallel=True)``, run in DALI's workers.

    Called with DALI's ``SampleInfo``, it returns one sample's arrays. DALI cannot deliver a
    short batch in this mode, so the positions after the epoch's last sample, up to the end of
    its last batch, repeat that sample (:class:`pydata.dali.DALILoader` cuts them off); past
    them it raises ``StopIteration``.
    """

    def __call__(self, info: Any) -> list[np.ndarray[Any, Any]]:
        batches = self._batches(int(info.epoch_idx))
        position = int(info.idx_in_epoch)
        number = position // self.plan.batch_size
        if number >= len(batches):
            raise StopIteration
        batch = batches[number]
        row = min(position % self.plan.batch_size, len(batch) - 1)
        # a[0, ...] keeps a scalar field a 0-d array, which DALI takes (a numpy scalar it refuses)
        return [a[0, ...] for a in self._read(int(info.epoch_idx), batch[row : row + 1])]
