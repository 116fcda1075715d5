"""pydata: a dataset engine for PyTorch training with a compiled C++ core.

The names below are the public API. The compiled core (``pydata._core``) is re-exported here:
``RingBuffer``, ``MappedFile``, the batch gather (``FixedSections``, ``IndexedSections``,
``gather_rows``, ``gather_ranges``), the tensor codecs (``encode``, ``decode``,
``decode_batch``, ``blob_info``, ``quantization_error``, ``CODECS``) and ``checksum``.
Importing pydata does not import torch, s3fs or DALI.
"""

from __future__ import annotations

# errors first: the compiled core imports pydata.errors while it initialises.
from pydata import errors
from pydata.errors import ClosedError, CorruptDataError, FormatError, PydataError, WaitTimeoutError

from pydata._core import (  # noqa: E402  (after errors, on purpose)
    CODECS,
    FixedSections,
    IndexedSections,
    MappedFile,
    RingBuffer,
    blob_info,
    checksum,
    decode,
    decode_batch,
    encode,
    gather_ranges,
    gather_rows,
    quantization_error,
)

__version__ = "0.1.0"

__all__ = [
    "CODECS",
    "ClosedError",
    "CorruptDataError",
    "FixedSections",
    "FormatError",
    "IndexedSections",
    "MappedFile",
    "PydataError",
    "RingBuffer",
    "WaitTimeoutError",
    "__version__",
    "blob_info",
    "checksum",
    "decode",
    "decode_batch",
    "encode",
    "errors",
    "gather_ranges",
    "gather_rows",
    "quantization_error",
]
