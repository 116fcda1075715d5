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
from pathlib import Path
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
    cifar10 = sources.add_parser("cifar10", help="the CIFAR-10 python archive",
                                 description="Convert cifar-10-python.tar.gz into OUT/train "
                                 "and OUT/test: 'image' (uint8, 3 x 32 x 32) and 'label' (int64), "
                                 "class names in the index metadata.")
    cifar10.add_argument("src", metavar="ARCHIVE", help="cifar-10-python.tar.gz")
    cifar10.add_argument("out", metavar="OUT", help="folder to receive train/ and test/")
    for parser in (files, arrays, images, cifar10):
        _add_write_options(parser)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pydata", description="pydata: a dataset engine for PyTorch. Convert "
                     "files into a dataset, inspect it, verify its checksums, train on it.",
                     epilog="Every failure exits with status 1 and one line on stderr.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_training(commands)
    _add_convert(commands)
    _add_profile(commands)
    inspect = commands.add_parser("inspect", help="summarise a dataset: schema, sizes, compression",
                                  description="Summarise a dataset: schema, samples, shards, bytes "
                                  "per field and compression ratios.")
    inspect.add_argument("path", metavar="PATH", help="dataset directory")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    verify = commands.add_parser("verify", help="check every shard's checksum",
                                 description="Open every shard and check its CRC-32C against the index.")
    verify.add_argument("path", metavar="PATH", help="dataset directory")
    _add_diagnose(commands)
    _add_bench(commands)
    return parser


def _convert(args: argparse.Namespace) -> int:
    if args.source is None:
        _fail("convert needs a SOURCE: npy-files, npy-arrays, images or cifar10 "
              "(see 'pydata convert --help')")
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
    elif args.source == "cifar10":
        from pydata.convert.cifar10 import convert_cifar10

        for split, index in convert_cifar10(args.src, args.out, **common).items():
            print(f"wrote {index.samples:,} {split} samples in {len(index.shards):,} shard(s), "
                  f"{index.nbytes / 2**20:.1f} MiB, to {Path(args.out) / split}")
        return 0
    else:
        raise AssertionError(args.source)  # argparse admits only the sources above
    print(f"wrote {index.samples:,} samples in {len(index.shards):,} shard(s), "
          f"{index.nbytes / 2**20:.1f} MiB, to {args.out}")
    return 0


def _add_training(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="train a ResNet on generated images: accuracy, loader vs model throughput",
        description="Write a synthetic, learnable image dataset (class patterns plus noise; nothing "
        "is downloaded) as shards, train a small ResNet on it with a validation split, and report "
        "validation accuracy against chance and the loader's samples/s against the model's.")
    demo.add_argument("--samples", type=_positive_int, default=None, help="images to generate (default: 12000)")
    demo.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (default: 6)")
    demo.add_argument("--image-size", type=_positive_int, default=None, help="image side (default: 32)")
    demo.add_argument("--out", metavar="DIR", default="pydata-demo",
                      help="where the dataset and the run go; its data/ and run/ are replaced (default: ./pydata-demo)")
    demo.add_argument("--seed", type=int, default=0, help="seed of data, split, order and model (default: 0)")
    demo.add_argument("--quick", action="store_true", help="a tiny run in seconds (640 images of 16x16, 2 epochs)")
    train = commands.add_parser(
        "train", help="train a model from a YAML config", description="Train the ResNet on a pydata "
        "dataset as the YAML CONFIG says; KEY=VALUE overrides (e.g. optim.lr=0.01 train.epochs=3 "
        "train.resume=true) are applied on top. Under torchrun every rank runs this command.")
    train.add_argument("config", metavar="CONFIG", help="YAML file with model/data/optim/schedule/train sections")
    train.add_argument("overrides", metavar="KEY=VALUE", nargs="*", help="config overrides, e.g. data.batch_size=64")
    tour = commands.add_parser("tour", help="tour the compiled core on generated data: gather, codecs, ring buffer")
    tour.add_argument("--samples", type=int, default=8192, help="latents to generate")
    tour.add_argument("--batch-size", type=int, default=256, help="rows per batch")
    tour.add_argument("--seed", type=int, default=0)


def _demo(args: argparse.Namespace) -> int:
    from pydata.models.train import run_demo

    sizes: dict[str, Any] = {"samples": 640, "epochs": 2, "image_size": 16, "width": 8,
                             "batch_size": 64} if args.quick else {}
    for name in ("samples", "epochs", "image_size"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    run_demo(args.out, seed=args.seed, **sizes)
    return 0


def _train(args: argparse.Namespace) -> int:
    from pydata.models.config import load_config
    from pydata.models.train import run_training

    result = run_training(load_config(args.config, args.overrides))
    if result.metrics is None:  # ranks other than 0 report nothing
        return 0
    shown = (f", validation loss {result.val_loss:.4f} accuracy {result.val_accuracy:.1%}"
             if result.val_accuracy is not None else "")
    stop = " (stopped early)" if result.stopped_early else ""
    print(f"trained to epoch {result.epochs}, step {result.steps}{stop}: train loss "
          f"{result.train_loss:.4f}{shown}; {result.samples_per_s:,.0f} samples/s, "
          f"{result.wait_fraction:.1%} waiting for data")
    print(f"metrics: {result.metrics}\ncurves:  {result.curves}\ncheckpoint: {result.checkpoint}")
    return 0


def _add_profile(commands: Any) -> None:
    profile = commands.add_parser(
        "profile", help="profile a bundled model: parameters, FLOPs, time, memory",
        description="Profile a training step of a bundled model on a random batch: parameters, "
        "FLOPs (torch.utils.flop_counter), and forward/backward time and memory per top-level "
        "module (median of --repeats runs after --warmup).")
    profile.add_argument("--model", choices=("resnet", "autoencoder"), default="resnet")
    profile.add_argument("--depth", type=_positive_int, default=20,
                         help="ResNet depth, 6n+2 (default: 20)")
    profile.add_argument("--width", type=_positive_int, default=None,
                         help="channels of the first stage (default: 16 resnet, 32 autoencoder)")
    profile.add_argument("--num-classes", type=_positive_int, default=10, help="ResNet outputs")
    profile.add_argument("--latent-channels", type=_positive_int, default=4,
                         help="autoencoder latent channels (default: 4)")
    profile.add_argument("--channels", type=_positive_int, default=3, help="image channels")
    profile.add_argument("--image-size", type=_positive_int, default=32,
                         help="image height and width (default: 32)")
    profile.add_argument("--batch-size", type=_positive_int, default=32)
    profile.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:1 (default: cpu)")
    profile.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: 2)")
    profile.add_argument("--repeats", type=_positive_int, default=5, help="timed runs (default: 5)")
    profile.add_argument("--json", metavar="PATH", help="also write the profile as JSON to PATH")


def _profile(args: argparse.Namespace) -> int:
    import torch

    from pydata.models import AutoEncoder, ResNet
    from pydata.models.profile import profile_model

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        _fail(f"--device {args.device}: no CUDA device is available")
    model: torch.nn.Module
    if args.model == "resnet":
        model = ResNet(args.num_classes, args.depth, args.width or 16, args.channels)
    else:
        model = AutoEncoder(args.channels, args.latent_channels, args.width or 32)
    example = torch.rand(args.batch_size, args.channels, args.image_size, args.image_size,
                         device=device)
    result = profile_model(model.to(device), example, warmup=args.warmup, repeats=args.repeats)
    print(result.format_table())
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
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


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"expected a non-negative integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_diagnose(commands: Any) -> argparse.ArgumentParser:
    diagnose: argparse.ArgumentParser = commands.add_parser(
        "diagnose", help="measure a dataset's memory picture under DataLoader workers",
        description="Measure the memory picture of a training input: bytes on disk and in the page "
        "cache, the RSS/PSS/USS of N real DataLoader workers while they iterate an epoch, what "
        "per-worker copies would cost, and recommendations (workers, prefetch, codec) drawn from them.")
    diagnose.add_argument("path", metavar="PATH", help="dataset directory")
    diagnose.add_argument("--workers", type=_non_negative_int, default=2, metavar="N",
                          help="DataLoader worker processes to measure (default: 2)")
    diagnose.add_argument("--batch-size", type=_positive_int, default=256, help="samples per batch (default: 256)")
    diagnose.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    return diagnose


def _add_bench(commands: Any) -> argparse.ArgumentParser:
    bench: argparse.ArgumentParser = commands.add_parser(
        "bench", help="epoch throughput of the Loader and the DataLoader on a dataset",
        description="Time shuffled epochs of pydata.Loader over thread counts and of the torch "
        "DataLoader over worker counts on one dataset (files read right before every epoch; median "
        "of --epochs), print a table, optionally plot samples/s against threads/workers. "
        "`pydata bench --peers [options]` runs the side-by-side benchmark against other loaders "
        "instead (`pydata bench --peers --help`).")
    bench.add_argument("path", metavar="PATH", nargs="?", help="dataset directory")
    bench.add_argument("--peers", nargs=argparse.REMAINDER, metavar="...",
                       help="run the peers benchmark instead, with the options that follow "
                       "(`pydata bench --peers --help`)")
    bench.add_argument("--threads", type=_positive_int, nargs="+", metavar="N",
                       help="Loader thread counts (default: 1 .. usable cores)")
    bench.add_argument("--workers", type=_non_negative_int, nargs="+", metavar="N",
                       help="DataLoader worker counts (default: 0 .. usable cores)")
    bench.add_argument("--epochs", type=_positive_int, default=3, help="timed epochs per case (default: 3)")
    bench.add_argument("--batch-size", type=_positive_int, default=256, help="samples per batch (default: 256)")
    bench.add_argument("--plot", metavar="FILE", help="write a PNG of samples/s against threads/workers")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    return bench


def _diagnose(args: argparse.Namespace) -> int:
    from pydata.diagnose import diagnose

    result = diagnose(args.path, workers=args.workers, batch_size=args.batch_size)
    print(json.dumps(result.to_json(), indent=1) if args.json else result.format())
    return 0


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.peers is not None:  # a program of its own, with its own options
        from pydata.peers import main as peers_main

        return peers_main(args.peers)
    if args.path is None:
        parser.error("bench: PATH is required (or --peers)")
    from pydata.bench import bench_dataset, plot_bench

    result = bench_dataset(args.path, threads=args.threads, workers=args.workers, epochs=args.epochs,
                           batch_size=args.batch_size)
    print(result.format())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote {plot_bench(result, args.plot)}")
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
    if args.command == "tour":
        if args.samples < args.batch_size or args.batch_size < 1:
            parser.error("--samples must be at least --batch-size, and --batch-size at least 1")
        from pydata.tour import run_tour

        run_tour(samples=args.samples, batch_size=args.batch_size, seed=args.seed)
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command == "train":
        return _train(args)
    if args.command == "convert":
        return _convert(args)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "profile":
        return _profile(args)
    if args.command == "diagnose":
        return _diagnose(args)
    if args.command == "bench":
        return _bench(args, parser)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
