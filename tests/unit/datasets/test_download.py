"""pydata.datasets.download: checked, atomic downloads in ranged parts over real fsspec filesystems
(``file://`` directories written by ShardWriter, ``memory://``), and the PartPool's order."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from fsspec.implementations.memory import MemoryFileSystem

import pydata
from pydata.datasets import download as download_module
from pydata.datasets.download import PartPool, download
from pydata.datasets.remote import RetryPolicy
from pydata.datasets.store import FsspecStore, open_filesystem
from pydata.errors import ClosedError, RemoteError
from pydata.format.index import DatasetIndex

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- download --------------------------------------------------------------------------------------


@pytest.fixture(params=["one GET", "ranged parts, in this thread", "ranged parts, on a pool"])
def transfer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[PartPool | None]:
    """A download test runs three ways: the file in one GET; in ranged parts (PART_BYTES made
    small) fetched one after another; and in parts on a pool of three connections."""
    if request.param != "one GET":
        monkeypatch.setattr(download_module, "PART_BYTES", 4096)
    pool = PartPool(3) if request.param.endswith("pool") else None
    yield pool
    if pool is not None:
        pool.close()


@pytest.fixture
def fetch(transfer: PartPool | None) -> Callable[..., None]:
    """Downloads shard ``shard`` of the dataset at ``path`` to ``dest``, the ``transfer`` way."""
    def run(path: Path, index: DatasetIndex, dest: Path, shard: int = 0, **kwargs: Any) -> None:
        entry = index.shards[shard]
        fs, root = open_filesystem(f"file://{path}")
        kwargs.setdefault("retry", FAST)
        download(FsspecStore(fs), f"{root}/{entry.file}", dest, url=f"file://{path}/{entry.file}",
                 expected_nbytes=entry.nbytes, expected_crc32c=entry.crc32c, pool=transfer, **kwargs)
    return run


def test_download_writes_the_verified_file(dataset: tuple[Path, DatasetIndex],
                                           tmp_path: Path, fetch: Callable[..., None]) -> None:
    path, index = dataset
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "shard").write_bytes(b"an older file is replaced")
    fetch(path, index, cache / "shard", shard=1)
    assert (cache / "shard").read_bytes() == (path / index.shards[1].file).read_bytes()
    assert names(cache) == ["shard"]


def test_download_from_memory(dataset: tuple[Path, DatasetIndex], tmp_path: Path,
                              transfer: PartPool | None) -> None:
    path, index = dataset
    entry = index.shards[0]
    fs = MemoryFileSystem()
    fs.pipe_file(f"/test-remote-download/{entry.file}", (path / entry.file).read_bytes())
    try:
        download(FsspecStore(fs), f"/test-remote-download/{entry.file}", tmp_path / "s", url="memory://x",
                 expected_nbytes=entry.nbytes, expected_crc32c=entry.crc32c, retry=FAST, pool=transfer)
    finally:
        fs.rm("/test-remote-download", recursive=True)
    assert pydata.checksum((tmp_path / "s").read_bytes()) == entry.crc32c


def damage(file: Path, how: str) -> None:
    data = bytearray(file.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    elif how == "truncate":
        del data[-100:]
    else:
        data += b"extra"
    file.write_bytes(bytes(data))


@pytest.mark.parametrize(("how", "message"), [
    ("flip", r"CRC-32C 0x[0-9a-f]{8} differs from the index's 0x[0-9a-f]{8}"),
    ("truncate", r"short body: \d+ of \d+ bytes"),
    ("extend", r"longer than the index's \d+ bytes"),
])
def test_a_damaged_remote_shard_is_fetched_again_then_named(
        dataset: tuple[Path, DatasetIndex], tmp_path: Path, how: str, message: str,
        fetch: Callable[..., None]) -> None:
    path, index = dataset
    damage(path / index.shards[0].file, how)
    retried: list[BaseException] = []
    with pytest.raises(RemoteError, match=f"file://{path}/{index.shards[0].file}: .*{message}.*after 3 attempts"):
        fetch(path, index, tmp_path / "dest", on_retry=retried.append)
    assert len(retried) == 2
    assert names(tmp_path) == ["remote"]  # no dest, no temporary file


def test_a_body_damaged_in_transit_is_fetched_again(dataset: tuple[Path, DatasetIndex], tmp_path: Path,
                                                    fetch: Callable[..., None]) -> None:
    path, index = dataset
    file = path / index.shards[0].file
    good = file.read_bytes()
    damage(file, "flip")
    fetch(path, index, tmp_path / "dest", on_retry=lambda _: file.write_bytes(good))  # repaired on retry
    assert (tmp_path / "dest").read_bytes() == good


def test_a_missing_remote_shard_is_file_not_found_naming_the_url(
        dataset: tuple[Path, DatasetIndex], tmp_path: Path, fetch: Callable[..., None]) -> None:
    path, index = dataset
    (path / index.shards[0].file).unlink()
    with pytest.raises(FileNotFoundError, match=f"file://{path}/{index.shards[0].file}: not found"):
        fetch(path, index, tmp_path / "dest")
    assert names(tmp_path) == ["remote"]


def test_a_full_disk_is_reported_with_the_size_and_the_directory(
        dataset: tuple[Path, DatasetIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fetch: Callable[..., None]) -> None:
    path, index = dataset
    writes: list[int] = []

    def disk_full(fd: int, data: memoryview, offset: int) -> None:
        writes.append(fd)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(download_module, "_write_all", disk_full)  # the one place downloads write
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(OSError, match=f"disk full: needed {index.shards[0].nbytes} bytes in {cache}") as info:
        fetch(path, index, cache / "dest")
    assert info.value.errno == errno.ENOSPC
    assert len(writes) >= 1  # not retried: one write, or one per part already in flight
    assert len(writes) <= 4
    assert names(cache) == []  # the temporary file is gone


def test_a_closed_pool_is_reported_as_closed(dataset: tuple[Path, DatasetIndex], tmp_path: Path) -> None:
    path, index = dataset
    pool = PartPool(2)
    pool.close()
    fs, root = open_filesystem(f"file://{path}")
    entry = index.shards[0]
    with pytest.raises(ClosedError, match="closed"):
        download(FsspecStore(fs), f"{root}/{entry.file}", tmp_path / "dest", url="file://x", retry=FAST,
                 expected_nbytes=entry.nbytes, expected_crc32c=entry.crc32c, pool=pool)
    assert names(tmp_path) == ["remote"]


# -- PartPool ----------------------------------------------------------------------------------------


def test_the_most_urgent_part_runs_first() -> None:
    pool = PartPool(1)
    gate, ran = threading.Event(), []
    try:
        blocker = pool.submit(0, lambda: gate.wait(30) and None)  # occupies the one connection
        futures = [pool.submit(priority, lambda name=name: ran.append(name))
                   for name, priority in (("late", 5), ("urgent", 1), ("middle", 3), ("urgent too", 1))]
        gate.set()
        for future in [blocker, *futures]:
            future.result(timeout=30)
    finally:
        pool.close()
    assert ran == ["urgent", "urgent too", "middle", "late"]  # equal priorities: first come first


def test_parts_run_side_by_side_up_to_the_connections() -> None:
    pool = PartPool(2)
    both = threading.Barrier(2, timeout=30)  # breaks (and fails the test) unless two run at once
    running, most, lock = [0], [0], threading.Lock()

    def part() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        both.wait()
        with lock:
            running[0] -= 1

    try:
        futures = [pool.submit(0, part) for _ in range(4)]
        for future in futures:
            future.result(timeout=30)
    finally:
        pool.close()
    assert most[0] == 2


def test_a_failed_part_hands_its_error_to_the_waiter_and_close_cancels_the_queue() -> None:
    pool = PartPool(1)
    started, gate = threading.Event(), threading.Event()

    def fail() -> None:
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    def block() -> None:
        started.set()
        gate.wait(30)

    blocker = pool.submit(0, block)
    assert started.wait(30)
    failing, queued = pool.submit(0, fail), pool.submit(0, lambda: None)
    pool.close()  # `queued` and `failing` never started: cancelled
    gate.set()
    blocker.result(timeout=30)
    assert failing.cancelled() and queued.cancelled()
    with pytest.raises(ClosedError):
        pool.submit(0, lambda: None)
    pool2 = PartPool(1)
    try:
        with pytest.raises(ConnectionResetError, match="reset"):
            pool2.submit(0, fail).result(timeout=30)
    finally:
        pool2.close()


@given(st.integers(0, 50 * download_module.PART_BYTES))
def test_parts_cover_the_file_in_order_at_about_the_part_size(nbytes: int) -> None:
    bounds = download_module.part_bounds(nbytes)
    assert bounds[0][0] == 0 and bounds[-1][1] == nbytes
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [end - start for start, end in bounds]
    assert max(sizes) - min(sizes) <= 1
    part = download_module.PART_BYTES
    if len(bounds) > 1:
        assert all(2 * part // 3 <= size <= 3 * part // 2 for size in sizes), sizes
    else:
        assert nbytes < 3 * part // 2


def test_a_shard_just_over_the_part_size_is_one_get() -> None:
    part = download_module.PART_BYTES
    assert download_module.part_bounds(part + 6800) == [(0, part + 6800)]
    assert len(download_module.part_bounds(2 * part + 6800)) == 2


def test_part_bytes_sets_the_ranged_gets(dataset: tuple[Path, DatasetIndex], tmp_path: Path) -> None:
    path, index = dataset
    entry = index.shards[0]
    fs, root = open_filesystem(f"file://{path}")
    ranges: list[tuple[int, int]] = []

    class Counting(FsspecStore):
        def chunks(self, path: str, start: int, end: int) -> Iterator[bytes]:
            ranges.append((start, end))
            return super().chunks(path, start, end)

    pool = PartPool(2)
    try:
        download(Counting(fs), f"{root}/{entry.file}", tmp_path / "s", url="file://x", retry=FAST,
                 expected_nbytes=entry.nbytes, expected_crc32c=entry.crc32c, pool=pool, part_bytes=1000)
    finally:
        pool.close()
    bounds = download_module.part_bounds(entry.nbytes, 1000)
    assert len(bounds) > 2
    assert sorted((a, b if b < entry.nbytes else b - 1) for a, b in ranges) == bounds  # the last asks 1 more
    assert (tmp_path / "s").read_bytes() == (path / entry.file).read_bytes()
    with pytest.raises(ValueError, match="part_bytes must be >= 1, got 0"):
        download_module.part_bounds(10, 0)
