"""MappedFile: zero-copy views, lifetime, advice, residency and every error path."""

from __future__ import annotations

import gc
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata
from pydata._core import MappedFile


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    payload = np.random.default_rng(0).integers(0, 256, 3 * 4096 + 100, dtype=np.uint8).tobytes()
    path = tmp_path / "data.bin"
    path.write_bytes(payload)
    return path, payload


def test_view_matches_file_bytes(data_file: tuple[Path, bytes]) -> None:
    path, payload = data_file
    mapped = MappedFile(path)
    assert mapped.size == len(payload) == len(mapped)
    assert mapped.path == str(path)
    assert mapped.view().tobytes() == payload
    assert mapped.view(100, 50).tobytes() == payload[100:150]


def test_typed_view_with_shape(data_file: tuple[Path, bytes]) -> None:
    path, payload = data_file
    view = MappedFile(path).view(8, dtype="<u4", shape=(4, 3))
    expected = np.frombuffer(payload, dtype="<u4", count=12, offset=8).reshape(4, 3)
    assert view.shape == (4, 3)
    assert view.dtype == np.dtype("<u4")
    np.testing.assert_array_equal(view, expected)


def test_view_is_zero_copy_and_read_only(data_file: tuple[Path, bytes]) -> None:
    path, _ = data_file
    mapped = MappedFile(path)
    a = mapped.view(0, 64)
    b = mapped.view(32, 32)
    assert np.shares_memory(a, b)
    assert not a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1


def test_writable_view_changes_stay_private(data_file: tuple[Path, bytes]) -> None:
    path, content = data_file
    mapped = pydata.MappedFile(path)
    assert mapped.copy_on_write
    view = mapped.view(0, 16, writable=True)
    view[:] = 0xAB
    assert (view == 0xAB).all()
    assert path.read_bytes() == content  # the file never changes
    other = pydata.MappedFile(path)
    assert other.view(0, 16).tobytes() == content[:16]  # nor does another mapping of it


def test_view_keeps_the_mapping_alive(
    data_file: tuple[Path, bytes], gc_tester: Callable[[Any], None]
) -> None:
    path, payload = data_file
    mapped = MappedFile(path)
    view = mapped.view(4096, 16)
    gc_tester(mapped)
    del mapped
    gc.collect()
    # The view's base is the MappedFile, so the memory is still mapped and readable.
    assert view.tobytes() == payload[4096 : 4096 + 16]
    assert isinstance(view.base, MappedFile)
    del view  # gc_tester asserts at teardown that the MappedFile is now freed


def test_pickle_reopens_by_path(data_file: tuple[Path, bytes]) -> None:
    path, payload = data_file
    clone = pickle.loads(pickle.dumps(MappedFile(path)))
    assert clone.path == str(path)
    assert clone.view(0, 10).tobytes() == payload[:10]


@pytest.mark.parametrize("advice", ["normal", "sequential", "random", "willneed", "dontneed"])
def test_advise_accepts_every_advice(data_file: tuple[Path, bytes], advice: str) -> None:
    path, payload = data_file
    mapped = MappedFile(path)
    mapped.advise(advice, 10, 5000)  # an unaligned range is widened to pages
    assert mapped.view(10, 10).tobytes() == payload[10:20]


def test_unknown_advice_names_the_choices(data_file: tuple[Path, bytes]) -> None:
    with pytest.raises(ValueError, match="willneed"):
        MappedFile(data_file[0]).advise("soon")


def test_prefault_makes_pages_resident(data_file: tuple[Path, bytes]) -> None:
    path, payload = data_file
    mapped = MappedFile(path)
    pages = mapped.prefault()
    assert pages == (len(payload) + 4095) // 4096
    assert mapped.resident_bytes() == len(payload)
    assert mapped.resident_bytes(100, 200) == 200


def test_resident_bytes_falls_after_dropping_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "cold.bin"
    path.write_bytes(os.urandom(1 << 20))
    with path.open("rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    mapped = MappedFile(path)
    before = mapped.resident_bytes()
    mapped.prefault()
    assert mapped.resident_bytes() == 1 << 20
    assert before < 1 << 20


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError) as info:
        MappedFile(missing)
    assert info.value.filename == str(missing)
    assert "open" in str(info.value)


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        MappedFile(tmp_path)


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with pytest.raises(pydata.CorruptDataError, match=r"empty\.bin.*empty"):
        MappedFile(empty)


def test_too_short_file_is_corrupt(data_file: tuple[Path, bytes]) -> None:
    path, payload = data_file
    with pytest.raises(pydata.CorruptDataError) as info:
        MappedFile(path, min_size=len(payload) + 1)
    message = str(info.value)
    assert str(path) in message
    assert str(len(payload)) in message
    assert str(len(payload) + 1) in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("offset", "length"), [(0, 12389), (12388, 2), (20000, 1), (2**63, 1)])
def test_out_of_range_view_names_file_and_range(
    data_file: tuple[Path, bytes], offset: int, length: int
) -> None:
    path, payload = data_file
    with pytest.raises(IndexError) as info:
        MappedFile(path).view(offset, length)
    message = str(info.value)
    assert str(path) in message
    assert f"[{offset}, " in message
    assert str(len(payload)) in message


def test_out_of_range_advice_and_residency(data_file: tuple[Path, bytes]) -> None:
    path, payload = data_file
    mapped = MappedFile(path)
    with pytest.raises(IndexError, match="past its end"):
        mapped.advise("willneed", len(payload), 1)
    with pytest.raises(IndexError, match="past its end"):
        mapped.resident_bytes(0, len(payload) + 1)


def test_shape_and_length_must_agree(data_file: tuple[Path, bytes]) -> None:
    mapped = MappedFile(data_file[0])
    with pytest.raises(pydata.FormatError, match="shape needs 24 bytes"):
        mapped.view(0, 20, dtype="<f4", shape=(2, 3))
    with pytest.raises(pydata.FormatError, match="whole number"):
        mapped.view(0, 7, dtype="<f4")
