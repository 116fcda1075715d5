"""ShardWriter: converts samples into a dataset of shards, atomically.

Samples are validated against the schema as they arrive, buffered column by column until a shard
holds about ``shard_bytes``, and then written under a temporary name and renamed. ``index.json``
is written last, so a dataset that looks complete is complete; a writer that fails removes what
it wrote. Buffering a whole shard in memory is the price of the columnar layout (each field's
section must be complete before the next one starts); it is bounded by ``shard_bytes``.

A conversion can be split into independent processes with ``partition=(k, n)``: partition k
writes shards named ``shard-k-*`` and ``index.part-k-of-n.json``, and :func:`pydata.merge_index`
joins them once all have finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from tqdm import tqdm

from pydata._core import checksum, encode
from pydata.errors import ClosedError, FormatError
from pydata.format.atomic import atomic_write, fsync_directory
from pydata.format.index import INDEX_NAME, DatasetIndex, ShardEntry, read_index
from pydata.format.schema import Field, as_bytes, as_tensor, check_schema
from pydata.format.shard import PAGE, ShardHeader

__all__ = ["ShardWriter", "partition_index_name"]

DEFAULT_SHARD_BYTES = 64 << 20
_ZEROS = bytes(PAGE)


def partition_index_name(k: int, n: int) -> str:
    """The index file that partition ``k`` of ``n`` writes."""
    return f"index.part-{k:05d}-of-{n:05d}.json"


class ShardWriter:
    """Writes samples into a new dataset directory.

    Args:
        path: The dataset directory (created if missing).
        schema: Field name -> :class:`pydata.Field`.
        shard_bytes: Target shard size; a shard is closed once it reaches this many bytes.
        overwrite: Replace an existing dataset. Its ``index.json`` is removed first, so that a
            crash in between never leaves an old index pointing at new shards.
        partition: ``(k, n)``: this writer is partition k of n independent writers.
        metadata: JSON-serialisable user metadata stored in the index.
        progress: Show a progress bar (default: when stderr is a terminal).
        total: Expected number of samples, for the progress bar.

    Raises:
        FileExistsError: The directory already holds a dataset (or this partition's files).
        FormatError: A bad schema, partition or metadata.

    Example:
        >>> import numpy as np, tempfile, pydata
        >>> out = tempfile.mkdtemp()
        >>> with pydata.ShardWriter(out, {"x": pydata.Field("float32", (2,))}) as w:
        ...     w.write({"x": np.zeros(2, np.float32)})
        >>> pydata.MemoryMappedDataset(out)[0]["x"].tolist()
        [0.0, 0.0]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: Mapping[str, Field],
        *,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
        overwrite: bool = False,
        partition: tuple[int, int] | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        total: int | None = None,
    ) -> None:
        self.schema = check_schema(schema)
        if shard_bytes <= 0:
            msg = f"shard_bytes must be positive, got {shard_bytes}"
            raise FormatError(msg)
        self.metadata = dict(metadata or {})
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as exc:
            msg = f"metadata must be JSON-serialisable: {exc}"
            raise FormatError(msg) from exc
        if partition is not None:
            k, n = partition
            if not (isinstance(k, int) and isinstance(n, int) and 0 <= k < n):
                msg = f"partition must be (k, n) with 0 <= k < n, got {partition!r}"
                raise FormatError(msg)
        self.path = Path(path)
        self.partition = partition
        self.shard_bytes = shard_bytes
        self._prefix = "shard-" if partition is None else f"shard-{partition[0]:05d}-"
        self._index_name = INDEX_NAME if partition is None else partition_index_name(*partition)
        self._stale = self._prepare_directory(overwrite)
        self._shards: list[ShardEntry] = []
        self._samples = 0  # samples accepted so far (numbers samples in error messages)
        self._closed = False
        self._reset_buffers()
        self._bar = tqdm(total=total, unit="sample", desc=f"writing {self.path.name}",
                         disable=None if progress is None else not progress, leave=False)

    # -- set-up ------------------------------------------------------------------------------

    def _own_files(self) -> list[Path]:
        pattern = re.compile(re.escape(self._prefix) + r"\d{5}\.pds$")
        own = [p for p in self.path.iterdir() if pattern.match(p.name)]
        if (self.path / self._index_name).exists():
            own.append(self.path / self._index_name)
        return own

    def _prepare_directory(self, overwrite: bool) -> list[Path]:
        """Checks for an existing dataset; with ``overwrite`` unlinks its index and returns the
        files to delete once the new dataset is complete."""
        self.path.mkdir(parents=True, exist_ok=True)
        index = self.path / INDEX_NAME
        existing = self._own_files() + ([index] if index.exists() and index not in self._own_files() else [])
        if self.partition is None and index.exists():
            # The old dataset's shards may have other names (a merged partitioned dataset).
            with contextlib.suppress(OSError, FormatError):
                existing += [p for p in (self.path / s.file for s in read_index(self.path).shards)
                             if p not in existing]
        if existing and not overwrite:
            names = ", ".join(sorted(p.name for p in existing)[:3])
            msg = f"'{self.path}' already holds a dataset ({names}, ...); pass overwrite=True to replace it"
            raise FileExistsError(msg)
        index.unlink(missing_ok=True)
        return [p for p in existing if p != index]

    def _reset_buffers(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in self.schema}
        self._pending = 0
        self._pending_bytes = 0

    # -- writing -----------------------------------------------------------------------------

    def write(self, sample: Mapping[str, Any]) -> None:
        """Adds one sample: a mapping with exactly the schema's fields.

        Raises:
            FormatError: A missing or extra field, or a value of the wrong dtype or shape
                (the message names the field and the sample number).
            ClosedError: The writer is closed.
        """
        self._check_open()
        self._check_keys(sample, f"sample {self._samples}")
        # Validate every field before buffering any: a rejected sample must leave no partial row.
        values = {name: self._encode(field, sample[name], f"sample {self._samples}, field '{name}'")
                  for name, field in self.schema.items()}
        for name, value in values.items():
            self._columns[name].append(value)
        self._accepted(1, sum(_nbytes(v) for v in values.values()))

    def write_batch(self, columns: Mapping[str, Any]) -> None:
        """Adds ``n`` samples given column-wise: each field maps to ``n`` values (an array with
        a leading dimension of ``n`` for fixed-shape tensors, any sequence otherwise).

        Raises:
            FormatError: As for :meth:`write`; columns of different lengths.
            ClosedError: The writer is closed.
        """
        self._check_open()
        first = self._samples
        self._check_keys(columns, f"batch starting at sample {first}")
        lengths = {name: len(columns[name]) for name in self.schema}
        n = next(iter(lengths.values()))
        if any(length != n for length in lengths.values()):
            msg = f"batch starting at sample {first}: columns differ in length: {lengths}"
            raise FormatError(msg)
        if n == 0:
            return
        encoded: dict[str, Any] = {}
        row_bytes = np.zeros(n, dtype=np.int64)
        for name, field in self.schema.items():
            if field.layout == "fixed":
                where = f"samples {first}..{first + n - 1}, field '{name}'"
                column = as_tensor(field, columns[name], where, shape=(n, *(field.shape or ())))
                encoded[name] = column.copy()  # may be a view of the caller's array, which it may reuse
                row_bytes += field.row_nbytes
            else:
                values = [self._encode(field, v, f"sample {first + i}, field '{name}'")
                          for i, v in enumerate(columns[name])]
                encoded[name] = values
                row_bytes += np.fromiter((len(v) for v in values), dtype=np.int64, count=n)
        self._append_rows(encoded, row_bytes)

    def _append_rows(self, encoded: dict[str, Any], row_bytes: np.ndarray) -> None:
        """Appends validated rows, closing shards whenever one reaches ``shard_bytes``."""
        start, n = 0, len(row_bytes)
        ends = np.cumsum(row_bytes)
        while start < n:
            room = self.shard_bytes - self._pending_bytes
            before = ends[start - 1] if start else 0
            stop = int(np.searchsorted(ends, before + room, side="left")) + 1
            stop = min(max(stop, start + 1), n)
            for name, values in encoded.items():
                if isinstance(values, np.ndarray):
                    self._columns[name].append(values[start:stop])
                else:
                    self._columns[name].extend(values[start:stop])
            self._accepted(stop - start, int(ends[stop - 1] - before))
            start = stop

    def _accepted(self, count: int, nbytes: int) -> None:
        self._samples += count
        self._pending += count
        self._pending_bytes += nbytes
        self._bar.update(count)
        if self._pending_bytes >= self.shard_bytes:
            self._flush()

    def _encode(self, field: Field, value: Any, where: str) -> Any:
        """One sample's stored form: an array for fixed fields, bytes for indexed ones."""
        if field.kind != "tensor":
            return as_bytes(field, value, where)
        array = as_tensor(field, value, where)
        if field.layout == "fixed":
            return array[np.newaxis].copy()  # may be a view of the caller's buffer, which it may reuse
        try:
            return encode(array, field.codec, dtype="bfloat16" if field.dtype == "bfloat16" else None)
        except ValueError as exc:
            msg = f"{where}: cannot encode with {field.codec!r}: {exc}"
            raise FormatError(msg) from exc

    def _check_keys(self, sample: Mapping[str, Any], where: str) -> None:
        if not isinstance(sample, Mapping):
            msg = f"{where}: expected a mapping of field -> value, got {type(sample).__name__}"
            raise FormatError(msg)
        missing = [k for k in self.schema if k not in sample]
        extra = [k for k in sample if k not in self.schema]
        if missing or extra:
            msg = (f"{where}: fields do not match the schema: missing {missing}, unexpected {extra} "
                   f"(schema: {list(self.schema)})")
            raise FormatError(msg)

    def _check_open(self) -> None:
        if self._closed:
            msg = f"the ShardWriter for '{self.path}' is closed"
            raise ClosedError(msg)

    # -- shards ------------------------------------------------------------------------------

    def _sections(self) -> list[tuple[str, Any]]:
        """Each field's section content: a list of arrays/bytes to write back to back."""
        out: list[tuple[str, Any]] = []
        for name, field in self.schema.items():
            chunks = self._columns[name]
            if field.layout == "fixed":
                out.append((name, chunks))
            else:
                lengths = np.fromiter((len(b) for b in chunks), dtype=np.uint64, count=len(chunks))
                offsets = np.zeros(len(chunks) + 1, dtype="<u8")
                np.cumsum(lengths, out=offsets[1:])
                out.append((name, [offsets, *chunks]))
        return out

    def _flush(self) -> None:
        if self._pending == 0:
            return
        sections = self._sections()
        header = ShardHeader.plan(self._pending, [
            (name, self.schema[name].layout, sum(_nbytes(c) for c in chunks),
             self.schema[name].row_nbytes) for name, chunks in sections
        ])
        name = f"{self._prefix}{len(self._shards):05d}.pds"
        path = self.path / name
        with atomic_write(path) as f:
            crc, nbytes = _write_sections(f, header, sections)
        self._shards.append(ShardEntry(name, self._pending, nbytes, crc))
        self._reset_buffers()

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> DatasetIndex:
        """Writes the last shard and the index (last, atomically); returns the index.

        Raises:
            ClosedError: Already closed.
        """
        self._check_open()
        self._flush()
        self._closed = True
        self._bar.close()
        fsync_directory(self.path)  # the shards' renames are durable before the index names them
        index = DatasetIndex(self.schema, tuple(self._shards), self.metadata)
        index.write(self.path, self._index_name)
        current = {s.file for s in self._shards} | {self._index_name}
        for stale in self._stale:
            if stale.name not in current:
                stale.unlink(missing_ok=True)
        return index

    def abort(self) -> None:
        """Discards everything this writer wrote; no index is written."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        for shard in self._shards:
            (self.path / shard.file).unlink(missing_ok=True)
        fsync_directory(self.path)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            if not self._closed:  # close() inside the block is allowed
                self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return (f"ShardWriter('{self.path}', fields={list(self.schema)}, samples={self._samples}, "
                f"shards={len(self._shards)})")


def _nbytes(chunk: Any) -> int:
    return chunk.nbytes if isinstance(chunk, np.ndarray) else len(chunk)


def _write_sections(f: Any, header: ShardHeader, sections: Sequence[tuple[str, Any]]) -> tuple[int, int]:
    """Writes header, padding and sections; returns (CRC-32C of the file, its size)."""
    crc, pos = 0, 0

    def put(data: Any) -> None:
        nonlocal crc, pos
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        f.write(view)
        crc = checksum(view, crc)
        pos += len(view)

    put(header.encode())
    for section, (_, chunks) in zip(header.sections, sections):
        while pos < section.offset:
            put(_ZEROS[: min(PAGE, section.offset - pos)])
        for chunk in chunks:
            # As flat bytes: memoryview.cast refuses arrays with a zero in their shape.
            put(np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
                if isinstance(chunk, np.ndarray) else chunk)
    assert pos == header.file_nbytes, (pos, header.file_nbytes)
    return crc, pos
