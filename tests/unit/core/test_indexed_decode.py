"""IndexedSections.decode: codec blobs decoded straight from their sections into a batch.

Rows are blobs written by ``encode``; the result must equal ``decode`` of each blob, and every
error must name what is at fault: the index and its position, or the section's name and row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch

import pydata
from pydata._core import IndexedSections, MappedFile, decode, encode
from pydata.synthetic import smooth_latents

NAMES = ["train-00000.bin", "train-00001.bin"]


def _section(blobs: list[bytes]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    offsets = np.cumsum([0, *[len(b) for b in blobs]]).astype(np.uint64)
    return offsets, np.frombuffer(b"".join(blobs), np.uint8)


def _two_sections(codec: str, rows: int = 10) -> tuple[IndexedSections, list[bytes]]:
    """`rows` blobs of `codec`, 4 in section 0 and the rest in section 1."""
    samples = smooth_latents(rows, 4, 8)
    blobs = [encode(sample, codec) for sample in samples]
    return IndexedSections([_section(blobs[:4]), _section(blobs[4:])], names=NAMES), blobs


@pytest.mark.parametrize("codec", ["lz4", "int8+lz4", "raw"])
@pytest.mark.parametrize("threads", [None, 1, 3])
def test_decode_equals_decoding_each_blob(codec: str, threads: int | None) -> None:
    sections, blobs = _two_sections(codec)
    indices = np.array([9, 0, 4, 3, 3, 7, 1], np.int64)  # both sections, a repeat
    out = np.full((len(indices), 4, 8, 8), np.nan, np.float16)
    result = sections.decode(indices, out, threads=threads)
    assert result is out
    np.testing.assert_array_equal(out, np.stack([decode(blobs[i]) for i in indices]))


def test_decode_from_a_mapped_shard_into_a_torch_tensor(tmp_path: Path) -> None:
    samples = smooth_latents(6, 2, 4)
    blobs = [encode(sample, "int8+lz4") for sample in samples]
    offsets, payload = _section(blobs)
    path = tmp_path / "shard.bin"
    path.write_bytes(b"\0" * 16 + payload.tobytes())
    view = MappedFile(path).view(16, len(payload))  # read-only: decoded from the mapping
    sections = IndexedSections([(offsets, view)], names=[str(path)])
    target = torch.empty((3, 2, 4, 4), dtype=torch.float16)
    sections.decode([5, 0, 2], target.numpy())
    expected = np.stack([decode(blobs[i]) for i in (5, 0, 2)])
    assert torch.equal(target, torch.from_numpy(expected))


def test_empty_batch() -> None:
    sections, _ = _two_sections("lz4")
    out = np.empty((0, 4, 8, 8), np.float16)
    assert sections.decode([], out) is out


@pytest.mark.parametrize("bad", [-1, 10, 2**40])
def test_bad_index_names_it_and_writes_nothing(bad: int) -> None:
    sections, _ = _two_sections("lz4")
    out = np.full((3, 4, 8, 8), 7, np.float16)
    with pytest.raises(IndexError, match=rf"index {bad} \(position 2 in the batch\)"):
        sections.decode([0, 5, bad], out)
    assert (out == 7).all()


def test_corrupt_offsets_name_the_section_and_row() -> None:
    blob = encode(np.zeros((4, 8, 8), np.float16), "raw")
    offsets = np.array([0, len(blob), len(blob) + 100], np.uint64)  # row 1 ends past the payload
    sections = IndexedSections([(offsets, np.frombuffer(blob, np.uint8))], names=["s.bin"])
    with pytest.raises(pydata.CorruptDataError, match=r"section 0 \('s.bin'\) row 1: offsets"):
        sections.decode([0, 1], np.empty((2, 4, 8, 8), np.float16))


def test_damaged_header_names_the_section_file_and_row_and_writes_nothing() -> None:
    samples = smooth_latents(5, 4, 8)
    blobs = [encode(sample, "lz4") for sample in samples]
    damaged = bytearray(blobs[3])
    damaged[9] ^= 0x40  # inside raw_nbytes: the header checksum no longer matches
    blobs[3] = bytes(damaged)
    sections = IndexedSections([_section(blobs[:2]), _section(blobs[2:])], names=NAMES)
    out = np.full((3, 4, 8, 8), 7, np.float16)
    with pytest.raises(pydata.CorruptDataError) as info:
        sections.decode([0, 2, 3], out)
    message = str(info.value)
    assert message.startswith("section 1 ('train-00001.bin') row 1: codec blob:")
    assert "checksum mismatch" in message
    assert (out == 7).all(), "a bad header is found before any row is written"


def test_damaged_payload_names_the_section_file_and_row() -> None:
    good = encode(np.zeros((4, 8, 8), np.float16), "lz4")
    damaged = bytearray(good)
    header = 36 + 8 * 3  # fixed fields + shape + CRC; lossless codecs store no scales
    damaged[header:] = b"\xff" * (len(good) - header)  # the lz4 block no longer decodes
    sections = IndexedSections(
        [_section([good, good]), _section([good, bytes(damaged)])], names=NAMES
    )
    out = np.empty((4, 4, 8, 8), np.float16)
    with pytest.raises(
        pydata.CorruptDataError,
        match=r"^section 1 \('train-00001.bin'\) row 1: codec blob: the lz4 payload",
    ):
        sections.decode([0, 1, 2, 3], out, threads=2)


def test_unnamed_sections_are_named_by_number() -> None:
    good = encode(np.zeros(3, np.float32), "raw")
    bad = bytearray(good)
    bad[0] = ord("X")  # magic
    sections = IndexedSections([_section([good]), _section([bytes(bad)])])
    with pytest.raises(pydata.CorruptDataError, match=r"^section 1 row 0: codec blob: bad magic"):
        sections.decode([0, 1], np.empty((2, 3), np.float32))


def test_wrong_out_shape_or_dtype_is_a_format_error() -> None:
    sections, _ = _two_sections("lz4")
    with pytest.raises(pydata.FormatError, match="out has 3 rows for 2 indices"):
        sections.decode([0, 1], np.empty((3, 4, 8, 8), np.float16))
    with pytest.raises(pydata.FormatError, match="no axis 0"):
        sections.decode([0], np.empty((), np.float16))
    with pytest.raises(
        pydata.FormatError, match=r"out\[0\] \(section 1 \('train-00001.bin'\) row 2\)"
    ):
        sections.decode([6], np.empty((1, 4, 8, 4), np.float16))
    with pytest.raises(pydata.FormatError, match="has dtype float32"):
        sections.decode([0], np.empty((1, 4, 8, 8), np.float32))


def test_out_must_be_writable_contiguous_and_an_array() -> None:
    sections, _ = _two_sections("raw")
    frozen = np.empty((1, 4, 8, 8), np.float16)
    frozen.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        sections.decode([0], frozen)
    strided = np.empty((1, 4, 8, 16), np.float16)[..., ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        sections.decode([0], strided)
    with pytest.raises(TypeError):
        sections.decode([0], np.empty((1, 4, 8, 8), np.float16).tolist())  # never converted


def test_threads_must_be_positive() -> None:
    sections, _ = _two_sections("raw")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        sections.decode([0], np.empty((1, 4, 8, 8), np.float16), threads=0)
