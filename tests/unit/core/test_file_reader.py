"""FileReader: byte ranges of several files read with pread, back to back, equal to slicing.

Every argument is checked before the first read, so a bad batch leaves ``out`` untouched; each
error names the file, range or id at fault.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

import pydata
from pydata._core import FileReader

Files = tuple[list[Path], list[npt.NDArray[np.uint8]]]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    """Three files of random bytes: 1.5 MiB, 3000 bytes and empty."""
    rng = np.random.default_rng(0)
    contents = [rng.integers(0, 256, n, dtype=np.uint8) for n in (3 << 19, 3000, 0)]
    paths = [tmp_path / f"shard-{i}.bin" for i in range(len(contents))]
    for path, data in zip(paths, contents, strict=True):
        path.write_bytes(data.tobytes())
    return paths, contents


def _random_ranges(
    contents: list[npt.NDArray[np.uint8]], count: int, seed: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, len(contents), count).astype(np.int32)
    offsets = np.empty(count, np.uint64)
    lengths = np.empty(count, np.uint64)
    for k, i in enumerate(ids):
        size = len(contents[i])
        start = int(rng.integers(0, size + 1))
        kind = rng.integers(0, 4)
        length = 0 if kind == 0 else int(rng.integers(0, size - start + 1))
        offsets[k], lengths[k] = start, length
    return ids, offsets, lengths


def _expected(
    contents: list[npt.NDArray[np.uint8]],
    ids: npt.NDArray[np.int32],
    offsets: npt.NDArray[np.uint64],
    lengths: npt.NDArray[np.uint64],
) -> bytes:
    return b"".join(
        contents[i][int(o) : int(o) + int(n)].tobytes()
        for i, o, n in zip(ids, offsets, lengths, strict=True)
    )


@pytest.mark.parametrize("threads", [None, 1, 2, 16])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_read_equals_numpy_slicing(files: Files, threads: int | None, seed: int) -> None:
    paths, contents = files
    ids, offsets, lengths = _random_ranges(contents, 200, seed)
    # Zero-length ranges, including at a file's very end and in the empty file.
    ids = np.concatenate([ids, np.array([0, 1, 2], np.int32)])
    offsets = np.concatenate([offsets, np.array([len(contents[0]), 3000, 0], np.uint64)])
    lengths = np.concatenate([lengths, np.zeros(3, np.uint64)])
    expected = _expected(contents, ids, offsets, lengths)
    out = np.full(len(expected) + 10, 0xAB, np.uint8)
    with FileReader(paths) as reader:
        assert reader.read(ids, offsets, lengths, out, threads=threads) == len(expected)
    assert out[: len(expected)].tobytes() == expected
    assert (out[len(expected) :] == 0xAB).all(), "nothing is written past the total"


@pytest.mark.parametrize("threads", [1, 3, 16])
def test_one_large_range_is_split_and_correct(files: Files, threads: int) -> None:
    paths, contents = files
    out = np.empty(len(contents[0]) - 5, np.uint8)
    with FileReader(paths) as reader:
        reader.read([0], [5], [len(out)], out, threads=threads)
    np.testing.assert_array_equal(out, contents[0][5:])


def test_properties_len_repr_and_path_like(files: Files) -> None:
    paths, contents = files
    reader = FileReader([paths[0], str(paths[1]), paths[2]])
    assert reader.paths == [str(p) for p in paths]
    assert reader.sizes == [len(c) for c in contents]
    assert len(reader) == 3
    assert repr(reader) == f"FileReader(3 files, {sum(len(c) for c in contents)} bytes)"
    assert not reader.closed
    reader.close()
    assert reader.closed
    assert repr(reader).endswith(", closed)")
    assert len(FileReader([])) == 0
    assert FileReader(paths).read([], [], [], np.empty(0, np.uint8)) == 0


def test_reads_into_a_bytearray_and_a_torch_tensor(files: Files) -> None:
    paths, contents = files
    reader = FileReader(paths)
    buffer = bytearray(6)
    assert reader.read([1, 0], [10, 0], [2, 4], buffer) == 6
    assert bytes(buffer) == contents[1][10:12].tobytes() + contents[0][:4].tobytes()
    tensor = torch.zeros(100, dtype=torch.uint8)
    reader.read([1], [0], [100], tensor.numpy())
    assert torch.equal(tensor, torch.from_numpy(contents[1][:100].copy()))


def test_missing_file_is_file_not_found_and_closes_the_others(files: Files) -> None:
    paths, _ = files
    missing = paths[0].parent / "missing.bin"
    before = len(list(Path("/proc/self/fd").iterdir()))
    with pytest.raises(FileNotFoundError) as info:
        FileReader([paths[0], paths[1], missing])
    assert info.value.filename == str(missing)
    after = len(list(Path("/proc/self/fd").iterdir()))
    assert after == before, "the files opened before it are closed"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as info:
        FileReader([tmp_path])
    assert info.value.filename == str(tmp_path)


def test_range_past_the_end_names_the_file_and_reads_nothing(files: Files) -> None:
    paths, _ = files
    reader = FileReader(paths)
    out = np.full(64, 7, np.uint8)
    with pytest.raises(
        pydata.CorruptDataError,
        match=rf"file '{paths[1]}': range \[2990, 3001\) is past its end \(3000 bytes\)",
    ):
        reader.read([0, 1], [0, 2990], [4, 11], out)
    with pytest.raises(pydata.CorruptDataError, match=r"range \[1, 1\) is past its end \(0 bytes"):
        reader.read([2], [1], [0], out)
    with pytest.raises(pydata.CorruptDataError, match=r"range \[18446744073709551615, "):
        reader.read([1], [2**64 - 1], [2], out)
    assert (out == 7).all()


def test_file_truncated_after_open_names_the_file(files: Files) -> None:
    paths, contents = files
    reader = FileReader(paths)
    os.truncate(paths[0], 1000)  # the recorded size is now wrong
    out = np.empty(2000, np.uint8)
    with pytest.raises(pydata.CorruptDataError) as info:
        reader.read([0], [0], [2000], out)
    message = str(info.value)
    assert f"file '{paths[0]}': unexpected end of file at byte 1000" in message
    assert f"it was {len(contents[0])} bytes when opened" in message


def test_out_too_small_or_unequal_arrays_are_format_errors(files: Files) -> None:
    paths, _ = files
    reader = FileReader(paths)
    with pytest.raises(pydata.FormatError, match="destination is 5 bytes; the 2 ranges need 6"):
        reader.read([0, 1], [0, 0], [3, 3], np.empty(5, np.uint8))
    with pytest.raises(pydata.FormatError, match="equally long, got 2, 1 and 2 entries"):
        reader.read([0, 1], [0], [3, 3], np.empty(6, np.uint8))


def test_bad_file_id_is_an_index_error(files: Files) -> None:
    paths, _ = files
    reader = FileReader(paths)
    out = np.full(8, 7, np.uint8)
    for bad in (3, -1):
        with pytest.raises(
            IndexError, match=rf"file id {bad} \(position 1 in the batch\).* 3 file"
        ):
            reader.read([0, bad], [0, 0], [1, 1], out)
    assert (out == 7).all()


def test_argument_types_are_checked(files: Files) -> None:
    paths, _ = files
    reader = FileReader(paths)
    out = np.empty(8, np.uint8)
    with pytest.raises(TypeError, match="file_ids: expected integers"):
        reader.read(np.array([0.5]), [0], [1], out)
    with pytest.raises(ValueError, match="offsets: value -4 at position 1 is negative"):
        reader.read([0, 0], [0, -4], [1, 1], out)
    with pytest.raises(ValueError, match="lengths: expected a 1-D"):
        reader.read([0], [0], [[1]], out)
    frozen = np.empty(8, np.uint8)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        reader.read([0], [0], [1], frozen)
    with pytest.raises(ValueError, match="read-only"):
        reader.read([0], [0], [1], b"12345678")
    with pytest.raises(ValueError, match="C-contiguous"):
        reader.read([0], [0], [1], np.empty(16, np.uint8)[::2])
    with pytest.raises(TypeError):
        reader.read([0], [0], [1], [0] * 8)  # a list is never silently converted
    with pytest.raises(ValueError, match="threads must be >= 1"):
        reader.read([0], [0], [1], out, threads=0)


def test_closed_reader_raises_closed_error(files: Files) -> None:
    paths, _ = files
    with FileReader(paths) as reader:
        pass
    assert reader.closed
    with pytest.raises(pydata.ClosedError, match="closed"):
        reader.read([0], [0], [1], np.empty(1, np.uint8))
    reader.close()  # idempotent
    assert reader.closed


def test_pickle_reopens_by_paths(files: Files) -> None:
    paths, contents = files
    reader = FileReader(paths)
    clone = pickle.loads(pickle.dumps(reader))
    assert clone is not reader
    assert (clone.paths, clone.sizes) == (reader.paths, reader.sizes)
    out = np.empty(10, np.uint8)
    clone.read([1], [20], [10], out)
    np.testing.assert_array_equal(out, contents[1][20:30])
    reader.close()
    assert not clone.closed


def test_many_python_threads_share_one_reader(files: Files) -> None:
    paths, contents = files
    reader = FileReader(paths)

    def work(seed: int) -> None:
        for round_ in range(5):
            ids, offsets, lengths = _random_ranges(contents, 50, seed * 100 + round_)
            expected = _expected(contents, ids, offsets, lengths)
            out = np.empty(len(expected), np.uint8)
            reader.read(ids, offsets, lengths, out, threads=4)
            assert out.tobytes() == expected

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work, seed) for seed in range(8)]:
            future.result()  # re-raises a failure from its thread
