"""ShardReader: opens one shard, checks it against the index, and exposes its sections.

With ``io="mmap"`` (the default) a section is a zero-copy numpy view of the mapped file, shared
by every process through the page cache. With ``io="read"`` nothing is mapped: the reader keeps
an open file (``pydata._core.FileReader``) and the small offsets tables of indexed fields in
memory, and batches are read with ``pread`` — for network file systems, where page-fault reads
are slow. Opening checks the size, magic, version, header CRC and the fields; the whole-file
CRC is checked by :meth:`ShardReader.verify` (reading every byte is too costly for every open).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pydata._core import FileReader, MappedFile, checksum, decode
from pydata.errors import CorruptDataError, FormatError
from pydata.format.index import ShardEntry
from pydata.format.schema import Field
from pydata.format.shard import PAGE, Section, ShardHeader, decode_header, header_nbytes

__all__ = ["IO", "ShardReader", "split_rows"]

IO = Literal["mmap", "read"]
_VERIFY_CHUNK = 64 << 20


@dataclass(frozen=True)
class IndexedView:
    """An indexed section: ``offsets`` (uint64, samples + 1) and where its payload starts."""

    offsets: npt.NDArray[np.uint64]
    payload_offset: int  # in the file
    payload: npt.NDArray[np.uint8] | None  # the mapped payload (mmap mode only)


class ShardReader:
    """One open shard.

    Args:
        path: The shard file.
        entry: Its entry in the index (expected size, samples and CRC).
        schema: The dataset's schema; the shard must hold exactly these fields, in order.
        io: ``"mmap"`` or ``"read"``.

    Raises:
        FileNotFoundError: The shard is missing (the message names it and the dataset).
        CorruptDataError: A truncated file, bad magic, damaged header, or a section whose size
            disagrees with the schema.
        FormatError: An unknown format version, or fields that differ from the index.
    """

    def __init__(self, path: str | os.PathLike[str], entry: ShardEntry, schema: dict[str, Field],
                 *, io: IO = "mmap") -> None:
        if io not in ("mmap", "read"):
            msg = f"io must be 'mmap' or 'read', got {io!r}"
            raise ValueError(msg)
        self.path = str(path)
        self.entry = entry
        self.schema = schema
        self.io: IO = io
        size = _file_size(self.path)
        if size != entry.nbytes:
            msg = f"shard '{self.path}': truncated or altered: the index says {entry.nbytes} bytes, the file has {size}"
            raise CorruptDataError(msg)
        self.mapped: MappedFile | None = MappedFile(self.path) if io == "mmap" else None
        self.file = FileReader([self.path]) if io == "read" else None
        self.header = decode_header(self._read_header(size), self.path, size)
        self._check_fields()
        self._indexed: dict[str, IndexedView] = {}

    @property
    def samples(self) -> int:
        return self.header.samples

    def _read(self, offset: int, length: int) -> bytes:
        if self.mapped is not None:
            return self.mapped.view(offset, length).tobytes()
        assert self.file is not None
        out = np.empty(length, dtype=np.uint8)
        self.file.read(np.zeros(1, np.int32), np.array([offset], np.uint64),
                       np.array([length], np.uint64), out)
        return out.tobytes()

    def _read_header(self, size: int) -> bytes:
        data = self._read(0, min(size, PAGE))
        declared = header_nbytes(data)
        if len(data) < declared <= size:  # a header longer than a page (hundreds of fields)
            data = self._read(0, declared)
        return data

    def _check_fields(self) -> None:
        stored = [s.name for s in self.header.sections]
        if stored != list(self.schema):
            msg = f"shard '{self.path}': fields {stored} differ from the index's schema {list(self.schema)}"
            raise FormatError(msg)
        if self.header.samples != self.entry.samples:
            msg = f"shard '{self.path}': holds {self.header.samples} samples, the index says {self.entry.samples}"
            raise CorruptDataError(msg)
        for section in self.header.sections:
            field = self.schema[section.name]
            if section.layout != field.layout:
                msg = f"shard '{self.path}': field '{section.name}' is {section.layout}, the schema says {field.layout}"
                raise FormatError(msg)
            expected = field.row_nbytes * self.samples if field.layout == "fixed" else 8 * (self.samples + 1)
            short = section.nbytes < expected if field.layout == "indexed" else section.nbytes != expected
            if short or section.row_nbytes != field.row_nbytes:
                msg = (f"shard '{self.path}': field '{section.name}': section of {section.nbytes} bytes "
                       f"with rows of {section.row_nbytes}, expected {expected} bytes of {field.row_nbytes}")
                raise CorruptDataError(msg)

    def section(self, name: str) -> Section:
        """The section of field ``name``."""
        return self.header.section(name)

    def fixed(self, name: str) -> npt.NDArray[Any]:
        """A zero-copy view ``(samples, *shape)`` of a fixed field (mmap mode only). Writes to it
        stay private to this process (copy-on-write) and never reach the file."""
        field = self.schema[name]
        section = self.section(name)
        assert self.mapped is not None and field.shape is not None
        # Writable where the mapping is copy-on-write: torch can then wrap rows without a
        # read-only warning, and a caller's in-place change stays private to its process.
        return self.mapped.view(section.offset, section.nbytes, dtype=field.storage_dtype,
                                shape=(self.samples, *field.shape), writable=self.mapped.copy_on_write)

    def indexed(self, name: str) -> IndexedView:
        """The offsets table (validated: starts at 0, never decreases, ends inside the section)
        and payload of an indexed field. Cached."""
        view = self._indexed.get(name)
        if view is None:
            view = self._open_indexed(name)
            self._indexed[name] = view
        return view

    def _open_indexed(self, name: str) -> IndexedView:
        section = self.section(name)
        table = 8 * (self.samples + 1)
        if self.mapped is not None:
            offsets = self.mapped.view(section.offset, table, dtype="<u8")
        else:
            offsets = np.frombuffer(self._read(section.offset, table), dtype="<u8")
        payload_nbytes = section.nbytes - table
        if offsets[0] != 0 or offsets[-1] != payload_nbytes or np.any(offsets[1:] < offsets[:-1]):
            msg = (f"shard '{self.path}': field '{name}': corrupt offsets table (must rise from 0 to the "
                   f"payload size {payload_nbytes}; ends at {int(offsets[-1])})")
            raise CorruptDataError(msg)
        payload = None
        if self.mapped is not None:
            payload = self.mapped.view(section.offset + table, payload_nbytes)
        return IndexedView(offsets, section.offset + table, payload)

    def verify(self) -> None:
        """Checks the whole file's CRC-32C against the index.

        Raises:
            CorruptDataError: A mismatch (names the shard, both values and the remedy).
        """
        crc = 0
        with open(self.path, "rb", buffering=0) as f:
            buf = bytearray(min(_VERIFY_CHUNK, max(self.entry.nbytes, 1)))
            while n := f.readinto(buf):
                crc = checksum(memoryview(buf)[:n], crc)
        if crc != self.entry.crc32c:
            msg = (f"shard '{self.path}': checksum mismatch: CRC-32C {crc:#010x}, the index says "
                   f"{self.entry.crc32c:#010x} (the file is damaged; re-create or re-download it)")
            raise CorruptDataError(msg)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.mapped = None
        self._indexed.clear()

    def __repr__(self) -> str:
        return f"ShardReader('{self.path}', samples={self.samples}, io={self.io!r})"


def _file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except FileNotFoundError as exc:
        msg = f"shard '{path}' is missing (listed in the dataset's index)"
        raise FileNotFoundError(exc.errno, msg, path) from exc


def split_rows(field: Field, offsets: npt.NDArray[np.uint64], payload: npt.NDArray[np.uint8],
               where: Callable[[int], str] | None = None) -> list[Any]:
    """Rows of a gathered indexed field as a list: decoded arrays, bytes or str.

    Args:
        where: Describes row i (shard, field, row) for error messages.

    Raises:
        CorruptDataError: A damaged codec blob or a str row that is not UTF-8 (named by ``where``).
    """
    bounds = offsets.tolist()
    kind = field.kind  # a property: read once, not per row
    data = b"" if kind == "tensor" else payload.tobytes()
    rows: list[Any] = []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        try:
            if kind == "tensor":
                rows.append(decode(payload[a:b]))
            else:
                rows.append(data[a:b].decode("utf-8") if kind == "str" else data[a:b])
        except (CorruptDataError, UnicodeDecodeError) as exc:
            if where is None and isinstance(exc, CorruptDataError):
                raise
            msg = f"{where(i) if where is not None else f'row {i}'}: {exc}"
            raise CorruptDataError(msg) from exc
    return rows
