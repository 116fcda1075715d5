"""Damaged datasets: one test per error variant, each asserting the class and that the message
names the file (and the field where there is one).

Shards are damaged through the layout of docs/format.md ("Shard file"): the 32-byte prefix, one
32-byte entry per field, the names, then the header CRC-32C. Where a test is about one field of
the header, it re-seals the CRC so that only that field is wrong.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata
from pydata import CorruptDataError, FormatError, MemoryMappedDataset
from pydata.format.shard import decode_header

PREFIX = struct.Struct("<4sHHQIxxxxQ")  # magic, version, fields, samples, header bytes, file bytes
ENTRY = struct.Struct("<QQQB7x")  # section offset, section bytes, row bytes, layout


@pytest.fixture
def dataset(make_dataset: Any) -> Any:
    ds = make_dataset(16, shard_bytes=2500)
    assert len(ds.shard_paths()) >= 3
    return ds


def shard(ds: Any, k: int = 1) -> Path:
    return ds.shard_paths()[k]


def first_sample(ds: Any, k: int) -> int:
    return sum(s.samples for s in pydata.read_index(ds.path).shards[:k])


def section(path: Path, name: str) -> Any:
    data = path.read_bytes()
    return decode_header(data, str(path), len(data)).section(name)


def patch(path: Path, offset: int, new: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(new)


def flip(path: Path, offset: int) -> None:
    patch(path, offset, bytes([path.read_bytes()[offset] ^ 0x5A]))


def reseal(path: Path) -> None:
    """Recomputes the header CRC after a deliberate change to the header."""
    data = path.read_bytes()
    size = PREFIX.unpack_from(data)[4]
    patch(path, size - 4, struct.pack("<I", pydata.checksum(data[: size - 4])))


def rewrite_prefix(path: Path, **changes: Any) -> None:
    names = ["magic", "version", "fields", "samples", "header_nbytes", "file_nbytes"]
    values = dict(zip(names, PREFIX.unpack_from(path.read_bytes()), strict=True))
    values.update(changes)
    patch(path, 0, PREFIX.pack(*(values[n] for n in names)))
    reseal(path)


def rewrite_entry(path: Path, position: int, **changes: Any) -> None:
    names = ["offset", "nbytes", "row_nbytes", "layout"]
    at = PREFIX.size + ENTRY.size * position
    values = dict(zip(names, ENTRY.unpack_from(path.read_bytes(), at), strict=True))
    values.update(changes)
    patch(path, at, ENTRY.pack(*(values[n] for n in names)))
    reseal(path)


IO = pytest.mark.parametrize("io", ["mmap", "read"])


# -- whole-file checksum ---------------------------------------------------------------------------


def test_a_good_dataset_verifies(dataset: Any) -> None:
    MemoryMappedDataset(dataset.path).verify(progress=False)


@pytest.mark.parametrize("where", ["padding", "fixed", "payload", "last"])
@IO
def test_a_flipped_byte_fails_verify_naming_the_shard(dataset: Any, io: str, where: str) -> None:
    path = shard(dataset)
    offset = {
        "padding": 2000,  # zeros between the header and the first section
        "fixed": section(path, "image").offset + 5,
        "payload": section(path, "blob").end - 1,
        "last": path.stat().st_size - 1,
    }[where]
    flip(path, offset)
    ds = MemoryMappedDataset(dataset.path, io=io)  # opening does not read every byte
    with pytest.raises(CorruptDataError, match=r"checksum mismatch: CRC-32C 0x[0-9a-f]{8}, the index says") as info:
        ds.verify(progress=False)
    assert f"shard '{path}'" in str(info.value)


# -- opening: size, magic, version, header -----------------------------------------------------


@pytest.mark.parametrize("change", ["truncate", "extend"])
@IO
def test_a_shard_of_the_wrong_size_fails_to_open(dataset: Any, io: str, change: str) -> None:
    path = shard(dataset)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if change == "truncate":
            f.truncate(size - 100)
        else:
            f.seek(0, 2)
            f.write(b"\0" * 10)
    new = size - 100 if change == "truncate" else size + 10
    with pytest.raises(CorruptDataError, match=rf"truncated or altered: the index says {size} bytes, the file has {new}") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_missing_shard_is_named(dataset: Any, io: str) -> None:
    path = shard(dataset)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"is missing \(listed in the dataset's index\)") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)
    assert info.value.filename == str(path)


@IO
def test_bad_magic(dataset: Any, io: str) -> None:
    path = shard(dataset)
    patch(path, 0, b"PK\x03\x04")
    with pytest.raises(CorruptDataError, match=r"bad magic b'PK\\x03\\x04', expected b'PDSH' \(not a pydata shard\)") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_an_unknown_version_is_a_format_error(dataset: Any, io: str) -> None:
    path = shard(dataset)
    rewrite_prefix(path, version=2)
    with pytest.raises(FormatError, match=r"format version 2, this pydata reads version 1") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)
    assert not isinstance(info.value, CorruptDataError)


@pytest.mark.parametrize("offset", [8, 6, PREFIX.size + 3, PREFIX.size + ENTRY.size * 9 + 3])
@IO
def test_a_damaged_header_byte_fails_the_header_checksum(dataset: Any, io: str, offset: int) -> None:
    path = shard(dataset)
    flip(path, offset)  # sample count, field count, an entry, a field name
    with pytest.raises(CorruptDataError, match=r"header checksum mismatch \(the header is damaged\)") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_header_size_past_what_was_read(dataset: Any, io: str) -> None:
    path = shard(dataset)
    patch(path, 16, struct.pack("<I", 1 << 30))
    with pytest.raises(CorruptDataError, match=r"header of 1073741824 bytes, but only 4096 bytes were read") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_file_too_short_for_a_header(dataset: Any, io: str) -> None:
    path = shard(dataset)
    path.write_bytes(b"PDSH\1\0")
    index = json.loads((dataset.path / "index.json").read_text())
    index["shards"][1]["bytes"] = 6
    (dataset.path / "index.json").write_text(json.dumps(index))
    with pytest.raises(CorruptDataError, match=r"6 bytes is too short for a header \(at least 32\)") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_header_whose_file_size_disagrees(dataset: Any, io: str) -> None:
    path = shard(dataset)
    size = path.stat().st_size
    rewrite_prefix(path, file_nbytes=size + 4096)
    with pytest.raises(CorruptDataError, match=rf"truncated or padded: header says {size + 4096} bytes, file has {size}") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_section_past_the_end_names_the_field(dataset: Any, io: str) -> None:
    path = shard(dataset)
    rewrite_entry(path, 2, nbytes=10 * path.stat().st_size)  # "latent"
    with pytest.raises(CorruptDataError, match=r"field 'latent': bad section \(offset \d+, \d+ bytes, layout code 1\)") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_an_unaligned_section_names_the_field(dataset: Any, io: str) -> None:
    path = shard(dataset)
    rewrite_entry(path, 0, offset=section(path, "image").offset + 8)
    with pytest.raises(CorruptDataError, match=r"field 'image': bad section") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_an_unknown_layout_code_names_the_field(dataset: Any, io: str) -> None:
    path = shard(dataset)
    rewrite_entry(path, 7, layout=9)  # "blob"
    with pytest.raises(CorruptDataError, match=r"field 'blob': bad section .* layout code 9") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_row_size_that_disagrees_with_the_schema_names_the_field(dataset: Any, io: str) -> None:
    path = shard(dataset)
    rewrite_entry(path, 1, row_nbytes=4)  # "label" is int64
    with pytest.raises(CorruptDataError, match=r"field 'label': section of \d+ bytes with rows of 4, expected \d+ bytes of 8") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_layout_that_disagrees_with_the_schema_names_the_field(dataset: Any, io: str) -> None:
    path = shard(dataset)
    rewrite_entry(path, 0, layout=1)  # "image" is fixed
    with pytest.raises(FormatError, match=r"field 'image' is indexed, the schema says fixed") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_a_sample_count_that_disagrees_with_the_index(dataset: Any, io: str) -> None:
    path = shard(dataset)
    stored = pydata.read_index(dataset.path).shards[1].samples
    rewrite_prefix(path, samples=stored + 1)
    with pytest.raises(CorruptDataError, match=rf"holds {stored + 1} samples, the index says {stored}") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


@IO
def test_fields_that_differ_from_the_index(dataset: Any, io: str) -> None:
    path = shard(dataset)
    data = path.read_bytes()
    at = data.index(b"\x05\x00image")  # the first name: uint16 length, then UTF-8
    patch(path, at + 2, b"imago")
    reseal(path)
    with pytest.raises(FormatError, match=r"fields \['imago', .*\] differ from the index's schema \['image', ") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


# -- indexed sections ------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["first", "decreasing", "past_the_end"])
@IO
def test_a_corrupt_offsets_table_names_the_field(dataset: Any, io: str, damage: str) -> None:
    path = shard(dataset)
    where = section(path, "text")
    offsets = np.frombuffer(path.read_bytes(), "<u8", count=3, offset=where.offset)
    samples = pydata.read_index(dataset.path).shards[1].samples
    if damage == "first":
        patch(path, where.offset, struct.pack("<Q", 1))
    elif damage == "decreasing":  # rows are never empty here, so offsets[2] > offsets[1]
        patch(path, where.offset + 8, struct.pack("<Q", int(offsets[2]) + 1))
    else:  # the last entry, the payload's size
        patch(path, where.offset + 8 * samples, struct.pack("<Q", 1 << 40))
    with pytest.raises(CorruptDataError, match=r"field 'text': corrupt offsets table") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert f"shard '{path}'" in str(info.value)


def damage_row(ds: Any, field: str, k: int = 1, row: int = 1) -> int:
    """Breaks the blob of ``row`` in shard ``k`` (its magic); returns the sample's global index."""
    path = shard(ds, k)
    where = section(path, field)
    samples = pydata.read_index(ds.path).shards[k].samples
    offsets = np.frombuffer(path.read_bytes(), "<u8", count=samples + 1, offset=where.offset)
    flip(path, where.offset + 8 * (samples + 1) + int(offsets[row]))
    return first_sample(ds, k) + row


@pytest.mark.parametrize("field", ["latent", "packed", "var"])
@IO
def test_a_damaged_compressed_row_names_shard_and_field_when_read(dataset: Any, io: str, field: str) -> None:
    bad = damage_row(dataset, field)
    ds = MemoryMappedDataset(dataset.path, io=io)
    ds.read_batch([0, bad - 1, bad + 1])  # other rows still read
    with pytest.raises(CorruptDataError, match=r"codec blob: bad magic") as info:
        ds.read_batch([0, 3, bad])
    message = str(info.value)
    assert str(shard(dataset)) in message
    assert f"field '{field}'" in message
    assert "row 1" in message


@pytest.mark.parametrize("field", ["latent", "var"])
@IO
def test_a_damaged_compressed_row_names_shard_and_field_in_getitem(dataset: Any, io: str, field: str) -> None:
    bad = damage_row(dataset, field)
    ds = MemoryMappedDataset(dataset.path, io=io)
    with pytest.raises(CorruptDataError, match=r"codec blob") as info:
        ds[bad]
    assert str(shard(dataset)) in str(info.value)
    assert f"field '{field}'" in str(info.value)


@IO
def test_a_str_row_that_is_not_utf8_is_corrupt_data(dataset: Any, io: str) -> None:
    path = shard(dataset)
    where = section(path, "text")
    samples = pydata.read_index(dataset.path).shards[1].samples
    patch(path, where.offset + 8 * (samples + 1), b"\xff")  # the first byte of row 0
    ds = MemoryMappedDataset(dataset.path, io=io)
    with pytest.raises(CorruptDataError, match=r"field 'text' row 0 .*can't decode byte 0xff") as info:
        ds.read_batch([first_sample(dataset, 1)])
    assert f"shard '{path}'" in str(info.value)


# -- index.json ------------------------------------------------------------------------------------


@IO
def test_a_truncated_index_is_a_format_error_naming_it(dataset: Any, io: str) -> None:
    index = dataset.path / "index.json"
    index.write_bytes(index.read_bytes()[:-40])
    with pytest.raises(FormatError, match=r"index.json: not valid JSON") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert str(info.value).startswith(str(index))


@IO
def test_a_missing_index_is_file_not_found(dataset: Any, io: str) -> None:
    (dataset.path / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"a dataset whose writer did not finish has no index") as info:
        MemoryMappedDataset(dataset.path, io=io)
    assert info.value.filename == str(dataset.path / "index.json")
