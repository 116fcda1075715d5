"""StreamingDataset from S3 against "download everything, then train", on a local S3 server.

    python benchmarks/streaming.py [--quick] [--samples N] [--shard-mib N] [--repeats N]

The script starts moto's S3 server (``moto.server.ThreadedMotoServer``) on 127.0.0.1 with dummy
credentials, writes one synthetic dataset (``pydata.synthetic.class_images``: a uint8 3x64x64
image and an int64 label per sample, 12,296 bytes) with ``pydata.ShardWriter`` and uploads it
once. Every case reads one shuffled epoch in batches of 256 (StreamingDataset with its default
client, botocore, given ``endpoint_url``):

1. ``StreamingDataset`` cold: an empty cache directory; the clock starts before the dataset is
   built (it fetches ``index.json``) and stops after the last batch. Iterated directly, and
   through a ``DataLoader(ds, batch_size=None, num_workers=2)`` (worker start-up timed: it is
   part of a cold start);
2. ``StreamingDataset`` warm: the second epoch of the same dataset object on the same cache;
3. baseline: s3fs ``get`` of the dataset directory (every shard and ``index.json``) into a
   fresh local directory, then ``pydata.MemoryMappedDataset`` + ``pydata.Loader`` for one
   epoch; its time to first batch is the download plus the first batch;
4. the baseline's epoch alone: the second epoch of the same Loader, once the files are local;
5. the server's raw GET bandwidth, the ceiling: every shard fetched whole with boto3
   ``get_object``, four GETs in flight at once, nothing written or read.

Each round runs every case once (fresh directories for the cold cases), the order rotating
between rounds; the table reports medians over the rounds. "MB downloaded" counts the bytes of
the S3 server's GET response bodies during the case (every process, ``index.json`` and listings
included); the JSON also has ``ShardCache.stats()`` of the direct cases. Every epoch must
deliver every sample once (count and sum of labels), or the script stops.
Prints a markdown table and writes ``results/streaming.json``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import markdown_table, write_results

import pydata
from pydata.datasets.remote import fetch_index
from pydata.peers.s3 import local_aws_environment
from pydata.synthetic import class_images

BATCH = 256
SAMPLE_BYTES = 3 * 64 * 64 + 8  # 12,296: an image and a label
CREDENTIALS = {"key": "testing", "secret": "testing"}
REGION = "us-east-1"
BUCKET = "pydata-bench"
COLD, WARM = "StreamingDataset, cold cache", "StreamingDataset, warm cache"
BASE = "baseline: s3fs get, then MemoryMappedDataset + Loader"
BASE_EPOCH = "baseline: its epoch alone, files local"
RAW = "ceiling: raw GETs of every shard, 4 in flight"
ROWS = [(COLD, "direct"), (COLD, "DataLoader, 2 workers"), (WARM, "direct, 2nd epoch"),
        (BASE, "download + epoch"), (BASE_EPOCH, "Loader, 2nd epoch"), (RAW, "no reading")]


# -- the S3 server -------------------------------------------------------------------------------

class ServedBytes:
    """WSGI middleware around moto's app: counts the bytes of GET response bodies into a shared
    counter (what the clients downloaded, from every process) and drops moto's own ``Server``
    header (aiohttp's strict parser under ``python -X dev`` rejects the duplicate)."""

    def __init__(self, app: Callable[..., Any], total: Any) -> None:
        self.app, self.total = app, total  # total: a multiprocessing.Value("q")

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != "server"]
            return start_response(status, kept, exc_info)

        body = self.app(environ, start)
        return self._count(body) if environ.get("REQUEST_METHOD") == "GET" else body

    def _count(self, body: Iterable[bytes]) -> Iterator[bytes]:
        """Yields the body in pieces of at most 1 MiB and counts a piece once the server has
        written it (when the next one is asked for): a response that the client abandons (s3fs
        ``get`` drops its first GET of a large object for ranged GETs) counts what was sent."""
        try:
            for chunk in body:
                for start in range(0, len(chunk), 1 << 20):
                    piece = chunk[start : start + (1 << 20)]
                    yield piece
                    with self.total.get_lock():
                        self.total.value += len(piece)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def _serve(ready: Any, stop: Any, total: Any) -> None:
    """The server process: moto's threaded server until ``stop`` is set."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        wsgi = getattr(server, "_server", None)  # private (moto 5): without it, no byte count
        if wsgi is not None and hasattr(wsgi, "app"):
            wsgi.app = ServedBytes(wsgi.app, total)
        ready.put((*server.get_host_and_port(), wsgi is not None))
        stop.wait()
    finally:
        server.stop()


@contextmanager
def s3_server(scratch: Path) -> Iterator[tuple[dict[str, Any], Any]]:
    """moto's S3 server on 127.0.0.1 (a free port) with dummy credentials, in a process of its
    own (a remote server does not take the client's GIL); yields s3fs storage options and the
    served-bytes counter. The environment is restored and the server stopped after."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, stop, total = ctx.Queue(), ctx.Event(), ctx.Value("q", 0)
    process = ctx.Process(target=_serve, args=(ready, stop, total), name="moto-s3", daemon=True)
    with local_aws_environment(scratch):
        try:
            process.start()
            host, port, counting = ready.get(timeout=60)
            assert host == "127.0.0.1", host
            if not counting:
                print("moto's WSGI app not found: MB downloaded will read 0")
            try:
                yield {**CREDENTIALS, "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                                        "region_name": REGION}}, total
            finally:
                import s3fs

                s3fs.S3FileSystem.clear_instance_cache()  # their sessions close before the server
        finally:
            stop.set()
            process.join(30)
            if process.is_alive():
                process.terminate()
                process.join()


def make_dataset(root: Path, count: int, shard_bytes: int, seed: int) -> tuple[Path, int]:
    """Writes the dataset under ``root``; returns its path and the sum of its labels."""
    from pydata import Field, ShardWriter

    started = time.perf_counter()
    images, labels = class_images(count, size=64, seed=seed)
    schema = {"image": Field("uint8", (3, 64, 64)), "label": Field("int64", ())}
    path = root / "dataset"
    with ShardWriter(path, schema, shard_bytes=shard_bytes, progress=False) as writer:
        for s in range(0, count, 4096):
            writer.write_batch({"image": images[s : s + 4096], "label": labels[s : s + 4096]})
    files = sorted(p for p in path.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    print(f"wrote {count} samples: {size / 1e6:.0f} MB in {len(files)} files "
          f"({len(files) - 1} shards of up to {shard_bytes / 2**20:g} MiB), "
          f"{time.perf_counter() - started:.1f} s")
    return path, int(labels.sum())


def upload(local: Path, options: Mapping[str, Any]) -> str:
    import boto3
    import s3fs

    started = time.perf_counter()
    client = boto3.session.Session().client(
        "s3", endpoint_url=options["client_kwargs"]["endpoint_url"], region_name=REGION,
        aws_access_key_id=CREDENTIALS["key"], aws_secret_access_key=CREDENTIALS["secret"])
    client.create_bucket(Bucket=BUCKET)
    client.close()
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    fs.put([str(p) for p in files],
           [f"{BUCKET}/ds/{p.relative_to(local).as_posix()}" for p in files])
    print(f"uploaded to s3://{BUCKET}/ds in {time.perf_counter() - started:.1f} s")
    return f"s3://{BUCKET}/ds"


# -- one epoch, timed ----------------------------------------------------------------------------

@dataclass
class Run:
    """One timed case: seconds from its start to the last batch and to the first batch."""

    seconds: float
    first_batch_s: float
    bytes_downloaded: int
    cache_stats: dict[str, int] = field(default_factory=dict)  # the direct streaming cases'
    download_s: float | None = None  # the baseline's download alone


@dataclass
class Epoch:
    first_at: float  # perf_counter() at the first batch
    end_at: float  # ... after the last


def read_epoch(batches: Iterable[Mapping[str, Any]], count: int, label_sum: int) -> Epoch:
    """Consumes one epoch; checks that it delivered every sample once (count, sum of labels)."""
    first, samples, labels = None, 0, 0
    for batch in batches:
        if first is None:
            first = time.perf_counter()
        samples += len(batch["label"])
        labels += int(batch["label"].sum())
    end = time.perf_counter()
    if (samples, labels) != (count, label_sum):
        msg = (f"epoch delivered {samples} samples (label sum {labels}), "
               f"expected {count} ({label_sum})")
        raise AssertionError(msg)
    assert first is not None
    return Epoch(first, end)


class Bench:
    def __init__(self, remote: str, options: dict[str, Any], served: Any, scratch: Path,
                 count: int, label_sum: int) -> None:
        self.remote, self.options, self.served, self.scratch = remote, options, served, scratch
        self.count, self.label_sum = count, label_sum
        self.shard_bytes = sum(s.nbytes for s in fetch_index(remote, options).shards)
        self.runs: dict[tuple[str, str], list[Run]] = {key: [] for key in ROWS}

    def fresh_dir(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.scratch))

    def record(self, row: tuple[str, str], epoch: Epoch, start: float, served: int,
               **extra: Any) -> None:
        """Adds a run of ``row`` that started at ``start`` with the server count at ``served``."""
        self.runs[row].append(Run(epoch.end_at - start, epoch.first_at - start,
                                  self.served.value - served, **extra))

    def streaming_direct(self) -> None:
        """Cases 1 (direct) and 2: a cold epoch, then a second epoch on the same cache."""
        from pydata import StreamingDataset

        cache = self.fresh_dir("cache")
        served, start = self.served.value, time.perf_counter()
        ds = StreamingDataset(self.remote, batch_size=BATCH, local=cache, storage_options=self.options)
        try:
            e = read_epoch(ds, self.count, self.label_sum)
            cold = ds.cache.stats()
            self.record(ROWS[0], e, start, served, cache_stats=cold)
            served, start = self.served.value, time.perf_counter()
            e = read_epoch(ds, self.count, self.label_sum)
            warm = {k: v - cold[k] for k, v in ds.cache.stats().items()}
            self.record(ROWS[2], e, start, served, cache_stats=warm)
        finally:
            ds.cache.close()
            shutil.rmtree(cache)

    def streaming_workers(self) -> None:
        """Case 1 through a DataLoader of 2 workers (their cache stats stay in the workers)."""
        from torch.utils.data import DataLoader

        from pydata import StreamingDataset

        cache = self.fresh_dir("cache")
        served, start = self.served.value, time.perf_counter()
        ds = StreamingDataset(self.remote, batch_size=BATCH, local=cache, storage_options=self.options)
        try:
            loader = DataLoader(ds, batch_size=None, num_workers=2)
            self.record(ROWS[1], read_epoch(loader, self.count, self.label_sum), start, served)
        finally:
            ds.cache.close()
            shutil.rmtree(cache)

    def raw_gets(self) -> None:
        """Case 5: the whole objects fetched into memory with boto3 (the fastest client here;
        s3fs's single event loop moves about half as much), 4 at once; its "first batch" is the
        first object."""
        import concurrent.futures

        import boto3
        import fsspec

        fs, root = fsspec.core.url_to_fs(self.remote, **self.options)
        files = sorted(p for p in fs.ls(root, refresh=True) if p.endswith(".pds"))
        client = boto3.session.Session().client(
            "s3", endpoint_url=self.options["client_kwargs"]["endpoint_url"], region_name=REGION,
            config=boto3.session.Config(max_pool_connections=8))
        served, start = self.served.value, time.perf_counter()
        firsts: list[float] = []

        def get(path: str) -> int:
            bucket, _, key = path.partition("/")
            n = len(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            firsts.append(time.perf_counter())
            return n

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            total = sum(pool.map(get, files))
        end = time.perf_counter()
        assert total == self.shard_bytes, (total, self.shard_bytes)
        self.runs[ROWS[5]].append(Run(end - start, min(firsts) - start, self.served.value - served))

    def baseline(self) -> None:
        """Cases 3 and 4: s3fs get of the whole directory, then Loader epochs over the copy."""
        import fsspec

        from pydata import Loader, MemoryMappedDataset

        local = self.fresh_dir("copy")
        served, start = self.served.value, time.perf_counter()
        fs, root = fsspec.core.url_to_fs(self.remote, **self.options)
        fs.get(root.rstrip("/") + "/", str(local) + "/", recursive=True)
        downloaded = time.perf_counter()
        ds = MemoryMappedDataset(local)
        loader = Loader(ds, batch_size=BATCH, shuffle=True, seed=0)
        try:
            e = read_epoch(loader, self.count, self.label_sum)
            self.record(ROWS[3], e, start, served, download_s=downloaded - start)
            loader.set_epoch(1)
            served, start = self.served.value, time.perf_counter()
            self.record(ROWS[4], read_epoch(loader, self.count, self.label_sum), start, served)
        finally:
            del loader, ds
            shutil.rmtree(local)


# -- report --------------------------------------------------------------------------------------

def report(runs: Mapping[tuple[str, str], list[Run]], count: int, shard_bytes: int,
           ) -> list[dict[str, Any]]:
    base = statistics.median(r.seconds for r in runs[ROWS[3]])
    rows = []
    for (case, setting), rs in runs.items():
        seconds = statistics.median(r.seconds for r in rs)
        stats = [r.cache_stats["bytes_downloaded"] for r in rs if r.cache_stats]
        rows.append({"case": case, "setting": setting, "samples_per_s": count / seconds,
                     "mb_per_s": shard_bytes / seconds / 1e6, "seconds": seconds,
                     "first_batch_s": statistics.median(r.first_batch_s for r in rs),
                     "mb_downloaded": statistics.median(r.bytes_downloaded for r in rs) / 1e6,
                     "cache_stats_mb": statistics.median(stats) / 1e6 if stats else None,
                     "vs_baseline_total": seconds / base, "runs": rs})
    return rows


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, from the medians: time to first batch under 0.5 s, a cold epoch at
    >= 50% of the raw GET bandwidth and within 1.5x of the warm epoch's time."""
    cold, warm, raw = rows[0], rows[2], rows[5]
    return {"first_batch_s": cold["first_batch_s"], "first_batch_ok": cold["first_batch_s"] < 0.5,
            "cold_vs_raw_get": cold["mb_per_s"] / raw["mb_per_s"],
            "cold_vs_raw_get_ok": cold["mb_per_s"] >= 0.5 * raw["mb_per_s"],
            "cold_vs_warm_time": cold["seconds"] / warm["seconds"],
            "cold_vs_warm_ok": cold["seconds"] <= 1.5 * warm["seconds"],
            "raw_get_vs_warm_time": raw["seconds"] / warm["seconds"]}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "moto", "s3fs", "fsspec", "boto3")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="8,192 samples, 8 MiB shards, 2 rounds: a smoke run")
    parser.add_argument("--samples", type=int,
                        help="samples in the dataset (default 90,112: 1.03 GiB)")
    parser.add_argument("--shard-mib", type=float,
                        help="shard size in MiB (default 64; 8 with --quick)")
    parser.add_argument("--repeats", type=int,
                        help="rounds of every case (default 3; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    count = args.samples or (8192 if args.quick else 90_112)
    shard_bytes = int((args.shard_mib or (8 if args.quick else 64)) * 2**20)
    repeats = args.repeats or (2 if args.quick else 3)

    with tempfile.TemporaryDirectory(prefix="pydata-streaming-") as tmp:
        scratch = Path(tmp)
        dataset, label_sum = make_dataset(scratch, count, shard_bytes, args.seed)
        shards = len(pydata.read_index(dataset).shards)
        with s3_server(scratch) as (options, served):
            remote = upload(dataset, options)
            shutil.rmtree(dataset)
            bench = Bench(remote, options, served, scratch, count, label_sum)
            cases = [bench.streaming_direct, bench.streaming_workers, bench.baseline, bench.raw_gets]
            print(f"timing {repeats} rounds of every case (order rotating; fresh directories for "
                  "the cold cases); every epoch must deliver every sample once")
            for r in range(repeats):
                started = time.perf_counter()
                for case in cases[r % len(cases):] + cases[: r % len(cases)]:
                    case()
                print(f"  round {r + 1}: {time.perf_counter() - started:.1f} s")
            rows = report(bench.runs, count, bench.shard_bytes)

    print(f"\n## One shuffled epoch of {count} samples ({count * SAMPLE_BYTES / 1e6:.0f} MB, "
          f"{shards} shards of up to {shard_bytes / 2**20:g} MiB) from a local S3 server, batches "
          f"of {BATCH}, median of {repeats}\n")
    print(markdown_table(
        ["case", "setting", "samples/s", "MB/s", "time to first batch (s)", "total (s)",
         "MB downloaded (server)", "MB downloaded (cache.stats)", "x baseline total time"],
        [[r["case"], r["setting"], f"{r['samples_per_s']:,.0f}", f"{r['mb_per_s']:,.0f}",
          f"{r['first_batch_s']:.3f}",
          f"{r['seconds']:.3f}", f"{r['mb_downloaded']:.1f}",
          "—" if r["cache_stats_mb"] is None else f"{r['cache_stats_mb']:.1f}",
          r["vs_baseline_total"]] for r in rows]))
    download = statistics.median(r.download_s or 0.0 for r in bench.runs[ROWS[3]])
    cold, warm = (bench.runs[key][-1].cache_stats for key in (ROWS[0], ROWS[2]))
    print(f"\nbaseline download alone: {download:.3f} s (median)")
    print(f"ShardCache.stats() of the last direct run: cold {cold}; warm epoch {warm}")
    goals = targets(rows)
    print(f"targets: first batch {goals['first_batch_s']:.3f} s (< 0.5: {goals['first_batch_ok']}); "
          f"cold epoch at {goals['cold_vs_raw_get']:.0%} of the raw GET bandwidth (>= 50%: "
          f"{goals['cold_vs_raw_get_ok']}); cold epoch {goals['cold_vs_warm_time']:.1f}x the warm "
          f"epoch's time (<= 1.5x: {goals['cold_vs_warm_ok']}; the raw GETs alone take "
          f"{goals['raw_get_vs_warm_time']:.1f}x)")
    path = write_results("streaming", {
        "quick": args.quick, "samples": count, "sample_bytes": SAMPLE_BYTES,
        "shard_bytes": shard_bytes, "shards": shards, "batch": BATCH, "repeats": repeats,
        "versions": versions(), "baseline_download_s": download, "targets": goals, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
