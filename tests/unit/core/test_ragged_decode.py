"""IndexedSections.decode_ragged: blobs of varying shape decoded back to back into one array.

The values must be every row's ``decode`` in order, the shapes each row's shape, and every
error must name the section and row at fault.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

import pydata
from pydata._core import IndexedSections, decode, encode

NAMES = ["train-00000.bin", "train-00001.bin"]


def _section(blobs: list[bytes]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    offsets = np.cumsum([0, *[len(b) for b in blobs]]).astype(np.uint64)
    return offsets, np.frombuffer(b"".join(blobs), np.uint8)


def _rows(ndim: int, n: int = 12, dtype: str = "float32", seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in rng.integers(0, 6, size=ndim)) for _ in range(n)]
    return [(rng.standard_normal(s) * 10).astype(dtype) for s in shapes]


def _sections(rows: list[np.ndarray], codec: str) -> tuple[IndexedSections, list[bytes]]:
    blobs = [encode(r, codec) for r in rows]
    return IndexedSections([_section(blobs[:5]), _section(blobs[5:])], names=NAMES), blobs


@pytest.mark.parametrize("codec", ["raw", "lz4", "shuffle+lz4", "int8", "fp8+lz4"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("threads", [None, 1, 3])
def test_values_are_the_rows_decoded_in_order(codec: str, ndim: int, threads: int | None) -> None:
    rows = _rows(ndim)
    sections, blobs = _sections(rows, codec)
    indices = np.array([11, 0, 5, 4, 4, 7, 2], np.int64)  # both sections, a repeat
    values, shapes = sections.decode_ragged(indices, np.dtype("float32"), threads=threads)
    expected = [decode(blobs[i]) for i in indices]
    assert values.dtype == np.float32 and values.ndim == 1
    assert shapes.dtype == np.int64 and shapes.shape == (len(indices), ndim)
    assert [tuple(s) for s in shapes.tolist()] == [e.shape for e in expected]
    np.testing.assert_array_equal(values, np.concatenate([e.ravel() for e in expected]))


def test_a_large_batch_decodes_on_several_threads_to_the_same_values() -> None:
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 50_000, int(rng.integers(100, 2001)), dtype=np.int32) for _ in range(300)]
    sections, _ = _sections(rows, "raw")
    indices = rng.permutation(300)
    one, _ = sections.decode_ragged(indices, np.dtype("int32"), threads=1)
    many, shapes = sections.decode_ragged(indices, np.dtype("int32"), threads=4)
    assert one.nbytes > 1 << 20  # past the single-thread threshold
    np.testing.assert_array_equal(many, one)
    np.testing.assert_array_equal(many, np.concatenate([rows[i] for i in indices]))
    assert shapes[:, 0].tolist() == [len(rows[i]) for i in indices]


def test_an_empty_batch_gives_empty_arrays() -> None:
    sections, _ = _sections(_rows(2), "raw")
    values, shapes = sections.decode_ragged(np.zeros(0, np.int64), np.dtype("float32"), ndim=2)
    assert values.shape == (0,) and shapes.shape == (0, 2)


def test_rows_of_another_rank_are_named() -> None:
    rows = _rows(1)
    rows[7] = rows[7].reshape(1, -1)
    sections, _ = _sections(rows, "raw")
    with pytest.raises(pydata.FormatError, match=r"section 1 \('train-00001.bin'\) row 2 has 2 dimension"):
        sections.decode_ragged([0, 7], np.dtype("float32"))
    with pytest.raises(pydata.FormatError, match="the field has 1"):
        sections.decode_ragged([7], np.dtype("float32"), ndim=1)


def test_another_dtype_is_named() -> None:
    sections, _ = _sections(_rows(1), "raw")
    with pytest.raises(pydata.FormatError, match=r"row 0.*float64.*float32"):
        sections.decode_ragged([0], np.dtype("float64"))


def test_a_damaged_blob_is_named_and_nothing_is_returned() -> None:
    rows = _rows(1, dtype="int16")
    blobs = [encode(r, "lz4") for r in rows]
    offsets, payload = _section(blobs)
    damaged = payload.copy()
    damaged[int(offsets[3]) + 2] ^= 0xFF  # inside row 3's header
    sections = IndexedSections([(offsets, damaged)], names=["a.bin"])
    with pytest.raises(pydata.CorruptDataError, match=r"section 0 \('a.bin'\) row 3"):
        sections.decode_ragged([1, 3], np.dtype("int16"))
    with pytest.raises(IndexError, match="index 40"):
        sections.decode_ragged([1, 40], np.dtype("int16"))
