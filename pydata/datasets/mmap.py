"""MemoryMappedDataset: a torch map-style dataset over local shards.

The shards are memory-mapped, so every DataLoader worker shares one copy of the data through the
page cache instead of holding its own: a worker's private memory does not grow with the dataset.
``__getitems__`` (torch's batched fetch) assembles a whole batch with one gather or decode per
field in the compiled core. Pickling carries the path, the options and the parsed index (tens of
bytes per shard), never sample data or open maps; a worker re-opens the shards on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from pydata.datasets import order as orders
from pydata.datasets.batch import SampleBatch, to_torch
from pydata.format.batch_reader import BatchReader
from pydata.format.index import DatasetIndex, read_index
from pydata.format.reader import IO, ShardReader
from pydata.format.schema import Field

__all__ = ["MemoryMappedDataset"]


class MemoryMappedDataset(Dataset[dict[str, Any]]):
    """A dataset of shards on a local (or network) file system.

    Args:
        path: The dataset directory (holding ``index.json``).
        fields: The fields to read (default: all).
        io: ``"mmap"`` (default: zero-copy, shared page cache) or ``"read"`` (``pread``; for
            network file systems where page-fault reads are slow).
        ragged: Batch a tensor field of varying shape (token sequences) as one
            :class:`pydata.Ragged` (values + offsets + shapes, decoded by one core call) instead
            of a list of tensors: no Python per row, and three tensors instead of one per row
            through DataLoader workers.

    Raises:
        FileNotFoundError: No ``index.json``, or a shard it lists is missing.
        pydata.FormatError: A malformed index, an unknown format version, an unknown field.
        pydata.CorruptDataError: A truncated shard, bad magic or damaged header (named).

    Example:
        >>> ds = MemoryMappedDataset("data/train")                        # doctest: +SKIP
        >>> ds[0]["image"].shape, len(ds)                                 # doctest: +SKIP
        (torch.Size([3, 32, 32]), 50000)
    """

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str] | None = None,
                 *, io: IO = "mmap", ragged: bool = False) -> None:
        self.path = Path(path)
        self.ragged = ragged
        self.index: DatasetIndex = read_index(self.path)
        self.field_names = list(fields) if fields is not None else list(self.index.schema)
        self.io: IO = io
        self._reader: BatchReader | None = self._open()  # a missing or damaged shard fails here

    @property
    def schema(self) -> dict[str, Field]:
        """The fields this dataset reads."""
        return {name: self.index.schema[name] for name in self.field_names}

    @property
    def reader(self) -> BatchReader:
        """The open shards (opened on first use in each process)."""
        if self._reader is None:
            self._reader = self._open()
        return self._reader

    def _open(self) -> BatchReader:
        shards = [ShardReader(self.path / s.file, s, self.index.schema, io=self.io)
                  for s in self.index.shards]
        return BatchReader(shards, self.index.schema, self.field_names, ragged=self.ragged)

    def __len__(self) -> int:
        return self.index.samples

    def batch_reader(self, fields: Sequence[str] | None = None) -> BatchReader:
        """A reader of batches of ``fields`` (default: this dataset's) over the open shards."""
        names = list(fields) if fields is not None else self.field_names
        return BatchReader(self.reader.shards, self.index.schema, names, ragged=self.ragged)

    def epoch_order(self, epoch: int, *, seed: int = 0, shuffle: bool = True) -> np.ndarray[Any, Any]:
        """The order of ``epoch``: a seeded permutation of every sample (or the index order)."""
        return orders.epoch_order(len(self), seed=seed, epoch=epoch, shuffle=shuffle)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample: fixed raw fields are zero-copy views of the mapped shard. The mapping is
        copy-on-write: an in-place change never reaches the file, but later reads of that
        sample in this process see it, so ``clone()`` a tensor you modify in place."""
        return to_torch(self.reader.fields, self.reader.read_sample(int(index)))

    def __getitems__(self, indices: Sequence[int]) -> SampleBatch:
        """A whole batch in one call per field (torch DataLoader's batched fetch)."""
        return SampleBatch(self.read_batch(indices), len(indices))

    def read_batch(self, indices: Any, out: dict[str, torch.Tensor] | None = None,
                   *, threads: int | None = None) -> dict[str, Any]:
        """The samples ``indices`` as a dict of batched tensors (lists, or :class:`pydata.Ragged`,
        for tensors of varying shape).

        Args:
            indices: Global sample indices (a sequence or integer array).
            out: Tensors to fill for fixed-shape fields (C-contiguous, CPU, matching dtype).
            threads: Threads for the core (default: the pool's).

        Raises:
            IndexError: An index out of range.
            pydata.CorruptDataError: A damaged compressed row (names shard and row).
        """
        arrays = None
        if out is not None:
            arrays = {k: (v.view(torch.uint16) if v.dtype == torch.bfloat16 else v).numpy()
                      for k, v in out.items()}
        batch = self.reader.read_batch(indices, arrays, threads=threads)
        return to_torch(self.reader.fields, batch)

    def prefault(self) -> int:
        """Touches every page of every mapped shard, so the data is resident and this process's
        page tables are warm (e.g. right before a measurement: idle file pages get reclaimed).
        Returns the pages touched (0 with ``io="read"``, which maps nothing)."""
        return sum(s.mapped.prefault() for s in self.reader.shards if s.mapped is not None)

    def verify(self, *, progress: bool | None = None) -> None:
        """Checks every shard's CRC-32C against the index (reads the whole dataset).

        Raises:
            pydata.CorruptDataError: The first damaged shard (named).
        """
        shards = self.reader.shards
        for shard in tqdm(shards, desc=f"verifying {self.path.name}", unit="shard",
                          disable=None if progress is None else not progress, leave=False):
            shard.verify()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_reader"] = None  # maps and file handles are re-opened in the new process
        return state

    def __repr__(self) -> str:
        return (f"MemoryMappedDataset('{self.path}', samples={len(self)}, fields={self.field_names}, "
                f"io={self.io!r}, ragged={self.ragged})")
