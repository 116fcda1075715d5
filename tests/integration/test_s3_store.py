"""S3Store (botocore's client) against the local S3 server over HTTP: whole objects, ranges,
ranges past the end, empty objects, missing objects and buckets, and a client per process."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest

from pydata.datasets import store as store_module
from pydata.datasets.remote import RetryPolicy, fetch_bytes
from pydata.datasets.store import S3Store
from pydata.errors import RemoteError

pytestmark = [pytest.mark.integration, pytest.mark.s3, pytest.mark.usefixtures("loopback_guard")]

DATA = bytes(range(256)) * 1000


@pytest.fixture
def store(s3_server: Any, s3_bucket: str, s3_options: dict[str, Any]) -> S3Store:
    client = s3_server.boto3_client()
    client.put_object(Bucket=s3_bucket, Key="dir/data.bin", Body=DATA)
    client.put_object(Bucket=s3_bucket, Key="dir/empty.bin", Body=b"")
    return S3Store(s3_options, connections=2)


def test_whole_objects_and_ranges(store: S3Store, s3_bucket: str) -> None:
    path = f"{s3_bucket}/dir/data.bin"
    assert store.read(path) == DATA
    assert store.read(path, 1000, 70_000) == DATA[1000:70_000]
    assert store.read(path, None, 10) == DATA[:10]
    assert store.read(path, 255_990) == DATA[255_990:]
    assert store.read(path, 255_990, 300_000) == DATA[255_990:]  # past the end: what there is
    assert store.read(path, 5, 5) == b""


def test_empty_objects_and_ranges_past_the_end(store: S3Store, s3_bucket: str) -> None:
    assert store.read(f"{s3_bucket}/dir/empty.bin") == b""
    assert store.read(f"{s3_bucket}/dir/empty.bin", 0, 1) == b""
    assert store.read(f"{s3_bucket}/dir/data.bin", len(DATA), len(DATA) + 1) == b""


def test_a_missing_object_is_file_not_found(store: S3Store, s3_bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/dir/nothing.bin"):
        store.read(f"{s3_bucket}/dir/nothing.bin")
    with pytest.raises(FileNotFoundError, match="not found"):
        fetch_bytes(store, f"{s3_bucket}/dir/nothing.bin", url="s3://x/nothing", retry=RetryPolicy(attempts=1))


def test_a_missing_bucket_is_a_permanent_error(store: S3Store) -> None:
    with pytest.raises(RemoteError, match="NoSuchBucket: the bucket does not exist") as info:
        fetch_bytes(store, "no-such-bucket-here/x", url="s3://no-such-bucket-here/x",
                    retry=RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0))
    assert "attempts" not in str(info.value)  # refused at once


def _read_in_child(store: S3Store, path: str, out: Any) -> None:
    out.put(store.read(path, 0, 100))


def test_a_forked_child_makes_its_own_client(store: S3Store, s3_bucket: str) -> None:
    path = f"{s3_bucket}/dir/data.bin"
    assert store.read(path, 0, 10) == DATA[:10]  # the parent's client exists before the fork
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(store, path, out))
    child.start()
    got = out.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0 and got == DATA[:100]
    assert {pid for pid, _, _ in store_module._clients} == {os.getpid()}  # the child's stayed in the child


def test_stores_with_the_same_options_share_a_client(store: S3Store, s3_bucket: str,
                                                     s3_options: dict[str, Any]) -> None:
    other = S3Store(dict(s3_options), connections=2)
    assert other.read(f"{s3_bucket}/dir/data.bin", 0, 10) == store.read(f"{s3_bucket}/dir/data.bin", 0, 10)
    assert other._client() is store._client()
    assert S3Store(s3_options, connections=3)._client() is not store._client()
