"""Batch gather: equal to numpy fancy indexing, bounds checked before any byte moves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pydata
from pydata._core import FixedSections, IndexedSections, MappedFile, gather_ranges, gather_rows


@st.composite
def fixed_case(draw: st.DrawFn) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    row_bytes = draw(st.sampled_from([1, 3, 8, 256, 4096, 5000]))
    counts = draw(st.lists(st.integers(0, 40), min_size=1, max_size=5))
    total = sum(counts)
    if total == 0:
        counts[0] = 1
        total = 1
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    whole = rng.integers(0, 256, (total, row_bytes), dtype=np.uint8)
    bounds = np.cumsum([0, *counts])
    sections = [whole[bounds[i] : bounds[i + 1]] for i in range(len(counts))]
    indices = rng.integers(0, total, draw(st.integers(0, 300)))
    return sections, whole, indices


@settings(max_examples=60, deadline=None)
@given(case=fixed_case(), threads=st.sampled_from([1, 2, 3]))
def test_gather_rows_equals_fancy_indexing(
    case: tuple[list[np.ndarray], np.ndarray, np.ndarray], threads: int
) -> None:
    sections, whole, indices = case
    out = np.empty((len(indices), whole.shape[1]), np.uint8)
    result = gather_rows(sections, indices, out, threads=threads)
    assert result is out
    np.testing.assert_array_equal(out, whole[indices])


def test_large_batch_is_split_over_threads_and_correct() -> None:
    rng = np.random.default_rng(1)
    whole = rng.integers(0, 256, (2048, 4096), dtype=np.uint8)  # 8 MiB: above the parallel cut
    sections = FixedSections([whole[:1000], whole[1000:]], 4096)
    indices = rng.permutation(2048)
    out = np.empty_like(whole)
    sections.gather(indices, out, threads=2)
    np.testing.assert_array_equal(out, whole[indices])


def test_gather_into_torch_tensor() -> None:
    source = np.arange(64 * 12, dtype=np.float32).reshape(64, 12)
    target = torch.empty((5, 12), dtype=torch.float32)
    gather_rows([source], [3, 63, 0, 3, 10], target.numpy())
    assert torch.equal(target, torch.from_numpy(source[[3, 63, 0, 3, 10]]))


def test_gather_from_mapped_sections(tmp_path: Path) -> None:
    rows = np.random.default_rng(2).standard_normal((50, 4, 8)).astype(np.float16)
    path = tmp_path / "rows.bin"
    path.write_bytes(b"\0" * 64 + rows.tobytes())
    view = MappedFile(path).view(64, dtype="<f2", shape=rows.shape)
    out = np.empty((3, 4, 8), np.float16)
    gather_rows([view], [49, 0, 7], out)
    np.testing.assert_array_equal(out, rows[[49, 0, 7]])


def test_sections_report_their_size() -> None:
    sections = FixedSections([np.zeros(30, np.uint8), np.zeros(12, np.uint8)], 6)
    assert (sections.rows, sections.row_bytes, sections.num_sections) == (7, 6, 2)


@pytest.mark.parametrize("bad", [-1, 7, 2**40])
def test_bad_index_raises_and_moves_nothing(bad: int) -> None:
    sections = FixedSections([np.arange(42, dtype=np.uint8)], 6)
    out = np.full((3, 6), 0xAB, np.uint8)
    with pytest.raises(IndexError) as info:
        sections.gather([0, bad, 1], out)
    assert f"index {bad} (position 1" in str(info.value)
    assert "7 rows" in str(info.value)
    assert (out == 0xAB).all()


def test_section_not_whole_rows_names_it() -> None:
    with pytest.raises(pydata.FormatError, match=r"section 1 \('b.bin'\) is 13 bytes"):
        FixedSections([np.zeros(12, np.uint8), np.zeros(13, np.uint8)], 6, names=["a.bin", "b.bin"])


def test_wrong_output_size() -> None:
    sections = FixedSections([np.zeros(12, np.uint8)], 6)
    with pytest.raises(pydata.FormatError, match="2 rows of 6 bytes need 12"):
        sections.gather([0, 1], np.empty(11, np.uint8))
    with pytest.raises(pydata.FormatError, match="3 rows for 2 indices"):
        gather_rows([np.zeros(12, np.uint8)], [0, 1], np.empty((3, 6), np.uint8))


def test_strided_or_read_only_output_is_refused() -> None:
    sections = FixedSections([np.zeros(12, np.uint8)], 2)
    strided = np.empty((2, 4), np.uint8)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        sections.gather([0, 1], strided)
    frozen = np.empty((2, 2), np.uint8)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        sections.gather([0, 1], frozen)
    with pytest.raises(TypeError):
        sections.gather([0, 1], [[0, 0], [0, 0]])  # a list is never silently converted


def test_float_indices_are_refused() -> None:
    sections = FixedSections([np.zeros(12, np.uint8)], 2)
    with pytest.raises(TypeError, match="expected integers"):
        sections.gather(np.array([0.0, 1.5]), np.empty((2, 2), np.uint8))


def test_threads_must_be_positive() -> None:
    sections = FixedSections([np.zeros(12, np.uint8)], 2)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        sections.gather([0], np.empty((1, 2), np.uint8), threads=0)


def _indexed(rows: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.cumsum([0, *[len(r) for r in rows]]).astype(np.uint64)
    return offsets, np.frombuffer(b"".join(rows) or b"\0", np.uint8)


@settings(max_examples=60, deadline=None)
@given(
    shards=st.lists(st.lists(st.binary(max_size=300), max_size=20), min_size=1, max_size=4),
    data=st.data(),
    threads=st.sampled_from([1, 2]),
)
def test_gather_ranges_equals_python_concatenation(
    shards: list[list[bytes]], data: st.DataObject, threads: int
) -> None:
    flat = [row for shard in shards for row in shard]
    if not flat:
        shards[0].append(b"x")
        flat = [b"x"]
    indices = data.draw(st.lists(st.integers(0, len(flat) - 1), max_size=50))
    offsets, payload = gather_ranges([_indexed(s) for s in shards], indices, threads=threads)
    expected = [flat[i] for i in indices]
    assert offsets.dtype == np.uint64
    assert offsets.tolist() == np.cumsum([0, *[len(r) for r in expected]]).tolist()
    assert payload.tobytes() == b"".join(expected)


def test_gather_ranges_into_given_buffer() -> None:
    sections = IndexedSections([_indexed([b"ab", b"cde"]), _indexed([b"", b"fghi"])])
    assert (sections.rows, sections.num_sections) == (4, 2)
    out = np.zeros(16, np.uint8)
    offsets, payload = sections.gather([3, 0, 2], out=out)
    assert payload is out
    assert offsets.tolist() == [0, 4, 6, 6]
    assert out[:6].tobytes() == b"fghiab"
    with pytest.raises(pydata.FormatError, match="needs 6"):
        sections.gather([3, 0, 2], out=np.zeros(5, np.uint8))


def test_corrupt_offsets_name_the_section_and_row() -> None:
    offsets = np.array([0, 4, 2, 8], np.uint64)  # row 1 runs backwards
    payload = np.zeros(6, np.uint8)  # and row 2 ends past the payload
    sections = IndexedSections([(offsets, payload)], names=["shard-7.bin"])
    with pytest.raises(pydata.CorruptDataError, match=r"'shard-7.bin'\) row 1: offsets \[4, 2\)"):
        sections.gather([0, 1])
    with pytest.raises(pydata.CorruptDataError, match=r"row 2: offsets \[2, 8\).*6-byte payload"):
        sections.gather([2])
    assert sections.gather([0])[1].tobytes() == b"\0" * 4


def test_gather_ranges_bad_index() -> None:
    with pytest.raises(IndexError, match=r"index 2 \(position 0"):
        gather_ranges([_indexed([b"a", b"b"])], [2])
