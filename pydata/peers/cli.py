"""``python benchmarks/peers.py`` / ``pydata bench --peers``: the command line of the peers benchmark.

It parses the options, runs :func:`pydata.peers.harness.run_harness`, and writes the JSON, the
markdown table and the chart (:mod:`pydata.peers.report`), printing the table. The output states
how each setting was made, since a figure means nothing without it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pydata.peers.harness import Config, run_harness
from pydata.peers.report import markdown, write_outputs
from pydata.peers.systems import BUILTIN, DEFAULT
from pydata.peers.workloads import WORKLOADS

__all__ = ["main"]

METHOD = [
    "hot: right before each epoch, every file of the system is read in full (touched, not mlocked): "
    "this VM pages out file pages idle for ~30 s",
    "cold: before each epoch the reader is closed (maps and workers go) and its files are dropped from the "
    "page cache with posix_fadvise(POSIX_FADV_DONTNEED); the reader is rebuilt inside the clock",
    "s3: moto's S3 server on 127.0.0.1 in its own process; before each epoch the reader is closed and "
    "given a fresh, empty cache directory; the reader is rebuilt inside the clock",
    "every run is a subprocess; one untimed epoch (the warm-up) must deliver every sample exactly once "
    "with the source's bytes (order-free fingerprints) before the timed epochs count",
    "samples/s and MB/s: median over the timed epochs; spread: (max - min) / median of the epoch times; "
    "CPU: the run's process and its workers; RSS/USS: peaks (main: VmHWM; workers: summed at one instant)",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydata bench --peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16_384, help="samples per workload (default 16,384)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run, after the check epoch (>= 3)")
    parser.add_argument("--batch", type=int, default=256, help="samples per batch (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--settings", nargs="+", choices=["hot", "cold", "s3"], default=["hot", "cold", "s3"])
    parser.add_argument("--systems", nargs="+", default=list(DEFAULT), metavar="SYSTEM",
                        help=f"short names ({', '.join(BUILTIN)}) or module:Class / file.py:Class")
    parser.add_argument("--workdir", type=Path, help="data and scratch space (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="where peers.json/.md/.png go")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the peers benchmark; returns the exit code (1 when a pydata run is incorrect).

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    args = _parser().parse_args(argv)
    if args.epochs < 1 or args.samples < 1 or args.batch < 1:
        _parser().error("--epochs, --samples and --batch must be >= 1")
    with tempfile.TemporaryDirectory(prefix="pydata-peers-") as tmp:
        config = Config(workdir=args.workdir or Path(tmp), samples=args.samples, epochs=args.epochs,
                        batch=args.batch, seed=args.seed, workloads=tuple(args.workloads),
                        settings=tuple(args.settings), systems=tuple(args.systems), timeout=args.timeout)
        config.workdir.mkdir(parents=True, exist_ok=True)
        results = run_harness(config, log=(lambda _: None) if args.quiet else print)
    results["method"] = list(METHOD)
    paths = write_outputs(results, args.out)
    print(markdown(results))
    print("\n" + "\n".join(f"wrote {p}" for p in paths.values()))
    bad = [r for r in results["rows"] if r["family"] == "pydata" and r["status"].startswith("incorrect")]
    return 1 if bad else 0
