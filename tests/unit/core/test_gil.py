"""Every heavy call of the core releases the GIL: proven by progress, not by duration.

A Python thread counts while the main thread makes one large call. The switch interval is set
very high, so the main thread never hands the GIL over on its own: the counter can only move
during the call if the call itself released the GIL. A control call that holds the GIL shows
the method would catch a call that does not release it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import pydata
from pydata._core import FileReader
from pydata.synthetic import smooth_latents

Progress = Callable[[Callable[[], object]], int]


@pytest.fixture
def progress_during() -> Iterator[Progress]:
    count = 0
    running = threading.Event()
    stop = False

    def counter() -> None:
        nonlocal count
        running.set()
        while not stop:
            count += 1
            if count % 256 == 0:
                time.sleep(0)  # hand the GIL back to the main thread when it asks

    old_interval = sys.getswitchinterval()
    thread = threading.Thread(target=counter, daemon=True)
    thread.start()
    running.wait()

    def during(call: Callable[[], object]) -> int:
        sys.setswitchinterval(1000.0)
        try:
            time.sleep(0)  # let the counter reach its GIL hand-off point
            before = count
            call()
            return count - before
        finally:
            sys.setswitchinterval(old_interval)

    yield during
    stop = True
    thread.join()


def test_control_a_call_holding_the_gil_shows_no_progress(progress_during: Progress) -> None:
    data = list(range(2_000_000, 0, -1))
    assert progress_during(lambda: sorted(data)) == 0


def test_gather_rows_releases_the_gil(progress_during: Progress) -> None:
    source = np.zeros((8192, 4096), np.uint8)  # 32 MiB
    indices = np.random.default_rng(0).permutation(8192)
    out = np.empty_like(source)
    # Eight calls (tens of ms): long enough for the counter thread to be scheduled on a busy host.
    assert progress_during(lambda: [pydata.gather_rows([source], indices, out, threads=1) for _ in range(8)]) > 0


def test_gather_ranges_releases_the_gil(progress_during: Progress) -> None:
    offsets = np.arange(0, 8193 * 4096, 4096, dtype=np.uint64)
    payload = np.zeros(8192 * 4096, np.uint8)
    indices = np.random.default_rng(0).permutation(8192)
    assert progress_during(lambda: [pydata.gather_ranges([(offsets, payload)], indices, threads=1) for _ in range(8)]) > 0


def test_decode_batch_releases_the_gil(progress_during: Progress) -> None:
    latents = smooth_latents(512, 4, 32)
    blobs = [pydata.encode(x, "int8+lz4") for x in latents]
    big = blobs * 16
    out = np.empty((len(big), 4, 32, 32), np.float16)
    assert progress_during(lambda: pydata.decode_batch(big, out, threads=1)) > 0


def test_indexed_sections_decode_releases_the_gil(progress_during: Progress) -> None:
    latents = smooth_latents(512, 4, 32)
    blobs = [pydata.encode(x, "int8+lz4") for x in latents] * 16
    offsets = np.cumsum([0, *[len(b) for b in blobs]]).astype(np.uint64)
    payload = np.frombuffer(b"".join(blobs), np.uint8)
    sections = pydata.IndexedSections([(offsets, payload)])
    indices = np.random.default_rng(0).permutation(len(blobs))
    out = np.empty((len(blobs), 4, 32, 32), np.float16)
    assert progress_during(lambda: sections.decode(indices, out, threads=1)) > 0


def test_file_reader_read_releases_the_gil(progress_during: Progress, tmp_path: Path) -> None:
    size = 32 << 20
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(size))
    out = np.empty(size, np.uint8)
    with FileReader([path]) as reader:
        assert progress_during(lambda: reader.read([0], [0], [size], out, threads=1)) > 0


def test_encode_and_decode_release_the_gil(progress_during: Progress) -> None:
    array = np.random.default_rng(0).standard_normal(8 << 20).astype(np.float32)  # 32 MiB
    assert progress_during(lambda: pydata.encode(array, "shuffle+lz4")) > 0
    blob = pydata.encode(array, "lz4")
    assert progress_during(lambda: pydata.decode(blob)) > 0


def test_checksum_releases_the_gil(progress_during: Progress) -> None:
    data = np.zeros(256 << 20, np.uint8)
    assert progress_during(lambda: pydata.checksum(data)) > 0
