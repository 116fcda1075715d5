"""BatchReader: the one path by which sample bytes leave shards.

Given the open shards of a dataset, it reads any batch of global sample indices with one call
into the compiled core per field: a gather of fixed rows (mmap) or of file ranges (``pread``), or
a batch decode of compressed rows straight from the mapped payload. Every dataset and loader
(map-style, streaming, the Loader's producer, DALI) reads through it, so there is no second,
slower path for the simple case. Outputs are numpy; converting to torch is the caller's job, so
the format layer never imports torch.

Per field, a batch yields:
  - fixed-shape tensors (raw or compressed): one array ``(n, *shape)``, into ``out`` if given;
  - tensors of varying shape: a list of arrays, or with ``ragged=True`` one
    :class:`pydata.format.ragged.Ragged` (all rows decoded back to back by one core call);
  - bytes / str: a list of bytes / str.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from pydata._core import FixedSections, IndexedSections
from pydata.errors import CorruptDataError, FormatError
from pydata.format.pread_plan import PreadPlan
from pydata.format.ragged import Ragged
from pydata.format.reader import ShardReader, split_rows
from pydata.format.schema import Field

__all__ = ["BatchReader"]


class BatchReader:
    """Reads batches of samples, by global index, from a list of open shards.

    Args:
        shards: The dataset's shards, in index order.
        schema: The dataset schema.
        fields: The fields to read (default: all), in the order the batches list them.
        ragged: Tensors of varying shape as one :class:`Ragged` per batch instead of a list.

    Raises:
        KeyError: A requested field is not in the schema (names the field and the schema).
    """

    def __init__(self, shards: Sequence[ShardReader], schema: Mapping[str, Field],
                 fields: Sequence[str] | None = None, *, ragged: bool = False) -> None:
        self.ragged = ragged
        self.fields: dict[str, Field] = {}
        for name in fields if fields is not None else list(schema):
            if name not in schema:
                msg = f"field {name!r} is not in the dataset; it has {list(schema)}"
                raise KeyError(msg)
            self.fields[name] = schema[name]
        self.shards = list(shards)
        sizes = np.array([s.samples for s in self.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])  # starts[s]: first sample of shard s
        self.samples = int(self.starts[-1])
        self.io = self.shards[0].io if self.shards else "mmap"
        names = [s.path for s in self.shards]
        self._fixed: dict[str, FixedSections] = {}
        self._indexed: dict[str, IndexedSections] = {}
        if self.io == "mmap":
            for name, field in self.fields.items():
                if field.layout == "fixed" and field.row_nbytes:
                    views = [s.fixed(name) for s in self.shards]
                    self._fixed[name] = FixedSections(views, field.row_nbytes, names=names)
                elif field.layout == "indexed":
                    indexed = [s.indexed(name) for s in self.shards]  # mmap: every payload is mapped
                    sections = [(v.offsets, cast("npt.NDArray[np.uint8]", v.payload)) for v in indexed]
                    self._indexed[name] = IndexedSections(sections, names=names)
        else:
            self._pread = PreadPlan(self.shards, self.fields)

    # -- shapes ------------------------------------------------------------------------------

    def batch_shape(self, name: str, n: int) -> tuple[int, ...] | None:
        """The shape of field ``name`` in a batch of ``n``, or None when it is a list."""
        field = self.fields[name]
        return None if field.kind != "tensor" or field.shape is None else (n, *field.shape)

    def allocate(self, n: int) -> dict[str, npt.NDArray[Any]]:
        """Fresh output arrays for every fixed-shape field of a batch of ``n``."""
        out = {}
        for name, field in self.fields.items():
            shape = self.batch_shape(name, n)
            if shape is not None:
                out[name] = np.empty(shape, dtype=field.storage_dtype)
        return out

    # -- reading -----------------------------------------------------------------------------

    def check_indices(self, indices: Any) -> npt.NDArray[np.int64]:
        """Indices as a contiguous int64 array, each in ``[0, samples)``.

        Raises:
            IndexError: Names the first bad index and its position.
        """
        idx = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        bad = np.flatnonzero((idx < 0) | (idx >= self.samples))
        if bad.size:
            msg = f"sample index {int(idx[bad[0]])} (position {int(bad[0])}) is out of range for {self.samples} samples"
            raise IndexError(msg)
        return idx

    def read_batch(self, indices: Any, out: Mapping[str, npt.NDArray[Any]] | None = None,
                   *, threads: int | None = None) -> dict[str, Any]:
        """Reads the samples ``indices`` (global, any order, repeats allowed).

        Args:
            indices: Global sample indices.
            out: Destination arrays for fixed-shape fields (as from :meth:`allocate`); fields
                not in it get new arrays.
            threads: Threads for the core's gather/decode (default: the pool's).

        Raises:
            IndexError: An index out of range.
            pydata.CorruptDataError: Damaged offsets or a damaged compressed row (names the
                shard file, field and row).
            pydata.FormatError: An ``out`` array of the wrong shape or dtype, or not C-contiguous.
        """
        idx = self.check_indices(indices)
        n = len(idx)
        batch: dict[str, Any] = {}
        for name, field in self.fields.items():
            dst = out.get(name) if out is not None else None
            shape = self.batch_shape(name, n)
            if shape is not None:
                dst = _check_out(name, field, shape, dst)
            batch[name] = self._read_field(name, field, idx, dst, threads)
        return batch

    def _read_field(self, name: str, field: Field, idx: npt.NDArray[np.int64],
                    dst: npt.NDArray[Any] | None, threads: int | None) -> Any:
        as_ragged = self.ragged and dst is None and field.kind == "tensor"
        if self.io == "read":
            return self._pread.read(name, idx, dst, threads, self._where(name, idx), ragged=as_ragged)
        if field.layout == "fixed":
            assert dst is not None
            if field.row_nbytes:
                self._fixed[name].gather(idx, dst.reshape(-1).view(np.uint8), threads=threads)
            return dst
        sections = self._indexed[name]
        if dst is not None:
            try:
                return sections.decode(idx, dst, threads=threads)
            except CorruptDataError as exc:  # the core names the shard and row, not the field
                msg = f"field '{name}': {exc}"
                raise CorruptDataError(msg) from exc
        if as_ragged:
            try:
                values, shapes = sections.decode_ragged(idx, np.dtype(field.storage_dtype), threads=threads)
            except (CorruptDataError, FormatError) as exc:  # the core names the shard and row
                raise type(exc)(f"field '{name}': {exc}") from exc
            return Ragged.from_values(values, shapes)
        offsets, payload = sections.gather(idx, threads=threads)
        return split_rows(field, offsets, payload, self._where(name, idx))

    def _where(self, name: str, idx: npt.NDArray[np.int64]) -> Callable[[int], str]:
        """Describes row i of a batch of ``idx`` for error messages: shard, field, row."""
        def where(i: int) -> str:
            sample = int(idx[i])
            shard = int(np.searchsorted(self.starts, sample, side="right")) - 1
            row = sample - int(self.starts[shard])
            return f"shard '{self.shards[shard].path}' field '{name}' row {row} (sample {sample})"
        return where

    def read_sample(self, index: int) -> dict[str, Any]:
        """One sample; fixed raw fields are zero-copy, read-only views of the mapped shard."""
        if not -self.samples <= index < self.samples:
            msg = f"sample index {index} is out of range for {self.samples} samples"
            raise IndexError(msg)
        index %= self.samples
        if self.io == "read":
            batch = self.read_batch([index])
            # v[0, ...] keeps a scalar field a 0-d array (v[0] would give a numpy scalar).
            return {k: v[0, ...] if isinstance(v, np.ndarray) else v[0] for k, v in batch.items()}
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        row = index - int(self.starts[shard])
        reader = self.shards[shard]
        sample: dict[str, Any] = {}
        for name, field in self.fields.items():
            if field.layout == "fixed":
                sample[name] = reader.fixed(name)[row, ...]  # a 0-d array for scalars
                continue
            view = reader.indexed(name)
            assert view.payload is not None
            blob = view.payload[int(view.offsets[row]):int(view.offsets[row + 1])]
            where = self._where(name, np.array([index], np.int64))
            sample[name] = split_rows(field, np.array([0, len(blob)], np.uint64), blob, where)[0]
        return sample


def _check_out(name: str, field: Field, shape: tuple[int, ...],
               dst: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    """``dst`` checked against a field's batch shape and dtype, or a new array if None.

    Raises:
        FormatError: Wrong shape or dtype, or not C-contiguous (the rows would be written into
            a copy and silently lost).
    """
    if dst is None:
        return np.empty(shape, dtype=field.storage_dtype)
    if dst.shape != shape or dst.dtype != field.storage_dtype or not dst.flags.c_contiguous:
        layout = "" if dst.flags.c_contiguous else ", not C-contiguous"
        msg = (f"out[{name!r}] must be a C-contiguous {field.storage_dtype} array of shape {shape}, "
               f"got {dst.dtype} {dst.shape}{layout}")
        raise FormatError(msg)
    return dst
