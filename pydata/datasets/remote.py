"""Reading a remote dataset with retries that know which errors are worth one.

Every remote read goes through a :class:`pydata.datasets.store.Store`, by way of
:func:`fetch_bytes` (small files: ``index.json``) or
:func:`pydata.datasets.download.download` (shards, written to disk and checked against the
index's size and CRC-32C). Both retry transient failures (connection resets, timeouts, 5xx and throttling, a short or damaged
body) with exponential backoff and jitter, and fail at once on permanent ones (a missing file,
bad credentials, no such bucket), so a typo costs one request and not a minute of backoff. Errors
are told apart by class names and attributes, so that botocore and aiohttp are never imported
here: ``import pydata`` must stay free of s3fs.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydata.datasets.store import S3ClientKind, Store, open_store
from pydata.errors import ClosedError, CorruptDataError, RemoteError
from pydata.format.index import INDEX_NAME, DatasetIndex

__all__ = ["DamagedBody", "LocalFailure", "RetryPolicy", "fetch_bytes", "fetch_index", "is_transient",
           "with_retries"]

_T = TypeVar("_T")
OnRetry = Callable[[BaseException], None]

# Error codes (S3's ``Error.Code``, botocore class names) that no retry can fix, with what they mean.
_PERMANENT = {
    "NoSuchBucket": "the bucket does not exist",
    "NoCredentialsError": "no credentials were found",
    "PartialCredentialsError": "the credentials are incomplete",
    "CredentialRetrievalError": "the credentials could not be retrieved",
    "InvalidAccessKeyId": "the access key id is not known to the store",
    "SignatureDoesNotMatch": "the secret key does not match the access key id",
    "AccessDenied": "access denied",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
    "AllAccessDisabled": "all access to this object is disabled",
    "SSLError": "the TLS handshake failed",
    "ClientConnectorCertificateError": "the server's TLS certificate was refused",
}
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "ProvisionedThroughputExceededException", "RequestTimeout",
    "RequestTimeoutException", "InternalError", "ServiceUnavailable", "PriorRequestNotComplete",
})
# Class names (anywhere in the MRO) of connection and timeout errors in botocore, aiohttp,
# urllib3, requests and http.client.
_TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ResponseStreamingError", "IncompleteReadError", "ProxyConnectionError", "ClientConnectionError",
    "ClientPayloadError", "ServerDisconnectedError", "ServerTimeoutError", "ProtocolError",
    "NewConnectionError", "ChunkedEncodingError", "IncompleteRead", "Timeout", "TimeoutError",
})
_TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name) for name in (
        "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "ETIMEDOUT", "EPIPE", "ENETUNREACH", "ENETDOWN",
        "ENETRESET", "EHOSTUNREACH", "EHOSTDOWN", "EAGAIN", "EREMOTEIO")
    if hasattr(errno, name)
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure.

    Attempt k (from 0) that fails is followed by a sleep of ``min(max_delay, base_delay * 2**k)``,
    shortened by a random fraction of up to ``jitter`` of itself, so that many processes that
    failed together do not retry together.

    Attributes:
        attempts: Tries in all, the first included (1: never retry).
        base_delay: Seconds slept after the first failure.
        max_delay: Most seconds slept between two attempts.
        jitter: The largest fraction (0 to 1) by which a sleep is shortened at random.
    """

    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            msg = f"{self!r}: attempts must be >= 1, delays >= 0 and jitter in [0, 1]"
            raise ValueError(msg)

    def delays(self) -> Iterator[float]:
        """Yields the ``attempts - 1`` sleeps, in seconds, to take between the attempts."""
        rng = random.Random()  # seeded from the OS: processes must not share one sequence
        for k in range(self.attempts - 1):
            delay = min(self.max_delay, self.base_delay * 2.0**k)
            yield delay * (1.0 - self.jitter * rng.random())


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes and contexts, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]


def _code(exc: BaseException) -> str | None:
    """The store's error code (botocore's ``response['Error']['Code']``), or a known class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = response.get("Error", {}).get("Code")
        if isinstance(code, str):
            return code
    return type(exc).__name__ if type(exc).__name__ in _PERMANENT else None


def _status(exc: BaseException) -> int | None:
    """The HTTP status an error carries (botocore, aiohttp, requests), if any."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        candidates = [response.get("ResponseMetadata", {}).get("HTTPStatusCode")]
    else:
        candidates = [getattr(exc, "status", None), getattr(exc, "status_code", None),
                      getattr(response, "status_code", None), getattr(response, "status", None)]
    return next((s for s in candidates if isinstance(s, int) and 100 <= s <= 599), None)


def _verdict(exc: BaseException) -> bool | None:
    code = _code(exc)
    if code in _PERMANENT or isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError,
                                              NotADirectoryError)):
        return False
    if code in _TRANSIENT_CODES:
        return True
    status = _status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    names = {c.__name__ for c in type(exc).__mro__}
    if isinstance(exc, (ConnectionError, TimeoutError)) or names & _TRANSIENT_NAMES:
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` may succeed.

    True for connection errors, timeouts, HTTP 5xx, 408 and 429, and throttling codes, found on
    ``exc`` or on the first error of its ``__cause__``/``__context__`` chain that says either way
    (s3fs raises ``OSError`` from botocore's ``ClientError``). False for missing files, refused
    permissions, missing or invalid credentials, a missing bucket, TLS failures, and anything
    unrecognised.
    """
    return next((v for e in _chain(exc) if (v := _verdict(e)) is not None), False)


def _permanent_code(exc: BaseException) -> str | None:
    return next((c for e in _chain(exc) if (c := _code(e)) in _PERMANENT), None)


def _describe(exc: BaseException) -> str:
    code = _permanent_code(exc)
    if code is not None:
        return f"{code}: {_PERMANENT[code]} (check the URL and credentials)"
    hint = " (check the URL and credentials)" if isinstance(exc, PermissionError) else ""
    return f"{type(exc).__name__}: {exc}{hint}"


class DamagedBody(CorruptDataError):
    """A download whose size or CRC-32C differs from the index: fetched again."""


class LocalFailure(Exception):
    """Carries an error of the local disk through :func:`with_retries`, which must not retry it."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def with_retries(attempt: Callable[[], _T], url: str, retry: RetryPolicy, on_retry: OnRetry | None) -> _T:
    """Calls ``attempt`` until it succeeds, retrying transient errors and :class:`DamagedBody`
    after the policy's sleeps; a permanent error, or the last transient one, is raised naming
    ``url``: FileNotFoundError, or RemoteError with the cause."""
    delays = retry.delays()
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except LocalFailure as local:
            raise local.error from local.error.__cause__
        except (RemoteError, ClosedError):
            raise  # from an inner retry loop (a part of a file) that gave up, or a closed pool
        except Exception as exc:
            if isinstance(exc, FileNotFoundError) and _permanent_code(exc) is None:
                msg = f"{url}: not found"
                raise FileNotFoundError(errno.ENOENT, msg, url) from exc
            if not (isinstance(exc, DamagedBody) or is_transient(exc)):
                msg = f"{url}: {_describe(exc)}"
                raise RemoteError(msg) from exc
            delay = next(delays, None)
            if delay is None:
                msg = f"{url}: {_describe(exc)} (gave up after {tries} attempts)"
                raise RemoteError(msg) from exc
            if on_retry is not None:
                on_retry(exc)
            time.sleep(delay)


def fetch_bytes(store: Store, path: str, *, url: str, retry: RetryPolicy,
                on_retry: OnRetry | None = None) -> bytes:
    """Reads a whole (small) remote file, retrying transient failures.

    Args:
        store, path: Where the file is (from :func:`pydata.datasets.store.open_store`).
        url: The file's URL, for messages.
        retry: The retry policy.
        on_retry: Called with each error that is about to be retried (for counters and logs).

    Raises:
        FileNotFoundError: The file does not exist (names ``url``).
        RemoteError: A permanent error, or a transient one that outlived the retries (names ``url``
            and the cause).
    """
    return with_retries(lambda: store.read(path), url, retry, on_retry)


def fetch_index(remote: str, storage_options: Mapping[str, Any] | None = None,
                retry: RetryPolicy = RetryPolicy(), *,  # noqa: B008 (frozen)
                s3_client: S3ClientKind = "auto") -> DatasetIndex:
    """Reads and parses ``<remote>/index.json``.

    Raises:
        FileNotFoundError: There is no index (no dataset, or its writer did not finish).
        RemoteError: As for :func:`fetch_bytes`.
        FormatError: The index is malformed (names the URL).
        ValueError: Unknown protocol (see :func:`pydata.datasets.store.open_store`).
    """
    store, root = open_store(remote, storage_options, s3_client=s3_client)
    url = f"{remote.rstrip('/')}/{INDEX_NAME}"
    try:
        text = fetch_bytes(store, f"{root.rstrip('/')}/{INDEX_NAME}", url=url, retry=retry)
    except FileNotFoundError as exc:
        msg = f"no dataset at '{remote}': '{url}' is missing (a dataset whose writer did not finish has no index)"
        raise FileNotFoundError(errno.ENOENT, msg, url) from exc
    return DatasetIndex.parse(text, source=url)
