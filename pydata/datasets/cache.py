"""The node-wide shard cache: one directory per node that every process and rank shares.

Each shard is downloaded once per node, by whichever process asks first, and checked against the
index's size and CRC-32C. Processes coordinate through ``flock`` on files in ``<local>/.locks/``,
because the kernel drops such a lock when its process dies: a crash or ``kill -9`` mid-download
leaves no stale lock, only a hidden temporary file that the next downloader of that shard removes.
Lock files are never deleted, since deleting one while another process has it open splits the lock.

Each shard ``<file>`` has two lock files:

- ``<file>.lock`` is held exclusively while the shard is downloaded, deleted as damaged, or evicted;
- ``<file>.use`` is held shared while a process holds the shard (:meth:`ShardCache.hold`). It is a
  separate file because flock cannot upgrade a shared lock atomically. With one file, a process
  that holds a shard and then downloads it would deadlock with itself (two descriptors conflict
  even within one process), or with a second holder that upgrades at the same time.

Under a ``cache_limit``, ``.locks/.cache.lock`` serialises room-making across processes, and each
downloader marks its reservation with ``<file>.inflight``. A marker whose ``.lock`` is free
belongs to a dead process and is dropped. Eviction follows Belady's rule over the known order of
upcoming shard uses: the shard whose next use is furthest away goes first, shards not used again
go before all others, and held shards are never evicted.

A file that this process downloaded is trusted. Any other file already present (from another
process or an earlier run) has its CRC-32C checked once per process on first use; a file that
fails the check is deleted and fetched again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import glob
import hashlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydata.datasets.download import PartPool, download, file_crc32c
from pydata.datasets.remote import RetryPolicy
from pydata.datasets.store import S3ClientKind, open_store
from pydata.errors import ClosedError, WaitTimeoutError
from pydata.format.index import DatasetIndex

__all__ = ["ShardCache", "default_cache_dir"]

_SLICE = 0.1  # the longest single sleep while waiting for room
_LOCK_POLL = 0.02  # ... for a lock: a shard downloaded elsewhere is used within this of its arrival
_CONFIG = ("remote", "local", "index", "cache_limit", "storage_options", "retry", "prefetch_threads",
           "connections", "wait_timeout", "s3_client", "part_bytes")


def default_cache_dir(remote: str) -> Path:
    """The directory used when none is given: ``pydata-cache-<hash of the URL>`` under
    ``tempfile.gettempdir()``, so that every process of a node finds the same one."""
    digest = hashlib.sha256(remote.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pydata-cache-{digest}"


def _fmt(nbytes: int) -> str:
    unit, shift = next(((u, s) for u, s in (("GiB", 30), ("MiB", 20), ("KiB", 10)) if nbytes >= 1 << s),
                       ("bytes", 0))
    return f"{nbytes} bytes" if not shift else f"{nbytes / (1 << shift):.1f} {unit}"


class _FileLock:
    """An flock on one lock file, released by :meth:`close` or by the death of the process."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)

    def try_lock(self, shared: bool) -> bool:
        try:
            fcntl.flock(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def lock(self, shared: bool, stop: Callable[[], bool] = lambda: False) -> None:
        """Waits in bounded slices (so that Ctrl-C works); ClosedError once ``stop()``."""
        delay = 0.001
        while not self.try_lock(shared):
            if stop():
                msg = "the shard cache was closed while waiting for a lock"
                raise ClosedError(msg)
            time.sleep(delay)
            delay = min(_LOCK_POLL, delay * 2)

    def close(self) -> None:
        os.close(self.fd)


class ShardCache:
    """Local copies of a remote dataset's shards, shared by all processes of a node.

    Args:
        remote: The dataset's URL (any fsspec protocol).
        local: The cache directory; None: :func:`default_cache_dir` of ``remote``.
        index: The dataset's index (:func:`pydata.datasets.remote.fetch_index`).
        cache_limit: Most bytes of this dataset's shards to keep (None: no limit).
        storage_options: Passed to fsspec (or mapped onto botocore's client, see ``s3_client``).
        retry: Retry policy for downloads.
        prefetch_threads: Shards that :meth:`prefetch` downloads at once in the background (0:
            none).
        connections: Ranged GETs in flight at once, shared by every download of this process;
            the parts of the shard needed soonest go first, so a shard that a reader waits for
            is never slowed down by shards needed later
            (:class:`pydata.datasets.download.PartPool`).
        wait_timeout: Seconds to wait for other processes to release shards when the limit
            leaves no room, before :class:`pydata.WaitTimeoutError`.
        s3_client: How ``s3://`` is read (:data:`pydata.datasets.store.S3ClientKind`): by default
            botocore's client, unless a storage option needs s3fs.
        part_bytes: The size of one ranged GET (default
            :data:`pydata.datasets.download.PART_BYTES`, 64 MiB: a default shard is one GET).

    Thread-safe. Pickles by its configuration (no threads, locks or holds), so DataLoader workers
    can carry it; :meth:`stats` are per process.
    """

    def __init__(self, remote: str, local: str | os.PathLike[str] | None, index: DatasetIndex, *,
                 cache_limit: int | None = None, storage_options: Mapping[str, Any] | None = None,
                 retry: RetryPolicy = RetryPolicy(),  # noqa: B008 (frozen)
                 prefetch_threads: int = 2, connections: int = 4, wait_timeout: float = 600.0,
                 s3_client: S3ClientKind = "auto", part_bytes: int | None = None) -> None:
        if ((cache_limit is not None and cache_limit <= 0) or prefetch_threads < 0 or wait_timeout < 0
                or connections < 1 or (part_bytes is not None and part_bytes < 1)):
            msg = (f"cache_limit ({cache_limit}) must be positive or None, prefetch_threads "
                   f"({prefetch_threads}) and wait_timeout ({wait_timeout}) >= 0, connections "
                   f"({connections}) and part_bytes ({part_bytes}) >= 1")
            raise ValueError(msg)
        self.remote = remote.rstrip("/")
        self.local = Path(local) if local is not None else default_cache_dir(remote)
        self.index = index
        self.cache_limit = cache_limit
        self.storage_options = dict(storage_options or {})
        self.retry = retry
        self.prefetch_threads = prefetch_threads
        self.connections = connections
        self.wait_timeout = wait_timeout
        self.s3_client = s3_client
        self.part_bytes = part_bytes
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self.store, root = open_store(self.remote, self.storage_options, s3_client=self.s3_client,
                                       connections=self.connections)
        self._root = root.rstrip("/")
        (self.local / ".locks").mkdir(parents=True, exist_ok=True)
        self._by_file = {s.file: i for i, s in enumerate(self.index.shards)}
        self._mutex = threading.Lock()
        self._verified: set[int] = set()
        self._holds: dict[int, tuple[_FileLock, int]] = {}  # shard -> (its .use lock, count)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._plan: list[int] = []  # what is left of the order given to prefetch()
        self._future: Iterable[int] | None = None  # the order last given to ensure(), if newer
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._parts = PartPool(self.connections)
        self._urgency: dict[int, int] = {}  # shard -> its place in the order of planned use
        self._planned = 0  # shards planned so far
        self._closed = False
        self._stats = dict.fromkeys(("downloads", "bytes_downloaded", "hits", "evictions", "retries"), 0)

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _CONFIG}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start()

    def _count(self, key: str, n: int = 1) -> None:
        with self._mutex:
            self._stats[key] += n

    def _nbytes(self, i: int) -> int:
        if not 0 <= i < len(self.index.shards):
            msg = f"shard {i} out of range: the dataset has {len(self.index.shards)} shards"
            raise IndexError(msg)
        return self.index.shards[i].nbytes

    def _lock_path(self, i: int, kind: str) -> Path:
        return self.local / ".locks" / f"{self.index.shards[i].file}.{kind}"

    def path(self, i: int) -> Path:
        """Where shard ``i`` is (or will be) in the cache."""
        self._nbytes(i)
        return self.local / self.index.shards[i].file

    def is_cached(self, i: int) -> bool:
        """Whether shard ``i`` is present with its index size (:meth:`ensure` checks the CRC)."""
        try:
            return self.path(i).stat().st_size == self._nbytes(i)
        except FileNotFoundError:
            return False

    def cached_bytes(self) -> int:
        """Bytes of this dataset's shards present in the cache, whoever downloaded them."""
        return sum(s.nbytes for i, s in enumerate(self.index.shards) if self.is_cached(i))

    def stats(self) -> dict[str, int]:
        """This process's counters: downloads, bytes_downloaded, hits, evictions, retries."""
        with self._mutex:
            return dict(self._stats)

    def check_limit(self, shards_at_once: int) -> None:
        """Raises ValueError if ``cache_limit`` cannot hold the ``shards_at_once`` largest shards."""
        sizes = sorted((s.nbytes for s in self.index.shards), reverse=True)[:max(shards_at_once, 0)]
        if self.cache_limit is not None and sizes and self.cache_limit < sum(sizes):
            msg = (f"cache_limit {_fmt(self.cache_limit)} is smaller than what the readers need at once: "
                   f"{len(sizes)} shards of up to {_fmt(sizes[0])} ({_fmt(sum(sizes))} in all)")
            raise ValueError(msg)

    def _verified_here(self, i: int, delete_bad: bool) -> bool:
        """Present and verified (the CRC once per process); ``delete_bad`` under ``.lock`` only."""
        if not self.is_cached(i):
            return False
        with self._mutex:
            if i in self._verified:
                return True
        try:
            with open(self.path(i), "rb", buffering=0) as f:
                crc = file_crc32c(f.fileno())
        except FileNotFoundError:  # evicted since the stat
            return False
        if crc == self.index.shards[i].crc32c:
            with self._mutex:
                self._verified.add(i)
            return True
        if delete_bad:
            self.path(i).unlink(missing_ok=True)
        return False

    def ensure(self, i: int, *, future: Iterable[int] | None = None) -> Path:
        """Returns the path of shard ``i`` once it is local and verified, downloading it if needed.

        One process per node downloads a shard; the others wait for it. Hold the shard
        (:meth:`hold`) first, so that no process evicts it between this call and its use.

        Args:
            i: The shard.
            future: The order of upcoming shard uses, from this one on (a numpy array will do),
                for eviction; it stays in force until the next call to ``ensure`` or
                :meth:`prefetch`. None: the order in force.

        Raises:
            FileNotFoundError, RemoteError, OSError: As for :func:`pydata.datasets.remote.download`
                (also when a :meth:`prefetch` of this shard failed).
            WaitTimeoutError: Under ``cache_limit``, no room was made within ``wait_timeout``.
            ValueError: The shard alone is larger than ``cache_limit``.
            ClosedError: The cache is closed.
        """
        self._check_open()
        self._nbytes(i)
        with self._mutex:
            pending = self._pending.pop(i, None)
            if i in self._plan:
                del self._plan[:self._plan.index(i) + 1]
            if future is not None:
                self._future = future
        if pending is not None and not pending.cancel():  # started: wait for it
            while not concurrent.futures.wait([pending], timeout=_SLICE).done:
                pass  # bounded slices, so that Ctrl-C works
            pending.result()  # a failed prefetch raises here
        if self._verified_here(i, delete_bad=False) or self._fetch(i, wait=True) == "hit":
            self._count("hits")
        return self.path(i)

    def _fetch(self, i: int, wait: bool) -> Literal["hit", "downloaded", "skipped"]:
        entry = self.index.shards[i]
        lock = _FileLock(self._lock_path(i, "lock"))
        try:
            lock.lock(shared=False, stop=lambda: self._closed)
            if self._verified_here(i, delete_bad=True):
                return "hit"
            for stale in self.local.glob(f".{glob.escape(entry.file)}.*.tmp"):
                stale.unlink(missing_ok=True)  # a dead downloader's: live ones hold our lock
            if self.cache_limit is not None:
                with self._mutex:
                    future = [int(j) for j in (self._plan if self._future is None else self._future)]
                horizon = None if wait else (future.index(i) if i in future else len(future))
                if not self._make_room(entry.nbytes, future, horizon=horizon, wait=wait, reserve=i):
                    return "skipped"
            try:
                with self._mutex:  # a reader waiting for this shard comes before any prefetch
                    priority = -1 if wait else self._urgency.get(i, self._planned)
                download(self.store, f"{self._root}/{entry.file}", self.path(i),
                         url=f"{self.remote}/{entry.file}", expected_nbytes=entry.nbytes,
                         expected_crc32c=entry.crc32c, retry=self.retry,
                         on_retry=lambda _: self._count("retries"), pool=self._parts,
                         priority=priority, part_bytes=self.part_bytes)
            finally:
                self._lock_path(i, "inflight").unlink(missing_ok=True)
            with self._mutex:
                self._verified.add(i)
                self._stats["downloads"] += 1
                self._stats["bytes_downloaded"] += entry.nbytes
            return "downloaded"
        finally:
            lock.close()

    def make_room(self, nbytes: int, future: Iterable[int]) -> None:
        """Evicts cached shards until ``nbytes`` more fit under ``cache_limit`` (no-op without one).

        Victims are shards that no process holds: the one used furthest ahead in ``future``
        first, those not in it before all. If that is not enough, waits in bounded slices for
        other processes to release shards.

        Raises:
            WaitTimeoutError: Not enough room within ``wait_timeout``.
            ValueError: ``nbytes`` alone exceeds ``cache_limit``.
        """
        self._make_room(nbytes, [int(j) for j in future], horizon=None, wait=True, reserve=None)

    def _make_room(self, nbytes: int, future: list[int], *, horizon: int | None, wait: bool,
                   reserve: int | None) -> bool:
        """Makes room, evicting only shards used after position ``horizon`` (None: any); with
        ``reserve``, marks that shard's reservation. Without ``wait``, False if there is none."""
        if self.cache_limit is None:
            return True
        if nbytes > self.cache_limit:
            msg = f"cache_limit {_fmt(self.cache_limit)} is smaller than one shard of {_fmt(nbytes)}"
            raise ValueError(msg)
        deadline = time.monotonic() + self.wait_timeout
        lock = _FileLock(self.local / ".locks" / ".cache.lock")
        try:
            while True:
                lock.lock(shared=False, stop=lambda: self._closed)
                try:
                    used = self._evict(nbytes, future, horizon, reserve)
                    if used + nbytes <= self.cache_limit and reserve is not None:
                        self._lock_path(reserve, "inflight").touch()
                finally:
                    fcntl.flock(lock.fd, fcntl.LOCK_UN)
                if used + nbytes <= self.cache_limit or not wait:
                    return used + nbytes <= self.cache_limit
                if time.monotonic() >= deadline:
                    msg = (f"{self.local}: no room for {_fmt(nbytes)} under cache_limit {_fmt(self.cache_limit)} "
                           f"after waiting {self.wait_timeout:g} s: {_fmt(used)} are held by some process or "
                           "being downloaded; raise cache_limit or hold fewer shards at once")
                    raise WaitTimeoutError(msg)
                time.sleep(_SLICE)
        finally:
            lock.close()

    def _evict(self, nbytes: int, future: list[int], horizon: int | None, reserve: int | None) -> int:
        """Under ``.cache.lock``: evicts until ``nbytes`` fit; returns the bytes still taken."""
        assert self.cache_limit is not None
        # Markers first, files second: a download that finishes in between is then counted
        # twice (harmless) rather than not at all (its marker gone, its file not yet seen).
        markers = list((self.local / ".locks").glob("*.inflight"))
        present = [j for j in range(len(self.index.shards)) if self.is_cached(j)]
        used = sum(self.index.shards[j].nbytes for j in present)
        used += self._inflight_bytes(markers, set(present), reserve)
        never = len(future) + 1  # after every position, that of a shard not in ``future`` too
        next_use: dict[int, int] = {}
        for position, j in enumerate(future):
            next_use.setdefault(j, position)
        candidates = [j for j in present if j != reserve and next_use.get(j, never) > (-1 if horizon is None else horizon)]
        for j in sorted(candidates, key=lambda j: -next_use.get(j, never)):
            if used + nbytes <= self.cache_limit:
                break
            if self._evict_one(j):
                used -= self.index.shards[j].nbytes
        return used

    def _inflight_bytes(self, markers: list[Path], present: set[int], reserve: int | None) -> int:
        total = 0
        for marker in markers:
            j = self._by_file.get(marker.name.removesuffix(".inflight"))
            if j is None or j in present or j == reserve:  # reserve's marker is a dead one's or ours
                continue
            probe = _FileLock(self._lock_path(j, "lock"))
            try:
                if not probe.try_lock(shared=True):
                    total += self.index.shards[j].nbytes  # still downloading
                elif self.is_cached(j):
                    total += self.index.shards[j].nbytes  # finished since `present` was taken
                else:
                    marker.unlink(missing_ok=True)  # its downloader died
            finally:
                probe.close()
        return total

    def _evict_one(self, j: int) -> bool:
        use, busy = _FileLock(self._lock_path(j, "use")), _FileLock(self._lock_path(j, "lock"))
        try:
            if not (use.try_lock(shared=False) and busy.try_lock(shared=False)):
                return False
            self.path(j).unlink(missing_ok=True)
            with self._mutex:
                self._verified.discard(j)
                self._stats["evictions"] += 1
            return True
        finally:
            busy.close()
            use.close()

    def acquire(self, i: int) -> None:
        """Marks shard ``i`` in use by this process (counted), so that no process evicts it."""
        self._check_open()
        self._nbytes(i)
        with self._mutex:
            if i in self._holds:
                self._holds[i] = (self._holds[i][0], self._holds[i][1] + 1)
                return
        lock = _FileLock(self._lock_path(i, "use"))
        lock.lock(shared=True)  # evictors hold it exclusively for a moment only
        with self._mutex:
            held = self._holds.get(i)
            self._holds[i] = (lock, 1) if held is None else (held[0], held[1] + 1)
        if held is not None:  # another thread was faster
            lock.close()

    def release(self, i: int) -> None:
        """Undoes one :meth:`acquire`. Raises ValueError if shard ``i`` is not held."""
        self._check_open()
        with self._mutex:
            if i not in self._holds:
                msg = f"shard {i} is not held"
                raise ValueError(msg)
            lock, count = self._holds.pop(i)
            if count > 1:
                self._holds[i] = (lock, count - 1)
                return
        lock.close()

    @contextlib.contextmanager
    def hold(self, i: int) -> Iterator[None]:
        """:meth:`acquire` for the duration of a ``with`` block."""
        self.acquire(i)
        try:
            yield
        finally:
            self.release(i)

    def prefetch(self, shards: Sequence[int]) -> None:
        """Starts background downloads of ``shards``, in this order, skipping cached ones.

        ``shards`` is also the order of upcoming uses for eviction, until the next order given.
        A prefetch never evicts a shard needed before its own, and is skipped if there is no
        other room. A failed prefetch raises from :meth:`ensure` of that shard.
        """
        self._check_open()
        for i in shards:
            self._nbytes(i)
        with self._mutex:
            self._plan, self._future = [int(i) for i in shards], None
            if self.prefetch_threads and self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    self.prefetch_threads, thread_name_prefix="pydata-prefetch")
            for i in dict.fromkeys(self._plan):
                if i not in self._pending:  # planned anew: after every shard planned before
                    self._urgency[i], self._planned = self._planned, self._planned + 1
                if self._executor is not None and i not in self._pending and not self.is_cached(i):
                    self._pending[i] = self._executor.submit(self._prefetch_one, i)

    def _prefetch_one(self, i: int) -> None:
        if not self._closed:
            self._fetch(i, wait=False)

    def _check_open(self) -> None:
        if self._pid != os.getpid():
            # A forked child (a DataLoader worker): its parent's threads, locks and store
            # client (neither s3fs nor botocore connections survive a fork) are not its own; start afresh, as unpickling does.
            self._start()
        if self._closed:
            msg = f"the shard cache of {self.remote} is closed"
            raise ClosedError(msg)

    def close(self) -> None:
        """Cancels queued prefetches, waits for the downloads under way, releases every hold."""
        with self._mutex:
            self._closed = True
            executor, self._executor = self._executor, None
            holds, self._holds = list(self._holds.values()), {}
            self._pending.clear()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._parts.close()
        for lock, _ in holds:
            lock.close()

    def __enter__(self) -> ShardCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ShardCache('{self.remote}', local='{self.local}', shards={len(self.index.shards)}, "
                f"cache_limit={self.cache_limit})")
