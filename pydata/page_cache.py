"""A file's pages in the page cache: read them in, drop them, count them.

Benchmarks and diagnostics need to say whether they measured memory or the disk. This VM (and
many others) pages out file pages that sit idle for ~30 s, so a "hot" measurement reads its
files right before it starts (:func:`touch_files`), a "cold" one drops them first
(:func:`drop_files`, ``posix_fadvise(POSIX_FADV_DONTNEED)``, no root needed), and either can
check what is resident (:func:`resident_bytes`, ``mincore`` through a fresh map, which touches
no page). Linux only, like ``posix_fadvise``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pydata._core import MappedFile

__all__ = ["drop_files", "resident_bytes", "touch_files"]


def touch_files(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Reads every byte of ``paths`` (into one reused buffer), so that their pages are in the
    page cache; returns the bytes read."""
    buffer = bytearray(1 << 20)
    total = 0
    for path in paths:
        with Path(path).open("rb", buffering=0) as f:
            while n := f.readinto(buffer):
                total += n
    return total


def drop_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Drops the pages of ``paths`` from the page cache. Pages that a process still maps stay:
    close the maps first."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Bytes of ``paths`` in the page cache now."""
    total = 0
    for path in paths:
        if Path(path).stat().st_size:
            total += MappedFile(str(path)).resident_bytes()
    return total
