"""The exception hierarchy of pydata, in one place.

Every error pydata raises on purpose derives from :class:`PydataError` and also from the
builtin that describes it best, so callers can catch either ``pydata.PydataError`` or, say,
``ValueError``. Errors raised by the compiled core are translated into these classes by
``csrc/bindings/bind_errors.cpp``; this module must therefore import nothing from pydata.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "ClosedError",
    "CorruptDataError",
    "FormatError",
    "PydataError",
    "RemoteError",
    "WaitTimeoutError",
]


class PydataError(Exception):
    """Base class of every error pydata raises on purpose."""


class FormatError(PydataError, ValueError):
    """Data does not match the layout asked for: wrong dtype, shape, size or schema."""


class CorruptDataError(PydataError, ValueError):
    """Stored bytes are damaged: bad magic, checksum mismatch, truncated data, bad offsets."""


class ClosedError(PydataError, RuntimeError):
    """The object is closed: a push onto a closed RingBuffer, or a pop once it is drained."""


class RemoteError(PydataError, OSError):
    """A remote store failed: a permanent error (credentials, no such bucket), or a transient one
    that outlived the retries. The message names the URL and the cause."""


class WaitTimeoutError(PydataError, TimeoutError):
    """A blocking call reached its timeout before it could complete."""


class AuditError(PydataError, RuntimeError):
    """A loader's end-of-epoch audit found samples delivered twice, missing, or foreign."""
