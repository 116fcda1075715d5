"""Where remote bytes come from: whole files and byte ranges, from fsspec or straight from S3.

Every remote read of a dataset (its ``index.json`` and its shards) goes through a
:class:`Store`. :class:`FsspecStore` serves any fsspec URL. For ``s3://`` URLs,
:class:`S3Store` sends the same GETs through botocore's synchronous client instead of s3fs:
s3fs runs every request of a process on one event-loop thread, which then does all the
reading and copying of the bodies in Python, while botocore reads each body on the thread that
asked for it with the GIL released. Against the local S3 server, four threads fetching 64 MiB
objects moved ~1,070 MB/s with botocore and 280-630 MB/s through s3fs (benchmarks/README.md).

``open_store`` picks botocore for ``s3://`` when botocore is installed (s3fs depends on it) and
every storage option is one it maps (credentials, endpoint, region, client and config keyword
arguments, ``anon``, ``requester_pays``); any other option, or ``s3_client="fsspec"``, keeps
s3fs so that nothing a user configured is silently dropped.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol

import fsspec  # type: ignore[import-untyped]  # fsspec ships no type information
import fsspec.core  # type: ignore[import-untyped]

__all__ = ["FsspecStore", "S3ClientKind", "S3Store", "Store", "open_filesystem", "open_store", "unmapped_s3_options"]

S3ClientKind = Literal["auto", "botocore", "fsspec"]
"""How ``s3://`` is read: ``"auto"`` (botocore when it can honour every storage option, else
s3fs), ``"botocore"`` (required: an error names the options it cannot honour) or ``"fsspec"``."""

# s3fs storage options that only shape s3fs's own caches, listings or uploads: no effect on GETs.
_NO_EFFECT_ON_GETS = frozenset({
    "default_block_size", "default_fill_cache", "default_cache_type", "skip_instance_cache",
    "use_listings_cache", "listings_expiry_time", "max_paths", "cache_regions", "fixed_upload_size",
    "asynchronous", "loop",
})
_MAPPED = frozenset({"key", "secret", "token", "anon", "endpoint_url", "client_kwargs", "config_kwargs",
                     "use_ssl", "requester_pays", "profile"})
_EXTRA_CONNECTIONS = 4  # the client's pool is this much larger than the download pool
STREAM_CHUNK = 1 << 20
"""Bytes per piece of a streamed body: big enough that per-piece overhead vanishes, small enough
to be reused from the allocator's heap instead of fresh pages (a 64 MiB body read whole costs
~40 ms of page faults per copy here)."""
# Per process: one botocore session per profile, one client per (options, connections). Stores
# of the same dataset (its index fetch, each rebuilt cache) then share warm connections.
_sessions: dict[tuple[int, str | None], Any] = {}
_clients: dict[tuple[int, str, int], Any] = {}
_shared_lock = threading.RLock()  # a client is made under it, and makes its session under it


class Store(Protocol):
    """Reads remote files by their path inside the store."""

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of ``path`` (``None``: from the beginning, to the end); a range
        past the end gives what there is.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            Exception: The client's own errors, left for :mod:`pydata.datasets.remote` to classify.
        """
        ...

    def chunks(self, path: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of ``path`` as consecutive pieces, as they arrive; raises as
        :meth:`read` does, also part-way through."""
        ...


class FsspecStore:
    """Any fsspec filesystem (``cat_file``)."""

    def __init__(self, fs: fsspec.AbstractFileSystem) -> None:
        self.fs = fs

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        return bytes(self.fs.cat_file(path, start=start, end=end))

    def chunks(self, path: str, start: int, end: int) -> Iterator[bytes]:
        yield self.read(path, start, end)  # fsspec's async stores read a range whole anyway

    def __repr__(self) -> str:
        return f"FsspecStore({type(self.fs).__name__})"


class S3Store:
    """S3 through botocore's synchronous client; ``path`` is ``bucket/key``.

    The client is made on first use in each process (a client's connections must not cross a
    fork) and shared by every store of that process with the same options and ``connections``.
    It has room for ``connections`` requests at once and no retries of its own: the callers'
    retry policy (:func:`pydata.datasets.remote.with_retries`) is the only one.

    Args:
        storage_options: s3fs-style options (see :func:`unmapped_s3_options`).
        connections: Requests expected in flight at once.
    """

    def __init__(self, storage_options: Mapping[str, Any] | None = None, connections: int = 4) -> None:
        self.options = dict(storage_options or {})
        self.connections = connections
        self._key = json.dumps(self.options, sort_keys=True, default=repr)
        unmapped = unmapped_s3_options(self.options)
        if unmapped:
            msg = f"the botocore S3 client cannot honour the storage options {unmapped}; use s3_client='fsspec'"
            raise ValueError(msg)

    def _client(self) -> Any:
        key = (os.getpid(), self._key, self.connections)
        client = _clients.get(key)
        if client is None:
            with _shared_lock:
                client = _clients.get(key)
                if client is None:
                    client = _clients[key] = self._make_client()
        return client

    def _make_client(self) -> Any:
        session_module = importlib.import_module("botocore.session")
        config_module = importlib.import_module("botocore.config")
        o = self.options
        session = _session(session_module, o.get("profile"))
        config_kwargs = {"max_pool_connections": self.connections + _EXTRA_CONNECTIONS,
                         "retries": {"total_max_attempts": 1, "mode": "standard"},
                         **dict(o.get("config_kwargs") or {})}
        if o.get("anon"):
            config_kwargs["signature_version"] = importlib.import_module("botocore").UNSIGNED
        client_kwargs: dict[str, Any] = {"config": config_module.Config(**config_kwargs)}
        for option, argument in (("key", "aws_access_key_id"), ("secret", "aws_secret_access_key"),
                                 ("token", "aws_session_token"), ("endpoint_url", "endpoint_url"),
                                 ("use_ssl", "use_ssl")):
            if o.get(option) is not None:
                client_kwargs[argument] = o[option]
        client_kwargs.update(o.get("client_kwargs") or {})
        return session.create_client("s3", **client_kwargs)

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        return b"".join(self.chunks(path, start, end))

    def chunks(self, path: str, start: int | None, end: int | None) -> Iterator[bytes]:
        bucket, _, key = path.lstrip("/").partition("/")
        request: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if self.options.get("requester_pays"):
            request["RequestPayer"] = "requester"
        if start is not None or end is not None:
            first = start or 0
            if end is not None and end <= first:
                return
            request["Range"] = f"bytes={first}-{'' if end is None else end - 1}"
        try:
            response = self._client().get_object(**request)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(errno.ENOENT, f"s3://{path}: no such object", f"s3://{path}") from exc
            if code == "InvalidRange":  # a range that starts at or past the end of the object
                return
            raise
        body = response["Body"]
        try:
            # Pieces on this thread, GIL released while the socket is read; botocore checks the
            # total against Content-Length (IncompleteReadError, which is retried).
            yield from body.iter_chunks(STREAM_CHUNK)
        finally:
            body.close()

    def __repr__(self) -> str:
        return f"S3Store(connections={self.connections})"


def _session(session_module: Any, profile: str | None) -> Any:
    """One botocore session per process and profile: its clients share the loaded service
    model (a second client then costs ~20 ms instead of ~70)."""
    key = (os.getpid(), profile)
    with _shared_lock:
        if key not in _sessions:
            _sessions[key] = session_module.Session(profile=profile) if profile else session_module.get_session()
        return _sessions[key]


def unmapped_s3_options(options: Mapping[str, Any]) -> list[str]:
    """The s3fs storage options that :class:`S3Store` cannot honour, sorted."""
    return sorted(k for k in options if k not in _MAPPED and k not in _NO_EFFECT_ON_GETS)


def _botocore_installed() -> bool:
    try:
        importlib.import_module("botocore.session")
    except ImportError:
        return False
    return True


def open_filesystem(url: str, storage_options: Mapping[str, Any] | None = None,
                    ) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path of ``url`` inside it.

    Raises:
        ValueError: No fsspec implementation for the URL's protocol is known or installed; the
            message names the protocol and the package to install.
    """
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        hint = "install pydata[s3] (s3fs)" if protocol in ("s3", "s3a") else str(exc)
        msg = f"{url}: cannot open protocol {protocol!r}: {hint}"
        raise ValueError(msg) from exc
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, path


def open_store(url: str, storage_options: Mapping[str, Any] | None = None, *,
               s3_client: S3ClientKind = "auto", connections: int = 4) -> tuple[Store, str]:
    """The store for ``url`` and the path of ``url`` inside it.

    Raises:
        ValueError: Unknown protocol or ``s3_client`` value, or ``s3_client="botocore"`` with
            options it cannot honour (named) or without botocore installed.
    """
    if s3_client not in ("auto", "botocore", "fsspec"):
        msg = f"s3_client must be 'auto', 'botocore' or 'fsspec', got {s3_client!r}"
        raise ValueError(msg)
    protocol, _, rest = url.partition("://")
    options = dict(storage_options or {})
    if rest and protocol in ("s3", "s3a") and s3_client != "fsspec":
        installed = _botocore_installed()
        if s3_client == "botocore" and not installed:
            msg = f"{url}: s3_client='botocore' needs botocore: install pydata[s3]"
            raise ValueError(msg)
        if s3_client == "botocore" or (installed and not unmapped_s3_options(options)):
            return S3Store(options, connections), rest.rstrip("/")
    fs, path = open_filesystem(url, options)
    return FsspecStore(fs), path
