"""pydata.format.batch_reader: batches in any order, out= buffers, errors, io="read" vs "mmap"."""

from __future__ import annotations

from pathlib import Path

from typing import Any

import numpy as np
import pytest

from pydata import FormatError

IO = pytest.mark.parametrize("io", ["mmap", "read"])


@pytest.fixture
def ds(make_dataset: Any) -> Any:
    data = make_dataset(29, shard_bytes=1800)
    assert len(data.shard_paths()) >= 4
    return data


def assert_batch_equal(got: dict[str, Any], want: dict[str, Any], schema: dict[str, Any]) -> None:
    assert list(got) == list(want)
    for name, value in want.items():
        field = schema[name]
        if isinstance(value, np.ndarray):
            assert isinstance(got[name], np.ndarray), name
            assert got[name].dtype == field.storage_dtype, name
            assert got[name].shape == value.shape, name
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        elif field.kind == "tensor":
            assert isinstance(got[name], list), name
            assert len(got[name]) == len(value), name
            for a, b in zip(got[name], value, strict=True):
                assert a.shape == b.shape, name
                assert a.dtype == b.dtype, name
                np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert got[name] == value, name


ORDERS = {
    "sorted": lambda n: np.arange(n),
    "reversed": lambda n: np.arange(n)[::-1],
    "shuffled_with_repeats": lambda n: np.random.default_rng(5).integers(0, n, 3 * n),
    "one_sample_many_times": lambda n: np.full(7, n // 2),
    "across_shard_ends": lambda n: np.array([n - 1, 0, n - 1, 1, n - 2]),
}


@pytest.mark.parametrize("order", list(ORDERS))
@IO
def test_read_batch_matches_the_reference(ds: Any, io: str, order: str) -> None:
    indices = ORDERS[order](len(ds))
    reader = ds.reader(io)
    assert reader.samples == len(ds)
    assert_batch_equal(reader.read_batch(indices), ds.batch(indices), ds.schema)


@IO
def test_indices_may_be_a_list_or_any_integer_array(ds: Any, io: str) -> None:
    reader = ds.reader(io)
    want = ds.batch([3, 1, 3])
    for indices in ([3, 1, 3], np.array([3, 1, 3], np.int32), np.array([3, 1, 3], np.uint64), (3, 1, 3)):
        assert_batch_equal(reader.read_batch(indices), want, ds.schema)


@IO
def test_an_empty_batch(ds: Any, io: str) -> None:
    batch = ds.reader(io).read_batch([])
    assert batch["image"].shape == (0, 3, 8, 8)
    assert batch["latent"].shape == (0, 4, 4, 4)
    assert batch["label"].shape == (0,)
    assert batch["var"] == []
    assert batch["text"] == []


@IO
def test_io_read_gives_the_same_batches_as_mmap(ds: Any, io: str) -> None:
    indices = np.random.default_rng(11).permutation(len(ds))[:17]
    other = "mmap" if io == "read" else "read"
    assert_batch_equal(ds.reader(io).read_batch(indices), ds.reader(other).read_batch(indices), ds.schema)


@IO
def test_a_field_subset_in_the_given_order(ds: Any, io: str) -> None:
    reader = ds.reader(io, fields=["text", "image", "var"])
    batch = reader.read_batch([4, 2])
    assert list(batch) == ["text", "image", "var"]
    assert_batch_equal(batch, ds.batch([4, 2], ["text", "image", "var"]), ds.schema)


def test_an_unknown_field_is_a_key_error_naming_it(ds: Any) -> None:
    with pytest.raises(KeyError, match=r"field 'nope' is not in the dataset; it has \['image', "):
        ds.reader(fields=["image", "nope"])


@IO
def test_threads_do_not_change_the_result(ds: Any, io: str) -> None:
    reader = ds.reader(io)
    indices = np.arange(len(ds))[::-1]
    assert_batch_equal(reader.read_batch(indices, threads=1), reader.read_batch(indices, threads=4), ds.schema)


# -- out= ------------------------------------------------------------------------------------------


@IO
def test_out_buffers_are_filled_in_place(ds: Any, io: str) -> None:
    reader = ds.reader(io)
    indices = [5, 0, 28, 5]
    out = reader.allocate(len(indices))
    assert set(out) == {"image", "label", "latent", "packed", "bf16"}  # the fixed-shape tensors
    for array in out.values():
        array.fill(0)
    batch = reader.read_batch(indices, out)
    for name, array in out.items():
        assert batch[name] is array, name
    assert_batch_equal(batch, ds.batch(indices), ds.schema)


@IO
def test_out_may_hold_some_fields_only(ds: Any, io: str) -> None:
    reader = ds.reader(io)
    image = np.zeros((2, 3, 8, 8), np.uint8)
    batch = reader.read_batch([1, 2], {"image": image})
    assert batch["image"] is image
    np.testing.assert_array_equal(image, ds.batch([1, 2])["image"])
    assert batch["latent"].shape == (2, 4, 4, 4)


def test_allocate_gives_the_batch_shapes_and_storage_dtypes(ds: Any) -> None:
    out = ds.reader().allocate(3)
    assert out["image"].shape == (3, 3, 8, 8)
    assert out["label"].shape == (3,)
    assert out["latent"].dtype == np.float16
    assert out["bf16"].dtype == np.uint16
    assert ds.reader().batch_shape("var", 3) is None
    assert ds.reader().batch_shape("blob", 3) is None


@pytest.mark.parametrize(
    ("name", "array", "match"),
    [
        ("image", np.zeros((3, 3, 8, 8), np.uint8), r"out\['image'\] must be a C-contiguous uint8 array of shape \(2, 3, 8, 8\), got uint8 \(3, 3, 8, 8\)"),
        ("image", np.zeros((2, 3, 8, 8), np.int8), r"out\['image'\] must be .* got int8"),
        ("latent", np.zeros((2, 4, 4, 4), np.float32), r"out\['latent'\] must be a C-contiguous float16 array"),
        ("bf16", np.zeros((2, 6), np.float16), r"out\['bf16'\] must be a C-contiguous uint16 array"),
        ("image", np.zeros((4, 3, 8, 8), np.uint8)[::2], r"out\['image'\] must be .*, not C-contiguous"),
        ("latent", np.zeros((2, 4, 4, 8), np.float16)[..., ::2], r"out\['latent'\] must be .*, not C-contiguous"),
    ],
)
@IO
def test_a_wrong_out_buffer_is_refused(ds: Any, io: str, name: str, array: Any, match: str) -> None:
    before = array.copy()
    with pytest.raises(FormatError, match=match):
        ds.reader(io).read_batch([0, 1], {name: array})
    np.testing.assert_array_equal(array, before)


# -- index errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("indices", "bad", "position"), [([0, 29, 1], 29, 1), ([3, 4, -1], -1, 2), ([100], 100, 0)])
@IO
def test_an_index_out_of_range_names_the_index_and_its_position(ds: Any, io: str, indices: list[int], bad: int,
                                                                 position: int) -> None:
    with pytest.raises(IndexError, match=rf"sample index {bad} \(position {position}\) is out of range for 29 samples"):
        ds.reader(io).read_batch(indices)


# -- single samples --------------------------------------------------------------------------------


@IO
def test_read_sample_equals_the_row_of_a_batch(ds: Any, io: str) -> None:
    reader = ds.reader(io)
    for index in (0, 7, 28, -1, -29):
        sample = reader.read_sample(index)
        want = ds.expected[index]
        for name, field in ds.schema.items():
            if field.kind == "tensor":
                assert isinstance(sample[name], np.ndarray), name
                assert sample[name].shape == np.shape(want[name]), name
                assert sample[name].dtype == field.storage_dtype, name
                np.testing.assert_array_equal(sample[name], want[name], err_msg=name)
            else:
                assert sample[name] == want[name], name


def test_read_sample_of_a_fixed_field_is_a_private_view_of_the_shard(ds: Any) -> None:
    reader = ds.reader("mmap")
    index = len(ds) - 2
    shard = int(np.searchsorted(reader.starts, index, side="right")) - 1
    assert shard > 0
    image = reader.read_sample(index)["image"]
    assert np.shares_memory(image, reader.shards[shard].fixed("image"))
    np.testing.assert_array_equal(image, ds.expected[index]["image"])
    path = reader.shards[shard].path
    before = Path(path).read_bytes()
    image += 1  # copy-on-write: stays in this process, never reaches the shard
    assert Path(path).read_bytes() == before


@pytest.mark.parametrize("index", [29, -30])
@IO
def test_read_sample_out_of_range(ds: Any, io: str, index: int) -> None:
    with pytest.raises(IndexError, match=rf"sample index {index} is out of range for 29 samples"):
        ds.reader(io).read_sample(index)


@IO
def test_a_dataset_without_samples(make_dataset: Any, io: str) -> None:
    ds = make_dataset(0)
    reader = ds.reader(io)
    assert reader.samples == 0
    assert reader.read_batch([])["text"] == []
    with pytest.raises(IndexError, match=r"sample index 0 \(position 0\) is out of range for 0 samples"):
        reader.read_batch([0])
