"""pydata.format.reader: ShardReader's sections and views (damage is in test_corruption.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pydata import Field, read_index
from pydata.format import ShardReader
from pydata.format.reader import split_rows


@pytest.fixture
def shard(make_dataset: Any) -> Any:
    ds = make_dataset(6, shard_bytes=1 << 20)
    index = read_index(ds.path)
    assert len(index.shards) == 1
    return ds, index


def open_shard(shard: Any, io: str = "mmap") -> ShardReader:
    ds, index = shard
    return ShardReader(ds.path / index.shards[0].file, index.shards[0], index.schema, io=io)


def test_io_must_be_mmap_or_read(shard: Any) -> None:
    with pytest.raises(ValueError, match=r"io must be 'mmap' or 'read', got 'nfs'"):
        open_shard(shard, "nfs")


def test_fixed_is_a_copy_on_write_view_of_the_mapped_file(shard: Any) -> None:
    ds, _ = shard
    reader = open_shard(shard)
    assert reader.samples == 6
    image = reader.fixed("image")
    assert image.shape == (6, 3, 8, 8)
    assert reader.mapped is not None and image.flags.writeable == reader.mapped.copy_on_write
    np.testing.assert_array_equal(image, np.stack([s["image"] for s in ds.samples]))
    assert reader.mapped is not None
    assert np.shares_memory(image, reader.mapped.view(0, reader.mapped.size))
    bf16 = reader.fixed("bf16")
    assert bf16.dtype == np.dtype("<u2")


@pytest.mark.parametrize("io", ["mmap", "read"])
def test_indexed_gives_the_offsets_and_where_the_payload_starts(shard: Any, io: str) -> None:
    ds, _ = shard
    reader = open_shard(shard, io)
    view = reader.indexed("blob")
    lengths = [len(s["blob"]) for s in ds.samples]
    assert view.offsets.tolist() == np.concatenate([[0], np.cumsum(lengths)]).tolist()
    section = reader.section("blob")
    assert view.payload_offset == section.offset + 8 * 7
    assert (view.payload is not None) == (io == "mmap")
    assert reader.indexed("blob") is view  # cached


@pytest.mark.parametrize("io", ["mmap", "read"])
def test_verify_close_and_repr(shard: Any, io: str) -> None:
    reader = open_shard(shard, io)
    reader.verify()
    assert repr(reader) == f"ShardReader('{reader.path}', samples=6, io={io!r})"
    reader.close()
    assert reader.mapped is None


def test_split_rows() -> None:
    offsets = np.array([0, 2, 2, 5], np.uint64)
    payload = np.frombuffer(b"abcde", np.uint8)
    assert split_rows(Field("bytes"), offsets, payload) == [b"ab", b"", b"cde"]
    assert split_rows(Field("str"), offsets, payload) == ["ab", "", "cde"]
