"""Tensor codecs: bit-exact lossless round trips, documented int8/fp8 error bounds, out= checks.

The bounds checked here are the ones stated in csrc/core/codec.hpp: per channel c (axis 0 when
ndim >= 2) with s_c = max|x_c| / 127 (int8) or / 448 (fp8) rounded up to float32,
int8: |x - x^| <= s_c / 2 + r;  fp8: |x - x^| <= 2^-4 |x| if |x| >= 2^-6 s_c else 2^-10 s_c, + r;
r = 2^-p |x^| + d is the final rounding to the output dtype.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pydata
from pydata._core import CODECS, blob_info, decode, decode_batch, encode, quantization_error
from pydata.synthetic import smooth_latents

LOSSLESS = ["raw", "lz4", "shuffle+lz4"]
QUANTISED = ["int8", "int8+lz4", "fp8", "fp8+lz4"]
FLOATS = ["float32", "float16", "bfloat16"]
NUMERIC = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
           "float16", "float32", "float64", "complex64", "complex128"]  # fmt: skip
SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 0, 3), (0, 4), (4, 3, 2, 5)]
# Output rounding per dtype: (significand bits p, half the smallest subnormal d).
ROUNDING = {"float32": (24, 2.0**-150), "float16": (11, 2.0**-25), "bfloat16": (8, 2.0**-134)}

Array = npt.NDArray[np.generic]
BIG32 = float(np.float32(1e30))


def bf16_bits(x: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Float32 values rounded to nearest-even bfloat16, as uint16 bit patterns (finite input)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def as_f64(a: Array, dtype: str) -> npt.NDArray[np.float64]:
    if dtype == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def make_input(values: npt.ArrayLike, dtype: str) -> Array:
    """`values` stored as `dtype` (bfloat16 as uint16 bits)."""
    if dtype == "bfloat16":
        return bf16_bits(values)
    return np.ascontiguousarray(values, dtype=dtype)


def stored_scale(max_abs: float, code_max: float) -> float:
    exact = max_abs / code_max
    s = np.float32(exact)
    if float(s) < exact:
        s = np.nextafter(s, np.float32(np.inf))
    return float(s)


def assert_within_bound(x: Array, xh: Array, codec: str, dtype: str) -> None:
    x64, xh64 = as_f64(x, dtype), as_f64(xh, dtype)
    if x64.size == 0:
        return
    rows = (x64.shape[0], -1) if x64.ndim >= 2 else (1, -1)
    xs, xhs = x64.reshape(rows), xh64.reshape(rows)
    p, d = ROUNDING[dtype]
    for xc, xhc in zip(xs, xhs, strict=True):
        if xc.size == 0:
            continue
        err = np.abs(xc - xhc)
        if codec.startswith("int8"):
            s = stored_scale(float(np.abs(xc).max()), 127.0)
            bound = np.full_like(xc, s / 2)
        else:
            s = stored_scale(float(np.abs(xc).max()), 448.0)
            bound = np.where(np.abs(xc) >= 2.0**-6 * s, 2.0**-4 * np.abs(xc), 2.0**-10 * s)
        bound = bound + 2.0**-p * np.abs(xhc) + d
        bad = err > bound * (1 + 2.0**-40)
        assert not bad.any(), (
            f"{codec}/{dtype}: x={xc[bad][:5]} decoded {xhc[bad][:5]}, err {err[bad][:5]} > bound "
            f"{bound[bad][:5]} (scale {s})"
        )


def roundtrip(x: Array, codec: str, dtype: str | None = None) -> Array:
    blob = encode(x, codec, dtype=dtype)
    y = decode(blob)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    return y


def test_codec_names() -> None:
    assert CODECS == ("raw", "lz4", "shuffle+lz4", "int8", "int8+lz4", "fp8", "fp8+lz4")


@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize("dtype", NUMERIC)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_lossless_roundtrip_is_bit_exact(codec: str, dtype: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(shape))
    if dtype == "bool":
        x = rng.integers(0, 2, shape).astype(bool)
    else:  # random bit patterns: NaNs, infinities and subnormals included for floats
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        x = rng.integers(0, 256, nbytes, dtype=np.uint8).view(dtype).reshape(shape)
    y = roundtrip(x, codec)
    assert y.tobytes() == x.tobytes()
    info = blob_info(encode(x, codec))
    assert (info["codec"], info["dtype"], info["shape"]) == (codec, dtype, shape)
    assert info["raw_nbytes"] == x.nbytes


@pytest.mark.parametrize("codec", CODECS)
def test_bfloat16_travels_as_uint16_bits(codec: str) -> None:
    x = bf16_bits(np.linspace(-3, 3, 60, dtype=np.float32).reshape(3, 4, 5))
    blob = encode(x, codec, dtype="bfloat16")
    assert blob_info(blob)["dtype"] == "bfloat16"
    y = decode(blob)
    assert y.dtype == np.uint16
    if codec in LOSSLESS:
        assert np.array_equal(x, y)
    else:
        assert_within_bound(x, y, codec, "bfloat16")
    as_int16 = decode(blob, out=np.empty(x.shape, np.int16))
    assert np.array_equal(as_int16.view(np.uint16), y)


@pytest.mark.parametrize("codec", QUANTISED)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda: np.zeros((3, 4)), id="zeros"),
        pytest.param(lambda: np.full((2, 9), -1.25), id="all-equal"),
        pytest.param(lambda: np.array([0.3]), id="single"),
        pytest.param(lambda: np.array(-7.5), id="scalar"),
        pytest.param(lambda: np.zeros((0, 3)), id="empty"),
        pytest.param(lambda: np.zeros((3, 0)), id="empty-channels"),
        pytest.param(lambda: np.random.default_rng(1).standard_normal((4, 3, 8)), id="normal"),
        pytest.param(lambda: np.array([[60000.0, -65504.0, 1.0], [1e-3, 0, -2]]), id="large"),
        pytest.param(lambda: np.array([[3.0e38, -1.0, 2.0], [1.0, 0, 1.0]]), id="huge"),
        pytest.param(lambda: np.array([1e-45, -3e-45, 0.0, 1e-40]), id="f32-subnormal"),
        pytest.param(lambda: np.array([6e-8, -1.2e-7, 3e-5, 0.0]), id="f16-subnormal"),
        pytest.param(lambda: np.array([[1000.0, 1e-3, -1e-5, 7e-7], [0, 0, 0, 0]]), id="range"),
    ],
)
def test_quantised_roundtrip_within_bound(codec: str, dtype: str, values: object) -> None:
    raw = values()  # type: ignore[operator]
    if dtype == "float16":
        raw = np.clip(raw, -65504.0, 65504.0)  # "huge" becomes float16's own largest values
    with np.errstate(over="ignore", under="ignore"):
        x = make_input(raw, dtype)
    y = roundtrip(x, codec, dtype="bfloat16" if dtype == "bfloat16" else None)
    assert_within_bound(x, y, codec, dtype)
    assert np.isfinite(as_f64(y, dtype)).all()
    zero = as_f64(x, dtype) == 0
    assert (as_f64(y, dtype)[zero] == 0).all(), "zeros must decode to zeros"


def round_to_bits(v: npt.NDArray[np.float64], bits: int, min_exp: int) -> npt.NDArray[np.float64]:
    """`v` rounded once, to nearest even, to `bits` significant bits (subnormal below 2^min_exp)."""
    _, e = np.frexp(v)
    quantum = np.ldexp(1.0, np.maximum(e - 1, min_exp) - (bits - 1))
    return np.rint(v / quantum) * quantum  # exact scaling by powers of two; rint is half-even


def reference_decode(x: Array, codec: str, dtype: str) -> npt.NDArray[np.float64]:
    """What codec.hpp says decode(encode(x)) is, computed independently in float64."""
    x64 = as_f64(x, dtype)
    rows = x64.reshape((x64.shape[0], -1) if x64.ndim >= 2 else (1, -1))
    out = np.empty_like(rows)
    for c, xc in enumerate(rows):
        code_max = 127.0 if codec.startswith("int8") else 448.0
        s = stored_scale(float(np.abs(xc).max(initial=0)), code_max)
        y = xc / s if s else np.zeros_like(xc)
        q = np.rint(y) if code_max == 127.0 else round_to_bits(y, 4, -6)
        v = q * s
        if dtype == "float32":
            out[c] = v.astype(np.float32)
        elif dtype == "float16":
            out[c] = v.astype(np.float16)
        else:
            out[c] = round_to_bits(v, 8, -126)
    return out.reshape(x64.shape)


@pytest.mark.parametrize("codec", QUANTISED)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("seed", range(3))
def test_quantised_matches_reference_exactly(codec: str, dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(-3, 3, (6, 1, 1))
    x = make_input(rng.standard_normal((6, 5, 40)) * magnitude, dtype)
    y = decode(encode(x, codec, dtype="bfloat16" if dtype == "bfloat16" else None))
    np.testing.assert_array_equal(as_f64(y, dtype), reference_decode(x, codec, dtype))


def test_fp8_keeps_every_e4m3_value() -> None:
    # Every finite E4M3 magnitude (bias 7, 3 mantissa bits, max 448), at scale 1.
    codes = np.arange(127)
    exp, mant = codes >> 3, codes & 7
    values = np.where(exp == 0, mant * 2.0**-9, (1 + mant / 8) * 2.0 ** (exp - 7))
    x = np.concatenate([values, -values]).astype(np.float32)
    assert x.max() == 448
    assert np.array_equal(decode(encode(x, "fp8+lz4")), x)


def test_int8_rounds_half_to_even_with_unit_scale() -> None:
    x = np.array([127.0, 0.5, 1.5, 2.5, -2.5, -126.0, 3.25], np.float32)
    assert decode(encode(x, "int8")).tolist() == [127.0, 0.0, 2.0, 2.0, -2.0, -126.0, 3.0]


def test_fp8_rounds_to_nearest_even_e4m3() -> None:
    # Scale 1 (max 448): representable values survive, ties go to the even mantissa.
    x = np.array([448.0, 1.0, 1.0625, 1.1875, -(2**-9), 2**-6, 3 * 2**-10, 240.0], np.float32)
    want = [448.0, 1.0, 1.0, 1.25, -(2**-9), 2**-6, 2**-8, 240.0]
    assert decode(encode(x, "fp8")).tolist() == want


def test_channels_are_axis_zero() -> None:
    x = np.stack([np.full(16, 1e-3), np.linspace(-1000, 1000, 16)]).astype(np.float32)
    y = decode(encode(x, "int8"))
    # With its own scale a small constant channel keeps 24 bits; a shared one would zero it.
    np.testing.assert_allclose(y[0], x[0], rtol=2**-22)
    assert len(encode(x, "int8")) == 36 + 2 * 8 + 2 * 4 + x.size


@settings(max_examples=40, deadline=None, database=None)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
        elements=st.floats(-BIG32, BIG32, width=32, allow_subnormal=True),
    ),
    codec=st.sampled_from(QUANTISED),
)
def test_property_quantised_float32_within_bound(x: Array, codec: str) -> None:
    assert_within_bound(x, roundtrip(x, codec), codec, "float32")


@settings(max_examples=40, deadline=None, database=None)
@given(
    x=hnp.arrays(
        np.float16,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(width=16, allow_nan=False, allow_infinity=False),
    ),
    codec=st.sampled_from(QUANTISED),
)
def test_property_quantised_float16_within_bound(x: Array, codec: str) -> None:
    assert_within_bound(x, roundtrip(x, codec), codec, "float16")


@settings(max_examples=40, deadline=None, database=None)
@given(
    x=hnp.arrays(
        hnp.scalar_dtypes(),
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    ),
    codec=st.sampled_from(LOSSLESS),
)
def test_property_lossless_bit_exact(x: Array, codec: str) -> None:
    if x.dtype.kind not in "biufc":
        return  # datetimes, strings, ... are not numeric and are rejected (tested below)
    x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
    assert roundtrip(x, codec).tobytes() == x.tobytes()


@pytest.mark.parametrize("codec", QUANTISED)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", FLOATS)
def test_non_finite_input_is_rejected(codec: str, bad: float, dtype: str) -> None:
    x = make_input(np.array([[0.0, 1.0, 2.0], [3.0, bad, 5.0]]), dtype)
    with pytest.raises(pydata.FormatError, match=re.escape(f"codec '{codec}': input element 4")):
        encode(x, codec, dtype="bfloat16" if dtype == "bfloat16" else None)


@pytest.mark.parametrize(
    ("array", "codec", "dtype", "match"),
    [
        (np.zeros(3, np.float32), "zstd", None, "unknown codec 'zstd'"),
        (np.zeros(3, np.int32), "int8", None, "takes float32, float16 or bfloat16"),
        (np.zeros(3, np.float64), "fp8", None, "takes float32, float16 or bfloat16"),
        (np.zeros(3, np.float32), "raw", "bfloat16", "uint16 or int16"),
        (np.zeros(3, np.int16), "raw", "float16", "does not match"),
        (np.zeros(3, ">f4"), "raw", None, "big-endian"),
        (np.zeros(3, "M8[s]"), "raw", None, "unsupported dtype"),
        (np.array(["a"]), "lz4", None, "unsupported dtype"),
    ],
)
def test_bad_encode_arguments(array: Array, codec: str, dtype: str | None, match: str) -> None:
    with pytest.raises(pydata.FormatError, match=match):
        encode(array, codec, dtype=dtype)


def test_encode_rejects_non_contiguous() -> None:
    with pytest.raises(ValueError, match="C-contiguous"):
        encode(np.zeros((4, 4), np.float32)[:, ::2], "raw")


def test_encode_is_deterministic() -> None:
    x = smooth_latents(2, 4, 8)
    for codec in CODECS:
        assert encode(x, codec) == encode(x.copy(), codec)


@pytest.mark.parametrize("codec", CODECS)
def test_decode_into_out(codec: str) -> None:
    x = smooth_latents(3, 2, 4, dtype=np.float32)
    blob = encode(x, codec)
    out = np.full_like(x, np.nan)
    assert decode(blob, out=out) is out
    assert np.array_equal(out, decode(blob))


@pytest.mark.parametrize(
    "out",
    [np.empty((3, 2, 5), np.float32), np.empty((3, 2, 4), np.float16), np.empty(24, np.float32)],
    ids=["shape", "dtype", "flat"],
)
def test_decode_out_mismatch_raises_format_error(out: Array) -> None:
    blob = encode(np.zeros((3, 2, 4), np.float32), "lz4")
    with pytest.raises(
        pydata.FormatError,
        match=r"out has dtype .* shape .* blob holds float32 of shape \(3, 2, 4\)",
    ):
        decode(blob, out=out)


def test_decode_out_must_be_contiguous_and_writable() -> None:
    blob = encode(np.zeros((4, 3), np.float32), "raw")
    with pytest.raises((TypeError, ValueError)):
        decode(blob, out=np.empty((4, 6), np.float32)[:, ::2])
    readonly = np.empty((4, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        decode(blob, out=readonly)
    with pytest.raises(TypeError):
        decode(blob, out=[[0.0] * 3] * 4)  # no silent conversion of a list


def test_decode_accepts_any_bytes_like_at_any_alignment() -> None:
    blob = encode(np.arange(12, dtype=np.float32).reshape(3, 4), "int8+lz4")
    padded = np.frombuffer(b"\x00" + blob + b"\x00", np.uint8)
    for view in (bytearray(blob), memoryview(blob), padded[1:-1]):
        assert np.array_equal(decode(view), decode(blob))


def test_blob_info_keys() -> None:
    x = np.zeros((2, 3), np.float16)
    blob = encode(x, "fp8+lz4")
    assert blob_info(blob) == {
        "codec": "fp8+lz4", "dtype": "float16", "shape": (2, 3), "raw_nbytes": 12,
        "blob_nbytes": len(blob), "version": 1,
    }  # fmt: skip


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("threads", [None, 1, 2])
def test_decode_batch_equals_decode(codec: str, threads: int | None) -> None:
    x = smooth_latents(9, 4, 8)
    blobs = [encode(sample, codec) for sample in x]
    out = np.empty_like(x)
    decode_batch(blobs, out, threads=threads)
    assert np.array_equal(out, np.stack([decode(b) for b in blobs]))


def test_decode_batch_into_torch_tensor() -> None:
    x = smooth_latents(5, 4, 8)
    blobs = [memoryview(encode(sample, "int8+lz4")) for sample in x]
    t = torch.zeros((5, 4, 8, 8), dtype=torch.float16)
    decode_batch(blobs, t.numpy())
    assert np.array_equal(t.numpy(), np.stack([decode(b) for b in blobs]))


def test_decode_batch_takes_any_iterable_of_bytes_like() -> None:
    x = smooth_latents(3, 2, 4)
    out = np.empty_like(x)
    decode_batch((encode(sample, "lz4") for sample in x), out)
    assert np.array_equal(out, x)
    with pytest.raises(TypeError, match=r"blobs\[1\]"):
        decode_batch([encode(x[0], "raw"), "not bytes", encode(x[2], "raw")], out)


def test_decode_batch_shape_errors() -> None:
    blobs = [encode(np.zeros((2, 3), np.float32), "raw")] * 3
    with pytest.raises(
        pydata.FormatError, match=r"axis 0 of length 2, expected one row per blob \(3\)"
    ):
        decode_batch(blobs, np.empty((2, 2, 3), np.float32))
    mixed = [*blobs[:2], encode(np.zeros((3, 2), np.float32), "raw")]
    with pytest.raises(pydata.FormatError, match=r"out\[2\]"):
        decode_batch(mixed, np.empty((3, 2, 3), np.float32))
    with pytest.raises(ValueError, match="threads"):
        decode_batch(blobs, np.empty((3, 2, 3), np.float32), threads=0)
    decode_batch([], np.empty((0, 5), np.float32))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_quantization_error_matches_numpy(codec: str, dtype: str) -> None:
    x = make_input(np.random.default_rng(3).standard_normal((4, 50)) * 10, dtype)
    kw = {"dtype": "bfloat16"} if dtype == "bfloat16" else {}
    report = quantization_error(x, codec, **kw)
    blob = encode(x, codec, **kw)
    x64, y64 = as_f64(x, dtype), as_f64(decode(blob), dtype)
    assert report["blob_nbytes"] == len(blob)
    assert report["max_abs"] == pytest.approx(np.abs(x64 - y64).max(), rel=1e-12, abs=0)
    want = np.linalg.norm(x64 - y64) / np.linalg.norm(x64)
    assert report["rel_l2"] == pytest.approx(want, rel=1e-9, abs=0)
    if codec in LOSSLESS:
        assert report["max_abs"] == report["rel_l2"] == 0


def test_quantization_error_of_zeros_is_zero() -> None:
    report = quantization_error(np.zeros((2, 3), np.float32), "fp8")
    assert report["max_abs"] == report["rel_l2"] == 0
