"""A seeded train/validation split of a dataset, as two index views that loaders accept.

``split_dataset`` draws a permutation from the seed and gives each side a sorted set of the
parent's sample indices. A :class:`DatasetSplit` renumbers its samples ``0 .. len - 1`` and
forwards every read to the parent with the indices mapped, so ``pydata.Loader`` (through
``batch_reader``/``epoch_order``) and a torch DataLoader (through ``__getitem__``/
``__getitems__``) read it as they read any dataset: ranks, resume and the exactly-once audit
all work in the split's own numbering. A split's epoch order is the parent's order with the
other side's samples left out, so a streaming parent keeps its shard-window locality; the
trade-off is that every epoch computes the parent's whole order (O(parent samples)).
Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DatasetSplit", "split_dataset"]

Indices = npt.NDArray[np.int64]

# Leads the split's SeedSequence, so a split seed never replays an epoch order's (seed, epoch).
_SPLIT_STREAM = 0x53504C4954  # "SPLIT"


class DatasetSplit:
    """The samples ``indices`` of ``dataset``, numbered ``0 .. len(indices) - 1``.

    Args:
        dataset: A pydata dataset (:class:`pydata.MemoryMappedDataset`,
            :class:`pydata.StreamingDataset` or another ``DatasetSplit``).
        indices: Distinct parent sample indices; kept sorted, so the split's sample ``i`` is the
            ``i``-th smallest of them.

    Raises:
        IndexError: An index outside the parent (names it and the parent's size).
        ValueError: Repeated indices.

    Example:
        >>> train, val = split_dataset(dataset, 0.1, seed=0)            # doctest: +SKIP
        >>> loader = pydata.Loader(train, batch_size=256)                # doctest: +SKIP
    """

    def __init__(self, dataset: Any, indices: Sequence[int] | npt.NDArray[Any]) -> None:
        idx = np.sort(np.asarray(indices, dtype=np.int64).reshape(-1))
        parent = len(dataset)
        if idx.size and (idx[0] < 0 or idx[-1] >= parent):
            bad = int(idx[0]) if idx[0] < 0 else int(idx[-1])
            msg = f"split index {bad} is out of range for a dataset of {parent} samples"
            raise IndexError(msg)
        if idx.size > 1 and bool(np.any(idx[1:] == idx[:-1])):
            repeated = int(idx[1:][idx[1:] == idx[:-1]][0])
            msg = f"split indices must be distinct; {repeated} is repeated"
            raise ValueError(msg)
        self.dataset = dataset
        self.indices: Indices = idx
        self._position = np.full(parent, -1, dtype=np.int64)  # parent index -> split index
        self._position[idx] = np.arange(idx.size, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def parent_indices(self, indices: Any) -> Indices:
        """The parent's sample indices of this split's samples ``indices``.

        Raises:
            IndexError: An index outside ``[0, len(self))`` (names it).
        """
        local = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        bad = np.flatnonzero((local < 0) | (local >= self.indices.size))
        if bad.size:
            msg = f"sample index {int(local[bad[0]])} is out of range for a split of {len(self)} samples"
            raise IndexError(msg)
        return self.indices[local]

    def epoch_order(self, epoch: int, *, seed: int = 0, shuffle: bool = True) -> Indices:
        """The parent's order of ``epoch`` restricted to this split, in split numbering."""
        order = np.asarray(self.dataset.epoch_order(epoch, seed=seed, shuffle=shuffle), dtype=np.int64)
        local = self._position[order]
        return np.ascontiguousarray(local[local >= 0])

    def batch_reader(self, fields: Sequence[str] | None = None) -> SplitReader:
        """The parent's batch reader, seen through this split's numbering."""
        return SplitReader(self.dataset.batch_reader(fields), self)

    def __getitem__(self, index: int) -> Any:
        """Sample ``index`` of the split (the parent's sample ``indices[index]``)."""
        return self.dataset[int(self.parent_indices([index])[0])]

    def __getitems__(self, indices: Sequence[int]) -> Any:
        """A batch in one parent call where the parent has one (torch DataLoader's batched fetch)."""
        parent = self.parent_indices(indices).tolist()
        getitems = getattr(self.dataset, "__getitems__", None)
        return getitems(parent) if getitems is not None else [self.dataset[i] for i in parent]

    def __repr__(self) -> str:
        return f"DatasetSplit({len(self)} of {len(self.dataset)} samples of {self.dataset!r})"


class SplitReader:
    """A parent batch reader (``fields``, ``samples``, ``allocate``, ``read_batch`` and, for
    streaming parents, ``plan``) that takes split indices."""

    def __init__(self, reader: Any, split: DatasetSplit) -> None:
        self._reader = reader
        self._split = split
        self.fields = reader.fields
        self.samples = len(split)
        parent_plan = getattr(reader, "plan", None)
        # The Loader looks the plan up with getattr: None means "this reader plans nothing".
        self.plan: Callable[[Sequence[Indices]], None] | None = (
            None if parent_plan is None else self._plan)

    def allocate(self, n: int) -> dict[str, npt.NDArray[Any]]:
        """Output arrays for a batch of ``n`` (the parent's)."""
        result: dict[str, npt.NDArray[Any]] = self._reader.allocate(n)
        return result

    def read_batch(self, indices: Any, out: Any = None, *, threads: int | None = None) -> dict[str, Any]:
        """Reads the split's samples ``indices`` through the parent's reader."""
        result: dict[str, Any] = self._reader.read_batch(self._split.parent_indices(indices), out,
                                                         threads=threads)
        return result

    def _plan(self, batches: Sequence[Indices]) -> None:
        self._reader.plan([self._split.parent_indices(b) for b in batches])


def split_dataset(dataset: Any, val_fraction: float, seed: int = 0) -> tuple[DatasetSplit, DatasetSplit]:
    """Splits ``dataset`` into disjoint train and validation parts, drawn from ``seed``.

    ``round(len(dataset) * val_fraction)`` samples, chosen by a seeded permutation, form the
    validation part; the rest form the training part. The same dataset size, fraction and seed
    give the same split on every machine and rank.

    Args:
        dataset: A pydata dataset (anything with ``__len__``, ``batch_reader`` and ``epoch_order``;
            ``__getitem__`` for a torch DataLoader).
        val_fraction: The validation share, in ``(0, 1)``.
        seed: Seed of the split (independent of the loaders' order seeds).

    Returns:
        ``(train, val)``.

    Raises:
        ValueError: ``val_fraction`` outside ``(0, 1)``, or a side that would be empty (names
            the dataset size and the fraction).

    Example:
        >>> class Five:
        ...     def __len__(self) -> int:
        ...         return 5
        >>> train, val = split_dataset(Five(), 0.4, seed=0)
        >>> len(train), len(val), sorted([*train.indices, *val.indices])
        (3, 2, [0, 1, 2, 3, 4])
    """
    if not 0.0 < float(val_fraction) < 1.0:
        msg = f"val_fraction must lie in (0, 1), got {val_fraction!r}"
        raise ValueError(msg)
    total = len(dataset)
    count = round(total * float(val_fraction))
    if count == 0 or count == total:
        msg = (f"a validation fraction of {val_fraction} of {total} samples leaves "
               f"{'no validation' if count == 0 else 'no training'} samples")
        raise ValueError(msg)
    if seed < 0:
        msg = f"seed must be >= 0, got {seed}"
        raise ValueError(msg)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence((_SPLIT_STREAM, seed))))
    permutation = rng.permutation(total)
    return DatasetSplit(dataset, permutation[count:]), DatasetSplit(dataset, permutation[:count])
