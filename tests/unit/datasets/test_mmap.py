"""pydata.datasets.mmap: MemoryMappedDataset as a torch map-style dataset."""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

import pydata
from pydata import MemoryMappedDataset
from pydata.datasets.batch import SampleBatch

IO = pytest.mark.parametrize("io", ["mmap", "read"])


@pytest.fixture
def data(make_dataset: Any) -> Any:
    ds = make_dataset(23, shard_bytes=1800)
    assert len(ds.shard_paths()) >= 3
    return ds


def as_numpy(field: Any, value: Any) -> Any:
    """A tensor's values as the reference stores them (bfloat16 as uint16 bits)."""
    if field.dtype == "bfloat16":
        assert value.dtype == torch.bfloat16
        return value.view(torch.int16).numpy().view(np.uint16)
    return value.numpy()


def assert_sample_equal(sample: dict[str, Any], want: dict[str, Any], schema: dict[str, Any]) -> None:
    assert list(sample) == list(want)
    for name, value in want.items():
        field = schema[name]
        if field.kind == "tensor":
            assert isinstance(sample[name], torch.Tensor), name
            np.testing.assert_array_equal(as_numpy(field, sample[name]), value, err_msg=name)
            assert tuple(sample[name].shape) == np.shape(value), name
        else:
            assert sample[name] == value, name


def test_len_schema_and_repr(data: Any) -> None:
    ds = MemoryMappedDataset(data.path)
    assert len(ds) == 23
    assert ds.schema == data.schema
    assert repr(ds).startswith(f"MemoryMappedDataset('{data.path}', samples=23, fields=['image', ")
    assert "io='mmap'" in repr(ds)
    assert pydata.MemoryMappedDataset is MemoryMappedDataset


@IO
def test_getitem_returns_every_field_as_torch(data: Any, io: str) -> None:
    ds = MemoryMappedDataset(data.path, io=io)
    for index in (0, 9, 22):
        assert_sample_equal(ds[index], data.expected[index], data.schema)
    sample = ds[4]
    assert sample["label"].shape == ()
    assert sample["label"].dtype == torch.int64
    assert sample["bf16"].dtype == torch.bfloat16
    assert sample["latent"].dtype == torch.float16
    assert isinstance(sample["var"], torch.Tensor)
    assert isinstance(sample["blob"], bytes)
    assert isinstance(sample["text"], str)


@IO
def test_negative_indices_count_from_the_end(data: Any, io: str) -> None:
    ds = MemoryMappedDataset(data.path, io=io)
    assert_sample_equal(ds[-1], data.expected[22], data.schema)
    assert_sample_equal(ds[-23], data.expected[0], data.schema)
    with pytest.raises(IndexError, match=r"sample index -24 is out of range for 23 samples"):
        ds[-24]
    with pytest.raises(IndexError, match=r"sample index 23 is out of range"):
        ds[23]


def test_getitem_is_zero_copy_for_fixed_raw_fields(data: Any) -> None:
    ds = MemoryMappedDataset(data.path)
    index = 21
    shard = int(np.searchsorted(ds.reader.starts, index, side="right")) - 1
    assert shard > 0
    mapped = ds.reader.shards[shard].mapped
    assert mapped is not None
    whole = mapped.view(0, mapped.size)
    begin = whole.__array_interface__["data"][0]
    for name in ("image", "label", "bf16"):
        tensor = ds[index][name]
        assert begin <= tensor.data_ptr() < begin + mapped.size, name
        assert tensor.data_ptr() + tensor.numel() * tensor.element_size() <= begin + mapped.size, name
    view = ds.reader.read_sample(index)["image"]
    assert np.shares_memory(view, whole)


def test_zero_copy_tensors_keep_the_mapping_alive(data: Any) -> None:
    ds = MemoryMappedDataset(data.path)
    image = ds[3]["image"]
    want = image.clone()
    del ds
    import gc

    gc.collect()
    assert torch.equal(image, want)


# -- batches ---------------------------------------------------------------------------------------


@IO
def test_getitems_returns_a_sample_batch_equal_to_the_reference(data: Any, io: str) -> None:
    ds = MemoryMappedDataset(data.path, io=io)
    indices = [7, 0, 22, 7, 13]
    batch = ds.__getitems__(indices)
    assert isinstance(batch, SampleBatch)
    assert len(batch) == 5
    want = data.batch(indices)
    for name, field in data.schema.items():
        got = batch.batch[name]
        if isinstance(want[name], np.ndarray):
            assert isinstance(got, torch.Tensor), name
            np.testing.assert_array_equal(as_numpy(field, got), want[name], err_msg=name)
        elif field.kind == "tensor":
            assert all(isinstance(t, torch.Tensor) for t in got), name
            for t, w in zip(got, want[name], strict=True):
                np.testing.assert_array_equal(t.numpy(), w, err_msg=name)
        else:
            assert got == want[name], name
    assert_sample_equal(batch[2], data.expected[22], data.schema)
    assert len(batch[1:3]) == 2


def test_default_collate_of_a_sample_batch_equals_pydata_collate(data: Any) -> None:
    fixed = [name for name, field in data.schema.items() if field.kind == "tensor" and field.shape is not None]
    ds = MemoryMappedDataset(data.path, fields=fixed)
    batch = ds.__getitems__([3, 1, 4, 1, 5])
    fast = pydata.collate(batch)
    slow = default_collate(batch)
    assert fast is batch.batch
    assert list(slow) == list(fast) == fixed
    for name in fixed:
        assert slow[name].dtype == fast[name].dtype, name
        assert torch.equal(slow[name], fast[name]), name


def test_collate_of_plain_samples_is_default_collate(data: Any) -> None:
    ds = MemoryMappedDataset(data.path, fields=["image", "label"])
    samples = [ds[0], ds[1]]
    out = pydata.collate(samples)
    assert torch.equal(out["label"], torch.stack([samples[0]["label"], samples[1]["label"]]))


@IO
def test_read_batch_fills_out_tensors_in_place(data: Any, io: str) -> None:
    ds = MemoryMappedDataset(data.path, io=io)
    out = {"image": torch.zeros(3, 3, 8, 8, dtype=torch.uint8), "bf16": torch.zeros(3, 6, dtype=torch.bfloat16),
           "latent": torch.zeros(3, 4, 4, 4, dtype=torch.float16)}
    batch = ds.read_batch([2, 2, 20], out=out)
    want = data.batch([2, 2, 20])
    for name, tensor in out.items():
        assert batch[name].data_ptr() == tensor.data_ptr(), name
        np.testing.assert_array_equal(as_numpy(data.schema[name], tensor), want[name], err_msg=name)


def test_read_batch_refuses_a_non_contiguous_out_tensor(data: Any) -> None:
    ds = MemoryMappedDataset(data.path)
    out = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(pydata.FormatError, match=r"out\['image'\] .*not C-contiguous"):
        ds.read_batch([0, 1], out={"image": out[::2]})


def test_torch_dataloader_with_batched_fetch(data: Any) -> None:
    ds = MemoryMappedDataset(data.path, fields=["image", "label"])
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=pydata.collate)
    batches = list(loader)
    assert [len(b["label"]) for b in batches] == [5, 5, 5, 5, 3]
    labels = torch.cat([b["label"] for b in batches])
    np.testing.assert_array_equal(labels.numpy(), data.batch(range(23))["label"])


# -- fields, pickling, verify ----------------------------------------------------------------------


@IO
def test_a_field_subset(data: Any, io: str) -> None:
    ds = MemoryMappedDataset(data.path, fields=["text", "latent"], io=io)
    assert list(ds.schema) == ["text", "latent"]
    sample = ds[5]
    assert list(sample) == ["text", "latent"]
    assert sample["text"] == data.expected[5]["text"]
    assert list(ds.__getitems__([1, 2]).batch) == ["text", "latent"]


def test_an_unknown_field_is_named(data: Any) -> None:
    with pytest.raises(KeyError, match=r"field 'nope' is not in the dataset"):
        MemoryMappedDataset(data.path, fields=["nope"])


@IO
def test_pickling_is_small_and_the_copy_reads_the_same(make_dataset: Any, io: str) -> None:
    data = make_dataset(3000, {"x": pydata.Field("uint8", (4,)), "y": pydata.Field("int64", ())},
                        shard_bytes=8000)
    ds = MemoryMappedDataset(data.path, io=io)
    ds[0]  # opened
    blob = pickle.dumps(ds)
    assert len(blob) < 2048
    copy = pickle.loads(blob)
    assert len(copy) == 3000
    assert copy.io == io
    indices = [2999, 0, 1234]
    for name in ("x", "y"):
        assert torch.equal(copy.read_batch(indices)[name], ds.read_batch(indices)[name])


def test_verify_passes_on_a_good_dataset_quietly(data: Any, capsys: pytest.CaptureFixture[str]) -> None:
    MemoryMappedDataset(data.path).verify(progress=False)
    MemoryMappedDataset(data.path, io="read").verify(progress=False)
    assert capsys.readouterr().err == ""


def test_prefault_touches_every_page_of_every_shard(data: Any) -> None:
    ds = MemoryMappedDataset(data.path)
    page = os.sysconf("SC_PAGE_SIZE")
    pages = sum(-(-p.stat().st_size // page) for p in data.shard_paths())
    assert ds.prefault() == pages
    assert all(s.mapped.resident_bytes() == s.mapped.size for s in ds.reader.shards)
    assert MemoryMappedDataset(data.path, io="read").prefault() == 0


def test_verify_names_a_damaged_shard(data: Any) -> None:
    path = data.shard_paths()[2]
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    ds = MemoryMappedDataset(data.path)
    with pytest.raises(pydata.CorruptDataError, match=r"checksum mismatch") as info:
        ds.verify(progress=False)
    assert str(path) in str(info.value)


def test_a_missing_dataset(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match=r"no dataset at"):
        MemoryMappedDataset(tmp_path)
