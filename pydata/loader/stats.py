"""LoaderStats: what a Loader measured while iterating, without a host sync.

The consumer records delivered samples/bytes and the time it waited for a ready batch; the
producer records the time it spent assembling. From these, ``summary()`` answers the question
that matters when training is slow: is the loader the bottleneck (the consumer waits) or the
model (the producer idles)?
"""

from __future__ import annotations

import threading
import time

__all__ = ["LoaderStats"]


class LoaderStats:
    """Counters of one epoch's iteration (reset when a new iteration starts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.start()
        self._ended: float | None = 0.0

    def start(self, skipped: int = 0, producers: int = 1) -> None:
        with self._lock:
            self._producers = max(producers, 1)
            self._began = time.perf_counter()
            self._ended = None
            self._samples = 0
            self._bytes = 0
            self._batches = 0
            self._wait = 0.0
            self._busy = 0.0
            self._skipped = skipped

    def stop(self) -> None:
        with self._lock:
            self._ended = time.perf_counter()

    def waited(self, seconds: float) -> None:
        with self._lock:
            self._wait += seconds

    def produced(self, seconds: float) -> None:
        with self._lock:
            self._busy += seconds

    def delivered(self, samples: int, nbytes: int, skipped: int = 0) -> None:
        with self._lock:
            self._samples += samples
            self._bytes += nbytes
            self._batches += 1
            self._skipped += skipped

    def summary(self) -> dict[str, float]:
        """samples, batches, seconds, samples_per_s, bytes_per_s, wait_s, wait_fraction,
        producer_busy_fraction (averaged over the producer threads) and skipped."""
        with self._lock:
            end = self._ended if self._ended is not None else time.perf_counter()
            elapsed = max(end - self._began, 1e-9)
            return {
                "samples": float(self._samples),
                "batches": float(self._batches),
                "seconds": elapsed,
                "samples_per_s": self._samples / elapsed,
                "bytes_per_s": self._bytes / elapsed,
                "wait_s": self._wait,
                "wait_fraction": min(self._wait / elapsed, 1.0),
                "producer_busy_fraction": min(self._busy / (elapsed * self._producers), 1.0),
                "skipped": float(self._skipped),
            }
