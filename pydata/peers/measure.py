"""What one benchmark run measures about its own process tree, and how it sets the page cache.

Everything reads ``/proc`` directly (Linux only, like ``posix_fadvise``), so the harness needs no
extra dependency: CPU seconds from ``/proc/<pid>/stat``, RSS and its peak (``VmHWM``) from
``/proc/<pid>/status``, USS (private pages) from ``/proc/<pid>/smaps_rollup``. The trade-off: a
sampling thread sees worker memory only at its sampling instants, so a worker's USS peak can be
missed between samples; its RSS peak cannot (the kernel keeps ``VmHWM``).
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path


__all__ = ["CpuSnapshot", "MemoryMonitor", "cpu_snapshot"]

_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = Path(f"/proc/{parent}/task").iterdir()
            kids = {int(k) for t in tasks for k in (t / "children").read_text().split()}
        except (FileNotFoundError, ProcessLookupError):
            continue
        found += sorted(kids)
        pending += sorted(kids)
    return found


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _memory(pid: int) -> tuple[int, int, int] | None:
    """(RSS, peak RSS, USS) of ``pid`` in bytes, or None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status + rollup
           if line.split(":")[0] in ("VmRSS", "VmHWM", "Private_Clean", "Private_Dirty")}
    uss = kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)
    return kib.get("VmRSS", 0) << 10, kib.get("VmHWM", 0) << 10, uss << 10


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
    live = {pid: s for pid in _children(os.getpid()) if (s := _cpu_seconds(pid)) is not None}
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
        main = _memory(os.getpid())
        if main is not None:
            self.peaks.main_rss = max(self.peaks.main_rss, main[1])
            self.peaks.main_uss = max(self.peaks.main_uss, main[2])
        workers = [(pid, m) for pid in _children(os.getpid()) if (m := _memory(pid)) is not None]
        self.peaks.workers.update(pid for pid, _ in workers)
        self.peaks.workers_rss = max(self.peaks.workers_rss, sum(m[1] for _, m in workers))
        self.peaks.workers_uss = max(self.peaks.workers_uss, sum(m[2] for _, m in workers))

    def summary(self) -> dict[str, float]:
        """The peaks in MB (10^6 bytes), and how many worker processes were seen."""
        p = self.peaks
        return {"peak_rss_main_mb": p.main_rss / 1e6, "peak_uss_main_mb": p.main_uss / 1e6,
                "peak_rss_workers_mb": p.workers_rss / 1e6, "peak_uss_workers_mb": p.workers_uss / 1e6,
                "workers_seen": float(len(p.workers))}

