"""pydata.format.schema: Field validation, layouts, dtype names, JSON form, value checks."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import pydata
from pydata import Field, FormatError
from pydata.format.schema import as_bytes, as_tensor, check_schema, schema_from_json, schema_to_json

# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("float8",), {}, r"unknown dtype 'float8'"),
        ((np.dtype("O"),), {}, r"unsupported dtype 'object'"),
        (("U5",), {}, r"unsupported dtype"),
        (("float32", (2,)), {"codec": "zstd"}, r"unknown codec 'zstd'.*'raw'"),
        (("bytes", (4,)), {}, r"a bytes field has no shape"),
        (("str", ()), {}, r"a str field has no shape"),
        (("float32", (2, -1)), {}, r"negative dimension in shape \(2, -1\)"),
        (("bytes",), {"codec": "lz4"}, r"a bytes field is stored as is: codec must be 'raw', not 'lz4'"),
        (("str",), {"codec": "shuffle+lz4"}, r"a str field is stored as is"),
        (("int16", (4,)), {"codec": "int8"}, r"codec 'int8' quantises floats.*not int16"),
        (("float64", (4,)), {"codec": "fp8+lz4"}, r"codec 'fp8\+lz4' quantises floats.*not float64"),
    ],
)
def test_invalid_fields_raise_format_error(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(FormatError, match=match):
        Field(*args, **kwargs)


def test_format_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        Field("float32", (1,), codec="nope")


# -- layouts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kind", "layout", "row_nbytes"),
    [
        (Field("uint8", (3, 32, 32)), "tensor", "fixed", 3 * 32 * 32),
        (Field("float32", (4, 2)), "tensor", "fixed", 32),
        (Field("int64", ()), "tensor", "fixed", 8),
        (Field("bfloat16", (5,)), "tensor", "fixed", 10),
        (Field("float32", (0, 3)), "tensor", "fixed", 0),
        (Field("float16", (4, 8, 8), codec="int8+lz4"), "tensor", "indexed", 0),
        (Field("float32", (4,), codec="lz4"), "tensor", "indexed", 0),
        (Field("float32"), "tensor", "indexed", 0),
        (Field("int16", None, codec="shuffle+lz4"), "tensor", "indexed", 0),
        (Field("bytes"), "bytes", "indexed", 0),
        (Field("str"), "str", "indexed", 0),
    ],
)
def test_kind_layout_and_row_size(field: Field, kind: str, layout: str, row_nbytes: int) -> None:
    assert field.kind == kind
    assert field.layout == layout
    assert field.row_nbytes == row_nbytes
    assert field.decoded_shape == field.shape


def test_every_codec_is_accepted_for_float_tensors() -> None:
    for codec in pydata.CODECS:
        for dtype in ("float16", "float32", "bfloat16"):
            field = Field(dtype, (2, 3), codec=codec)
            assert field.layout == ("fixed" if codec == "raw" else "indexed")


def test_storage_dtype_is_little_endian_and_bfloat16_is_uint16() -> None:
    assert Field("bfloat16", (2,)).storage_dtype == np.dtype("<u2")
    assert Field(">f4", (2,)).storage_dtype == np.dtype("<f4")
    assert Field("int64", ()).storage_dtype.byteorder in ("<", "=")
    assert Field("bytes").storage_dtype == np.dtype(np.uint8)
    assert Field("str").storage_dtype == np.dtype(np.uint8)


# -- dtype normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("float32", "float32"),
        ("f4", "float32"),
        (">f4", "float32"),
        (np.float16, "float16"),
        (np.dtype("int32"), "int32"),
        ("bool", "bool"),
        (np.bool_, "bool"),
        ("complex64", "complex64"),
        (torch.float32, "float32"),
        (torch.float16, "float16"),
        (torch.int64, "int64"),
        (torch.uint8, "uint8"),
        (torch.bool, "bool"),
        (torch.bfloat16, "bfloat16"),
        ("bfloat16", "bfloat16"),
        ("bytes", "bytes"),
        ("str", "str"),
    ],
)
def test_dtype_names_are_normalised(given: Any, name: str) -> None:
    assert Field(given).dtype == name


def test_shape_is_normalised_to_a_tuple_of_ints() -> None:
    field = Field("uint8", [np.int64(3), 4])
    assert field.shape == (3, 4)
    assert all(type(d) is int for d in field.shape)


def test_equal_fields_compare_equal_and_hash_alike() -> None:
    a = Field(np.float32, [2, 2], codec="lz4")
    b = Field(torch.float32, (2, 2), codec="lz4")
    assert a == b
    assert hash(a) == hash(b)
    assert a != Field("float32", (2, 2))


def test_fields_are_immutable() -> None:
    field = Field("uint8", (2,))
    with pytest.raises(AttributeError):
        field.dtype = "int8"  # type: ignore[misc]


def test_repr_shows_dtype_shape_and_codec() -> None:
    assert repr(Field("uint8", (3, 2))) == "Field('uint8', shape=(3, 2))"
    assert repr(Field("float16", (4,), codec="int8")) == "Field('float16', shape=(4,), codec='int8')"
    assert repr(Field("bytes")) == "Field('bytes')"


# -- JSON ------------------------------------------------------------------------------------------


def _schema() -> dict[str, Field]:
    return {
        "image": Field("uint8", (3, 8, 8)),
        "latent": Field(torch.bfloat16, (4, 2), codec="fp8+lz4"),
        "var": Field("float32"),
        "label": Field("int64", ()),
        "blob": Field("bytes"),
        "text": Field("str"),
    }


def test_to_json_lists_kind_dtype_shape_codec_layout() -> None:
    assert Field("float16", (4, 2), codec="int8").to_json() == {
        "kind": "tensor", "dtype": "float16", "shape": [4, 2], "codec": "int8", "layout": "indexed",
    }  # fmt: skip
    assert Field("str").to_json() == {
        "kind": "str", "dtype": "str", "shape": None, "codec": "raw", "layout": "indexed",
    }  # fmt: skip
    assert Field("int64", ()).to_json()["shape"] == []


def test_schema_survives_a_json_round_trip_in_order() -> None:
    schema = _schema()
    text = json.dumps(schema_to_json(schema))
    back = schema_from_json(json.loads(text), "index.json")
    assert back == schema
    assert list(back) == list(schema)


def test_schema_from_json_fills_in_the_codec() -> None:
    assert schema_from_json({"x": {"dtype": "uint8", "shape": [2]}}, "i.json") == {"x": Field("uint8", (2,))}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (None, r"'schema' must be a non-empty object"),
        ({}, r"'schema' must be a non-empty object"),
        ([{"dtype": "uint8"}], r"'schema' must be a non-empty object"),
        ({"x": "uint8"}, r"schema field 'x' must be an object with a 'dtype'"),
        ({"x": {"shape": [2]}}, r"schema field 'x' must be an object with a 'dtype'"),
        ({"x": {"dtype": "uint8", "codec": "zip"}}, r"schema field 'x': unknown codec 'zip'"),
        ({"x": {"dtype": "nope"}}, r"schema field 'x': unknown dtype"),
        ({"x": {"dtype": "uint8", "shape": [2], "layout": "indexed"}}, r"schema field 'x': layout 'indexed' disagrees"),
        ({"x": {"dtype": "uint8", "kind": "bytes"}}, r"schema field 'x': kind 'bytes' disagrees"),
        ({"x": {"dtype": "uint8", "shape": ["a"]}}, r"schema field 'x'"),
        ({"x": {"dtype": "uint8", "shape": 3}}, r"schema field 'x'"),
    ],
)
def test_schema_from_json_errors_name_the_source_and_field(data: Any, match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        schema_from_json(data, "/data/set/index.json")
    assert str(info.value).startswith("/data/set/index.json: ")


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ({}, r"schema must be a non-empty mapping"),
        ([("x", Field("uint8"))], r"schema must be a non-empty mapping"),
        ({"": Field("uint8")}, r"field names must be non-empty strings"),
        ({1: Field("uint8")}, r"field names must be non-empty strings, got 1"),
        ({"x": "uint8"}, r"schema field 'x' must be a pydata.Field, got str"),
    ],
)
def test_check_schema_errors(schema: Any, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        check_schema(schema)


# -- value checks ----------------------------------------------------------------------------------


def test_as_tensor_returns_contiguous_little_endian_arrays() -> None:
    field = Field("float32", (2, 3))
    value = np.arange(12, dtype=">f4").reshape(3, 4)[:2, :3]
    out = as_tensor(field, value, "sample 0, field 'x'")
    assert out.flags.c_contiguous
    assert out.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(out, value)


def test_as_tensor_converts_python_numbers_whose_kind_fits() -> None:
    assert as_tensor(Field("int64", ()), 7, "w") == 7
    assert as_tensor(Field("float32", ()), 2, "w").dtype == np.float32
    assert as_tensor(Field("bool", ()), True, "w").dtype == np.bool_
    np.testing.assert_array_equal(as_tensor(Field("float16", (2,)), [1.5, -2], "w"), [1.5, -2])


def test_as_tensor_accepts_torch_tensors_including_bfloat16() -> None:
    x = torch.tensor([1.0, -2.5, 3.0], dtype=torch.bfloat16)
    out = as_tensor(Field(torch.bfloat16, (3,)), x, "w")
    assert out.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(out, x.view(torch.int16).numpy().view(np.uint16))
    np.testing.assert_array_equal(as_tensor(Field("float32", (2,)), torch.ones(2), "w"), [1, 1])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (Field("float32", (2,)), np.zeros(2, np.float64), r"sample 3, field 'x': expected dtype float32, got float64"),
        (Field("float32", (2,)), torch.zeros(2, dtype=torch.bfloat16), r"expected dtype float32, got bfloat16"),
        (Field("bfloat16", (2,)), torch.zeros(2), r"expected dtype bfloat16, got float32"),
        (Field("float32", (2,)), np.zeros(3, np.float32), r"sample 3, field 'x': expected shape \(2,\), got \(3,\)"),
        (Field("int8", ()), 1.5, r"expected dtype int8, got float"),
        (Field("int8", ()), True, r"expected dtype int8, got bool"),
        (Field("uint8", ()), 300, r"values outside the range of uint8"),
        (Field("uint8", (2,)), [-1, 2], r"values outside the range of uint8"),
        (Field("float32", (2,)), "ab", r"expected dtype float32, got str"),
        (Field("float32", ()), None, r"expected dtype float32, got NoneType"),
        (Field("bfloat16", ()), 1.0, r"expected dtype bfloat16, got float"),
    ],
)
def test_as_tensor_errors_name_where(field: Field, value: Any, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        as_tensor(field, value, "sample 3, field 'x'")


def test_as_bytes() -> None:
    assert as_bytes(Field("str"), "é", "w") == "é".encode()
    assert as_bytes(Field("bytes"), bytearray(b"ab"), "w") == b"ab"
    assert as_bytes(Field("bytes"), memoryview(b"cd"), "w") == b"cd"
    assert as_bytes(Field("bytes"), np.frombuffer(b"ef", np.uint8), "w") == b"ef"
    with pytest.raises(FormatError, match=r"sample 1, field 's': expected str, got bytes"):
        as_bytes(Field("str"), b"x", "sample 1, field 's'")
    with pytest.raises(FormatError, match=r"sample 1, field 'b': expected bytes, got str"):
        as_bytes(Field("bytes"), "x", "sample 1, field 'b'")
    with pytest.raises(FormatError, match=r"expected bytes, got ndarray"):
        as_bytes(Field("bytes"), np.zeros(2, np.int32), "w")
