"""A conversion worker for test_merge.py: writes one partition of a dataset in its own process.

It stands for any job runner's task (multiprocessing, Ray, a cluster array job). test_merge.py runs
it in spawned processes through ``runpy.run_path`` with the globals PATH, K, N, START and COUNT,
and loads the same file in the test process for :func:`make_sample`, so both sides agree on the
data. It is not a test module (pytest does not collect it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import pydata

SCHEMA = {
    "x": pydata.Field("float32", (3,)),
    "id": pydata.Field("int64", ()),
    "name": pydata.Field("str"),
    "v": pydata.Field("uint8", None, codec="lz4"),
}


def make_sample(i: int) -> dict[str, Any]:
    """Sample number ``i`` of the whole dataset."""
    rng = np.random.default_rng(i)
    return {
        "x": rng.standard_normal(3).astype(np.float32),
        "id": i,
        "name": f"sample-{i}",
        "v": rng.integers(0, 255, size=i % 7, dtype=np.uint8),
    }


def write_partition(path: str, k: int, n: int, start: int, count: int) -> None:
    """Writes samples ``start .. start + count - 1`` as partition ``k`` of ``n``."""
    with pydata.ShardWriter(path, SCHEMA, partition=(k, n), shard_bytes=200, progress=False) as writer:
        for i in range(start, start + count):
            writer.write(make_sample(i))


if __name__ == "__main__":
    write_partition(PATH, K, N, START, COUNT)  # type: ignore[name-defined]  # noqa: F821 (run_path globals)
