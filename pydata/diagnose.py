"""``pydata diagnose``: the memory picture of a training input, measured, with advice drawn from it.

For a dataset it reports the bytes on disk, how many of them sit in the page cache before and
after an epoch (mincore on the shards' maps), and what N real DataLoader workers hold while they
iterate it: each worker's RSS, PSS, USS and private dirty memory, read from
``/proc/PID/smaps_rollup`` by this (the parent) process while the workers run. Next to those it
puts what a naive per-worker copy of the data would cost. The recommendations (workers, prefetch,
codec) are computed from these figures and a codec trial on sampled rows, never from rules of
thumb alone. The trade-off: a diagnosis reads a whole epoch (or ``max_batches``) and starts real
processes, so it takes as long as that epoch, in exchange for numbers that are measured.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from pydata._core import quantization_error
from pydata.datasets.mmap import MemoryMappedDataset
from pydata.format.index import read_index
from pydata.loader.dataloader import create_dataloader
from pydata.metrics import ProcessMemory, child_pids, meminfo, process_memory
from pydata.page_cache import resident_bytes

__all__ = ["Diagnosis", "Recommendation", "WorkerMemory", "diagnose"]

_FLOATS = ("float16", "float32", "bfloat16")
_TRIAL_ROWS = 64  # rows per field for the codec trial
_MIN_CODEC_ROW = 1024  # bytes: a blob per row (header, offsets entry) only pays off for larger rows
_MEMORY_SHARE = 0.5  # of MemAvailable that the workers' own memory may take
_PREFETCH_SHARE = 0.1  # of MemAvailable that batches in flight may take


@dataclass(frozen=True)
class WorkerMemory:
    """One worker's memory while it iterated: the first reading and the peak of each figure.

    Attributes:
        first: Measured once the first batch had arrived.
        peak: The largest value of each figure over every reading.
        readings: How many times the worker was measured.
    """

    first: ProcessMemory
    peak: ProcessMemory
    readings: int


@dataclass(frozen=True)
class Recommendation:
    """One piece of advice: ``topic`` (workers, prefetch, codec, page cache), a ``value`` to use
    and the measured ``reason``."""

    topic: str
    value: Any
    reason: str


@dataclass(frozen=True)
class Diagnosis:
    """The measured memory picture of a dataset under N DataLoader workers (bytes throughout).

    Attributes:
        path: The dataset. ``samples``: its samples. ``disk_bytes``: its shards' bytes.
        resident_before, resident_after: Shard bytes in the page cache before and after the
            epoch (mincore).
        memory_total, memory_available: ``MemTotal`` and ``MemAvailable`` before the epoch.
        cores: Usable cores. ``workers``, ``batch_size``: the DataLoader measured.
        batch_bytes: Bytes of one delivered batch (tensors), measured on the first.
        epoch_samples, epoch_seconds: What the measured iteration read, and how long it took.
        parent: This process's memory after the iteration.
        worker_memory: One entry per worker process found.
        naive_copy_bytes: ``disk_bytes * workers``: per-worker copies of the data.
        recommendations: Advice derived from the figures above.
    """

    path: str
    samples: int
    disk_bytes: int
    resident_before: int
    resident_after: int
    memory_total: int
    memory_available: int
    cores: int
    workers: int
    batch_size: int
    batch_bytes: int
    epoch_samples: int
    epoch_seconds: float
    parent: ProcessMemory
    worker_memory: list[WorkerMemory]
    naive_copy_bytes: int
    recommendations: list[Recommendation] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``uss`` and ``shared`` included with every memory figure)."""
        data = asdict(self)
        data["parent"] = self.parent.to_json()
        data["worker_memory"] = [
            {"first": w.first.to_json(), "peak": w.peak.to_json(), "readings": w.readings}
            for w in self.worker_memory]
        return data

    def format(self) -> str:
        """The diagnosis as text for a terminal."""
        before, after = self.resident_before, self.resident_after
        lines = [
            f"dataset        {self.path}: {self.samples:,} samples, {_mib(self.disk_bytes)} on disk",
            f"page cache     {_mib(before)} resident before the epoch "
            f"({_percent(before, self.disk_bytes)}), {_mib(after)} after ({_percent(after, self.disk_bytes)})",
            f"machine        {self.cores} cores, {_mib(self.memory_total)} memory, "
            f"{_mib(self.memory_available)} available",
            f"epoch          {self.epoch_samples:,} samples in {self.epoch_seconds:.2f} s with "
            f"{self.workers} worker(s), batch {self.batch_size} ({_mib(self.batch_bytes)})",
            "",
            "process     RSS         PSS         USS         private dirty",
            _memory_row("parent", self.parent),
        ]
        lines += [_memory_row(f"worker {i}", w.peak) for i, w in enumerate(self.worker_memory)]
        if self.worker_memory:
            own = sum(w.peak.private_dirty for w in self.worker_memory)
            lines += ["", f"workers' own memory (private dirty, peak) {_mib(own)} in total; "
                      f"per-worker copies of the data would take {_mib(self.naive_copy_bytes)}"]
        lines += ["", "recommendations"]
        lines += [f"  {r.topic:<11} {r.value!s:<10} {r.reason}" for r in self.recommendations]
        return "\n".join(lines)


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _memory_row(name: str, m: ProcessMemory) -> str:
    return f"{name:<11} " + " ".join(f"{_mib(v):<11}" for v in (m.rss, m.pss, m.uss, m.private_dirty))


def diagnose(path: str | os.PathLike[str], *, workers: int = 2, batch_size: int = 256,
             max_batches: int | None = None, interval: float = 0.05) -> Diagnosis:
    """Measures the memory picture of the dataset at ``path`` under ``workers`` DataLoader workers.

    Args:
        path: The dataset directory.
        workers: DataLoader worker processes to start (0: the main process only).
        batch_size: Samples per batch.
        max_batches: Stop after this many batches (default: one whole epoch).
        interval: Least seconds between two readings of the workers' memory.

    Returns:
        The :class:`Diagnosis`.

    Raises:
        ValueError: ``workers`` < 0, ``batch_size`` or ``max_batches`` < 1.
        FileNotFoundError: No dataset at ``path``.
        OSError: Process memory cannot be read (not Linux).
    """
    if workers < 0 or batch_size < 1 or (max_batches is not None and max_batches < 1):
        msg = (f"need workers >= 0, batch_size >= 1, max_batches >= 1; "
               f"got {workers}, {batch_size}, {max_batches}")
        raise ValueError(msg)
    index = read_index(path)
    shards = [Path(path) / s.file for s in index.shards]
    system = meminfo()
    before = resident_bytes(shards)  # before opening the dataset: reading its headers triggers readahead
    dataset = MemoryMappedDataset(path)
    run = _measure_epoch(dataset, workers, batch_size, max_batches, interval)
    naive = dataset.index.nbytes * workers
    diagnosis = Diagnosis(
        path=str(path), samples=len(dataset), disk_bytes=dataset.index.nbytes, resident_before=before,
        resident_after=resident_bytes(shards), memory_total=system.get("MemTotal", 0),
        memory_available=system.get("MemAvailable", 0), cores=_cores(), workers=workers,
        batch_size=batch_size, batch_bytes=run.batch_bytes, epoch_samples=run.samples,
        epoch_seconds=run.seconds, parent=process_memory(), worker_memory=run.memory(),
        naive_copy_bytes=naive)
    return replace(diagnosis, recommendations=recommend(diagnosis, dataset))


def _cores() -> int:
    getaffinity = getattr(os, "sched_getaffinity", None)
    return len(getaffinity(0)) if getaffinity is not None else (os.cpu_count() or 1)


class _EpochRun:
    """Readings taken during one iteration: worker pid -> (first, peak, count)."""

    def __init__(self, others: set[int]) -> None:
        self.others = others  # children that existed before the loader: not its workers
        self.readings: dict[int, tuple[ProcessMemory, ProcessMemory, int]] = {}
        self.samples, self.seconds, self.batch_bytes = 0, 0.0, 0

    def read(self) -> None:
        for pid in child_pids():
            if pid in self.others:
                continue
            try:
                now = process_memory(pid)
            except (ProcessLookupError, PermissionError):  # exited, or not ours to read
                continue
            first, peak, count = self.readings.get(pid, (now, now, 0))
            larger = {f.name: max(getattr(peak, f.name), getattr(now, f.name)) for f in fields(now)}
            self.readings[pid] = (first, ProcessMemory(**larger), count + 1)

    def memory(self) -> list[WorkerMemory]:
        return [WorkerMemory(first, peak, count) for first, peak, count in self.readings.values()]


def _measure_epoch(dataset: MemoryMappedDataset, workers: int, batch_size: int,
                   max_batches: int | None, interval: float) -> _EpochRun:
    """Iterates a real DataLoader and reads its workers' memory from here while they run."""
    run = _EpochRun(set(child_pids()))
    loader = create_dataloader(dataset, batch_size, num_workers=workers, seed=0, pin_memory=False)
    iterator = iter(loader)
    start = last = time.perf_counter()
    try:
        for number, batch in enumerate(iterator):
            if number == 0:
                run.batch_bytes = sum(v.nbytes for v in batch.values() if hasattr(v, "nbytes"))
            run.samples += len(next(iter(batch.values())))
            if time.perf_counter() - last >= interval or number == 0:
                run.read()
                last = time.perf_counter()
            if max_batches is not None and number + 1 >= max_batches:
                break
        run.seconds = time.perf_counter() - start
        run.read()  # persistent workers are still alive: their state after the whole epoch
    finally:
        del iterator  # stops the workers
    return run


def recommend(d: Diagnosis, dataset: MemoryMappedDataset) -> list[Recommendation]:
    """Advice on workers, prefetch, the page cache and codecs, each computed from ``d``."""
    workers = _worker_advice(d)
    fits = d.disk_bytes <= d.memory_available * _MEMORY_SHARE
    cache = Recommendation("page cache", "fits" if fits else "too large",
                           f"{_mib(d.disk_bytes)} on disk, {_mib(d.resident_after)} resident after "
                           f"the epoch, {_mib(d.memory_available)} available")
    return [workers, _prefetch_advice(d, workers.value), cache, *_codec_advice(dataset, fits)]


def _worker_advice(d: Diagnosis) -> Recommendation:
    """As many workers as the cores beside the main process allow, unless their measured own
    memory does not fit the budget."""
    threads = f"or pydata.Loader with {d.cores} threads and no worker processes"
    if not d.worker_memory:
        return Recommendation("workers", max(d.cores - 1, 0),
                              f"not measured with 0 workers (run with --workers N to measure them); "
                              f"{d.cores} cores allow {d.cores - 1} beside the main process; {threads}")
    own = max(w.peak.private_dirty for w in d.worker_memory)
    budget = int(d.memory_available * _MEMORY_SHARE)
    by_memory = budget // max(own, 1)
    return Recommendation("workers", max(0, min(d.cores - 1, by_memory)),
                          f"each worker held {_mib(own)} of its own memory (private dirty, peak), "
                          f"not a {_mib(d.disk_bytes)} copy: the data is shared through the page "
                          f"cache; {_mib(budget)} ({_MEMORY_SHARE:.0%} of available) allows "
                          f"{by_memory} workers, {d.cores} cores allow {d.cores - 1} beside the main "
                          f"process; {threads}")


def _prefetch_advice(d: Diagnosis, workers: int) -> Recommendation:
    """DataLoader's default of 4 batches per worker, fewer if the batches in flight would take
    more than their share of the available memory."""
    per_batch, processes = max(d.batch_bytes, 1), max(workers, 1)
    prefetch = int(min(4, max(1, d.memory_available * _PREFETCH_SHARE // (processes * per_batch))))
    return Recommendation("prefetch", prefetch,
                          f"{processes} worker(s) x {prefetch} batches x {_mib(per_batch)} = "
                          f"{_mib(processes * prefetch * per_batch)} in flight, within "
                          f"{_PREFETCH_SHARE:.0%} of available memory")


def _codec_advice(dataset: MemoryMappedDataset, fits: bool) -> list[Recommendation]:
    """Per raw tensor field of large rows: the codec a trial on sampled rows shows worth it."""
    names = [name for name, f in dataset.schema.items()
             if f.kind == "tensor" and f.codec == "raw" and f.row_nbytes >= _MIN_CODEC_ROW]
    if not names:
        return []
    rows = np.linspace(0, len(dataset) - 1, num=min(_TRIAL_ROWS, len(dataset))).astype(np.int64)
    sampled = dataset.batch_reader(names).read_batch(rows)
    advice = []
    for name in names:
        dtype = dataset.schema[name].dtype
        codec = "int8+lz4" if dtype in _FLOATS else "lz4"
        tag = "bfloat16" if dtype == "bfloat16" else None
        trials = [quantization_error(np.ascontiguousarray(v), codec, dtype=tag) for v in sampled[name]]
        ratio = sampled[name].nbytes / max(sum(int(t["blob_nbytes"]) for t in trials), 1)
        error = max(float(t["rel_l2"]) for t in trials)
        lossy = f", relative L2 error up to {error:.2g}" if codec != "lz4" else " (lossless)"
        trial = f"{codec} on {len(rows)} sampled rows: {ratio:.2f}x smaller{lossy}"
        worth = ratio >= 1.5 and not fits
        if worth:
            reason = f"{trial}; the data does not fit the page cache: fewer bytes, fewer disk reads"
        elif fits:
            reason = f"{trial}; keep raw: it fits the page cache and raw rows need no decoding"
        else:
            reason = f"{trial}; keep raw: the saving is small"
        advice.append(Recommendation(f"codec {name}", codec if worth else "raw", reason))
    return advice
