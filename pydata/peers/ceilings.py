"""Ceilings measured in the same run as the systems, for the same bytes.

Local: a memcpy of the workload's bytes in batch-sized pieces of contiguous rows (what no loader
can beat), and a numpy gather of the shuffled batches' rows into a preallocated batch (what a
batched ``np.take`` achieves), both on a hot page cache. S3: the raw GET bandwidth of the local
server, a few whole-object GETs of the pydata shards in parallel with boto3. Each ceiling runs
in its own process, like the systems.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pydata.page_cache import touch_files
from pydata.peers.workloads import Source

__all__ = ["run"]

_REPEATS = 3
_GET_THREADS = 4


def _timed(fn: Callable[[], object], before: Callable[[], object]) -> list[float]:
    """Seconds of ``_REPEATS`` calls after one warm-up, ``before`` run untimed ahead of each."""
    times = []
    for i in range(_REPEATS + 1):
        before()
        started = time.perf_counter()
        fn()
        if i:
            times.append(time.perf_counter() - started)
    return times


def _fixed_cases(source: Source, batch: int, rng: np.random.Generator) -> dict[str, Callable[[], None]]:
    fixed = {n: a for n, a in source.arrays.items() if "." not in n}
    order = rng.permutation(source.count)
    batches = [order[s : s + batch] for s in range(0, source.count, batch)]
    out = {n: np.empty((batch, *a.shape[1:]), a.dtype) for n, a in fixed.items()}

    def memcpy() -> None:
        for s in range(0, source.count, batch):
            for n, a in fixed.items():
                rows = a[s : s + batch]
                np.copyto(out[n][: len(rows)], rows)

    def gather() -> None:
        for idx in batches:
            for n, a in fixed.items():
                np.take(a, idx, axis=0, out=out[n][: len(idx)], mode="clip")

    return {"memcpy": memcpy, "numpy gather": gather}


def _ragged_cases(source: Source, batch: int, rng: np.random.Generator) -> dict[str, Callable[[], None]]:
    name = source.specs[0].name
    offsets, payload = source.arrays[f"{name}.offsets"], source.arrays[f"{name}.payload"]
    order = rng.permutation(source.count)
    batches = [order[s : s + batch] for s in range(0, source.count, batch)]
    lengths = offsets[1:] - offsets[:-1]
    positions = [np.arange(int(lengths[i].sum())) + np.repeat(offsets[i] - np.cumsum(lengths[i]) + lengths[i],
                                                               lengths[i]) for i in batches]
    bounds = [int(offsets[min(s, source.count)]) for s in range(0, source.count + batch, batch)]
    widest = max(max(len(p) for p in positions), max(b - a for a, b in zip(bounds, bounds[1:])))
    out = np.empty(widest, payload.dtype)

    def memcpy() -> None:
        for lo, hi in zip(bounds, bounds[1:]):
            np.copyto(out[: hi - lo], payload[lo:hi])

    def gather() -> None:
        for p in positions:
            np.take(payload, p, out=out[: len(p)], mode="clip")

    return {"memcpy": memcpy, "numpy gather": gather}


def _local(spec: dict[str, Any]) -> dict[str, Any]:
    source = Source(spec["workload"], Path(spec["source"]))
    rng = np.random.default_rng(spec["seed"])
    variable = source.specs[0].shape is None
    cases = (_ragged_cases if variable else _fixed_cases)(source, spec["batch"], rng)
    nbytes = source.sample_bytes() * source.count
    files = source.files()
    rows = {}
    for name, fn in cases.items():
        seconds = statistics.median(_timed(fn, lambda: touch_files(files)))
        rows[name] = {"samples_per_s": source.count / seconds, "mb_per_s": nbytes / seconds / 1e6}
    return {"status": "ok", "ceilings": rows}


def _s3_get(spec: dict[str, Any]) -> dict[str, Any]:
    boto3 = importlib.import_module("boto3")  # untyped: Any on purpose
    client = boto3.session.Session().client("s3", endpoint_url=spec["endpoint"], region_name="us-east-1",
                                            aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket, _, prefix = spec["remote"].removeprefix("s3://").partition("/")
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    objects = [o for o in listing.get("Contents", []) if not o["Key"].endswith(".json")]
    keys, nbytes = [o["Key"] for o in objects], sum(int(o["Size"]) for o in objects)

    def get(key: str) -> int:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        total = 0
        while chunk := body.read(1 << 20):
            total += len(chunk)
        return total

    def all_objects() -> int:
        with ThreadPoolExecutor(_GET_THREADS) as pool:
            return sum(pool.map(get, keys))

    seconds = statistics.median(_timed(all_objects, lambda: None))
    client.close()
    return {"status": "ok", "ceilings": {f"S3 raw GET ({_GET_THREADS} parallel whole-object GETs)": {
        "mb_per_s": nbytes / seconds / 1e6, "objects": len(keys), "bytes": nbytes}}}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Measures the ceilings ``spec["job"]`` names (``"ceiling"`` or ``"s3-get"``)."""
    return _local(spec) if spec["job"] == "ceiling" else _s3_get(spec)
