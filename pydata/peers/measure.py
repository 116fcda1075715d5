"""What one benchmark run measures about its own process tree: CPU seconds and memory peaks.

Everything reads ``/proc`` directly (Linux only, like ``posix_fadvise``), so the harness needs no
extra dependency: CPU seconds from ``/proc/<pid>/stat`` here, memory (peak RSS from ``VmHWM``,
USS from ``smaps_rollup``) and the process tree through :mod:`pydata.metrics`. The trade-off: a
sampling thread sees worker memory only at its sampling instants, so a worker's USS peak can be
missed between samples; its RSS peak cannot (the kernel keeps ``VmHWM``).
"""

from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pydata.metrics import ProcessMemory, descendant_pids, process_memory

__all__ = ["CpuSnapshot", "MemoryMonitor", "cpu_snapshot"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _memory(pid: int) -> ProcessMemory | None:
    try:
        return process_memory(pid)
    except (ProcessLookupError, FileNotFoundError):  # exited between listing and reading
        return None


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of this process, of its reaped children, and of each live descendant."""

    main: float
    reaped: float
    live: dict[int, float]

    def workers_since(self, start: CpuSnapshot) -> float:
        """Worker CPU seconds between ``start`` and this snapshot: a worker alive at the start and
        reaped since is counted whole in ``reaped``, so its share at the start is subtracted."""
        return self.reaped - start.reaped + sum(self.live.values()) - sum(start.live.values())


def cpu_snapshot() -> CpuSnapshot:
    """The CPU seconds used so far by this process and its worker processes."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = {pid: s for pid in descendant_pids() if (s := _cpu_seconds(pid)) is not None}
    return CpuSnapshot(me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, live)


@dataclass
class _Peaks:
    main_rss: int = 0
    main_uss: int = 0
    workers_rss: int = 0
    workers_uss: int = 0
    workers: set[int] = field(default_factory=set)


class MemoryMonitor:
    """Samples the memory of this process and its workers in a background thread.

    Peaks: the main process's RSS (the kernel's own peak, ``VmHWM``) and USS; the workers' RSS
    and USS summed over the workers alive at one instant (with each worker's ``VmHWM``).

    Args:
        interval: Seconds between samples.
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.peaks = _Peaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peers-memory", daemon=True)

    def __enter__(self) -> MemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Takes one sample now."""
        main = process_memory()
        self.peaks.main_rss = max(self.peaks.main_rss, main.peak_rss)
        self.peaks.main_uss = max(self.peaks.main_uss, main.uss)
        workers = [m for pid in descendant_pids() if (m := _memory(pid)) is not None]
        self.peaks.workers.update(m.pid for m in workers)
        self.peaks.workers_rss = max(self.peaks.workers_rss, sum(m.peak_rss for m in workers))
        self.peaks.workers_uss = max(self.peaks.workers_uss, sum(m.uss for m in workers))

    def summary(self) -> dict[str, float]:
        """The peaks in MB (10^6 bytes), and how many worker processes were seen."""
        p = self.peaks
        return {"peak_rss_main_mb": p.main_rss / 1e6, "peak_uss_main_mb": p.main_uss / 1e6,
                "peak_rss_workers_mb": p.workers_rss / 1e6, "peak_uss_workers_mb": p.workers_uss / 1e6,
                "workers_seen": float(len(p.workers))}

