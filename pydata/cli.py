"""The ``pydata`` command line: one subcommand per task, arguments parsed here, work done in
the modules that own it (imported lazily, so ``pydata --help`` stays fast).

Every failure exits with status 1 and one line on stderr, ``pydata: error: ...``, without a
traceback: a usage error, a missing path, bad data (``pydata`` alone prints the help and exits
with 2). Progress bars go to stderr, and only when it is a terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]

_SIZE = re.compile(r"(\d+)\s*([kmgt]?)(i?b)?", re.IGNORECASE)


class _CommandError(Exception):
    """A failure already phrased for the user."""


def _fail(message: str) -> NoReturn:
    raise _CommandError(message)


class _Parser(argparse.ArgumentParser):
    """argparse with pydata's error contract: one line, status 1."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        self.exit(1, f"pydata: error: {where}{message} (see '{self.prog} --help')\n")


def _byte_size(text: str) -> int:
    """``65536``, ``64K``, ``64MiB``, ``1G``: binary multiples."""
    match = _SIZE.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        msg = f"expected a positive size such as 67108864, 64M or 1GiB, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(match.group(1)) << (10 * " KMGT".index((match.group(2) or " ").upper()))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        msg = f"expected NAME=VALUE, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, value


def _add_write_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard-bytes", type=_byte_size, default=64 << 20, metavar="SIZE",
                        help="target shard size, e.g. 64M or 1G (default: 64M)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already at OUT")
    parser.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                        help="write N partitions in parallel processes, then merge (default: 1)")


def _add_convert(commands: Any) -> None:
    convert = commands.add_parser("convert", help="convert files into a pydata dataset",
                                  description="Convert files into a pydata dataset.")
    sources = convert.add_subparsers(dest="source", metavar="SOURCE")
    files = sources.add_parser("npy-files", help="a folder of per-sample .npy or .pt files",
                               description="Convert a folder of per-sample .npy/.pt files (one file "
                               "per sample, in sorted name order); the schema is inferred from them.")
    files.add_argument("src", metavar="DIR", help="folder of sample files")
    files.add_argument("out", metavar="OUT", help="dataset directory to create")
    files.add_argument("--field", default="data", help="field name of single-array files (default: data)")
    arrays = sources.add_parser("npy-arrays", help="whole .npy arrays with a leading sample dimension",
                                description="Convert .npy arrays (one per field, same first dimension).")
    arrays.add_argument("out", metavar="OUT", help="dataset directory to create")
    arrays.add_argument("arrays", metavar="NAME=PATH", nargs="+", type=_assignment,
                        help="field name and .npy file")
    for parser in (files, arrays):
        parser.add_argument("--codec", metavar="FIELD=CODEC", action="append", type=_assignment,
                            default=[], help="store FIELD with CODEC (repeatable; default raw)")
    images = sources.add_parser("images", help="an image folder with one sub-folder per class",
                                description="Convert DIR/CLASS/IMAGE files into 'image' (uint8, 3 x "
                                "SIZE x SIZE, RGB, bilinear resize) and 'label' (int64, by sorted "
                                "class name). Needs Pillow.")
    images.add_argument("src", metavar="DIR", help="folder of class sub-folders")
    images.add_argument("out", metavar="OUT", help="dataset directory to create")
    images.add_argument("--size", type=_positive_int, default=64, help="image height and width (default: 64)")
    images.add_argument("--keep-encoded", action="store_true",
                        help="store the original file bytes in a bytes field 'jpeg' instead")
    for parser in (files, arrays, images):
        _add_write_options(parser)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pydata", description="pydata: a dataset engine for PyTorch. Convert "
                     "files into a dataset, inspect it, verify its checksums.",
                     epilog="Every failure exits with status 1 and one line on stderr.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="tour the compiled core on generated data")
    demo.add_argument("--samples", type=int, default=8192, help="latents to generate")
    demo.add_argument("--batch-size", type=int, default=256, help="rows per batch")
    demo.add_argument("--seed", type=int, default=0)
    _add_convert(commands)
    inspect = commands.add_parser("inspect", help="summarise a dataset: schema, sizes, compression",
                                  description="Summarise a dataset: schema, samples, shards, bytes "
                                  "per field and compression ratios.")
    inspect.add_argument("path", metavar="PATH", help="dataset directory")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    verify = commands.add_parser("verify", help="check every shard's checksum",
                                 description="Open every shard and check its CRC-32C against the index.")
    verify.add_argument("path", metavar="PATH", help="dataset directory")
    return parser


def _convert(args: argparse.Namespace) -> int:
    if args.source is None:
        _fail("convert needs a SOURCE: npy-files, npy-arrays or images (see 'pydata convert --help')")
    from pydata import convert

    common: dict[str, Any] = {"workers": args.workers, "shard_bytes": args.shard_bytes,
                              "overwrite": args.overwrite}
    if args.source == "npy-files":
        index = convert.convert_sample_files(args.src, args.out, field=args.field,
                                             codecs=dict(args.codec), **common)
    elif args.source == "npy-arrays":
        index = convert.convert_arrays(args.out, dict(args.arrays), codecs=dict(args.codec), **common)
    elif args.source == "images":
        index = convert.convert_image_folder(args.src, args.out, size=args.size,
                                             keep_encoded=args.keep_encoded, **common)
    else:
        raise AssertionError(args.source)  # argparse admits only the sources above
    print(f"wrote {index.samples:,} samples in {len(index.shards):,} shard(s), "
          f"{index.nbytes / 2**20:.1f} MiB, to {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from pydata.report import dataset_report, format_report

    report = dataset_report(args.path)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pydata.report import verify_dataset

    result = verify_dataset(args.path)
    damaged = result["damaged"]
    if damaged:
        first = damaged[0]["error"]
        more = f" (and {len(damaged) - 1} more: {', '.join(d['file'] for d in damaged[1:])})" if len(damaged) > 1 else ""
        _fail(f"{len(damaged)} of {result['shards']} shard(s) damaged: {first}{more}")
    print(f"OK: {result['shards']:,} shard(s), {result['samples']:,} samples, "
          f"{result['bytes']:,} bytes verified in {args.path}")
    return 0


def _error_text(exc: BaseException) -> str:
    """One line for the user: OS errors without their errno prefix, no newlines."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None and str(exc.filename) not in text:
            text += f": '{exc.filename}'"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pydata`` script; returns the process exit code (0 success, 1 any
    error, 2 no command given)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            from pydata import __version__

            print(__version__)
            return 0
        return _run(args, parser)
    except SystemExit as exc:  # --help (0) or a usage error (1, already printed)
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except (_CommandError, ImportError, OSError, ValueError, RuntimeError) as exc:
        # pydata's errors derive from ValueError, OSError or RuntimeError as well.
        print(f"pydata: error: {_error_text(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pydata: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "demo":
        if args.samples < args.batch_size or args.batch_size < 1:
            parser.error("--samples must be at least --batch-size, and --batch-size at least 1")
        from pydata.demo import run_core_demo

        run_core_demo(samples=args.samples, batch_size=args.batch_size, seed=args.seed)
        return 0
    if args.command == "convert":
        return _convert(args)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "verify":
        return _verify(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
