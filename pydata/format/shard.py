"""The byte layout of one shard file: its header and where each field's section lies.

Declared once here, as struct formats with the reasons, so the writer and the reader cannot
drift apart (the spec in words is ``docs/format.md``). Everything is little-endian. Sections start
on 4096-byte boundaries so that a fixed field's rows can be mapped and viewed in place; the price
is up to one page of zero padding per field per shard.

Layout::

    prefix   32 bytes   magic "PDSH", version, field count, sample count, header size, file size
    entries  32 bytes per field: section offset, section size, row size, layout
    names    per field: uint16 length + UTF-8 name
    crc      uint32 CRC-32C of every header byte before it
    padding  zeros up to the first section; sections follow in field order, each page-aligned
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pydata._core import checksum
from pydata.errors import CorruptDataError, FormatError

__all__ = ["MAGIC", "PAGE", "VERSION", "Section", "ShardHeader", "align", "decode_header", "header_nbytes"]

MAGIC = b"PDSH"
VERSION = 1
PAGE = 4096
_PREFIX = struct.Struct("<4sHHQIxxxxQ")  # magic, version, fields, samples, header bytes, file bytes
_ENTRY = struct.Struct("<QQQB7x")  # offset, nbytes, row_nbytes, layout
_NAME_LEN = struct.Struct("<H")
_CRC = struct.Struct("<I")
_LAYOUT_CODES = {"fixed": 0, "indexed": 1}
_LAYOUT_NAMES = {code: name for name, code in _LAYOUT_CODES.items()}


def align(offset: int, to: int = PAGE) -> int:
    """The first multiple of ``to`` at or after ``offset``."""
    return -(-offset // to) * to


@dataclass(frozen=True)
class Section:
    """Where one field's data lies in a shard file.

    A fixed section is ``samples * row_nbytes`` bytes of rows. An indexed section is
    ``uint64 offsets[samples + 1]`` (relative to the payload, starting at 0) followed directly by
    the payload of ``offsets[samples]`` bytes.
    """

    name: str
    offset: int
    nbytes: int
    row_nbytes: int
    layout: str

    @property
    def end(self) -> int:
        return self.offset + self.nbytes


@dataclass(frozen=True)
class ShardHeader:
    """The decoded header of one shard."""

    samples: int
    sections: tuple[Section, ...]
    file_nbytes: int

    def section(self, name: str) -> Section:
        for section in self.sections:
            if section.name == name:
                return section
        raise KeyError(name)

    @staticmethod
    def plan(samples: int, fields: list[tuple[str, str, int, int]]) -> ShardHeader:
        """Lays out sections for ``(name, layout, nbytes, row_nbytes)`` in order, page-aligned."""
        names_size = sum(_NAME_LEN.size + len(name.encode()) for name, *_ in fields)
        offset = align(_PREFIX.size + _ENTRY.size * len(fields) + names_size + _CRC.size)
        sections = []
        for name, layout, nbytes, row_nbytes in fields:
            sections.append(Section(name, offset, nbytes, row_nbytes, layout))
            offset = align(offset + nbytes)
        file_nbytes = sections[-1].end if sections else offset
        return ShardHeader(samples, tuple(sections), file_nbytes)

    def encode(self) -> bytes:
        """The header bytes, CRC included (the caller pads to the first section)."""
        names = b"".join(_NAME_LEN.pack(len(s.name.encode())) + s.name.encode() for s in self.sections)
        size = _PREFIX.size + _ENTRY.size * len(self.sections) + len(names) + _CRC.size
        body = _PREFIX.pack(MAGIC, VERSION, len(self.sections), self.samples, size, self.file_nbytes)
        body += b"".join(
            _ENTRY.pack(s.offset, s.nbytes, s.row_nbytes, _LAYOUT_CODES[s.layout]) for s in self.sections
        )
        body += names
        return body + _CRC.pack(checksum(body))


def header_nbytes(prefix: bytes) -> int:
    """The header size a shard's first 32 bytes declare (0 if they are too short to say)."""
    return _PREFIX.unpack_from(prefix)[4] if len(prefix) >= _PREFIX.size else 0


def decode_header(data: bytes, path: str, file_nbytes: int) -> ShardHeader:
    """Parses and checks a shard header read from the start of ``path``.

    Args:
        data: At least the header's bytes (reading one page is always enough for a few dozen
            fields; a longer header is reported with the size needed).
        path: The shard, for messages.
        file_nbytes: The file's actual size.

    Raises:
        CorruptDataError: Wrong magic, a damaged header (CRC), or sections outside the file.
        FormatError: A format version this reader does not know.
    """
    if len(data) < _PREFIX.size:
        msg = f"shard '{path}': {len(data)} bytes is too short for a header (at least {_PREFIX.size})"
        raise CorruptDataError(msg)
    magic, version, count, samples, size, stored_nbytes = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        msg = f"shard '{path}': bad magic {magic!r}, expected {MAGIC!r} (not a pydata shard)"
        raise CorruptDataError(msg)
    if version != VERSION:
        msg = f"shard '{path}': format version {version}, this pydata reads version {VERSION}"
        raise FormatError(msg)
    if size > len(data):
        msg = f"shard '{path}': header of {size} bytes, but only {len(data)} bytes were read"
        raise CorruptDataError(msg)
    (stored_crc,) = _CRC.unpack_from(data, size - _CRC.size)
    if checksum(data[: size - _CRC.size]) != stored_crc:
        msg = f"shard '{path}': header checksum mismatch (the header is damaged)"
        raise CorruptDataError(msg)
    if stored_nbytes != file_nbytes:
        msg = f"shard '{path}': truncated or padded: header says {stored_nbytes} bytes, file has {file_nbytes}"
        raise CorruptDataError(msg)
    pos = _PREFIX.size + _ENTRY.size * count
    sections = []
    for i in range(count):
        offset, nbytes, row_nbytes, code = _ENTRY.unpack_from(data, _PREFIX.size + _ENTRY.size * i)
        (name_len,) = _NAME_LEN.unpack_from(data, pos)
        name = data[pos + _NAME_LEN.size : pos + _NAME_LEN.size + name_len].decode("utf-8")
        pos += _NAME_LEN.size + name_len
        if code not in _LAYOUT_NAMES or offset % PAGE or offset + nbytes > file_nbytes:
            msg = (f"shard '{path}': field '{name}': bad section (offset {offset}, {nbytes} bytes, "
                   f"layout code {code}) in a file of {file_nbytes} bytes")
            raise CorruptDataError(msg)
        sections.append(Section(name, offset, nbytes, row_nbytes, _LAYOUT_NAMES[code]))
    return ShardHeader(samples, tuple(sections), file_nbytes)
