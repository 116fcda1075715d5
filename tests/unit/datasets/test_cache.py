"""pydata.datasets.cache: the node-wide shard cache. Downloads are verified and happen once per
node whatever the number of processes; a killed downloader leaves no lock; eviction under a limit
follows the future order and never touches a held shard. Remotes are real fsspec stores
(``file://`` directories written by ShardWriter, ``memory://``)."""

from __future__ import annotations

import concurrent.futures
import fcntl
import http.server
import json
import multiprocessing
import os
import pickle
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import pydata
from pydata.datasets.cache import ShardCache, default_cache_dir
from pydata.datasets.remote import RetryPolicy
from pydata.errors import ClosedError, RemoteError, WaitTimeoutError
from pydata.format.index import DatasetIndex, ShardEntry, read_index

FAST = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, jitter=0.0)
SPAWN = multiprocessing.get_context("spawn")


def write_dataset(path: Path, shards: int, rows: int = 4, row_bytes: int = 3000) -> DatasetIndex:
    """A dataset of ``shards`` equal shards of ``rows`` random rows each."""
    data = np.random.default_rng(0).integers(0, 256, (shards * rows, row_bytes), dtype=np.uint8)
    schema = {"x": pydata.Field("uint8", (row_bytes,))}
    with pydata.ShardWriter(path, schema, shard_bytes=rows * row_bytes, progress=False) as writer:
        writer.write_batch({"x": data})
    index = read_index(path)
    assert len(index.shards) == shards and len({s.nbytes for s in index.shards}) == 1
    return index


class Remote:
    """A dataset in a local directory, served as a ``file://`` URL."""

    def __init__(self, path: Path, shards: int = 5, **kwargs: Any) -> None:
        self.path = path
        self.index = write_dataset(path, shards, **kwargs)
        self.url = f"file://{path}"
        self.size = self.index.shards[0].nbytes

    def file(self, i: int) -> Path:
        return self.path / self.index.shards[i].file

    def cache(self, local: Path, **kwargs: Any) -> ShardCache:
        kwargs.setdefault("retry", FAST)
        return ShardCache(self.url, local, self.index, **kwargs)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return Remote(tmp_path / "remote")


def cached(cache: ShardCache) -> list[int]:
    return [i for i in range(len(cache.index.shards)) if cache.is_cached(i)]


def hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name != ".locks")


# -- download and verification ---------------------------------------------------------------------


def test_ensure_downloads_once_and_verifies(remote: Remote, tmp_path: Path) -> None:
    with remote.cache(tmp_path / "cache") as cache:
        assert not cache.is_cached(1)
        path = cache.ensure(1)
        assert path == tmp_path / "cache" / remote.index.shards[1].file == cache.path(1)
        assert path.read_bytes() == remote.file(1).read_bytes()
        assert (tmp_path / "cache" / ".locks" / f"{remote.index.shards[1].file}.lock").exists()
        assert cache.is_cached(1) and cached(cache) == [1]
        assert cache.ensure(1) == path
        assert cache.stats() == {"downloads": 1, "bytes_downloaded": remote.size, "hits": 1,
                                 "evictions": 0, "retries": 0}
        assert cache.cached_bytes() == remote.size
    assert hidden(tmp_path / "cache") == []


def test_the_default_directory_is_shared_by_every_process_of_a_node(
        remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with ShardCache(remote.url, None, remote.index) as cache:
        assert cache.local == default_cache_dir(remote.url) == default_cache_dir(remote.url + "/")
        assert cache.local.parent == tmp_path / "tmp"
        assert cache.ensure(0).read_bytes() == remote.file(0).read_bytes()
    assert default_cache_dir("file:///elsewhere") != cache.local


def test_a_memory_remote(remote: Remote, tmp_path: Path) -> None:
    fs = MemoryFileSystem()
    for entry in remote.index.shards:
        fs.pipe_file(f"/test-cache/ds/{entry.file}", (remote.path / entry.file).read_bytes())
    try:
        with ShardCache("memory://test-cache/ds", tmp_path / "cache", remote.index) as cache:
            for i in range(len(remote.index.shards)):
                assert cache.ensure(i).read_bytes() == remote.file(i).read_bytes()
    finally:
        fs.rm("/test-cache", recursive=True)


def test_verified_shards_are_reused_after_a_restart(remote: Remote, tmp_path: Path) -> None:
    with remote.cache(tmp_path / "cache") as first:
        for i in range(5):
            first.ensure(i)
    with remote.cache(tmp_path / "cache") as second:  # a new run on the same directory
        for i in range(5):
            second.ensure(i)
        assert second.stats()["downloads"] == 0 and second.stats()["hits"] == 5


def test_a_damaged_cached_file_is_deleted_and_fetched_again(remote: Remote, tmp_path: Path) -> None:
    with remote.cache(tmp_path / "cache") as cache:
        path = cache.ensure(2)
    data = bytearray(path.read_bytes())
    data[5000] ^= 0xFF  # same size: only the CRC can tell
    path.write_bytes(bytes(data))
    with remote.cache(tmp_path / "cache") as cache:
        assert cache.is_cached(2)
        assert cache.ensure(2).read_bytes() == remote.file(2).read_bytes()
        assert cache.stats()["downloads"] == 1


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_remote_shard_raises_remote_error_after_the_retries(
        remote: Remote, tmp_path: Path, how: str) -> None:
    data = bytearray(remote.file(3).read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x10
    else:
        del data[-1:]
    remote.file(3).write_bytes(bytes(data))
    with remote.cache(tmp_path / "cache") as cache:
        with pytest.raises(RemoteError, match=f"{remote.url}/{remote.index.shards[3].file}: .*after 3 attempts"):
            cache.ensure(3)
        assert cache.stats()["retries"] == 2 and cache.stats()["downloads"] == 0
        assert not cache.is_cached(3)
    assert hidden(tmp_path / "cache") == []


# -- prefetch ----------------------------------------------------------------------------------


def test_prefetched_shards_are_hits_and_prefetch_errors_surface_in_ensure(remote: Remote, tmp_path: Path) -> None:
    remote.file(4).write_bytes(b"not the shard")
    with remote.cache(tmp_path / "cache", prefetch_threads=2) as cache:
        cache.prefetch([0, 1, 4])
        for i in (0, 1):
            assert cache.ensure(i).read_bytes() == remote.file(i).read_bytes()
        with pytest.raises(RemoteError, match=f"{remote.index.shards[4].file}: .*short body"):
            cache.ensure(4)
        assert cache.stats()["downloads"] == 2 and cache.stats()["hits"] == 2


def test_a_cache_pickles_without_its_threads_and_holds(remote: Remote, tmp_path: Path) -> None:
    with remote.cache(tmp_path / "cache", cache_limit=10 * remote.size) as cache:
        cache.prefetch([0, 1])
        cache.acquire(0)
        clone = pickle.loads(pickle.dumps(cache))
        assert (clone.remote, clone.local, clone.index, clone.cache_limit) == (
            cache.remote, cache.local, cache.index, cache.cache_limit)
        assert clone.stats()["downloads"] == 0
        with pytest.raises(ValueError, match="not held"):
            clone.release(0)
        assert clone.ensure(1).read_bytes() == remote.file(1).read_bytes()
        clone.close()


def test_a_closed_cache_refuses_work(remote: Remote, tmp_path: Path) -> None:
    cache = remote.cache(tmp_path / "cache")
    cache.close()
    cache.close()
    with pytest.raises(ClosedError, match="closed"):
        cache.ensure(0)


def test_out_of_range_shards_are_named(remote: Remote, tmp_path: Path) -> None:
    with remote.cache(tmp_path / "cache") as cache, pytest.raises(IndexError, match="shard 5 .* 5 shards"):
        cache.ensure(5)


# -- several processes -------------------------------------------------------------------------


ENSURE_ALL = """
import json, pickle
cache = pickle.loads(CACHE)
BARRIER.wait(timeout=120)
for i in ORDER:
    assert cache.ensure(i).read_bytes() == EXPECTED[i]
with open(OUT, "w") as f:
    json.dump(cache.stats(), f)
cache.close()
"""


def test_eight_processes_asking_at_once_download_each_shard_once(tmp_path: Path) -> None:
    remote = Remote(tmp_path / "remote", shards=6, rows=40, row_bytes=25_000)  # about 1 MB each
    cache = remote.cache(tmp_path / "cache")
    expected = [remote.file(i).read_bytes() for i in range(6)]
    barrier = SPAWN.Barrier(8)
    processes = [SPAWN.Process(target=exec, args=(ENSURE_ALL, {
        "CACHE": pickle.dumps(cache), "BARRIER": barrier, "EXPECTED": expected,
        "ORDER": [(i + k) % 6 for i in range(6)], "OUT": str(tmp_path / f"stats-{k}.json"),
    })) for k in range(8)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=240)
    assert [p.exitcode for p in processes] == [0] * 8
    stats = [json.loads((tmp_path / f"stats-{k}.json").read_text()) for k in range(8)]
    assert sum(s["downloads"] for s in stats) == 6  # each of the 6 shards exactly once
    assert sum(s["hits"] for s in stats) == 8 * 6 - 6
    assert sum(s["bytes_downloaded"] for s in stats) == remote.index.nbytes
    assert hidden(tmp_path / "cache") == []


class StallingServer(http.server.ThreadingHTTPServer):
    """Serves a directory over HTTP (HEAD, GET, byte ranges); while ``stall`` is set, a body stops
    after its first ``STALL_AFTER`` bytes until ``stall`` is cleared: a store gone quiet mid-body."""

    STALL_AFTER = 1000
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.root = root
        self.stall = threading.Event()
        self.resume = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    server: StallingServer
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def do_GET(self) -> None:
        self._respond(body=True)

    def _respond(self, body: bool) -> None:
        file = self.server.root / self.path.lstrip("/")
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start, end = 0, len(data)
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start, end = int(ranged[1]), min(len(data), int(ranged[2]) + 1 if ranged[2] else len(data))
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        if self.server.stall.is_set():
            self.wfile.write(data[start:start + StallingServer.STALL_AFTER])
            self.wfile.flush()
            self.server.resume.wait(timeout=300)
            self.close_connection = True
            return
        self.wfile.write(data[start:end])

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def server(remote: Remote) -> Iterator[StallingServer]:
    server = StallingServer(remote.path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.resume.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=60)


HANG_IN_DOWNLOAD = """
import pickle
pickle.loads(CACHE).ensure(SHARD)
"""


def test_downloaders_killed_mid_download_leave_no_lock_behind(
        remote: Remote, server: StallingServer, tmp_path: Path) -> None:
    # Two children's downloads (shards 0 and 1) stall in the middle of the body, after each has
    # locked its shard, reserved its room and created its temporary file. Then both are killed
    # with SIGKILL, and the limit leaves room for one shard only: dead reservations must not count.
    cache = ShardCache(f"{server.url}/", tmp_path / "cache", remote.index, cache_limit=2 * remote.size,
                       retry=FAST, wait_timeout=0)
    server.stall.set()
    children = [SPAWN.Process(target=exec, args=(HANG_IN_DOWNLOAD, {"CACHE": pickle.dumps(cache), "SHARD": i}))
                for i in (0, 1)]
    files = [remote.index.shards[i].file for i in (0, 1)]
    try:
        for child in children:
            child.start()
        deadline = time.monotonic() + 120
        while len(hidden(tmp_path / "cache")) < 2 and all(c.is_alive() for c in children) and \
                time.monotonic() < deadline:
            time.sleep(0.01)  # waits for a state, not for time to pass
        assert [c.exitcode for c in children] == [None, None]
        assert [n.split(".")[1] for n in hidden(tmp_path / "cache")] == [f.split(".")[0] for f in files]
        assert sorted(p.name for p in (tmp_path / "cache" / ".locks").glob("*.inflight")) == [
            f"{f}.inflight" for f in files]  # their reservations
    finally:
        for child in children:
            if child.pid is not None:
                os.kill(child.pid, signal.SIGKILL)
            child.join(timeout=60)
    assert [c.exitcode for c in children] == [-signal.SIGKILL] * 2
    server.stall.clear()
    server.resume.set()

    for file in files:
        lock = os.open(tmp_path / "cache" / ".locks" / f"{file}.lock", os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free at once: the kernel dropped the lock
        os.close(lock)
    cache.cache_limit = remote.size
    for i in range(len(remote.index.shards)):
        assert cache.ensure(i).read_bytes() == remote.file(i).read_bytes()
    assert cache.stats()["downloads"] == 5 and cache.stats()["evictions"] == 4
    assert hidden(tmp_path / "cache") == []  # the leftover temporary files are gone
    assert not list((tmp_path / "cache" / ".locks").glob("*.inflight"))
    cache.close()


# -- eviction under a limit --------------------------------------------------------------------


def filled(remote: Remote, local: Path, shards: list[int], **kwargs: Any) -> ShardCache:
    cache = remote.cache(local, cache_limit=3 * remote.size, **kwargs)
    for i in shards:
        cache.ensure(i, future=[])
    assert cached(cache) == shards
    return cache


def test_the_shard_used_furthest_in_the_future_is_evicted_first(remote: Remote, tmp_path: Path) -> None:
    with filled(remote, tmp_path / "cache", [0, 1, 2]) as cache:
        cache.make_room(remote.size, future=[1, 0, 2, 1])
        assert cached(cache) == [0, 1]
        assert cache.stats()["evictions"] == 1


def test_shards_never_used_again_are_evicted_before_all_others(remote: Remote, tmp_path: Path) -> None:
    with filled(remote, tmp_path / "cache", [0, 1, 2]) as cache:
        cache.make_room(remote.size, future=[2, 0])
        assert cached(cache) == [0, 2]
        cache.make_room(2 * remote.size, future=np.array([2, 0]))  # a numpy order will do
        assert cached(cache) == [2]


def test_held_shards_are_never_evicted(remote: Remote, tmp_path: Path) -> None:
    with filled(remote, tmp_path / "cache", [0, 1, 2], wait_timeout=0) as cache, \
            remote.cache(tmp_path / "cache") as other:  # another descriptor, as another process has
        cache.acquire(2)
        other.acquire(1)
        cache.make_room(remote.size, future=[0, 1, 2])  # 0 is needed first, but the others are held
        assert cached(cache) == [1, 2]
        with pytest.raises(WaitTimeoutError, match=f"{tmp_path / 'cache'}: no room for .* held"):
            cache.make_room(2 * remote.size, future=[])
        assert cached(cache) == [1, 2]
        other.close()  # releases its holds
        cache.make_room(2 * remote.size, future=[])
        assert cached(cache) == [2]
        with cache.hold(2), cache.hold(2):
            pass
        cache.release(2)
        cache.make_room(3 * remote.size, future=[])
        assert cached(cache) == []


def test_ensure_waits_for_another_process_to_release_room(remote: Remote, tmp_path: Path) -> None:
    with filled(remote, tmp_path / "cache", [0, 1, 2]) as holder, remote.cache(
            tmp_path / "cache", cache_limit=3 * remote.size, wait_timeout=120) as waiter:
        for i in (0, 1, 2):
            holder.acquire(i)
        done: list[Path] = []
        thread = threading.Thread(target=lambda: done.append(waiter.ensure(3, future=[])))
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not done  # every cached shard is held: it waits
        holder.release(1)
        thread.join(timeout=120)
        assert done == [waiter.path(3)] and cached(holder) == [0, 2, 3]


def test_reading_through_a_dataset_larger_than_the_limit(remote: Remote, tmp_path: Path) -> None:
    order = [0, 1, 2, 3, 4, 0, 3]
    with remote.cache(tmp_path / "cache", cache_limit=2 * remote.size, prefetch_threads=2) as cache:
        for step, i in enumerate(order):
            cache.prefetch(order[step:step + 3])
            with cache.hold(i):
                assert cache.ensure(i, future=order[step:]).read_bytes() == remote.file(i).read_bytes()
                assert cache.cached_bytes() <= 2 * remote.size
        stats = cache.stats()
    assert stats["downloads"] + stats["hits"] >= len(order)
    assert stats["evictions"] == stats["downloads"] - 2


def test_a_prefetch_never_evicts_a_shard_needed_before_its_own(remote: Remote, tmp_path: Path) -> None:
    with filled(remote, tmp_path / "cache", [0, 1], prefetch_threads=1) as cache:
        cache.cache_limit = 2 * remote.size
        cache.prefetch([0, 1, 2])  # 0 and 1 are needed first: no room for 2
        concurrent.futures.wait(list(cache._pending.values()))  # private: waits without ensure()
        assert cached(cache) == [0, 1] and cache.stats()["evictions"] == 0
        cache.prefetch([1, 3])  # 0 is not needed again: it makes room for 3
        concurrent.futures.wait(list(cache._pending.values()))
        assert cached(cache) == [1, 3] and cache.stats()["evictions"] == 1
        cache.prefetch([4, 3, 1])  # 4 is needed first: 1, needed last, makes room
        concurrent.futures.wait(list(cache._pending.values()))
        assert cached(cache) == [3, 4] and cache.stats()["evictions"] == 2


def test_check_limit_names_what_the_readers_need(tmp_path: Path) -> None:
    mib = 1 << 20
    index = DatasetIndex({}, tuple(ShardEntry(f"s{i}", 1, n * mib, 0) for i, n in enumerate([64, 8, 64, 32])))
    cache = ShardCache(f"file://{tmp_path}", tmp_path / "cache", index, cache_limit=10 * mib)
    with pytest.raises(ValueError, match=r"cache_limit 10.0 MiB is smaller than what the readers need at "
                                         r"once: 3 shards of up to 64.0 MiB \(160.0 MiB in all\)"):
        cache.check_limit(3)
    cache.cache_limit = 160 * mib
    cache.check_limit(3)
    with pytest.raises(ValueError, match="smaller than one shard of 64.0 MiB"):
        ShardCache(f"file://{tmp_path}", tmp_path / "cache", index, cache_limit=mib).ensure(0)
    ShardCache(f"file://{tmp_path}", tmp_path / "cache", index).check_limit(4)  # no limit
