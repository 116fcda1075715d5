"""StreamingDataset against a real S3-compatible server on 127.0.0.1 (moto over HTTP, s3fs with an
endpoint URL), directly and through a proxy that injects 503s, connection resets and truncated
bodies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import pydata
from pydata.datasets.remote import RetryPolicy
from pydata.datasets.streaming import StreamingDataset
from pydata.errors import RemoteError

pytestmark = [pytest.mark.integration, pytest.mark.s3, pytest.mark.usefixtures("loopback_guard")]

SAMPLES = 240


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    data = {"image": rng.integers(0, 256, (SAMPLES, 3, 16, 16), dtype=np.uint8),
            "label": np.arange(SAMPLES, dtype=np.int64),
            "caption": [f"sample {i}" for i in range(SAMPLES)]}
    path = tmp_path / "ds"
    schema = {"image": pydata.Field("uint8", (3, 16, 16)), "label": pydata.Field("int64", ()),
              "caption": pydata.Field("str")}
    with pydata.ShardWriter(path, schema, shard_bytes=30_000, progress=False) as writer:
        writer.write_batch(data)
    return path, data


@pytest.fixture(params=["one GET", "ranged parts"])
def part_bytes(request: pytest.FixtureRequest) -> int | None:
    """Shards come whole (the default part size), or as parallel ranged GETs of 8 KiB."""
    return None if request.param == "one GET" else 8192


@pytest.fixture(params=["botocore", "fsspec"])
def s3_client(request: pytest.FixtureRequest) -> str:
    """Both ways of reading s3://: botocore's client (the default) and s3fs."""
    return str(request.param)


def check_epoch(ds: StreamingDataset, data: dict[str, np.ndarray]) -> None:
    ids = []
    for batch in ds:
        labels = batch["label"].numpy()
        np.testing.assert_array_equal(batch["image"].numpy(), data["image"][labels])
        assert batch["caption"] == [data["caption"][i] for i in labels]
        ids.extend(labels.tolist())
    assert sorted(ids) == list(range(SAMPLES))


def test_an_epoch_from_s3(dataset: tuple[Path, Any], s3_bucket: str, s3_options: dict[str, Any],
                          upload_dataset: Callable[..., str], tmp_path: Path, s3_client: str,
                          part_bytes: int | None) -> None:
    url = upload_dataset(dataset[0], s3_bucket)
    ds = StreamingDataset(url, batch_size=32, local=tmp_path / "cache", storage_options=s3_options,
                          s3_client=s3_client, part_bytes=part_bytes)  # type: ignore[arg-type]
    assert max(s.nbytes for s in ds.index.shards) > 2 * 8192  # several parts when ranged
    assert type(ds.cache.store).__name__ == {"botocore": "S3Store", "fsspec": "FsspecStore"}[s3_client]
    assert len(ds.index.shards) >= 5
    check_epoch(ds, dataset[1])
    assert ds.cache.stats()["downloads"] == len(ds.index.shards)
    check_epoch(ds, dataset[1])  # the second epoch reads the cache
    assert ds.cache.stats()["downloads"] == len(ds.index.shards)


def test_faults_on_the_wire_lose_nothing(dataset: tuple[Path, Any], s3_bucket: str,
                                         upload_dataset: Callable[..., str], fault_proxy: Any,
                                         proxy_s3_options: dict[str, Any], tmp_path: Path,
                                         s3_client: str, part_bytes: int | None) -> None:
    url = upload_dataset(dataset[0], s3_bucket)
    ds = StreamingDataset(url, batch_size=32, local=tmp_path / "cache", storage_options=proxy_s3_options,
                          cache_limit=None, s3_client=s3_client, part_bytes=part_bytes)  # type: ignore[arg-type]
    # Every kind surely (two resets in a row: aiohttp silently resends once), then at random.
    for kind in ("fail_503", "reset", "reset", "truncate"):
        fault_proxy.inject_next(kind)
    fault_proxy.set_faults(fail_503=0.15, reset=0.1, truncate=0.15, seed=3)
    check_epoch(ds, dataset[1])
    counts = fault_proxy.counts
    assert counts["fail_503"] and counts["reset"] and counts["truncate"], counts


def test_a_missing_bucket_fails_fast_naming_the_url(s3_server: Any, s3_options: dict[str, Any],
                                                    tmp_path: Path) -> None:
    with pytest.raises((FileNotFoundError, RemoteError), match="no-such-bucket"):
        StreamingDataset("s3://no-such-bucket/ds", batch_size=8, local=tmp_path / "cache",
                         storage_options=s3_options)


def test_a_dead_endpoint_gives_up_naming_the_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"},
               "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    with pytest.raises(RemoteError, match="s3://bucket/ds"):
        pydata.datasets.remote.fetch_index("s3://bucket/ds", options,
                                           RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))


def test_bad_credentials_fail_fast_naming_the_url(dataset: tuple[Path, Any], s3_server: Any, s3_bucket: str,
                                                  s3_options: dict[str, Any], upload_dataset: Callable[..., str],
                                                  tmp_path: Path) -> None:
    url = upload_dataset(dataset[0], s3_bucket)
    s3_server.set_auth(True)  # moto checks keys from here on; "testing" is not a valid one
    try:
        with pytest.raises((PermissionError, RemoteError), match=url) as info:
            StreamingDataset(url, batch_size=8, local=tmp_path / "cache",
                             storage_options=s3_options | {"skip_instance_cache": True})
    finally:
        s3_server.set_auth(False)
    assert "credentials" in str(info.value)
    assert "attempts" not in str(info.value), info.value  # refused at once, not after the retries
