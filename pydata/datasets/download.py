"""Downloading shards: ranged GETs on a fixed set of connections, most urgent shard first.

A shard is fetched as parts of :data:`PART_BYTES` (ranged GETs), each retried on its own and
written at its offset into a hidden temporary file; the whole is then checked against the
index's size and CRC-32C and renamed into place, so a reader never sees half a shard. It is not
fsynced: the cache is a copy, and a file that a crash may have left damaged is caught by the
CRC-32C check that every other process and every later run makes before first use.
The parts of every download of a process share one :class:`PartPool`, which runs the parts of
the shard needed soonest first. Shards therefore arrive in the order of use, each with the
whole bandwidth of the pool, instead of several shards crawling in side by side while the
reader waits for the first: what the time to first batch depends on. Parts may finish out of
order; the CRC-32C runs over them in order, so a part that arrives early stays in memory until
those before it are in (at most about one part per connection).
"""

from __future__ import annotations

import concurrent.futures
import errno
import heapq
import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pydata._core import checksum
from pydata.datasets.remote import (
    DamagedBody,
    LocalFailure,
    OnRetry,
    RetryPolicy,
    with_retries,
)
from pydata.datasets.store import Store
from pydata.errors import ClosedError, RemoteError
from pydata.format.atomic import temp_name

__all__ = ["CHUNK_BYTES", "PART_BYTES", "PartPool", "download", "file_crc32c", "part_bounds"]

CHUNK_BYTES = 4 << 20
"""Bytes read per step when a file's CRC-32C is checked (:func:`file_crc32c`)."""

PART_BYTES = 64 << 20
"""The default size of one ranged GET: a file comes in parts of about this many bytes
(:func:`part_bounds`; ``StreamingDataset(part_bytes=...)`` overrides it). Each request costs a
fixed overhead in the client and the server, and the local S3 server also reads the whole object
for every range: against it, four connections moved 240-265 MB/s in parts of 16 MiB, 290-330 in
32 MiB (both with s3fs), and ~1,300 MB/s fetching 48 MiB objects whole with botocore. A store
whose connections are each slower than the disk (public cloud object storage) gives the shard a
reader waits for more bandwidth with smaller parts, spread over the pool's connections."""

_SLICE = 0.1  # the longest wait for a part without checking for Ctrl-C


class PartPool:
    """A fixed number of connections that fetch parts of files, most urgent first.

    A task with a lower ``priority`` runs before any task with a higher one; equal priorities
    run in submission order. Threads start on first use and end at :meth:`close`.

    Args:
        connections: Tasks that run at once (``>= 1``).
    """

    def __init__(self, connections: int) -> None:
        if connections < 1:
            msg = f"connections must be >= 1, got {connections}"
            raise ValueError(msg)
        self.connections = connections
        self._queue: list[tuple[float, int, concurrent.futures.Future[None], Callable[[], None]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, priority: float, task: Callable[[], None]) -> concurrent.futures.Future[None]:
        """Queues ``task``; its future holds what it raised."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._ready:
            if self._closed:
                msg = "the download pool is closed"
                raise ClosedError(msg)
            heapq.heappush(self._queue, (priority, next(self._order), future, task))
            if len(self._threads) < self.connections:
                thread = threading.Thread(target=self._work, name="pydata-download", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._ready.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                _, _, future, task = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                task()
            except BaseException as exc:  # handed to the waiter, which raises it
                future.set_exception(exc)
            else:
                future.set_result(None)

    def close(self) -> None:
        """Cancels the queued tasks; running ones finish. Idempotent."""
        with self._ready:
            self._closed = True
            queued, self._queue = self._queue, []
            self._ready.notify_all()
        for _, _, future, _ in queued:
            future.cancel()


def part_bounds(nbytes: int, part_bytes: int | None = None) -> list[tuple[int, int]]:
    """``[start, end)`` of each part of an ``nbytes`` file: the whole number of parts nearest to
    ``nbytes / part_bytes`` (default :data:`PART_BYTES`; at least one), of equal size. A shard a little over the part size
    (a 64 MiB shard is 64 MiB plus its headers) is one GET, not one GET and a sliver: a ranged GET
    can cost the server as much as the whole object (the local server reads it all)."""
    size = PART_BYTES if part_bytes is None else part_bytes
    if size < 1:
        msg = f"part_bytes must be >= 1, got {size}"
        raise ValueError(msg)
    count = max(1, (2 * nbytes + size) // (2 * size))
    edges = [nbytes * k // count for k in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def file_crc32c(fd: int) -> int:
    """The CRC-32C of a whole open file, read in pieces of :data:`CHUNK_BYTES`."""
    crc, offset, view = 0, 0, memoryview(bytearray(CHUNK_BYTES))
    while n := os.preadv(fd, [view], offset):
        crc = checksum(view[:n], crc)
        offset += n
    return crc


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """The one place downloads write (tests make it fail as a full disk would)."""
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def _disk_error(exc: OSError, tmp: Path, nbytes: int) -> OSError:
    if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return exc
    msg = f"disk full: needed {nbytes} bytes in {tmp.parent} for {tmp.name} ({exc.strerror})"
    error = OSError(exc.errno, msg)
    error.__cause__ = exc
    return error


class _Attempt:
    """One attempt at one file: its parts fetched into a temporary file, then checked."""

    def __init__(self, store: Store, path: str, dest: Path, expected: tuple[int, int],
                 part_bytes: int | None) -> None:
        self.store, self.path, self.dest, self.part_bytes = store, path, dest, part_bytes
        self.nbytes, self.crc32c = expected
        self.tmp = temp_name(dest)
        self.whole_crc: int | None = None  # the running CRC-32C, when the file is one part

    def run(self, url: str, retry: RetryPolicy, on_retry: OnRetry | None, pool: PartPool | None,
            priority: float) -> None:
        try:
            fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise LocalFailure(exc) from exc
        try:
            self._fetch_parts(fd, url, retry, on_retry, pool, priority)
            self._check(fd)
            try:
                os.close(fd)
                fd = -1
                os.replace(self.tmp, self.dest)
            except OSError as exc:
                raise LocalFailure(_disk_error(exc, self.tmp, self.nbytes)) from exc
        except BaseException:
            if fd >= 0:
                os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def _fetch_parts(self, fd: int, url: str, retry: RetryPolicy, on_retry: OnRetry | None,
                     pool: PartPool | None, priority: float) -> None:
        def part(start: int, end: int) -> Callable[[], None]:
            def fetch() -> None:
                try:
                    with_retries(lambda: self._fetch_part(fd, start, end), url, retry, on_retry)
                except (RemoteError, FileNotFoundError):
                    raise
                except OSError as exc:  # the local disk: the file's own loop must not retry it
                    raise LocalFailure(exc) from exc
            return fetch

        bounds = part_bounds(self.nbytes, self.part_bytes)
        if pool is None:
            for start, end in bounds:
                part(start, end)()
            return
        parts = [pool.submit(priority, part(start, end)) for start, end in bounds]
        try:
            for future in parts:
                while not concurrent.futures.wait([future], timeout=_SLICE).done:
                    pass  # bounded slices, so that Ctrl-C works
                future.result()
        finally:
            for future in parts:
                future.cancel()  # after a failure, the parts not yet started
            concurrent.futures.wait(parts)  # no part may write once the file is closed

    def _fetch_part(self, fd: int, start: int, end: int) -> None:
        last = end == self.nbytes  # asks one byte more: a longer remote file shows
        whole = start == 0 and last  # the file is this one part: its CRC-32C runs along
        offset, crc = start, 0
        for piece in self.store.chunks(self.path, start, end + 1 if last else end):
            if offset + len(piece) > end:
                msg = f"the body is longer than the index's {self.nbytes} bytes"
                raise DamagedBody(msg)
            try:
                _write_all(fd, memoryview(piece), offset)
            except OSError as exc:
                raise LocalFailure(_disk_error(exc, self.tmp, self.nbytes)) from exc
            if whole:
                crc = checksum(piece, crc)
            offset += len(piece)
        if offset != end:
            msg = f"short body: {offset - start} of {end - start} bytes at offset {start}"
            raise DamagedBody(msg)
        if whole:
            self.whole_crc = crc

    def _check(self, fd: int) -> None:
        """Checks the CRC-32C: taken as the bytes streamed in when the file came in one part;
        read back from the page cache otherwise (parts arrive in any order; ~10 ms per 64 MiB)."""
        crc = self.whole_crc
        if crc is None:
            try:
                crc = file_crc32c(fd)
            except OSError as exc:
                raise LocalFailure(exc) from exc
        if crc != self.crc32c:
            msg = (f"CRC-32C {crc:#010x} differs from the index's {self.crc32c:#010x} (damaged in "
                   "transit, or the remote file changed)")
            raise DamagedBody(msg)


def download(store: Store, path: str, dest: Path, *, url: str, expected_nbytes: int,
             expected_crc32c: int, retry: RetryPolicy, on_retry: OnRetry | None = None,
             pool: PartPool | None = None, priority: float = 0.0, part_bytes: int | None = None) -> None:
    """Downloads one file to ``dest``, checked against its size and CRC-32C, atomically.

    The file comes as ranged GETs of about ``part_bytes`` (default :data:`PART_BYTES`), each
    retried on its own, written into
    a hidden temporary file next to ``dest``; only a complete file whose CRC-32C matches is
    renamed to ``dest``. A short, long or damaged body counts as transient and is
    fetched again (a CRC mismatch: the whole file). The temporary file is removed on every
    failure (a killed process leaves it behind: see :class:`pydata.datasets.cache.ShardCache`).

    Args:
        store, path: Where the file is (from :func:`pydata.datasets.store.open_store`).
        dest: The local file to create or replace.
        url: The file's URL, for messages.
        expected_nbytes, expected_crc32c: From the index.
        retry: The retry policy.
        on_retry: Called with each error that is about to be retried.
        pool: Connections to fetch the parts on (None: one after another, in this thread).
        priority: The parts' place in ``pool``'s queue: lower goes first.
        part_bytes: The size of a part (:func:`part_bounds`).

    Raises:
        FileNotFoundError: The remote file does not exist (names ``url``).
        RemoteError: A permanent error, or a transient one (a CRC mismatch included) that outlived
            the retries; names ``url`` and the cause.
        OSError: Writing locally failed; with ``ENOSPC`` the message reads
            ``disk full: needed N bytes in <dir>``.
        ClosedError: ``pool`` was closed.
    """
    expected = (expected_nbytes, expected_crc32c)
    with_retries(lambda: _Attempt(store, path, Path(dest), expected, part_bytes).run(
        url, retry, on_retry, pool, priority), url, retry, on_retry)
