"""The dataset schema: what each field holds and how it is laid out in a shard.

A :class:`Field` is declared once by the user and decides everything downstream: a tensor field
with a fixed shape and the ``raw`` codec is stored *fixed* (one contiguous, page-aligned array per
shard, so a batch is one gather); every other field is stored *indexed* (a uint64 offsets table
plus a payload): bytes, strings, tensors of varying shape and compressed tensors, whose rows are
self-describing codec blobs. The trade-off is deliberate: the fixed layout is the fast path and
the only zero-copy one, the indexed layout pays a decode per row for flexibility and size.

Values handed to the writer are validated here, so that an error names the field and sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pydata._core import CODECS
from pydata.errors import FormatError

__all__ = ["Field", "Layout", "Schema", "schema_from_json", "schema_to_json"]

Layout = Literal["fixed", "indexed"]
Kind = Literal["tensor", "bytes", "str"]
Schema = Mapping[str, "Field"]

_QUANTISED = ("int8", "int8+lz4", "fp8", "fp8+lz4")
_TENSOR_DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64", "complex64", "complex128", "bfloat16"]
)


def _dtype_name(dtype: Any) -> str:
    """Normalises a numpy dtype, a numpy/torch type or a name to the stored dtype name."""
    if isinstance(dtype, str) and dtype in ("bytes", "str", "bfloat16"):
        return dtype
    text = str(dtype)
    if text.startswith("torch."):  # torch dtypes, without importing torch
        dtype = text[len("torch."):]
        if dtype == "bfloat16":
            return "bfloat16"
    try:
        return str(np.dtype(dtype).name)
    except TypeError as exc:
        msg = f"unknown dtype {dtype!r}: expected a numpy or torch dtype, 'bytes' or 'str'"
        raise FormatError(msg) from exc


@dataclass(frozen=True, init=False)
class Field:
    """One field of a dataset's schema.

    Args:
        dtype: A numpy or torch dtype (``"uint8"``, ``np.float16``, ``torch.bfloat16``) for a
            tensor, ``"bytes"`` for raw bytes (e.g. encoded images) or ``"str"`` for text.
        shape: The shape of every sample's tensor (``()`` for a scalar), or None when it varies
            (tensors) or does not apply (bytes, str).
        codec: One of ``pydata.CODECS``; tensors only. ``raw`` with a fixed shape gives the
            zero-copy fixed layout; a compressing codec stores one blob per sample.

    Raises:
        FormatError: An unknown dtype or codec, a shape on a bytes/str field, a negative
            dimension, or a quantising codec on a non-float tensor.

    Example:
        >>> Field("uint8", (3, 32, 32)).layout
        'fixed'
        >>> Field("float16", (4, 8, 8), codec="int8+lz4").layout
        'indexed'
    """

    dtype: str
    shape: tuple[int, ...] | None
    codec: str

    def __init__(self, dtype: Any, shape: Sequence[int] | None = None, codec: str = "raw") -> None:
        name = _dtype_name(dtype)
        if name not in ("bytes", "str") and name not in _TENSOR_DTYPES:
            msg = f"unsupported dtype {name!r}: expected one of {sorted(_TENSOR_DTYPES)}, 'bytes' or 'str'"
            raise FormatError(msg)
        if codec not in CODECS:
            msg = f"unknown codec {codec!r}: expected one of {list(CODECS)}"
            raise FormatError(msg)
        dims: tuple[int, ...] | None = None
        if shape is not None:
            if name in ("bytes", "str"):
                msg = f"a {name} field has no shape (got {tuple(shape)})"
                raise FormatError(msg)
            dims = tuple(int(d) for d in shape)
            if any(d < 0 for d in dims):
                msg = f"negative dimension in shape {dims}"
                raise FormatError(msg)
        if name in ("bytes", "str") and codec != "raw":
            msg = f"a {name} field is stored as is: codec must be 'raw', not {codec!r}"
            raise FormatError(msg)
        if codec in _QUANTISED and name not in ("float16", "float32", "bfloat16"):
            msg = f"codec {codec!r} quantises floats: it needs float16, float32 or bfloat16, not {name}"
            raise FormatError(msg)
        object.__setattr__(self, "dtype", name)
        object.__setattr__(self, "shape", dims)
        object.__setattr__(self, "codec", codec)

    @property
    def kind(self) -> Kind:
        """``tensor``, ``bytes`` or ``str``."""
        if self.dtype in ("bytes", "str"):
            return self.dtype  # type: ignore[return-value]
        return "tensor"

    @property
    def layout(self) -> Layout:
        """``fixed`` (rows of one size, zero-copy) or ``indexed`` (offsets + payload)."""
        return "fixed" if self.shape is not None and self.codec == "raw" else "indexed"

    @property
    def storage_dtype(self) -> np.dtype[Any]:
        """The little-endian numpy dtype of the stored elements (bfloat16 travels as uint16)."""
        if self.kind != "tensor":
            return np.dtype(np.uint8)
        return np.dtype("<u2") if self.dtype == "bfloat16" else np.dtype(self.dtype).newbyteorder("<")

    @property
    def row_nbytes(self) -> int:
        """Bytes per sample in the fixed layout; 0 for indexed fields."""
        if self.layout != "fixed":
            return 0
        assert self.shape is not None
        return int(np.prod(self.shape, dtype=np.int64)) * self.storage_dtype.itemsize

    @property
    def decoded_shape(self) -> tuple[int, ...] | None:
        """The per-sample shape after decoding, or None when it varies."""
        return self.shape

    def to_json(self) -> dict[str, Any]:
        """The field as stored in ``index.json``."""
        return {
            "kind": self.kind,
            "dtype": self.dtype,
            "shape": None if self.shape is None else list(self.shape),
            "codec": self.codec,
            "layout": self.layout,
        }

    def __repr__(self) -> str:
        shape = "" if self.shape is None else f", shape={self.shape}"
        codec = "" if self.codec == "raw" else f", codec={self.codec!r}"
        return f"Field({self.dtype!r}{shape}{codec})"


def schema_to_json(schema: Schema) -> dict[str, dict[str, Any]]:
    """The ``schema`` object of ``index.json`` (field order is kept)."""
    return {name: field.to_json() for name, field in schema.items()}


def schema_from_json(data: Any, source: str) -> dict[str, Field]:
    """Parses and checks the ``schema`` object of an index; errors name ``source``.

    Raises:
        FormatError: Not a mapping, a field without dtype, or an entry whose stored kind or
            layout disagrees with what its dtype, shape and codec imply.
    """
    if not isinstance(data, dict) or not data:
        msg = f"{source}: 'schema' must be a non-empty object of fields"
        raise FormatError(msg)
    schema: dict[str, Field] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or "dtype" not in entry:
            msg = f"{source}: schema field {name!r} must be an object with a 'dtype'"
            raise FormatError(msg)
        try:
            field = Field(entry["dtype"], entry.get("shape"), entry.get("codec", "raw"))
        except (FormatError, TypeError, ValueError) as exc:
            msg = f"{source}: schema field {name!r}: {exc}"
            raise FormatError(msg) from exc
        for key in ("kind", "layout"):
            if key in entry and entry[key] != getattr(field, key):
                msg = f"{source}: schema field {name!r}: {key} {entry[key]!r} disagrees with {field!r}"
                raise FormatError(msg)
        schema[name] = field
    return schema


def check_schema(schema: Any) -> dict[str, Field]:
    """Validates a user-given schema mapping; returns a plain dict in the given order."""
    if not isinstance(schema, Mapping) or not schema:
        msg = "schema must be a non-empty mapping of field name -> pydata.Field"
        raise FormatError(msg)
    out: dict[str, Field] = {}
    for name, field in schema.items():
        if not isinstance(name, str) or not name:
            msg = f"schema field names must be non-empty strings, got {name!r}"
            raise FormatError(msg)
        if not isinstance(field, Field):
            msg = f"schema field {name!r} must be a pydata.Field, got {type(field).__name__}"
            raise FormatError(msg)
        out[name] = field
    return out


def _to_numpy(value: Any) -> tuple[Any, str | None]:
    """A torch tensor becomes its numpy array (bfloat16 as uint16 bits); anything else is kept."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            import torch  # only reached when torch is already in use

            return tensor.view(torch.int16).numpy().view(np.uint16), "bfloat16"
        return tensor.numpy(), None
    return value, None


def as_tensor(field: Field, value: Any, where: str,
              shape: tuple[int, ...] | None = None) -> npt.NDArray[Any]:
    """Checks one tensor value against ``field``; returns a C-contiguous little-endian array.

    Arrays and tensors must have the field's dtype exactly; Python numbers and lists are
    converted when their kind fits (bool, int for integer fields, int/float for float fields).
    ``shape`` overrides the field's shape (a column of n samples has shape ``(n, *field.shape)``).

    Raises:
        FormatError: Wrong dtype or shape, naming ``where`` (field and sample).
    """
    raw, tag = _to_numpy(value)
    if isinstance(raw, (np.ndarray, np.generic)):
        arr = np.asarray(raw)
        got = tag or arr.dtype.name
        ok = got == field.dtype or (field.dtype == "bfloat16" and arr.dtype == np.uint16)
        if not ok:
            msg = f"{where}: expected dtype {field.dtype}, got {got}"
            raise FormatError(msg)
    else:
        arr = _from_python(field, raw, where)
    expected = field.shape if shape is None else shape
    if expected is not None and arr.shape != expected:
        msg = f"{where}: expected shape {expected}, got {arr.shape}"
        raise FormatError(msg)
    return np.asarray(arr, dtype=field.storage_dtype, order="C")  # ascontiguousarray makes 0-d 1-d


def _from_python(field: Field, value: Any, where: str) -> npt.NDArray[Any]:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        msg = f"{where}: expected a {field.dtype} tensor, got {type(value).__name__}"
        raise FormatError(msg) from exc
    target = field.storage_dtype
    fits = {
        "b": arr.dtype.kind == "b",
        "i": arr.dtype.kind in "iu",
        "u": arr.dtype.kind in "iu",
        "f": arr.dtype.kind in "iuf",
        "c": arr.dtype.kind in "iufc",
    }.get(target.kind, False) and field.dtype != "bfloat16"
    if not fits:
        msg = f"{where}: expected dtype {field.dtype}, got {type(value).__name__} of {arr.dtype.name}"
        raise FormatError(msg)
    if target.kind in "iu" and arr.size:
        info = np.iinfo(target)
        if arr.min() < info.min or arr.max() > info.max:
            msg = f"{where}: values outside the range of {field.dtype}"
            raise FormatError(msg)
    return arr.astype(target)


def as_bytes(field: Field, value: Any, where: str) -> bytes:
    """Checks one bytes/str value; returns its stored bytes (UTF-8 for str)."""
    if field.kind == "str":
        if not isinstance(value, str):
            msg = f"{where}: expected str, got {type(value).__name__}"
            raise FormatError(msg)
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 1:
        return value.tobytes()
    msg = f"{where}: expected bytes, got {type(value).__name__}"
    raise FormatError(msg)
