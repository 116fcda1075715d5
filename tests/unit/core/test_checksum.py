"""CRC-32C: known vectors, seed continuation, and the SSE4.2 and portable paths agreeing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydata._core import _checksum_hardware_available, _checksum_portable, checksum

IMPLS = [pytest.param(checksum, id="dispatch"), pytest.param(_checksum_portable, id="portable")]
# Lengths around the hardware path's stream boundaries (3 x 256 and 3 x 8192 bytes).
EDGE_LENGTHS = sorted(
    {n + d for n in (0, 8, 768, 1536, 24576, 49152) for d in range(-9, 10) if n + d >= 0}
)


def crc32c_bitwise(data: bytes, seed: int = 0) -> int:
    """The textbook bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78)."""
    crc = seed ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"", 0),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),  # RFC 3720 (iSCSI) B.4
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_known_vectors(impl: object, data: bytes, want: int) -> None:
    assert impl(data) == want  # type: ignore[operator]


def test_matches_the_bitwise_definition_on_small_inputs() -> None:
    rng = np.random.default_rng(0)
    for n in range(0, 300, 7):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        seed = int(rng.integers(0, 2**32))
        assert checksum(data, seed) == crc32c_bitwise(data, seed)


@pytest.mark.parametrize("impl", IMPLS)
def test_seed_continues_a_stream(impl: object) -> None:
    data = np.random.default_rng(1).integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    whole = impl(data)  # type: ignore[operator]
    for cut in (0, 1, 7, 100, 769, 30_000, 59_999, 60_000):
        assert impl(data[cut:], seed=impl(data[:cut])) == whole  # type: ignore[operator]


def test_hardware_and_portable_agree_at_every_edge_and_alignment() -> None:
    buf = bytearray(np.random.default_rng(2).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    view = memoryview(buf)
    for n in EDGE_LENGTHS:
        for offset in range(8):
            chunk = view[offset : offset + n]
            assert checksum(chunk) == _checksum_portable(chunk), (n, offset)
            assert checksum(chunk, 0xDEADBEEF) == _checksum_portable(chunk, 0xDEADBEEF)


@settings(max_examples=60, deadline=None, database=None)
@given(data=st.binary(max_size=5000), offset=st.integers(0, 15), seed=st.integers(0, 2**32 - 1))
def test_property_paths_agree(data: bytes, offset: int, seed: int) -> None:
    chunk = memoryview(bytes(offset) + data)[offset:]
    assert checksum(chunk, seed) == _checksum_portable(chunk, seed)


def test_large_inputs_match_portable() -> None:
    # Above 64 KiB the GIL is released; the value must not change.
    data = np.random.default_rng(3).integers(0, 256, 3 << 20, dtype=np.uint8)
    assert checksum(data) == _checksum_portable(data)
    assert checksum(data[: 64 << 10]) == _checksum_portable(data[: 64 << 10].tobytes())


def test_accepts_bytes_like_objects() -> None:
    a = np.arange(10, dtype=np.float32)
    want = checksum(a.tobytes())
    assert checksum(a) == checksum(memoryview(a)) == checksum(bytearray(a.tobytes())) == want
    with pytest.raises(ValueError, match="C-contiguous"):
        checksum(a[::2])
    with pytest.raises(TypeError):
        checksum("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        checksum(b"x", seed=2**32)


def test_hardware_flag_is_a_bool() -> None:
    assert isinstance(_checksum_hardware_available(), bool)
