"""Damaged codec blobs raise CorruptDataError with a specific message; nothing crashes.

Blobs are forged from the layout documented in csrc/core/codec.hpp (fixed 32-byte header,
shape, scales, CRC-32C of all of that, payload), so these tests also pin the format down.
"""

from __future__ import annotations

import struct

import lz4.block
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pydata
from pydata._core import CODECS, checksum, decode, decode_batch, encode

FIXED = struct.Struct("<4sBBBBQQII")
CODEC_ID = {name: i for i, name in enumerate(CODECS)}
DTYPE_CODE = {"uint8": 2, "float16": 9, "float32": 11}
# What a damaged header may be reported as, depending on the byte hit.
HEADER_DAMAGE = r"bad magic at byte 0|format version|ndim \d+ at byte 7|truncated|checksum mismatch"


def sample(dtype: str = "float32") -> npt.NDArray[np.generic]:
    return np.linspace(-2, 3, 15).reshape(3, 5).astype(dtype)


def split(blob: bytes) -> tuple[tuple[int, ...], bytes, bytes]:
    """(fixed fields, shape + scales bytes, payload) of a valid blob."""
    fields = FIXED.unpack_from(blob)
    ndim, scales = fields[4], fields[7]
    end = FIXED.size + 8 * ndim + 4 * scales
    return fields, blob[FIXED.size : end], blob[end + 4 :]


def forge(fields: tuple[int, ...], middle: bytes, payload: bytes, **changes: int | bytes) -> bytes:
    """A blob with some fixed fields replaced and a correct header CRC."""
    names = [
        "magic", "version", "codec", "dtype", "ndim", "raw_nbytes", "payload_nbytes", "scale_count",
        "reserved",
    ]  # fmt: skip
    values = dict(zip(names, fields, strict=True))
    values.update(changes)
    header = FIXED.pack(*(values[n] for n in names)) + middle
    return header + struct.pack("<I", checksum(header)) + payload


def test_layout_matches_the_documentation() -> None:
    x = sample()
    blob = encode(x, "int8")
    fields, middle, payload = split(blob)
    assert fields == (b"PDCB", 1, CODEC_ID["int8"], DTYPE_CODE["float32"], 2, x.nbytes, 15, 3, 0)
    assert struct.unpack("<2Q3f", middle)[:2] == (3, 5)
    assert struct.unpack("<3f", middle[16:]) == pytest.approx(np.abs(x).max(axis=1) / 127)
    assert len(payload) == 15
    crc_at = len(blob) - len(payload) - 4
    assert struct.unpack_from("<I", blob, crc_at)[0] == checksum(blob[:crc_at])
    assert forge(fields, middle, payload) == blob


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_every_truncation_raises(codec: str, dtype: str) -> None:
    blob = encode(sample(dtype), codec)
    for n in range(len(blob)):
        with pytest.raises(pydata.CorruptDataError, match=r"^codec blob: truncated: ") as info:
            decode(blob[:n])
        assert f"{n} bytes" in str(info.value)


@pytest.mark.parametrize("codec", CODECS)
def test_trailing_bytes_raise(codec: str) -> None:
    with pytest.raises(pydata.CorruptDataError, match="trailing bytes"):
        decode(encode(sample(), codec) + b"\x00")


@pytest.mark.parametrize("codec", CODECS)
def test_every_header_bit_flip_raises(codec: str) -> None:
    blob = bytearray(encode(sample(), codec))
    header_end = len(blob) - len(split(bytes(blob))[2])
    for i in range(header_end):
        for bit in range(8):
            blob[i] ^= 1 << bit
            with pytest.raises(pydata.CorruptDataError, match=HEADER_DAMAGE):
                decode(blob)
            blob[i] ^= 1 << bit


def test_error_messages_name_offsets_and_values() -> None:
    blob = encode(sample(), "lz4")
    with pytest.raises(pydata.CorruptDataError, match=r'bad magic at byte 0: expected "PDCB"'):
        decode(b"XDCB" + blob[4:])
    with pytest.raises(pydata.CorruptDataError, match=r"unsupported format version 2 at byte 4"):
        decode(blob[:4] + b"\x02" + blob[5:])
    bad_crc = bytearray(blob)
    bad_crc[48] ^= 0xFF  # byte 48: the CRC of a 2-d lossless blob (32 + 16)
    with pytest.raises(
        pydata.CorruptDataError, match=r"checksum mismatch: stored 0x[0-9A-F]{8} at byte 48"
    ):
        decode(bad_crc)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"codec": 7}, "unknown codec id 7 at byte 5"),
        ({"dtype": 15}, "unknown dtype code 15 at byte 6"),
        ({"dtype": DTYPE_CODE["uint8"], "raw_nbytes": 15}, "quantised blobs hold float32"),
        ({"reserved": 1}, "reserved field at byte 28"),
        ({"raw_nbytes": 61}, "raw_nbytes at byte 8 is 61, but shape (3, 5) of float32 needs 60"),
        ({"payload_nbytes": 16}, "truncated: the blob is"),
        ({"payload_nbytes": 14}, "trailing bytes"),
    ],
)
def test_forged_headers_with_valid_crc_raise(changes: dict[str, int], match: str) -> None:
    fields, middle, payload = split(encode(sample(), "int8"))
    with pytest.raises(
        pydata.CorruptDataError, match=match.replace("(", r"\(").replace(")", r"\)")
    ):
        decode(forge(fields, middle, payload, **changes))


def test_forged_scales_and_shapes_raise() -> None:
    fields, middle, payload = split(encode(sample(), "int8"))
    nan_scale = middle[:16] + struct.pack("<3f", 1.0, float("nan"), 1.0)
    with pytest.raises(pydata.CorruptDataError, match=r"scale 1 at byte 52 is nan"):
        decode(forge(fields, nan_scale, payload))
    with pytest.raises(pydata.CorruptDataError, match=r"scale count at byte 24 is 2, .* needs 3"):
        decode(forge(fields, middle[:-4], payload, scale_count=2))
    huge = struct.pack("<2Q", 2**40, 2**40) + middle[16:]
    with pytest.raises(pydata.CorruptDataError, match="does not fit in int64 bytes"):
        decode(forge(fields, huge, payload))
    raw_fields, _, _ = split(encode(sample(), "raw"))
    empty_but_huge = struct.pack("<2Q", 2**62, 0)
    with pytest.raises(pydata.CorruptDataError, match="does not fit in int64 bytes"):
        decode(forge(raw_fields, empty_but_huge, b"", raw_nbytes=0, payload_nbytes=0))
    with pytest.raises(pydata.CorruptDataError, match="ndim 65 at byte 7 exceeds 64"):
        decode(forge(fields, middle, payload, ndim=65))


@pytest.mark.parametrize("codec", ["lz4", "shuffle+lz4", "int8+lz4", "fp8+lz4"])
def test_corrupt_lz4_payload_raises(codec: str) -> None:
    fields, middle, payload = split(encode(sample(), codec))
    decoded_size = 15 if codec.startswith(("int8", "fp8")) else 60
    cases = {
        "cut": payload[:-1],
        "garbage": b"\xff" * len(payload),
        "short": lz4.block.compress(b"\x01" * (decoded_size - 1), store_size=False),
        "long": lz4.block.compress(b"\x01" * (decoded_size + 1), store_size=False),
    }
    for name, bad in cases.items():
        blob = forge(fields, middle, bad, payload_nbytes=len(bad))
        with pytest.raises(pydata.CorruptDataError, match=r"lz4 payload") as info:
            decode(blob)
        assert str(len(FIXED.pack(*fields)) + len(middle) + 4) in str(info.value), name


def test_lz4_payload_too_small_for_its_size_is_rejected_before_decoding() -> None:
    x = np.zeros(100_000, np.uint8)
    fields, middle, _ = split(encode(x, "lz4"))
    with pytest.raises(pydata.CorruptDataError, match="cannot decode to 100000 bytes"):
        decode(forge(fields, middle, b"\x00" * 10, payload_nbytes=10))


@settings(max_examples=30, deadline=None, database=None)
@given(data=st.binary(max_size=200), prefix=st.booleans())
def test_random_bytes_raise(data: bytes, prefix: bool) -> None:
    blob = (b"PDCB\x01" + data) if prefix else data
    with pytest.raises(pydata.CorruptDataError):
        decode(blob)


@settings(max_examples=150, deadline=None, database=None)
@given(
    codec=st.sampled_from(CODECS),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_random_edits_raise_or_decode_to_the_right_shape(
    codec: str, edits: list[tuple[int, int]]
) -> None:
    blob = bytearray(encode(sample(), codec))
    for where, value in edits:
        blob[where % len(blob)] = value
    try:
        y = decode(blob)
    except pydata.CorruptDataError:
        return
    assert y.shape == (3, 5)  # an edit inside a raw or int8 payload is not detectable here


def test_decode_batch_validates_every_header_before_decoding() -> None:
    x = sample()
    blobs = [encode(x, "lz4") for _ in range(4)]
    blobs[3] = blobs[3][:-1]
    out = np.full((4, 3, 5), -7.0, np.float32)
    with pytest.raises(pydata.CorruptDataError, match=r"^blob 3: codec blob: truncated"):
        decode_batch(blobs, out)
    assert (out == -7).all(), "no row may be written when a header is bad"


def test_decode_batch_names_the_blob_with_a_corrupt_payload() -> None:
    fields, middle, payload = split(encode(sample(), "lz4"))
    bad = forge(fields, middle, b"\xff" * len(payload))
    blobs = [encode(sample(), "lz4"), bad, encode(sample(), "lz4")]
    with pytest.raises(pydata.CorruptDataError, match=r"^blob 1: codec blob: the lz4 payload"):
        decode_batch(blobs, np.empty((3, 3, 5), np.float32), threads=2)
