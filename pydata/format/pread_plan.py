"""PreadPlan: batch reads with ``pread`` instead of page faults (``io="read"``).

For network file systems, where a page fault is a synchronous round trip, explicit reads of
exactly the needed ranges are faster and keep nothing mapped. The plan precomputes, per field,
where every row lies in its file (fixed rows by arithmetic, indexed rows from the offsets tables,
16 bytes per sample per indexed field), so a batch is one vectorised numpy step plus one
multi-threaded ``FileReader.read`` call; compressed rows are then decoded in one batch call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pydata._core import FileReader, IndexedSections
from pydata.errors import CorruptDataError
from pydata.format.ragged import Ragged
from pydata.format.reader import ShardReader, split_rows
from pydata.format.schema import Field

__all__ = ["PreadPlan"]


class PreadPlan:
    """Where each row of each field lies, for reading batches with ``pread``."""

    def __init__(self, shards: Sequence[ShardReader], fields: Mapping[str, Field]) -> None:
        self.fields = dict(fields)
        self.reader = FileReader([s.path for s in shards])
        sizes = np.array([s.samples for s in shards], dtype=np.int64)
        self.shard_of = np.repeat(np.arange(len(shards), dtype=np.int32), sizes)
        self.row_of = np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(
            np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), sizes)
        self._section_offset: dict[str, npt.NDArray[np.uint64]] = {}
        self._begin: dict[str, npt.NDArray[np.uint64]] = {}
        self._length: dict[str, npt.NDArray[np.uint64]] = {}
        for name, field in self.fields.items():
            if field.layout == "fixed":
                self._section_offset[name] = np.array([s.section(name).offset for s in shards], np.uint64)
                continue
            begins, lengths = [], []
            for shard in shards:
                view = shard.indexed(name)
                begins.append(view.payload_offset + view.offsets[:-1])
                lengths.append(np.diff(view.offsets))
            self._begin[name] = np.concatenate(begins).astype(np.uint64) if begins else np.zeros(0, np.uint64)
            self._length[name] = np.concatenate(lengths).astype(np.uint64) if lengths else np.zeros(0, np.uint64)

    def read(self, name: str, idx: npt.NDArray[np.int64], dst: npt.NDArray[Any] | None,
             threads: int | None, where: Callable[[int], str] | None = None, *,
             ragged: bool = False) -> Any:
        """Field ``name`` of samples ``idx`` (already range-checked), as BatchReader returns it
        (with ``ragged``, a tensor field of varying shape as one :class:`Ragged`); ``where``
        describes row i (shard, field, row) for errors."""
        field = self.fields[name]
        file_ids = self.shard_of[idx]
        if field.layout == "fixed":
            assert dst is not None
            rows = self.row_of[idx].astype(np.uint64)
            offsets = self._section_offset[name][file_ids] + rows * np.uint64(field.row_nbytes)
            lengths = np.full(len(idx), field.row_nbytes, dtype=np.uint64)
            self.reader.read(file_ids, offsets, lengths, dst.reshape(-1).view(np.uint8), threads=threads)
            return dst
        lengths = self._length[name][idx]
        out_offsets = np.zeros(len(idx) + 1, dtype=np.uint64)
        np.cumsum(lengths, out=out_offsets[1:])
        payload = np.empty(int(out_offsets[-1]), dtype=np.uint8)
        self.reader.read(file_ids, self._begin[name][idx], lengths, payload, threads=threads)
        if dst is not None or ragged:
            blobs = IndexedSections([(out_offsets, payload)], names=[f"field '{name}'"])
            positions = np.arange(len(idx), dtype=np.int64)
            try:
                if dst is None:
                    values, shapes = blobs.decode_ragged(positions, np.dtype(field.storage_dtype), threads=threads)
                    return Ragged.from_values(values, shapes)
                return blobs.decode(positions, dst, threads=threads)
            except CorruptDataError:
                # The core knows only the batch row; decoding row by row names the shard.
                split_rows(field, out_offsets, payload, where)
                raise
        return split_rows(field, out_offsets, payload, where)

    def close(self) -> None:
        self.reader.close()
