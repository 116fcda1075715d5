"""Process and system memory, measured from ``/proc`` (Linux), for ``pydata diagnose``.

A DataLoader worker's memory is easy to misread: its RSS counts every page of the mapped dataset
it has touched, although those pages sit once in the page cache and are shared with every other
reader. ``/proc/PID/smaps_rollup`` splits the figure. This module reads it for any process this
one may inspect (itself and its children) without psutil, so the library needs no extra
dependency; the price is that it works on Linux only (:class:`ProcessMemory` says so when
``/proc`` is missing).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["ProcessMemory", "child_pids", "descendant_pids", "meminfo", "process_memory"]

_KIB = 1024
# Kernels built with CONFIG_PROC_CHILDREN list each thread's children; the others are scanned.
_CHILDREN_FILES = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists()


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory, in bytes, from ``/proc/PID/smaps_rollup``.

    Attributes:
        pid: The process.
        rss: Resident pages, shared ones included (what ``top`` shows).
        pss: Proportional set size: each page divided by the number of processes mapping it.
        private_clean: Clean pages only this process maps. For a worker that read mapped shards
            these are mostly dataset pages no other process has touched yet: page cache, counted
            once system-wide and reclaimable, not a copy.
        private_dirty: Dirty pages only this process maps: its heap, its own copies of the
            parent's pages. Memory the kernel cannot drop; a per-worker copy of the data would
            land here.
        anonymous: Anonymous pages mapped (private or shared with the parent after fork).
        peak_rss: The most ``rss`` the process ever had: the kernel's own high-water mark
            (``VmHWM`` in ``/proc/PID/status``), which no sampling can miss.
    """

    pid: int
    rss: int
    pss: int
    private_clean: int
    private_dirty: int
    anonymous: int
    peak_rss: int

    @property
    def uss(self) -> int:
        """Unique set size: ``private_clean + private_dirty``."""
        return self.private_clean + self.private_dirty

    @property
    def shared(self) -> int:
        """Resident pages also mapped by another process: ``rss - uss``."""
        return self.rss - self.uss

    def to_json(self) -> dict[str, Any]:
        """The fields plus ``uss`` and ``shared``."""
        return {**asdict(self), "uss": self.uss, "shared": self.shared}


def _read_kib_table(path: Path, skip: int = 0) -> dict[str, int]:
    """``Key: value kB`` lines as bytes (unitless values as they are)."""
    table: dict[str, int] = {}
    for line in path.read_text().splitlines()[skip:]:
        key, sep, rest = line.partition(":")
        words = rest.split()
        if sep and words and words[0].isdigit():
            table[key] = int(words[0]) * (_KIB if words[1:] == ["kB"] else 1)
    return table


def process_memory(pid: int | None = None) -> ProcessMemory:
    """The memory of process ``pid`` (default: this one).

    Raises:
        ProcessLookupError: The process does not exist (any more).
        OSError: ``/proc/PID/smaps_rollup`` cannot be read (not Linux, or no permission); the
            message names the file.
    """
    pid = os.getpid() if pid is None else pid
    path = Path(f"/proc/{pid}/smaps_rollup")
    try:
        table = _read_kib_table(path, skip=1)  # the first line names the address range
        status = _read_kib_table(Path(f"/proc/{pid}/status"))
    except FileNotFoundError as exc:
        if Path("/proc/self/smaps_rollup").exists():
            msg = f"process {pid} does not exist"
            raise ProcessLookupError(msg) from exc
        msg = f"cannot measure process memory: '{path}' is missing (needs Linux 4.14 or later)"
        raise OSError(exc.errno, msg, str(path)) from exc
    return ProcessMemory(pid=pid, rss=table.get("Rss", 0), pss=table.get("Pss", 0),
                         private_clean=table.get("Private_Clean", 0),
                         private_dirty=table.get("Private_Dirty", 0),
                         anonymous=table.get("Anonymous", 0), peak_rss=status.get("VmHWM", 0))


def child_pids(pid: int | None = None) -> list[int]:
    """The live child processes of ``pid`` (default: this one), sorted: from
    ``/proc/PID/task/TID/children``, or, on kernels without it, by scanning ``/proc/*/stat``."""
    parent = os.getpid() if pid is None else pid
    if _CHILDREN_FILES:
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
            return sorted({int(k) for t in tasks for k in (t / "children").read_text().split()})
        except (FileNotFoundError, ProcessLookupError):  # the process (or a thread) is gone
            return []
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def descendant_pids(pid: int | None = None) -> list[int]:
    """Every live descendant of ``pid`` (default: this one): children, their children, ..."""
    found: list[int] = []
    pending = [os.getpid() if pid is None else pid]
    while pending:
        kids = child_pids(pending.pop())
        found += kids
        pending += kids
    return found


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``, ``Cached``, ...).

    Raises:
        OSError: Not Linux (the message names the file).
    """
    return _read_kib_table(Path("/proc/meminfo"))
