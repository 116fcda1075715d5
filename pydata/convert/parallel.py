"""Writing a conversion through :class:`pydata.ShardWriter`, in one process or in N partitions.

A converter describes its work as a list of *jobs* (a file, a range of rows) and a function that
writes one job into a writer. With one worker the jobs run here; with N they are split into N
contiguous runs, each written by its own process as a writer partition (``partition=(k, n)``),
and :func:`pydata.merge_index` joins the partitions, so the sample order is the job order either
way. Worker processes are *spawned*: slower to start than forked ones (each imports pydata), but
safe whatever threads the parent runs, and a conversion lasts far longer than the start-up. The
price is the usual one of ``spawn``: a script that calls a converter with ``workers > 1`` must
guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from pydata.format.index import INDEX_NAME, DatasetIndex
from pydata.format.merge import merge_index
from pydata.format.schema import Field
from pydata.format.writer import DEFAULT_SHARD_BYTES, ShardWriter

__all__ = ["DEFAULT_SHARD_BYTES", "write_dataset"]

J = TypeVar("J")
WriteJob = Callable[[ShardWriter, J], int]  # writes one job, returns the samples it wrote

_PART = re.compile(r"index\.part-\d{5}-of-\d{5}\.json$")
_SHARD = re.compile(r"shard-[\d-]+\.pds$")
_POLL_S = 0.2
_STATE: dict[str, Any] = {}  # in a worker process: the shared progress counter and stop flag


class _Stopped(Exception):
    """Raised inside a partition when another partition failed: stop and discard."""


def write_dataset(
    out: str | os.PathLike[str],
    schema: Mapping[str, Field],
    jobs: Sequence[J],
    write_job: WriteJob[J],
    *,
    total: int,
    workers: int = 1,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    metadata: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> DatasetIndex:
    """Writes ``jobs`` into a new dataset at ``out``; returns its index.

    Args:
        out: The dataset directory.
        schema: The dataset schema.
        jobs: The work, in sample order; each must be picklable when ``workers > 1``.
        write_job: Writes one job into a writer and returns the samples written; a module-level
            function (or a ``functools.partial`` of one) when ``workers > 1``.
        total: Samples expected, for the progress bar.
        workers: Processes writing partitions in parallel (1: write here).
        shard_bytes: Target shard size.
        overwrite: Replace a dataset already at ``out``; its files that the new dataset does not
            reuse are removed once the new index is written.
        metadata: Stored in the index.
        progress: Show a progress bar on stderr (default: when stderr is a terminal).

    Raises:
        FileExistsError: ``out`` holds a dataset (or partial partitions) and not ``overwrite``.
        ValueError: ``workers`` < 1.
        Exception: The first error a job raised; every file this conversion wrote is removed.
    """
    if workers < 1:
        msg = f"workers must be >= 1, got {workers}"
        raise ValueError(msg)
    path = Path(out)
    stale = _prepare(path, overwrite)
    n = max(1, min(workers, len(jobs)))
    bar = tqdm(total=total, unit="sample", desc=f"converting {path.name}", leave=False,
               disable=None if progress is None else not progress)
    with bar:
        if n == 1:
            index = _write_here(path, schema, jobs, write_job, bar, shard_bytes, overwrite, metadata)
        else:
            index = _write_partitions(path, schema, jobs, write_job, n, bar,
                                      (shard_bytes, overwrite, dict(metadata or {})))
    keep = {s.file for s in index.shards}
    for file in stale:
        if file.name not in keep:
            file.unlink(missing_ok=True)
    return index


def _prepare(path: Path, overwrite: bool) -> list[Path]:
    """Checks the destination; returns the old dataset's shards (removed after success)."""
    if path.exists() and not path.is_dir():
        msg = f"output '{path}' exists and is not a directory"
        raise FileExistsError(msg)
    if not path.exists():
        return []
    existing = sorted(p for p in path.iterdir()
                      if p.name == INDEX_NAME or _PART.match(p.name) or _SHARD.match(p.name))
    if existing and not overwrite:
        names = ", ".join(p.name for p in existing[:3])
        msg = f"output '{path}' already holds a dataset ({names}, ...); pass overwrite=True (--overwrite) to replace it"
        raise FileExistsError(msg)
    for file in existing:
        if _PART.match(file.name):  # an unfinished earlier conversion: nothing refers to it
            file.unlink()
    return [p for p in existing if _SHARD.match(p.name)]


def _write_here(path: Path, schema: Mapping[str, Field], jobs: Sequence[J], write_job: WriteJob[J],
                bar: tqdm, shard_bytes: int, overwrite: bool,
                metadata: Mapping[str, Any] | None) -> DatasetIndex:
    writer = ShardWriter(path, schema, shard_bytes=shard_bytes, overwrite=overwrite,
                         metadata=metadata, progress=False)
    try:
        for job in jobs:
            bar.update(write_job(writer, job))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def _split(jobs: Sequence[J], n: int) -> list[list[J]]:
    """``n`` contiguous runs of ``jobs`` whose lengths differ by at most one."""
    size, extra = divmod(len(jobs), n)
    bounds = [k * size + min(k, extra) for k in range(n + 1)]
    return [list(jobs[bounds[k]:bounds[k + 1]]) for k in range(n)]


def _write_partitions(path: Path, schema: Mapping[str, Field], jobs: Sequence[J],
                      write_job: WriteJob[J], n: int, bar: tqdm,
                      options: tuple[int, bool, dict[str, Any]]) -> DatasetIndex:
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    stop = ctx.Value("b", 0)
    try:
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker,
                                 initargs=(counter, stop)) as pool:
            futures = [pool.submit(_write_partition, path, dict(schema), part, write_job, (k, n), options)
                       for k, part in enumerate(_split(jobs, n))]
            _follow(futures, bar, counter, stop)
    except BaseException:
        _remove_partitions(path)
        raise
    return merge_index(path, metadata=options[2])


def _follow(futures: list[Future[int]], bar: tqdm, counter: Any, stop: Any) -> None:
    """Updates the bar until every partition is done; on the first failure tells the others to
    stop, waits for them and re-raises it."""
    pending: set[Future[int]] = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_EXCEPTION)
            bar.update(counter.value - bar.n)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                stop.value = 1
                wait(pending)
                error = failed[0].exception()
                assert error is not None
                raise error
    except KeyboardInterrupt:
        stop.value = 1
        raise


def _remove_partitions(path: Path) -> None:
    """Removes the shards and indexes of partitions that finished before another failed."""
    for file in path.iterdir():
        if _PART.match(file.name):
            index = DatasetIndex.parse(file.read_bytes(), str(file))
            for shard in index.shards:
                (path / shard.file).unlink(missing_ok=True)
            file.unlink(missing_ok=True)


def _init_worker(counter: Any, stop: Any) -> None:
    _STATE["counter"] = counter
    _STATE["stop"] = stop


def _write_partition(path: Path, schema: dict[str, Field], jobs: list[J], write_job: WriteJob[J],
                     partition: tuple[int, int], options: tuple[int, bool, dict[str, Any]]) -> int:
    """Runs in a worker process: writes one partition; returns its sample count."""
    shard_bytes, overwrite, metadata = options
    counter, stop = _STATE["counter"], _STATE["stop"]
    written = 0
    with ShardWriter(path, schema, shard_bytes=shard_bytes, overwrite=overwrite,
                     partition=partition, metadata=metadata, progress=False) as writer:
        for job in jobs:
            if stop.value:
                raise _Stopped
            count = write_job(writer, job)
            written += count
            with counter.get_lock():
                counter.value += count
    return written
