"""Shared by every benchmark script: timing, environment capture, tables and JSON results.

Scripts run as ``python benchmarks/<name>.py`` (not a package); they import pydata's public API
and measure pydata and its baselines in the same run, so ratios are comparable.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "results"


@dataclass(frozen=True)
class Timing:
    """Repeated timings of one measured call, in seconds."""

    samples: list[float]

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: how noisy the repeats were."""
        return (max(self.samples) - min(self.samples)) / self.median


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
            before: Callable[[], object] | None = None) -> Timing:
    """Times ``fn`` ``repeats`` times after ``warmup`` untimed calls; ``before`` runs untimed
    ahead of every call (e.g. to make pages resident)."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    samples = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing(samples)


def measure_interleaved(cases: dict[str, Callable[[], object]], repeats: int = 7,
                        before: Callable[[], object] | None = None) -> dict[str, Timing]:
    """Times several cases round by round (the order rotating each round), so that every case
    sees the same machine: on a shared VM the bandwidth drifts by tens of percent between
    seconds, and timing one case after another would turn that drift into a false ratio."""
    names = list(cases)
    for name in names:  # warm-up round
        cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if before:
                before()
            start = time.perf_counter()
            cases[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(times) for name, times in samples.items()}


def measure_interleaved_each(cases: dict[str, Callable[[], object]], repeats: int = 5,
                             before: dict[str, Callable[[], object]] | None = None,
                             warmup: bool = True) -> dict[str, Timing]:
    """:func:`measure_interleaved` with a ``before`` per case: ``before[name]()`` runs untimed
    right before every call of case ``name`` (e.g. to make only that case's files resident,
    when touching every case's files before every call would take longer than the calls)."""
    before = before or {}
    names = list(cases)
    if warmup:
        for name in names:
            if name in before:
                before[name]()
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            if name in before:
                before[name]()
            start = time.perf_counter()
            cases[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(times) for name, times in samples.items()}


def environment() -> dict[str, Any]:
    """Versions and machine facts that a result depends on."""
    import numpy

    import pydata

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "pydata": pydata.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory / 2**30, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats get 3 significant digits."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Writes ``results/<name>.json`` with the environment added; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {"environment": environment(), **payload}
    path.write_text(json.dumps(body, indent=2, default=lambda o: asdict(o)))
    return path
