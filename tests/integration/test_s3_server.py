"""The S3 test infrastructure itself, through s3fs over real HTTP: the moto server fixture, the
bucket/options/upload fixtures, and the fault-injecting proxy (pass-through fidelity, each fault
kind, a seeded random fault storm survived by a retry loop written here). Also pins down what
s3fs raises against moto for a missing bucket and for bad credentials, which the streaming code
(pydata/datasets/streaming.py, cache.py) has to translate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.s3, pytest.mark.usefixtures("loopback_guard")]

MiB = 1 << 20


def _payload(n: int, seed: int = 0) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).bytes(n)


def _fs(options: dict[str, Any], *, retries: bool = True) -> Any:
    """A private S3FileSystem; ``retries=False`` turns off both botocore's and s3fs's retries,
    so every fault the proxy injects surfaces as one exception."""
    import s3fs

    options = dict(options)
    if not retries:
        options["config_kwargs"] = {"retries": {"mode": "standard", "total_max_attempts": 1}}
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    if not retries:
        fs.retries = 1  # s3fs's own loop (_error_wrapper); not a constructor argument
    return fs


# -- the server fixture --------------------------------------------------------------------------


def test_server_is_local_with_dummy_credentials(s3_server: Any) -> None:
    url = urlsplit(s3_server.endpoint_url)
    assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", s3_server.port)
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert not Path(os.environ["AWS_CONFIG_FILE"]).exists()
    assert not Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"]).exists()
    assert "127.0.0.1" in os.environ["NO_PROXY"]
    assert not {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} & set(os.environ)


def test_write_and_read_through_endpoint(s3_options: dict[str, Any], s3_bucket: str,
                                         loopback_guard: list[Any]) -> None:
    import fsspec

    data = _payload(100_000)
    fs = _fs(s3_options)
    fs.pipe(f"{s3_bucket}/dir/obj.bin", data)
    assert fs.cat(f"{s3_bucket}/dir/obj.bin") == data
    assert fs.info(f"{s3_bucket}/dir/obj.bin")["size"] == len(data)
    assert fs.ls(f"{s3_bucket}/dir", detail=False) == [f"{s3_bucket}/dir/obj.bin"]
    with fsspec.open(f"s3://{s3_bucket}/dir/obj.bin", "rb", **s3_options) as f:
        f.seek(1000)
        assert f.read(10) == data[1000:1010]
    assert loopback_guard, "the guard saw no connection: is it wired in?"
    assert {addr[0] for addr in loopback_guard} == {"127.0.0.1"}


def test_buckets_are_fresh(s3_options: dict[str, Any], s3_bucket: str) -> None:
    fs = _fs(s3_options)
    assert fs.ls(s3_bucket) == []
    assert s3_bucket.startswith("test-")


def test_upload_dataset(make_dataset: Any, upload_dataset: Any, s3_bucket: str,
                        s3_options: dict[str, Any]) -> None:
    ds = make_dataset(30, shard_bytes=1024)
    url = upload_dataset(ds.path, s3_bucket, "train/v1")
    assert url == f"s3://{s3_bucket}/train/v1"
    local = sorted(p.name for p in ds.path.iterdir())
    assert "index.json" in local
    assert len(ds.shard_paths()) > 1
    fs = _fs(s3_options)
    remote = sorted(p.rsplit("/", 1)[1] for p in fs.ls(url, detail=False))
    assert remote == local
    for name in local:
        assert fs.cat(f"{url}/{name}") == (ds.path / name).read_bytes(), name


# -- the proxy without faults --------------------------------------------------------------------


def test_proxy_forwards_byte_identical(fault_proxy: Any, proxy_s3_options: dict[str, Any],
                                       s3_bucket: str) -> None:
    assert urlsplit(fault_proxy.endpoint_url).hostname == "127.0.0.1"
    data = _payload(3 * MiB + 123)  # several proxy chunks; multipart is not involved (< 5 MiB)
    fs = _fs(proxy_s3_options)
    path = f"{s3_bucket}/big.bin"
    fs.pipe(path, data)  # PUT with a body through the proxy
    assert fs.cat(path) == data
    assert fs.cat_file(path, start=1_000_000, end=1_000_100) == data[1_000_000:1_000_100]
    assert fs.cat_file(path, start=-10) == data[-10:]  # suffix range
    with fs.open(path, "rb", block_size=256 * 1024) as f:  # ranged block reads
        f.seek(2 * MiB + 7)
        assert f.read(300_000) == data[2 * MiB + 7 : 2 * MiB + 7 + 300_000]
    assert fs.info(path)["size"] == len(data)  # HEAD
    assert fs.ls(s3_bucket, detail=False) == [path]  # listing
    fs.rm(path)  # DELETE
    assert not fs.exists(path)
    assert fault_proxy.counts["forwarded"] >= 8
    assert {k: fault_proxy.counts[k] for k in ("fail_503", "reset", "truncate")} == \
        {"fail_503": 0, "reset": 0, "truncate": 0}
    ranges = [p for m, p, outcome in fault_proxy.log if m == "GET" and outcome == "206"]
    assert ranges, fault_proxy.log
    assert fault_proxy.errors == []


def test_proxy_only_loopback_and_stops_cleanly(fault_proxy: Any, s3_server: Any,
                                               s3_bucket: str) -> None:
    import http.client
    import threading

    proxy_class = type(fault_proxy)
    with pytest.raises(ValueError, match="loopback"):
        proxy_class("http://192.0.2.1:80")
    before = set(threading.enumerate())
    proxy = proxy_class(s3_server.endpoint_url).start()
    port = urlsplit(proxy.endpoint_url).port
    assert port is not None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/{s3_bucket}?list-type=2")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert not response.will_close  # keep-alive: a handler thread now waits on this socket
        proxy.stop()  # must wake that handler and join it
    finally:
        conn.close()
    assert set(threading.enumerate()) <= before
    assert proxy.counts["forwarded"] == 1
    assert proxy.errors == []


# -- the proxy with faults -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fail_503", "reset", "truncate"])
def test_proxy_injects_scheduled_fault(kind: str, fault_proxy: Any,
                                       proxy_s3_options: dict[str, Any], s3_bucket: str) -> None:
    data = _payload(200_000, seed=1)
    fs = _fs(proxy_s3_options, retries=False)
    path = f"{s3_bucket}/obj.bin"
    fs.pipe(path, data)
    # aiohttp itself resends an idempotent request once after a dropped connection (RFC 9112
    # 9.3.1.1), even with botocore's and s3fs's retries off: one reset is invisible, two are not.
    count = 2 if kind == "reset" else 1
    fault_proxy.inject_next(kind, count)
    # What s3fs 2026.9 (aiobotocore 3.10, aiohttp 3.14) raises with its retries off; the
    # streaming code's retry logic has to recognize all three:
    #   fail_503 -> OSError(errno.EBUSY, "Please reduce your request rate.") (s3fs maps SlowDown);
    #   reset    -> botocore.exceptions.EndpointConnectionError ("Could not connect to the
    #               endpoint URL", although it did connect), a BotoCoreError, not an OSError;
    #   truncate -> aiohttp.ClientPayloadError ("Response payload is not completed"), raw.
    import errno

    import aiohttp
    import botocore.exceptions

    expected = {"fail_503": OSError, "reset": botocore.exceptions.EndpointConnectionError,
                "truncate": aiohttp.ClientPayloadError}[kind]
    with pytest.raises(expected) as info:
        fs.cat_file(path, start=0, end=len(data))
    if kind == "fail_503":
        assert info.value.errno == errno.EBUSY
        assert "reduce your request rate" in str(info.value)
    assert fault_proxy.counts[kind] == count
    assert fs.cat_file(path, start=0, end=len(data)) == data  # the schedule is used up
    assert fault_proxy.errors == []


def test_proxy_random_faults_survived_by_retry_loop(
        fault_proxy: Any, proxy_s3_options: dict[str, Any], s3_bucket: str) -> None:
    data = _payload(1 * MiB + 17, seed=2)
    fs = _fs(proxy_s3_options, retries=False)
    path = f"{s3_bucket}/obj.bin"
    fs.pipe(path, data)  # with only_get_objects, uploads are spared
    fault_proxy.set_faults(fail_503=0.2, reset=0.2, truncate=0.2, seed=1234)
    # Each failed attempt costs 0.1 s: s3fs sleeps after a retryable error even on its last try.
    reads = [(None, None), (0, 4096), (500_000, 900_000), (len(data) - 100, None)] * 3
    failures: list[str] = []
    for start, end in reads:
        for _attempt in range(50):
            try:
                got = fs.cat_file(path, start=start, end=end)
            except Exception as exc:  # any failure is retried, by design here
                failures.append(type(exc).__name__)
                continue
            # A fault must never pass silently as short or wrong bytes.
            assert got == data[start:end], (start, end, len(got))
            break
        else:
            pytest.fail(f"read {start}:{end} failed 50 times: {failures[-5:]}")
    counts = fault_proxy.counts
    assert counts["fail_503"] >= 1, counts
    assert counts["reset"] >= 1, counts
    assert counts["truncate"] >= 1, counts
    # Every failure is an injected fault; not every fault is a failure (aiohttp resends once
    # after a reset).
    assert 1 <= len(failures) <= counts["fail_503"] + counts["reset"] + counts["truncate"], \
        (failures, counts)
    assert fault_proxy.errors == []
    fault_proxy.clear()
    assert fs.cat(path) == data
    assert fault_proxy.counts["forwarded"] >= 1
    assert sum(fault_proxy.counts[k] for k in ("fail_503", "reset", "truncate")) == 0


# -- errors as s3fs raises them against moto -----------------------------------------------------


def test_missing_bucket_raises_file_not_found(s3_options: dict[str, Any]) -> None:
    fs = _fs(s3_options)
    # moto answers NoSuchBucket (404); s3fs maps it to FileNotFoundError for every operation.
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        fs.cat("no-such-bucket-x/key")
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-bucket-x")
    with pytest.raises(FileNotFoundError):
        fs.info("no-such-bucket-x/key")
    with pytest.raises(FileNotFoundError):
        fs.open("no-such-bucket-x/key", "rb")


def test_missing_key_raises_file_not_found(s3_options: dict[str, Any], s3_bucket: str) -> None:
    fs = _fs(s3_options)
    with pytest.raises(FileNotFoundError):
        fs.cat(f"{s3_bucket}/missing")
    with pytest.raises(FileNotFoundError):
        fs.open(f"{s3_bucket}/missing", "rb")


def test_moto_accepts_any_credentials_by_default(s3_options: dict[str, Any],
                                                 s3_bucket: str) -> None:
    # moto does not check credentials unless told to (see the next test): a wrong key and secret
    # read the object as well as the right ones. Tests of credential errors need set_auth(True).
    _fs(s3_options).pipe(f"{s3_bucket}/obj", b"abc")
    wrong = {**s3_options, "key": "wrong", "secret": "wrong"}
    assert _fs(wrong).cat(f"{s3_bucket}/obj") == b"abc"


def test_moto_auth_mode_rejects_bad_credentials(s3_server: Any, s3_options: dict[str, Any],
                                                s3_bucket: str) -> None:
    import json

    _fs(s3_options).pipe(f"{s3_bucket}/obj", b"abc")
    iam = s3_server.boto3_client("iam")
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    good = {**s3_options, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    s3_server.set_auth(True)
    try:
        assert _fs(good).cat(f"{s3_bucket}/obj") == b"abc"
        # Wrong secret: SignatureDoesNotMatch (403) -> PermissionError. Unknown key:
        # InvalidAccessKeyId (403) -> PermissionError. The dummy "testing" key is unknown to IAM.
        for options in ({**good, "secret": "wrong"}, {**good, "key": "AKIANOSUCHKEY0000000"},
                        s3_options):
            with pytest.raises(PermissionError):
                _fs(options).cat(f"{s3_bucket}/obj")
    finally:
        s3_server.set_auth(False)
        iam.delete_user_policy(UserName="reader", PolicyName="s3")
        iam.delete_access_key(UserName="reader", AccessKeyId=key["AccessKeyId"])
        iam.delete_user(UserName="reader")
    assert _fs(s3_options).cat(f"{s3_bucket}/obj") == b"abc"  # back to accepting anything
