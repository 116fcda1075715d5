"""The ``pydata`` command line: one subcommand per task, arguments parsed here, work done in
the modules that own it (imported lazily, so ``pydata --help`` stays fast)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydata", description=__doc__)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="tour the compiled core on generated data")
    demo.add_argument("--samples", type=int, default=8192, help="latents to generate")
    demo.add_argument("--batch-size", type=int, default=256, help="rows per batch")
    demo.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pydata`` script; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from pydata import __version__

        print(__version__)
        return 0
    if args.command == "demo":
        if args.samples < args.batch_size or args.batch_size < 1:
            parser.error("--samples must be at least --batch-size, and --batch-size at least 1")
        from pydata.demo import run_core_demo

        run_core_demo(samples=args.samples, batch_size=args.batch_size, seed=args.seed)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
