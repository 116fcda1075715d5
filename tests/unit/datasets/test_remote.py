"""pydata.datasets.remote: retry policy, error classification and the index fetch, over real fsspec
filesystems (``file://`` directories written by ShardWriter, ``memory://``)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

import pydata
from pydata.datasets import remote
from pydata.datasets.remote import (
    RetryPolicy,
    fetch_bytes,
    fetch_index,
    is_transient,
)
from pydata.datasets.store import FsspecStore, open_filesystem
from pydata.errors import FormatError, PydataError, RemoteError
from pydata.format.index import DatasetIndex

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0)


# -- RetryPolicy -----------------------------------------------------------------------------------


def test_delays_back_off_exponentially_up_to_the_cap_shortened_by_jitter() -> None:
    policy = RetryPolicy(attempts=7, base_delay=0.5, max_delay=3.0, jitter=0.25)
    caps = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    for _ in range(20):
        delays = list(policy.delays())
        assert len(delays) == 6
        assert all(cap * 0.75 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert list(RetryPolicy(attempts=4, base_delay=1, max_delay=10, jitter=0).delays()) == [1, 2, 4]
    assert list(RetryPolicy(attempts=1).delays()) == []


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base_delay": -1}, {"jitter": 1.5}])
def test_a_nonsensical_policy_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="attempts must be"):
        RetryPolicy(**kwargs)


# -- open_filesystem -------------------------------------------------------------------------------


def test_open_filesystem_gives_the_store_and_the_path_inside_it(tmp_path: Path) -> None:
    fs, path = open_filesystem(f"file://{tmp_path}")
    assert path == str(tmp_path) and fs.isdir(path)
    fs, path = open_filesystem("memory://some/where")
    assert isinstance(fs, MemoryFileSystem) and path == "/some/where"


def test_an_unknown_protocol_is_named() -> None:
    with pytest.raises(ValueError, match="'nosuchstore'"):
        open_filesystem("nosuchstore://bucket/ds")


def test_s3_without_s3fs_says_to_install_the_extra() -> None:
    # A fresh interpreter in which s3fs cannot be imported: fsspec's registry is per process.
    code = ("import sys; sys.modules['s3fs'] = None\n"
            "from pydata.datasets.store import open_filesystem\n"
            "try:\n    open_filesystem('s3://bucket/ds')\n"
            "except ValueError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert "s3://bucket/ds" in out.stdout and "pydata[s3]" in out.stdout


# -- is_transient ----------------------------------------------------------------------------------


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(("exc", "transient"), [
    (ConnectionResetError(errno.ECONNRESET, "reset by peer"), True),
    (ConnectionRefusedError(), True),
    (TimeoutError("read timed out"), True),
    (OSError(errno.ECONNRESET, "reset"), True),
    (OSError(errno.ETIMEDOUT, "timed out"), True),
    (chained(RuntimeError("while reading"), BrokenPipeError()), True),
    (FileNotFoundError(errno.ENOENT, "gone"), False),
    (PermissionError(errno.EACCES, "denied"), False),
    (chained(PermissionError("denied"), ConnectionResetError()), False),  # the outer error decides
    (OSError(errno.EIO, "i/o error"), False),
    (ValueError("bad"), False),
])
def test_builtin_errors_are_classified(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_the_context_chain_is_searched_too() -> None:
    try:
        try:
            raise ConnectionAbortedError
        except ConnectionAbortedError:
            raise RuntimeError("raised while handling it") from None
    except RuntimeError as exc:
        assert exc.__context__ is not None
        assert is_transient(exc)


def client_error(code: str, status: int) -> Any:
    botocore = pytest.importorskip("botocore.exceptions")
    response = {"Error": {"Code": code, "Message": f"the store says {code}"},
                "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.ClientError(response, "GetObject")


@pytest.mark.parametrize(("code", "status", "transient"), [
    ("SlowDown", 503, True),
    ("InternalError", 500, True),
    ("ServiceUnavailable", 503, True),
    ("ThrottlingException", 400, True),
    ("RequestTimeout", 400, True),
    ("SomethingNew", 502, True),
    ("SomethingNew", 429, True),
    ("NoSuchBucket", 404, False),
    ("NoSuchKey", 404, False),
    ("AccessDenied", 403, False),
    ("InvalidAccessKeyId", 403, False),
    ("SignatureDoesNotMatch", 403, False),
])
def test_botocore_client_errors_are_classified_raw_and_as_s3fs_translates_them(
        code: str, status: int, transient: bool) -> None:
    error = client_error(code, status)
    assert is_transient(error) is transient
    s3fs_errors = pytest.importorskip("s3fs.errors")
    assert is_transient(s3fs_errors.translate_boto_error(error)) is transient  # OSError from ClientError


def test_botocore_connection_and_credential_errors_are_classified() -> None:
    botocore = pytest.importorskip("botocore.exceptions")
    assert is_transient(botocore.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(botocore.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(botocore.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert not is_transient(botocore.NoCredentialsError())
    assert not is_transient(botocore.SSLError(endpoint_url="https://x", error="bad certificate"))


def test_aiohttp_errors_are_classified() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    assert is_transient(aiohttp.ServerDisconnectedError())
    assert is_transient(aiohttp.ClientPayloadError("body ended early"))
    assert is_transient(aiohttp.ClientResponseError(None, (), status=503))  # type: ignore[arg-type]
    assert is_transient(aiohttp.ClientResponseError(None, (), status=429))  # type: ignore[arg-type]
    assert not is_transient(aiohttp.ClientResponseError(None, (), status=403))  # type: ignore[arg-type]


# -- fetch_index / fetch_bytes ---------------------------------------------------------------------


def test_fetch_index_reads_a_file_url(dataset: tuple[Path, DatasetIndex]) -> None:
    path, index = dataset
    assert fetch_index(f"file://{path}") == index
    assert fetch_index(f"file://{path}/") == index


def test_fetch_index_reads_a_memory_url(dataset: tuple[Path, DatasetIndex]) -> None:
    path, index = dataset
    fs = MemoryFileSystem()
    fs.pipe_file("/test-remote-index/ds/index.json", (path / "index.json").read_bytes())
    try:
        assert fetch_index("memory://test-remote-index/ds") == index
    finally:
        fs.rm("/test-remote-index", recursive=True)


def test_a_missing_index_is_file_not_found_naming_the_url(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/nothing"
    with pytest.raises(FileNotFoundError, match=f"{url}/index.json") as info:
        fetch_index(url)
    assert info.value.filename == f"{url}/index.json"


def test_a_malformed_index_is_a_format_error_naming_the_url(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"format": "something-else"}')
    with pytest.raises(FormatError, match=f"file://{tmp_path}/index.json"):
        fetch_index(f"file://{tmp_path}")


class FlakyFileSystem(MemoryFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """A memory store whose reads fail with ``errors`` (in turn) before they succeed: a real fsspec
    filesystem standing for a store with a bad connection."""

    protocol = "flakymemory"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors: list[BaseException] = []

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        return super().cat_file(path, start, end, **kwargs)


@pytest.fixture
def flaky() -> Any:
    fs = FlakyFileSystem(skip_instance_cache=True)
    fs.pipe_file("/flaky/file.bin", b"payload")
    yield fs
    fs.rm("/flaky", recursive=True)


def test_transient_errors_are_retried_until_success(flaky: Any) -> None:
    flaky.errors = [ConnectionResetError(errno.ECONNRESET, "reset"), TimeoutError("slow")]
    retried: list[BaseException] = []
    assert fetch_bytes(FsspecStore(flaky), "/flaky/file.bin", url="x://f", retry=FAST, on_retry=retried.append) == b"payload"
    assert [type(e) for e in retried] == [ConnectionResetError, TimeoutError]


def test_transient_errors_that_outlive_the_retries_raise_remote_error(flaky: Any) -> None:
    flaky.errors = [ConnectionResetError(errno.ECONNRESET, "reset by peer")] * 5
    with pytest.raises(RemoteError, match=r"^x://f: ConnectionResetError: .*reset by peer.* after 3 attempts"):
        fetch_bytes(FsspecStore(flaky), "/flaky/file.bin", url="x://f", retry=FAST)
    assert len(flaky.errors) == 2
    assert issubclass(RemoteError, PydataError) and issubclass(RemoteError, OSError)


def test_a_permanent_error_is_raised_at_once(flaky: Any) -> None:
    flaky.errors = [PermissionError(errno.EACCES, "denied")]
    retried: list[BaseException] = []
    with pytest.raises(RemoteError, match=r"x://f: PermissionError: .*denied.*check the URL and credentials"):
        fetch_bytes(FsspecStore(flaky), "/flaky/file.bin", url="x://f", retry=FAST, on_retry=retried.append)
    assert retried == []


@pytest.mark.parametrize(("code", "meaning"), [
    ("NoSuchBucket", "the bucket does not exist"),
    ("InvalidAccessKeyId", "the access key id is not known"),
    ("SignatureDoesNotMatch", "the secret key does not match"),
])
def test_store_errors_are_explained(flaky: Any, code: str, meaning: str) -> None:
    s3fs_errors = pytest.importorskip("s3fs.errors")
    flaky.errors = [s3fs_errors.translate_boto_error(client_error(code, 404))]
    with pytest.raises(RemoteError, match=f"^s3://bucket/ds/index.json: {code}: {meaning}.*check the URL and credentials"):
        fetch_bytes(FsspecStore(flaky), "/flaky/file.bin", url="s3://bucket/ds/index.json", retry=FAST)


def test_no_credentials_is_explained(flaky: Any) -> None:
    botocore = pytest.importorskip("botocore.exceptions")
    flaky.errors = [botocore.NoCredentialsError()]
    with pytest.raises(RemoteError, match="NoCredentialsError: no credentials were found"):
        fetch_bytes(FsspecStore(flaky), "/flaky/file.bin", url="s3://b/i", retry=FAST)
