"""pydata.format.shard: the shard file, byte by byte, as docs/format.md specifies it.

These tests parse written shards with plain ``struct`` from the documented offsets, so that the
documentation and the code cannot drift apart.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata
from pydata import CorruptDataError, Field, ShardWriter, read_index
from pydata.format.shard import MAGIC, PAGE, VERSION, ShardHeader, align, decode_header, header_nbytes


def test_constants() -> None:
    assert (MAGIC, VERSION, PAGE) == (b"PDSH", 1, 4096)


@pytest.mark.parametrize(("offset", "aligned"), [(0, 0), (1, 4096), (4096, 4096), (4097, 8192)])
def test_align(offset: int, aligned: int) -> None:
    assert align(offset) == aligned


def test_a_shard_matches_the_documented_layout(tmp_path: Path) -> None:
    schema = {"img": Field("uint16", (2, 3)), "name": Field("str"), "z": Field("float32", None, codec="lz4")}
    img = np.arange(3 * 6, dtype=np.uint16).reshape(3, 2, 3)
    names = ["a", "", "ünï"]
    zs = [np.ones(2, np.float32), np.zeros((0,), np.float32), np.arange(5, dtype=np.float32)]
    with ShardWriter(tmp_path, schema, progress=False) as w:
        for i in range(3):
            w.write({"img": img[i], "name": names[i], "z": zs[i]})
    entry = read_index(tmp_path).shards[0]
    data = (tmp_path / entry.file).read_bytes()
    assert entry.file == "shard-00000.pds"
    assert len(data) == entry.nbytes
    assert pydata.checksum(data) == entry.crc32c

    # prefix
    assert data[0:4] == b"PDSH"
    assert struct.unpack_from("<HHQI", data, 4) == (1, 3, 3, 36 + 32 * 3 + (2 + 3) + (2 + 4) + (2 + 1))
    size = struct.unpack_from("<I", data, 16)[0]
    assert data[20:24] == bytes(4)
    assert struct.unpack_from("<Q", data, 24)[0] == len(data)
    # entries, names, CRC
    entries = [struct.unpack_from("<QQQB", data, 32 + 32 * i) for i in range(3)]
    assert all(data[57 + 32 * i : 64 + 32 * i] == bytes(7) for i in range(3))
    pos, stored = 32 + 32 * 3, []
    for _ in range(3):
        (n,) = struct.unpack_from("<H", data, pos)
        stored.append(data[pos + 2 : pos + 2 + n].decode())
        pos += 2 + n
    assert stored == ["img", "name", "z"]
    assert pos + 4 == size
    assert struct.unpack_from("<I", data, pos)[0] == pydata.checksum(data[:pos])
    # sections: page-aligned, in order, zeros between, the file ends with the last one
    (o0, n0, r0, l0), (o1, n1, r1, l1), (o2, n2, r2, l2) = entries
    assert (o0, n0, r0, l0) == (4096, 3 * 12, 12, 0)
    assert (r1, l1, r2, l2) == (0, 1, 0, 1)
    assert o1 == align(o0 + n0)
    assert o2 == align(o1 + n1)
    assert o2 + n2 == len(data)
    assert data[size:o0] == bytes(o0 - size)
    assert data[o0 + n0 : o1] == bytes(o1 - o0 - n0)
    # fixed: the rows, C order, little-endian
    assert data[o0 : o0 + n0] == img.astype("<u2").tobytes()
    # indexed: offsets from 0, then the payload right after them
    offsets = np.frombuffer(data, "<u8", count=4, offset=o1)
    assert offsets.tolist() == [0, 1, 1, 1 + len("ünï".encode())]
    assert n1 == 8 * 4 + offsets[-1]
    assert data[o1 + 32 : o1 + n1] == "a".encode() + "ünï".encode()
    offsets = np.frombuffer(data, "<u8", count=4, offset=o2)
    payload = data[o2 + 32 : o2 + n2]
    assert n2 == 32 + len(payload) == 32 + offsets[-1]
    for i in range(3):
        blob = payload[offsets[i] : offsets[i + 1]]
        assert blob[:4] == b"PDCB"  # a codec blob per row
        np.testing.assert_array_equal(pydata.decode(blob), zs[i])


def test_bfloat16_is_stored_as_its_bits(tmp_path: Path) -> None:
    bits = np.array([0x3F80, 0xC000, 0x0001], np.uint16)  # 1.0, -2.0, the smallest subnormal
    with ShardWriter(tmp_path, {"b": Field("bfloat16", (3,))}, progress=False) as w:
        w.write({"b": bits})
    data = (tmp_path / "shard-00000.pds").read_bytes()
    assert data[4096:4102] == bytes([0x80, 0x3F, 0x00, 0xC0, 0x01, 0x00])


def test_header_encode_and_decode_round_trip() -> None:
    header = ShardHeader.plan(5, [("a", "fixed", 40, 8), ("bb", "indexed", 100, 0), ("c", "fixed", 0, 0)])
    assert [s.offset for s in header.sections] == [4096, 8192, 12288]
    assert header.file_nbytes == 12288
    encoded = header.encode()
    assert len(encoded) == header_nbytes(encoded) == 36 + 32 * 3 + 3 + 4 + 3
    assert decode_header(encoded, "x.pds", 12288) == header
    assert header.section("bb").end == 8192 + 100
    with pytest.raises(KeyError):
        header.section("nope")


def test_header_nbytes_of_a_short_prefix_is_zero() -> None:
    assert header_nbytes(b"PDSH") == 0


def test_decode_header_checks_the_file_size() -> None:
    encoded = ShardHeader.plan(1, [("a", "fixed", 4, 4)]).encode()
    with pytest.raises(CorruptDataError, match=r"shard 'x.pds': truncated or padded: header says 4100 bytes, file has 5000"):
        decode_header(encoded, "x.pds", 5000)


def test_a_header_longer_than_a_page_is_read_whole(tmp_path: Path) -> None:
    schema = {f"field_with_a_rather_long_name_{i:03d}": Field("uint8", ()) for i in range(150)}
    with ShardWriter(tmp_path, schema, progress=False) as w:
        w.write({name: i for i, name in enumerate(schema)})
    data = (tmp_path / "shard-00000.pds").read_bytes()
    assert header_nbytes(data) > PAGE
    for io in ("mmap", "read"):
        ds: Any = pydata.MemoryMappedDataset(tmp_path, io=io)
        sample = ds[0]
        assert [int(v) for v in sample.values()] == list(range(150))


def test_an_empty_fixed_section_takes_no_space(tmp_path: Path) -> None:
    schema = {"a": Field("int8", (0,)), "b": Field("int8", (2,))}
    with ShardWriter(tmp_path, schema, progress=False) as w:
        w.write({"a": np.zeros(0, np.int8), "b": np.array([1, 2], np.int8)})
    data = (tmp_path / "shard-00000.pds").read_bytes()
    header = decode_header(data, "s", len(data))
    assert header.section("a").offset == header.section("b").offset == 4096
    assert header.section("a").nbytes == 0
    assert len(data) == 4098
