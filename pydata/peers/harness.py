"""The parent side of the peers benchmark: plans the jobs and runs each in a subprocess.

Order of work: generate the sources; probe every system (an import in a fresh process: a peer
that cannot be imported is reported with the reason, never dropped); convert each available
system's workloads (timed, bytes on disk counted); measure the local ceilings; run every
(workload, setting, system, workers-or-threads) combination; then, with the S3 server up, upload
the S3-capable systems' data, measure the server's raw GET bandwidth and run the S3 setting. A
run that crashes or times out becomes a row with the error; the others go on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydata.peers.s3 import s3_server, upload
from pydata.peers.systems import BUILTIN, DEFAULT
from pydata.peers.systems.base import System, load_system
from pydata.peers.workloads import WORKLOADS, open_source

__all__ = ["Config", "run_harness"]


@dataclass
class Config:
    """What one harness run covers.

    Attributes:
        workdir: Sources, converted data and scratch space (kept: sources are reused).
        samples: Samples per workload.
        epochs: Timed epochs per run (after the untimed check epoch).
        batch: Samples per batch.
        seed: Seed of the data and of every shuffle.
        workloads: Workloads to run.
        settings: ``hot``, ``cold``, ``s3``.
        systems: Short names (:data:`pydata.peers.systems.BUILTIN`) or ``module:Class`` /
            ``file.py:Class`` specs.
        timeout: Seconds one subprocess may take.
    """

    workdir: Path
    samples: int = 16_384
    epochs: int = 3
    batch: int = 256
    seed: int = 0
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    settings: tuple[str, ...] = ("hot", "cold", "s3")
    systems: tuple[str, ...] = DEFAULT
    timeout: float = 600.0


@dataclass
class _Entry:
    """One system as the parent knows it."""

    key: str
    spec: str
    system: System | None
    status: str = "ok"
    notes: list[str] = field(default_factory=list)
    conversions: dict[str, dict[str, Any]] = field(default_factory=dict)


def child(spec: dict[str, Any], cwd: Path, timeout: float) -> dict[str, Any]:
    """Runs one job in a fresh ``python -m pydata.peers.runner``; a crash or a timeout becomes a
    result whose status carries the error's last line."""
    with tempfile.TemporaryDirectory(dir=cwd, prefix="job-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        command = [sys.executable, "-m", "pydata.peers.runner", str(spec_path), str(out_path)]
        try:
            done = subprocess.run(command, cwd=tmp, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            return {"status": f"error: timed out after {timeout:.0f} s"}
        if done.returncode != 0 or not out_path.exists():
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
            return {"status": f"error: {lines[-1].strip() if lines else f'exit code {done.returncode}'}"[:300]}
        return json.loads(out_path.read_text())  # type: ignore[no-any-return]


class _Harness:
    def __init__(self, config: Config, log: Callable[[str], None]) -> None:
        self.config, self.log = config, log
        self.root = config.workdir
        self.sources = {w: open_source(w, config.samples, config.seed, self.root / "sources")
                        for w in config.workloads}
        self.entries: list[_Entry] = []
        self.rows: list[dict[str, Any]] = []
        self.ceilings: list[dict[str, Any]] = []

    def job(self, **spec: Any) -> dict[str, Any]:
        base = {"batch": self.config.batch, "seed": self.config.seed, "epochs": self.config.epochs}
        scratch = Path(tempfile.mkdtemp(dir=self.root / "scratch"))
        return child({**base, "scratch": str(scratch), **spec}, scratch, self.config.timeout)

    def probe(self) -> None:
        (self.root / "scratch").mkdir(parents=True, exist_ok=True)
        for key in self.config.systems:
            spec = BUILTIN.get(key, key)
            result = self.job(job="probe", system=spec)
            try:  # peer modules import their package lazily: the name loads even when it is missing
                system: System | None = load_system(spec)
            except (ImportError, ValueError):
                system = None
            self.entries.append(_Entry(key, spec, system, result["status"], result.get("notes", [])))
            self.log(f"{key}: {result['status']}")

    def data(self, entry: _Entry, workload: str) -> Path:
        return self.root / "data" / entry.key.replace("/", "_").replace(":", "_") / workload

    def convert(self) -> None:
        for entry in self.ready():
            assert entry.system is not None
            for workload in self.workloads(entry):
                result = self.job(job="convert", system=entry.spec, workload=workload,
                                  source=str(self.sources[workload].root), data=str(self.data(entry, workload)))
                entry.conversions[workload] = result
                self.log(f"converted {workload} for {entry.key}: {result['status']} "
                         f"({result.get('seconds', 0):.1f} s, {result.get('bytes', 0) / 1e6:.0f} MB)")

    def ready(self) -> list[_Entry]:
        return [e for e in self.entries if e.status == "ok" and e.system is not None]

    def workloads(self, entry: _Entry) -> list[str]:
        assert entry.system is not None
        return [w for w in self.config.workloads if w in entry.system.workloads]

    def local_ceilings(self) -> None:
        for workload, source in self.sources.items():
            result = self.job(job="ceiling", workload=workload, source=str(source.root))
            self.add_ceilings(workload, "hot", result)

    def run(self, entry: _Entry, workload: str, setting: str, **extra: Any) -> None:
        assert entry.system is not None
        conversion = entry.conversions.get(workload, {})
        for variant in entry.system.variants:
            row = {"workload": workload, "setting": setting, "system": entry.system.name,
                   "key": entry.key, "family": entry.system.family,
                   "variant": f"{variant} {entry.system.variant_kind}", "conversion_s": conversion.get("seconds"),
                   "disk_mb": conversion.get("bytes", 0) / 1e6 or None, "notes": entry.notes}
            if conversion.get("status") != "ok":
                row["status"] = f"conversion failed: {conversion.get('status', 'not converted')}"
            else:
                result = self.job(job="run", system=entry.spec, workload=workload, setting=setting,
                                  variant=variant, source=str(self.sources[workload].root),
                                  data=str(self.data(entry, workload)), **extra)
                row |= result
                row["notes"] = sorted(set(entry.notes) | set(result.get("notes", [])))
            self.rows.append(row)
            self.log(f"  {workload} {setting} {entry.key} {row['variant']}: {row['status']}"
                     + (f", {row['samples_per_s']:,.0f} samples/s" if "samples_per_s" in row else ""))

    def local_runs(self) -> None:
        for workload in self.config.workloads:
            for setting in (s for s in self.config.settings if s != "s3"):
                for entry in self.ready():
                    assert entry.system is not None
                    if workload in self.workloads(entry) and setting in entry.system.settings:
                        self.run(entry, workload, setting)

    def s3_runs(self) -> None:
        capable = [e for e in self.ready() if e.system is not None and "s3" in e.system.settings]
        with s3_server(self.root) as endpoint:
            remotes: dict[tuple[str, str], str] = {}
            for entry in capable:
                for workload in self.workloads(entry):
                    if entry.conversions.get(workload, {}).get("status") == "ok":
                        prefix = f"{entry.key.replace('/', '_').replace(':', '_')}/{workload}"
                        remotes[entry.key, workload] = upload(self.data(entry, workload), endpoint, prefix)
            for workload in self.config.workloads:
                self.s3_ceiling(workload, endpoint, remotes)
                for entry in capable:
                    if (entry.key, workload) in remotes:
                        self.run(entry, workload, "s3", remote=remotes[entry.key, workload], endpoint=endpoint)

    def s3_ceiling(self, workload: str, endpoint: str, remotes: dict[tuple[str, str], str]) -> None:
        ours = [url for (key, w), url in remotes.items() if w == workload and key.startswith("pydata")]
        url = ours[0] if ours else next((u for (_, w), u in remotes.items() if w == workload), None)
        if url is None:
            return
        self.add_ceilings(workload, "s3", self.job(job="s3-get", workload=workload, remote=url, endpoint=endpoint))

    def add_ceilings(self, workload: str, setting: str, result: dict[str, Any]) -> None:
        if result["status"] != "ok":
            self.ceilings.append({"workload": workload, "setting": setting, "ceiling": result["status"]})
        for name, figures in result.get("ceilings", {}).items():
            self.ceilings.append({"workload": workload, "setting": setting, "ceiling": name, **figures})

    def results(self) -> dict[str, Any]:
        return {"config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.config).items()},
                "sample_bytes": {w: s.sample_bytes() for w, s in self.sources.items()},
                "systems": [{"key": e.key, "spec": e.spec, "status": e.status, "notes": e.notes,
                             "name": e.system.name if e.system else e.key,
                             "family": e.system.family if e.system else _family(e.key),
                             "conversions": e.conversions} for e in self.entries],
                "ceilings": self.ceilings, "rows": self.rows}


def _family(key: str) -> str:
    return "pydata" if key.startswith("pydata") else "peer" if key in ("mosaic", "litdata", "webdataset") else "baseline"


def run_harness(config: Config, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs every job of ``config``; returns the results (without the environment)."""
    harness = _Harness(config, log)
    harness.probe()
    harness.convert()
    if any(s != "s3" for s in config.settings):
        harness.local_ceilings()
        harness.local_runs()
    if "s3" in config.settings:
        harness.s3_runs()
    return harness.results()
