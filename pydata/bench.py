"""``pydata bench``: epoch throughput of pydata's Loader and of the torch DataLoader on a dataset.

It answers "how many threads or workers does this dataset need?" on the machine at hand: one
shuffled epoch at a time of :class:`pydata.Loader` with 1..N producer threads and of
:func:`pydata.create_dataloader` with 0..N worker processes, over the same dataset and batch size.
Every case is timed in interleaved rounds (the order rotating each round), so that drift on a
shared machine spreads over all cases instead of turning into a false ratio, and the median epoch
is reported. Right before each timed epoch the shard files are read in full, because idle file
pages get reclaimed (on some VMs after ~30 s) and a "hot" figure would otherwise time the disk.
The price of warm, interleaved, repeated epochs is time: a run costs about
``(epochs + 1) x cases`` epochs; each case's first epoch is an untimed warm-up (worker start-up,
first page faults).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydata.datasets.mmap import MemoryMappedDataset
from pydata.loader.dataloader import create_dataloader
from pydata.loader.loader import Loader
from pydata.page_cache import touch_files

__all__ = ["BenchPoint", "BenchResult", "bench_dataset", "plot_bench"]


@dataclass(frozen=True)
class BenchPoint:
    """One case: a loader at one level of parallelism.

    Attributes:
        loader: ``"Loader"`` (pydata's, threads) or ``"DataLoader"`` (torch's, worker processes).
        parallelism: Threads (Loader) or worker processes (DataLoader).
        samples: Samples in one epoch; ``nbytes``: bytes of the tensors delivered in one epoch.
        epoch_seconds: Every timed epoch.
    """

    loader: str
    parallelism: int
    samples: int
    nbytes: int
    epoch_seconds: list[float]

    @property
    def samples_per_s(self) -> float:
        """Samples per second of the median epoch."""
        return self.samples / statistics.median(self.epoch_seconds)

    def to_json(self) -> dict[str, Any]:
        return {"loader": self.loader, "parallelism": self.parallelism, "samples": self.samples,
                "nbytes": self.nbytes, "epoch_seconds": self.epoch_seconds,
                "samples_per_s": self.samples_per_s,
                "bytes_per_s": self.nbytes / statistics.median(self.epoch_seconds)}


@dataclass(frozen=True)
class BenchResult:
    """A whole run: the dataset, the settings and one :class:`BenchPoint` per case."""

    path: str
    samples: int
    disk_bytes: int
    batch_size: int
    epochs: int
    cores: int
    points: list[BenchPoint]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "samples": self.samples, "disk_bytes": self.disk_bytes,
                "batch_size": self.batch_size, "epochs": self.epochs, "cores": self.cores,
                "points": [p.to_json() for p in self.points]}

    def format(self) -> str:
        """The run as a text table, fastest case marked."""
        best = max(p.samples_per_s for p in self.points)
        lines = [f"dataset  {self.path}: {self.samples:,} samples, {self.disk_bytes / 2**20:.1f} MiB; "
                 f"batch {self.batch_size}, median of {self.epochs} epoch(s), {self.cores} cores, "
                 "files read right before every epoch", "",
                 "loader      threads/workers  samples/s   MB/s     epoch s"]
        for p in self.points:
            median = statistics.median(p.epoch_seconds)
            mark = "  <- fastest" if p.samples_per_s == best else ""
            lines.append(f"{p.loader:<11} {p.parallelism:<16} {p.samples_per_s:<11,.0f} "
                         f"{p.nbytes / median / 1e6:<8,.1f} {median:.3f}{mark}")
        return "\n".join(lines)


def bench_dataset(path: str | os.PathLike[str], *, threads: Sequence[int] | None = None,
                  workers: Sequence[int] | None = None, epochs: int = 3, batch_size: int = 256,
                  fields: Sequence[str] | None = None) -> BenchResult:
    """Times shuffled epochs of the Loader and the DataLoader over the dataset at ``path``.

    Args:
        path: The dataset directory.
        threads: Loader thread counts (default: 1 .. usable cores); ``()`` leaves the Loader out.
        workers: DataLoader worker counts (default: 0 .. usable cores); ``()`` leaves it out.
        epochs: Timed epochs per case (the median is reported), after one untimed warm-up.
        batch_size: Samples per batch.
        fields: Fields to load (default: all).

    Returns:
        The :class:`BenchResult`.

    Raises:
        ValueError: No case to run, ``epochs`` or ``batch_size`` < 1, a thread count < 1 or a
            worker count < 0.
        FileNotFoundError: No dataset at ``path``.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = list(range(1, cores + 1)) if threads is None else list(threads)
    workers = list(range(0, cores + 1)) if workers is None else list(workers)
    if not threads + workers or epochs < 1 or batch_size < 1 or any(t < 1 for t in threads) \
            or any(w < 0 for w in workers):
        msg = (f"need at least one case, epochs >= 1, batch_size >= 1, threads >= 1 and workers >= 0; "
               f"got threads {threads}, workers {workers}, epochs {epochs}, batch_size {batch_size}")
        raise ValueError(msg)
    dataset = MemoryMappedDataset(path, fields)
    shards = [dataset.path / s.file for s in dataset.index.shards]
    cases: dict[tuple[str, int], Any] = {
        ("Loader", t): Loader(dataset, batch_size, shuffle=True, seed=0, num_threads=t, pin_memory=False)
        for t in threads}
    cases.update({("DataLoader", w): create_dataloader(dataset, batch_size, num_workers=w, seed=0,
                                                       pin_memory=False) for w in workers})
    sizes = {key: _epoch(loader) for key, loader in cases.items()}  # warm-up: workers start, pages fault
    times: dict[tuple[str, int], list[float]] = {key: [] for key in cases}
    keys = list(cases)
    for round_number in range(epochs):
        shift = round_number % len(keys)
        for key in keys[shift:] + keys[:shift]:
            touch_files(shards)
            start = time.perf_counter()
            _epoch(cases[key])
            times[key].append(time.perf_counter() - start)
    points = [BenchPoint(name, n, sizes[(name, n)][0], sizes[(name, n)][1], times[(name, n)])
              for name, n in keys]
    return BenchResult(str(path), len(dataset), dataset.index.nbytes, batch_size, epochs, cores, points)


def _epoch(loader: Any) -> tuple[int, int]:
    """Iterates one epoch; returns (samples, bytes of the tensors delivered)."""
    samples = nbytes = 0
    for batch in loader:
        tensors = [v for v in batch.values() if hasattr(v, "nbytes")]
        samples += len(next(iter(batch.values())))
        nbytes += sum(int(v.nbytes) for v in tensors)
    return samples, nbytes


def plot_bench(result: BenchResult, out: str | os.PathLike[str]) -> Path:
    """Writes a PNG of samples/s against threads (Loader) and workers (DataLoader).

    Raises:
        ImportError: matplotlib is missing (``pip install "pydata[bench]"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError as exc:
        msg = 'the plot needs matplotlib: pip install "pydata[bench]"'
        raise ImportError(msg) from exc
    figure, axes = plt.subplots(figsize=(6, 4))
    for name, label in (("Loader", "pydata.Loader (threads)"), ("DataLoader", "DataLoader (workers)")):
        points = sorted((p for p in result.points if p.loader == name), key=lambda p: p.parallelism)
        if points:
            axes.plot([p.parallelism for p in points], [p.samples_per_s for p in points],
                      marker="o", label=label)
    axes.set_xlabel("threads / worker processes")
    axes.set_ylabel("samples/s (median epoch)")
    axes.set_title(f"{Path(result.path).name}: batch {result.batch_size}, {result.cores} cores")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(out)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
