"""The child side of the harness: one probe, conversion or measured run per process.

``python -m pydata.peers.runner SPEC.json RESULT.json`` reads a job, runs it and writes a JSON
result; the parent (:mod:`pydata.peers.harness`) starts one such process per job, so a system's
threads, caches and memory live and die with its own run.

A run opens the system's reader, reads one untimed epoch that must deliver every sample exactly
once with the source's bytes (the check, which is also the warm-up), then times ``epochs``
epochs. Before each epoch the setting is applied: ``hot`` reads the system's files in full;
``cold`` closes the reader (maps and workers go) and drops the files from the page cache with
``posix_fadvise(DONTNEED)``; ``s3`` closes the reader and gives it a fresh, empty cache
directory. Cold and S3 readers are built inside the clock (a cold start includes them); a hot
reader is built once, so its workers start before the warm-up.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pydata.format.ragged import Ragged
from pydata.page_cache import drop_files, resident_bytes, touch_files
from pydata.peers.measure import MemoryMonitor, cpu_snapshot
from pydata.peers.systems.base import Reader, RunContext, System, load_system
from pydata.peers.workloads import U64, Source, batch_fingerprints, compare

__all__ = ["run_job"]


def _batch_size(batch: dict[str, Any]) -> int:
    return len(next(iter(batch.values())))


def _batch_nbytes(batch: dict[str, Any]) -> int:
    return sum(v.nbytes if isinstance(v, (np.ndarray, Ragged)) else sum(r.nbytes for r in v)
               for v in batch.values())


class _Run:
    """One measured run: a system, a workload, a setting and a worker or thread count."""

    def __init__(self, system: System, spec: dict[str, Any]) -> None:
        self.system, self.spec = system, spec
        self.source = Source(spec["workload"], Path(spec["source"]))
        self.ctx = RunContext(data=Path(spec["data"]), workload=spec["workload"], setting=spec["setting"],
                              variant=spec["variant"], batch=spec["batch"], seed=spec["seed"],
                              scratch=Path(spec["scratch"]), remote=spec.get("remote", ""),
                              endpoint=spec.get("endpoint", ""))
        self.files = sorted(p for p in self.ctx.data.rglob("*") if p.is_file())
        self.reader: Reader | None = None
        self.caches = 0

    def prepare(self) -> dict[str, Any]:
        """Applies the setting before an epoch; returns what it did."""
        setting = self.ctx.setting
        if setting == "hot":
            if self.reader is None:
                self.reader = self.system.open(self.ctx)
            return {"touched_bytes": touch_files(self.files)}
        self.close()
        if setting == "cold":
            drop_files(self.files)
            return {"resident_bytes_after_drop": resident_bytes(self.files)}
        if self.ctx.cache is not None:
            shutil.rmtree(self.ctx.cache, ignore_errors=True)
        self.caches += 1
        self.ctx.cache = self.ctx.scratch / f"cache-{self.caches}"
        return {}

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def epoch(self, expected: U64 | None) -> dict[str, Any]:
        """One epoch, timed; with ``expected``, every sample is also fingerprinted and checked."""
        info = self.prepare()
        cpu0, started = cpu_snapshot(), time.perf_counter()
        if self.reader is None:
            self.reader = self.system.open(self.ctx)
        first, samples, nbytes, prints = None, 0, 0, []
        for batch in self.reader.batches():
            if first is None:
                first = time.perf_counter()
            samples += _batch_size(batch)
            nbytes += _batch_nbytes(batch)
            if expected is not None:
                prints.append(batch_fingerprints(self.source.specs, batch))
        ended, cpu1 = time.perf_counter(), cpu_snapshot()
        result = {"seconds": ended - started, "first_batch_s": (first or ended) - started,
                  "samples": samples, "bytes": nbytes, "cpu_main_s": cpu1.main - cpu0.main,
                  "cpu_workers_s": cpu1.workers_since(cpu0), **info}
        if expected is not None:
            got = np.concatenate(prints) if prints else np.zeros(0, np.uint64)
            result["verdict"] = compare(expected, got).describe()
        elif samples != self.source.count:
            result["verdict"] = f"incorrect: delivered {samples} of {self.source.count} samples"
        return result


def _summary(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [e["seconds"] for e in epochs]
    median = statistics.median(seconds)
    samples = epochs[0]["samples"]
    cpu = [(e["cpu_main_s"] + e["cpu_workers_s"]) / max(e["samples"], 1) * 1000 for e in epochs]
    return {"samples_per_s": samples / median, "mb_per_s": statistics.median(e["bytes"] for e in epochs) / median / 1e6,
            "spread": (max(seconds) - min(seconds)) / median,
            "first_batch_s": statistics.median(e["first_batch_s"] for e in epochs),
            "cpu_s_per_1k": statistics.median(cpu)}


def _measure(system: System, spec: dict[str, Any]) -> dict[str, Any]:
    run = _Run(system, spec)
    expected = system.expected(run.source)
    with MemoryMonitor() as monitor:
        try:
            check = run.epoch(expected)
            if check["verdict"] != "correct":
                return {"status": check["verdict"], "check": check, "notes": run.ctx.notes}
            epochs = [run.epoch(None) for _ in range(spec["epochs"])]
        finally:
            run.close()
    wrong = [e["verdict"] for e in epochs if "verdict" in e]
    stayed = max((e.get("resident_bytes_after_drop", 0) for e in epochs), default=0)
    if stayed:
        run.ctx.notes.append(f"{system.name}, {spec['workload']}, cold, {spec['variant']} workers/threads: "
                             f"{stayed / 1e6:.1f} MB of its files stayed in the page cache after the drop "
                             "(still mapped after its reader was closed): not fully cold")
    memory = monitor.summary()
    memory["peak_rss_main_mb"] = max(memory["peak_rss_main_mb"],
                                     resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6)
    return {"status": wrong[0] if wrong else "ok", "check": check, "epochs": epochs,
            **(_summary(epochs) if not wrong else {}), **memory, "notes": run.ctx.notes}


def _convert(system: System, spec: dict[str, Any]) -> dict[str, Any]:
    out = Path(spec["data"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    source = Source(spec["workload"], Path(spec["source"]))
    started = time.perf_counter()
    system.convert(source, out)
    seconds = time.perf_counter() - started
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"status": "ok", "seconds": seconds, "bytes": sum(p.stat().st_size for p in files),
            "files": len(files)}


def _probe(system: System, spec: dict[str, Any]) -> dict[str, Any]:
    reason = system.available()
    return {"status": "ok" if not reason else f"unavailable: {reason}", "notes": system.notes()}


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one job: ``spec["job"]`` is ``"probe"``, ``"convert"``, ``"run"`` or a ceiling
    (``"ceiling"``, ``"s3-get"``: :mod:`pydata.peers.ceilings`)."""
    job = spec["job"]
    if job in ("ceiling", "s3-get"):
        from pydata.peers import ceilings

        return ceilings.run(spec)
    system = load_system(spec["system"])
    jobs: dict[str, Callable[[System, dict[str, Any]], dict[str, Any]]] = {
        "probe": _probe, "convert": _convert, "run": _measure}
    return jobs[job](system, spec)


def _main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    result = run_job(spec)
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
