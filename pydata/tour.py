"""The tour behind ``pydata tour``: the compiled core at work on generated latents.

It writes smooth float16 latents (``pydata.synthetic``) to a file, maps it, and measures what a
training input pipeline spends its time on: gathering random batches out of the mapping
(against numpy fancy indexing and a plain copy of the same bytes, the ceiling), compressing
and decoding latents with each codec, and handing slots through the RingBuffer. Figures are
measured on this machine in this run; nothing is hard-coded.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pydata import _core
from pydata.synthetic import smooth_latents

__all__ = ["TourReport", "run_tour"]


@dataclass(frozen=True)
class TourReport:
    """What :func:`run_tour` measured. Rates are in GB/s of output unless named."""

    samples: int
    sample_bytes: int
    gather_gbps: float
    numpy_gbps: float
    memcpy_gbps: float
    codecs: dict[str, tuple[float, float, float]]  # codec -> (ratio, rel_l2, decode GB/s)
    ring_ops_per_s: float


def _best_rate(nbytes: int, fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / 1e9


def run_tour(samples: int = 8192, batch_size: int = 256, seed: int = 0) -> TourReport:
    """Runs the tour and prints a report; returns the figures.

    Args:
        samples: Latents to generate (4x32x32 float16, 8 KiB each).
        batch_size: Rows per gathered batch.
        seed: Seed for the data and the batch order.
    """
    print(f"pydata tour of the core: {samples} smooth float16 latents of 4x32x32, batches of {batch_size}")
    latents = smooth_latents(samples, 4, 32, seed=seed)
    sample_bytes = latents[0].nbytes
    with tempfile.TemporaryDirectory(prefix="pydata-tour-") as tmp:
        path = Path(tmp) / "latents.bin"
        path.write_bytes(latents.tobytes())
        mapped = _core.MappedFile(path)
        view = mapped.view(dtype="<f2", shape=latents.shape)
        sections = _core.FixedSections([view], sample_bytes)
        rng = np.random.default_rng(seed)
        batches = [rng.integers(0, samples, batch_size) for _ in range(samples // batch_size)]
        out = np.empty((batch_size, *latents.shape[1:]), np.float16)
        epoch_bytes = len(batches) * out.nbytes

        mapped.prefault()  # hot: the pages are resident right before measuring
        flat = view.reshape(-1)
        dst = np.empty(out.size, np.float16)

        def gather_epoch() -> None:
            for batch in tqdm(batches, desc="gather", leave=False):
                sections.gather(batch, out)

        def numpy_epoch() -> None:
            for batch in batches:
                np.take(view, batch, axis=0, out=out)

        # The ceiling copies as many bytes per batch from random places in the same file, so
        # it pays the same cache misses as the gather does.
        starts = rng.integers(0, flat.size - out.size, len(batches))

        def memcpy_epoch() -> None:
            for start in starts:
                np.copyto(dst, flat[start : start + out.size])

        gathered = _best_rate(epoch_bytes, gather_epoch, 3)
        numpy_rate = _best_rate(epoch_bytes, numpy_epoch, 3)
        memcpy_rate = _best_rate(epoch_bytes, memcpy_epoch, 3)
        sections.gather(batches[0], out)
        np.testing.assert_array_equal(out, latents[batches[0]])  # the bytes are right, too
        del view, sections, flat

    codecs = _codec_tour(latents[:batch_size])
    ring_rate = _ring_tour(200_000)
    report = TourReport(samples, sample_bytes, gathered, numpy_rate, memcpy_rate, codecs, ring_rate)
    _print_report(report)
    return report


def _codec_tour(batch: np.ndarray) -> dict[str, tuple[float, float, float]]:
    results: dict[str, tuple[float, float, float]] = {}
    out = np.empty_like(batch)
    for codec in tqdm(_core.CODECS, desc="codecs", leave=False):
        blobs = [_core.encode(sample, codec) for sample in batch]
        ratio = batch.nbytes / sum(len(b) for b in blobs)
        error = _core.quantization_error(batch[0], codec)["rel_l2"]

        def decode_all(blobs: list[bytes] = blobs) -> None:
            _core.decode_batch(blobs, out, threads=1)

        rate = _best_rate(batch.nbytes, decode_all, 5)
        results[codec] = (ratio, float(error), rate)
    return results


def _ring_tour(tokens: int) -> float:
    ring = _core.RingBuffer(1024)
    start = time.perf_counter()
    for token in range(tokens):
        ring.try_push(token)
        ring.try_pop()
    return 2 * tokens / (time.perf_counter() - start)


def _print_report(r: TourReport) -> None:
    print(f"\nbatch gather from a memory-mapped file (hot, {r.sample_bytes} B rows):")
    print(f"  pydata gather      {r.gather_gbps:6.2f} GB/s  ({r.gather_gbps / r.memcpy_gbps:.0%} of memcpy)")
    print(f"  numpy fancy index  {r.numpy_gbps:6.2f} GB/s")
    print(f"  memcpy (ceiling)   {r.memcpy_gbps:6.2f} GB/s")
    print("\ncodecs on smooth float16 latents (decode on 1 thread):")
    print(f"  {'codec':<12} {'ratio':>6} {'rel L2 err':>11} {'decode GB/s':>12}")
    for codec, (ratio, error, rate) in r.codecs.items():
        print(f"  {codec:<12} {ratio:6.2f} {error:11.2e} {rate:12.2f}")
    print(f"\nRingBuffer try_push+try_pop from Python: {r.ring_ops_per_s / 1e6:.2f} M ops/s")
