"""pydata: a dataset engine for PyTorch training with a compiled C++ core."""

from __future__ import annotations

# errors first: the compiled core imports pydata.errors while it initialises.
from pydata import errors
from pydata.errors import ClosedError, CorruptDataError, FormatError, PydataError, WaitTimeoutError

from pydata import _core  # noqa: E402  (after errors, on purpose)

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "CorruptDataError",
    "FormatError",
    "PydataError",
    "WaitTimeoutError",
    "errors",
]
